"""Views of firewalls (security groups) and storage (volumes)."""

from .. import clouds, operations
from ..validation import (
    PORT_RULE,
    SECURITY_GROUP,
    VOLUME,
    VOLUME_ATTACHMENT,
    VOLUME_REFERENCE,
)
from .base import ApiView, accepts, agent_required, ok


class FirewallAPI(ApiView):
    """``/api/v1/fw[/<cloud>]``: the security groups and their rules; a new group."""

    def get(self, cloud):
        """The security groups with their ingress rules."""
        return ok(groups=clouds.service().list_security_groups(cloud))

    @agent_required
    @accepts(SECURITY_GROUP)
    def post(self, cloud, body):
        """Create a security group."""
        return ok(**operations.create_security_group(cloud, **body))


class FirewallRuleAPI(ApiView):
    """``/api/v1/fw/<open|close>[/<cloud>]``: open or close a port range (PUT, or POST)."""

    @agent_required
    @accepts(PORT_RULE)
    def put(self, action, cloud, body):
        """Open or close a port range of a security group."""
        return ok(**operations.change_port(cloud, action, **body))

    post = put  # the original routed both


class VolumeCreateAPI(ApiView):
    """``POST /api/v1/storage/create[/<cloud>]``: a new volume."""

    @agent_required
    @accepts(VOLUME)
    def post(self, cloud, body):
        """Create a volume."""
        return ok(**operations.create_volume(cloud, **body))


class VolumeAttachAPI(ApiView):
    """``PUT /api/v1/storage/attach[/<cloud>]``: attach a volume to a node."""

    @agent_required
    @accepts(VOLUME_ATTACHMENT)
    def put(self, cloud, body):
        """Attach a volume to a node."""
        return ok(**operations.attach_volume(cloud, **body))


class VolumeChangeAPI(ApiView):
    """``PUT /api/v1/storage/<detach|destroy>[/<cloud>]``."""

    @agent_required
    @accepts(VOLUME_REFERENCE)
    def put(self, action, cloud, body):
        """Detach or destroy a volume."""
        change = operations.detach_volume if action == "detach" else operations.destroy_volume
        return ok(**change(cloud, body["volume"]))
