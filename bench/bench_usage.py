"""(g) The usage report of a month on a ledger of 1,000,000 spans, on PostgreSQL, in-process.

The ledger is made by the database itself, in a fresh schema: one ``INSERT ... SELECT``
over ``generate_series``, seeded, then VACUUM ANALYZE. Slots of PER_SLOT spans side by
side over DAYS days (1,000 slots for 1,000,000 spans), each slot one VM after another,
as a pool keeps its VMs: a VM boots, is free and assigned in turn (4 to 20 assigns), and
ends free (retired) or, one in four, faulty; the next VM of its slot boots at once. Now
and then a free span is one set aside for a queued request (RESERVED) instead. An assign
goes to one of USERS users (a few heavy, many light), by one of five agents, with the tags
``{"project": ...}`` (mostly the user's own of PROJECTS, sometimes another; one in ten
without tags), one in three with a ``"ticket"`` too. Each slot's spans are stretched to
end at "now", its last one still open. POOL_COUNT pools on three clouds, and one slot in
21 a VM of no pool; PRICES per cloud and size, and one pool in five a ``price_per_hour``
of its own. REQUESTS_PER_DAY queued requests a day, nine in ten ready after a wait.

``report()`` (what ``GET /api/v1/usage`` answers) is timed in-process for MONTH, the
middle 30 of the 90 days, with the dispatcher's clock at the end of the 90 days: by user,
by tag:project, by pool, and by user and pool. After one report of each that is not
counted (the database's caches warm), the groupings take turns, round after round.
Reported: the median and the worst of each, the time of each statement the report sends
(EXPLAIN ANALYZE, once), and the totals, which a reader can check: every slot holds a VM
at every moment, so the month's assigned, idle and faulty hours add up to the slots
times the month's 720 hours.

``python -m bench.bench_usage [--spans N] [--runs N] [--plans]``, or ``python -m bench.run
--only usage``.
"""

import argparse
import datetime
import os
import sys
import time

from bench import common

SPANS = 1_000_000
DAYS = 90
USERS = 2_000
PROJECTS = 50
POOL_COUNT = 20
# The spans of a slot; the slots are the VMs alive at any moment.
PER_SLOT = 1_000
REQUESTS_PER_DAY = 40
SEED = 0.42

ORIGIN = datetime.datetime(2026, 8, 2, tzinfo=datetime.UTC)
NOW = ORIGIN + datetime.timedelta(days=DAYS)  # 2026-10-31
MONTH = (  # September 2026: days 30 to 60
    datetime.datetime(2026, 9, 1, tzinfo=datetime.UTC),
    datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC),
)
GROUPINGS = {
    "user": ["user"],
    "tag:project": ["tag:project"],
    "pool": ["pool"],
    "user, pool": ["user", "pool"],
}
# The median of the month's report, at most, in seconds.
TARGETS = {"user": 0.5, "tag:project": 1.0}

CLOUDS = ("aws", "gcp", "openstack")
FARM = {cloud: {"ENGINE": "dummy"} for cloud in CLOUDS}
PRICES = {
    "aws": {"t3.medium": 0.0416, "m5.large": 0.096, "c5.xlarge": 0.17, "*": 0.1},
    "gcp": {"e2-standard-2": 0.067, "n2-standard-4": 0.194},
    "openstack": {"*": 0.02},
}
# A VM of no pool: its cloud and size.
NO_POOL = ("aws", "m5.large")


def pool_of(number: int) -> tuple[str, str, str]:
    """Pool ``number`` (1 to POOL_COUNT): its name, cloud and size."""
    if number <= 8:
        cloud, sizes = "aws", ("t3.medium", "m5.large", "c5.xlarge")
    elif number <= 14:
        cloud, sizes = "gcp", ("e2-standard-2", "n2-standard-4")
    else:
        cloud, sizes = "openstack", ("m1.small", "m1.large")
    return f"pool-{number:02d}", cloud, sizes[number % len(sizes)]


def pool_settings() -> dict:
    """POOLS: one pool in five with a price of its own."""
    pools = {}
    for number in range(1, POOL_COUNT + 1):
        name, cloud, size = pool_of(number)
        entry = {"cloud": cloud, "image": "1", "size": size}
        if number % 5 == 0:
            entry["price_per_hour"] = 0.05 * number / 5
        pools[name] = {"clouds": [entry], "min_ready": 0, "max_total": 100}
    return pools


