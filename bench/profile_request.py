"""Where one authenticated request spends its time: ``python -m bench.profile_request``.

Three requests, each profiled apart, through Flask's test client, in-process, with the
production settings (the token cache on, as gunicorn's workers run), on PostgreSQL where
a server answers (else SQLite; ``--sqlite`` forces it):

- *get*: an authenticated GET of ``--path`` (``/api/v1/nodes/fake_driver``): benchmark (a);
- *assign*: ``PUT /api/v1/vm/action/assign`` by vm_type from a warm pool (``web``, 10 VMs
  of the Dummy cloud ``default``, ``release: "reuse"``, filled beforehand by passes of the
  pool manager in this process): benchmarks (d) and (e);
- *release*: ``PUT /api/v1/vm/action/release/default`` of the VM the assign took, back to
  the pool;
- *assign-node* and *release-node*: ``PUT /api/v1/vm/action/assign/bench`` of a VM named
  by its node (of a Dummy cloud ``bench`` of 10 VMs in no pool, adopted beforehand), and
  its release (kept: RELEASE_KEEPS_NODE): what benchmark (d)'s clients send.

``--requests`` of each (an assign and its release alternate) run first without the
profiler, for the time per request; then 50 more with the database round trips counted
(SQLAlchemy's events: each statement, each BEGIN, COMMIT and ROLLBACK, and any ping of
a pooled connection at its checkout); then ``--requests`` again under cProfile. Printed
for each: the time per request, the round trips per request and the statements of one,
the Python function calls per request (which, unlike the time, the machine's other load
does not move), the share of each package (by the time spent in its own functions), and
the functions of the dispatcher and of the libraries with the most cumulative time. It
explains benchmarks (a), (d) and (e); it measures no target. The app's log lines (the
request log) are written, to /dev/null. ``--only`` picks some of the five.
"""

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict

from bench import common
from dispatcher import auth
from dispatcher.config import DUMMY_FARM
from harness.round_trips import Capture

POOL = "web"
POOL_SIZE = 10
POOLS = {
    POOL: {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": POOL_SIZE,
        "max_total": POOL_SIZE,
        "release": "reuse",
        "boot_timeout": 3600,
    }
}
NODE_CLOUD = "bench"
FARM = {**DUMMY_FARM, NODE_CLOUD: {"ENGINE": "dummy", "USER": POOL_SIZE + 1}}
KINDS = ("get", "assign", "release", "assign-node", "release-node")
# Which request each kind's timed one needs before it (its VM taken), or after (given back).
BEFORE = {"release": "assign", "release-node": "assign_node"}
AFTER = {"assign": "release", "assign-node": "release_node"}
# The request's wrappers, left out of the lists of functions (their share is printed).
FRAMEWORK = ("flask/", "werkzeug/")
COUNTED = 50  # requests of each kind whose round trips are counted

# Packages grouped as what they do for the request.
GROUPS = {
    "database (SQLAlchemy, psycopg, sqlite3)": ("sqlalchemy", "psycopg", "sqlite3", "_sqlite3"),
    "auth (Flask-Security, -Login, -Principal, itsdangerous)": (
        "flask_security",
        "flask_login",
        "flask_principal",
        "itsdangerous",
        "blinker",
    ),
    "Flask and Werkzeug (incl. the test client)": ("flask", "werkzeug"),
    "the dispatcher": ("dispatcher",),
    "metrics (prometheus_client)": ("prometheus_client",),
    "logging": ("logging",),
    "JSON": ("json",),
}


