"""Usage reports: a made-up day driven through the API on a moved clock, its report by
every grouping against a recomputation written here, from the test's own timeline; who
sees what; CSV; PRICES; and bad input."""

import csv
import datetime
import io
import json
import math

import pytest
import sqlalchemy
import time_machine
from conftest import SQLITE_ONLY, assert_error, token_client
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import create_app, pools
from dispatcher.bookkeeping import ledger
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.fields import tag_key_error
from dispatcher.models import VMRequest
from dispatcher.usage.report import FIGURES
from dispatcher.worker import scheduler

USAGE = "/api/v1/usage"
ASSIGN = "/api/v1/vm/action/assign"
T0 = datetime.datetime(2026, 11, 10, 8, 0, tzinfo=datetime.UTC)
# The report's period, in minutes from T0; and when it is asked.
FROM, TO, ASKED = 60, 300, 330
PRICES = {"default": {"1": 0.36, "*": 0.18}, "fake_driver": {"*": 0.72}}
GPU_PRICE = 1.8
# The figures summed over a group's spans (the names only: the sums are the test's).
FIGURES_SUMMED = FIGURES[: FIGURES.index("wait_p50")]


def at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def pool(size="1", ready=2, **entry) -> dict:
    return {
        "clouds": [{"cloud": "default", "image": "1", "size": size, **entry}],
        "min_ready": ready,
        "max_total": ready,
        "release": "reuse",
    }


# -- the made-up day -------------------------------------------------------------------
#
# Pool web's two VMs and pool gpu's one are made at T0 and free from then on, unless said
# otherwise here; node 1 of fake_driver, of no pool, is recorded when dora takes it.
# (minute, who assigns, user, pool or node, tags) and (minute, release or faulty, whose).
ASSIGNS = [
    (30, "tester", "ada", "web", {"project": "genomics"}),  # before `from`
    (120, "tester", "bob", "web", {"project": "physics"}),  # the VM ada gave back
    (150, "tester", "carl", "web", {"project": "genomics"}),  # held across `to`
    (180, "other", "dora", "node 1", None),  # of no pool, across `to`
]
ENDS = [(90, "release", "ada"), (200, "release", "bob"), (260, "faulty", "bob")]
# Requests ready in the period (created, ready, user, caller, pools, tags), and one not.
REQUESTS = [
    (100, 100 + 10 / 60, "ada", "tester", {"web": 1}, {"project": "genomics"}),
    (110, 110 + 20 / 60, "ada", "tester", {"web": 1, "gpu": 1}, None),
    (130, 131.5, "bob", "tester", {"web": 1}, {"project": "physics"}),
    (140, 141, "dora", "other", {"gpu": 1}, None),
    (10, 20, "ada", "tester", {"web": 1}, None),  # ready before `from`
]


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def day(make_app):
    """The made-up day, through the API; (app, node of each assign, clients)."""
    with time_machine.travel(T0, tick=False) as traveller:
        app = make_app(
            POOLS={"web": pool(), "gpu": pool(size="2", ready=1, price_per_hour=GPU_PRICE)},
            PRICES=PRICES,
        )
        clients = {
            "tester": token_client(app, "tester"),
            "other": token_client(app, "other"),
            "admin": token_client(app, "boss", roles=("admin",)),
        }
        with app.app_context():
            scheduler.run_pass(pools.every())
            scheduler.run_pass(pools.every())
        nodes = {}
        day = [(minute, "assign", rest) for minute, *rest in ASSIGNS]
        day += [(minute, how, [user]) for minute, how, user in ENDS]
        for minute, how, what in sorted(day, key=lambda event: event[0]):
            traveller.move_to(at(minute))
            if how == "assign":
                caller, user, wanted, tags = what
                body = {"user": user, "vm_type": wanted, **({"tags": tags} if tags else {})}
                url = ASSIGN
                if wanted.startswith("node"):
                    body.update(node=wanted.split()[1], vm_type="app")
                    url = f"{ASSIGN}/fake_driver"
                taken = clients[caller].put(url, json=body)
                assert taken.status_code == 200, taken.json
                nodes[user] = taken.json["id_vm"]
            elif how == "release":
                freed = clients["tester"].put(
                    "/api/v1/vm/action/release/default", json={"node": nodes[what[0]]}
                )
                assert freed.status_code == 200, freed.json
            else:
                with app.app_context():
                    (row,) = ledger.rows_of("default", node_id=nodes[what[0]])
                    assert ledger.mark_faulty(row)
                    db.session.commit()
        with app.app_context():
            for created, ready, user, caller, vms, tags in REQUESTS:
                db.session.add(
                    VMRequest(
                        state="ready",
                        caller=caller,
                        user=user,
                        priority=2,
                        vms=vms,
                        tags=tags,
                        created_at=at(created),
                        expires_at=at(created + 60),
                        ready_at=at(ready),
                    )
                )
            db.session.commit()
        traveller.move_to(at(ASKED))
        yield app, nodes, clients, traveller


