"""(d) Assign and release through gunicorn with 4 workers on PostgreSQL, quotas off and on.

A Dummy cloud ``bench`` of 50 VMs: libcloud's DummyNodeDriver(51), whose node ``dummy-0``
is left out (libcloud's Node turns the id 0 into None). RELEASE_KEEPS_NODE = True: the Dummy
driver's nodes live in each worker, and a node destroyed in one would live on in the others.
Client threads loop: pick a random VM, ``PUT /api/v1/vm/action/assign/bench``; on 200 hold
it a few milliseconds, then ``PUT .../release``. A 409 (someone else holds it) moves on to
another.

Two servers run side by side, each on a schema of its own: quotas *off* (no QUOTAS; an
assign still asks for the caller's roles and the database's quota rules, and writes a
holding that its release closes) and quotas *on* (QUOTAS = [QUOTA_RULE], a default rule
whose max_vms and max_vm_hours are far beyond what the bench can reach: every assign
also takes the caller's lock and counts the VMs and the VM-hours the caller holds, and
none is refused). Every client uses the one token of the bench's agent: with quotas on,
all their assigns wait for one lock. The rounds alternate, off, on, off, on, ..., so that
a change in the machine's other load hits both; each configuration's figures are the
medians of its rounds. A 403 with quotas on would be a quota refusal: the rule would
bind, which it must not.

Beside them, in the same rounds (off, on, raw, off, on, raw, ...), the *raw SQL baseline*
(bench/raw_ledger.py): the statements the dispatcher's assign and release commit, captured
from the app in-process and replayed with psycopg, one transaction per step, by as many
client threads on connections of their own, against the same PostgreSQL, on a third
schema. Its successful assign-then-release pairs a second are the ledger's own limit; the
dispatcher's over them (pairs against pairs, quotas off) is the ratio reported.

Double assignments are counted twice, in each configuration and in the baseline:

- by the clients: a shared dict VM -> holder, set when an assign answers 200 and cleared
  by the holder before it sends its release; a 200 for a VM whose entry is set is a
  double assignment;
- in the database afterwards: per VM, the successful assigns and releases of
  audit_entries, in id order, must alternate (each is committed in the transaction of
  its change, so the ids follow the order of the changes); and the assignments table
  holds at most one ASSIGNED row per VM (none at the end, when every holder released),
  and the spans at most one open span per VM.
"""

import contextlib
import json
import os
import random
import threading
import time
from collections import Counter

from bench import common
from harness.round_trips import first_words

WORKERS = 4
THREADS = 16
NODES = 50
CLOUD = "bench"
OPTIONS = ("--access-logfile=/dev/null",)
HOLD_SECONDS = (0.001, 0.010)
# Successful assigns and releases per second with quotas off, at least.
TARGET_RATE = 400
# Binds the bench's agent on every limit that makes an assign count, and never refuses.
QUOTA_RULE = {"scope": "default", "max_vms": 1_000_000, "max_vm_hours": 1_000_000}
CONFIGURATIONS = {"off": {}, "on": {"QUOTAS": [QUOTA_RULE]}}
FARM = {"default": {"ENGINE": "dummy"}, CLOUD: {"ENGINE": "dummy", "USER": NODES + 1}}


