#!/usr/bin/env bash
# The official `openai` Python client against `sgt serve`'s proxy in front of `sgt serve --model`
# on the demo pair, all on 127.0.0.1 (issue: the client every user has, not our own test HTTP):
# chat.completions.create plain and with stream=True; with a fixed noise seed both answers must be
# equal and non-empty, with usage (tools/serve_openai_client.py --same).
#
#   openai_client_check.sh SGT SOURCE_DIR WORK_DIR
#
# The Python that has `openai` is $SGT_OPENAI_PYTHON (default python3). Without the package the test
# is skipped (exit 77): CI installs it into a venv (.ci/run) and sets SGT_OPENAI_PYTHON.
set -uo pipefail
sgt=${1:?SGT} src=${2:?SOURCE_DIR} work=${3:?WORK_DIR}
py=${SGT_OPENAI_PYTHON:-python3}
if ! "$py" -c "import openai" 2>/dev/null; then
  echo "skipped: $py has no openai package (set SGT_OPENAI_PYTHON to a Python that has it)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

# Starts a server with --port 0 and sets $port to the port its stderr says it listens on.
port=""
start() {
  local log=$1; shift
  "$sgt" serve "$@" --port 0 > /dev/null 2> "$log" &
  pids+=($!)
  port=""
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: the server did not start: $(cat "$log")"
  return 1
}

start "$work/model.log" --model "$src/examples/models/demo_base" --threads 1 || exit 1
upstream=$port
echo "test-key-1" > "$work/keys.txt"
start "$work/proxy.log" "$src/examples/models/demo" --upstream "http://127.0.0.1:$upstream" \
  --api-key-file "$work/keys.txt" --seed 7 --threads 1 || exit 1
proxy=$port
"$py" "$src/tools/serve_openai_client.py" "http://127.0.0.1:$proxy/v1" test-key-1 demo_base --same
rc=$?
[ $rc -eq 0 ] || { echo "--- model server log"; cat "$work/model.log"; echo "--- proxy log"; cat "$work/proxy.log"; }
exit $rc
