#!/usr/bin/env bash
# `sgt generate` against a real vLLM server (by hand, never in CI: it needs a vLLM install and takes
# minutes): the same bf16 protected prompt embeddings, greedy, and how many new tokens agree before
# the first divergence, with transformers' logits at that step to explain it. Results and their
# explanation: docs/format.md 6.2, "Against vLLM".
#
#   tools/vllm_generate_compare.sh SGT VENV VLLM_CPU_SH [PORT]
#
#   SGT          the built `sgt` binary
#   VENV         a venv with vLLM, torch and transformers (VLLM_CPU_SH install VENV makes one)
#   VLLM_CPU_SH  the script that serves a model: `VLLM_CPU_SH serve VENV MODEL PORT` starts
#                `vllm serve MODEL --enable-prompt-embeds` on 127.0.0.1:PORT, prints its PID, and
#                serves it under the name `basename MODEL`
#
# What it does, in a temporary folder (nothing is written to the repository):
#   1. copies examples/models/demo_base (tiny random bf16 LlamaForCausalLM) and serves it
#      (MAX_MODEL_LEN 2048, a 1 GiB KV cache);
#   2. protected prompt: examples/chat.json through the demo transform (torch noise, seed 3) as a
#      bf16 safetensors file and as a vllm-completions body (the same bf16 values, checked);
#   3. vLLM: the body with temperature 0, ignore_eos, return_token_ids and the top-2 logprobs; and
#      the chat's token ids (`sgt tokenize --chat`) the same way (the clean case);
#   4. `sgt generate --json` on the same inputs (--inputs-embeds, and --chat), --precision bf16 and
#      f32; eos ignored by giving it a copy of the model whose eos_token_id is null;
#   5. tools/vllm_generate_compare.py: the payload check, transformers' greedy tokens (model in f32
#      and in bf16), the agreeing prefixes, the logits at each divergence.
# Exit status 0 when every step ran (agreement is reported, not required). KEEP=1 keeps the
# temporary folder (with summary.json, the numbers as JSON).
set -euo pipefail
sgt=$(realpath "${1:?usage: vllm_generate_compare.sh SGT VENV VLLM_CPU_SH [PORT]}")
venv=$(realpath "${2:?VENV}")
serve_sh=$(realpath "${3:?VLLM_CPU_SH}")
port=${4:-8766}
max_new=32
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== versions"
"$py" -c 'import vllm, torch, transformers; print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'

echo "== 1. server on 127.0.0.1:$port ($work)"
cp -r "$repo/examples/models/demo_base" "$work/demo_base"
# sgt generate stops at eos; vLLM is told ignore_eos. The same model without an eos id for ours.
cp -r "$repo/examples/models/demo_base" "$work/demo_base_noeos"
"$py" - "$work/demo_base_noeos" <<'PY'
import json, os, sys
for name in ("config.json", "generation_config.json"):
    p = os.path.join(sys.argv[1], name)
    j = json.load(open(p)); j["eos_token_id"] = None; json.dump(j, open(p, "w"), indent=1)
PY
server_pid=$(MAX_MODEL_LEN=2048 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} \
  LOG="$work/server.log" "$serve_sh" serve "$venv" "$work/demo_base" "$port") || {
  tail -30 "$work/server.log" >&2; exit 1; }

echo "== 2. protected prompt (bf16)"
demo="$repo/examples/models/demo"
chat="$repo/examples/chat.json"
"$sgt" transform "$demo" --chat "$chat" --seed 3 --output-dtype bf16 --output "$work/prot16.safetensors"
"$sgt" transform "$demo" --chat "$chat" --seed 3 --output-dtype bf16 --format vllm-completions \
  --model-name demo_base --max-tokens "$max_new" --output "$work/body.json"
"$sgt" tokenize "$demo" --chat "$chat" > "$work/prompt_ids.json"

echo "== 3. vLLM, greedy"
post() {  # post FILE OUT
  curl -sS --fail-with-body -H 'Content-Type: application/json' --data @"$1" \
    "http://127.0.0.1:$port/v1/completions" > "$2"
}
# Greedy (temperature 0), all max_tokens tokens, the token ids returned, and the top-2 logprobs of
# every step keyed "token_id:N" (vLLM's logprobs are log_softmax of its bf16 logits in f32: equal
# logprobs are equal logits).
greedy() {
  "$py" -c 'import json,sys; b=json.load(open(sys.argv[1])); b.update(temperature=0, ignore_eos=True, return_token_ids=True, logprobs=2, return_tokens_as_token_ids=True); json.dump(b, open(sys.argv[1],"w"))' "$1"
}
greedy "$work/body.json"
post "$work/body.json" "$work/vllm_protected.json"
"$py" -c 'import json,sys; ids=json.load(open(sys.argv[1]))["input_ids"]; print(json.dumps({"model": "demo_base", "prompt": ids, "max_tokens": int(sys.argv[2])}))' \
  "$work/prompt_ids.json" "$max_new" > "$work/ids.body.json"
greedy "$work/ids.body.json"
post "$work/ids.body.json" "$work/vllm_clean.json"

echo "== 4. sgt generate"
for prec in bf16 f32; do
  "$sgt" generate "$work/demo_base_noeos" --inputs-embeds "$work/prot16.safetensors" \
    --max-new-tokens "$max_new" --precision "$prec" --json > "$work/sgt_protected_$prec.json"
  "$sgt" generate "$work/demo_base_noeos" --chat "$chat" \
    --max-new-tokens "$max_new" --precision "$prec" --json > "$work/sgt_clean_$prec.json"
done

echo "== 5. comparison"
"$py" "$repo/tools/vllm_generate_compare.py" "$work" "$work/demo_base" "$max_new"
