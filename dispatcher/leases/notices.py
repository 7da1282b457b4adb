"""The lease webhooks' events: queued with the change they tell of, sent by the pool
manager (``webhooks.deliver_due``), never inside a client's request."""

import datetime
from dataclasses import dataclass

from flask import current_app

from .. import pools, webhooks


@dataclass(frozen=True)
class Leased:
    """What an event tells of a leased VM, taken before a release forgets it."""

    cloud: str
    id_vm: str
    hostname: str | None
    user: str | None
    vm_type: str | None
    expires_at: datetime.datetime | None
    pool: str | None

    @classmethod
    def of(cls, row) -> "Leased":
        """The lease of a ledger row (``models.Assignment``)."""
        return cls(
            row.cloud, row.id_vm, row.hostname, row.user, row.recipe, row.expires_at, row.pool
        )


def webhook_url(pool: str | None) -> str | None:
    """Where the events of a VM of ``pool`` go: the pool's ``webhook_url``, else
    LEASE_WEBHOOK_URL; None: nowhere."""
    spec = pools.find(pool)
    if spec is not None and spec.webhook_url:
        return spec.webhook_url
    return current_app.config["LEASE_WEBHOOK_URL"]


def notify(event: str, leased: Leased) -> bool:
    """Queue ``event`` (``expiring``, ``released``) of the lease for its webhook, in the
    session of the change it tells of; whether a webhook takes it."""
    url = webhook_url(leased.pool)
    if not url:
        return False
    webhooks.queue(
        url,
        event,
        cloud=leased.cloud,
        id_vm=leased.id_vm,
        hostname=leased.hostname,
        user=leased.user,
        vm_type=leased.vm_type,
        expires_at=leased.expires_at,
    )
    return True
