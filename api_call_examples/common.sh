# Sourced by the example scripts: where the dispatcher is, and a token for it.
#   BASE_URL   the API root            [default: http://127.0.0.1:5070/api/v1]
#   TOKEN      a token, if you have one; otherwise one is fetched with
#   DISPATCHER_USER / DISPATCHER_PASSWORD   [default user: admin]
set -euo pipefail

BASE_URL=${BASE_URL:-http://127.0.0.1:5070/api/v1}

# POST /auth; prints the token. The credentials go to curl on standard input,
# never on its command line, where `ps` would show them.
fetch_token() {
    python3 -c 'import json, os; print(json.dumps({"username": os.environ.get("DISPATCHER_USER", "admin"), "password": os.environ["DISPATCHER_PASSWORD"]}))' \
        | curl -sS --fail-with-body -X POST "$BASE_URL/auth" -H 'Content-Type: application/json' --data-binary @- \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

# curl with the token in the X-Auth-Token header; prints the answer, fails on an error.
api() {
    curl -sS --fail-with-body -H "X-Auth-Token: $TOKEN" "$@"
}

# A call of a script's clean-up at exit: its answer, and any failure, say nothing more.
undo() {
    curl -sS -o /dev/null -H "X-Auth-Token: $TOKEN" "$@" 2>/dev/null || true
}

if [ -z "${TOKEN:-}" ] && [ -n "${DISPATCHER_PASSWORD:-}" ]; then
    TOKEN=$(fetch_token)
fi