# -- the ledger --------------------------------------------------------------------------

# One row per span: slot s, its span k. The slot's VMs follow each other: a VM lives
# ``life`` spans (its boot, then free and assigned in turn, then its last span), the
# slot's first one entered (s * 13) % life spans into its life. Each length is drawn
# (seconds), then every slot stretched so that its spans cover the DAYS days, "now"
# falling at ``now_at`` (a fraction) of its last span, which is open.
FILL_SPANS = """
WITH slots AS (
    SELECT s,
           (s - 1) % (:pools + 1) + 1 AS pool_no,
           2 + 2 * (4 + (s * 7) % 17) AS life,
           0.05 + 0.9 * random() AS now_at
    FROM generate_series(1, :slots) AS s
), drawn AS (
    SELECT slots.*, k,
           (k + (s * 13) % life) / life AS vm,
           (k + (s * 13) % life) % life AS pos,
           random() AS r_kind, random() AS r_time, random() AS r_user, random() AS r_holder,
           random() AS r_tags, random() AS r_ticket, random() AS r_lease
    FROM slots CROSS JOIN generate_series(0, :per_slot - 1) AS k
), kinds AS (
    SELECT drawn.*,
           CASE WHEN pos = 0 THEN 5                          -- booting
                WHEN pos = life - 1 AND r_kind < 0.25 THEN 3  -- faulty, its last
                WHEN pos % 2 = 1 AND r_kind < 0.03 THEN 6     -- set aside for a request
                WHEN pos % 2 = 1 THEN 1                       -- free
                ELSE 2 END AS status,                         -- assigned
           floor(:users * r_user * r_user)::int AS user_no
    FROM drawn
), timed AS (
    SELECT kinds.*,
           CASE status
               WHEN 5 THEN 60 + 240 * r_time
               WHEN 3 THEN 300 + 3300 * r_time
               WHEN 6 THEN 5 + 120 * r_time
               WHEN 1 THEN 30 - 4500 * ln(1 - r_time)
               ELSE 300 - 10500 * ln(1 - r_time) END AS length
    FROM kinds
), placed AS (
    SELECT timed.*, sum(length) OVER (PARTITION BY s ORDER BY k) - length AS offset_
    FROM timed
), stretched AS (
    SELECT placed.*,
           :days * 86400.0 / last_value(offset_ + now_at * length) OVER (
               PARTITION BY s ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING
               AND UNBOUNDED FOLLOWING) AS factor
    FROM placed
), moments AS (
    SELECT stretched.*,
           CAST(:origin AS timestamptz) + make_interval(secs => offset_ * factor) AS began,
           CAST(:origin AS timestamptz)
               + make_interval(secs => (offset_ + length) * factor) AS ended
    FROM stretched
)
INSERT INTO spans (assignment_id, cloud, pool, vm_type, size, status, "user", holder, tags,
                   request_id, started_at, lease_until, ended_at)
SELECT s * 1000 + vm,
       (CAST(:clouds AS text[]))[pool_no],
       CASE WHEN pool_no <= :pools THEN 'pool-' || lpad(pool_no::text, 2, '0') END,
       CASE WHEN pool_no <= :pools THEN 'pool-' || lpad(pool_no::text, 2, '0')
            ELSE 'adhoc' END,
       (CAST(:sizes AS text[]))[pool_no],
       status,
       CASE WHEN status = 2 THEN 'user-' || lpad(user_no::text, 4, '0') END,
       CASE WHEN status <> 2 THEN NULL
            WHEN r_holder < 0.4 THEN 'ci-agent'
            WHEN r_holder < 0.7 THEN 'portal'
            WHEN r_holder < 0.85 THEN 'jupyterhub'
            WHEN r_holder < 0.95 THEN 'batch'
            ELSE 'admin' END,
       CASE WHEN status <> 2 OR r_tags < 0.1 THEN NULL
            ELSE json_strip_nulls(json_build_object(
                'project', 'project-' || lpad((CASE WHEN r_tags < 0.8 THEN user_no % :projects
                    ELSE floor((r_tags - 0.8) * 5 * :projects)::int END)::text, 2, '0'),
                'ticket', CASE WHEN r_ticket < 0.33
                    THEN 'OPS-' || (1000 + floor(r_ticket * 30000)::int) END)) END,
       CASE WHEN status = 6 THEN s * 100000 + k END,
       began,
       CASE WHEN status = 2 AND r_lease < 0.8
            THEN ended + make_interval(secs => 3600 * r_lease) END,
       CASE WHEN k < :per_slot - 1 THEN ended END
FROM moments
ORDER BY began, s  -- as the ledger writes them: in the order they begin
"""

