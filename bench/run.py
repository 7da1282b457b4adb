"""The dispatcher's benchmarks: ``python -m bench.run [--quick] [--only a,b,...]``, in the checkout.

(a) authenticated GET /api/v1/nodes/fake_driver under gunicorn -w 2, against a bare Flask app;
(b) vm/start on moto's EC2: upstream requests and latency, against the 2015 dispatcher's lookups;
(c) listing a Dummy cloud of 10, 1,000 and 10,000 nodes in-process;
(d) assign and release through gunicorn -w 4 on PostgreSQL: throughput with quotas off and
    on against the same writes in raw SQL, and double assignments;
(e) an assign from a warm pool against a cold start on moto's EC2 and against a bare Flask
    app, gunicorn -w 4: latency;
(f) an assign from a pool with a ready check against one without on the Dummy cloud,
    gunicorn -w 4 on PostgreSQL: latency, and whether every VM handed out answers;
(g) the usage report of a month on a ledger of 1,000,000 spans on PostgreSQL, in-process:
    its time by user, tag, pool, and user and pool.

Each prints its details as it finishes; a table of them against their targets comes last.
docs/performance.md says what each measures and what the last full run measured.
"""

import argparse
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import textwrap
import time
import traceback

from bench import common

BENCHMARKS = {
    "a": ("bench_gunicorn", "(a) GET /nodes, gunicorn -w 2", "ratio >= 0.7"),
    "b": ("bench_ec2", "(b) vm/start on EC2 (moto)", "no more requests, faster"),
    "c": ("bench_listing", "(c) listing N Dummy nodes", "linear; 10,000 < 1 s"),
    "d": ("bench_assign", "(d) assign/release, gunicorn -w 4", ">= 400/s, 0 double assignments"),
    "e": ("bench_pools", "(e) assign from a warm pool", "warm p99 < cold p50"),
    "f": ("bench_ready", "(f) assign from a checked pool", "p50 ratio < 1.2"),
    "g": ("bench_usage", "(g) usage report of a month", "by user < 500 ms, by tag < 1 s"),
}
ALIASES = {
    "gunicorn": "a",
    "ec2": "b",
    "listing": "c",
    "assign": "d",
    "pools": "e",
    "ready": "f",
    "usage": "g",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the dispatcher's benchmarks and print a table of the results."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: shorter loads, fewer repetitions"
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help="comma-separated benchmarks to run: a (or gunicorn), b (ec2), c (listing), "
        "d (assign), e (pools), f (ready), g (usage); all by default",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    selected = []
    for name in (part.strip().lower() for part in args.only.split(",") if part.strip()):
        key = ALIASES.get(name, name)
        if key not in BENCHMARKS:
            parser.error(f"--only: unknown benchmark {name!r} ({', '.join(BENCHMARKS)})")
        if key not in selected:
            selected.append(key)
    args.selected = sorted(selected)
    return args


def table(rows: list[list[str]], widths: list[int]) -> str:
    """Rows as a plain text table, each cell wrapped to at most its column's width;
    the first row is the header."""
    wrapped = [
        [textwrap.wrap(cell, width) or [""] for cell, width in zip(row, widths, strict=True)]
        for row in rows
    ]
    columns = [max(len(line) for row in wrapped for line in row[i]) for i in range(len(widths))]
    lines = []
    for index, row in enumerate(wrapped):
        for depth in range(max(len(cell) for cell in row)):
            parts = [
                (cell[depth] if depth < len(cell) else "").ljust(width)
                for cell, width in zip(row, columns, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
        lines.append("  ".join("-" * width for width in columns) if index == 0 else "")
    return "\n".join(lines).rstrip()


def revision() -> str:
    """The checkout's commit, and whether the code under test differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "dispatcher"],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "commit unknown (no git)"
    if not commit:
        return "not a git checkout"
    return f"commit {commit}" + (" with uncommitted changes to the code" if changed else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    # The in-process benchmarks would print the app's INFO lines (users created, requests).
    logging.disable(logging.INFO)
    print(
        f"dispatcher benchmarks{' (quick)' if args.quick else ''}: {', '.join(args.selected)}; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, {revision()}",
        flush=True,
    )
    results, failed = [], False
    started = time.monotonic()
    for key in args.selected:
        module_name, title, target = BENCHMARKS[key]
        print(f"\n== {title}", flush=True)
        began = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{module_name}")
            result = module.run(quick=args.quick)
        except common.Skipped as exc:
            result = common.Result(key, title, f"not run: {exc}", target, "skipped")
        except Exception as exc:
            traceback.print_exc()
            failed = True
            result = common.Result(key, title, f"failed: {type(exc).__name__}", target, "error")
        for line in result.details:
            print(f"  {line}", flush=True)
        print(f"  ({time.monotonic() - began:.0f} s)", flush=True)
        results.append(result)

    print(f"\nResults ({time.monotonic() - started:.0f} s in all):\n")
    rows = [["benchmark", "measured", "target", "verdict"]]
    rows += [[r.title, r.measured, r.target, r.verdict] for r in results]
    print(table(rows, [34, 70, 24, 36]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {r.key: {"title": r.title, "verdict": r.verdict, **r.figures} for r in results},
                handle,
                indent=2,
                default=str,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