# -- the recomputation -----------------------------------------------------------------


def timeline(nodes: dict) -> list[dict]:
    """Each period of each VM, from the made-up day as written above: not from the
    database."""
    vms = {
        nodes["ada"]: {"pool": "web", "cloud": "default", "price": PRICES["default"]["1"]},
        "gpu": {"pool": "gpu", "cloud": "default", "price": GPU_PRICE},
        nodes["dora"]: {"pool": None, "cloud": "fake_driver", "price": 0.72},
    }
    other_web = nodes["carl"]
    vms[other_web] = {"pool": "web", "cloud": "default", "price": PRICES["default"]["1"]}
    assert nodes["ada"] == nodes["bob"] and other_web != nodes["ada"], nodes
    events = {vm: [] for vm in vms}
    for minute, caller, user, _, tags in ASSIGNS:
        events[nodes[user]].append((minute, "assigned", user, caller, tags))
    for minute, how, user in ENDS:
        state = "free" if how == "release" else "faulty"
        events[nodes[user]].append((minute, state, None, None, None))
    periods = []
    for vm, seen in events.items():
        facts = vms[vm]
        # A pool's VM is free from T0; dora's node exists in the books from its assign.
        state, since, user, caller, tags = ("free", 0, None, None, None)
        if facts["pool"] is None:
            since, state, user, caller, tags = sorted(seen).pop(0)
            seen = sorted(seen)[1:]
        for minute, next_state, next_user, next_caller, next_tags in sorted(seen):
            periods.append(
                {**facts, "state": state, "user": user, "caller": caller, "tags": tags,
                 "vm_type": facts["pool"] or "app", "start": since, "end": minute}
            )  # fmt: skip
            state, since, user, caller, tags = next_state, minute, next_user, next_caller, next_tags
        periods.append(
            {**facts, "state": state, "user": user, "caller": caller, "tags": tags,
             "vm_type": facts["pool"] or "app", "start": since, "end": None}
        )  # fmt: skip
    return periods


def group_of(period_or_request: dict, name: str):
    if name.startswith("tag:"):
        return (period_or_request["tags"] or {}).get(name[4:])
    return period_or_request[name]


