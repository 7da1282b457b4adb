#!/usr/bin/env bash
# Warm pools: every pool, then (as an admin) one pool held at runtime, shown and given back
# to its POOLS entry.
# The override it set is cleared at exit, on failure too.
#   ./pools.sh [POOL]    [default: web]
# GET takes any token; PATCH and DELETE need role admin.
. "$(dirname "$0")/common.sh"
pool=${1:-web}
json=(-H 'Content-Type: application/json')

overridden=""  # set while the override this script set is in place
clean_up() {
    if [ -n "$overridden" ]; then
        undo -X DELETE "$BASE_URL/pools/$pool"
    fi
}
trap clean_up EXIT

# Each pool's sizes in force and configured, its override, its VMs by state and cloud.
api "$BASE_URL/pools"
# Hold the pool: keep none ready and make none, on every worker at its next pass. A field
# left out stays as it was; a size null goes back to the configured one; "draining": true
# would also retire its free VMs and destroy the assigned ones on release.
api -X PATCH "$BASE_URL/pools/$pool" "${json[@]}" -d '{"min_ready": 0, "paused": true}'
overridden=yes
api "$BASE_URL/pools/$pool"
# The pool's POOLS entry applies again.
api -X DELETE "$BASE_URL/pools/$pool"
overridden=""
