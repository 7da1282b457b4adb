#!/usr/bin/env bash
# Quotas: what binds the caller, then (as an admin) a rule for the role agent set, read
# and removed again.
# The rule it set is removed at exit, on failure too.
#   ./quotas.sh
# GET /quotas/me takes any token; the rest needs role admin.
. "$(dirname "$0")/common.sh"
json=(-H 'Content-Type: application/json')

set_rule=""  # set while the rule this script set is in place
clean_up() {
    if [ -n "$set_rule" ]; then
        undo -X DELETE "$BASE_URL/quotas/role/agent"
    fi
}
trap clean_up EXIT

# Each limit that binds the caller, in any pool and in each pool: used, left, and the rule.
api "$BASE_URL/quotas/me"
# Agents: at most 10 VMs at once, 100 VM-hours a day, leases of a day at most. A limit left
# out comes from the next rule (the QUOTAS setting's default, say); null means no limit.
api -X PUT "$BASE_URL/quotas/role/agent" "${json[@]}" \
    -d '{"max_vms": 10, "max_vm_hours": 100, "period": 86400, "max_lease": 86400}'
set_rule=yes
api "$BASE_URL/quotas/role/agent"
# Every rule, with what those it binds hold now.
api "$BASE_URL/quotas"
api -X DELETE "$BASE_URL/quotas/role/agent"
set_rule=""
