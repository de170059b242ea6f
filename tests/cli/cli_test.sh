#!/usr/bin/env bash
# The `sgt` tool's contract (docs/format.md section 6): success paths, and for every malformed input a
# non-zero exit, exactly one line on stderr naming the problem, and no output file.
# usage: cli_test.sh SGT_BINARY REPO_ROOT WORK_DIR
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sgt=$1
root=$2
work=$3
model=$root/examples/models/demo
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

# shellcheck source=cli_lib.sh
source "$here/cli_lib.sh"

printf '{"input_ids": [72, 101, 108, 108, 111], "noise_mask": [1, 1, 0, 1, true]}' >single.json
printf '{"input_ids": [[1, 2, 3], [4, 5, 6]], "noise_mask": [[1, 1, 1], [0, 1, 1]], "attention_mask": [[0, 1, 1], [1, 1, 0]]}' >batch.json

# --- success paths
expect_ok info info "$model" && grep -q '"format": "sgt4t"' stdout.txt || fail "info prints no format"
grep -q '"embedding_scale": 1.0,' stdout.txt || fail "info prints no embedding_scale (1 for a Llama base)"
expect_ok transform-single transform "$model" --input single.json --output out.safetensors --threads 1
[ -s out.safetensors ] || fail "transform wrote no output"
expect_ok transform-dump transform "$model" --input batch.json --output dump.safetensors --dump-intermediates \
  --seed 42 --attention sdpa --threads 2
expect_ok transform-flash transform "$model" --input batch.json --output flash.safetensors --rng torch --seed 42 \
  --attention flash --threads 3
expect_ok transform-secure transform "$model" --input batch.json --output secure.safetensors --rng secure
# The demo's weights are BF16: auto means bf16 where the kernels have the CPU's bf16 dot product
# and f32 where bf16 would be emulated, and info says which (tests/dispatch forces each case).
expect_ok info-precision info "$model"
want=f32
! grep -q '"bf16_dot_product": "avx512_bf16"' stdout.txt || want=bf16
grep -q "\"precision\": \"$want\"" stdout.txt ||
  fail "info-precision: info does not say that auto runs $want on BF16 weights with these kernels"
expect_ok transform-precision transform "$model" --input single.json --output out.safetensors \
  --precision f32 && grep -q 'precision f32' stdout.txt ||
  fail "transform-precision: the summary does not name the precision that ran"

# --- command line
expect_error no-args 'usage' 
expect_error unknown-command 'unknown command' frobnicate
expect_error info-no-dir 'MODEL_DIR' info
expect_error missing-input '--input' transform "$model" --output out.safetensors
expect_error missing-output '--output' transform "$model" --input single.json
expect_error unknown-option 'unknown option --bogus' transform "$model" --input single.json --output out.safetensors --bogus
expect_error bad-threads 'threads' transform "$model" --input single.json --output out.safetensors --threads zero
expect_error zero-threads 'threads' transform "$model" --input single.json --output out.safetensors --threads 0
expect_error bad-attention 'attention' transform "$model" --input single.json --output out.safetensors --attention fast
expect_error bad-precision 'precision must be auto, f32 or bf16' transform "$model" --input single.json --output out.safetensors --precision fp8
expect_error bad-rng 'rng' transform "$model" --input single.json --output out.safetensors --rng mt
expect_error torch-no-seed 'needs --seed' transform "$model" --input single.json --output out.safetensors --rng torch
expect_error secure-seed 'secure' transform "$model" --input single.json --output out.safetensors --rng secure --seed 1
expect_error negative-seed 'seed' transform "$model" --input single.json --output out.safetensors --seed -1
expect_error noise-and-seed 'cannot be combined' transform "$model" --input single.json --output out.safetensors --noise x.safetensors --seed 1

