#!/usr/bin/env bash
# The health check: the database answers (no token needed); with ?deep=1 and a token,
# each cloud is asked too, with its latency.
. "$(dirname "$0")/common.sh"
curl -sS --fail-with-body "$BASE_URL/health"
api "$BASE_URL/health?deep=1"
