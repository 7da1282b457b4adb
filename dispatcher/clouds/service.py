"""CloudService: every call into libcloud, with the timeout, 401 retry and error mapping."""

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import SimpleNamespace
from typing import Any

import requests
from cachetools import TTLCache
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute.base import NodeDriver

from .. import metrics, serializers
from ..errors import (
    AmbiguousHostnameError,
    CloudError,
    CloudTimeoutError,
    ConflictError,
    DispatcherError,
    InvalidRequestError,
    NotFoundError,
    NotSupportedError,
)
from . import firewall
from .lookups import image_by_id, node_by_id, nodes_by_name, requires, takes, volume_by_id
from .pool import DriverPool

log = logging.getLogger(__name__)

# action of /vm/action/<action> -> (driver method, verb for messages)
POWER_ACTIONS = {
    "reboot": ("reboot_node", "reboot"),
    "poweron": ("start_node", "power on"),
    "poweroff": ("stop_node", "power off"),
}

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

    def __init__(
        self,
        pool: DriverPool,
        max_iterations: int,
        image_cache_seconds: float = 300,
        static_cache_seconds: float = 3600,
        cache_size: int = 1024,
    ):
        self.pool = pool
        self.max_iterations = max(1, int(max_iterations))
        # Per process, bounded in size and age: images by (cloud, id); the sizes
        # and locations of each cloud, which change only when the provider's
        # offer does. Nodes are never cached: they change with every request.
        self._images = TTLCache(maxsize=cache_size, ttl=image_cache_seconds)
        self._static = TTLCache(maxsize=cache_size, ttl=static_cache_seconds)
        self._cache_lock = threading.Lock()

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
                with metrics.cloud_call(name, what):
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

    def cloud_name(self, cloud: str | None) -> str:
        """The name of ``cloud`` (``default`` for None).

        :raises UnknownCloudError: no such cloud.
        """
        return self.pool.spec(cloud).name

    def served_clouds(self) -> list[dict]:
        """The pool as the original listed it: name, engine and host of each cloud."""
        return [
            {"name": spec.name, "type": spec.engine, "host": spec.host}
            for spec in self.pool.specs.values()
        ]

    def probe(self, cloud: str) -> dict:
        """Whether the cloud answers an authenticated call, and how fast.

        The call is the cheapest one the driver has that needs the credentials: its
        key pairs where it lists them (one short answer on EC2 and OpenStack),
        otherwise its nodes.
        """
        started = time.perf_counter()
        answer = {"name": cloud, "reachable": True}
        try:
            driver = self.pool.get(cloud)
            method = "list_key_pairs"
            if type(driver).list_key_pairs is NodeDriver.list_key_pairs:
                method = "list_nodes"
            self.call(cloud, method)
        except DispatcherError as exc:
            answer.update(reachable=False, message=exc.message)
        answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return answer

    def probe_all(self) -> list[dict]:
        """``probe`` every cloud of the pool at once: as slow as the slowest, not the sum."""
        names = list(self.pool.specs)
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as executor:
            return list(executor.map(self.probe, names))

    def list_nodes(self, cloud: str | None) -> list[dict]:
        """Every node of the cloud, as NODE dicts."""
        return [serializers.node_to_dict(node) for node in self.call(cloud, "list_nodes")]

    def list_images(self, cloud: str | None) -> list[dict]:
        """Every image the cloud offers."""
        return [serializers.image_to_dict(image) for image in self.call(cloud, "list_images")]

    def list_sizes(self, cloud: str | None) -> list[dict]:
        """Every size (flavor) the cloud offers."""
        return [serializers.size_to_dict(size) for size in self.call(cloud, "list_sizes")]

    def get_node(self, cloud: str | None, node_id=None, hostname=None) -> dict:
        """One node, by its id or its name, as a NODE dict.

        :raises NotFoundError: no such node.
        :raises ConflictError: several live nodes have that name.
        """
        return serializers.node_to_dict(self._node(cloud, node_id, hostname))

    def start_node(
        self,
        cloud: str | None,
        name: str,
        image: str,
        size: str,
        keyname: str | None = None,
        metadata: dict | None = None,
        location: str | None = None,
        security_groups: list[str] | None = None,
    ) -> dict:
        """Create a node and return it as a NODE dict.

        ``keyname`` and ``metadata`` reach the driver as ``ex_keyname`` and
        ``ex_metadata``, and only where its ``create_node`` takes them.

        :raises InvalidRequestError: an unknown image, size or location, or an
            option the driver cannot honour.
        """
        driver = self.pool.get(cloud)
        options = {
            "ex_keyname": keyname,
            "ex_metadata": metadata,
            "location": location,
            "ex_security_groups": security_groups,
        }
        options = {key: value for key, value in options.items() if value is not None}
        for key in options:
            if not takes(driver.create_node, key):
                field = key.removeprefix("ex_")
                raise InvalidRequestError(f"{field}: the {driver.name} driver does not take it")
        if location is not None:
            options["location"] = self._location(cloud, location)
        if security_groups is not None:
            options["ex_security_groups"] = self._start_groups(cloud, security_groups)
        node = self.call(
            cloud,
            "create_node",
            name=name,
            image=self._image(cloud, image),
            size=self._size(cloud, size),
            **options,
        )
        return serializers.node_to_dict(node)

    def _start_groups(self, cloud, names: list[str]) -> list:
        value, missing = self.run(
            cloud, "security groups", lambda driver: firewall.start_option(driver, names)
        )
        if missing:
            raise InvalidRequestError(f"security_groups: no group {', '.join(missing)}")
        return value

    def destroy_node(self, cloud: str | None, node_id=None, hostname=None) -> str:
        """Destroy the node; return its id.

        :raises NotFoundError: no such node.
        :raises CloudError: the cloud refused.
        """
        return self._act(cloud, "destroy_node", "destroy", node_id, hostname)

    def power_node(self, cloud: str | None, action: str, node_id=None, hostname=None) -> str:
        """Reboot, power on or power off the node (``POWER_ACTIONS``); return its id.

        :raises NotFoundError: no such node.
        :raises NotSupportedError: the driver cannot do it.
        """
        method, verb = POWER_ACTIONS[action]
        return self._act(cloud, method, verb, node_id, hostname)

    def _act(self, cloud, method: str, verb: str, node_id, hostname) -> str:
        node = self._node(cloud, node_id, hostname)
        self._confirm(cloud, verb, f"node {node.id}", self.call(cloud, method, node))
        return str(node.id)

    def _node(self, cloud, node_id, hostname):
        if node_id is not None:
            node = self.run(cloud, "node lookup", lambda driver: node_by_id(driver, node_id))
            if node is None:
                raise NotFoundError(f"no useful node id here: {node_id}")
            return node
        nodes = self.run(cloud, "node lookup", lambda driver: nodes_by_name(driver, hostname))
        if not nodes:
            raise NotFoundError(f"no useful node id here: no node is called {hostname}")
        if len(nodes) > 1:
            raise AmbiguousHostnameError(hostname, [node.id for node in nodes])
        return nodes[0]

    def _image(self, cloud, image_id: str):
        key = (self.pool.spec(cloud).name, image_id)
        with self._cache_lock:
            image = self._images.get(key)
        if image is None:
            image = self.run(cloud, "get_image", lambda driver: image_by_id(driver, image_id))
            if image is None:
                raise InvalidRequestError(f"no useful image id here: {image_id}")
            with self._cache_lock:
                self._images[key] = image
        return image

    def _static_listing(self, cloud, method: str) -> dict:
        key = (self.pool.spec(cloud).name, method)
        with self._cache_lock:
            listing = self._static.get(key)
        if listing is None:
            listing = {str(item.id): item for item in self.call(cloud, method)}
            with self._cache_lock:
                self._static[key] = listing
        return listing

    def _size(self, cloud, size_id: str):
        size = self._static_listing(cloud, "list_sizes").get(size_id)
        if size is None:
            raise InvalidRequestError(f"no useful size id here: {size_id}")
        return size

    def _location(self, cloud, wanted: str):
        locations = self._static_listing(cloud, "list_locations")
        location = locations.get(wanted) or next(
            (item for item in locations.values() if item.name == wanted), None
        )
        if location is None:
            raise InvalidRequestError(f"location: no location {wanted} in this cloud")
        return location

    def list_locations(self, cloud: str | None) -> list[dict]:
        """Every location (region, zone) of the cloud."""
        return [serializers.location_to_dict(loc) for loc in self.call(cloud, "list_locations")]

    def list_key_pairs(self, cloud: str | None) -> list[dict]:
        """The cloud's key pairs, by name and fingerprint only."""
        return [serializers.key_pair_to_dict(pair) for pair in self.call(cloud, "list_key_pairs")]

    def list_volumes(self, cloud: str | None) -> list[dict]:
        """Every volume of the cloud."""
        volumes = self.run(cloud, "volumes", lambda driver: driver.list_volumes())
        return [serializers.volume_to_dict(volume) for volume in volumes]

    def create_volume(self, cloud: str | None, name: str, size: int, location=None) -> dict:
        """Create a volume of ``size`` GB.

        :raises NotSupportedError: the driver has no volumes.
        :raises InvalidRequestError: an unknown location.
        """
        options = {"location": self._location(cloud, location)} if location else {}
        volume = self.run(
            cloud, "volumes", lambda driver: driver.create_volume(size, name, **options)
        )
        return serializers.volume_to_dict(volume)

    def attach_volume(
        self, cloud, volume_id: str, node_id=None, hostname=None, device=None
    ) -> tuple[str, str]:
        """Attach the volume to the node; return both ids.

        :raises NotFoundError: no such volume or node.
        :raises InvalidRequestError: the driver needs a device and none was given.
        """
        driver = self.pool.get(cloud)
        if device is None and requires(driver.attach_volume, "device"):
            raise InvalidRequestError(f"device: the {driver.name} driver needs one")
        volume = self._volume(cloud, volume_id)
        node = self._node(cloud, node_id, hostname)
        options = {"device": device} if device is not None else {}
        self._confirm(
            cloud,
            "attach volume",
            volume_id,
            self.call(cloud, "attach_volume", node, volume, **options),
        )
        return str(volume.id), str(node.id)

    def detach_volume(self, cloud, volume_id: str) -> str:
        """Detach the volume from its node; return its id.

        :raises NotFoundError: no such volume.
        """
        volume = self._volume(cloud, volume_id)
        self._confirm(cloud, "detach volume", volume_id, self.call(cloud, "detach_volume", volume))
        return str(volume.id)

    def destroy_volume(self, cloud, volume_id: str) -> str:
        """Destroy the volume; return its id.

        :raises NotFoundError: no such volume.
        """
        volume = self._volume(cloud, volume_id)
        self._confirm(
            cloud, "destroy volume", volume_id, self.call(cloud, "destroy_volume", volume)
        )
        return str(volume.id)

    def _confirm(self, cloud, what: str, thing: str, done) -> None:
        # Drivers answer True, or a new object, when done; only False means refused.
        if done is False:
            raise CloudError(f"{self.cloud_name(cloud)}: the cloud did not {what} {thing}")

    def _volume(self, cloud, volume_id: str):
        volume = self.run(cloud, "volumes", lambda driver: volume_by_id(driver, volume_id))
        if volume is None:
            raise NotFoundError(f"no volume {volume_id}")
        return volume

    def list_security_groups(self, cloud: str | None) -> list[dict]:
        """Every security group with its ingress rules."""
        return [group.as_dict() for group in self._groups(cloud)]

    def create_security_group(self, cloud: str | None, name: str, description: str) -> dict:
        """Create a security group; return it.

        :raises ConflictError: a group of that name exists.
        :raises NotSupportedError: the driver has no security groups.
        """
        if any(group.name == name for group in self._groups(cloud)):
            raise ConflictError(f"a security group called {name} exists already")
        group_id = self.run(
            cloud,
            "security groups",
            lambda driver: firewall.create_group(driver, name, description),
        )
        return self._group(cloud, group_id).as_dict()

    def open_port(self, cloud, group: str, rule: firewall.Rule) -> tuple[dict, bool]:
        """Let ``rule`` in through the group; return the group and whether it changed.

        :raises NotFoundError: no such group.
        :raises NotSupportedError: the driver has no security groups.
        """
        self._check_network(cloud, rule)
        found = self._group(cloud, group)
        if rule in found.rules:
            return found.as_dict(), False
        self.run(cloud, "security groups", lambda driver: firewall.open_rule(driver, found, rule))
        return self._group(cloud, found.id).as_dict(), True

    def close_port(self, cloud, group: str, rule: firewall.Rule) -> dict:
        """Remove ``rule`` from the group; return the group.

        :raises NotFoundError: no such group, or the group has no such rule.
        :raises NotSupportedError: the driver has no security groups.
        """
        self._check_network(cloud, rule)
        found = self._group(cloud, group)
        if rule not in found.rules:
            raise NotFoundError(
                f"group {found.name} has no rule {rule.protocol} {rule.from_port}-{rule.to_port}"
                f" from {rule.cidr}"
            )
        self.run(cloud, "security groups", lambda driver: firewall.close_rule(driver, found, rule))
        return self._group(cloud, found.id).as_dict()

    def _check_network(self, cloud, rule: firewall.Rule) -> None:
        driver = self.pool.get(cloud)
        if not firewall.takes_network(driver, rule.cidr):
            raise InvalidRequestError(f"cidr: the {driver.name} driver takes IPv4 networks only")

    def _groups(self, cloud) -> list:
        return self.run(cloud, "security groups", firewall.list_groups)

    def _group(self, cloud, wanted: str):
        groups = self._groups(cloud)
        found = next((group for group in groups if group.id == wanted), None) or next(
            (group for group in groups if group.name == wanted), None
        )
        if found is None:
            raise NotFoundError(f"no security group {wanted}")
        return found

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