def run(quick: bool = False, **_) -> common.Result:
    seconds, rounds = (2, 2) if quick else (10, 4)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(common.scratch_folder("bench-d-"))
        servers = {}
        for name, settings in CONFIGURATIONS.items():
            servers[name] = stack.enter_context(start_server(folder / name, settings))
        baseline = stack.enter_context(start_baseline(servers["off"]["vms"]))
        runs = {name: [] for name in servers}
        raw_runs = []
        for _ in range(rounds):
            for name, server in servers.items():
                runs[name].append(measure(server, seconds))
            raw_runs.append(measure_raw(baseline, seconds))
        standing = quota_standing(servers["on"])
        databases = {name: check_database(server["url"]) for name, server in servers.items()}
        raw_database = check_database(baseline["url"])
    load_after = os.getloadavg()

    summaries = {name: summarise(runs[name], databases[name]) for name in servers}
    raw = summarise(raw_runs, raw_database, setup_assigns=baseline["setup_assigns"])
    off, on = summaries["off"], summaries["on"]
    raw_ratio = off["pairs"] / raw["pairs"]
    raw_ratio_on = on["pairs"] / raw["pairs"]
    raw_round_ratios = [a["pairs"] / r["pairs"] for a, r in zip(runs["off"], raw_runs, strict=True)]
    rate_ratio = on["rate"] / off["rate"]
    cpu_ratio = (
        on["cpu_per_request"] / off["cpu_per_request"]
        if on["cpu_per_request"] and off["cpu_per_request"]
        else None
    )
    refusals = on["counts"]["assign 403"]
    doubles_client = sum(summary["doubles_client"] for summary in summaries.values())
    doubles_db = sum(summary["database"]["double_assigns"] for summary in summaries.values())
    raw_doubles = raw["doubles_client"] + raw["database"]["double_assigns"]
    cost = f"quotas on: {rate_ratio:.2f} times the rate" + (
        "" if cpu_ratio is None else f", {cpu_ratio:.2f} times the worker CPU per request"
    )
    round_ratios = [b["rate"] / a["rate"] for a, b in zip(runs["off"], runs["on"], strict=True)]
    measured = (
        f"quotas off {off['rate']:.0f} assign+release/s, on {on['rate']:.0f}/s "
        f"(ratio {rate_ratio:.2f}; per round "
        + ", ".join(f"{r:.2f}" for r in round_ratios)
        + ")"
        + (
            ""
            if cpu_ratio is None
            else f"; worker CPU {common.ms(off['cpu_per_request'])} and "
            f"{common.ms(on['cpu_per_request'])} per request"
        )
        + f"; {refusals} quota refusals; double assignments: {doubles_client} client, "
        f"{doubles_db} database. Raw SQL baseline {raw['pairs']:.0f} pairs/s against "
        f"quotas off {off['pairs']:.0f}: ratio dispatcher/raw {raw_ratio:.2f} (quotas on "
        f"{raw_ratio_on:.2f}); baseline double assignments {raw_doubles}"
    )
    gaps = []
    for name, summary in summaries.items():
        gaps += [f"quotas {name}: {gap}" for gap in summary["gaps"]]
    gaps += [f"raw SQL baseline: {gap}" for gap in raw["gaps"]]
    if refusals:
        gaps.append(f"{refusals} assigns refused by the quota, which must not bind")
    if off["rate"] < TARGET_RATE:
        gaps.append(f"{off['rate']:.0f} assign+release/s with quotas off, below {TARGET_RATE}")
    verdict = ("met" if not gaps else "missed: " + "; ".join(gaps)) + f"; {cost}"

    details = [
        f"{THREADS} client threads, {NODES} VMs, {WORKERS} workers; {rounds} rounds of "
        f"{seconds} s per configuration, alternating off, on, ...; hold "
        f"{HOLD_SECONDS[0] * 1000:.0f}-{HOLD_SECONDS[1] * 1000:.0f} ms; quotas on: QUOTAS = "
        f"[{QUOTA_RULE}]",
        f"load average (1, 5, 15 min) {format_load(load_before)} before, "
        f"{format_load(load_after)} after",
    ]
    details += baseline_lines(baseline)
    for index in range(rounds):
        for name in servers:
            details.append(round_line(name, index + 1, runs[name][index]))
        details.append(round_line("raw", index + 1, raw_runs[index]))
    for name, summary in summaries.items():
        details += summary_lines(name, summary)
    details += summary_lines("raw", raw)
    details.append(
        f"dispatcher against the raw SQL baseline (medians of the rounds, pairs against "
        f"pairs): quotas off {off['pairs']:.0f} / raw {raw['pairs']:.0f} pairs/s = "
        f"{raw_ratio:.3f}; quotas on {on['pairs']:.0f} / {raw['pairs']:.0f} = "
        f"{raw_ratio_on:.3f}; quotas off per round: "
        + ", ".join(f"{r:.3f}" for r in raw_round_ratios)
    )
    details.append(
        f"quotas on against off (medians): {rate_ratio:.2f} times the assign+release/s"
        + ("" if cpu_ratio is None else f", {cpu_ratio:.2f} times the worker CPU per request")
        + "; per round: "
        + ", ".join(f"{r:.2f}" for r in round_ratios)
    )
    details.append(
        f"quotas on, the agent's standing at the end: {standing['max_vms']} VMs held of "
        f"{QUOTA_RULE['max_vms']}, {standing['max_vm_hours']} VM-hours of "
        f"{QUOTA_RULE['max_vm_hours']} (the default rule's, both counted)"
    )
    return common.Result(
        key="d",
        title="(d) assign/release, gunicorn -w 4",
        measured=measured,
        target=(
            f">= {TARGET_RATE} assign+release/s (quotas off), 0 double assignments, "
            "0 quota refusals"
        ),
        verdict=verdict,
        details=details,
        figures={
            "operations_per_s": off["rate"],
            "operations_per_s_quotas": on["rate"],
            "pairs_per_s": off["pairs"],
            "pairs_per_s_quotas": on["pairs"],
            "raw_pairs_per_s": raw["pairs"],
            "raw_ratio": raw_ratio,
            "raw_ratio_quotas": raw_ratio_on,
            "raw_round_ratios": raw_round_ratios,
            "raw": {**raw, "counts": dict(raw["counts"]), "runs": raw_runs},
            "raw_statements": {
                name: [first_words(s) for s, _ in steps]
                for name, steps in baseline["steps"].items()
            },
            "quota_rate_ratio": rate_ratio,
            "quota_cpu_ratio": cpu_ratio,
            "quota_refusals": refusals,
            "quota_rule": QUOTA_RULE,
            "rounds": rounds,
            "round_seconds": seconds,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "configurations": {
                name: {**summary, "counts": dict(summary["counts"]), "runs": runs[name]}
                for name, summary in summaries.items()
            },
        },
    )