def recompute(periods, group_by, start, end, now, caller=None):
    """The report's groups and total, by hand: seconds of overlap, cost by price, assigns
    and releases within, the nearest-rank p50/p95 of the waits, and the peak by a sweep."""
    until = min(end, now)
    groups: dict = {}

    def figures(key):
        return groups.setdefault(key, {**dict.fromkeys(FIGURES_SUMMED, 0), "moments": []})

    total = {**dict.fromkeys(FIGURES_SUMMED, 0), "moments": []}
    for period in periods:
        if caller is not None and (period["state"] != "assigned" or period["caller"] != caller):
            continue
        stop = until if period["end"] is None else min(period["end"], end)
        seconds = max(0, (stop - max(period["start"], start)) * 60)
        if period["start"] >= end or (period["end"] is not None and period["end"] <= start):
            continue
        kind = {"assigned": "assigned", "faulty": "faulty"}.get(period["state"], "idle")
        key = tuple(group_of(period, name) for name in group_by)
        for found in (figures(key), total):
            found[f"{kind}_seconds"] += seconds
            found[f"{kind}_cost"] += seconds * period["price"] / 3600
            if kind == "assigned":
                found["assigns"] += start <= period["start"] < end
                found["releases"] += period["end"] is not None and period["end"] < end
                found["moments"] += [(max(period["start"], start), 1)]
                if period["end"] is not None and period["end"] < end:
                    found["moments"] += [(period["end"], -1)]
    waits: dict = {}
    every_wait = []
    for created, ready, user, asked_by, vms, tags in REQUESTS:
        if not start <= ready < end or (caller is not None and asked_by != caller):
            continue
        request = {"user": user, "cloud": None, "tags": tags}
        keys = [()]
        for name in group_by:
            values = sorted(vms) if name in ("pool", "vm_type") else [group_of(request, name)]
            keys = [(*key, value) for key in keys for value in values]
        for key in keys:
            waits.setdefault(key, []).append((ready - created) * 60)
        every_wait.append((ready - created) * 60)

    def finished(found, waited):
        done = {name: found.get(name, 0) for name in FIGURES_SUMMED}
        for name in ("assigned_seconds", "idle_seconds", "faulty_seconds"):
            done[name] = round(done[name])
        done["cost"] = round(done["assigned_cost"] + done["idle_cost"] + done["faulty_cost"], 2)
        for name in ("assigned_cost", "idle_cost", "faulty_cost"):
            done[name] = round(done[name], 2)
        ordered = sorted(waited)
        for name, fraction in (("wait_p50", 0.5), ("wait_p95", 0.95)):
            rank = math.ceil(fraction * len(ordered))
            done[name] = round(ordered[rank - 1], 3) if ordered else None
        done["requests_ready"] = len(waited)
        held = peak = 0
        for _, step in sorted(found.get("moments", [])):
            held += step
            peak = max(peak, held)
        done["peak_held"] = peak
        return done

    keys = sorted(set(groups) | set(waits), key=lambda k: [(v is None, str(v or "")) for v in k])
    shown = [
        {
            **dict(zip(group_by, key, strict=True)),
            **finished(groups.get(key, {}), waits.get(key, [])),
        }
        for key in keys
    ]
    return shown, finished(total, every_wait)


def report(client, group_by, start=FROM, end=TO, **more):
    answer = client.get(
        USAGE,
        query_string={
            "from": at(start).isoformat(),
            "to": at(end).isoformat(),
            "group_by": ",".join(group_by),
            **more,
        },
    )
    assert answer.status_code == 200, answer.json
    return answer.json["usage"]


# -- the report against the recomputation ----------------------------------------------


@pytest.mark.parametrize(
    "group_by",
    [["user"], ["pool"], ["cloud"], ["vm_type"], ["tag:project"], ["pool", "user"]],
    ids=lambda names: ",".join(names),
)
def test_every_figure_equals_its_recomputation(day, group_by):
    """Spans opened before `from`, held across `to`, a VM reused by two users, pool VMs
    idle then assigned, one faulty, one of no pool; every group's every figure."""
    app, nodes, clients, _ = day
    found = report(clients["admin"], group_by)
    groups, total = recompute(timeline(nodes), group_by, FROM, TO, ASKED)
    assert found["groups"] == groups
    assert found["total"] == total
    assert (found["from"], found["to"]) == (
        "2026-11-10T09:00:00+00:00",
        "2026-11-10T13:00:00+00:00",
    )


def test_the_figures_by_user_are_the_days_as_written(day):
    """The recomputation checked by hand once: by user, in whole seconds and cents."""
    _, _, clients, _ = day
    by_user = {row["user"]: row for row in report(clients["admin"], ["user"])["groups"]}
    assert {user: row["assigned_seconds"] for user, row in by_user.items()} == {
        "ada": 30 * 60,  # from `from` (60) to her release (90)
        "bob": 80 * 60,
        "carl": 150 * 60,  # to `to`
        "dora": 120 * 60,
        None: 0,
    }
    assert by_user["dora"]["assigned_cost"] == 1.44  # two hours at 0.72
    assert by_user["carl"]["assigns"] == 1 and by_user["ada"]["assigns"] == 0
    assert by_user["ada"]["releases"] == 1
    # Idle: web's reused VM from 90 to 120 and 200 to 260, the other from 60 to 150, gpu's
    # all 240 minutes.
    assert by_user[None]["idle_seconds"] == (30 + 60 + 90 + 240) * 60
    assert by_user[None]["faulty_seconds"] == 40 * 60
    assert by_user["ada"]["wait_p50"] == 10.0 and by_user["ada"]["wait_p95"] == 20.0
    assert report(clients["admin"], ["user"])["total"]["peak_held"] == 3  # bob, carl, dora


