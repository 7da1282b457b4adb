"""Views that read: the root, the served clouds and the per-cloud listings."""

from .. import clouds, serializers
from ..clouds import catalog, nodes, volumes
from ..clouds.everywhere import list_everywhere, outcome_to_dict
from ..clouds.pool import EVERY_CLOUD
from ..errors import UnrecognizedActionError
from ..paging import page
from ..serializers import cloud_to_dict
from ..shapes import TEXT_OR_NULL, list_of
from .base import ApiView, PublicView, answers, json_body, ok, query
from .parameters import MARKER, limit

# action in the URL -> (key of the answer, the read, what builds each item)
LISTINGS = {
    "nodes": ("nodes", nodes.list_nodes, serializers.node_to_dict),
    "images": ("images", catalog.list_images, serializers.image_to_dict),
    "flavors": ("flavors", catalog.list_sizes, serializers.size_to_dict),
    "sizes": ("flavors", catalog.list_sizes, serializers.size_to_dict),
    "tenants": ("tenants", catalog.list_tenants, serializers.tenant_to_dict),
    "locations": ("locations", catalog.list_locations, serializers.location_to_dict),
    "keypairs": ("keypairs", catalog.list_key_pairs, serializers.key_pair_to_dict),
    "volumes": ("volumes", volumes.list_volumes, serializers.volume_to_dict),
}
# Key pairs have no id: their name marks a page.
PAGE_KEYS = {"keypairs": "name"}
PAGE_DEFAULT = 100
PAGE_MAX = 1000


class HomeAPI(PublicView):
    """``/api/v1/``: a liveness answer that needs no token."""

    @answers()
    def get(self):
        """Is the service up? (no token needed)"""
        return ok()

    @answers()
    def post(self):
        """Is the service up? A body, if any, must be JSON (no token needed)."""
        json_body()  # the original parsed the body; a malformed one is still a 400
        return ok()


class CloudAPI(ApiView):
    """``/api/v1/cloud``: the clouds this dispatcher serves."""

    @answers({"served_cloud": list_of(cloud_to_dict)})
    def get(self):
        """The clouds this dispatcher serves."""
        return ok(served_cloud=clouds.served())


class ListingAPI(ApiView):
    """``/api/v1/<action>[/<cloud>]``: nodes, images, flavors (sizes), tenants, locations,
    key pairs or volumes."""

    @query(limit=limit(PAGE_MAX, PAGE_DEFAULT), marker=MARKER)
    @answers(
        # next_marker only in a paged answer (limit or marker given)
        variants=[{key: list_of(item)} for key, _, item in dict.fromkeys(LISTINGS.values())],
        optional={"next_marker": TEXT_OR_NULL, "clouds": list_of(outcome_to_dict)},
    )
    def get(self, action, cloud, limit, marker):
        """What the cloud has: nodes, images, flavors, sizes, tenants, locations, keypairs
        or volumes.

        With ``limit`` or ``marker`` one page of it: ``limit`` items (100 by default, at
        most 1000) after the one whose id is ``marker``, and ``next_marker``, the
        ``marker`` of the next page (null on the last). Without either, everything.

        The cloud ``all`` reads every cloud at once, each within CLOUD_TIMEOUT: the items,
        each with its ``cloud``, by cloud then id (a page's marker is ``<cloud>/<id>``),
        and ``clouds``, how each cloud answered: ``ok`` with its count, or ``error`` with
        its message; never a cloud left out.
        """
        if action not in LISTINGS:
            raise UnrecognizedActionError(f"Unrecognized action found: {action}")
        key, read, _ = LISTINGS[action]
        field = PAGE_KEYS.get(action, "id")
        mark, extra = field, {}
        if cloud == EVERY_CLOUD:
            items, extra["clouds"] = list_everywhere(clouds.every(), read)
            mark = lambda item: f"{item['cloud']}/{item[field]}"  # noqa: E731 (one line)
        else:
            items = read(clouds.get(cloud))
        if limit is None and marker is None:
            return ok(**{key: items}, **extra)
        chosen, next_marker = page(items, limit or PAGE_DEFAULT, marker, mark)
        return ok(**{key: chosen, "next_marker": next_marker}, **extra)