@contextlib.contextmanager
def start_server(folder, settings: dict):
    """A fresh schema and gunicorn on it with ``settings``, warmed up: a dict of the
    server, its URL, the agent's token and the cloud's VMs."""
    folder.mkdir()
    with common.postgresql_schema() as url:
        app = common.make_app(url)
        token = common.agent_token(app)
        common.dispose(app)
        env = common.server_env(
            url,
            folder,
            CLOUD_FARM=FARM,
            RELEASE_KEEPS_NODE=True,
            **settings,
        )
        with common.Gunicorn("dispatcher.wsgi:app", WORKERS, env, folder, OPTIONS) as server:
            vms = warm_up(server.port, token)
            yield {"server": server, "url": url, "token": token, "vms": vms}


def measure(served: dict, seconds: float) -> dict:
    """One round against the server: the clients' figures and the workers' CPU time per
    request; the holdings the ledger had before it."""
    server = served["server"]
    holdings = count_holdings(served["url"])
    cpu_before = server.worker_cpu_seconds()
    figures = hammer(server.port, served["token"], served["vms"], seconds)
    cpu_after = server.worker_cpu_seconds()
    counts = figures["counts"]
    requests = sum(counts.values())
    successes = counts["assign 200"] + counts["release 200"]
    figures.update(
        holdings_before=holdings,
        requests=requests,
        rate=successes / figures["elapsed"],
        pairs=counts["release 200"] / figures["elapsed"],
        requests_per_s=requests / figures["elapsed"],
        conflict_share=counts["assign 409"] / requests if requests else 0.0,
        cpu_per_request=(
            (cpu_after - cpu_before) / requests
            if cpu_before is not None and cpu_after is not None and requests
            else None
        ),
    )
    return figures


@contextlib.contextmanager
def start_baseline(vms: list[str]):
    """The raw SQL baseline on a schema of its own, with (d)'s cloud and settings: the
    statements of an assign, a refused assign and a release captured from the app
    in-process (bench/raw_ledger.py), the VMs adopted."""
    from bench import raw_ledger

    with common.postgresql_schema() as url:
        prepared = raw_ledger.prepare(url, FARM, CLOUD, vms, {"RELEASE_KEEPS_NODE": True})
        prepared["url"] = url
        yield prepared


def measure_raw(prepared: dict, seconds: float) -> dict:
    """One round of the raw SQL baseline: THREADS clients, each on a connection of its own."""
    holdings = count_holdings(prepared["url"])
    figures = hammer(0, "", list(prepared["rows"]), seconds, steps=lambda: RawSteps(prepared))
    counts = figures["counts"]
    requests = sum(counts.values())
    figures.update(
        holdings_before=holdings,
        requests=requests,
        rate=(counts["assign 200"] + counts["release 200"]) / figures["elapsed"],
        pairs=counts["release 200"] / figures["elapsed"],
        requests_per_s=requests / figures["elapsed"],
        conflict_share=counts["assign 409"] / requests if requests else 0.0,
        cpu_per_request=None,
    )
    return figures


