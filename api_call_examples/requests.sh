#!/usr/bin/env bash
# Requests that wait in line: ask for VMs of a pool (answered at once when they are free,
# else a place in line), look at the request, list the caller's, and cancel it (its VMs
# set aside, or handed over, go back). The request is cancelled at exit, on failure too.
#   ./requests.sh [POOL] [COUNT]    [default: web 1]
# POST and DELETE need role agent or admin; GET is for the asker or an admin.
. "$(dirname "$0")/common.sh"
pool=${1:-web}
count=${2:-1}
json=(-H 'Content-Type: application/json')

request=""  # the id of the request this script made, while it may hold VMs
clean_up() {
    if [ -n "$request" ]; then
        undo -X DELETE "$BASE_URL/requests/$request"
    fi
}
trap clean_up EXIT

# 200 with the VMs when they are all free, else 202 and its place in line ("position",
# "estimated_wait_s"); priority 1 is served first, 3 last.
answer=$(api -X POST "$BASE_URL/requests" "${json[@]}" \
    -d "{\"vms\": {\"$pool\": $count}, \"user\": \"example-user\", \"priority\": 2, \"expires_in\": 600}")
echo "$answer"
request=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["request"]["id"])')
api "$BASE_URL/requests/$request"
api "$BASE_URL/requests?state=pending"
# Cancelled: VMs set aside go back to the pool at once; a ready request's are released.
api -X DELETE "$BASE_URL/requests/$request"
request=""
