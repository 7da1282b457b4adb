"""``GET /api/v1/health``: for load balancers and for the people on call."""

from flask import request

from .. import clouds
from ..extensions import db
from .base import PublicView, ok, token_required


class HealthAPI(PublicView):
    """``/api/v1/health[?deep=1]``: the database answers; deep, each cloud too."""

    def get(self):
        """Is the service able to work? The database must answer (no token needed).

        With ``?deep=1`` (a token needed) each cloud is asked too: whether it answers
        an authenticated call, and in how many milliseconds.
        """
        # A database that does not answer raises here: the 503 envelope.
        db.session.execute(db.text("SELECT 1"))
        if request.args.get("deep", "0") not in ("", "0", "false", "no"):
            return self.deep()
        return ok(database="ok")

    @token_required
    def deep(self):
        return ok(database="ok", clouds=clouds.service().probe_all())
