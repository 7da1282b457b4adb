"""CloudService: every call into libcloud, with the timeout, 401 retry and error mapping."""

import logging
import socket
import ssl
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import requests
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError

from .. import serializers
from ..errors import CloudError, CloudTimeoutError, NotSupportedError
from .pool import DriverPool

log = logging.getLogger(__name__)

# Causes worth naming when a connection fails; the exception's own text is not
# shown, since it carries the request URL and, for some providers, signed
# query parameters.
_TRANSPORT_CAUSES = (
    ConnectionRefusedError,
    ConnectionResetError,
    socket.gaierror,
    ssl.SSLError,
    TimeoutError,
)


def _transport_reason(exc: BaseException) -> str:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _TRANSPORT_CAUSES):
            return exc.strerror or type(exc).__name__
        exc = exc.__cause__ or exc.__context__
    return "connection failed"


def _rejects_credentials(exc: Exception) -> bool:
    # A 401 on the token request is an InvalidCredsError; a 401 on an API call
    # with a token the cloud no longer accepts (expired, revoked) is, for
    # OpenStack and others, a plain BaseHTTPError carrying the code.
    return isinstance(exc, InvalidCredsError) or getattr(exc, "code", None) == 401


def _provider_message(exc: Exception) -> str:
    # LibcloudError's str() wraps the message in the driver's repr.
    message = getattr(exc, "value", None) or getattr(exc, "message", None) or str(exc)
    return str(message).strip() or type(exc).__name__


class CloudService:
    """The only way into the clouds: plain data out, DispatcherErrors on failure."""

    def __init__(self, pool: DriverPool, max_iterations: int):
        self.pool = pool
        self.max_iterations = max(1, int(max_iterations))

    def call(self, cloud: str | None, method: str, *args, **kwargs):
        """Call the driver's ``method`` with the arguments given; see ``run``."""

        def operation(driver):
            function = getattr(driver, method, None)
            if function is None:
                raise NotImplementedError(method)
            return function(*args, **kwargs)

        return self.run(cloud, method, operation)

    def run(self, cloud: str | None, what: str, operation: Callable[[Any], Any]):
        """Return ``operation(driver)``, rebuilding the driver and trying again on a 401.

        :raises UnknownCloudError: no such cloud.
        :raises NotSupportedError: the driver cannot do ``what``.
        :raises CloudTimeoutError: the cloud did not answer within the timeout.
        :raises CloudError: the cloud failed, could not be reached or kept refusing
            the credentials after ``max_iterations`` tries.
        """
        name = self.pool.spec(cloud).name
        for _ in range(self.max_iterations):
            driver = self.pool.get(name)
            try:
                return operation(driver)
            except NotImplementedError as exc:
                raise NotSupportedError(f"{name}: the {driver.name} driver has no {what}") from exc
            except (requests.Timeout, TimeoutError) as exc:
                raise CloudTimeoutError(
                    f"{name}: no answer within {self.pool.timeout} seconds"
                ) from exc
            except (requests.ConnectionError, OSError) as exc:
                raise CloudError(f"{name}: {_transport_reason(exc)}") from exc
            except (LibcloudError, BaseHTTPError) as exc:
                if not _rejects_credentials(exc):
                    raise CloudError(f"{name}: {_provider_message(exc)}") from exc
                log.warning("%s: credentials rejected on %s, rebuilding the driver", name, what)
                self.pool.discard(name)
        raise CloudError(f"{name}: credentials rejected")

    def served_clouds(self) -> list[dict]:
        """The pool as the original listed it: name, engine and host of each cloud."""
        return [
            {"name": spec.name, "type": spec.engine, "host": spec.host}
            for spec in self.pool.specs.values()
        ]

    def list_nodes(self, cloud: str | None) -> list[dict]:
        """Every node of the cloud, as NODE dicts."""
        return [serializers.node_to_dict(node) for node in self.call(cloud, "list_nodes")]

    def list_images(self, cloud: str | None) -> list[dict]:
        """Every image the cloud offers."""
        return [serializers.image_to_dict(image) for image in self.call(cloud, "list_images")]

    def list_sizes(self, cloud: str | None) -> list[dict]:
        """Every size (flavor) the cloud offers."""
        return [serializers.size_to_dict(size) for size in self.call(cloud, "list_sizes")]

    def list_tenants(self, cloud: str | None) -> list[dict]:
        """The tenants the cloud's credentials can see; empty where the provider has none."""
        driver = self.pool.get(cloud)
        if not hasattr(driver.connection, "get_auth_class"):
            return []
        tenants = self.run(cloud, "list_tenants", _identity_projects)
        return [serializers.tenant_to_dict(tenant, driver) for tenant in tenants]


def _identity_projects(driver) -> list:
    """The projects (tenants) of an OpenStack driver's identity service."""
    connection = driver.connection
    # Authenticate the way every request of the driver does: with the credential
    # type its auth version names (identity.authenticate() alone sends an API key
    # for 2.0_password) and with the service catalog kept in step with the token
    # (else the driver's next call finds a valid token, no catalog, and fails).
    connection._populate_hosts_and_request_paths()
    identity = connection.get_auth_class()
    if not identity.auth_token:  # ex_force_auth_token: the identity service is never asked
        raise NotImplementedError("list_tenants")
    if hasattr(identity, "list_tenants"):  # Keystone v2
        listing = identity.list_tenants
    elif hasattr(identity, "list_user_projects") and identity.auth_user_info:  # Keystone v3
        user = SimpleNamespace(id=identity.auth_user_info["id"])
        listing = partial(identity.list_user_projects, user)
    else:
        raise NotImplementedError("list_tenants")
    try:
        return listing()
    except (KeyError, TypeError) as exc:
        # libcloud's identity responses count 401 and 500 as successes, so a
        # refusal surfaces as a body without the list. A 401 also drops the token.
        if not identity.auth_token:
            raise InvalidCredsError("the identity service refused the token") from exc
        raise LibcloudError("the identity service answered without a project list") from exc
