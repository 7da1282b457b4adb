"""(f) An assign from a pool with a ready check against one without, through gunicorn with
4 workers on PostgreSQL.

The cloud ``default`` is libcloud's Dummy, whose VM N has the address 127.0.0.N. Two pools
of 10 VMs there, ``release: "reuse"``, side by side:

- *checked*: ``ready_check: {"tcp": PORT, "timeout": 2}`` and ``recheck_seconds: 1``; the
  bench listens on 127.0.0.N:PORT for each of its VMs (one thread accepts every connection,
  closes it and counts it);
- *unchecked*: no ready check; nothing listens on its VMs' addresses.

Both are filled by passes of the pool manager (``pool_pass.run(pools.every())``) in the
bench's process, where the Dummy cloud's nodes live, on the schema gunicorn serves; during
the rounds a pass runs every half second, so that the checked pool's free VMs are checked
again as the assigns go on. gunicorn runs no pass: an assign by type takes a free VM in one
statement and calls no cloud, and a release under ``reuse`` neither.

One client: ``PUT /api/v1/vm/action/assign`` with ``{"vm_type", "user"}``, timed; then, not
timed, a TCP connect to the VM's address and PORT (a VM of the checked pool must answer it,
one of the unchecked pool must not: the probe tells them apart), and ``PUT
/api/v1/vm/action/release/default``. The rounds alternate, checked, unchecked, checked,
..., so that a change in the machine's other load hits both. Afterwards the connections the
listeners accepted must be those of the passes' checks and of the bench's probes, and no
more: an assign checked nothing.
"""

import json
import os
import selectors
import socket
import threading
import time

from bench import common
from harness.ports import free_port

WORKERS = 4
CLOUD = "default"
FARM = {CLOUD: {"ENGINE": "dummy"}}
CHECKED, UNCHECKED = "checked", "unchecked"
ORDER = (CHECKED, UNCHECKED)  # the pools' turns in each pair of rounds
POOL_SIZE = 10
RECHECK_SECONDS = 1
PASS_SECONDS = 0.5  # a pass of the pool manager this often during the rounds
PROBE_TIMEOUT = 1.0
# The checked pool's assign p50 over the unchecked pool's, at most.
TARGET_RATIO = 1.2
OPTIONS = ("--access-logfile=/dev/null",)


def pool_settings(port: int) -> dict:
    """POOLS: the two pools, alike but for the ready check."""
    common_part = {
        "clouds": [{"cloud": CLOUD, "image": "1", "size": "1"}],
        "min_ready": POOL_SIZE,
        "max_total": POOL_SIZE,
        "release": "reuse",
        "boot_timeout": 3600,
    }
    return {
        CHECKED: {
            **common_part,
            "ready_check": {"tcp": port, "timeout": 2},
            "recheck_seconds": RECHECK_SECONDS,
        },
        UNCHECKED: dict(common_part),
    }


def run(quick: bool = False, **_) -> common.Result:
    rounds, per_round = (2, 20) if quick else (8, 50)
    load_before = os.getloadavg()
    with (
        common.scratch_folder("bench-f-") as folder,
        common.postgresql_schema() as url,
        Listeners(free_port()) as listeners,
    ):
        pools = pool_settings(listeners.port)
        checks_at_start = checks_run("passed")
        app = common.make_app(url, CLOUD_FARM=FARM, POOLS=pools)
        token = common.agent_token(app)
        filled = fill(app, listeners)
        env = common.server_env(url, folder, CLOUD_FARM=FARM, POOLS=pools)
        samples = {CHECKED: [], UNCHECKED: []}
        probes = {CHECKED: Probes(), UNCHECKED: Probes()}  # the warm-up's too
        with (
            common.Gunicorn("dispatcher.wsgi:app", WORKERS, env, folder, OPTIONS) as server,
            Passes(app) as passes,
        ):
            warm_up(server.port, token, listeners.port, probes)
            checks_before = checks_run()
            passes.mark()
            started = time.monotonic()
            client = common.HttpClient(server.port, token)
            try:
                for _ in range(rounds):
                    for pool in ORDER:
                        samples[pool].append(
                            assign_round(client, pool, per_round, listeners.port, probes[pool])
                        )
            finally:
                client.close()
            seconds = time.monotonic() - started
            during = passes.since_mark()
            rechecks = checks_run() - checks_before
        # The passes have stopped. Each check passed and each probe answered was one
        # connection; an assign that checked its VM would have made more.
        answered = sum(one.answered for one in probes.values())
        expected = checks_run("passed") - checks_at_start + answered
        accepted = listeners.wait_for(expected, timeout=3)
        common.dispose(app)
    load_after = os.getloadavg()
    return summarize(
        samples,
        probes,
        {
            "rounds": rounds,
            "per_round": per_round,
            "seconds": seconds,
            "filled": filled,
            "passes": during,
            "rechecks": rechecks,
            "accepted": accepted,
            "expected": expected,
            "load_before": load_before,
            "load_after": load_after,
        },
    )


