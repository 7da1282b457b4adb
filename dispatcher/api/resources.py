"""Views of firewalls (security groups) and storage (volumes)."""

from .. import clouds, operations
from ..validation import (
    PORT_RULE,
    SECURITY_GROUP,
    VOLUME,
    VOLUME_ATTACHMENT,
    VOLUME_REFERENCE,
    validate,
)
from .base import ApiView, agent_required, json_body, ok


class FirewallAPI(ApiView):
    """``/api/v1/fw[/<cloud>]``: GET the security groups and their rules; POST a new group."""

    def get(self, cloud):
        return ok(groups=clouds.service().list_security_groups(cloud))

    @agent_required
    def post(self, cloud):
        body = validate(SECURITY_GROUP, json_body())
        return ok(**operations.create_security_group(cloud, **body))


class FirewallRuleAPI(ApiView):
    """``/api/v1/fw/<open|close>[/<cloud>]``: open or close a port range (PUT, or POST)."""

    @agent_required
    def put(self, action, cloud):
        return ok(**operations.change_port(cloud, action, **validate(PORT_RULE, json_body())))

    post = put  # the original routed both


class VolumeCreateAPI(ApiView):
    """``POST /api/v1/storage/create[/<cloud>]``: a new volume."""

    @agent_required
    def post(self, cloud):
        return ok(**operations.create_volume(cloud, **validate(VOLUME, json_body())))


class VolumeActionAPI(ApiView):
    """``PUT /api/v1/storage/<attach|detach|destroy>[/<cloud>]``."""

    @agent_required
    def put(self, action, cloud):
        if action == "attach":
            return ok(**operations.attach_volume(cloud, **validate(VOLUME_ATTACHMENT, json_body())))
        volume = validate(VOLUME_REFERENCE, json_body())["volume"]
        change = operations.detach_volume if action == "detach" else operations.destroy_volume
        return ok(**change(cloud, volume))
