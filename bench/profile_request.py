"""Where one authenticated request spends its time: ``python -m bench.profile_request``.

Sends ``--requests`` authenticated GETs of ``--path`` (``/api/v1/nodes/fake_driver``) through
Flask's test client, in-process, with the production settings, on PostgreSQL where a server
answers (else SQLite; ``--sqlite`` forces it), under cProfile; prints the time per request,
the share of each package (by the time spent in its own functions) and the functions with
the most cumulative time. It explains benchmark (a)'s figures; it measures no target.
The app's log lines (the request log) are written, to /dev/null.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/api/v1/nodes/fake_driver")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument(
        "--sqlite", action="store_true", help="SQLite even where PostgreSQL answers"
    )
    parser.add_argument("--top", type=int, default=25, help="how many functions to list")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="every token checked against the database, as without a serving command's cache",
    )
    args = parser.parse_args(argv)
    os.environ["DISPATCHER_CONFIG"] = "production"
    with (
        common.scratch_folder("bench-profile-") as folder,
        common.preferred_database(folder) as (
            url,
            name,
        ),
    ):
        if args.sqlite:
            url, name = f"sqlite:///{folder / 'profile.sqlite'}", "SQLite"
        app = common.make_app(url, CLOUD_FARM=DUMMY_FARM)
        if not args.no_cache:
            auth.serve(app, single_process=True)  # as gunicorn's workers and dispatcher run
        client = app.test_client()
        client.environ_base["HTTP_X_AUTH_TOKEN"] = common.agent_token(app)
        with stderr_to_devnull():
            for _ in range(100):  # warm-up (and the token listener connected)
                client.get(args.path)
            time.sleep(0.5)
            started = time.perf_counter()
            for _ in range(args.requests):
                client.get(args.path)
            plain = (time.perf_counter() - started) / args.requests
            anonymous = app.test_client()
            started = time.perf_counter()
            for _ in range(args.requests):
                anonymous.get("/api/v1/")
            root = (time.perf_counter() - started) / args.requests
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                response = client.get(args.path)
            profiler.disable()
        if response.status_code != 200:
            sys.exit(f"{args.path}: {response.status_code} {response.data[:300]!r}")
        common.dispose(app)

    stats = pstats.Stats(profiler)
    per_group = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        per_group[group_of(filename)] += tottime
        total += tottime
    print(
        f"GET {args.path} with a token, {name}, token cache "
        f"{'off' if args.no_cache else 'on'}, in-process: {common.ms(plain)} per request "
        f"without the profiler (GET /api/v1/ without a token: {common.ms(root)})"
    )
    print(f"\nunder cProfile, {common.ms(total / args.requests)} per request:")
    for group, seconds in sorted(per_group.items(), key=lambda item: -item[1]):
        print(f"  {seconds / total:5.0%}  {common.ms(seconds / args.requests):>9}  {group}")
    print()
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
