#!/usr/bin/env bash
# The original's connection check: the token in the JSON body of PUT /api/v1/test/start.
. "$(dirname "$0")/common.sh"
curl -sS --fail-with-body -X PUT "$BASE_URL/test/start" \
    -H 'Content-Type: application/json' -d "{\"auth_token\": \"$TOKEN\"}"
