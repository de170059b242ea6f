#!/usr/bin/env bash
# By hand, never in CI (it needs a vLLM install and takes minutes): `sgt serve`'s privacy proxy in
# front of a real vLLM server, asked by the official `openai` client.
#
#   tools/serve_vllm_e2e.sh SGT VENV VLLM_CPU_SH [PORT]
#
#   SGT          the built `sgt` binary (with `sgt serve`)
#   VENV         a venv with vLLM (VLLM_CPU_SH install VENV makes one; vLLM brings the openai package)
#   VLLM_CPU_SH  the script that serves a model: `VLLM_CPU_SH serve VENV MODEL PORT` starts
#                `vllm serve MODEL --enable-prompt-embeds` on 127.0.0.1:PORT, prints its PID, and
#                serves it under the name `basename MODEL`
#
# What it does, in a temporary folder (nothing is written to the repository), all on 127.0.0.1:
#   1. serves a copy of examples/models/demo_base with vLLM (MAX_MODEL_LEN 2048, 1 GiB KV cache);
#   2. starts two proxies on the demo SGT model in front of it: one protecting (bf16 embeddings, fresh
#      secure noise), one with --no-protection (noise mask all 0: the clean chat's embeddings);
#   3. the openai client asks the protecting proxy for a chat completion, plain and streamed, and
#      checks both answers are non-empty with usage;
#   4. greedy (temperature 0, 24 tokens), the openai client asks the unprotected proxy and vLLM's own
#      chat endpoint the same chat: the answers must be equal (the proxy's template rendering,
#      tokenization and embedding rows against vLLM's own, through prompt_embeds).
# Exit status 0 when every check passed. KEEP=1 keeps the temporary folder (server logs).
set -euo pipefail
sgt=$(realpath "${1:?usage: serve_vllm_e2e.sh SGT VENV VLLM_CPU_SH [PORT]}")
venv=$(realpath "${2:?VENV}")
serve_sh=$(realpath "${3:?VLLM_CPU_SH}")
port=${4:-8767}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== versions"
"$py" -c 'import vllm, openai; print("vllm", vllm.__version__, "openai", openai.__version__)'

echo "== 1. vLLM on 127.0.0.1:$port ($work)"
cp -r "$repo/examples/models/demo_base" "$work/demo_base"
vllm_pid=$(MAX_MODEL_LEN=2048 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} \
  LOG="$work/vllm.log" "$serve_sh" serve "$venv" "$work/demo_base" "$port") || {
  tail -30 "$work/vllm.log" >&2; exit 1; }
pids+=("$vllm_pid")

echo "== 2. proxies"
# start_proxy NAME [FLAGS...]: sets $proxy_port. Not in a command substitution: the server would
# hold its output pipe open and the substitution would never end.
start_proxy() {
  local name=$1; shift
  "$sgt" serve "$repo/examples/models/demo" --upstream "http://127.0.0.1:$port" --port 0 \
    --output-dtype bf16 "$@" > /dev/null 2> "$work/$name.log" &
  pids+=($!)
  proxy_port=""
  for _ in $(seq 1 200); do
    proxy_port=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$work/$name.log" | grep -oE '[0-9]+$' || true)
    [ -n "$proxy_port" ] && return 0
    sleep 0.1
  done
  cat "$work/$name.log" >&2; return 1
}
start_proxy protected; protected_port=$proxy_port
start_proxy unprotected --no-protection; clean_port=$proxy_port
echo "protected proxy :$protected_port, unprotected proxy :$clean_port"

echo "== 3. the openai client through the protecting proxy"
"$py" "$repo/tools/serve_openai_client.py" "http://127.0.0.1:$protected_port/v1" none demo_base

echo "== 4. mask all 0: the proxy's answer against vLLM's own"
"$py" - "$clean_port" "$port" "$repo/examples/chat.json" <<'PY'
import json, sys
from openai import OpenAI
proxy_port, vllm_port, chat = sys.argv[1], sys.argv[2], sys.argv[3]
messages = json.load(open(chat))["messages"]
def ask(port):
    c = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    r = c.chat.completions.create(model="demo_base", messages=messages, max_tokens=24, temperature=0)
    return r.choices[0].message.content, r.choices[0].finish_reason, r.usage
via_proxy = ask(proxy_port)
own = ask(vllm_port)
print("proxy (mask 0):", repr(via_proxy[0]), via_proxy[1], via_proxy[2])
print("vLLM's own:    ", repr(own[0]), own[1], own[2])
if via_proxy[0] != own[0] or via_proxy[2].prompt_tokens != own[2].prompt_tokens:
    print("FAIL: the unprotected proxy's answer differs from vLLM's own")
    sys.exit(1)
print("equal")
PY
echo "== all checks passed"
