"""Loopback ports for the servers the tests and the benchmarks start."""

import socket
from contextlib import closing


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