def group_of(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    for group, packages in GROUPS.items():
        if any(package in parts or f"{package}.py" in parts for package in packages):
            return group
    return "other (stdlib, builtins)"


@contextlib.contextmanager
def stderr_to_devnull():
    """File descriptor 2 to /dev/null (where the app's log handlers write), then back."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fill_pool(app) -> None:
    """The warm pool filled by passes of the pool manager: the first makes the VMs, the
    next ones find them running."""
    from dispatcher import pools
    from dispatcher.bookkeeping import ledger
    from dispatcher.worker import pool_pass

    for _ in range(5):
        with app.app_context():
            pool_pass.run(pools.every())
            if ledger.pool_totals(POOL)["free"] == POOL_SIZE:
                return
    raise RuntimeError("the warm pool was not filled after 5 passes")


class Traffic:
    """The three requests, on one test client with the agent's token."""

    def __init__(self, app, path: str):
        self.client = app.test_client()
        self.client.environ_base["HTTP_X_AUTH_TOKEN"] = common.agent_token(app)
        self.path = path
        self.taken: list[str] = []
        self.nodes: list[str] = []
        self.held: list[str] = []

    def get(self):
        return self.client.get(self.path)

    def assign(self):
        response = self.client.put(
            "/api/v1/vm/action/assign", json={"vm_type": POOL, "user": "profiled"}
        )
        if response.status_code == 200:
            self.taken.append(response.get_json()["id_vm"])
        return response

    def release(self):
        node = self.taken.pop()
        return self.client.put("/api/v1/vm/action/release/default", json={"node": node})

    def adopt(self) -> None:
        """Every VM of the node cloud adopted by the ledger (an assign and a release)."""
        listed = self.client.get(f"/api/v1/nodes/{NODE_CLOUD}").get_json()["nodes"]
        self.nodes = [node["id"] for node in listed if node["id"] != "None"]
        for _ in self.nodes:
            self.assign_node()
            self.release_node()

    def assign_node(self):
        node = self.nodes[len(self.held) % len(self.nodes)]
        response = self.client.put(
            f"/api/v1/vm/action/assign/{NODE_CLOUD}",
            json={"node": node, "user": "profiled", "vm_type": "bench"},
        )
        if response.status_code == 200:
            self.held.append(node)
        return response

    def release_node(self):
        node = self.held.pop()
        self.nodes.append(self.nodes.pop(self.nodes.index(node)))  # the next assign, another
        return self.client.put(f"/api/v1/vm/action/release/{NODE_CLOUD}", json={"node": node})


def run_kind(traffic: Traffic, kind: str, requests: int, profiler=None, capture=None) -> float:
    """``requests`` of ``kind`` (an assign and a release alternate; only the one of
    ``kind`` is timed, profiled and captured): their seconds in all."""
    spent = 0.0
    for _ in range(requests):
        if kind in BEFORE:
            getattr(traffic, BEFORE[kind])()
        tracing = [] if capture is None else [capture]
        with contextlib.ExitStack() as stack:
            for one in tracing:
                stack.enter_context(one)
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            response = getattr(traffic, kind.replace("-", "_"))()
            spent += time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
        if response.status_code != 200:
            sys.exit(f"{kind}: {response.status_code} {response.data[:300]!r}")
        if kind in AFTER:
            getattr(traffic, AFTER[kind])()
    return spent


def where(filename: str) -> str | None:
    """A function's file as ``package/module.py``, for the dispatcher's and the libraries'
    (site-packages); None for the standard library and builtins."""
    path = filename.replace("\\", "/")
    if "/dispatcher/" in path:
        return "dispatcher/" + path.rsplit("/dispatcher/", 1)[1]
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    return None


def report(kind: str, title: str, plain: float, requests: int, trips, profiler, top: int):
    stats = pstats.Stats(profiler)
    per_group = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        per_group[group_of(filename)] += tottime
        total += tottime
    print(f"\n== {title}: {common.ms(plain / requests)} per request without the profiler")
    if trips is not None:
        per_request, counted, one = trips
        print(
            f"database round trips: {per_request:.2f} per request (over {COUNTED}); "
            f"one request's {counted}: " + ("; ".join(one) or "none")
        )
    print(
        f"under cProfile, {common.ms(total / requests)} per request, "
        f"{stats.total_calls / requests:.0f} Python function calls per request:"
    )
    for group, seconds in sorted(per_group.items(), key=lambda item: -item[1]):
        print(f"  {seconds / total:5.0%}  {common.ms(seconds / requests):>9}  {group}")
    rows = {"dispatcher": [], "libraries": []}
    for (filename, line, name), (_, calls, _, cumulative, _) in stats.stats.items():
        place = where(filename)
        if place is None or place.startswith(FRAMEWORK):
            continue
        side = "dispatcher" if place.startswith("dispatcher/") else "libraries"
        rows[side].append((cumulative, calls, f"{place}:{line}({name})"))
    for side, heading in (
        ("dispatcher", "the dispatcher's functions"),
        ("libraries", "the libraries' functions (but Flask's and Werkzeug's, which wrap all)"),
    ):
        print(f"{heading} by cumulative time per request, top {top}:")
        for cumulative, calls, label in sorted(rows[side], reverse=True)[:top]:
            print(
                f"  {common.ms(cumulative / requests):>9}  {cumulative / total:5.0%}  "
                f"{calls / requests:6.1f} calls  {label}"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/api/v1/nodes/fake_driver")
    parser.add_argument("--requests", type=int, default=500, help="of each kind")
    parser.add_argument(
        "--only", default=",".join(KINDS), help=f"some of {', '.join(KINDS)} (all by default)"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="SQLite even where PostgreSQL answers"
    )
    parser.add_argument(
        "--top", type=int, default=15, help="how many functions of each side to list"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="every token checked against the database, as without a serving command's cache",
    )
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.only.split(",") if kind.strip()]
    if not kinds or any(kind not in KINDS for kind in kinds):
        parser.error(f"--only: some of {', '.join(KINDS)}")
    os.environ["DISPATCHER_CONFIG"] = "production"
    results = {}
    with (
        common.scratch_folder("bench-profile-") as folder,
        common.preferred_database(folder) as (
            url,
            name,
        ),
    ):
        if args.sqlite:
            url, name = f"sqlite:///{folder / 'profile.sqlite'}", "SQLite"
        app = common.make_app(url, CLOUD_FARM=FARM, POOLS=POOLS, RELEASE_KEEPS_NODE=True)
        if not args.no_cache:
            auth.serve(app, single_process=True)  # as gunicorn's workers and dispatcher run
        from dispatcher.extensions import db

        with app.app_context():
            engine = db.engine
        traffic = Traffic(app, args.path)
        with stderr_to_devnull():
            fill_pool(app)
            traffic.adopt()
            for kind in kinds:  # warm-up (and the token listener connected)
                run_kind(traffic, kind, 100)
            time.sleep(0.5)
            anonymous = app.test_client()
            started = time.perf_counter()
            for _ in range(args.requests):
                anonymous.get("/api/v1/")
            root = (time.perf_counter() - started) / args.requests
            for kind in kinds:
                plain = run_kind(traffic, kind, args.requests)
                counting = Capture(engine)
                run_kind(traffic, kind, COUNTED, capture=counting)
                one = Capture(engine)
                run_kind(traffic, kind, 1, capture=one)
                profiler = cProfile.Profile()
                run_kind(traffic, kind, args.requests, profiler=profiler)
                trips = (counting.round_trips() / COUNTED, one.round_trips(), one.outline())
                results[kind] = (plain, trips, profiler)
        common.dispose(app)

    print(
        f"{name}, token cache {'off' if args.no_cache else 'on'}, in-process, "
        f"{args.requests} requests of each; GET /api/v1/ without a token: "
        f"{common.ms(root)} per request"
    )
    titles = {
        "get": f"GET {args.path} with a token",
        "assign": f"PUT /api/v1/vm/action/assign by vm_type from a warm pool of {POOL_SIZE}",
        "release": "PUT /api/v1/vm/action/release/default, back to the pool",
        "assign-node": f"PUT /api/v1/vm/action/assign/{NODE_CLOUD} by node, in no pool",
        "release-node": f"PUT /api/v1/vm/action/release/{NODE_CLOUD} by node, kept",
    }
    for kind in kinds:
        plain, trips, profiler = results[kind]
        report(kind, titles[kind], plain, args.requests, trips, profiler, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