# -- the VMs' ports ----------------------------------------------------------------------


class Listeners:
    """TCP listeners on 127.0.0.N:``port``, one per VM of the checked pool, opened before
    ``start``; one thread accepts every connection, closes it and counts it."""

    def __init__(self, port: int):
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="bench-f-listeners", daemon=True)

    def open(self, number: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((f"127.0.0.{number}", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.sockets.append(listener)
        self.selector.register(listener, selectors.EVENT_READ)

    def start(self) -> None:
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            for key, _ in self.selector.select(timeout=0.05):
                while True:
                    try:
                        connection, _ = key.fileobj.accept()
                    except OSError:  # none waiting (BlockingIOError) or gone
                        break
                    connection.close()
                    self.accepted += 1

    def wait_for(self, count: int, timeout: float) -> int:
        """The connections accepted, once ``count`` are or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while self.accepted < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # any beyond ``count``
        return self.accepted

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        for listener in self.sockets:
            self.selector.unregister(listener)
            listener.close()
        self.selector.close()


def answers(address: str, port: int) -> bool:
    """Whether ``address`` accepts a TCP connection on ``port`` now."""
    try:
        with socket.create_connection((address, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


class Probes:
    """The probes of the VMs one pool handed out: how many, how many answered, which not,
    and the VMs handed out."""

    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.silent: dict[str, int] = {}  # "VM (address)" -> times handed out so
        self.vms: set[str] = set()
        self.lock = threading.Lock()  # the warm-up's clients probe at once

    def probe(self, answer: dict, port: int) -> None:
        addresses = answer.get("public_ips") or answer.get("private_ips") or []
        answered = bool(addresses) and answers(addresses[0], port)
        with self.lock:
            self.sent += 1
            self.vms.add(answer["id_vm"])
            if answered:
                self.answered += 1
            else:
                vm = f"VM {answer['id_vm']} ({', '.join(addresses) or 'no address'})"
                self.silent[vm] = self.silent.get(vm, 0) + 1

    def figures(self) -> dict:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "silent": self.silent,
            "vms": sorted(self.vms, key=int),
        }


# -- the pool manager --------------------------------------------------------------------


def pass_once(app) -> list:
    """One pass of the pool manager over every pool: its reports."""
    from dispatcher import pools
    from dispatcher.worker import pool_pass

    with app.app_context():
        return pool_pass.run(pools.every())


def totals(app) -> dict[str, dict[str, int]]:
    from dispatcher.bookkeeping import ledger

    with app.app_context():
        return {pool: ledger.pool_totals(pool) for pool in (CHECKED, UNCHECKED)}


def fill(app, listeners: Listeners) -> dict:
    """Both pools filled by passes: the first makes the VMs, the bench then listens on the
    addresses of the checked pool's, the next promotes them. The seconds and passes taken."""
    from dispatcher.bookkeeping import ledger

    started = time.perf_counter()
    pass_once(app)
    with app.app_context():
        for row in ledger.pool_rows(CHECKED, CLOUD):
            listeners.open(int(row.id_vm))
    listeners.start()
    passes, found = 1, totals(app)
    while not all(found[pool]["free"] == POOL_SIZE for pool in found):
        if passes == 5:
            raise RuntimeError(f"the pools were not filled after {passes} passes: {found}")
        pass_once(app)
        passes, found = passes + 1, totals(app)
    return {"seconds": time.perf_counter() - started, "passes": passes}


def checks_run(*results: str) -> float:
    """The ready checks of the checked pool the bench's process has run so far: those of
    ``results`` (passed, failed), or all."""
    from prometheus_client import REGISTRY

    return sum(
        REGISTRY.get_sample_value(
            "dispatcher_pool_checks_total", {"pool": CHECKED, "result": result}
        )
        or 0.0
        for result in results or ("passed", "failed")
    )


class Passes:
    """A pass of the pool manager every PASS_SECONDS in a thread of the bench's process,
    as ``dispatcher worker`` would run them, until the block ends."""

    def __init__(self, app):
        self.app = app
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-f-passes", daemon=True)
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.durations: list[float] = []
        self.counted = {"created": 0, "promoted": 0, "destroyed": 0, "failed_checks": 0}
        self.marked = (0, dict(self.counted))

    def _run(self) -> None:
        while not self.stopped.is_set():
            began = time.perf_counter()
            try:
                reports = pass_once(self.app)
            except BaseException as exc:  # shown when the block ends
                self.error = exc
                return
            with self.lock:
                self.durations.append(time.perf_counter() - began)
                for report in reports:
                    for key in self.counted:
                        self.counted[key] += getattr(report, key)
            self.stopped.wait(max(0.0, PASS_SECONDS - (time.perf_counter() - began)))

    def mark(self) -> None:
        with self.lock:
            self.marked = (len(self.durations), dict(self.counted))

    def since_mark(self) -> dict:
        """The passes since ``mark``: how many, their p50 duration, what they did."""
        with self.lock:
            first, before = self.marked
            durations = self.durations[first:]
            done = {key: value - before[key] for key, value in self.counted.items()}
        return {
            "count": len(durations),
            "p50": common.percentile(durations, 0.5) if durations else None,
            **done,
        }

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise RuntimeError(f"a pool pass failed: {self.error!r}") from self.error


# -- the assigns -------------------------------------------------------------------------


def assign_once(client: common.HttpClient, pool: str, port: int, probes: Probes) -> float:
    """An assign by type, timed; the VM probed, then released: the assign's seconds."""
    body = {"vm_type": pool, "user": "bench-user"}
    started = time.perf_counter()
    status, answer = client.send("PUT", "/api/v1/vm/action/assign", body)
    seconds = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"assign from {pool}: {status} {answer[:300]!r}")
    answer = json.loads(answer)
    probes.probe(answer, port)
    status, released = client.send(
        "PUT", f"/api/v1/vm/action/release/{CLOUD}", {"node": answer["id_vm"]}
    )
    if status != 200:
        raise RuntimeError(f"release to {pool}: {status} {released[:300]!r}")
    return seconds


def assign_round(
    client: common.HttpClient, pool: str, count: int, port: int, probes: Probes
) -> list[float]:
    return [assign_once(client, pool, port, probes) for _ in range(count)]


def warm_up(port: int, token: str, vm_port: int, probes: dict) -> None:
    """Assigns and releases from 2 * WORKERS concurrent clients on each pool, so that every
    worker has served both before the clock runs; their VMs probed as any (``probes``)."""
    failures = []

    def send(pool: str) -> None:
        client = common.HttpClient(port, token)
        try:
            for _ in range(2):
                assign_once(client, pool, vm_port, probes[pool])
        except Exception as exc:  # shown below
            failures.append(exc)
        finally:
            client.close()

    threads = [
        threading.Thread(target=send, args=(pool,))
        for pool in (CHECKED, UNCHECKED)
        for _ in range(2 * WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"warm-up: {failures[0]}")


# -- the report --------------------------------------------------------------------------


def _stats(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": common.percentile(values, 0.50),
        "p90": common.percentile(values, 0.90),
        "p99": common.percentile(values, 0.99),
    }


def format_load(load) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def summarize(samples: dict, probes: dict, run_figures: dict) -> common.Result:
    stats = {pool: _stats([s for one in rounds for s in one]) for pool, rounds in samples.items()}
    checked, unchecked = stats[CHECKED], stats[UNCHECKED]
    ratios = {key: checked[key] / unchecked[key] for key in ("p50", "p90", "p99")}
    per_round = [
        common.percentile(a, 0.5) / common.percentile(b, 0.5)
        for a, b in zip(samples[CHECKED], samples[UNCHECKED], strict=True)
    ]
    passes = run_figures["passes"]
    rechecks = run_figures["rechecks"]
    accepted, expected = run_figures["accepted"], run_figures["expected"]
    silent = probes[CHECKED].silent
    answered_unchecked = probes[UNCHECKED].answered

    gaps = []
    if ratios["p50"] >= TARGET_RATIO:
        gaps.append(f"p50 ratio {ratios['p50']:.2f}, not below {TARGET_RATIO}")
    if silent:
        gaps.append(
            f"{sum(silent.values())} hand-outs of {len(silent)} VMs of the checked pool "
            "not answering"
        )
    if not rechecks:
        gaps.append("no recheck ran during the rounds")
    if accepted != expected:
        gaps.append(f"{accepted} connections to the VMs' ports, {expected:.0f} expected")
    if answered_unchecked:
        gaps.append(f"{answered_unchecked} VMs of the unchecked pool answered the probe")
    if passes["destroyed"] or passes["created"] or passes["failed_checks"]:
        gaps.append("the passes replaced VMs or saw checks fail during the rounds")

    rows = [["pool", "assigns", "p50", "p90", "p99"]]
    for pool in (CHECKED, UNCHECKED):
        one = stats[pool]
        rows.append(
            [pool, str(one["count"])] + [common.ms(one[key]) for key in ("p50", "p90", "p99")]
        )
    rows.append(["checked / unchecked", ""] + [f"{ratios[k]:.2f}" for k in ("p50", "p90", "p99")])
    filled = run_figures["filled"]
    pass_p50 = passes["p50"]
    details = [
        f"{WORKERS} workers, PostgreSQL, the Dummy cloud; two pools of {POOL_SIZE}, filled by "
        f"{filled['passes']} passes in {filled['seconds']:.1f} s; one client, "
        f"{run_figures['rounds']} rounds of {run_figures['per_round']} assigns per pool, "
        f"alternating {', '.join(ORDER)}, ... ({run_figures['seconds']:.0f} s)",
        f"load average (1, 5, 15 min) {format_load(run_figures['load_before'])} before, "
        f"{format_load(run_figures['load_after'])} after",
        *common.table(rows).splitlines(),
        "p50 ratio per round: " + ", ".join(f"{r:.2f}" for r in per_round),
        f"during the rounds: {passes['count']} passes of the pool manager (p50 "
        + (common.ms(pass_p50) if pass_p50 is not None else "-")
        + f"), {rechecks:.0f} rechecks of the checked pool's free VMs, "
        f"{passes['failed_checks']} failed, {passes['created']} VMs made, "
        f"{passes['destroyed']} destroyed",
        f"probes (the warm-up's included): {probes[CHECKED].answered} of "
        f"{probes[CHECKED].sent} VMs handed out by the checked pool answered "
        f"({len(probes[CHECKED].vms)} distinct VMs); {answered_unchecked} of "
        f"{probes[UNCHECKED].sent} by the unchecked pool, which nothing listens for "
        f"({len(probes[UNCHECKED].vms)} distinct VMs)",
        f"connections to the checked pool's ports: {accepted}, against {expected:.0f} from "
        "the passes' checks and the probes",
    ]
    details += [
        f"not answering when handed out: {vm}, {times} times" for vm, times in silent.items()
    ]
    measured = (
        f"checked p50 {common.ms(checked['p50'])}, p90 {common.ms(checked['p90'])}, p99 "
        f"{common.ms(checked['p99'])}; unchecked p50 {common.ms(unchecked['p50'])}, p90 "
        f"{common.ms(unchecked['p90'])}, p99 {common.ms(unchecked['p99'])}; ratio p50 "
        f"{ratios['p50']:.2f}, p99 {ratios['p99']:.2f}; {rechecks:.0f} rechecks meanwhile; "
        f"{probes[CHECKED].answered} of {probes[CHECKED].sent} checked VMs answered"
    )
    verdict = "met" if not gaps else "missed: " + "; ".join(gaps)
    verdict += f"; p50 ratio {ratios['p50']:.2f}"
    return common.Result(
        key="f",
        title="(f) assign from a checked pool",
        measured=measured,
        target=f"p50 ratio < {TARGET_RATIO}; every checked VM handed out answers",
        verdict=verdict,
        details=details,
        figures={
            "pool_size": POOL_SIZE,
            "recheck_seconds": RECHECK_SECONDS,
            "pass_seconds": PASS_SECONDS,
            "stats": stats,
            "ratios": ratios,
            "round_p50_ratios": per_round,
            "passes": passes,
            "rechecks": rechecks,
            "probes": {pool: one.figures() for pool, one in probes.items()},
            "connections": {"accepted": accepted, "expected": expected},
            **{key: run_figures[key] for key in ("rounds", "per_round", "seconds", "filled")},
            "load_average_before": run_figures["load_before"],
            "load_average_after": run_figures["load_after"],
        },
    )