# --- model directory
expect_error missing-model 'config.json' transform "$work/nonexistent" --input single.json --output out.safetensors
mkdir -p broken && cp "$model/config.json" broken/
expect_error missing-weights 'model.safetensors' transform broken --input single.json --output out.safetensors
mkdir -p badcfg && cp "$model/model.safetensors" badcfg/ && printf '{"format": "sgt4t", ' >badcfg/config.json
expect_error bad-config-json 'config.json' transform badcfg --input single.json --output out.safetensors
expect_error info-missing 'config.json' info "$work/nonexistent"

# --- input file
expect_error missing-input-file 'nope.json' transform "$model" --input nope.json --output out.safetensors
printf '{"input_ids": [1, 2, 3], "noise_mask": [1, 1' >trunc.json
expect_error bad-json 'JSON' transform "$model" --input trunc.json --output out.safetensors
printf '[1, 2, 3]' >array.json
expect_error not-object 'object' transform "$model" --input array.json --output out.safetensors
printf '{"noise_mask": [1, 1]}' >noids.json
expect_error no-ids 'input_ids' transform "$model" --input noids.json --output out.safetensors
printf '{"input_ids": [1, 2]}' >nomask.json
expect_error no-noise-mask 'noise_mask' transform "$model" --input nomask.json --output out.safetensors
printf '{"input_ids": [1, 2, 3], "noise_mask": [1, 1]}' >short.json
expect_error mask-length 'noise_mask.*2 values' transform "$model" --input short.json --output out.safetensors
printf '{"input_ids": [[1, 2, 3], [4, 5]], "noise_mask": [[1, 1, 1], [1, 1]]}' >ragged.json
expect_error ragged 'row 1 has 2 tokens' transform "$model" --input ragged.json --output out.safetensors
printf '{"input_ids": [1, 2, 999999], "noise_mask": [1, 1, 1]}' >oov.json
expect_error out-of-vocab 'position 2.*999999' transform "$model" --input oov.json --output out.safetensors
printf '{"input_ids": [1, -2, 3], "noise_mask": [1, 1, 1]}' >negid.json
expect_error negative-id 'position 1.*-2' transform "$model" --input negid.json --output out.safetensors
printf '{"input_ids": [1, 2.5, 3], "noise_mask": [1, 1, 1]}' >floatid.json
expect_error float-id 'not an integer' transform "$model" --input floatid.json --output out.safetensors
printf '{"input_ids": [1, 2, 3], "noise_mask": [1, 2, 1]}' >badmask.json
expect_error mask-value 'noise_mask.*not 0, 1' transform "$model" --input badmask.json --output out.safetensors
printf '{"input_ids": [1, 2, 3], "noise_mask": [1, 1, 1], "attention_mask": [1, 1]}' >attn.json
expect_error attention-length 'attention_mask' transform "$model" --input attn.json --output out.safetensors
printf '{"input_ids": [1, 2, 3], "noise_mask": [1, 1, 1], "extra": 1}' >extra.json
expect_error unknown-key 'extra' transform "$model" --input extra.json --output out.safetensors
printf '{"input_ids": [[1]], "input_ids": [[2]], "noise_mask": [[1]]}' >repeated.json
expect_error repeated-key "repeated.json.*input_ids.*appears twice" transform "$model" --input repeated.json --output out.safetensors
printf '{"input_ids": [1, 18446744073709551615], "noise_mask": [1, 1]}' >hugeid.json
expect_error huge-id "position 1.*18446744073709551615 is too large" transform "$model" --input hugeid.json --output out.safetensors
printf '{"input_ids": [], "noise_mask": []}' >empty.json
expect_error empty 'empty' transform "$model" --input empty.json --output out.safetensors

# --- noise file
expect_error missing-noise 'missing.safetensors' transform "$model" --input single.json --output out.safetensors --noise missing.safetensors
expect_error noise-wrong-shape "tensor .noise.*shape" transform "$model" --input single.json --output out.safetensors --noise "$work/dump.safetensors"
printf 'garbage!' >garbage.safetensors
expect_error noise-garbage 'garbage.safetensors' transform "$model" --input single.json --output out.safetensors --noise garbage.safetensors

