"""Database rows: users and roles (Flask-Security-Too's mixins), the assignment ledger
and its history."""

from flask_security import RoleMixin, UserMixin
from sqlalchemy import func, text

from .extensions import db

ADMIN = "admin"
AGENT = "agent"
ROLES = {
    ADMIN: "manages users and everything an agent does",
    AGENT: "changes clouds and assignments",
}


class TimestampMixin:
    """When a row was made and last changed."""

    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at = db.Column(
        db.DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


roles_users = db.Table(
    "roles_users",
    db.Column(
        "user_id", db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    db.Column(
        "role_id", db.Integer, db.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    ),
)


class Role(TimestampMixin, db.Model, RoleMixin):
    """A named set of rights: ``admin`` or ``agent``."""

    __tablename__ = "roles"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), unique=True, nullable=False)
    description = db.Column(db.String(255))


class User(TimestampMixin, db.Model, UserMixin):
    """Someone who may hold a token: a person, or an agent program."""

    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(255), unique=True, nullable=False)
    email = db.Column(db.String(255), unique=True)
    # Only ever a hash (Flask-Security-Too's hash_password), never the password.
    password = db.Column(db.String(255), nullable=False)
    active = db.Column(db.Boolean, nullable=False, default=True)
    fs_uniquifier = db.Column(db.String(64), unique=True, nullable=False)
    # Changed to revoke every token of the user; without it revocation is a no-op.
    fs_token_uniquifier = db.Column(db.String(64), unique=True, nullable=False)
    roles = db.relationship(Role, secondary=roles_users, backref=db.backref("users", lazy=True))


# Assignment.status: the Cistern codes, then the dispatcher's own.
FREE = 1
ASSIGNED = 2
FAULTY = 3
DELETED = 4  # destroyed through the dispatcher; kept for the record, never listed
BOOTING = 5  # started by the pool manager, not yet running: never handed out, never listed
RESERVED = 6  # set aside for a queued request: never handed out by an assign, never listed
STATUS_NAMES = {
    FREE: "FREE",
    ASSIGNED: "ASSIGNED",
    FAULTY: "FAULTY",
    DELETED: "DELETED",
    BOOTING: "BOOTING",
    RESERVED: "RESERVED",
}


