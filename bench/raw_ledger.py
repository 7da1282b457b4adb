"""The baseline of benchmark (d): the writes of the dispatcher's assign and release, sent
in raw SQL.

The statements are not written out here: they are captured from the dispatcher itself.
``prepare`` runs the app in-process on the baseline's own schema with the settings of
(d)'s servers (the token cache on, as in their workers), adopts every VM of the cloud (one
assign and release each), then, with SQLAlchemy's ``before_cursor_execute`` listening,
sends one more assign, an assign of the VM it now holds (a 409) and a release. Of each
request it keeps the writing statements (``UPDATE``, ``INSERT``, ``WITH``) of its last
transaction, the one that commits: for a successful assign the row's change
(ledger._move), on PostgreSQL one statement whose CTEs are the conditional ``UPDATE
assignments ... RETURNING``, the end of the VM's open span and the opening of the next
(``WITH changed AS (UPDATE assignments ...), ended AS (UPDATE spans ...), opened AS
(INSERT INTO spans ...) SELECT ... FROM changed``), and the audit entry's ``INSERT``
(history.record); for a release the same two; for the 409 the audit entry alone. What
the dispatcher reads besides (the VM's lookup, the quota rules) and any ping of the pool
are left out: the baseline knows each VM's row id beforehand.

``Replayer.step`` replays one step for another VM and user, in one transaction as the
dispatcher commits it: the ``UPDATE`` first, and when it took no row (someone else holds
the VM) a rollback, then the 409's audit entry and the commit. The parameters are changed
per step: the row id (the binds named after ``id``, ``assignment_id``, ``pk`` or
``row_id``), the VM's id and hostname and the user (whole words in the messages too), every
time to now, and a fresh request id.
"""

import datetime
import re
import uuid

import sqlalchemy

from harness.round_trips import Capture

WRITES = ("UPDATE", "INSERT", "WITH")
ROW_ID_BINDS = re.compile(r"^(id|assignment_id|pk|row_id)(_\d+)*$")
# How a change of the row begins: its UPDATE, alone or as the first CTE of its statement.
ROW_CHANGE = re.compile(r"^(WITH\s+\w+\s+AS\s*\(\s*)?UPDATE\s+assignments\b", re.IGNORECASE)
CAPTURE_USER = "bench-capture-user"


def conninfo(url: str) -> dict:
    """psycopg's connection arguments for a SQLAlchemy URL (its schema's search_path too)."""
    parsed = sqlalchemy.make_url(url)
    args = {
        "host": parsed.host,
        "port": parsed.port or 5432,
        "user": parsed.username,
        "dbname": parsed.database,
    }
    if parsed.password:
        args["password"] = parsed.password
    if "options" in parsed.query:
        args["options"] = parsed.query["options"]
    return args


def prepare(url: str, farm: dict, cloud: str, vms: list[str], settings: dict) -> dict:
    """Adopt ``vms`` of ``cloud`` in the schema at ``url`` through the app in-process and
    capture an assign, a refused assign and a release: ``{"steps": {...}, "rows": {id_vm:
    (row id, hostname)}, "setup_assigns": n, "outline": {...}}``."""
    from bench import common
    from dispatcher import auth
    from dispatcher.extensions import db

    app = common.make_app(url, CLOUD_FARM=farm, **settings)
    auth.serve(app, single_process=True)  # the token cached, as in gunicorn's workers
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = common.agent_token(app)
    base = f"/api/v1/vm/action/{{}}/{cloud}"

    def send(action: str, body: dict, expected: int) -> dict:
        response = client.put(base.format(action), json=body)
        if response.status_code != expected:
            raise RuntimeError(f"baseline: {action} {response.status_code} {response.data[:300]!r}")
        return response.get_json()

    rows = {}
    for vm in vms:
        answer = send("assign", {"node": vm, "user": CAPTURE_USER, "vm_type": "bench"}, 200)
        send("release", {"node": vm}, 200)
        rows[vm] = answer["id"]
    vm = vms[-1]
    with app.app_context():
        engine = db.engine
        hostnames = dict(
            db.session.execute(
                sqlalchemy.text("SELECT id_vm, hostname FROM assignments WHERE cloud = :c"),
                {"c": cloud},
            ).all()
        )
    captured, outline = {}, {}
    for name, action, body, status in (
        ("assign", "assign", {"node": vm, "user": CAPTURE_USER, "vm_type": "bench"}, 200),
        ("conflict", "assign", {"node": vm, "user": CAPTURE_USER, "vm_type": "bench"}, 409),
        ("release", "release", {"node": vm}, 200),
    ):
        with Capture(engine) as capture:
            send(action, body, status)
        last = capture.transactions[-1]
        writes = [(s, p) for s, p in last["statements"] if s.lstrip().upper().startswith(WRITES)]
        if last["end"] != "COMMIT" or not writes:
            raise RuntimeError(f"baseline: the {name} committed no write: {capture.outline()}")
        captured[name] = writes
        outline[name] = (capture.round_trips(), capture.outline())
    common.dispose(app)
    for name in ("assign", "release"):
        if not ROW_CHANGE.match(captured[name][0][0].lstrip()):
            raise RuntimeError(f"baseline: the {name} does not begin with the row's UPDATE")
    return {
        "steps": captured,
        "outline": outline,
        "was": {"id": rows[vm], "id_vm": vm, "hostname": hostnames[vm], "user": CAPTURE_USER},
        "rows": {key: (rows[key], hostnames[key]) for key in vms},
        "setup_assigns": len(vms) + 1,
    }


class Replayer:
    """The captured steps, replayed on one psycopg connection for any VM and user."""

    def __init__(self, prepared: dict, connection):
        self.steps = prepared["steps"]
        self.was = prepared["was"]
        self.rows = prepared["rows"]
        self.connection = connection
        words = [(self.was["id_vm"], "id_vm"), (self.was["user"], "user")]
        self._words = [(re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])"), key) for w, key in words]

    def _params(self, parameters: dict, now: dict, vm: str, user: str) -> dict:
        row_id, hostname = self.rows[vm]
        new = {"id_vm": vm, "user": user}
        changed = {}
        for key, value in parameters.items():
            if isinstance(value, datetime.datetime):
                value = now["at"]
            elif key == "request_id" and isinstance(value, str):
                value = uuid.uuid4().hex
            elif isinstance(value, int) and ROW_ID_BINDS.match(key) and value == self.was["id"]:
                value = row_id
            elif isinstance(value, str):
                if value == self.was["hostname"]:
                    value = hostname
                else:
                    for pattern, which in self._words:
                        value = pattern.sub(new[which], value)
            changed[key] = value
        return changed

    def step(self, name: str, vm: str, user: str) -> bool:
        """An assign (``"assign"``) or a release (``"release"``) of ``vm`` for ``user``, in
        one transaction; whether its UPDATE took the row (else the refusal is recorded)."""
        now = {"at": datetime.datetime.now(datetime.UTC)}
        statements = self.steps[name]
        with self.connection.cursor() as cursor:
            first, parameters = statements[0]
            cursor.execute(first, self._params(parameters, now, vm, user))
            won = cursor.fetchone() is not None
            if not won:
                self.connection.rollback()
                statements = self.steps["conflict"] if name == "assign" else []
            else:
                statements = statements[1:]
            for statement, parameters in statements:
                cursor.execute(statement, self._params(parameters, now, vm, user))
        self.connection.commit()
        return won
