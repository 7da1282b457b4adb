"""Views that read: the root, the served clouds and the per-cloud listings."""

from .. import clouds
from ..errors import UnrecognizedActionError
from .base import ApiView, PublicView, json_body, ok

# action in the URL -> (key of the answer, CloudService method)
LISTINGS = {
    "nodes": ("nodes", "list_nodes"),
    "images": ("images", "list_images"),
    "flavors": ("flavors", "list_sizes"),
    "sizes": ("flavors", "list_sizes"),
    "tenants": ("tenants", "list_tenants"),
    "locations": ("locations", "list_locations"),
    "keypairs": ("keypairs", "list_key_pairs"),
    "volumes": ("volumes", "list_volumes"),
}


class HomeAPI(PublicView):
    """``/api/v1/``: a liveness answer that needs no token."""

    def get(self):
        """Is the service up? (no token needed)"""
        return ok()

    def post(self):
        """Is the service up? A body, if any, must be JSON (no token needed)."""
        json_body()  # the original parsed the body; a malformed one is still a 400
        return ok()


class CloudAPI(ApiView):
    """``/api/v1/cloud``: the clouds this dispatcher serves."""

    def get(self):
        """The clouds this dispatcher serves."""
        return ok(served_cloud=clouds.service().served_clouds())


class ListingAPI(ApiView):
    """``/api/v1/<action>[/<cloud>]``: nodes, images, flavors (sizes), tenants, locations,
    key pairs or volumes."""

    def get(self, action, cloud):
        """What the cloud has: nodes, images, flavors, sizes, tenants, locations, keypairs
        or volumes."""
        if action not in LISTINGS:
            raise UnrecognizedActionError(f"Unrecognized action found: {action}")
        key, method = LISTINGS[action]
        return ok(**{key: getattr(clouds.service(), method)(cloud)})
