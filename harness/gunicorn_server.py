"""gunicorn on a loopback port, for the tests and the benchmarks: started, waited for, stopped.

Also ``race``: concurrent clients released at once, to put several workers to work.
"""

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from harness.ports import listens

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer:
    """A gunicorn process (``args``) in ``cwd`` (the checkout), its output in the file ``log``.

    It is ready once its process listens on ``port`` and ``GET
    http://127.0.0.1:<port><ready_path>`` answers 200; a server that exits or is not ready
    within ``timeout`` seconds raises RuntimeError with its output. It runs in a session of
    its own, so that its workers die with it.
    """

    def __init__(
        self,
        args: list[str],
        env: dict,
        log: Path,
        port: int,
        ready_path: str = "/api/v1/",
        timeout: float = 60,
        cwd: Path = ROOT,
    ):
        self.args = args
        self.log = log
        self.port = port
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks.
        with log.open("w") as output:
            self.process = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(f"http://127.0.0.1:{port}{ready_path}", timeout)
        except BaseException:
            self.stop()  # nobody else holds it yet: the caller only learns of a started server
            raise

    def _wait_until_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Its own port: not another server that took the port first and answers there.
                if (
                    listens(self.process.pid, self.port)
                    and requests.get(url, timeout=2).status_code == 200
                ):
                    return
            # Refused before the master binds; a timeout while the workers still load the app.
            except (requests.ConnectionError, requests.Timeout):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {self.args}\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What gunicorn and its workers printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def workers(self) -> set[int]:
        """The pids of the master's children right now: its workers."""
        master = self.process.pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            return {int(pid) for pid in children}
        except OSError:
            found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
            return {int(pid) for pid in found.stdout.split()}

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL to its whole session if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "GunicornServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def race(count: int, send) -> list:
    """Call ``send(index, session)`` from ``count`` threads released at once; their answers."""
    barrier = threading.Barrier(count)

    def run(index):
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return send(index, session)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
