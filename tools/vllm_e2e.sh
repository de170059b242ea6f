#!/usr/bin/env bash
# End-to-end check of `sgt transform --format vllm-completions` against a real vLLM server (by
# hand, never in CI: it needs a vLLM install and takes minutes). See docs/output_formats.md.
#
#   tools/vllm_e2e.sh SGT VENV VLLM_CPU_SH [PORT]
#
#   SGT          the built `sgt` binary
#   VENV         a venv with torch, transformers and vLLM (VLLM_CPU_SH install VENV makes one)
#   VLLM_CPU_SH  the script that serves a model: `VLLM_CPU_SH serve VENV MODEL PORT` starts
#                `vllm serve MODEL --enable-prompt-embeds` on 127.0.0.1:PORT, prints its PID, and
#                serves it under the name `basename MODEL`
#
# What it does, in a temporary folder (nothing is written to the repository):
#   1. makes a small random Hugging Face Llama (hidden 256, head_dim 64, 2 layers, a 512-token
#      word-level tokenizer, f32) with transformers, and converts it with tools/convert_hf.py, so
#      the transform's embedding table is the server model's;
#   2. starts the server;
#   3. protected run: a prompt with noise on most tokens (secure noise, default bf16 payload) ->
#      the request body -> curl -> a completion must come back;
#   4. unprotected run: the same prompt with noise_mask all 0 (so the embeddings are the clean
#      table rows, sent as f32, the server's dtype) -> curl; the completion must equal the
#      server's own completion of the same token ids (greedy: temperature 0, ignore_eos and
#      return_token_ids added to both requests): the same generated token ids, and the same
#      text up to the leading space the detokenizer puts after prompt tokens.
# Exit status 0 when both hold; the completions are printed.
set -euo pipefail
sgt=$(realpath "${1:?usage: vllm_e2e.sh SGT VENV VLLM_CPU_SH [PORT]}")
venv=$(realpath "${2:?VENV}")
serve_sh=$(realpath "${3:?VLLM_CPU_SH}")
port=${4:-8765}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. model ($work)"
"$py" - "$work/tiny-llama" <<'PY'
import sys
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = sys.argv[1]
vocab = 512
torch.manual_seed(0)
config = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, head_dim=64,
                     max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                     tie_word_embeddings=False, torch_dtype="float32")
model = LlamaForCausalLM(config)
with torch.no_grad():  # larger than the default init, so the greedy tokens are not near-ties
    for p in model.parameters():
        if p.dim() == 2:
            p.normal_(0.0, 0.2)
model.save_pretrained(out, safe_serialization=True)
words = {"<unk>": 0, "<s>": 1, "</s>": 2}
words.update({f"w{i}": i for i in range(3, vocab)})
tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                               eos_token="</s>")
fast.save_pretrained(out)
print("saved", out)
PY
"$py" "$repo/tools/convert_hf.py" "$work/tiny-llama" "$work/sgt-tiny" --layers 1 --init-std 0.5 \
  >/dev/null
ids='[1, 17, 42, 99, 7, 300, 211, 5, 64, 128, 77, 3]'
printf '{"input_ids": %s, "noise_mask": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]}\n' "$ids" \
  > "$work/protected.json"
printf '{"input_ids": %s, "noise_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}\n' "$ids" \
  > "$work/clean.json"

echo "== 2. server on 127.0.0.1:$port"
server_pid=$(LOG="$work/server.log" "$serve_sh" serve "$venv" "$work/tiny-llama" "$port") || {
  tail -30 "$work/server.log" >&2; exit 1; }
post() {  # post FILE -> the response JSON on stdout
  curl -sS --fail-with-body -H 'Content-Type: application/json' --data @"$1" \
    "http://127.0.0.1:$port/v1/completions"
}
# Greedy, all max_tokens tokens (a random model may pick EOS first) and the token ids returned:
# added to a body sgt wrote (model, prompt_embeds, max_tokens).
greedy() {
  "$py" -c 'import json,sys; b=json.load(open(sys.argv[1])); b.update(temperature=0, ignore_eos=True, return_token_ids=True); json.dump(b, open(sys.argv[1],"w"))' "$1"
}
# The completions' text and generated token ids, as one JSON line.
text_of() {
  "$py" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps([[c["text"], c.get("token_ids")] for c in r["choices"]]))'
}

echo "== 3. protected run"
"$sgt" transform "$work/sgt-tiny" --input "$work/protected.json" --output "$work/protected.body.json" \
  --format vllm-completions --model-name tiny-llama --max-tokens 8
post "$work/protected.body.json" > "$work/protected.response.json"
protected=$(text_of < "$work/protected.response.json")
echo "protected completion: $protected"
"$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert len(r["choices"]) == 1 and r["choices"][0]["finish_reason"], r' \
  "$work/protected.response.json"

echo "== 4. unprotected run"
"$sgt" transform "$work/sgt-tiny" --input "$work/clean.json" --output "$work/clean.body.json" \
  --format vllm-completions --output-dtype f32 --model-name tiny-llama --max-tokens 8
greedy "$work/clean.body.json"
post "$work/clean.body.json" > "$work/clean.response.json"
printf '{"model": "tiny-llama", "prompt": %s, "max_tokens": 8}\n' "$ids" > "$work/ids.body.json"
greedy "$work/ids.body.json"
post "$work/ids.body.json" > "$work/ids.response.json"
clean=$(text_of < "$work/clean.response.json")
own=$(text_of < "$work/ids.response.json")
echo "unprotected embeddings completion: $clean"
echo "server's own token-id completion:  $own"
# The generated token ids must be equal, and so must the texts up to leading whitespace: with
# token-id prompts the detokenizer has the prompt's last token as context and may put a space
# before the first generated word; with prompt embeddings there are no prompt tokens.
"$py" - "$work/clean.response.json" "$work/ids.response.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["choices"][0] for p in sys.argv[1:3])
assert a["token_ids"] and a["token_ids"] == b["token_ids"], (a["token_ids"], b["token_ids"])
assert a["text"].lstrip() == b["text"].lstrip(), (a["text"], b["text"])
PY
echo "OK: protected completion returned; unprotected completion equals the token-id completion (same generated token ids)"
