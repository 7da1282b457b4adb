"""Views of the reconcile: the books checked against the clouds, and mended."""

from flask_security import current_user

from .. import operations, reconcile
from ..shapes import BOOLEAN
from ..validation import RECONCILE
from .base import ApiView, accepts, admin_required, answers, ok


class ReconcileAPI(ApiView):
    """``/api/v1/reconcile[/<cloud>]``: orphans, ghosts and mismatches, of one cloud or of
    every cloud."""

    @answers(reconcile.REPORT_FIELDS)
    def get(self, cloud):
        """What the books and the cloud (without one, every cloud at once) disagree on:
        ``orphans``, nodes the cloud has and the books lack (``pool`` names the pool whose
        tags one carries); ``ghosts``, VMs the books hold FREE, ASSIGNED, BOOTING or
        RESERVED that the cloud no longer has; ``mismatches``, VMs the books hold FREE or
        ASSIGNED that the cloud reports stopped, suspended or in error. Each with the
        ``fix`` a POST would apply. ``clouds`` says how each cloud's listing went; one that
        failed has no findings. Changes nothing."""
        return ok(**reconcile.survey(cloud).to_dict())

    @admin_required
    @accepts(RECONCILE, optional=True)
    @answers({**reconcile.REPORT_FIELDS, "applied": BOOLEAN})
    def post(self, cloud, body):
        """The report, with its fixes applied if ``apply`` is true (a dry run otherwise):
        tagged orphans adopted into their pool, ghosts marked DELETED (a leased ASSIGNED
        one told to its lease webhook as released), mismatches marked FAULTY; other
        orphans destroyed only with ``destroy_orphans``. Each ``fix`` then says what
        became of the finding; every change is in the history. The local ledger only: 400
        beside Cistern."""
        found = operations.reconcile_books(cloud, current_user.username, **body)
        return ok(**found.to_dict(), applied=body["apply"])
