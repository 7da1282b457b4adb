"""The pool manager's reconcile reports, kept per cloud in the database so that /metrics
shows them whichever process or host answers it."""

from sqlalchemy import select

from ..extensions import db
from ..models import ReconcileSurvey
from ..serializers import utcnow
from .survey import Survey


def record(survey: Survey) -> None:
    """Keep the counts of each cloud the survey listed (one that failed keeps its last
    ones, and their time says how old they are); commits."""
    now = utcnow()
    for outcome in survey.clouds:
        if outcome["status"] != "ok":
            continue
        db.session.merge(
            ReconcileSurvey(cloud=outcome["name"], checked_at=now, **survey.counts(outcome["name"]))
        )
    db.session.commit()


def recorded() -> list[ReconcileSurvey]:
    """The last counts of each cloud, by cloud."""
    return list(db.session.scalars(select(ReconcileSurvey).order_by(ReconcileSurvey.cloud)))
