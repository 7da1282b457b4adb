#!/usr/bin/env bash
# Revoke every token of the caller: DELETE /api/v1/auth. TOKEN stops working.
. "$(dirname "$0")/common.sh"
api -X DELETE "$BASE_URL/auth"
