"""(e) An assign from a warm pool against a cold start, through gunicorn with 4 workers.

The cloud ``default`` is moto's EC2 on loopback (harness/ec2_cloud.py), in the bench's
process; the ledger is on PostgreSQL. A pool ``web`` of 10 VMs there, ``release:
"reuse"``, is filled beforehand by ``dispatcher worker pass --wait``, as an operator
would before opening the doors; gunicorn does not run the pool manager.

- *warm*: ``PUT /api/v1/vm/action/assign`` with ``{"vm_type": "web", "user": ...}``, timed;
  then the VM is released (not timed), back to the pool for the next assign.
- *cold*: ``POST /api/v1/vm/start/default`` (a RunInstances), then ``PUT
  /api/v1/vm/action/assign/default`` naming the new VM's id, timed together: what a client
  does without a pool.

- *bare*: the same requests as *warm* (the assign timed, then the release), to
  bench/bare_app.py under the same gunicorn command, config, workers and options, serving
  the body of a warm assign's answer and checking nothing: what any Flask app under this
  gunicorn costs. The warm assign's p99 over the bare app's, at the same concurrency, is
  what the ledger's write path and the dispatcher's request handling add.

Before the clock runs, each path runs from 8 concurrent clients, so that every worker has
served it once and looked the image up (IMAGE_CACHE_SECONDS): what is measured is the steady
state. Then each path runs with one client, then with 4 concurrent ones: warm and bare
alternate for ROUNDS rounds (their samples pooled, the ratio of each round's p99s shown
too), then cold once; the two servers run side by side, each idle while the other is
measured.
moto's instances run at once: a real cloud's boot time, tens of seconds or more, comes on
top of the cold path here.
"""

import json
import subprocess
import sys
import threading
import time

from bench import common
from harness.ec2_cloud import Ec2Cloud

WORKERS = 4
CLOUD = "default"
POOL = "web"
SIZE = "t2.micro"
POOL_SIZE = 10
CONCURRENT = 4
# Rounds of the warm and the bare paths, alternating: their samples are pooled. The
# machine's other load comes and goes over seconds, and a round of the bare app lasts
# about one: in many short rounds each path meets it as often as the other.
ROUNDS = 10
OPTIONS = ("--access-logfile=/dev/null",)


def run(quick: bool = False, **_) -> common.Result:
    # 300 warm assigns a round, 3,000 in all: their p99 is the thirtieth slowest, not one
    # stray pause.
    counts = {"warm": 40, "cold": 20} if quick else {"warm": 300, "cold": 100}
    with (
        Ec2Cloud() as cloud,
        common.scratch_folder("bench-e-") as folder,
        common.postgresql_schema() as url,
    ):
        image = cloud.default_image_id()
        app = common.make_app(url)
        token = common.agent_token(app)
        common.dispose(app)
        pools = {
            POOL: {
                "clouds": [{"cloud": CLOUD, "image": image, "size": SIZE}],
                "min_ready": POOL_SIZE,
                "max_total": POOL_SIZE,
                "release": "reuse",
            }
        }
        env = common.server_env(url, folder, CLOUD_FARM={CLOUD: cloud.farm_entry()}, POOLS=pools)
        fill_seconds = fill_pool(env)
        filled_with = cloud.count("RunInstances")
        paths = {
            "warm": lambda client, me, index: warm_assign(client, me),
            "cold": lambda client, me, index: cold_assign(client, me, index, image),
        }
        phases = []
        with common.Gunicorn("dispatcher.wsgi:app", WORKERS, env, folder, OPTIONS) as server:
            warm_up(server.port, token)
            for path in paths.values():
                prime = measure(server.port, token, 2 * WORKERS, 2 * WORKERS, path)
                if prime["failures"]:
                    raise RuntimeError(f"warm-up: {prime['failures'][0]}")
            # The bare app answers what a warm assign answered.
            status, answer = common.request(
                server.port,
                "PUT",
                "/api/v1/vm/action/assign",
                token,
                {"vm_type": POOL, "user": "x"},
            )
            if status != 200:
                raise RuntimeError(f"assign for the bare app's body: {status} {answer[:300]!r}")
            node = json.loads(answer)["id_vm"]
            common.request(
                server.port, "PUT", f"/api/v1/vm/action/release/{CLOUD}", token, {"node": node}
            )
            (folder / "assign.json").write_bytes(answer)
            bare_env = {**env, "BENCH_BARE_BODY": str(folder / "assign.json")}
            with common.Gunicorn("bench.bare_app:app", WORKERS, bare_env, folder, OPTIONS) as bare:
                ports = {"warm": server.port, "bare": bare.port, "cold": server.port}
                paths = {"warm": paths["warm"], "bare": paths["warm"], "cold": paths["cold"]}
                counts["bare"] = counts["warm"]
                prime = measure(bare.port, None, 2 * WORKERS, 4 * WORKERS, paths["bare"])
                if prime["failures"]:
                    raise RuntimeError(f"warm-up of the bare app: {prime['failures'][0]}")
                for clients in (1, CONCURRENT):
                    # Warm and bare alternate, round by round, so that a change in the
                    # machine's other load hits both; then cold, once.
                    order = ["warm", "bare"] * (1 if quick else ROUNDS) + ["cold"]
                    for number, name in enumerate(order):
                        cloud.clear()
                        phase = measure(ports[name], token, clients, counts[name], paths[name])
                        phase.update(
                            path=name, clients=clients, cloud=upstream(cloud), round=number // 2 + 1
                        )
                        phases.append(phase)
    return summarize(phases, fill_seconds, filled_with)


