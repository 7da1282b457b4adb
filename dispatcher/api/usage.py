"""The usage report: VM-seconds, cost, assigns, waits and peaks of a period, by group."""

from flask import Response
from flask_security import current_user

from .. import usage
from ..models import ADMIN
from .base import ApiView, agent_required, answers, ok, query
from .parameters import choice, moment, parsed


class UsageAPI(ApiView):
    """``GET /api/v1/usage``: who used how much, and what it cost."""

    @agent_required
    @query(
        **{
            "from": moment("from"),
            "to": moment("to"),
            "group_by": parsed(
                usage.groups_from, {"type": "string", "description": usage.GROUPS_SAID}
            ),
            "format": choice("format", ("json", "csv")),
        }
    )
    @answers({"usage": usage.report}, also_as=("text/csv",))
    def get(self, **asked):
        """The usage of the period from ``from`` (the start of this month, UTC, by
        default) to ``to`` (now), each span cut at both: per group of ``group_by``
        (``user`` by default; ``pool``, ``cloud``, ``vm_type``, ``tag:<key>``, several
        comma-separated), the VM-seconds assigned, idle in pools (booting, free, set aside)
        and faulty, their cost by PRICES, the assigns and releases, the p50 and p95 wait of
        the queued requests ready in the period, and the most VMs held at once; and the
        total. ``format=csv``: the same as CSV. An admin sees everyone's; an agent only
        what it assigned, to any of its users. 400 beside Cistern, which keeps no spans."""
        start, end = usage.period(asked["from"], asked["to"])
        holder = None if current_user.has_role(ADMIN) else current_user.username
        found = usage.report(start, end, asked["group_by"] or ["user"], holder)
        if asked["format"] == "csv":
            named = f"usage-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.csv"
            return Response(
                usage.usage_to_csv(found),
                mimetype="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{named}"'},
            )
        return ok(usage=found)