# --- output path that cannot be written
expect_error unwritable-output 'cannot' transform "$model" --input single.json --output "$work/no/such/dir/out.safetensors"

# --- output targets: only a regular file or an absent one is replaced (docs/reliability.md)
mkfifo out.fifo
expect_error output-fifo 'out.fifo: refusing to replace a FIFO' transform "$model" --input single.json \
  --output out.fifo
[ -p out.fifo ] || fail "output-fifo: the FIFO was replaced"
mkdir -p outside out_dir && printf secret >outside/secret && ln -s "$work/outside/secret" link.safetensors
expect_error output-link 'link.safetensors: refusing to replace a symbolic link to a regular file' \
  transform "$model" --input single.json --output link.safetensors
[ -L link.safetensors ] && [ "$(cat outside/secret)" = secret ] || fail "output-link: the link or its file changed"
expect_error output-folder 'out_dir: refusing to replace a directory' transform "$model" --input single.json \
  --output out_dir
expect_error audit-plot-fifo 'out.fifo: refusing to replace a FIFO' audit "$model" --input single.json --plot out.fifo
[ -p out.fifo ] && [ "$(ls outside)" = secret ] && [ -z "$(ls out_dir)" ] || fail "output targets: something was written"
long_name=$(printf "%0240d" 0).safetensors  # 252 bytes: a suffix for a temporary name would pass NAME_MAX
expect_ok output-long-name transform "$model" --input single.json --output "$long_name" --threads 1
[ -s "$long_name" ] && [ "$(ls | grep -c "^$long_name")" -eq 1 ] || fail "output-long-name: not written alone"
rm -f "$long_name"

# --- output formats and dtypes (docs/output_formats.md)
expect_error bad-format 'format must be safetensors, torch or vllm-completions' transform "$model" --input single.json --output out.safetensors --format onnx
expect_error bad-dtype 'output-dtype must be f32, bf16 or f16' transform "$model" --input single.json --output out.safetensors --output-dtype fp8
expect_error dump-needs-safetensors 'dump-intermediates needs --format safetensors' transform "$model" --input single.json --output out.safetensors --format torch --dump-intermediates
expect_error model-name-needs-vllm 'need --format vllm-completions' transform "$model" --input single.json --output out.safetensors --model-name m
expect_error max-tokens-zero 'max-tokens must be at least 1' transform "$model" --input single.json --output out.safetensors --format vllm-completions --max-tokens 0
expect_error max-prompt-tokens-zero 'max-prompt-tokens must be at least 1' transform "$model" --input single.json --output out.safetensors --max-prompt-tokens 0
# The transform's length limit (RunOptions::max_tokens) from the flag: 5 tokens over a limit of 4.
expect_error max-prompt-tokens 'more than the limit of 4' transform "$model" --input single.json --output out.safetensors --max-prompt-tokens 4
expect_ok max-prompt-tokens-exact transform "$model" --input single.json --output out.safetensors --max-prompt-tokens 5
for fmt in torch vllm-completions; do
  rm -rf no
  expect_error "missing-folder-$fmt" "no/such/dir/out.$fmt: cannot create" transform "$model" --input single.json --output "no/such/dir/out.$fmt" --format "$fmt"
  [ -e no ] && fail "missing-folder-$fmt: a folder was created"
done
for dtype in f32 bf16 f16; do
  expect_ok "safetensors-$dtype" transform "$model" --input batch.json --output "st_$dtype.safetensors" --output-dtype "$dtype" --seed 1
  upper=$(echo "$dtype" | tr a-z A-Z)
  head -c 200 "st_$dtype.safetensors" | grep -aq "\"transformed\":{\"dtype\":\"$upper\"" || fail "safetensors-$dtype: header does not say $upper"
  expect_ok "torch-$dtype" transform "$model" --input single.json --output "t_$dtype.pt" --format torch --output-dtype "$dtype" --seed 1
  [ "$(head -c 4 "t_$dtype.pt" | od -An -tx1 | tr -d ' ')" = 504b0304 ] || fail "torch-$dtype: not a ZIP"
  head -c 200 "t_$dtype.pt" | grep -aq 't_'"$dtype"'/data.pkl' || fail "torch-$dtype: first record is not t_$dtype/data.pkl"