def baseline_lines(prepared: dict) -> list[str]:
    """What the dispatcher sent for each captured step, and what the baseline replays."""

    lines = []
    for name, (trips, outline) in prepared["outline"].items():
        lines.append(
            f"the dispatcher's {name} in-process: {trips} round trips: " + "; ".join(outline)
        )
        replayed = [first_words(s) for s, _ in prepared["steps"][name]]
        lines.append("  raw SQL replays, in one transaction: " + "; ".join(replayed))
    return lines


def summarise(runs: list[dict], database: dict, setup_assigns: int = 0) -> dict:
    """A configuration's rounds: the medians of the rates, of the CPU per request and of
    the latencies; the answers and the double assignments summed; what is amiss.
    ``setup_assigns``: the successful assigns the history had before the rounds."""
    counts = sum((one["counts"] for one in runs), Counter())
    cpu = [one["cpu_per_request"] for one in runs if one["cpu_per_request"] is not None]
    summary = {
        "rate": common.median([one["rate"] for one in runs]),
        "pairs": common.median([one["pairs"] for one in runs]),
        "requests_per_s": common.median([one["requests_per_s"] for one in runs]),
        "conflict_share": counts["assign 409"] / max(1, sum(counts.values())),
        "cpu_per_request": common.median(cpu) if len(cpu) == len(runs) else None,
        "assign_p50": common.median([one["assign_p50"] for one in runs]),
        "assign_p99": common.median([one["assign_p99"] for one in runs]),
        "counts": counts,
        "doubles_client": sum(one["doubles"] for one in runs),
        "samples": {key: body for one in runs for key, body in one["samples"].items()},
        "database": database,
    }
    gaps = []
    doubles_db = database["double_assigns"]
    if summary["doubles_client"] or doubles_db or database["multiple_assigned_rows"]:
        gaps.append(
            f"double assignments: {summary['doubles_client']} client side, {doubles_db} in the "
            "database"
        )
    if database["multiple_open_spans"]:
        gaps.append(f"{database['multiple_open_spans']} VMs with more than one open span")
    unexpected = {key: n for key, n in counts.items() if key not in EXPECTED}
    if unexpected:
        gaps.append(f"unexpected answers {unexpected}")
    if database["ok_assigns"] - setup_assigns != counts["assign 200"]:
        gaps.append(
            f"{counts['assign 200']} assigns answered 200, the history has "
            f"{database['ok_assigns'] - setup_assigns}"
        )
    summary["gaps"] = gaps
    return summary


def label(name: str) -> str:
    """How the lines name a configuration: quotas off, quotas on, or the raw SQL baseline."""
    return "raw SQL" if name == "raw" else f"quotas {name}"


def round_line(name: str, index: int, one: dict) -> str:
    return (
        f"{label(name):>10} round {index}: {one['rate']:.0f} assign+release/s "
        f"({one['pairs']:.0f} pairs/s) "
        f"({one['requests_per_s']:.0f} req/s, {one['conflict_share']:.0%} 409) in "
        f"{one['elapsed']:.1f} s; assign p50 {common.ms(one['assign_p50'])}, "
        f"p99 {common.ms(one['assign_p99'])}"
        + (
            ""
            if one["cpu_per_request"] is None
            else f"; worker CPU {common.ms(one['cpu_per_request'])}/request"
        )
        + f"; {one['holdings_before']} holdings before"
    )


