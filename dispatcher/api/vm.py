"""Views that change VMs: start, stop, reboot and power; and one node's details."""

from .. import operations
from ..validation import NODE_REFERENCE, START, validate
from .base import ApiView, agent_required, json_body, ok


class StartAPI(ApiView):
    """``POST /api/v1/vm/start[/<cloud>]``: a new VM from an image and a size."""

    @agent_required
    def post(self, cloud):
        return ok(**operations.start_vm(cloud, **validate(START, json_body())))


class StopAPI(ApiView):
    """``PUT /api/v1/vm/stop[/<cloud>]``: destroy a VM named by id or hostname."""

    @agent_required
    def put(self, cloud):
        return ok(**operations.stop_vm(cloud, **validate(NODE_REFERENCE, json_body())))


class PowerAPI(ApiView):
    """``PUT /api/v1/vm/action/<reboot|poweron|poweroff>[/<cloud>]``."""

    @agent_required
    def put(self, action, cloud):
        body = validate(NODE_REFERENCE, json_body())
        return ok(**operations.power_vm(cloud, action, **body))


class NodeAPI(ApiView):
    """``GET /api/v1/nodes/<cloud>/<node_id>``: one node."""

    def get(self, cloud, node_id):
        return ok(**operations.node_details(cloud, node_id))