# Queued requests for one or two pools, nine in ten ready after a wait of a minute or
# two (some much longer), the others expired.
FILL_REQUESTS = """
WITH asked AS (
    SELECT i, random() AS r_at, random() AS r_wait, random() AS r_user, random() AS r_pool,
           random() AS r_two
    FROM generate_series(1, :count) AS i
), timed AS (
    SELECT asked.*,
           CAST(:origin AS timestamptz)
               + make_interval(secs => (i - 1 + r_at) * :days * 86400.0 / :count) AS created,
           floor(:users * r_user * r_user)::int AS user_no,
           1 + floor(r_pool * :pools)::int AS pool_no
    FROM asked
)
INSERT INTO vm_requests (state, caller, "user", priority, vms, tags, created_at, expires_at,
                         ready_at, ended_at)
SELECT CASE WHEN r_wait < 0.9 THEN 'ready' ELSE 'expired' END,
       CASE WHEN i % 3 = 0 THEN 'portal' ELSE 'ci-agent' END,
       'user-' || lpad(user_no::text, 4, '0'),
       2,
       CASE WHEN r_two < 0.2
            THEN json_build_object('pool-' || lpad(pool_no::text, 2, '0'), 1,
                                   'pool-' || lpad((pool_no % :pools + 1)::text, 2, '0'), 2)
            ELSE json_build_object('pool-' || lpad(pool_no::text, 2, '0'), 1 + i % 3) END,
       json_build_object('project', 'project-' || lpad((user_no % :projects)::text, 2, '0')),
       created,
       created + INTERVAL '1 hour',
       CASE WHEN r_wait < 0.9
            THEN created + make_interval(secs => 20 - 90 * ln(1 - r_wait / 0.9)) END,
       CASE WHEN r_wait >= 0.9 THEN created + INTERVAL '1 hour' END
FROM timed
"""


def fill(app, spans: int) -> dict:
    """The ledger: ``spans`` spans (a multiple of PER_SLOT) and the queued requests, then
    VACUUM ANALYZE (the hint bits set and the planner's statistics taken, as an aged
    ledger has them). What it holds, and the seconds taken."""
    import sqlalchemy

    from dispatcher.extensions import db

    pools = [pool_of(number) for number in range(1, POOL_COUNT + 1)]
    values = {
        "slots": spans // PER_SLOT,
        "per_slot": PER_SLOT,
        "pools": POOL_COUNT,
        # By pool number; the last, a VM of no pool.
        "clouds": [cloud for _, cloud, _ in pools] + [NO_POOL[0]],
        "sizes": [size for _, _, size in pools] + [NO_POOL[1]],
        "users": USERS,
        "projects": PROJECTS,
        "days": DAYS,
        "origin": ORIGIN.isoformat(),
        "count": REQUESTS_PER_DAY * DAYS,
    }
    started = time.perf_counter()
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sqlalchemy.select(sqlalchemy.func.setseed(SEED)))
            conn.execute(sqlalchemy.text(FILL_SPANS), values)
            conn.execute(sqlalchemy.text(FILL_REQUESTS), values)
        inserted = time.perf_counter() - started
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("VACUUM ANALYZE spans"))
            conn.execute(sqlalchemy.text("VACUUM ANALYZE vm_requests"))
            found = conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) AS spans, count(*) FILTER (WHERE ended_at IS NULL) AS open,"
                    " count(*) FILTER (WHERE status = 2) AS assigned,"
                    ' count(DISTINCT "user") AS users, min(started_at) AS first,'
                    " max(coalesce(ended_at, started_at)) AS last,"
                    " pg_total_relation_size('spans') AS bytes FROM spans"
                )
            ).one()
            requests = conn.scalar(sqlalchemy.text("SELECT count(*) FROM vm_requests"))
    return {
        "seconds": time.perf_counter() - started,
        "insert_seconds": inserted,
        "slots": values["slots"],
        "requests": requests,
        **found._asdict(),
    }