def summary_lines(name: str, summary: dict) -> list[str]:
    database = summary["database"]
    counts = summary["counts"]
    lines = [
        f"{label(name)} (medians of the rounds): {summary['rate']:.0f} assign+release/s "
        f"({summary['pairs']:.0f} pairs/s) "
        f"({summary['requests_per_s']:.0f} req/s, {summary['conflict_share']:.0%} 409); "
        f"assign p50 {common.ms(summary['assign_p50'])}, p99 {common.ms(summary['assign_p99'])}"
        + (
            ""
            if summary["cpu_per_request"] is None
            else f"; worker CPU {common.ms(summary['cpu_per_request'])}/request"
        ),
        f"{label(name)}, answers: " + ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())),
        f"{label(name)}, database: {database['audit_entries']} audit entries, "
        f"{database['ok_assigns']} ok assigns, {database['ok_releases']} ok releases, "
        f"{database['double_assigns']} assigns of a held VM, {database['double_releases']} "
        f"releases of a free VM; {database['multiple_assigned_rows']} VMs with more than one "
        f"ASSIGNED row, {database['assigned_at_end']} ASSIGNED at the end, "
        f"{database['multiple_open_spans']} VMs with more than one open span; "
        f"{summary['doubles_client']} double assignments client side",
    ]
    lines += [
        f"{label(name)}, first {key}: {body.decode(errors='replace')}"
        for key, body in summary["samples"].items()
    ]
    return lines


def format_load(load) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


EXPECTED = {"assign 200", "assign 409", "release 200"}


