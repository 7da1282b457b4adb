"""Loopback ports for the servers the tests and the benchmarks start.

A port is free when it is handed out, and the server started on it binds it a moment
later; whatever binds a port in between takes it. The kernel hands out the ports of its
ephemeral range (``net.ipv4.ip_local_port_range``) to every ``bind(0)`` and to every
outgoing connection, so ``free_port`` draws below that range, where only ports asked for
by number go. Under pytest-xdist, worker n of N draws only every N-th port from its own
(LOWEST + n): two workers of one run never draw the same port. A process never hands out
a port twice. Whoever else draws a port by number (another run on the machine) could
still take one: ``listens`` tells a server that bound its port from one that did not.
"""

import os
import random
import socket
from contextlib import closing
from pathlib import Path

# The lowest port drawn; up to the start of the ephemeral range (32768 by default).
LOWEST = 20000
# A generator of its own, seeded by the system: a test that seeds the module `random`
# does not make every process draw the same ports.
_draws = random.Random()
_handed_out: set[int] = set()


def xdist_worker() -> tuple[int, int]:
    """(n, N): this process is pytest-xdist's worker n of N; (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if name.startswith("gw") and name[2:].isdigit():
        return int(name[2:]), count
    return 0, 1


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    """Nothing holds ``port`` on loopback: no listener, no connection (not even one in
    TIME_WAIT), as a server that binds without SO_REUSEADDR needs."""
    with closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that nothing holds right now, for a server about to start on it."""
    end = _ephemeral_start()
    index, count = xdist_worker()
    if end - LOWEST < 100 * count:  # an unusual range: the kernel's choice, as a last resort
        with closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    for _ in range(1000):
        port = _draws.randrange(LOWEST + index % count, end, count)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port from {LOWEST} to {end}")


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket that listens on 127.0.0.1:``port``, from
    Linux's /proc (True where /proc cannot tell): a server started on a port is ready
    only once it is its own, not someone else's that answers there."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return not Path("/proc/net/tcp").exists()
    listening = set()
    for line in table:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            listening.add(f"socket:[{inode}]")
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor) in listening:
                return True
        except OSError:  # closed meanwhile
            continue
    return False
