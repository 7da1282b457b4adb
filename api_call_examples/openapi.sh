#!/usr/bin/env bash
# The OpenAPI document of the API (no token needed); the same, browsable: $BASE_URL/docs
. "$(dirname "$0")/common.sh"
curl -sS --fail-with-body "$BASE_URL/openapi.json"
