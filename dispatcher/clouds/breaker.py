"""A cloud's circuit breaker: after CIRCUIT_FAILURES failures in a row (no answer, no
connection, an error of the cloud's own side), the cloud is not asked for CIRCUIT_SECONDS;
a request to it is refused at once, rather than after a timeout. Then one call is let
through: its success closes the circuit, its failure opens it again.

The state is per process (each gunicorn worker, the pool manager) and bounded: two
numbers per configured cloud.
"""

import math
import threading
import time
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily

from ..errors import CircuitOpenError

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"  # the pause is over: the next call is the trial


class CircuitBreaker:
    """The circuit of one cloud; ``limit`` 0 turns it off."""

    def __init__(self, name: str, limit: int, seconds: float, clock=time.monotonic):
        self.name = name
        self.limit = int(limit)
        self.seconds = float(seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # in a row
        self._open_until = None  # the clock's time the pause ends at, while it is open

    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        with self._lock:
            if self._open_until is None:
                return CLOSED
            return OPEN if self._clock() < self._open_until else HALF_OPEN

    def seconds_left(self) -> float:
        """How long the circuit stays open; 0 when it is not."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def check(self) -> None:
        """Let a call through, unless the circuit is open.

        :raises CircuitOpenError: 503, with the seconds left.
        """
        left = self.seconds_left()
        if left > 0:
            raise CircuitOpenError(
                f"{self.name}: circuit open after {self._failures} failures in a row, "
                f"{left:.1f} s left before it is asked again",
                max(1, math.ceil(left)),
            )

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._open_until = 0, None

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self.limit and self._failures >= self.limit:
                self._open_until = self._clock() + self.seconds


class CircuitCollector:
    """For /metrics: each cloud's circuit as this process sees it (the state is per process)."""

    def __init__(self, clouds: Iterable):
        self.clouds = clouds  # the pool of Cloud objects, each with its ``circuit``

    def collect(self):
        gauge = GaugeMetricFamily(
            "dispatcher_cloud_circuit_open",
            "1 while the cloud's circuit is open in the process that answers (not asked).",
            labels=["cloud"],
        )
        for cloud in self.clouds:
            gauge.add_metric([cloud.name], 1 if cloud.circuit.seconds_left() > 0 else 0)
        yield gauge
