"""Lease webhooks, sent to real receivers on loopback: what a receiver gets (body, headers,
a signature that the recipe of docs/configuration.md verifies), retries and giving up, a
failing or hanging receiver beside good ones, the rows, the history and the log, and the
start-up checks."""

import base64
import datetime
import json
import logging
import re

import pytest
import sqlalchemy
from conftest import token_client
from helpers import WEBHOOK_SECRET, docs_recipe

from dispatcher import create_app, webhooks
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import AuditEntry, WebhookDelivery
from dispatcher.serializers import as_utc
from harness.webhook_receiver import Receiver

# What the lease manager would pass for one VM.
VM = {
    "cloud": "default",
    "id_vm": "3",
    "hostname": "web-3",
    "user": "alice",
    "vm_type": "web",
    # 05:04:05 at UTC+2: the body says 03:04:05 UTC.
    "expires_at": datetime.datetime(
        2030, 1, 2, 5, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    ),
}
EXPIRING_BODY = (
    b'{"event":"expiring","cloud":"default","id_vm":"3","hostname":"web-3","user":"alice",'
    b'"vm_type":"web","expires_at":"2030-01-02T03:04:05+00:00"}'
)


@pytest.fixture(autouse=True)
def no_secret_in_the_environment(monkeypatch):
    monkeypatch.delenv("DISPATCHER_LEASE_WEBHOOK_SECRET", raising=False)


def webhook_app(make_app, url=None, **settings):
    return make_app(LEASE_WEBHOOK_URL=url, LEASE_WEBHOOK_SECRET=WEBHOOK_SECRET, **settings)


def queue(app, url, event="expiring", **fields) -> int:
    """Queue one call as the lease manager does, committed with its change; its row id."""
    with app.app_context():
        row = webhooks.queue(url, event, **{**VM, **fields})
        db.session.commit()
        return row.id


def deliver(app) -> webhooks.DeliveryReport:
    with app.app_context():
        return webhooks.deliver_due()


def report(delivered=0, failed=0, given_up=0, deferred=0) -> webhooks.DeliveryReport:
    return webhooks.DeliveryReport(delivered, failed, given_up, deferred)


def make_due(app) -> None:
    """Every call still owed is due now, whatever its back-off."""
    with app.app_context():
        db.session.execute(
            sqlalchemy.update(WebhookDelivery)
            .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.given_up_at.is_(None))
            .values(next_attempt_at=datetime.datetime.now(datetime.UTC))
        )
        db.session.commit()


def deliveries(app) -> dict[int, dict]:
    """The rows by id: attempts, delivered, given up, last error, next attempt."""
    with app.app_context():
        rows = db.session.scalars(sqlalchemy.select(WebhookDelivery).order_by(WebhookDelivery.id))
        return {
            row.id: {
                "attempts": row.attempts,
                "delivered": row.delivered_at is not None,
                "given_up": row.given_up_at is not None,
                "last_error": row.last_error,
                "next_attempt_at": as_utc(row.next_attempt_at),
            }
            for row in rows
        }


def webhook_history(app) -> list[dict]:
    with app.app_context():
        entries = db.session.scalars(
            sqlalchemy.select(AuditEntry)
            .where(AuditEntry.caller == webhooks.CALLER)
            .order_by(AuditEntry.id)
        )
        return [
            {
                "action": entry.action,
                "cloud": entry.cloud,
                "id_vm": entry.id_vm,
                "hostname": entry.hostname,
                "user": entry.user,
                "vm_type": entry.vm_type,
                "outcome": entry.outcome,
                "message": entry.message,
            }
            for entry in entries
        ]


def webhook_log(caplog) -> list[tuple[str, str]]:
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name.startswith("dispatcher.webhooks")
    ]


# -- queue and deliver ------------------------------------------------------------------


