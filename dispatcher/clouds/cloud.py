"""Cloud: one configured cloud, its libcloud driver and the boundary every call crosses."""

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from cachetools import TTLCache, cachedmethod
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

from .. import metrics
from ..errors import CloudError, CloudTimeoutError, InvalidRequestError, NotSupportedError
from .breaker import CircuitBreaker
from .lookups import image_by_id
from .pool import CloudSpec
from .refusals import is_capacity_refusal

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


def _server_side(exc: Exception) -> bool:
    """A cloud's error of its own side (an HTTP status of 500 or more)."""
    code = getattr(exc, "code", None) or getattr(exc, "http_code", None)
    return isinstance(code, int) and code >= 500


def _provider_message(exc: Exception) -> str:
    # LibcloudError's str() wraps the message in the driver's repr.
    message = getattr(exc, "value", None) or getattr(exc, "message", None) or str(exc)
    return str(message).strip() or type(exc).__name__


REDACTED = "[redacted]"


def _redactions(credentials: list[str]) -> list[str]:
    """Each credential as a provider may echo it: as is and URL-encoded; longest first."""
    forms = set()
    for value in credentials:
        forms.update({value, quote(value, safe=""), quote_plus(value)})
    return sorted(forms, key=len, reverse=True)


class Cloud:
    """One cloud of the pool: its spec, one driver per process and the call boundary.

    Every call into libcloud goes through ``call_driver`` or ``with_driver``: a
    timeout, the driver rebuilt and the call tried again when the cloud rejects the
    credentials (401), metrics, and libcloud's errors turned into the dispatcher's.
    Images, sizes and locations are remembered per process, bounded in size and age;
    nodes never are, they change with every request.
    """

    def __init__(
        self,
        spec: CloudSpec,
        timeout: float,
        max_iterations: int,
        image_cache_seconds: float = 300,
        static_cache_seconds: float = 3600,
        cache_size: int = 1024,
        circuit: CircuitBreaker | None = None,
    ):
        self.spec = spec
        self.circuit = circuit or CircuitBreaker(spec.name, 0, 0)  # 0: always closed
        self._redactions = _redactions(spec.credentials)
        self.timeout = timeout
        self.max_iterations = max(1, int(max_iterations))
        self._driver = None
        self._driver_lock = threading.Lock()
        self._images = TTLCache(maxsize=cache_size, ttl=image_cache_seconds)
        self._static = TTLCache(maxsize=cache_size, ttl=static_cache_seconds)
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Cloud {self.name} ({self.spec.engine})>"

    @property
    def in_process(self) -> bool:
        """Whether the cloud lives in its driver object (libcloud's Dummy): no second
        driver sees its nodes."""
        return self.spec.provider == Provider.DUMMY

    def sibling(self) -> "Cloud":
        """The same cloud with a driver of its own, sharing the caches: for work in another
        thread, since a libcloud driver keeps per-request state on its connection. A cloud
        that lives ``in_process`` is its own sibling."""
        if self.in_process:
            return self
        other = Cloud(self.spec, self.timeout, self.max_iterations, circuit=self.circuit)
        other._images, other._static, other._cache_lock = (
            self._images,
            self._static,
            self._cache_lock,
        )
        return other

    @property
    def name(self) -> str:
        """The cloud's name in CLOUD_FARM."""
        return self.spec.name

    def redact(self, text: str) -> str:
        """``text`` without any of the cloud's credentials: a provider's error may echo
        the request that carried them."""
        for form in self._redactions:
            text = text.replace(form, REDACTED)
        return text

    @property
    def driver(self):
        """The cloud's libcloud driver, built on first use (after gunicorn forks).

        :raises CloudError: the driver refuses the configured parameters.
        """
        driver = self._driver
        if driver is None:
            with self._driver_lock:
                driver = self._driver = self._driver or self._build_driver()
        return driver

    def discard_driver(self) -> None:
        """Forget the driver, so that the next use builds a new one (a new session)."""
        self._driver = None

    def _build_driver(self):
        spec = self.spec
        args = [spec.key] + ([spec.secret] if spec.secret is not None else [])
        try:
            driver = get_driver(spec.provider)(*args, **spec.params)
        except (TypeError, ValueError, LibcloudError) as exc:
            # The driver's own words name the parameter; the arguments, which
            # hold the credentials, are never part of the message.
            raise CloudError(
                f"{spec.name}: the {spec.engine} driver refuses its configuration: "
                + self.redact(str(exc))
            ) from None
        connection = getattr(driver, "connection", None)
        if connection is not None and "timeout" not in spec.params:
            # Set on the connection, not passed to the constructor: some drivers
            # take no `timeout` (Eucalyptus) or break on it (DigitalOcean). The
            # constructor connected without it; connect again, as it did.
            connection.timeout = self.timeout
            connection.connect()
        return driver

    def call_driver(self, method: str, *args, **kwargs):
        """The driver's ``method`` called with these arguments, across the boundary
        (see ``with_driver``); a driver without that method is a NotSupportedError."""

        def operation(driver):
            function = getattr(driver, method, None)
            if function is None:
                raise NotImplementedError(method)
            return function(*args, **kwargs)

        return self.with_driver(method, operation)

    def with_driver(self, what: str, operation: Callable[[Any], Any]):
        """Return ``operation(driver)``, rebuilding the driver and trying again on a 401.

        ``what`` names the work in metrics and messages.

        :raises NotSupportedError: the driver cannot do ``what``.
        :raises CloudTimeoutError: the cloud did not answer within the timeout.
        :raises CloudError: the cloud failed, could not be reached or kept refusing
            the credentials after ``max_iterations`` tries.
        :raises CircuitOpenError: the cloud failed too often in a row (``circuit``): not
            asked now.
        """
        name = self.name
        self.circuit.check()
        for _ in range(self.max_iterations):
            driver = self.driver
            try:
                with metrics.cloud_call(name, what):
                    answer = operation(driver)
                self.circuit.succeeded()
                return answer
            except NotImplementedError as exc:
                raise NotSupportedError(f"{name}: the {driver.name} driver has no {what}") from exc
            except (requests.Timeout, TimeoutError) as exc:
                self.circuit.failed()
                raise CloudTimeoutError(f"{name}: no answer within {self.timeout} seconds") from exc
            except (requests.ConnectionError, OSError) as exc:
                self.circuit.failed()
                raise CloudError(f"{name}: {_transport_reason(exc)}") from exc
            except (LibcloudError, BaseHTTPError) as exc:
                if not _rejects_credentials(exc):
                    # The cloud's fault, not the request's; a cloud out of capacity for one
                    # size (EC2 answers a 500) is well, and may take another.
                    if _server_side(exc) and not is_capacity_refusal(exc):
                        self.circuit.failed()
                    raise CloudError(f"{name}: {self.redact(_provider_message(exc))}") from exc
                log.warning("%s: credentials rejected on %s, rebuilding the driver", name, what)
                self.discard_driver()
        raise CloudError(f"{name}: credentials rejected")

    def confirm(self, what: str, thing: str, done) -> None:
        """Check a driver's answer to a change: True, or a new object, when done.

        :raises CloudError: the driver answered False, its way of saying refused.
        """
        if done is False:
            raise CloudError(f"{self.name}: the cloud did not {what} {thing}")

    @cachedmethod(lambda self: self._images, lock=lambda self: self._cache_lock)
    def image(self, image_id: str):
        """The image ``image_id``: one filtered request where the driver allows, remembered.

        :raises InvalidRequestError: the cloud has no such image.
        """
        found = self.with_driver("get_image", lambda driver: image_by_id(driver, image_id))
        if found is None:
            raise InvalidRequestError(f"no useful image id here: {image_id}")
        return found

    @cachedmethod(lambda self: self._static, lock=lambda self: self._cache_lock)
    def _listing_by_id(self, method: str) -> dict:
        # Sizes and locations change only when the provider's offer does.
        return {str(item.id): item for item in self.call_driver(method)}

    def size(self, size_id: str):
        """The size (flavor) ``size_id``, from the remembered listing.

        :raises InvalidRequestError: the cloud has no such size.
        """
        found = self._listing_by_id("list_sizes").get(size_id)
        if found is None:
            raise InvalidRequestError(f"no useful size id here: {size_id}")
        return found

    def location(self, wanted: str):
        """The location whose id, or else name, is ``wanted``, from the remembered listing.

        :raises InvalidRequestError: the cloud has no such location.
        """
        locations = self._listing_by_id("list_locations")
        found = locations.get(wanted) or next(
            (item for item in locations.values() if item.name == wanted), None
        )
        if found is None:
            raise InvalidRequestError(f"location: no location {wanted} in this cloud")
        return found
