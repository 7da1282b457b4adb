#!/usr/bin/env bash
# Print a token: POST /api/v1/auth with DISPATCHER_USER and DISPATCHER_PASSWORD.
#   export TOKEN=$(DISPATCHER_PASSWORD=... ./token.sh)
. "$(dirname "$0")/common.sh"
fetch_token
