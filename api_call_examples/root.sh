#!/usr/bin/env bash
# The root answers {"status": "ok"} to GET and POST, without a token.
. "$(dirname "$0")/common.sh"
curl -sS --fail-with-body "$BASE_URL/"
curl -sS --fail-with-body -X POST "$BASE_URL/" -H 'Content-Type: application/json' -d '{}'