class Assignment(TimestampMixin, db.Model):
    """One VM of one cloud in the local ledger: booting, free, set aside for a queued
    request, assigned to a user, or faulty.

    A VM a warm pool made carries the pool's name, the creation id it was tagged with in
    its cloud, the addresses it had when it came up and when that was.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        db.UniqueConstraint("cloud", "id_vm"),
        db.Index("ix_assignments_pool_status", "pool", "status"),
        db.Index("ix_assignments_status_expires_at", "status", "expires_at"),
        # A quota's count of the VMs a caller holds.
        db.Index("ix_assignments_assigned_by_status", "assigned_by", "status"),
    )

    id = db.Column(db.Integer, primary_key=True)
    cloud = db.Column(db.String(80), nullable=False)
    id_vm = db.Column(db.String(255), nullable=False)  # the node's id in its cloud
    hostname = db.Column(db.String(255), nullable=False)
    recipe = db.Column(db.String(255))  # the vm_type (application) it serves
    user = db.Column(db.String(255))
    status = db.Column(db.Integer, nullable=False, default=FREE, index=True)
    assigned_at = db.Column(db.DateTime(timezone=True))
    pool = db.Column(db.String(80))
    creation_id = db.Column(db.String(64))
    ready_at = db.Column(db.DateTime(timezone=True))
    public_ips = db.Column(db.JSON)
    private_ips = db.Column(db.JSON)
    # The authenticated caller who assigned it: with a lease, only they (or an admin) may
    # extend or release it.
    assigned_by = db.Column(db.String(255))
    expires_at = db.Column(db.DateTime(timezone=True))  # the lease's end; None: no lease
    # When the lease's "expiring" webhook was queued, so that it goes once per expiry.
    lease_warned_at = db.Column(db.DateTime(timezone=True))
    # A pool's ready check: when the VM was last checked, and its failed checks in a row.
    checked_at = db.Column(db.DateTime(timezone=True))
    check_failures = db.Column(db.Integer, nullable=False, default=0, server_default="0")
    # The fingerprint of the pool's entry it was made from (PoolCloud.template).
    template = db.Column(db.String(64))
    # The queued request (VMRequest.id) it is set aside for, or was handed over to while
    # it holds it; None otherwise.
    request_id = db.Column(db.Integer, index=True)
    # What the holder tagged the assignment with ({"project": "genomics"}); None when
    # nobody holds it, or the assign named no tags.
    tags = db.Column(db.JSON(none_as_null=True))
    # The size it was made with (a warm pool's VM); None where the dispatcher did not
    # make it. What its hours are priced by.
    size = db.Column(db.String(255))


class Span(db.Model):
    """One period a VM spent in one state for one holder: booting, free, set aside for a
    request, assigned to a user with its tags, or faulty. The ledger opens and closes
    spans in the same transaction as the change of state, and they are kept after the VM
    has gone: what quotas count in VM-hours, what pool sizing counts as demand, and what
    usage reports read.

    ``status`` is the VM's state (``Assignment.status``); ``holder`` the caller who
    assigned it, whom quotas bind, and ``user`` the user it was assigned to. An assigned
    span's tags and lease's end follow the assignment's extends. Times come from the
    dispatcher's clock; an open span has no ``ended_at``.
    """

    __tablename__ = "spans"
    __table_args__ = (
        db.Index("ix_spans_holder_ended_at", "holder", "ended_at"),
        # A pool's assigns in a span of time: its demand, and its forecast.
        db.Index("ix_spans_pool_started_at", "pool", "started_at"),
        # A report's period: the spans begun before its end.
        db.Index("ix_spans_started_at", "started_at"),
        # A VM's open span, found at once however many it has had (a pool's VM reused
        # all day has hundreds). Not unique: PostgreSQL checks a unique index at each row,
        # and the statement that ends a span and opens the next (ledger._respan) would
        # meet the span it ends.
        db.Index(
            "ix_spans_open",
            "assignment_id",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )

    id = db.Column(db.Integer, primary_key=True)
    assignment_id = db.Column(db.Integer, nullable=False)
    cloud = db.Column(db.String(80), nullable=False)
    pool = db.Column(db.String(255))  # the VM's pool; None: a VM of no pool
    vm_type = db.Column(db.String(255))
    size = db.Column(db.String(255))
    status = db.Column(db.Integer, nullable=False)
    user = db.Column(db.String(255))
    holder = db.Column(db.String(255))
    tags = db.Column(db.JSON(none_as_null=True))
    request_id = db.Column(db.Integer)
    started_at = db.Column(db.DateTime(timezone=True), nullable=False)
    lease_until = db.Column(db.DateTime(timezone=True))  # assigned: the lease's end, if any
    ended_at = db.Column(db.DateTime(timezone=True))  # None: still open


class QuotaRule(TimestampMixin, db.Model):
    """A quota set by an admin for a user, a role or everyone (``default``), perhaps only
    for one pool; it takes the place of the QUOTAS setting's rule of the same scope, name
    and pool. ``limits`` holds only the limits it sets (a null one: no limit).

    No pool and the default's name are stored as "", not NULL, so that the unique
    constraint holds for them too.
    """

    __tablename__ = "quota_rules"
    __table_args__ = (db.UniqueConstraint("scope", "name", "pool"),)

    id = db.Column(db.Integer, primary_key=True)
    scope = db.Column(db.String(10), nullable=False)  # user, role, default
    name = db.Column(db.String(255), nullable=False)
    pool = db.Column(db.String(80), nullable=False)
    limits = db.Column(db.JSON, nullable=False)
    updated_by = db.Column(db.String(255))


class PoolCloudState(db.Model):
    """What the pool manager last saw of one cloud of one pool: its last failure and how
    long it is left alone after failures (the back-off), shared by every manager."""

    __tablename__ = "pool_clouds"

    pool = db.Column(db.String(80), primary_key=True)
    cloud = db.Column(db.String(80), primary_key=True)
    last_error = db.Column(db.String(1000))
    last_error_at = db.Column(db.DateTime(timezone=True))
    failures = db.Column(db.Integer, nullable=False, default=0)  # in a row
    retry_at = db.Column(db.DateTime(timezone=True))  # no creation there before this


class PoolPass(db.Model):
    """When the pool manager last finished a pass over a pool, and since when the pool has
    held more free VMs than its target (its surplus is retired once that has lasted the
    pool's scale_down_delay)."""

    __tablename__ = "pool_passes"

    pool = db.Column(db.String(80), primary_key=True)
    finished_at = db.Column(db.DateTime(timezone=True), nullable=False)
    surplus_since = db.Column(db.DateTime(timezone=True))


class PoolOverride(db.Model):
    """What an admin changed of a pool at runtime, in place of its POOLS entry until
    cleared: ``min_ready`` and ``max_total`` (null: the configured one), ``paused`` (no
    creations), ``draining`` (no creations, free VMs retired, assigned ones destroyed on
    release). Every worker reads it at its next pass."""

    __tablename__ = "pool_overrides"

    pool = db.Column(db.String(80), primary_key=True)
    min_ready = db.Column(db.Integer)
    max_total = db.Column(db.Integer)
    paused = db.Column(db.Boolean, nullable=False, default=False)
    draining = db.Column(db.Boolean, nullable=False, default=False)
    set_by = db.Column(db.String(255))
    set_at = db.Column(db.DateTime(timezone=True), nullable=False)


class TableRevision(db.Model):
    """How many times an admin has changed a table the hot path decides by
    (``quota_rules``, ``pool_overrides``): raised in the transaction of each change, so
    that a process may keep what it read of the table until a statement sees another
    revision (``revisions``). No row: not changed yet (revision 0)."""

    __tablename__ = "table_revisions"

    table_name = db.Column(db.String(40), primary_key=True)
    revision = db.Column(db.BigInteger, nullable=False)


class ReconcileSurvey(db.Model):
    """What the pool manager's last reconcile report found on one cloud: how many orphans,
    ghosts and mismatches, and when; read by /metrics in whichever process answers."""

    __tablename__ = "reconcile_surveys"

    cloud = db.Column(db.String(80), primary_key=True)
    checked_at = db.Column(db.DateTime(timezone=True), nullable=False)
    orphans = db.Column(db.Integer, nullable=False)
    ghosts = db.Column(db.Integer, nullable=False)
    mismatches = db.Column(db.Integer, nullable=False)


class PoolLevel(db.Model):
    """A pool's VMs by state at the end of one pass of the pool manager: the series its
    chart draws, the newest POOLS_LEVELS_KEPT of each pool."""

    __tablename__ = "pool_levels"
    __table_args__ = (db.Index("ix_pool_levels_pool_id", "pool", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    pool = db.Column(db.String(80), nullable=False)
    at = db.Column(db.DateTime(timezone=True), nullable=False)
    booting = db.Column(db.Integer, nullable=False)
    free = db.Column(db.Integer, nullable=False)
    assigned = db.Column(db.Integer, nullable=False)
    faulty = db.Column(db.Integer, nullable=False)
    reserved = db.Column(db.Integer, nullable=False, default=0, server_default="0")


class VMRequest(db.Model):
    """A queued request for several VMs of several pools at once (``vms``: ``{"web": 2,
    "db": 1}``): free VMs are set aside for it (RESERVED) as they become free, and handed
    over all together once every one is; ``state`` is pending, ready, cancelled, expired
    or failed."""

    __tablename__ = "vm_requests"
    __table_args__ = (
        db.Index("ix_vm_requests_state_priority_created", "state", "priority", "created_at"),
    )

    id = db.Column(db.Integer, primary_key=True)
    state = db.Column(db.String(10), nullable=False)  # pending, ready, cancelled, expired, failed
    caller = db.Column(db.String(255), nullable=False)  # the token's user who asked
    user = db.Column(db.String(255), nullable=False)  # whom the VMs are for
    priority = db.Column(db.Integer, nullable=False)  # 1 highest .. 3
    vms = db.Column(db.JSON, nullable=False)  # {"web": 2, "db": 1}
    cloud = db.Column(db.String(80))
    lease = db.Column(db.Integer)  # seconds; None: the pool's, or the default
    webhook_url = db.Column(db.String(2000))  # its events' receiver (else REQUEST_WEBHOOK_URL)
    tags = db.Column(db.JSON(none_as_null=True))  # put on each VM it is handed; None: none
    message = db.Column(db.String(1000))
    created_at = db.Column(db.DateTime(timezone=True), nullable=False)
    expires_at = db.Column(db.DateTime(timezone=True), nullable=False)
    ready_at = db.Column(db.DateTime(timezone=True))
    ended_at = db.Column(db.DateTime(timezone=True))


class WebhookDelivery(db.Model):
    """One webhook call the pool manager owes: queued with the change it tells of, sent
    (and tried again after failures) by the manager, never inside a client's request."""

    __tablename__ = "webhook_deliveries"

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=func.now())
    event = db.Column(db.String(20), nullable=False)  # expiring, released
    url = db.Column(db.String(2000), nullable=False)
    body = db.Column(db.Text, nullable=False)  # the JSON sent, exactly as signed
    cloud = db.Column(db.String(80), nullable=False)
    id_vm = db.Column(db.String(255))
    hostname = db.Column(db.String(255))
    attempts = db.Column(db.Integer, nullable=False, default=0)
    next_attempt_at = db.Column(db.DateTime(timezone=True), nullable=False, index=True)
    delivered_at = db.Column(db.DateTime(timezone=True))
    given_up_at = db.Column(db.DateTime(timezone=True))
    last_error = db.Column(db.String(1000))


class IdempotencyKey(db.Model):
    """A request a caller sent with an Idempotency-Key, and its answer once it has one:
    a repeat within the key's time gets that answer without running again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (db.UniqueConstraint("user_id", "key"),)

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    key = db.Column(db.String(255), nullable=False)
    # SHA-256 of the method, the path and the body: the same key with another request is
    # refused.
    fingerprint = db.Column(db.String(64), nullable=False)
    status_code = db.Column(db.Integer)  # None while the first request runs
    body = db.Column(db.Text)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=func.now())
    expires_at = db.Column(db.DateTime(timezone=True), nullable=False, index=True)


# Every action the history records (AuditEntry.action): the API's assign, release, extend
# and stop; the pool manager's create, promote, destroy and adopt (destroy and release
# also by the lease expiry); a reconcile fix; a lease webhook call; a VM's failed ready
# check; an admin's override of a pool (an entry for each of its clouds). The history's
# ``action`` filter and the OpenAPI document take them from here.
ACTIONS = (
    "assign",
    "release",
    "stop",
    "extend",
    "create",
    "promote",
    "destroy",
    "adopt",
    "webhook",
    "reconcile",
    "check",
    "override",
    "request",
    "serve",
    "cancel",
    "expire",
)


class AuditEntry(db.Model):
    """One entry of the history: a change (its ``action``, one of ACTIONS), who asked, for
    whom, and how it ended."""

    __tablename__ = "audit_entries"

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(
        db.DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )
    cloud = db.Column(db.String(80), nullable=False, index=True)
    action = db.Column(db.String(20), nullable=False)
    id_vm = db.Column(db.String(255))
    hostname = db.Column(db.String(255))
    caller = db.Column(db.String(255))  # the authenticated user who asked
    user = db.Column(db.String(255))
    vm_type = db.Column(db.String(255))
    outcome = db.Column(db.String(20), nullable=False)  # ok, or the error's HTTP status
    message = db.Column(db.String(1000))
    # The X-Request-ID of the request, as in its log line: from the history to the logs.
    request_id = db.Column(db.String(128))
    # The tags an assign, an extend or a request's serve carried; None: none.
    tags = db.Column(db.JSON(none_as_null=True))


class SecretFingerprint(db.Model):
    """A fingerprint of a secret the database was set up with, never the secret itself.

    A process started with another secret key or password salt would issue tokens and
    hash passwords that this database's other processes cannot read: it refuses to start.
    """

    __tablename__ = "secret_fingerprints"

    name = db.Column(db.String(80), primary_key=True)  # the setting: SECRET_KEY, ...
    fingerprint = db.Column(db.String(64), nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=func.now())