def test_a_queued_call_is_delivered_once_signed_as_the_docs_verify(
    make_app, any_database_url, good, caplog
):
    caplog.set_level(logging.INFO, logger="dispatcher.webhooks")
    app = webhook_app(make_app, good.url(), SQLALCHEMY_DATABASE_URI=any_database_url)
    url = good.url("/hooks/lease?team=web")
    expiring = queue(app, url)
    released = queue(app, url, "released", expires_at=None)
    assert good.calls == []  # queueing sends nothing

    assert deliver(app) == report(delivered=2)

    assert [call["body"] for call in good.calls] == [
        EXPIRING_BODY,
        EXPIRING_BODY.replace(b'"expiring"', b'"released"').replace(
            b'"2030-01-02T03:04:05+00:00"', b"null"
        ),
    ]
    verified = docs_recipe()
    for call, row_id in zip(good.calls, (expiring, released), strict=True):
        assert (call["method"], call["path"]) == ("POST", "/hooks/lease?team=web")
        headers = call["headers"]
        assert headers["Content-Type"] == "application/json"
        assert re.fullmatch(r"dispatcher/\S+ \(lease webhook\)", headers["User-Agent"])
        assert headers["X-Dispatcher-Delivery"] == str(row_id)
        assert headers["X-Dispatcher-Signature"] == webhooks.sign(call["body"], WEBHOOK_SECRET)
        assert verified(call["body"], headers["X-Dispatcher-Signature"], WEBHOOK_SECRET)
        assert not verified(call["body"] + b" ", headers["X-Dispatcher-Signature"], WEBHOOK_SECRET)
        assert not verified(call["body"], headers["X-Dispatcher-Signature"], "another")
        assert not verified(call["body"], None, WEBHOOK_SECRET)

    assert deliver(app) == report()  # nothing is due any more
    assert len(good.calls) == 2
    assert [
        (row["attempts"], row["delivered"], row["given_up"], row["last_error"])
        for row in deliveries(app).values()
    ] == [(1, True, False, None), (1, True, False, None)]
    vm = {"cloud": "default", "id_vm": "3", "hostname": "web-3", "user": "alice"}
    assert webhook_history(app) == [
        {
            "action": "webhook",
            **vm,
            "vm_type": "web",
            "outcome": "ok",
            "message": f"{event} event delivered to {good.origin} (attempt 1)",
        }
        for event in ("expiring", "released")
    ]
    assert webhook_log(caplog) == [
        (
            "INFO",
            f"lease webhook {row_id} (node 3 of default): {event} event delivered to "
            f"{good.origin} (attempt 1)",
        )
        for row_id, event in ((expiring, "expiring"), (released, "released"))
    ]
    # The API's history shows the calls too, as HistoryEntry's action "webhook".
    shown = token_client(app).get("/api/v1/vm/history/default").json["history"]
    assert [(entry["action"], entry["caller"]) for entry in shown] == [
        ("webhook", "lease-webhook")
    ] * 2


def test_a_queued_call_rolled_back_with_its_change_is_never_sent(make_app, good):
    app = webhook_app(make_app, good.url())
    with app.app_context():
        webhooks.queue(good.url(), "released", **VM)
        db.session.rollback()

    assert deliver(app) == report()
    assert good.calls == []
    assert deliveries(app) == {}


def test_no_url_queues_nothing_and_an_unknown_event_is_refused(make_app, good):
    app = webhook_app(make_app)
    with app.app_context():
        assert webhooks.queue(None, "expiring", **VM) is None
        with pytest.raises(ValueError, match="unknown webhook event 'extended'"):
            webhooks.queue(good.url(), "extended", **VM)
        db.session.commit()
    assert deliveries(app) == {}


