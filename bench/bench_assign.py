"""(d) Assign and release through gunicorn with 4 workers on PostgreSQL.

A Dummy cloud ``bench`` of 50 VMs: libcloud's DummyNodeDriver(51), whose node ``dummy-0``
is left out (libcloud's Node turns the id 0 into None). RELEASE_KEEPS_NODE = True: the Dummy
driver's nodes live in each worker, and a node destroyed in one would live on in the others.
Client threads loop: pick a random VM, ``PUT /api/v1/vm/action/assign/bench``; on 200 hold
it a few milliseconds, then ``PUT .../release``. A 409 (someone else holds it) moves on to
another.

Double assignments are counted twice:

- by the clients: a shared dict VM -> holder, set when an assign answers 200 and cleared
  by the holder before it sends its release; a 200 for a VM whose entry is set is a
  double assignment;
- in the database afterwards: per VM, the successful assigns and releases of
  audit_entries, in id order, must alternate (each is committed in the transaction of
  its change, so the ids follow the order of the changes); and the assignments table
  holds at most one ASSIGNED row per VM (none at the end, when every holder released).
"""

import json
import random
import threading
import time
from collections import Counter

from bench import common

WORKERS = 4
THREADS = 16
NODES = 50
CLOUD = "bench"
OPTIONS = ("--access-logfile=/dev/null",)
HOLD_SECONDS = (0.001, 0.010)
# Successful assigns and releases per second, at least.
TARGET_RATE = 400


def run(quick: bool = False, **_) -> common.Result:
    seconds = 3 if quick else 20
    with common.scratch_folder("bench-d-") as folder, common.postgresql_schema() as url:
        app = common.make_app(url)
        token = common.agent_token(app)
        common.dispose(app)
        env = common.server_env(
            url,
            folder,
            CLOUD_FARM={
                "default": {"ENGINE": "dummy"},
                CLOUD: {"ENGINE": "dummy", "USER": NODES + 1},
            },
            RELEASE_KEEPS_NODE=True,
        )
        with common.Gunicorn("dispatcher.wsgi:app", WORKERS, env, folder, OPTIONS) as server:
            vms = warm_up(server.port, token)
            cpu_before = server.worker_cpu_seconds()
            client_side = hammer(server.port, token, vms, seconds)
            cpu_after = server.worker_cpu_seconds()
        database = check_database(url)

    counts = client_side["counts"]
    elapsed = client_side["elapsed"]
    requests = sum(counts.values())
    successes = counts["assign 200"] + counts["release 200"]
    conflicts = counts["assign 409"]
    unexpected = {key: n for key, n in counts.items() if key not in EXPECTED}
    doubles_client = client_side["doubles"]
    doubles_db = database["double_assigns"]
    measured = (
        f"{successes / elapsed:.0f} assign+release/s ({requests / elapsed:.0f} req/s, "
        f"{conflicts / requests:.0%} 409); double assignments: {doubles_client} client, "
        f"{doubles_db} database"
    )
    gaps = []
    if doubles_client or doubles_db or database["multiple_assigned_rows"]:
        gaps.append(
            f"double assignments: {doubles_client} client side, {doubles_db} in the database"
        )
    if unexpected:
        gaps.append(f"unexpected answers {unexpected}")
    if successes / elapsed < TARGET_RATE:
        gaps.append(f"{successes / elapsed:.0f} assign+release/s, below {TARGET_RATE}")
    if database["ok_assigns"] != counts["assign 200"]:
        gaps.append(
            f"{counts['assign 200']} assigns answered 200, the history has {database['ok_assigns']}"
        )
    cpu_per_request = (
        (cpu_after - cpu_before) / requests
        if cpu_before is not None and cpu_after is not None and requests
        else None
    )
    details = [
        f"{THREADS} client threads, {NODES} VMs, {WORKERS} workers, {elapsed:.1f} s; "
        f"hold {HOLD_SECONDS[0] * 1000:.0f}-{HOLD_SECONDS[1] * 1000:.0f} ms",
        "answers: " + ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())),
        f"assign latency p50 {common.ms(client_side['assign_p50'])}, "
        f"p99 {common.ms(client_side['assign_p99'])}"
        + ("" if cpu_per_request is None else f"; worker CPU {common.ms(cpu_per_request)}/request"),
        f"database: {database['audit_entries']} audit entries, {database['ok_assigns']} ok "
        f"assigns, {database['ok_releases']} ok releases, {doubles_db} assigns of a held VM, "
        f"{database['double_releases']} releases of a free VM; "
        f"{database['multiple_assigned_rows']} VMs with more than one ASSIGNED row, "
        f"{database['assigned_at_end']} ASSIGNED at the end",
    ]
    details += [
        f"first {key}: {body.decode(errors='replace')}"
        for key, body in client_side["samples"].items()
    ]
    return common.Result(
        key="d",
        title="(d) assign/release, gunicorn -w 4",
        measured=measured,
        target=f">= {TARGET_RATE} assign+release/s, 0 double assignments",
        verdict="met" if not gaps else "missed: " + "; ".join(gaps),
        details=details,
        figures={
            "operations_per_s": successes / elapsed,
            "requests_per_s": requests / elapsed,
            "conflict_share": conflicts / requests,
            "counts": dict(counts),
            "double_assignments_client": doubles_client,
            "database": database,
            "seconds": elapsed,
            "assign_p50": client_side["assign_p50"],
            "assign_p99": client_side["assign_p99"],
            "worker_cpu_per_request": cpu_per_request,
        },
    )


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


def hammer(port: int, token: str, vms: list[str], seconds: float) -> dict:
    """THREADS clients assigning and releasing random VMs for ``seconds``."""
    holders: dict[str, str] = {}
    lock = threading.Lock()
    counts: Counter = Counter()
    doubles = []
    samples: dict[str, bytes] = {}  # the first body of each unexpected answer
    assign_latencies: list[float] = []

    def client_loop(index: int, deadline: float) -> None:
        me = f"bench-user-{index:02d}"
        rng = random.Random(index)
        client = common.HttpClient(port, token)
        mine: Counter = Counter()
        latencies = []
        try:
            while time.monotonic() < deadline:
                vm = rng.choice(vms)
                started = time.perf_counter()
                status, body = client.send(
                    "PUT",
                    f"/api/v1/vm/action/assign/{CLOUD}",
                    {"node": vm, "user": me, "vm_type": "bench"},
                )
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
                status, body = client.send(
                    "PUT", f"/api/v1/vm/action/release/{CLOUD}", {"node": vm}
                )
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


def check_database(url: str) -> dict:
    """Per VM, do the successful assigns and releases of the history alternate?"""
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
    }