def fill_pool(env: dict) -> float:
    """`dispatcher worker pass --wait 120` with the checkout's code; its seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from dispatcher.cli import main; main()"]
        + ["worker", "pass", "--wait", "120"],
        cwd=common.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker pass: {done.returncode}\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def warm_up(port: int, token: str) -> None:
    """Concurrent token-checked reads of the pools, so that every worker has loaded and
    answered before the clock runs; they call no cloud."""
    failures = []

    def send() -> None:
        client = common.HttpClient(port, token)
        try:
            for _ in range(5):
                status, body = client.send("GET", "/api/v1/pools")
                if status != 200:
                    failures.append(f"{status} {body[:300]!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=send) for _ in range(2 * WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"warm-up: {failures[0]}")


def warm_assign(client: common.HttpClient, me: str) -> dict:
    """An assign by type, timed; then the VM's release, back to the pool."""
    started = time.perf_counter()
    status, body = client.send("PUT", "/api/v1/vm/action/assign", {"vm_type": POOL, "user": me})
    seconds = time.perf_counter() - started
    if status != 200:
        return {"failure": f"assign {status}: {body[:300]!r}"}
    node = json.loads(body)["id_vm"]
    status, body = client.send("PUT", f"/api/v1/vm/action/release/{CLOUD}", {"node": node})
    if status != 200:
        return {"failure": f"release {status}: {body[:300]!r}"}
    return {"total": seconds}


def cold_assign(client: common.HttpClient, me: str, index: int, image: str) -> dict:
    """A VM started, then assigned by its id, timed together and apart."""
    started = time.perf_counter()
    body = {"name": f"cold-{me}-{index}", "image": image, "size": SIZE}
    status, answer = client.send("POST", f"/api/v1/vm/start/{CLOUD}", body)
    if status != 200:
        return {"failure": f"vm/start {status}: {answer[:300]!r}"}
    node = json.loads(answer)["nodes"]["id"]
    between = time.perf_counter()
    status, answer = client.send(
        "PUT",
        f"/api/v1/vm/action/assign/{CLOUD}",
        {"node": node, "user": me, "vm_type": POOL},
    )
    ended = time.perf_counter()
    if status != 200:
        return {"failure": f"assign {status}: {answer[:300]!r}"}
    return {"total": ended - started, "start": between - started, "assign": ended - between}


