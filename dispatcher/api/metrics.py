"""``GET /metrics``: the Prometheus figures, for loopback or a bearer token's holder."""

from .. import metrics
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
        return metrics.exposition()
