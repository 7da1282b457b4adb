"""A libcloud compute driver over a simulated cloud, on a simulated clock: its VMs run a
while after their create call, as a real cloud's boot.

A ``World`` holds the cloud's VMs and reads the time from the clock it is given; drivers
are made by the dispatcher from CLOUD_FARM (``{"ENGINE": ENGINE, "USER": world.key}``,
after ``register()``), and every driver of one key sees the same world, as every
connection to a real cloud sees the same VMs. A VM is PENDING from its create call until
the clock passes its ready time (``boot`` seconds, drawn for each VM from the pool's own
seeded generator), RUNNING from then until it is destroyed.
"""

import heapq
import itertools
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from libcloud.compute.base import Node, NodeDriver, NodeImage, NodeSize
from libcloud.compute.providers import get_driver, set_driver
from libcloud.compute.types import NodeState

from dispatcher.pools.marks import POOL_TAG

ENGINE = "simulated"
IMAGE = "sim-image"
SIZE = "sim-size"

# The worlds the drivers find by their key.
_WORLDS: dict[str, "World"] = {}


def register() -> None:
    """Make ENGINE a libcloud compute provider, so that CLOUD_FARM may name it."""
    try:
        get_driver(ENGINE)
    except AttributeError:
        set_driver(ENGINE, __name__, "SimulatedNodeDriver")


@dataclass
class Created:
    """A VM the world made: when (seconds of the clock), for which pool, ready when."""

    pool: str | None
    at: float
    ready_at: float


@dataclass
class World:
    """The VMs of one simulated cloud, on the clock ``seconds`` (a callable: seconds of
    simulated time)."""

    seconds: Callable[[], float]
    boot_mean: float
    boot_jitter: float
    seed: int
    key: str = field(default_factory=lambda: f"world-{uuid.uuid4().hex[:12]}")
    nodes: dict[str, Node] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)
    _ready: dict[str, float] = field(default_factory=dict)  # node id -> ready time
    _booting: dict = field(default_factory=dict)  # pool -> heap of (ready time, node id)
    _boots: dict[str | None, random.Random] = field(default_factory=dict)
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "World":
        _WORLDS[self.key] = self
        return self

    def __exit__(self, *exc) -> None:
        _WORLDS.pop(self.key, None)

    def boot_seconds(self, pool: str | None) -> float:
        """How long the pool's next VM boots: uniform in mean ± jitter, one generator per
        pool, so that what one pool makes leaves the other pools' draws as they were."""
        generator = self._boots.get(pool)
        if generator is None:
            generator = self._boots[pool] = random.Random(f"{self.seed}:boot:{pool}")
        low, high = self.boot_mean - self.boot_jitter, self.boot_mean + self.boot_jitter
        return max(0.0, generator.uniform(low, high))

    def create(self, driver, name: str, size, image, metadata: dict | None) -> Node:
        """A new VM, PENDING until its ready time; counted in ``created``."""
        with self._lock:
            now = self.seconds()
            pool = (metadata or {}).get(POOL_TAG)
            ready_at = now + self.boot_seconds(pool)
            number = next(self._numbers)
            node = Node(
                id=f"sim-{number}",
                name=name,
                state=NodeState.PENDING,
                public_ips=[f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"],
                private_ips=[],
                driver=driver,
                size=size,
                image=image,
                extra={"metadata": dict(metadata or {})},
            )
            self.nodes[node.id] = node
            self._ready[node.id] = ready_at
            heapq.heappush(self._booting.setdefault(pool, []), (ready_at, node.id))
            self.created.append(Created(pool, now, ready_at))
            return node

    def listed(self) -> list[Node]:
        """The live VMs, RUNNING those whose ready time has passed, PENDING the others."""
        with self._lock:
            now = self.seconds()
            for node_id, node in self.nodes.items():
                running = self._ready[node_id] <= now
                node.state = NodeState.RUNNING if running else NodeState.PENDING
            return list(self.nodes.values())

    def destroy(self, node_id: str) -> bool:
        """Remove the VM; whether it was there."""
        with self._lock:
            self._ready.pop(node_id, None)
            return self.nodes.pop(node_id, None) is not None

    def next_ready(self, pool: str, after: float) -> float | None:
        """The soonest ready time after ``after`` of a live VM of ``pool``; None if none."""
        with self._lock:
            heap = self._booting.get(pool, [])
            while heap and (heap[0][0] <= after or heap[0][1] not in self.nodes):
                heapq.heappop(heap)
            return heap[0][0] if heap else None


class SimulatedNodeDriver(NodeDriver):
    """libcloud's view of a ``World``: the one image and size it offers, its VMs."""

    name = "Simulated cloud"
    website = "https://example.com/simulated"
    type = ENGINE

    def __init__(self, key, secret=None, **_):  # no connection: the cloud is in this process
        self.key = key
        self.world = _WORLDS[key]

    def list_images(self, location=None):
        return [NodeImage(id=IMAGE, name="Simulated image", driver=self)]

    def list_sizes(self, location=None):
        return [
            NodeSize(
                id=SIZE,
                name="Simulated size",
                ram=2048,
                disk=20,
                bandwidth=None,
                price=0.0,
                driver=self,
            )
        ]

    def list_locations(self):
        return []

    def list_nodes(self, ex_node_ids=None):
        listed = self.world.listed()
        if ex_node_ids is not None:
            wanted = set(ex_node_ids)
            listed = [node for node in listed if node.id in wanted]
        return listed

    def create_node(self, name, size, image, location=None, ex_metadata=None):
        return self.world.create(self, name, size, image, ex_metadata)

    def destroy_node(self, node):
        return self.world.destroy(str(node.id))
