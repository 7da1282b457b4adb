#!/usr/bin/env bash
# The clouds this dispatcher serves: GET /api/v1/cloud.
. "$(dirname "$0")/common.sh"
api "$BASE_URL/cloud"