# -- the report --------------------------------------------------------------------------


def time_reports(app, runs: int) -> tuple[dict, dict]:
    """Each grouping's report once (not counted), then ``runs`` rounds in which every
    grouping takes its turn: the seconds of each, and each grouping's last report."""
    from dispatcher import clock, usage
    from dispatcher.extensions import db

    samples = {name: [] for name in GROUPINGS}
    found = {}
    with app.app_context(), clock.running_on(lambda: NOW):
        for round_ in range(runs + 1):
            for name, group_by in GROUPINGS.items():
                db.session.remove()  # each report on a session of its own, as a request's
                started = time.perf_counter()
                found[name] = usage.report(*MONTH, group_by)
                seconds = time.perf_counter() - started
                if round_:
                    samples[name].append(seconds)
        db.session.remove()
    return samples, found


def plans(app, group_by: list[str]) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement the report sends for ``group_by``:
    the statement, its plan, its time in milliseconds."""
    import sqlalchemy

    from dispatcher import clock, usage
    from dispatcher.extensions import db

    sent = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    with app.app_context(), clock.running_on(lambda: NOW):
        sqlalchemy.event.listen(db.engine, "before_cursor_execute", record)
        try:
            usage.report(*MONTH, group_by)
        finally:
            sqlalchemy.event.remove(db.engine, "before_cursor_execute", record)
        db.session.remove()
        explained = []
        with db.engine.connect() as conn:
            cursor = conn.connection.cursor()
            for statement, parameters in sent:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = [row[0] for row in cursor.fetchall()]
                ms = next(
                    (float(line.split()[2]) for line in plan if line.startswith("Execution")),
                    float("nan"),
                )
                explained.append({"statement": statement, "plan": plan, "ms": ms})
            cursor.close()
    return explained


def plan_summary(plan: list[str]) -> str:
    """A plan's nodes, outermost first, with how each sort went (in memory or on disk)."""
    nodes = []
    for line in plan:
        text = line.strip().removeprefix("->").strip()
        if "(cost=" in text:
            nodes.append(text.split("  (cost=")[0])
        elif text.startswith("Sort Method:") and nodes:
            nodes[-1] += f" [{text.removeprefix('Sort Method: ')}]"
        elif text.startswith("Workers Launched:") and nodes:
            nodes[-1] += f" [{text.lower()}]"
    return "; ".join(nodes)


def run(
    quick: bool = False,
    spans: int | None = None,
    runs: int | None = None,
    show_plans: bool = False,
    **_,
) -> common.Result:
    spans = spans or (200_000 if quick else SPANS)
    runs = runs or (3 if quick else 7)
    load_before = os.getloadavg()
    with common.postgresql_schema() as url:
        app = common.make_app(url, CLOUD_FARM=FARM, POOLS=pool_settings(), PRICES=PRICES)
        ledger = fill(app, spans)
        samples, found = time_reports(app, runs)
        explained = {name: plans(app, group_by) for name, group_by in GROUPINGS.items()}
        common.dispose(app)
    load_after = os.getloadavg()
    result = summarize(ledger, runs, samples, found, explained, (load_before, load_after))
    if show_plans:
        for name, statements in explained.items():
            for index, one in enumerate(statements, 1):
                result.details += [f"-- by {name}, statement {index}:", one["statement"]]
                result.details += one["plan"]
    return result


