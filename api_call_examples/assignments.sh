#!/usr/bin/env bash
# Assign a VM to a user for an application, leased for an hour and safe to retry, extend
# its lease, see the status and history, release it.
# An assignment it made is released at exit, on failure too.
#   ./assignments.sh [CLOUD [NODE_ID]]    [default: fake_driver, node 1]
# Release destroys the VM unless the dispatcher runs with RELEASE_KEEPS_NODE = True.
# The user needs role agent or admin.
. "$(dirname "$0")/common.sh"
cloud=${1:-fake_driver}
node=${2:-1}
json=(-H 'Content-Type: application/json')

assigned=""  # set while the VM is assigned by this script
clean_up() {
    if [ -n "$assigned" ]; then
        undo -X PUT "$BASE_URL/vm/action/release/$cloud" "${json[@]}" -d "{\"node\": \"$node\"}"
    fi
}
trap clean_up EXIT

# A dry run first: what would happen, with nothing changed.
api -X PUT "$BASE_URL/vm/action/assign/$cloud" "${json[@]}" \
    -d "{\"node\": \"$node\", \"user\": \"zeppolo\", \"vm_type\": \"galaxy\", \"emulate\": true}"
# Leased for an hour; the Idempotency-Key makes a retry of this very request safe: sent
# again (a lost answer, a timeout), it gets the same answer and assigns nothing more.
key="assign-$node-$(date +%s)-$$"
api -X PUT "$BASE_URL/vm/action/assign/$cloud" "${json[@]}" -H "Idempotency-Key: $key" \
    -d "{\"node\": \"$node\", \"user\": \"zeppolo\", \"vm_type\": \"galaxy\", \"lease\": 3600}"
assigned=yes
# Two hours from now, instead.
api -X PUT "$BASE_URL/vm/action/extend/$cloud" "${json[@]}" \
    -d "{\"node\": \"$node\", \"lease\": 7200}"
api "$BASE_URL/vm/status/$cloud"
api -X PUT "$BASE_URL/vm/action/release/$cloud" "${json[@]}" -d "{\"node\": \"$node\"}"
assigned=""
api "$BASE_URL/vm/history/$cloud?limit=5"
