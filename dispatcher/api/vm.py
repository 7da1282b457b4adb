"""Views that change VMs: start, stop, reboot and power; and one node's details."""

from .. import operations
from ..validation import NODE_REFERENCE, START
from .base import ApiView, accepts, agent_required, ok


class StartAPI(ApiView):
    """``POST /api/v1/vm/start[/<cloud>]``: a new VM from an image and a size."""

    @agent_required
    @accepts(START)
    def post(self, cloud, body):
        """Start a VM."""
        return ok(**operations.start_vm(cloud, **body))


class StopAPI(ApiView):
    """``PUT /api/v1/vm/stop[/<cloud>]``: destroy a VM named by id or hostname."""

    @agent_required
    @accepts(NODE_REFERENCE)
    def put(self, cloud, body):
        """Destroy a VM."""
        return ok(**operations.stop_vm(cloud, **body))


class PowerAPI(ApiView):
    """``PUT /api/v1/vm/action/<reboot|poweron|poweroff>[/<cloud>]``."""

    @agent_required
    @accepts(NODE_REFERENCE)
    def put(self, action, cloud, body):
        """Reboot, power on or power off a VM."""
        return ok(**operations.power_vm(cloud, action, **body))


class NodeAPI(ApiView):
    """``GET /api/v1/nodes/<cloud>/<node_id>``: one node."""

    def get(self, cloud, node_id):
        """One node's details."""
        return ok(**operations.node_details(cloud, node_id))