def summarize(ledger, runs, samples, found, explained, loads) -> common.Result:
    stats = {
        name: {"median": common.median(values), "worst": max(values)}
        for name, values in samples.items()
    }
    rows = [["group by", "groups", "median", "worst", "its statements (EXPLAIN ANALYZE)"]]
    for name in GROUPINGS:
        rows.append(
            [
                name,
                f"{len(found[name]['groups']):,}",
                common.ms(stats[name]["median"]),
                common.ms(stats[name]["worst"]),
                " + ".join(f"{one['ms']:.0f}" for one in explained[name]) + " ms",
            ]
        )
    total = found["user"]["total"]
    hours = {kind: total[f"{kind}_seconds"] / 3600 for kind in ("assigned", "idle", "faulty")}
    month_hours = (MONTH[1] - MONTH[0]).total_seconds() / 3600
    details = [
        f"PostgreSQL, {ledger['spans']:,} spans ({ledger['assigned']:,} assigned, "
        f"{ledger['open']:,} open) from {ledger['first']:%Y-%m-%d %H:%M} to "
        f"{ledger['last']:%Y-%m-%d %H:%M}, {ledger['users']:,} users, {POOL_COUNT} pools, "
        f"{ledger['slots']:,} VMs at any moment; {ledger['requests']:,} queued requests; "
        f"{ledger['bytes'] / 2**20:,.0f} MiB with the indexes; inserted in "
        f"{ledger['insert_seconds']:.0f} s, {ledger['seconds']:.0f} s with VACUUM ANALYZE",
        f"the month {MONTH[0]:%Y-%m-%d} to {MONTH[1]:%Y-%m-%d}, now {NOW:%Y-%m-%d %H:%M}; "
        f"{runs} rounds after one not counted",
        f"load average (1, 5, 15 min) {format_load(loads[0])} before, "
        f"{format_load(loads[1])} after",
        *common.table(rows).splitlines(),
        f"the month's total: assigned {hours['assigned']:,.0f} VM-hours, idle "
        f"{hours['idle']:,.0f}, faulty {hours['faulty']:,.0f}: {sum(hours.values()):,.0f} "
        f"in all, for {ledger['slots']:,} VMs x {month_hours:.0f} h = "
        f"{ledger['slots'] * month_hours:,.0f}; cost {total['cost']:,.2f}; "
        f"{total['assigns']:,} assigns, {total['releases']:,} releases; at most "
        f"{total['peak_held']:,} VMs held at once; {total['requests_ready']:,} requests "
        f"ready, waits p50 {total['wait_p50']} s, p95 {total['wait_p95']} s",
        "the same total in every grouping: "
        + ("yes" if all(one["total"] == total for one in found.values()) else "NO"),
    ]
    for index, one in enumerate(explained["user"], 1):
        details.append(
            f"by user, statement {index} ({one['ms']:.0f} ms): {plan_summary(one['plan'])}"
        )
    gaps = [
        f"by {name} {common.ms(stats[name]['median'])}, not under {common.ms(target)}"
        for name, target in TARGETS.items()
        if stats[name]["median"] >= target
    ]
    measured = f"{ledger['spans']:,} spans, a month: " + "; ".join(
        f"by {name} {common.ms(stats[name]['median'])} (worst {common.ms(stats[name]['worst'])})"
        for name in GROUPINGS
    )
    verdict = "met" if not gaps else "missed: " + "; ".join(gaps)
    if ledger["spans"] != SPANS:
        verdict = f"not judged ({ledger['spans']:,} spans, not {SPANS:,}); would be {verdict}"
    return common.Result(
        key="g",
        title="(g) usage report of a month",
        measured=measured,
        target=f"{SPANS:,} spans: by user < 500 ms, by tag < 1 s (median)",
        verdict=verdict,
        details=details,
        figures={
            "ledger": ledger,
            "runs": runs,
            "stats": stats,
            "samples": samples,
            "totals": {name: one["total"] for name, one in found.items()},
            "statement_ms": {name: [one["ms"] for one in explained[name]] for name in GROUPINGS},
            "load_average_before": loads[0],
            "load_average_after": loads[1],
        },
    )


def format_load(load) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the usage report of a month on a generated ledger (PostgreSQL)."
    )
    parser.add_argument("--spans", type=int, default=SPANS, help="spans in the ledger")
    parser.add_argument("--runs", type=int, default=7, help="rounds counted")
    parser.add_argument("--plans", action="store_true", help="print each statement's plan")
    args = parser.parse_args(argv)
    if args.spans < PER_SLOT or args.spans % PER_SLOT:
        parser.error(f"--spans: a multiple of {PER_SLOT:,}")
    try:
        result = run(spans=args.spans, runs=args.runs, show_plans=args.plans)
    except common.Skipped as exc:
        print(f"not run: {exc}")
        return 1
    for line in result.details:
        print(line)
    print(f"{result.measured}\ntarget: {result.target}; {result.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
