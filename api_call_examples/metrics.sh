#!/usr/bin/env bash
# The Prometheus figures of the service, here only the dispatcher's own lines. No API
# token: /metrics answers loopback clients, or, where the service has
# DISPATCHER_METRICS_TOKEN, whoever sends that token (give it here as METRICS_TOKEN).
. "$(dirname "$0")/common.sh"
bearer=()
if [ -n "${METRICS_TOKEN:-}" ]; then
    # On standard input, not the command line, where `ps` would show it.
    bearer=(-H @-)
fi
printf 'Authorization: Bearer %s\n' "${METRICS_TOKEN:-}" \
    | curl -sS --fail-with-body "${bearer[@]}" "${BASE_URL%/api/v1}/metrics" | grep '^dispatcher_'