def test_a_period_past_now_counts_open_spans_until_now(day):
    """Asked at 330 for a period to 400: what is still open counts to 330."""
    app, nodes, clients, _ = day
    found = report(clients["admin"], ["user"], start=FROM, end=400)
    groups, total = recompute(timeline(nodes), ["user"], FROM, 400, ASKED)
    assert found["groups"] == groups and found["total"] == total
    assert {row["user"]: row["assigned_seconds"] for row in groups}["carl"] == 180 * 60


def test_a_period_cut_inside_one_span(day):
    """A period within carl's assignment: only its own minutes."""
    _, nodes, clients, _ = day
    found = report(clients["admin"], ["user"], start=160, end=170)
    assert {row["user"]: row["assigned_seconds"] for row in found["groups"]}["carl"] == 600
    groups, total = recompute(timeline(nodes), ["user"], 160, 170, ASKED)
    assert found["groups"] == groups and found["total"] == total


def test_an_agent_sees_only_what_it_assigned(day):
    """tester assigned ada's, bob's and carl's; other dora's: neither sees the other's
    users, nor the pools' idle time; the admin sees all."""
    _, nodes, clients, _ = day
    mine = report(clients["tester"], ["user"])
    assert [row["user"] for row in mine["groups"]] == ["ada", "bob", "carl"]
    groups, total = recompute(timeline(nodes), ["user"], FROM, TO, ASKED, caller="tester")
    assert mine["groups"] == groups and mine["total"] == total
    assert mine["total"]["idle_seconds"] == 0
    theirs = report(clients["other"], ["user", "pool"])
    shown = [(row["user"], row["pool"]) for row in theirs["groups"]]
    assert shown == [("dora", "gpu"), ("dora", None)]
    assert theirs["groups"][0]["assigned_seconds"] == 0  # dora's request for gpu: a wait only
    everyone = report(clients["admin"], ["user"])
    assert [row["user"] for row in everyone["groups"]] == ["ada", "bob", "carl", "dora", None]


