#!/usr/bin/env bash
# A volume's life: start a VM, create a 1 GB volume, attach it, detach it, destroy it,
# stop the VM. What it made goes at exit, on failure too.
#   ./storage.sh CLOUD IMAGE SIZE [DEVICE]   a cloud with volumes; DEVICE [default: /dev/sdf]
# The user needs role agent or admin.
. "$(dirname "$0")/common.sh"
cloud=${1:?usage: storage.sh CLOUD IMAGE SIZE [DEVICE]}
image=${2:?usage: storage.sh CLOUD IMAGE SIZE [DEVICE]}
size=${3:?usage: storage.sh CLOUD IMAGE SIZE [DEVICE]}
device=${4:-/dev/sdf}
json=(-H 'Content-Type: application/json')
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

# Set while the thing exists, emptied once the script removed it.
node="" volume="" attached=""
clean_up() {
    if [ -n "$attached" ]; then
        undo -X PUT "$BASE_URL/storage/detach/$cloud" "${json[@]}" -d "{\"volume\": \"$volume\"}"
    fi
    if [ -n "$volume" ]; then
        undo -X PUT "$BASE_URL/storage/destroy/$cloud" "${json[@]}" -d "{\"volume\": \"$volume\"}"
    fi
    if [ -n "$node" ]; then
        undo -X PUT "$BASE_URL/vm/stop/$cloud" "${json[@]}" -d "{\"node\": \"$node\", \"force\": true}"
    fi
}
trap clean_up EXIT

started=$(api -X POST "$BASE_URL/vm/start/$cloud" "${json[@]}" \
    -d "{\"name\": \"storage-example\", \"image\": \"$image\", \"size\": \"$size\"}")
echo "$started"
node=$(field '["nodes"]["id"]' <<<"$started")
created=$(api -X POST "$BASE_URL/storage/create/$cloud" "${json[@]}" \
    -d '{"name": "storage-example", "size": 1}')
echo "$created"
volume=$(field '["volume"]["id"]' <<<"$created")

api -X PUT "$BASE_URL/storage/attach/$cloud" "${json[@]}" \
    -d "{\"volume\": \"$volume\", \"node\": \"$node\", \"device\": \"$device\"}"
attached=yes
api -X PUT "$BASE_URL/storage/detach/$cloud" "${json[@]}" -d "{\"volume\": \"$volume\"}"
attached=""
api -X PUT "$BASE_URL/storage/destroy/$cloud" "${json[@]}" -d "{\"volume\": \"$volume\"}"
volume=""
api -X PUT "$BASE_URL/vm/stop/$cloud" "${json[@]}" -d "{\"node\": \"$node\"}"
node=""
