"""What the HTTP servers themselves answer and log, before a request reaches the app.

A request that cannot be read as HTTP (a malformed request line, a header too long)
is answered by the server: gunicorn's worker and the development server both answer
it here in the JSON envelope, without repeating the request. Their log lines go
through ``redact``, so that a token never reaches a log: in a query string, in a header,
in a header's name or a malformed line, wherever text has a token's shape.
"""

import json
import logging
import re
import traceback

from gunicorn.glogging import Logger
from gunicorn.workers.sync import SyncWorker

from .auth.tokens import SHAPE
from .errors import envelope

# After the query parameter, or the header's name however malformed (a space for the dash,
# no colon, the token glued to it), whatever follows up to a separator.
_TOKEN = re.compile(r"(auth_token=|x-auth[-_ ]?token\s*:?\s*)[^&\s'\"]+", re.IGNORECASE)
REDACTED = "[redacted]"

# What a request the server could not read is told, by status: never the request.
UNREADABLE = {
    400: "Malformed request: it cannot be read as HTTP",
    414: "Request line too long",
    431: "Request header fields too large",
}


def redact(value):
    """``value`` with every token hidden (``auth_token=…``, ``X-Auth-Token: …`` and its
    malformed kin, and any text of a token's shape); other types unchanged."""
    if not isinstance(value, str):
        return value
    return SHAPE.sub(REDACTED, _TOKEN.sub(rf"\1{REDACTED}", value))


def unreadable_answer(status: int) -> bytes:
    """The envelope of a request that could not be read, as the body of its answer."""
    message = UNREADABLE.get(status) or envelope(status, "")["status_short_message"]
    return json.dumps(envelope(status, message)).encode()


class RedactingFilter(logging.Filter):
    """Hide tokens in a record: its message with its arguments, and its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            # The line as it will be written, redacted once: an access line's arguments
            # are some thirty atoms, of which its format shows a few.
            record.msg, record.args = redact(record.getMessage()), None
        except (TypeError, ValueError, KeyError):  # arguments its message cannot take
            record.msg = redact(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(redact(str(arg)) for arg in record.args)
            elif isinstance(record.args, dict):
                record.args = {key: redact(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            # Formatted here, so that the handler prints this text and not the raw one.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
        return True


class RedactingLogger(Logger):
    """gunicorn's logger, whose error and access lines never show a token."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(known, RedactingFilter) for known in log.filters):
                log.addFilter(RedactingFilter())


class _EnvelopeSocket:
    """A client socket whose error page, written by gunicorn, becomes the envelope."""

    def __init__(self, sock):
        self._sock = sock

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def sendall(self, data: bytes) -> None:
        status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        if not status.isdigit():
            return self._sock.sendall(data)
        body = unreadable_answer(int(status))
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._sock.sendall(head.encode("latin-1") + body)


class EnvelopeWorker(SyncWorker):
    """gunicorn's sync worker, answering a request it cannot read in the JSON envelope
    (gunicorn's own page repeats the request line, with any token in it)."""

    def handle_error(self, req, client, addr, exc):
        super().handle_error(req, _EnvelopeSocket(client), addr, exc)