def test_the_csv_is_the_json_as_a_spreadsheet_reads_it(day):
    _, _, clients, _ = day
    query = {"from": at(FROM).isoformat(), "to": at(TO).isoformat(), "group_by": "pool,user"}
    answer = clients["admin"].get(USAGE, query_string={**query, "format": "csv"})
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == (
        'attachment; filename="usage-20261110T090000Z-20261110T130000Z.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    shown = clients["admin"].get(USAGE, query_string=query).json["usage"]
    assert len(rows) == len(shown["groups"]) + 1
    for row, group in zip(rows, [*shown["groups"], None], strict=True):
        if group is None:
            assert row["pool"] == "total"
            group = shown["total"]
        else:
            assert (row["pool"] or None, row["user"] or None) == (group["pool"], group["user"])
        assert float(row["cost"]) == group["cost"]
        assert int(row["assigned_seconds"]) == group["assigned_seconds"]
        assert row["wait_p50"] == ("" if group["wait_p50"] is None else str(group["wait_p50"]))


def test_a_tag_value_a_spreadsheet_would_run_is_quoted(make_app):
    """A tag's value beginning with "=" is text in the CSV, never a formula."""
    app = make_app(POOLS={"web": pool()})
    client = token_client(app)
    with app.app_context():
        scheduler.run_pass(pools.every())
        scheduler.run_pass(pools.every())
    body = {"user": "ada", "vm_type": "web", "tags": {"project": "=HYPERLINK(1)"}}
    assert client.put(ASSIGN, json=body).status_code == 200
    answer = client.get(USAGE, query_string={"group_by": "tag:project", "format": "csv"})
    assert "'=HYPERLINK(1)" in answer.get_data(as_text=True)


# -- what the spans hold ---------------------------------------------------------------


def test_every_change_of_state_is_one_span_closed_and_one_opened(day):
    """The spans of web's VM reused by ada and bob, as the ledger wrote them."""
    app, nodes, _, _ = day
    from dispatcher.models import STATUS_NAMES, Span

    with app.app_context():
        (row,) = ledger.rows_of("default", node_id=nodes["ada"])
        spans = db.session.scalars(
            sqlalchemy.select(Span).where(Span.assignment_id == row.id).order_by(Span.id)
        ).all()
        seen = [
            (STATUS_NAMES[s.status], s.user, s.holder, s.tags, s.size, s.started_at, s.ended_at)
            for s in spans
        ]
    moments = [
        (name, user, holder, tags, size, started.replace(tzinfo=datetime.UTC), ended)
        for name, user, holder, tags, size, started, ended in seen
    ]
    assert [(m[0], m[1], m[2], m[3], m[4]) for m in moments] == [
        ("BOOTING", None, None, None, "1"),
        ("FREE", None, None, None, "1"),
        ("ASSIGNED", "ada", "tester", {"project": "genomics"}, "1"),
        ("FREE", None, None, None, "1"),
        ("ASSIGNED", "bob", "tester", {"project": "physics"}, "1"),
        ("FREE", None, None, None, "1"),
        ("FAULTY", None, None, None, "1"),
    ]
    starts = [m[5] for m in moments]
    assert starts == [at(0), at(0), at(30), at(90), at(120), at(200), at(260)]
    assert [m[6] is None for m in moments] == [False] * 6 + [True]


# -- bad input, and beside Cistern -----------------------------------------------------


MOMENT = "a moment in ISO 8601, like 2026-12-01 or 2026-12-01T09:00:00Z"
NAMES = "user, pool, cloud, vm_type or tag:<key>, comma-separated, at most 4"
PRICE = "must be a number from 0 to 1000000"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "yesterday"}, f"from: {MOMENT}"),
        ({"to": "2026-13-01"}, f"to: {MOMENT}"),
        ({"from": "2" * 5000}, f"from: {MOMENT}"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "from: must come before to"),
        ({"from": "2026-12-01", "to": "2026-12-01T00:00:00Z"}, "from: must come before to"),
        ({"group_by": "team"}, f"group_by: 'team' is not one of {NAMES}"),
        ({"group_by": "user,user"}, "group_by: 'user' is named twice"),
        ({"group_by": "tag:"}, "group_by: the key of 'tag:' must be " + tag_key_error("")),
        ({"group_by": "user,pool,cloud,vm_type,tag:a"}, f"group_by: at most 4 of {NAMES}"),
        ({"group_by": ""}, f"group_by: '' is not one of {NAMES}"),
        ({"format": "xlsx"}, "format: one of json, csv"),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_400_naming_them(make_app, query, message):
    client = token_client(make_app())
    assert_error(client.get(USAGE, query_string=query), 400, message)


@SQLITE_ONLY
def test_the_report_needs_a_token_and_an_agent(make_app):
    app = make_app()
    assert app.test_client().get(USAGE).status_code == 401
    nobody = token_client(app, "viewer", roles=())
    assert nobody.get(USAGE).status_code == 403


@SQLITE_ONLY
def test_an_empty_month_is_zeros_and_the_default_period_is_this_month(make_app):
    with time_machine.travel(
        datetime.datetime(2026, 12, 6, 15, 30, tzinfo=datetime.UTC), tick=False
    ):
        client = token_client(make_app())
        found = client.get(USAGE).json["usage"]
    assert (found["from"], found["to"]) == (
        "2026-12-01T00:00:00+00:00",
        "2026-12-06T15:30:00+00:00",
    )
    assert (found["group_by"], found["groups"]) == (["user"], [])
    assert found["total"]["cost"] == 0 and found["total"]["wait_p50"] is None


@SQLITE_ONLY
def test_beside_cistern_the_report_is_a_400(make_app, cistern):
    app = make_app(ASSIGNMENT_BACKEND="cistern", CISTERN_URL=cistern.url)
    answer = token_client(app).get(USAGE)
    assert_error(
        answer,
        400,
        "usage reports read the local ledger's spans: beside Cistern"
        " (ASSIGNMENT_BACKEND=cistern) there are none",
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"PRICES": {"mars": {"*": 1}}}, "PRICES: cloud 'mars' is not in CLOUD_FARM"),
        ({"PRICES": {"default": {}}}, "PRICES['default'] must map sizes (or '*') to a price"
                                      " per hour"),
        ({"PRICES": {"default": {"*": -1}}}, f"PRICES['default']: '*' {PRICE}"),
        ({"PRICES": {"default": {"*": True}}}, f"PRICES['default']: '*' {PRICE}"),
        ({"PRICES": {"default": {"*": "0.1"}}}, f"PRICES['default']: '*' {PRICE}"),
        ({"PRICES": ["default"]}, "PRICES must map cloud names to {size: price per hour}"),
        ({"PRICES": {"default": {"*": 1}}, "ASSIGNMENT_BACKEND": "cistern",
          "CISTERN_URL": "http://127.0.0.1:9/api/v1"},
         "PRICES price the local ledger's spans: beside Cistern (ASSIGNMENT_BACKEND=cistern)"
         " there are none"),
        ({"POOLS": {"web": pool(price_per_hour=1e9)}},
         f"POOLS['web']['clouds'][0]: price_per_hour {PRICE}"),
    ],
)  # fmt: skip
def test_prices_that_cannot_work_stop_the_start(settings, message):
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings}
    with pytest.raises(ConfigurationError) as raised:
        create_app(config)
    assert str(raised.value) == message


