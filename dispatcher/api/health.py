"""``GET /api/v1/health``: for load balancers and for the people on call."""

from .. import clouds
from ..clouds import health
from ..extensions import db
from ..shapes import const, list_of
from .base import PublicView, answers, ok, query, token_required
from .parameters import flag


class HealthAPI(PublicView):
    """``/api/v1/health[?deep=1]``: the database answers; deep, each cloud too."""

    @query(deep=flag("deep"))
    @answers({"database": const("ok")}, optional={"clouds": list_of(health.probe)})
    def get(self, deep):
        """Is the service able to work? The database must answer (no token needed).

        With ``?deep=1`` (a token needed) each cloud is asked too: whether it answers
        an authenticated call, and in how many milliseconds.
        """
        # A database that does not answer raises here: the 503 envelope.
        db.session.execute(db.text("SELECT 1"))
        if deep:
            return self.deep()
        return ok(database="ok")

    @token_required
    def deep(self):
        return ok(database="ok", clouds=health.probe_all(clouds.every()))
