"""Whether the clouds answer, for the deep health check."""

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from libcloud.compute.base import NodeDriver

from ..errors import DispatcherError
from ..shapes import BOOLEAN, NUMBER, TEXT, describes, one_of
from .breaker import CLOSED, HALF_OPEN, OPEN
from .cloud import Cloud


@describes(
    "CloudHealth",
    {
        "name": TEXT,
        "reachable": BOOLEAN,
        "latency_ms": NUMBER,
        "circuit": one_of(CLOSED, OPEN, HALF_OPEN),
    },
    {"message": TEXT},  # why it is not reachable
)
def probe(cloud: Cloud) -> dict:
    """Whether the cloud answers an authenticated call, and how fast; the state of its
    circuit breaker.

    The call is the cheapest one the driver has that needs the credentials: its
    key pairs where it lists them (one short answer on EC2 and OpenStack),
    otherwise its nodes.
    """
    started = time.perf_counter()
    answer = {"name": cloud.name, "reachable": True}
    try:
        method = "list_key_pairs"
        if type(cloud.driver).list_key_pairs is NodeDriver.list_key_pairs:
            method = "list_nodes"
        cloud.call_driver(method)
    except DispatcherError as exc:
        answer.update(reachable=False, message=exc.message)
    answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    answer["circuit"] = cloud.circuit.state()  # open: not asked, its message says how long
    return answer


def probe_all(clouds: Iterable[Cloud]) -> list[dict]:
    """``probe`` every cloud at once: as slow as the slowest, not the sum."""
    clouds = list(clouds)
    with ThreadPoolExecutor(max_workers=min(8, len(clouds))) as executor:
        return list(executor.map(probe, clouds))
