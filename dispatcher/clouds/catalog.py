"""What one cloud offers: images, sizes (flavors), locations, key pairs and tenants."""

from types import SimpleNamespace

from libcloud.common.types import InvalidCredsError, LibcloudError

from .. import serializers
from .cloud import Cloud


def list_images(cloud: Cloud) -> list[dict]:
    """Every image the cloud offers."""
    return [serializers.image_to_dict(image) for image in cloud.call_driver("list_images")]


def list_sizes(cloud: Cloud) -> list[dict]:
    """Every size (flavor) the cloud offers."""
    return [serializers.size_to_dict(size) for size in cloud.call_driver("list_sizes")]


def list_locations(cloud: Cloud) -> list[dict]:
    """Every location (region, zone) of the cloud."""
    return [serializers.location_to_dict(loc) for loc in cloud.call_driver("list_locations")]


def list_key_pairs(cloud: Cloud) -> list[dict]:
    """The cloud's key pairs, by name and fingerprint only."""
    return [serializers.key_pair_to_dict(pair) for pair in cloud.call_driver("list_key_pairs")]


def list_tenants(cloud: Cloud) -> list[dict]:
    """The tenants the cloud's credentials can see; empty where the provider has none."""
    driver = cloud.driver
    if not hasattr(driver.connection, "get_auth_class"):
        return []
    tenants = cloud.with_driver("list_tenants", _identity_projects)
    return [serializers.tenant_to_dict(tenant, driver) for tenant in tenants]


def authenticate_like_requests(connection) -> None:
    """Authenticate an OpenStack connection the way each of its driver's requests does.

    With the credential type its auth version names (identity.authenticate() alone
    sends an API key for 2.0_password), and with the service catalog kept in step
    with the token (else the driver's next call finds a valid token, no catalog, and
    fails). libcloud has no public call for it: this is the one place that reaches
    its internals, and tests/test_openstack.py fails if they change.
    """
    connection._populate_hosts_and_request_paths()


def _identity_projects(driver) -> list:
    """The projects (tenants) of an OpenStack driver's identity service."""
    connection = driver.connection
    authenticate_like_requests(connection)
    identity = connection.get_auth_class()
    if not identity.auth_token:  # ex_force_auth_token: the identity service is never asked
        raise NotImplementedError("list_tenants")
    if hasattr(identity, "list_tenants"):  # Keystone v2
        return _projects(identity, identity.list_tenants)
    if hasattr(identity, "list_user_projects") and identity.auth_user_info:  # Keystone v3
        user = SimpleNamespace(id=identity.auth_user_info["id"])
        return _projects(identity, lambda: identity.list_user_projects(user))
    raise NotImplementedError("list_tenants")


def _projects(identity, listing) -> list:
    try:
        return listing()
    except (KeyError, TypeError) as exc:
        # libcloud's identity responses count 401 and 500 as successes, so a
        # refusal surfaces as a body without the list. A 401 also drops the token.
        if not identity.auth_token:
            raise InvalidCredsError("the identity service refused the token") from exc
        raise LibcloudError("the identity service answered without a project list") from exc
