#!/usr/bin/env bash
# A listing page by page: ?limit=N, then ?marker= the next_marker of each answer,
# until it is null.
#   ./pages.sh [CLOUD [LIMIT]]      nodes of CLOUD (default: the cloud named default)
. "$(dirname "$0")/common.sh"
cloud=${1:+/$1}
limit=${2:-1}
marker=""
while :; do
    answer=$(api "$BASE_URL/nodes$cloud?limit=$limit${marker:+&marker=$marker}")
    echo "$answer"
    marker=$(python3 -c 'import json, sys, urllib.parse; m = json.load(sys.stdin)["next_marker"]; print(urllib.parse.quote(m, safe="") if m else "")' <<<"$answer")
    [ -n "$marker" ] || break
done