def warm_up(port: int, token: str) -> list[str]:
    """Concurrent listings of the cloud, so that every worker has loaded and answered;
    the ids of its VMs."""
    listed = []

    def send() -> None:
        client = common.HttpClient(port, token)
        try:
            for _ in range(5):
                status, body = client.send("GET", f"/api/v1/nodes/{CLOUD}")
                if status != 200:
                    raise RuntimeError(f"warm-up: {status} {body[:300]!r}")
                listed.append(json.loads(body)["nodes"])
        finally:
            client.close()

    threads = [threading.Thread(target=send) for _ in range(2 * WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(listed) != 5 * len(threads):
        raise RuntimeError("warm-up: some listings failed")
    vms = [node["id"] for node in listed[0] if node["id"] != "None"]
    if len(vms) != NODES:
        raise RuntimeError(f"the cloud lists {len(vms)} VMs with an id, not {NODES}")
    return vms


class HttpSteps:
    """A client of the dispatcher: an assign and a release are requests."""

    def __init__(self, port: int, token: str):
        self.client = common.HttpClient(port, token)

    def assign(self, vm: str, me: str) -> tuple[int, bytes]:
        return self.client.send(
            "PUT", f"/api/v1/vm/action/assign/{CLOUD}", {"node": vm, "user": me, "vm_type": "bench"}
        )

    def release(self, vm: str, _me: str) -> tuple[int, bytes]:
        return self.client.send("PUT", f"/api/v1/vm/action/release/{CLOUD}", {"node": vm})

    def close(self) -> None:
        self.client.close()


class RawSteps:
    """A client of the raw SQL baseline: an assign and a release are the dispatcher's
    statements replayed on a connection of its own; 200 when the row's UPDATE took it, 409
    when it did not."""

    def __init__(self, prepared: dict):
        import psycopg

        from bench import raw_ledger

        self.connection = psycopg.connect(**raw_ledger.conninfo(prepared["url"]))
        self.replayer = raw_ledger.Replayer(prepared, self.connection)

    def assign(self, vm: str, me: str) -> tuple[int, bytes]:
        return (200, b"") if self.replayer.step("assign", vm, me) else (409, b"")

    def release(self, vm: str, me: str) -> tuple[int, bytes]:
        return (200, b"") if self.replayer.step("release", vm, me) else (409, b"")

    def close(self) -> None:
        self.connection.close()


def hammer(port: int, token: str, vms: list[str], seconds: float, steps=None) -> dict:
    """THREADS clients assigning and releasing random VMs for ``seconds``: through the
    dispatcher on ``port``, or each through ``steps()`` (a RawSteps) when given."""
    holders: dict[str, str] = {}
    lock = threading.Lock()
    counts: Counter = Counter()
    doubles = []
    samples: dict[str, bytes] = {}  # the first body of each unexpected answer
    assign_latencies: list[float] = []

    def client_loop(index: int, deadline: float) -> None:
        me = f"bench-user-{index:02d}"
        rng = random.Random(index)
        client = steps() if steps is not None else HttpSteps(port, token)
        mine: Counter = Counter()
        latencies = []
        try:
            while time.monotonic() < deadline:
                vm = rng.choice(vms)
                started = time.perf_counter()
                status, body = client.assign(vm, me)
                latencies.append(time.perf_counter() - started)
                mine[f"assign {status}"] += 1
                if status not in (200, 409):
                    samples.setdefault(f"assign {status}", body[:300])
                if status != 200:
                    continue
                with lock:
                    if vm in holders:
                        doubles.append((vm, holders[vm], me))
                    holders[vm] = me
                time.sleep(rng.uniform(*HOLD_SECONDS))
                with lock:
                    if holders.get(vm) == me:
                        del holders[vm]
                status, body = client.release(vm, me)
                mine[f"release {status}"] += 1
                if status != 200:
                    samples.setdefault(f"release {status}", body[:300])
        finally:
            client.close()
            with lock:
                counts.update(mine)
                assign_latencies.extend(latencies)

    elapsed = common.run_clients(THREADS, client_loop, seconds)
    return {
        "counts": counts,
        "doubles": len(doubles),
        "samples": samples,
        "elapsed": elapsed,
        "assign_p50": common.percentile(assign_latencies, 0.50),
        "assign_p99": common.percentile(assign_latencies, 0.99),
    }


def quota_standing(served: dict) -> dict:
    """What the quotas-on server counts for the agent in any pool, by
    ``GET /api/v1/quotas/me``: the VMs and VM-hours used.

    :raises RuntimeError: the bench's rule is not what binds the agent's VMs and VM-hours.
    """
    status, body = common.request(
        served["server"].port, "GET", "/api/v1/quotas/me", served["token"]
    )
    if status != 200:
        raise RuntimeError(f"quotas/me: {status} {body[:300]!r}")
    anywhere = next(entry for entry in json.loads(body)["quota"]["pools"] if entry["pool"] is None)
    used = {}
    for limit in ("max_vms", "max_vm_hours"):
        entry = anywhere[limit]
        rule = entry["rule"] or {}
        if entry["limit"] != QUOTA_RULE[limit] or rule.get("scope") != "default":
            raise RuntimeError(f"quotas on, {limit} is not the bench's rule's: {entry}")
        used[limit] = entry["used"]
    return used


def count_holdings(url: str) -> int:
    """The assigned spans (the holdings): what an assign with a VM-hours limit reads."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sqlalchemy.text("SELECT count(*) FROM spans WHERE status = 2")
            ).scalar()
    finally:
        engine.dispose()


def check_database(url: str) -> dict:
    """Per VM, do the successful assigns and releases of the history alternate? Has any
    VM two ASSIGNED rows, or two open spans?"""
    import sqlalchemy

    from dispatcher.models import ASSIGNED

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            entries = conn.execute(
                sqlalchemy.text(
                    "SELECT id_vm, action, outcome FROM audit_entries "
                    "WHERE cloud = :cloud ORDER BY id"
                ),
                {"cloud": CLOUD},
            ).all()
            assigned = conn.execute(
                sqlalchemy.text(
                    "SELECT id_vm, count(*) FROM assignments "
                    "WHERE cloud = :cloud AND status = :assigned GROUP BY id_vm"
                ),
                {"cloud": CLOUD, "assigned": ASSIGNED},
            ).all()
            open_spans = conn.execute(
                sqlalchemy.text(
                    "SELECT assignment_id, count(*) FROM spans WHERE ended_at IS NULL "
                    "AND cloud = :cloud GROUP BY assignment_id HAVING count(*) > 1"
                ),
                {"cloud": CLOUD},
            ).all()
    finally:
        engine.dispose()
    held: dict[str, bool] = {}
    double_assigns = double_releases = ok_assigns = ok_releases = 0
    for id_vm, action, outcome in entries:
        if outcome != "ok":
            continue
        if action == "assign":
            ok_assigns += 1
            double_assigns += held.get(id_vm, False)
            held[id_vm] = True
        elif action == "release":
            ok_releases += 1
            double_releases += not held.get(id_vm, False)
            held[id_vm] = False
    return {
        "audit_entries": len(entries),
        "ok_assigns": ok_assigns,
        "ok_releases": ok_releases,
        "double_assigns": double_assigns,
        "double_releases": double_releases,
        "multiple_assigned_rows": sum(1 for _, n in assigned if n > 1),
        "assigned_at_end": sum(n for _, n in assigned),
        "multiple_open_spans": len(open_spans),
    }
