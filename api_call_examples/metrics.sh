#!/usr/bin/env bash
# The Prometheus figures of the service (no token needed; keep /metrics to your
# monitoring network at the proxy), here only the dispatcher's own lines.
. "$(dirname "$0")/common.sh"
curl -sS --fail-with-body "${BASE_URL%/api/v1}/metrics" | grep '^dispatcher_'
