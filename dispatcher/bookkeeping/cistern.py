"""CisternBookkeeper: the bookkeeping kept by a remote Cistern service, over HTTP.

Cistern's contract, as the original dispatcher's client spoke it, from its API root:

- ``GET /nodes/<cloud>`` with ``{"with_faulty_nodes": bool}``: ``{"status": "ok",
  "nodes": [ASSIGNMENT]}``;
- ``POST /vm/assign/<cloud>`` with ``{"hostname", "user", "vm_type"}`` and
  ``PUT /vm/release/<cloud>`` with ``{"hostname"}``: ``{"status": "ok", "id_vm", "id",
  "result"}``;
- any of them: ``{"status": "error", "message"}`` when Cistern refuses.
"""

import logging

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import AmbiguousHostnameError, BookkeepingRejectedError, BookkeepingUnavailableError
from .base import Bookkeeper

log = logging.getLogger(__name__)


def cistern_session(retries: int) -> requests.Session:
    """A session that retries a request only when the connection could not be made.

    A connection that was never made carried no request, so even an assign (POST)
    is safe to try again; a request that reached Cistern is never repeated.
    """
    session = requests.Session()
    # read=False, not 0: urllib3 wraps a read timeout of a GET or PUT whose read
    # retries are spent in MaxRetryError, which requests turns into a ConnectionError
    # ("cannot connect"); False re-raises it as the read timeout it is.
    retry = Retry(total=retries, connect=retries, read=False, status=0, other=0, redirect=0)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def cistern_url(config) -> str:
    """CISTERN_URL, or the original's CISTERN_HOST, CISTERN_PORT and CISTERN_API."""
    if config.get("CISTERN_URL"):
        return config["CISTERN_URL"]
    return f"http://{config['CISTERN_HOST']}:{config['CISTERN_PORT']}/api/{config['CISTERN_API']}"


class CisternBookkeeper(Bookkeeper):
    """Speaks Cistern's contract (above) with one session and timeouts."""

    def __init__(self, session: requests.Session, base_url: str, timeout: tuple[float, float]):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_config(cls, config) -> "CisternBookkeeper":
        return cls(
            cistern_session(config["CISTERN_RETRIES"]),
            cistern_url(config),
            timeout=tuple(config["CISTERN_TIMEOUT"]),
        )

    def _call(self, method: str, path: str, payload: dict) -> dict:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, json=payload, timeout=self.timeout)
        except requests.Timeout as exc:
            raise BookkeepingUnavailableError(
                f"cistern: no answer within {self.timeout[1]} seconds"
            ) from exc
        except requests.RequestException as exc:
            raise BookkeepingUnavailableError("cistern: cannot connect") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("ok", "error"):
            raise BookkeepingUnavailableError(
                f"cistern: answered HTTP {response.status_code} without its JSON envelope"
            )
        if body["status"] == "error":
            raise BookkeepingRejectedError(f"cistern: {body.get('message') or 'unknown error'}")
        return body

    def nodes(self, cloud: str, with_faulty: bool = False) -> list[dict]:
        body = self._call("GET", f"/nodes/{cloud}", {"with_faulty_nodes": with_faulty})
        nodes = body.get("nodes") or []
        return list(nodes.values()) if isinstance(nodes, dict) else list(nodes)

    def find(self, cloud: str, node_id=None, hostname=None) -> dict | None:
        field, wanted = ("id_vm", node_id) if node_id is not None else ("hostname", hostname)
        # Compared as text: a Cistern may number its VMs where the cloud names them.
        rows = [row for row in self.nodes(cloud, with_faulty=True) if str(row.get(field)) == wanted]
        if len(rows) > 1:
            raise AmbiguousHostnameError(hostname, [row.get("id_vm") for row in rows])
        return rows[0] if rows else None

    def _answer(self, body: dict) -> dict:
        return {"id_vm": body.get("id_vm"), "id": body.get("id"), "result": body.get("result")}

    def assign(
        self,
        cloud: str,
        row: dict,
        user: str,
        vm_type: str,
        assigned_by=None,
        expires_at=None,
        tags=None,
    ) -> dict:
        # Cistern keeps no leases and no tags: the use cases refuse them before asking.
        payload = {"hostname": row["hostname"], "user": user, "vm_type": vm_type}
        return self._answer(self._call("POST", f"/vm/assign/{cloud}", payload))

    def release(self, cloud: str, row: dict, retire: bool = False) -> dict:
        # No pools beside Cistern (their VMs live in the local ledger): nothing to retire.
        return self._answer(
            self._call("PUT", f"/vm/release/{cloud}", {"hostname": row["hostname"]})
        )