def test_the_signature_is_hmac_sha256_of_the_body():
    """RFC 4231's test case 2, computed elsewhere."""
    assert webhooks.sign(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


# -- failures ------------------------------------------------------------------------------


def test_a_failing_receiver_is_tried_attempts_times_then_given_up_while_others_get_theirs(
    make_app, any_database_url, good, failing, caplog
):
    """Three attempts, ten seconds apart then twenty; a good receiver called in the same
    passes gets each of its calls at once. Neither the secret nor the failing URL's
    credentials, path or query show anywhere."""
    caplog.set_level(logging.INFO, logger="dispatcher.webhooks")
    app = webhook_app(
        make_app,
        good.url(),
        SQLALCHEMY_DATABASE_URI=any_database_url,
        LEASE_WEBHOOK_ATTEMPTS=3,
        LEASE_WEBHOOK_BACKOFF_SECONDS=10,
    )
    bad_url = f"http://hookuser:hookpassword@127.0.0.1:{failing.port}/fail?token=querysecret"
    bad = queue(app, bad_url, "released", expires_at=None)

    reports = []
    for attempt in range(1, 5):
        queue(app, good.url(), id_vm=str(10 + attempt))
        before = datetime.datetime.now(datetime.UTC)
        reports.append(deliver(app))
        after = datetime.datetime.now(datetime.UTC)
        if attempt < 3:  # the next attempt, 10 s then 20 s after this one
            pause = datetime.timedelta(seconds=10 * 2 ** (attempt - 1))
            assert before + pause <= deliveries(app)[bad]["next_attempt_at"] <= after + pause
        make_due(app)

    assert reports == [
        report(delivered=1, failed=1),
        report(delivered=1, failed=1),
        report(delivered=1, given_up=1),
        report(delivered=1),
    ]
    assert len(failing.calls) == 3
    assert {call["body"] for call in failing.calls} == {failing.calls[0]["body"]}
    assert failing.calls[0]["path"] == "/fail?token=querysecret"
    assert (
        failing.calls[0]["headers"]["Authorization"]
        == "Basic " + base64.b64encode(b"hookuser:hookpassword").decode()
    )
    assert [json.loads(call["body"])["id_vm"] for call in good.calls] == ["11", "12", "13", "14"]
    row = deliveries(app)[bad]
    assert (row["attempts"], row["delivered"], row["given_up"], row["last_error"]) == (
        3,
        False,
        True,
        "HTTP 500 Internal Server Error",
    )

    origin = failing.origin
    failures = [
        (
            "WARNING",
            f"lease webhook {bad} (node 3 of default): released event to {origin} failed "
            f"(attempt {attempt} of 3): HTTP 500 Internal Server Error; next try in {pause} s",
        )
        for attempt, pause in ((1, 10), (2, 20))
    ] + [
        (
            "WARNING",
            f"lease webhook {bad} (node 3 of default): released event to {origin} given up "
            "after 3 attempts: HTTP 500 Internal Server Error",
        )
    ]
    logged = webhook_log(caplog)
    assert [line for line in logged if line[0] == "WARNING"] == failures
    assert [line[0] for line in logged].count("INFO") == 4
    history = webhook_history(app)
    assert [entry["message"] for entry in history if entry["outcome"] == "500"] == [
        message.split(": ", 1)[1] for _, message in failures
    ]
    assert [entry["outcome"] for entry in history].count("ok") == 4
    shown = (
        caplog.text
        + json.dumps(history)
        + json.dumps({key: str(value) for key, value in row.items()})
    )
    for secret in (WEBHOOK_SECRET, "hookpassword", "hookuser", "querysecret", "/fail"):
        assert secret not in shown


def test_a_hanging_receiver_costs_one_timeout_and_delays_nobody(make_app, good, hanging):
    """Its first call waits LEASE_WEBHOOK_TIMEOUT, its second waits for the next pass; the
    good receiver's calls, queued after both, all arrive before that timeout is over."""
    app = webhook_app(make_app, good.url(), LEASE_WEBHOOK_TIMEOUT=1)
    slow = [queue(app, hanging.url(), id_vm=str(number)) for number in (1, 2)]
    fast = [queue(app, good.url(), id_vm=str(number)) for number in (3, 4, 5)]

    assert deliver(app) == report(delivered=3, failed=1, deferred=1)

    assert len(hanging.calls) == 1
    assert json.loads(hanging.calls[0]["body"])["id_vm"] == "1"
    assert [json.loads(call["body"])["id_vm"] for call in good.calls] == ["3", "4", "5"]
    [gave_up_at] = hanging.abandoned_at
    assert all(call["at"] < gave_up_at for call in good.calls)
    rows = deliveries(app)
    assert [(rows[i]["attempts"], rows[i]["last_error"]) for i in slow] == [
        (1, "no answer within 1 s"),
        (0, None),
    ]
    assert all(rows[i]["delivered"] for i in fast)
    failed = [entry for entry in webhook_history(app) if entry["outcome"] != "ok"]
    assert [(entry["id_vm"], entry["outcome"], entry["message"]) for entry in failed] == [
        (
            "1",
            "failed",
            f"expiring event to {hanging.origin} failed (attempt 1 of 5): "
            "no answer within 1 s; next try in 30 s",
        )
    ]


def test_a_closed_port_and_a_redirect_are_failed_attempts(make_app, good, refusing_port):
    with Receiver(302, location=good.url()) as redirecting:
        app = webhook_app(make_app, good.url())
        closed = queue(app, f"http://127.0.0.1:{refusing_port}/hook")
        moved = queue(app, redirecting.url())

        assert deliver(app) == report(failed=2)

    assert good.calls == []  # the redirect was not followed
    rows = deliveries(app)
    assert rows[closed]["last_error"] == "connection failed: Connection refused"
    assert rows[moved]["last_error"] == "HTTP 302 Found (redirects are not followed)"
    assert sorted(
        (entry["outcome"], entry["message"].split(": ", 1)[0]) for entry in webhook_history(app)
    ) == [
        ("302", f"expiring event to {redirecting.origin} failed (attempt 1 of 5)"),
        ("failed", f"expiring event to http://127.0.0.1:{refusing_port} failed (attempt 1 of 5)"),
    ]


def test_a_call_owed_without_a_secret_is_never_sent_unsigned(make_app, good):
    """The secret taken away after the call was queued: it fails without a request."""
    app = webhook_app(make_app, good.url(), LEASE_WEBHOOK_ATTEMPTS=1)
    row = queue(app, good.url())
    app.config["LEASE_WEBHOOK_SECRET"] = None

    assert deliver(app) == report(given_up=1)

    assert good.calls == []
    assert deliveries(app)[row]["last_error"] == ("no LEASE_WEBHOOK_SECRET to sign with: not sent")


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"LEASE_WEBHOOK_URL": "https://user:password@hooks.example.org/lease"},
            "LEASE_WEBHOOK_URL is set but LEASE_WEBHOOK_SECRET is not: set it (or the "
            "environment variable DISPATCHER_LEASE_WEBHOOK_SECRET) so that the calls are signed",
        ),
        (
            {"LEASE_WEBHOOK_URL": "ftp://hooks.example.org/lease", "LEASE_WEBHOOK_SECRET": "s"},
            "LEASE_WEBHOOK_URL must be an http or https URL with a host",
        ),
        (
            {"LEASE_WEBHOOK_URL": "hooks.example.org/lease", "LEASE_WEBHOOK_SECRET": "s"},
            "LEASE_WEBHOOK_URL must be an http or https URL with a host",
        ),
        (
            {"LEASE_WEBHOOK_URL": "https:///lease", "LEASE_WEBHOOK_SECRET": "s"},
            "LEASE_WEBHOOK_URL must be an http or https URL with a host",
        ),
        (
            {"LEASE_WEBHOOK_URL": "https://hooks.example.org:99999/", "LEASE_WEBHOOK_SECRET": "s"},
            "LEASE_WEBHOOK_URL must be an http or https URL with a host",
        ),
        ({"LEASE_WEBHOOK_SECRET": ""}, "LEASE_WEBHOOK_SECRET must be a non-empty text"),
        ({"LEASE_WEBHOOK_ATTEMPTS": 0}, "LEASE_WEBHOOK_ATTEMPTS must be a whole number from 1"),
        ({"LEASE_WEBHOOK_ATTEMPTS": 2.5}, "LEASE_WEBHOOK_ATTEMPTS must be a whole number from 1"),
        ({"LEASE_WEBHOOK_TIMEOUT": 0}, "LEASE_WEBHOOK_TIMEOUT must be a number above 0"),
        (
            {"LEASE_WEBHOOK_BACKOFF_SECONDS": -1},
            "LEASE_WEBHOOK_BACKOFF_SECONDS must be a number above 0",
        ),
    ],
)
def test_webhook_settings_that_cannot_work_are_a_one_line_error(settings, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})
    assert str(caught.value) == message


def test_a_pools_webhook_url_is_checked_the_same_way():
    where = "POOLS['web']: webhook_url"
    assert webhooks.check_url(where, "https://hooks.example.org/x", "s") == (
        "https://hooks.example.org/x"
    )
    with pytest.raises(ConfigurationError) as caught:
        webhooks.check_url(where, "mailto:ops@example.org", "s")
    assert str(caught.value) == f"{where} must be an http or https URL with a host"
    with pytest.raises(ConfigurationError) as caught:
        webhooks.check_url(where, "https://hooks.example.org/x", None)
    assert str(caught.value).startswith(f"{where} is set but LEASE_WEBHOOK_SECRET is not")


def test_the_secret_from_the_environment_signs_the_calls(make_app, good, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DISPATCHER_LEASE_WEBHOOK_SECRET", "secret-from-the-environment")
    app = make_app(LEASE_WEBHOOK_URL=good.url())
    queue(app, good.url())

    assert deliver(app) == report(delivered=1)

    [call] = good.calls
    signature = call["headers"]["X-Dispatcher-Signature"]
    assert docs_recipe()(call["body"], signature, "secret-from-the-environment")
    assert "secret-from-the-environment" not in caplog.text
