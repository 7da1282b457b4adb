"""(c) GET /api/v1/nodes/<cloud> of a Dummy cloud of 10, 1,000 and 10,000 nodes, in-process.

libcloud's DummyNodeDriver(N) holds N nodes (``dummy-0`` ... ``dummy-<N-1>``, running, one
public IP each, ``extra = {"foo": "bar"}``), and CLOUD_FARM's ``USER`` is that N. The
request goes through the whole app (token check, view, serialisation, JSON) with Flask's
test client; the driver's nodes are in memory, so the time is the dispatcher's own. The
first request of each cloud builds its driver and is not counted.
"""

import cProfile
import io
import pstats
import time

from bench import common

SIZES = (10, 1_000, 10_000)
TARGET_SECONDS = 1.0
# Linear: the time per node beyond the fixed cost of a request does not grow with N.
LINEARITY_TOLERANCE = 1.5


def cloud_name(n: int) -> str:
    return f"dummy{n}"


def run(quick: bool = False, **_) -> common.Result:
    repetitions = 3 if quick else 9
    farm = {"default": {"ENGINE": "dummy"}}
    farm.update({cloud_name(n): {"ENGINE": "dummy", "USER": n} for n in SIZES})
    with common.scratch_folder("bench-c-") as folder:
        app = common.make_app(f"sqlite:///{folder / 'bench.sqlite'}", CLOUD_FARM=farm)
        client = app.test_client()
        client.environ_base["HTTP_X_AUTH_TOKEN"] = common.agent_token(app)
        times = {}
        for n in SIZES:
            path = f"/api/v1/nodes/{cloud_name(n)}"
            check(client.get(path), n)  # builds the driver; warms up
            samples = []
            for _ in range(repetitions):
                started = time.perf_counter()
                response = client.get(path)
                samples.append(time.perf_counter() - started)
                check(response, n)
            times[n] = common.median(samples)
        profile = profile_listing(client, SIZES[-1]) if times[SIZES[-1]] > TARGET_SECONDS else None
        common.dispose(app)

    small, large = SIZES[0], SIZES[-1]
    # Time per node beyond the fixed cost of a request (estimated by the smallest listing).
    marginal = {n: (times[n] - times[small]) / (n - small) for n in SIZES[1:]}
    growth = marginal[large] / marginal[SIZES[1]]
    linear = growth <= LINEARITY_TOLERANCE
    rows = ", ".join(f"{n:,}: {common.ms(times[n])}" for n in SIZES)
    measured = (
        f"{rows}; {times[large] / large * 1e6:.1f} us/node at {large:,}; "
        f"per-node cost x{growth:.2f} from {SIZES[1]:,} to {large:,} "
        f"({'linear' if linear else 'not linear'})"
    )
    gaps = []
    if not linear:
        gaps.append(f"per-node cost grows x{growth:.2f} (tolerance x{LINEARITY_TOLERANCE})")
    if times[large] >= TARGET_SECONDS:
        gaps.append(f"{large:,} nodes take {times[large]:.2f} s, {times[large] - 1:.2f} s over")
    details = [f"median of {repetitions} requests per size, after one warm-up request"]
    for n in SIZES:
        details.append(
            f"{n:>6,} nodes: {common.ms(times[n])} per request, "
            f"{times[n] / n * 1e6:.1f} us per node"
        )
    details.append(
        "marginal cost per node: "
        + ", ".join(f"{marginal[n] * 1e6:.1f} us ({small}->{n:,})" for n in marginal)
    )
    if profile:
        details.append(f"cProfile of one {large:,}-node listing:")
        details.extend(profile.splitlines())
    return common.Result(
        key="c",
        title="(c) listing N Dummy nodes",
        measured=measured,
        target="linear; 10,000 < 1 s",
        verdict="met" if not gaps else "missed: " + "; ".join(gaps),
        details=details,
        figures={
            "seconds": {str(n): times[n] for n in SIZES},
            "marginal_us_per_node": {str(n): marginal[n] * 1e6 for n in marginal},
            "growth": growth,
        },
    )


def check(response, n: int) -> None:
    if response.status_code != 200 or len(response.get_json()["nodes"]) != n:
        raise RuntimeError(f"listing of {n} nodes: {response.status_code} {response.data[:300]!r}")


def profile_listing(client, n: int) -> str:
    """The functions where one listing of ``n`` nodes spends its time, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(f"/api/v1/nodes/{cloud_name(n)}")
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()