done
head -c 600 t_bf16.pt | grep -aq 'BFloat16Storage' || fail "torch-bf16: no BFloat16Storage in the pickle"
head -c 600 t_f16.pt | grep -aq 'HalfStorage' || fail "torch-f16: no HalfStorage in the pickle"
expect_ok torch-batch transform "$model" --input batch.json --output batch.pt --format torch --seed 1
grep -aq 'batch/data/1' batch.pt || fail "torch-batch: no second tensor"
expect_ok vllm-single transform "$model" --input single.json --output body.json --format vllm-completions --seed 1
grep -qE '^\{"model": "demo", "prompt_embeds": "UEsDBA[A-Za-z0-9+/]*={0,2}", "max_tokens": 16\}$' body.json ||
  fail "vllm-single: unexpected body $(head -c 120 body.json)"
expect_ok vllm-batch transform "$model/" --input batch.json --output batch.json.out --format vllm-completions --model-name 'x"y' --max-tokens 3 --seed 1
grep -qE '^\{"model": "x\\"y", "prompt_embeds": \["UEsDBA[A-Za-z0-9+/=]*", "UEsDBA[A-Za-z0-9+/=]*"\], "max_tokens": 3\}$' batch.json.out ||
  fail "vllm-batch: unexpected body $(head -c 120 batch.json.out)"
# Text in (docs/format.md sections 7 and 8). The expected ids and masks come from the real libraries:
# examples/prompt.json from `tokenizers` (tools/make_demo.py), demo_chat_expected.json from
# transformers' apply_chat_template (tools/fixtures/demo_chat_fixture.py).
same_request() {  # same_request NAME GOT EXPECTED: the same input_ids and noise_mask (compact JSON)
  local pick='"input_ids":\[[^]]*\],"noise_mask":\[[^]]*\]'
  [ -n "$(grep -o "$pick" "$2")" ] && [ "$(grep -o "$pick" "$2")" = "$(grep -o "$pick" "$3")" ] ||
    fail "$1: ids or mask differ from $3"
}
prompt_text="Summarize the patient's discharge notes and list any medication changes."
expect_ok tokenize-text tokenize "$model" --text "$prompt_text"
cp stdout.txt tokenized_text.json
same_request tokenize-text tokenized_text.json "$root/examples/prompt.json"
expect_ok tokenize-chat tokenize "$model" --chat "$root/examples/chat.json"
cp stdout.txt tokenized_chat.json
same_request tokenize-chat tokenized_chat.json "$root/tests/data/text/demo_chat_expected.json"
expect_ok tokenize-no-specials tokenize "$model" --text "hello" --no-special-tokens
grep -q '"noise_mask":\[1' stdout.txt || fail "tokenize-no-specials: first token should be the text's"
expect_ok tokenize-all tokenize "$model" --chat "$root/examples/chat.json" --transform-all-tokens
grep -q '"noise_mask":\[1,1,1' stdout.txt || fail "tokenize-all: scaffolding not protected"
expect_ok transform-text transform "$model" --text "$prompt_text" --output text.safetensors --seed 3
expect_ok transform-chat transform "$model" --chat "$root/examples/chat.json" --output chat.json.out --format vllm-completions
grep -q '"prompt_embeds"' chat.json.out || fail "transform-chat: no prompt_embeds"
expect_ok tokenize-roles tokenize "$model" --chat "$root/examples/chat.json" --protect-roles user
n_user=$(grep -o '"noise_mask":\[[^]]*\]' stdout.txt | grep -o 1 | wc -l)
[ "$n_user" -gt 0 ] && [ "$n_user" -lt 52 ] || fail "tokenize-roles: $n_user protected tokens, want fewer than all 52"
expect_error roles-with-text 'need --chat' tokenize "$model" --text hi --protect-roles user
expect_error roles-empty 'comma-separated' tokenize "$model" --chat "$root/examples/chat.json" --protect-roles user,
printf '{"messages": [{"content": "hi"}]}' > no_content.json
expect_error chat-bad-message "no_content.json.*role" tokenize "$model" --chat no_content.json
printf '{"messages": [{"role": "user", "content": "hi"}], "colour": 1}' > unknown_key.json
expect_error chat-unknown-key "colour" tokenize "$model" --chat unknown_key.json
expect_error chat-missing 'nope.json' tokenize "$model" --chat nope.json
# The instruction form (format.md 8, "CHAT.json"): the quickstart's example is one user message.
expect_ok tokenize-instruction tokenize "$model" --chat "$root/examples/instruction.json" --add-generation-prompt
cp stdout.txt tokenized_instruction.json
printf '[{"role": "user", "content": "What is the capital of France?"}]' >france_messages.json
expect_ok tokenize-instruction-messages tokenize "$model" --chat france_messages.json --add-generation-prompt
cp stdout.txt tokenized_france_messages.json
same_request tokenize-instruction tokenized_instruction.json tokenized_france_messages.json
printf '{"instruction": "q", "context": 5}' >bad_instruction.json
expect_error chat-instruction-type "bad_instruction.json: key 'context': must be a string or null, got 5" \
  tokenize "$model" --chat bad_instruction.json
