#!/usr/bin/env bash
# A VM's life: start it, see its details, reboot it, stop it. The VM is stopped at exit,
# on failure too.
#   ./vm.sh [CLOUD [IMAGE SIZE]]    [default: fake_driver, image 1, size 1]
# The user needs role agent or admin.
. "$(dirname "$0")/common.sh"
cloud=${1:-fake_driver}
image=${2:-1}
size=${3:-1}

node=""  # set while the VM runs
clean_up() {
    if [ -n "$node" ]; then
        undo -X PUT "$BASE_URL/vm/stop/$cloud" -H 'Content-Type: application/json' \
            -d "{\"node\": \"$node\", \"force\": true}"
    fi
}
trap clean_up EXIT

started=$(api -X POST "$BASE_URL/vm/start/$cloud" -H 'Content-Type: application/json' \
    -d "{\"name\": \"example-vm\", \"image\": \"$image\", \"size\": \"$size\"}")
echo "$started"
node=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["nodes"]["id"])' <<<"$started")

api "$BASE_URL/nodes/$cloud/$node"
api -X PUT "$BASE_URL/vm/action/reboot/$cloud" -H 'Content-Type: application/json' \
    -d "{\"node\": \"$node\"}"
api -X PUT "$BASE_URL/vm/stop/$cloud" -H 'Content-Type: application/json' \
    -d "{\"node\": \"$node\"}"
node=""
