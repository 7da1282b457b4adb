"""Views that change VMs: start, stop, reboot and power; and one node's details."""

from flask_security import current_user

from .. import clouds, operations
from ..clouds import nodes
from ..serializers import node_to_dict
from ..shapes import TEXT
from ..validation import NODE_REFERENCE, START, STOP
from .base import ApiView, accepts, agent_required, answers, ok
from .idempotency import idempotent


class StartAPI(ApiView):
    """``POST /api/v1/vm/start[/<cloud>]``: a new VM from an image and a size."""

    @agent_required
    @idempotent
    @accepts(START)
    @answers({"nodes": node_to_dict})
    def post(self, cloud, body):
        """Start a VM."""
        return ok(**operations.start_vm(clouds.get(cloud), **body))


class StopAPI(ApiView):
    """``PUT /api/v1/vm/stop[/<cloud>]``: destroy a VM named by id or hostname."""

    @agent_required
    @idempotent
    @accepts(STOP)
    @answers({"result": TEXT})
    def put(self, cloud, body):
        """Destroy a VM; one assigned to someone only with ``"force": true``."""
        return ok(**operations.stop_vm(clouds.get(cloud), current_user.username, **body))


class PowerAPI(ApiView):
    """``PUT /api/v1/vm/action/<reboot|poweron|poweroff>[/<cloud>]``."""

    @agent_required
    @idempotent
    @accepts(NODE_REFERENCE)
    @answers({"result": TEXT})
    def put(self, action, cloud, body):
        """Reboot, power on or power off a VM."""
        return ok(**operations.power_vm(clouds.get(cloud), action, **body))


class NodeAPI(ApiView):
    """``GET /api/v1/nodes/<cloud>/<node_id>``: one node."""

    @answers({"node": node_to_dict})
    def get(self, cloud, node_id):
        """One node's details."""
        return ok(node=nodes.get_node(clouds.get(cloud), node_id=node_id))
