"""(a) Authenticated GET /api/v1/nodes/fake_driver under gunicorn, against a bare Flask app.

Both run ``gunicorn -c python:dispatcher.gunicorn_config --workers 2`` with the same extra
options; the bare app (bare_app.py) serves the very bytes the dispatcher answered. The load
is wrk with wrk_report.lua where wrk is on PATH, else threads of keep-alive http.client
connections. Each server gets a warm-up, then the measuring alternates between the two
(bare, dispatcher, bare, ...) so that a change in the machine's other load hits both.
"""

import json
import os
import shutil
import subprocess
import time

from bench import common
from dispatcher.config import DUMMY_FARM

PATH = "/api/v1/nodes/fake_driver"
WORKERS = 2
CONNECTIONS = 4  # open connections of the load generator, for both servers
# The target: the bare app's worker CPU per request over the dispatcher's (the steadier
# figure on a shared machine; requests/s beside it), at least this; the aim is AIM_RATIO.
TARGET_RATIO = 0.6
AIM_RATIO = 0.85
# gunicorn options of both servers beyond the shared config file: no access log lines.
OPTIONS = ("--access-logfile=/dev/null",)
LUA = common.BENCH / "wrk_report.lua"


def wrk_load(port: int, token: str | None, seconds: float) -> dict:
    """Run wrk against the server; its figures (requests/s, latency percentiles in s)."""
    env = {**os.environ, "BENCH_TOKEN": token or ""}
    args = [
        shutil.which("wrk"),
        "--threads=1",
        f"--connections={CONNECTIONS}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={LUA}",
        f"http://127.0.0.1:{port}{PATH}",
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix("BENCH "))
    errors = sum(raw[key] for key in raw if key.endswith(("_errors", "timeouts")))
    return {
        "requests": raw["requests"],
        "seconds": raw["duration_us"] / 1e6,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1e6,
        "p99": raw["p99_us"] / 1e6,
        "errors": errors,
    }


def python_load(port: int, token: str | None, seconds: float) -> dict:
    """The fallback load: CONNECTIONS threads, each with a keep-alive http.client connection."""
    latencies: list[list[float]] = [[] for _ in range(CONNECTIONS)]
    errors = [0] * CONNECTIONS

    def run(index: int, deadline: float) -> None:
        client = common.HttpClient(port, token, timeout=10)
        mine = latencies[index]
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    status, _ = client.send("GET", PATH)
                except OSError:
                    status = 0
                mine.append(time.perf_counter() - started)
                if status != 200:
                    errors[index] += 1
        finally:
            client.close()

    elapsed = common.run_clients(CONNECTIONS, run, seconds)
    merged = [value for values in latencies for value in values]
    return {
        "requests": len(merged),
        "seconds": elapsed,
        "rps": len(merged) / elapsed,
        "p50": common.percentile(merged, 0.50),
        "p99": common.percentile(merged, 0.99),
        "errors": sum(errors),
    }


def measure(load, server: common.Gunicorn, token: str | None, seconds: float) -> dict:
    """``load`` against the server, and the CPU time its workers spent per request."""
    cpu_before = server.worker_cpu_seconds()
    figures = load(server.port, token, seconds)
    cpu_after = server.worker_cpu_seconds()
    figures["cpu_per_request"] = (
        (cpu_after - cpu_before) / figures["requests"]
        if cpu_before is not None and cpu_after is not None and figures["requests"]
        else None
    )
    return figures


