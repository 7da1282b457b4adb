"""Views of firewalls (security groups) and storage (volumes)."""

from .. import clouds, operations
from ..clouds import firewall
from ..clouds.groups import Group
from ..serializers import volume_to_dict
from ..shapes import TEXT, list_of
from ..validation import (
    GROUP_REFERENCE,
    PORT_RULE,
    SECURITY_GROUP,
    VOLUME,
    VOLUME_ATTACHMENT,
    VOLUME_REFERENCE,
)
from .base import ApiView, accepts, agent_required, answers, ok
from .idempotency import idempotent


class FirewallAPI(ApiView):
    """``/api/v1/fw[/<cloud>]``: the security groups and their rules; a new group; a group
    deleted."""

    @answers({"groups": list_of(Group.as_dict)})
    def get(self, cloud):
        """The security groups with their ingress rules."""
        return ok(groups=firewall.list_security_groups(clouds.get(cloud)))

    @agent_required
    @idempotent
    @accepts(SECURITY_GROUP)
    @answers({"group": Group.as_dict})
    def post(self, cloud, body):
        """Create a security group."""
        return ok(**operations.create_security_group(clouds.get(cloud), **body))

    @agent_required
    @idempotent
    @accepts(GROUP_REFERENCE)
    @answers({"result": TEXT})
    def delete(self, cloud, body):
        """Delete a security group (by id or name)."""
        return ok(**operations.delete_security_group(clouds.get(cloud), body["group"]))


class FirewallRuleAPI(ApiView):
    """``/api/v1/fw/<open|close>[/<cloud>]``: open or close a port range (PUT, or POST)."""

    @agent_required
    @idempotent
    @accepts(PORT_RULE)
    @answers({"group": Group.as_dict, "result": TEXT})
    def put(self, action, cloud, body):
        """Open or close a port range of a security group."""
        return ok(**operations.change_port(clouds.get(cloud), action, **body))

    post = put  # the original routed both


class VolumeCreateAPI(ApiView):
    """``POST /api/v1/storage/create[/<cloud>]``: a new volume."""

    @agent_required
    @idempotent
    @accepts(VOLUME)
    @answers({"volume": volume_to_dict})
    def post(self, cloud, body):
        """Create a volume."""
        return ok(**operations.create_volume(clouds.get(cloud), **body))


class VolumeAttachAPI(ApiView):
    """``PUT /api/v1/storage/attach[/<cloud>]``: attach a volume to a node."""

    @agent_required
    @idempotent
    @accepts(VOLUME_ATTACHMENT)
    @answers({"result": TEXT})
    def put(self, cloud, body):
        """Attach a volume to a node."""
        return ok(**operations.attach_volume(clouds.get(cloud), **body))


class VolumeChangeAPI(ApiView):
    """``PUT /api/v1/storage/<detach|destroy>[/<cloud>]``."""

    @agent_required
    @idempotent
    @accepts(VOLUME_REFERENCE)
    @answers({"result": TEXT})
    def put(self, action, cloud, body):
        """Detach or destroy a volume."""
        change = operations.detach_volume if action == "detach" else operations.destroy_volume
        return ok(**change(clouds.get(cloud), body["volume"]))
