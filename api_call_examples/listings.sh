#!/usr/bin/env bash
# What a cloud has: nodes, images, flavors (also as sizes), tenants and locations.
# (keypairs and volumes too, on clouds whose driver has them: see storage.sh)
#   ./listings.sh [CLOUD]      without CLOUD, the cloud named default
. "$(dirname "$0")/common.sh"
cloud=${1:+/$1}
for action in nodes images flavors sizes tenants locations; do
    api "$BASE_URL/$action$cloud"
done
# The token also works as a query parameter, as in the original.
curl -sS --fail-with-body "$BASE_URL/nodes$cloud?auth_token=$TOKEN"
