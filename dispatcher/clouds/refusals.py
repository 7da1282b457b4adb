"""Whether a cloud refused a call for capacity or quota: the provider's own code in the
error libcloud raised, which the call boundary (``Cloud.with_driver``) keeps as the
cause of its ``CloudError``.

Such a refusal says nothing of the cloud's health: another size may fit where this one
did not (the pools try their next size), and the cloud's circuit does not count it.
"""

import re

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import LibcloudError

# EC2: libcloud's message is one "Code: Message" line per error of the answer.
# InsufficientInstanceCapacity comes with a 500, the limits with a 400.
_EC2_CODES = re.compile(
    r"^(?:InsufficientInstanceCapacity|InstanceLimitExceeded|VcpuLimitExceeded):", re.MULTILINE
)
# OpenStack (nova): a quota exceeded is a 403 ("Quota exceeded for cores: Requested 8, but
# already used 16 of 20 cores"), a 413 before compute API 2.1; libcloud's message is
# "<status> <reason> <nova's message>".
_OPENSTACK_QUOTA_STATUSES = (403, 413)
_OPENSTACK_QUOTA = re.compile(r"\bQuota exceeded\b")
# Nova's scheduler finding no host for the flavor (when the API answers it at once rather
# than as the new server's fault).
_OPENSTACK_NO_HOST = "No valid host was found"


def _provider_error(exc: BaseException) -> BaseException | None:
    """The libcloud error ``exc`` is, or that the boundary's ``CloudError`` came from."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, LibcloudError | BaseHTTPError):
            return candidate
    return None


def is_capacity_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is a cloud's refusal for capacity or quota: EC2's
    InsufficientInstanceCapacity, InstanceLimitExceeded or VcpuLimitExceeded; OpenStack's
    quota exceeded (403 or 413) or "No valid host was found". Only the provider's answer
    counts, never a connection failure, a timeout or the dispatcher's own words."""
    error = _provider_error(exc)
    if error is None:
        return False
    message = str(getattr(error, "value", None) or getattr(error, "message", None) or "")
    if _EC2_CODES.search(message) or _OPENSTACK_NO_HOST in message:
        return True
    code = getattr(error, "code", None) or getattr(error, "http_code", None)
    return code in _OPENSTACK_QUOTA_STATUSES and bool(_OPENSTACK_QUOTA.search(message))
