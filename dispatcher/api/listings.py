"""Views that read: the root, the served clouds and the per-cloud listings."""

from flask import request

from .. import clouds
from ..errors import UnrecognizedActionError
from ..paging import page
from ..validation import limit, marker
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
# Key pairs have no id: their name marks a page.
PAGE_KEYS = {"keypairs": "name"}
PAGE_DEFAULT = 100
PAGE_MAX = 1000


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
        or volumes.

        With ``limit`` or ``marker`` one page of it: ``limit`` items (100 by default, at
        most 1000) after the one whose id is ``marker``, and ``next_marker``, the
        ``marker`` of the next page (null on the last). Without either, everything.
        """
        if action not in LISTINGS:
            raise UnrecognizedActionError(f"Unrecognized action found: {action}")
        key, method = LISTINGS[action]
        # Checked before the cloud is asked: a bad parameter costs no upstream call.
        paged = "limit" in request.args or "marker" in request.args
        count = limit(request.args.get("limit"), PAGE_DEFAULT, PAGE_MAX)
        after = marker(request.args.get("marker"))
        items = getattr(clouds.service(), method)(cloud)
        if not paged:
            return ok(**{key: items})
        chosen, next_marker = page(items, count, after, PAGE_KEYS.get(action, "id"))
        return ok(**{key: chosen, "next_marker": next_marker})