def measure(port: int, token: str, clients: int, total: int, path) -> dict:
    """``total`` runs of ``path(client, me, index)``, shared by ``clients`` threads released
    together: the samples of each timing, the failures and the seconds taken."""
    samples: dict[str, list[float]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop(number: int, _deadline: float) -> None:
        me = f"bench-user-{number}"
        client = common.HttpClient(port, token)
        mine: list[dict] = []
        try:
            for index in range(total // clients):
                mine.append(path(client, me, index))
        finally:
            client.close()
            with lock:
                for sample in mine:
                    if "failure" in sample:
                        failures.append(sample["failure"])
                        continue
                    for key, seconds in sample.items():
                        samples.setdefault(key, []).append(seconds)

    elapsed = common.run_clients(clients, client_loop, 0)
    return {"samples": samples, "failures": failures, "seconds": elapsed}


def upstream(cloud: Ec2Cloud) -> dict[str, int]:
    """The requests that reached the cloud since the log was cleared, by Action."""
    found: dict[str, int] = {}
    for action in cloud.actions():
        found[action] = found.get(action, 0) + 1
    return found


def _stats(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": common.percentile(values, 0.50),
        "p99": common.percentile(values, 0.99),
    }


def _pooled(phases: list[dict]) -> list[dict]:
    """The phases of one path and one number of clients as one: their samples pooled,
    their seconds, failures and cloud requests added up, in the order they first ran."""
    pooled: dict[tuple, dict] = {}
    for phase in phases:
        key = (phase["path"], phase["clients"])
        if key not in pooled:
            pooled[key] = {**phase, "samples": {}, "failures": [], "cloud": {}, "seconds": 0.0}
        into = pooled[key]
        for name, values in phase["samples"].items():
            into["samples"].setdefault(name, []).extend(values)
        into["failures"] += phase["failures"]
        into["seconds"] += phase["seconds"]
        for action, count in phase["cloud"].items():
            into["cloud"][action] = into["cloud"].get(action, 0) + count
    return list(pooled.values())


def _round_ratios(phases: list[dict]) -> dict[int, list[float]]:
    """Per number of clients, each round's warm p99 over the bare app's."""
    p99 = {}
    for phase in phases:
        if phase["path"] in ("warm", "bare"):
            key = (phase["path"], phase["clients"], phase["round"])
            p99[key] = common.percentile(phase["samples"].get("total", []), 0.99)
    ratios: dict[int, list[float]] = {}
    for (path, clients, number), value in sorted(p99.items(), key=lambda item: item[0][2]):
        if path == "warm" and ("bare", clients, number) in p99:
            ratios.setdefault(clients, []).append(value / p99["bare", clients, number])
    return ratios


def summarize(phases: list[dict], fill_seconds: float, filled_with: int) -> common.Result:
    labels = {
        "warm": "warm pool: assign by type",
        "bare": "bare Flask app: the same requests",
        "cold": "cold: vm/start + assign",
    }
    rows = [["path", "clients", "assigns", "p50", "p99", "cloud requests"]]
    figures: dict = {"pool_size": POOL_SIZE, "fill_seconds": fill_seconds, "phases": []}
    by_key = {}
    failures = []
    round_ratios = _round_ratios(phases)
    phases = _pooled(phases)
    for phase in phases:
        total = _stats(phase["samples"].get("total", []))
        parts = {key: _stats(v) for key, v in phase["samples"].items() if key != "total"}
        requests = ", ".join(f"{n} {action}" for action, n in sorted(phase["cloud"].items()))
        rows.append(
            [
                labels[phase["path"]],
                str(phase["clients"]),
                str(total["count"]),
                common.ms(total["p50"]),
                common.ms(total["p99"]),
                requests or "none",
            ]
        )
        by_key[(phase["path"], phase["clients"])] = total
        failures += phase["failures"]
        figures["phases"].append(
            {
                "path": phase["path"],
                "clients": phase["clients"],
                "seconds": phase["seconds"],
                "failures": len(phase["failures"]),
                "cloud_requests": phase["cloud"],
                **{key: total[key] for key in ("count", "p50", "p99")},
                **{f"{key}_p50": value["p50"] for key, value in parts.items()},
            }
        )
    details = [
        f"{WORKERS} workers, PostgreSQL, moto's EC2; the pool of {POOL_SIZE} filled by "
        f"`dispatcher worker pass --wait` in {fill_seconds:.1f} s "
        f"({filled_with} RunInstances)",
        *common.table(rows).splitlines(),
    ]
    for phase in figures["phases"]:
        if phase["path"] == "cold":
            details.append(
                f"cold, {phase['clients']} client(s): vm/start p50 {common.ms(phase['start_p50'])}"
                f", then the assign by node p50 {common.ms(phase['assign_p50'])}"
            )
    details += [f"failure: {failure}" for failure in failures[:3]]
    gaps = []
    for clients in (1, CONCURRENT):
        warm, cold = by_key[("warm", clients)], by_key[("cold", clients)]
        if not warm["p99"] < cold["p50"]:
            gaps.append(f"{clients} client(s): warm p99 not under cold p50")
    if failures:
        gaps.append(f"{len(failures)} requests failed")
    one_warm, one_cold = by_key[("warm", 1)], by_key[("cold", 1)]
    many_warm, many_cold = by_key[("warm", CONCURRENT)], by_key[("cold", CONCURRENT)]
    bare_ratios = {
        clients: by_key[("warm", clients)]["p99"] / by_key[("bare", clients)]["p99"]
        for clients in (1, CONCURRENT)
    }
    figures["bare_p99_ratio"] = bare_ratios
    figures["bare_p99_round_ratios"] = round_ratios
    for clients in (1, CONCURRENT):
        warm, bare = by_key[("warm", clients)], by_key[("bare", clients)]
        details.append(
            f"{clients} client(s): warm assign p99 {common.ms(warm['p99'])} against the bare "
            f"app's {common.ms(bare['p99'])}: {bare_ratios[clients]:.1f} times (p50 "
            f"{common.ms(warm['p50'])} against {common.ms(bare['p50'])}: "
            f"{warm['p50'] / bare['p50']:.1f} times); round by round, p99 against p99: "
            + ", ".join(f"{ratio:.1f}" for ratio in round_ratios[clients])
        )
    measured = (
        f"1 client: warm p50 {common.ms(one_warm['p50'])}, p99 {common.ms(one_warm['p99'])}; "
        f"cold p50 {common.ms(one_cold['p50'])}, p99 {common.ms(one_cold['p99'])}. "
        f"{CONCURRENT} clients: warm p50 {common.ms(many_warm['p50'])}, p99 "
        f"{common.ms(many_warm['p99'])}; cold p50 {common.ms(many_cold['p50'])}, p99 "
        f"{common.ms(many_cold['p99'])}. {CONCURRENT} clients: bare app p99 "
        f"{common.ms(by_key[('bare', CONCURRENT)]['p99'])}, warm/bare "
        f"{bare_ratios[CONCURRENT]:.1f}"
    )
    return common.Result(
        key="e",
        title="(e) assign from a warm pool",
        measured=measured,
        target="warm p99 < cold p50",
        verdict="met" if not gaps else "missed: " + "; ".join(gaps),
        details=details,
        figures=figures,
    )