printf '{"system_prompt": "s"}' >no_instruction.json
expect_error chat-no-instruction "no_instruction.json: key 'instruction': required key is missing" \
  tokenize "$model" --chat no_instruction.json
expect_error text-and-input 'exactly one of' transform "$model" --text hi --input single.json --output x.safetensors
expect_error text-agp 'needs --chat' tokenize "$model" --text hi --add-generation-prompt
expect_error text-invalid-utf8 'UTF-8' tokenize "$model" --text "$(printf 'bad \xff byte')"
expect_error no-tokenizer 'tokenizer.json' tokenize "$root/tests/data/e2e/llama_mha" --text hi
[ -e x.safetensors ] && fail "text-and-input: an output file was written"
ls ./*.tmp-* >/dev/null 2>&1 && fail "a temporary file was left behind"

# --- sgt audit: the numbers of tests/data/audit/expected.json (tools/check_audit.py, reference
# transform + numpy) for the demo prompt and its stored draws; then bad input.
audit_data=$root/tests/data/audit
# The values that follow KEY in FILE, nulls (unprotected tokens) left out, one per line.
values_of() { grep -o "\"$1\": [-0-9][-0-9.e+]*" "$2" | sed 's/.*: //'; }
if expect_ok audit-stored audit "$model" --input "$root/examples/prompt.json" \
  --noise-draws "$audit_data/noise_draws.safetensors" --json-only --threads 2 --precision f32; then
  cp stdout.txt audit.json
  [ -s stderr.txt ] && fail "audit-stored: --json-only wrote to stderr"
  for key in recovery_l2 recovery_cosine mean_rank_l2; do
    values_of $key audit.json >ours.txt
    values_of $key "$audit_data/expected.json" >expected.txt
    if [ ! -s expected.txt ] || ! cmp -s ours.txt expected.txt; then
      fail "audit-stored: $key differs from expected.json"
    fi
  done
fi
expect_ok audit-text audit "$model" --text "$prompt_text" --draws 2 &&
  grep -q '"reconstructed"' stdout.txt && grep -q 'protected tokens, 2 draws' stderr.txt ||
  fail "audit-text: no reconstruction or no table"
expect_error audit-unknown-flag 'unknown option --heatmap' audit "$model" --input single.json --heatmap x.png
expect_ok audit-plot audit "$model" --input single.json --draws 3 --json-only --plot heat.png &&
  [ "$(head -c 8 heat.png | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  fail "audit-plot: heat.png is not a PNG"
expect_error audit-plot-folder 'missing/heat.png.*does not exist' audit "$model" --input single.json \
  --plot missing/heat.png
expect_error audit-zero-draws '--draws must be between' audit "$model" --input single.json --draws 0
expect_error audit-draws-and-file 'cannot be combined' audit "$model" --input single.json --draws 2 \
  --noise-draws "$audit_data/noise_draws.safetensors"
expect_error audit-no-prompt 'exactly one of' audit "$model"
# dump.safetensors' noise is [2, 3, 256]: not [N, 31, 256].
expect_error audit-draws-shape 'dump.safetensors.*noise draws have shape \[2, 3, 256\]' audit "$model" \
  --input "$root/examples/prompt.json" --noise-draws dump.safetensors
expect_error audit-draws-missing 'nope.safetensors' audit "$model" --input single.json \
  --noise-draws nope.safetensors

# --- sgt audit --base: the utility report for the demo base model; its greedy answers to the clean
# prompt and to draw 0's protected prompt are transformers' (tests/data/audit/utility/expected.json,
# tools/fixtures/utility_audit_fixtures.py).
base=$root/examples/models/demo_base
if expect_ok audit-base audit "$model" --input "$root/examples/prompt.json" --noise-draws \
  "$audit_data/noise_draws.safetensors" --base "$base" --base-new-tokens 16 --precision f32 --threads 2; then
  cp stdout.txt audit_base.json
  tr -d ' \n' <audit_base.json | grep -o '"answers":{"clean":{"ids":\[[-0-9,]*\]' | sed 's/.*://' >ours.txt
  tr -d ' \n' <audit_base.json | grep -o '"protected":{"draw":0,"ids":\[[-0-9,]*\]' | sed 's/.*://' >>ours.txt
  { tr -d ' \n' <"$audit_data/utility/expected.json" | grep -o '"clean_answer":{"new_ids":\[[-0-9,]*\]'
    tr -d ' \n' <"$audit_data/utility/expected.json" | grep -o '"protected_answer":{"draw":0,"new_ids":\[[-0-9,]*\]'
  } | sed 's/.*://' >expected.txt
  [ "$(wc -l <expected.txt)" -eq 2 ] && cmp -s ours.txt expected.txt ||
    fail "audit-base: greedy answers $(cat ours.txt) differ from transformers' $(cat expected.txt)"
  grep -q '"reached_positions": 30' audit_base.json || fail "audit-base: no utility.overall"
  grep -q '"recovery_l2"' audit_base.json || fail "audit-base: the nearest-neighbour report is gone"
  grep -q 'utility for .*4 draws: KL(clean||protected)' stderr.txt && grep -q 'protected answer:' stderr.txt ||
    fail "audit-base: no utility lines in the table"
fi
expect_error audit-base-mismatch 'demo/config.json: the SGT model was not made for this base model: it has vocab_size 1024, hidden_size 256; .*llama/config.json has vocab_size 256, hidden_size 64' \
  audit "$model" --input single.json --draws 1 --base "$root/tests/data/causal_lm/llama"
expect_error audit-base-batch 'one sequence, the request has 2' audit "$model" --input batch.json --draws 1 \
  --base "$base"
expect_error audit-base-tokens-alone '--base-new-tokens needs --base' audit "$model" --input single.json \
  --base-new-tokens 4
expect_error audit-base-missing 'nope' audit "$model" --input single.json --draws 1 --base nope
# --- sgt import-gguf (docs/format.md section 6.4): a GGUF file as a Hugging Face directory, none
# left behind when the file is refused
gguf=$root/tests/data/gguf/tiny_llama.gguf
expect_ok import-gguf import-gguf "$gguf" imported --dtype f32 &&
  grep -q '"tensors":20' stdout.txt && [ -s imported/model.safetensors ] && [ -s imported/tokenizer.json ] ||
  fail "import-gguf: no directory, or a wrong summary: $(cat stdout.txt)"
expect_ok import-gguf-bf16 import-gguf "$gguf" imported_bf16 && grep -q '"dtype":"bf16"' stdout.txt ||
  fail "import-gguf-bf16: the default dtype is not bf16"
expect_error import-gguf-exists 'imported: already exists and is not an empty directory' import-gguf "$gguf" imported
mkdir -p imported_spm
expect_ok import-gguf-spm-empty-dir import-gguf "$root/tests/data/gguf/tiny_spm.gguf" imported_spm &&
  grep -q '"tokenizer":"llama","pre_tokenizer":"default"' stdout.txt && [ -s imported_spm/tokenizer.json ] ||
  fail "import-gguf-spm-empty-dir: an empty OUT_DIR was not filled, or a wrong summary: $(cat stdout.txt)"
expect_error import-gguf-dtype 'dtype must be bf16 or f32' import-gguf "$gguf" other --dtype f16
expect_error import-gguf-args 'needs MODEL.gguf and OUT_DIR' import-gguf "$gguf"
head -c 3000 "$gguf" >truncated.gguf
expect_error import-gguf-truncated 'truncated.gguf: key .tokenizer.ggml.tokens.: position [0-9]+: array length 300 cannot fit' import-gguf truncated.gguf cut
printf 'GGML' >notgguf.gguf
expect_error import-gguf-magic 'not a GGUF file' import-gguf notgguf.gguf cut
expect_error import-gguf-missing 'cannot open' import-gguf "$work/nonexistent.gguf" cut
[ -e cut ] || ls cut.tmp* >/dev/null 2>&1 && fail "import-gguf: a refused file left a directory behind" || ok

# --- sgt make-transform (docs/format.md section 6.5): an untrained transform for a base model, as
# tools/convert_hf.py makes it; nothing left behind when refused
base_model=$root/examples/models/demo_base
expect_ok make-transform make-transform "$base_model" made --layers 1 --init-std 0.05 &&
  grep -q '"layers":1,"base_layers":2' stdout.txt && grep -q '"tensors":25' stdout.txt &&
  [ -s made/model.safetensors ] && [ -s made/tokenizer.json ] ||
  fail "make-transform: no directory, or a wrong summary: $(cat stdout.txt)"
expect_ok make-transform-runs transform made --chat "$root/examples/chat.json" --output out.safetensors &&
  [ -s out.safetensors ] || fail "make-transform-runs: the new transform did not run"
mkdir -p made_empty
expect_ok make-transform-empty-dir make-transform "$base_model" made_empty --layers 2 --dtype f32 &&
  grep -q '"dtype":"f32"' stdout.txt || fail "make-transform-empty-dir: an empty OUT_DIR was not filled"
expect_error make-transform-exists 'made: already exists and is not an empty directory' \
  make-transform "$base_model" made --layers 1
expect_error make-transform-no-layers 'needs --layers K' make-transform "$base_model" cutmt
expect_error make-transform-zero-layers 'layers must be at least 1' make-transform "$base_model" cutmt --layers 0
expect_error make-transform-too-many-layers "key 'num_hidden_layers': the base model has 2 layers: 3 cannot be taken" \
  make-transform "$base_model" cutmt --layers 3
for s in 0 2 -1; do
  expect_error "make-transform-init-std-$s" "init-std must be between 0.0001 and 2 \\(exclusive\\), got $s" \
    make-transform "$base_model" cutmt --layers 1 --init-std "$s"
done
expect_error make-transform-init-std-nan 'init-std needs a number' make-transform "$base_model" cutmt --layers 1 --init-std nan
expect_error make-transform-dtype 'dtype must be keep, f32, bf16 or f16' make-transform "$base_model" cutmt --layers 1 --dtype f64
expect_error make-transform-args 'needs BASE_DIR and OUT_DIR' make-transform "$base_model" --layers 1
expect_error make-transform-missing 'nonexistent/config.json: cannot open' make-transform "$work/nonexistent" cutmt --layers 1
mkdir -p weightless && cp "$base_model/config.json" weightless/
expect_error make-transform-no-weights 'neither model.safetensors nor' make-transform weightless cutmt --layers 1
[ -e cutmt ] || ls cutmt.tmp* >/dev/null 2>&1 && fail "make-transform: a refusal left a directory behind" || ok

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
