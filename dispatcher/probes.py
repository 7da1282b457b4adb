"""Whether a VM answers: a TCP connect to a port, or an HTTP GET answered 2xx, each
within its timeout. The pool pass asks this of the VMs it would hand out; nothing here
knows of pools or of the ledger."""

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests


def first_address(public_ips, private_ips, prefer: str = "public") -> str | None:
    """The VM's first address of the kind ``prefer``red (public or private), else of the
    other kind; None when it has none."""
    ordered = [public_ips, private_ips] if prefer == "public" else [private_ips, public_ips]
    for addresses in ordered:
        if addresses:
            return addresses[0]
    return None


def tcp(address: str, port: int, timeout: float) -> str | None:
    """None when ``address`` accepts a connection on ``port`` within ``timeout`` seconds;
    else why not."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"TCP port {port} of {address} did not answer within {timeout:g} s"
    except OSError as exc:
        return f"TCP port {port} of {address}: {exc.strerror or type(exc).__name__}"


def http(url: str, address: str, timeout: float) -> str | None:
    """None when a GET of ``url`` (its ``{address}`` filled in) answers 2xx within
    ``timeout`` seconds; else why not."""
    host = f"[{address}]" if ":" in address else address
    target = url.format(address=host)
    try:
        # A redirect is an answer of its own, not followed: the check is of this VM.
        answer = requests.get(target, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return f"GET {target} did not answer within {timeout:g} s"
    except requests.RequestException as exc:
        return f"GET {target} failed: {type(exc).__name__}"
    if not 200 <= answer.status_code < 300:
        return f"GET {target} answered {answer.status_code}"
    return None


def run_all(checks: list[Callable[[], str | None]], most_at_once: int) -> list[str | None]:
    """Run ``checks`` at once, ``most_at_once`` at a time at most; their answers, in order.
    With as many threads as checks, the slowest bounds the wait."""
    if not checks:
        return []
    with ThreadPoolExecutor(max(1, min(len(checks), most_at_once))) as executor:
        return list(executor.map(lambda check: check(), checks))