def run(quick: bool = False, **_) -> common.Result:
    warm_seconds, round_seconds, rounds = (1, 2, 1) if quick else (2, 5, 2)
    use_wrk = shutil.which("wrk") is not None
    load = wrk_load if use_wrk else python_load
    generator = (
        f"wrk (1 thread, {CONNECTIONS} connections)"
        if use_wrk
        else f"Python threads ({CONNECTIONS} keep-alive http.client connections; wrk not on PATH)"
    )
    with (
        common.scratch_folder("bench-a-") as folder,
        common.preferred_database(folder) as (url, database_name),
    ):
        app = common.make_app(url)
        token = common.agent_token(app)
        common.dispose(app)
        env = common.server_env(url, folder, CLOUD_FARM=DUMMY_FARM)
        with common.Gunicorn("dispatcher.wsgi:app", WORKERS, env, folder, OPTIONS) as dispatcher:
            status, body = common.request(dispatcher.port, "GET", PATH, token)
            if status != 200:
                raise RuntimeError(f"dispatcher answered {status}: {body[:500]!r}")
            (folder / "body.json").write_bytes(body)
            bare_env = {**env, "BENCH_BARE_BODY": str(folder / "body.json")}
            with common.Gunicorn("bench.bare_app:app", WORKERS, bare_env, folder, OPTIONS) as bare:
                status, bare_body = common.request(bare.port, "GET", PATH)
                if (status, bare_body) != (200, body):
                    raise RuntimeError("the bare app does not answer the dispatcher's body")
                servers = {"bare": (bare, None), "dispatcher": (dispatcher, token)}
                for server, server_token in servers.values():  # warm-up: every worker
                    load(server.port, server_token, warm_seconds)
                runs = {name: [] for name in servers}
                for _ in range(rounds):
                    for name, (server, server_token) in servers.items():
                        runs[name].append(measure(load, server, server_token, round_seconds))

    figures = {name: summarise(name_runs) for name, name_runs in runs.items()}
    if any(figure["errors"] for figure in figures.values()):
        raise RuntimeError(f"failed requests under load: {figures}")
    # The ratio per round (each round measures both within seconds), then their median.
    ratios = [d["rps"] / b["rps"] for d, b in zip(runs["dispatcher"], runs["bare"], strict=True)]
    ratio = common.median(ratios)
    disp, bare_fig = figures["dispatcher"], figures["bare"]
    measured = (
        f"dispatcher {disp['rps']:.0f} req/s (p50 {common.ms(disp['p50'])}, "
        f"p99 {common.ms(disp['p99'])}); bare {bare_fig['rps']:.0f} req/s "
        f"(p50 {common.ms(bare_fig['p50'])}, p99 {common.ms(bare_fig['p99'])}); "
        f"ratio {ratio:.2f}"
    )
    cpu_ratio = None
    if disp["cpu_per_request"] and bare_fig["cpu_per_request"]:
        cpu_ratio = bare_fig["cpu_per_request"] / disp["cpu_per_request"]
        measured += f"; worker CPU ratio {cpu_ratio:.2f}"
    judged, on = (cpu_ratio, "worker CPU ratio") if cpu_ratio is not None else (ratio, "ratio")
    verdict = (
        "met"
        if judged >= TARGET_RATIO
        else f"missed: {on} {judged:.2f}, {TARGET_RATIO - judged:.2f} below {TARGET_RATIO}"
    )
    details = [
        f"load: {generator}; {rounds} round(s) of {round_seconds} s per server after "
        f"{warm_seconds} s of warm-up each; database {database_name}; body {len(body)} bytes",
    ]
    for name, name_runs in runs.items():
        for index, one in enumerate(name_runs, 1):
            details.append(
                f"{name:>10} round {index}: {one['requests']} requests in {one['seconds']:.1f} s, "
                f"{one['rps']:.0f} req/s, p50 {common.ms(one['p50'])}, p99 {common.ms(one['p99'])}"
                + cpu_text(one["cpu_per_request"])
            )
    details.append("ratio per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    if disp["cpu_per_request"] and bare_fig["cpu_per_request"]:
        details.append(
            f"worker CPU per request (median of rounds): dispatcher "
            f"{common.ms(disp['cpu_per_request'])}, bare {common.ms(bare_fig['cpu_per_request'])}; "
            f"ratio bare/dispatcher {bare_fig['cpu_per_request'] / disp['cpu_per_request']:.2f} "
            "(the workers' own CPU; PostgreSQL's and the load generator's not counted)"
        )
    return common.Result(
        key="a",
        title="(a) GET /nodes, gunicorn -w 2",
        measured=measured,
        target=f"worker CPU ratio >= {TARGET_RATIO} (aim {AIM_RATIO})",
        verdict=verdict,
        details=details,
        figures={
            "ratio": ratio,
            "cpu_ratio": cpu_ratio,
            "generator": generator,
            "database": database_name,
            **figures,
        },
    )


def cpu_text(seconds: float | None) -> str:
    return "" if seconds is None else f", worker CPU {common.ms(seconds)}/request"


def summarise(runs: list[dict]) -> dict:
    """Requests/s over every round; the median of the rounds' percentiles."""
    requests = sum(one["requests"] for one in runs)
    seconds = sum(one["seconds"] for one in runs)
    return {
        "requests": requests,
        "rps": requests / seconds,
        "p50": common.median(one["p50"] for one in runs),
        "p99": common.median(one["p99"] for one in runs),
        "errors": sum(one["errors"] for one in runs),
        "cpu_per_request": None
        if any(one["cpu_per_request"] is None for one in runs)
        else common.median(one["cpu_per_request"] for one in runs),
    }
