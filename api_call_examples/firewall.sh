#!/usr/bin/env bash
# A security group's life: create it, open tcp 22 from 10.0.0.0/8, see it, close it,
# delete it. The group goes at exit, on failure too.
#   ./firewall.sh CLOUD      a cloud with security groups (EC2, Eucalyptus, OpenStack)
# The user needs role agent or admin.
. "$(dirname "$0")/common.sh"
cloud=${1:?usage: firewall.sh CLOUD}
group="example-$$"
json=(-H 'Content-Type: application/json')
rule="{\"group\": \"$group\", \"protocol\": \"tcp\", \"from_port\": 22, \"cidr\": \"10.0.0.0/8\"}"

made=""  # set while the group exists
clean_up() {
    if [ -n "$made" ]; then
        undo -X DELETE "$BASE_URL/fw/$cloud" "${json[@]}" -d "{\"group\": \"$group\"}"
    fi
}
trap clean_up EXIT

api -X POST "$BASE_URL/fw/$cloud" "${json[@]}" \
    -d "{\"name\": \"$group\", \"description\": \"made by firewall.sh\"}"
made=yes
api -X PUT "$BASE_URL/fw/open/$cloud" "${json[@]}" -d "$rule"
api "$BASE_URL/fw/$cloud"
api -X PUT "$BASE_URL/fw/close/$cloud" "${json[@]}" -d "$rule"
api -X DELETE "$BASE_URL/fw/$cloud" "${json[@]}" -d "{\"group\": \"$group\"}"
made=""
