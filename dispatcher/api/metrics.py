"""``GET /metrics``: the Prometheus figures, for loopback or a bearer token's holder."""

import hmac
import ipaddress
import os

from flask import Flask, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .. import metrics
from ..errors import AuthenticationRequiredError, ForbiddenError
from .base import PublicView, answers


class MetricsAPI(PublicView):
    """``/metrics``: every worker's figures in Prometheus' text format (no API token)."""

    # How the OpenAPI document says who may scrape.
    openapi_security = {
        "metrics_bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "METRICS_BEARER_TOKEN where it is set; without it, loopback "
            "clients only, and no token",
        }
    }

    @answers(content_type="text/plain")
    def get(self):
        """The Prometheus figures: loopback clients, or the holder of METRICS_BEARER_TOKEN."""
        _check_access()
        return Response(exposition(current_app), content_type=CONTENT_TYPE_LATEST)


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def _check_access() -> None:
    """Let the scraper in: the bearer token METRICS_BEARER_TOKEN, or else a loopback client.

    :raises AuthenticationRequiredError: a token is set and the request lacks it.
    :raises ForbiddenError: no token is set and the client is not on loopback.
    """
    token = current_app.config.get("METRICS_BEARER_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthenticationRequiredError(
                "Unauthorized: /metrics needs the bearer token METRICS_BEARER_TOKEN"
            )
    elif not _loopback(request.remote_addr):
        raise ForbiddenError(
            "Forbidden: /metrics answers loopback clients only, or set METRICS_BEARER_TOKEN"
        )


def exposition(app: Flask) -> bytes:
    """Every figure in Prometheus' text format: what this process counted (every worker's,
    under gunicorn), then what the collectors registered on ``app`` read now."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    collected = CollectorRegistry(auto_describe=False)
    for collector in metrics.collectors(app):
        collected.register(collector)
    return generate_latest(registry) + generate_latest(collected)
