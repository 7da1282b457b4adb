"""One listing of every cloud at once (``GET /api/v1/<listing>/all``): each cloud asked
concurrently, the answer ready within about CLOUD_TIMEOUT whatever one cloud does, and
every cloud answered for: a cloud that fails or hangs is an entry with its message, never
a cloud dropped in silence."""

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from flask import current_app

from ..errors import DispatcherError
from ..shapes import INTEGER, NUMBER, TEXT, describes, one_of
from .cloud import Cloud

log = logging.getLogger(__name__)

# Past CLOUD_TIMEOUT, what a cloud's answer may still take to come back from its thread.
GRACE_SECONDS = 0.5


@describes(
    "CloudOutcome",
    {"name": TEXT, "status": one_of("ok", "error"), "count": INTEGER, "latency_ms": NUMBER},
    optional={"message": TEXT},
)
def outcome_to_dict(name: str, count: int, seconds: float, message: str | None) -> dict:
    """How one cloud answered a listing of every cloud: ``ok`` with its count, or ``error``
    with why."""
    shown = {
        "name": name,
        "status": "ok" if message is None else "error",
        "count": count,
        "latency_ms": round(seconds * 1000, 1),
    }
    if message is not None:
        shown["message"] = message
    return shown


def list_everywhere(clouds: list[Cloud], read: Callable[[Cloud], list[dict]]):
    """``read`` of each of ``clouds`` at once: the items, each tagged with its ``cloud``,
    in a stable order (cloud, then id), and one outcome per cloud, in the pool's order.

    Each read runs in a thread with an app context of its own; one that has not answered
    within CLOUD_TIMEOUT (and a little grace) is an error entry, and its thread is left
    to end on its own call's timeout.
    """
    app = current_app._get_current_object()
    timeout = float(app.config["CLOUD_TIMEOUT"])

    def one(cloud: Cloud):
        started = time.perf_counter()
        with app.app_context():
            try:
                return read(cloud), None, time.perf_counter() - started
            except DispatcherError as exc:
                return [], exc.message, time.perf_counter() - started
            except Exception:  # a bug, not the cloud: logged, and this cloud's entry says so
                log.exception("listing %s failed", cloud.name)
                return [], "internal error", time.perf_counter() - started

    pool = ThreadPoolExecutor(max_workers=len(clouds), thread_name_prefix="every-cloud")
    started = time.perf_counter()
    futures = [pool.submit(one, cloud) for cloud in clouds]
    wait(futures, timeout=timeout + GRACE_SECONDS)
    pool.shutdown(wait=False, cancel_futures=True)
    items, outcomes = [], []
    for cloud, future in zip(clouds, futures, strict=True):
        if future.done():
            found, message, seconds = future.result()
        else:
            found, message = [], f"{cloud.name}: no answer within {timeout:g} s"
            seconds = time.perf_counter() - started
        items.extend({**item, "cloud": cloud.name} for item in found)
        outcomes.append(outcome_to_dict(cloud.name, len(found), seconds, message))
    items.sort(key=lambda item: (item["cloud"], str(item.get("id", item.get("name")))))
    return items, outcomes