# -- the command -----------------------------------------------------------------------


def test_the_command_prints_the_reports_table_csv_and_json(day):
    """`dispatcher usage` gives the admin's report: the same figures as the API."""
    app, _, clients, _ = day
    period = ["--from", at(FROM).isoformat(), "--to", at(TO).isoformat()]
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["usage", *period, "--group-by", "pool", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == report(clients["admin"], ["pool"])

    csv_text = runner.invoke(args=["usage", *period, "--group-by", "pool", "--format", "csv"])
    asked = {"from": at(FROM).isoformat(), "to": at(TO).isoformat(), "group_by": "pool"}
    answer = clients["admin"].get(USAGE, query_string={**asked, "format": "csv"})
    assert csv_text.output.splitlines() == answer.get_data(as_text=True).splitlines()

    table = runner.invoke(args=["usage", *period, "--group-by", "user"]).output.splitlines()
    assert table[0] == "usage from 2026-11-10T09:00:00+00:00 to 2026-11-10T13:00:00+00:00"
    assert table[1].split() == [
        "user", "held", "h", "idle", "h", "faulty", "h", "cost", "assigns", "releases",
        "wait", "p50", "s", "wait", "p95", "s", "peak",
    ]  # fmt: skip
    carl = next(line.split() for line in table if line.startswith("carl"))
    assert carl[:5] == ["carl", "2.50", "0.00", "0.00", "0.90"]  # 150 min at 0.36
    assert table[-1].split()[0] == "total"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "noon"], f"Invalid value for --from: {MOMENT}"),
        (["--group-by", "team"], f"group_by: 'team' is not one of {NAMES}"),
        (["--from", "2026-12-02", "--to", "2026-12-01"], "from: must come before to"),
    ],
)
def test_the_command_refuses_bad_options_in_one_line(make_app, args, message):
    result = make_app().test_cli_runner().invoke(args=["usage", *args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"


def test_metrics_count_the_vm_seconds_and_cost_of_each_pool_in_each_state(day):
    """/metrics: every span until now, by pool and state, as the timeline says."""
    app, nodes, clients, _ = day
    text = clients["admin"].get("/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("dispatcher_vm_seconds", "dispatcher_vm_cost"):
            for sample in family.samples:
                key = (family.name, sample.labels["pool"], sample.labels["state"])
                found[key] = round(sample.value, 3)
    expected: dict = {}
    for period in timeline(nodes):
        seconds = ((period["end"] if period["end"] is not None else ASKED) - period["start"]) * 60
        where = (period["pool"] or "", period["state"])
        for name, amount in (
            ("dispatcher_vm_seconds", seconds),
            ("dispatcher_vm_cost", seconds * period["price"] / 3600),
        ):
            expected[(name, *where)] = expected.get((name, *where), 0) + amount
    # The pools' VMs booted at T0 and were free at once: spans of no length.
    for pool_name in ("web", "gpu"):
        for name in ("dispatcher_vm_seconds", "dispatcher_vm_cost"):
            expected[(name, pool_name, "booting")] = 0
    expected[("dispatcher_vm_seconds", "", "free")] = 0  # dora's node, recorded and taken
    expected[("dispatcher_vm_cost", "", "free")] = 0
    assert found == {key: round(value, 3) for key, value in expected.items()}
    assert found[("dispatcher_vm_seconds", "web", "assigned")] == (60 + 80 + 180) * 60
