"""The pool manager's reconcile reports, kept per cloud in the database so that /metrics
shows them whichever process or host answers it."""

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select

from .. import clock
from ..extensions import db
from ..models import ReconcileSurvey
from ..serializers import as_utc
from .survey import KINDS, Survey


def record(survey: Survey) -> None:
    """Keep the counts of each cloud the survey listed (one that failed keeps its last
    ones, and their time says how old they are); commits."""
    now = clock.now()
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


class ReconcileCollector:
    """For /metrics: the pool manager's last reconcile report of each cloud, read from the
    database at each scrape; ``reported`` False (no RECONCILE_INTERVAL): none, and no query,
    so that /metrics answers with the database away."""

    def __init__(self, reported: bool):
        self.reported = reported

    def collect(self):
        found = GaugeMetricFamily(
            "dispatcher_reconcile_findings",
            "Orphans, ghosts and mismatches the last reconcile report found, by cloud.",
            labels=["cloud", "kind"],
        )
        checked = GaugeMetricFamily(
            "dispatcher_reconcile_checked_timestamp_seconds",
            "When the last reconcile report listed the cloud (Unix time).",
            labels=["cloud"],
        )
        for row in recorded() if self.reported else []:
            for kind in KINDS:
                found.add_metric([row.cloud, kind], getattr(row, kind))
            checked.add_metric([row.cloud], as_utc(row.checked_at).timestamp())
        yield found
        yield checked
