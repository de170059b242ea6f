#!/usr/bin/env bash
# `sgt generate`'s contract (docs/format.md section 6): on the bundled demo base model, the greedy
# answers are transformers' (tests/data/generate/expected.json, tools/fixtures/generate_fixtures.py)
# for a text prompt, the sample chat, and the chat protected by the demo transform with torch-seeded
# noise; the streamed text is the answer; seeded sampling repeats; bad command lines and models are
# one-line errors.
# usage: generate_test.sh SGT_BINARY REPO_ROOT WORK_DIR
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sgt=$1
root=$2
work=$3
base=$root/examples/models/demo_base
demo=$root/examples/models/demo
chat=$root/examples/chat.json
expected=$root/tests/data/generate/expected.json
text="Summarize the patient's discharge notes and list any medication changes."
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
# shellcheck source=cli_lib.sh
source "$here/cli_lib.sh"

# The KEY arrays of a JSON file, one per line, in order of appearance.
arrays_of() { tr -d ' \n' <"$2" | grep -o "\"$1\":\[[0-9,]*\]"; }
arrays_of new_ids "$expected" >expected_new.txt
arrays_of prompt_ids "$expected" >expected_prompt.txt
[ "$(wc -l <expected_new.txt)" -eq 3 ] || fail "expected.json: 3 cases expected"

# check_case NAME LINE: the run's prompt ids (if it has them) and new ids are case LINE of
# expected.json.
check_case() {
  arrays_of prompt_ids stdout.txt >got_prompt.txt
  arrays_of new_ids stdout.txt >got_new.txt
  # (no prompt ids with --inputs-embeds: the new ids alone)
  if [ -s got_prompt.txt ] && ! cmp -s got_prompt.txt <(sed -n "$2p" expected_prompt.txt); then
    fail "$1: prompt ids $(cat got_prompt.txt) != expected $(sed -n "$2p" expected_prompt.txt)"
  elif ! cmp -s got_new.txt <(sed -n "$2p" expected_new.txt); then
    fail "$1: new ids $(cat got_new.txt) != transformers' $(sed -n "$2p" expected_new.txt)"
  fi
}

# --- greedy answers equal transformers' generate (f32 compute on the bf16 weights, as HF's f32 run)
expect_ok text generate "$base" --text "$text" --max-new-tokens 16 --precision f32 --json &&
  check_case text 1
# The decode copy (feature blocks for decode steps) changes no token; the mapped weights make none.
expect_ok chat generate "$base" --chat "$chat" --max-new-tokens 16 --precision f32 --json --threads 1 \
  --decode-weights mapped && check_case chat 2
grep -q 'decode weights mapped' stderr.txt ||
  fail "chat: the summary does not say mapped: $(cat stderr.txt)"
expect_ok chat-decode-copy generate "$base" --chat "$chat" --max-new-tokens 16 --precision f32 --json \
  --threads 2 --decode-weights copy && check_case chat-decode-copy 2
grep -Eq 'decode copy [0-9]+\.[0-9] MiB' stderr.txt && ! grep -q 'decode copy 0\.0 MiB' stderr.txt ||
  fail "chat-decode-copy: the summary does not give a copy's size: $(cat stderr.txt)"
expect_ok protected generate "$base" --chat "$chat" --protect "$demo" --noise-seed 3 --max-new-tokens 16 \
  --precision f32 --json --threads 2 && check_case protected 3
grep -q '"protected_tokens": 52' stdout.txt || fail "protected: not 52 protected tokens: $(cat stdout.txt)"
grep -q 'protected by' stderr.txt || fail "protected: the summary does not say the prompt was protected"

# --- the same protected prompt stored by `sgt transform` (as a server receives it), f32 and bf16
expect_ok transform-f32 transform "$demo" --chat "$chat" --seed 3 --precision f32 --output prot.safetensors &&
  expect_ok embeds-f32 generate "$base" --inputs-embeds prot.safetensors --max-new-tokens 16 \
    --precision f32 --json && check_case embeds-f32 3
grep -q '"prompt_ids": null' stdout.txt || fail "embeds-f32: prompt_ids should be null"
expect_ok transform-bf16 transform "$demo" --chat "$chat" --seed 3 --precision f32 --output-dtype bf16 \
  --output prot16.safetensors &&
  expect_ok embeds-bf16 generate "$base" --inputs-embeds prot16.safetensors --max-new-tokens 4 --json
expect_error embeds-and-text 'takes no --text' generate "$base" --inputs-embeds prot.safetensors --text hi
expect_error embeds-no-tensor "prompt_noise.safetensors.*no tensor 'transformed'" generate "$base" \
  --inputs-embeds "$root/examples/prompt_noise.safetensors"
expect_ok transform-other transform "$root/tests/data/e2e/llama_mha" --input \
  "$root/tests/data/e2e/llama_mha/input.json" --seed 1 --output other.safetensors &&
  expect_error embeds-hidden "other.safetensors.*transformed.*must be \[1, S, 256\]" generate "$base" \
    --inputs-embeds other.safetensors

# --- streamed: text and a final newline on stdout, the summary on stderr (tests/test_text_generate.cpp
# checks the streamed pieces against the decoded answer)
expect_ok stream generate "$base" --text "$text" --max-new-tokens 16 --precision f32 &&
  [ "$(wc -c <stdout.txt)" -gt 1 ] && [ "$(tail -c 1 stdout.txt | od -An -c | tr -d ' ')" = '\n' ] &&
  grep -q '31 prompt tokens (clean), 16 new tokens' stderr.txt || fail "stream: $(cat stdout.txt stderr.txt)"

# --- one token
expect_ok one-token generate "$base" --text "$text" --max-new-tokens 1 --json &&
  [ "$(arrays_of new_ids stdout.txt | tr -cd ',' | wc -c)" -eq 0 ] || fail "one-token: not one token"

# --- seeded sampling repeats; another seed answers differently
expect_ok sample-a generate "$base" --text "$text" --temperature 1.5 --top-p 0.95 --seed 11 --json &&
  arrays_of new_ids stdout.txt >sample_a.txt
expect_ok sample-b generate "$base" --text "$text" --temperature 1.5 --top-p 0.95 --seed 11 --json \
  --threads 1 && arrays_of new_ids stdout.txt >sample_b.txt
expect_ok sample-c generate "$base" --text "$text" --temperature 1.5 --top-p 0.95 --seed 12 --json &&
  arrays_of new_ids stdout.txt >sample_c.txt
cmp -s sample_a.txt sample_b.txt || fail "sampling: seed 11 gave two answers"
cmp -s sample_a.txt sample_c.txt && fail "sampling: seeds 11 and 12 gave the same answer"
grep -q '"seed": 11' stdout.txt && fail "sample-c: reports the wrong seed"
grep -q '"temperature": 1.5' stdout.txt || fail "sampling: the report does not give the temperature"

# --- errors: one line, non-zero exit
expect_error no-prompt 'exactly one of --text TEXT or --chat' generate "$base"
expect_error input-json 'takes no --input' generate "$base" --input "$root/examples/prompt.json"
expect_error seed-greedy '--seed and --top-p shape sampling' generate "$base" --text hi --seed 3
expect_error top-p-range '--top-p must be in \(0, 1\]' generate "$base" --text hi --temperature 1 --top-p 0
expect_error temperature-neg '--temperature must be >= 0' generate "$base" --text hi --temperature -1
expect_error temperature-nan '--temperature needs a number' generate "$base" --text hi --temperature nan
expect_error noise-seed '--noise-seed .* needs --protect' generate "$base" --text hi --noise-seed 3
expect_error decode-weights "--decode-weights.*auto, mapped or copy" generate "$base" --text hi \
  --decode-weights fast
expect_error max-new '--max-new-tokens must be between' generate "$base" --text hi --max-new-tokens 0
expect_error not-a-causal-lm 'config.json' generate "$demo" --text hi
expect_error mismatched-sgt "llama_mha/config.json.*was not made for this base model" generate "$base" \
  --text hi --protect "$root/tests/data/e2e/llama_mha"
expect_error no-base 'nowhere' generate "$work/nowhere" --text hi
mkdir -p no_tokenizer && cp "$base"/config.json "$base"/model.safetensors no_tokenizer/
expect_error no-tokenizer 'no_tokenizer/tokenizer.json' generate no_tokenizer --text hi
mkdir -p bad_eos && cp "$base"/* bad_eos/ && printf '{"eos_token_id": "x"}' >bad_eos/generation_config.json
expect_error bad-eos 'generation_config.json.*eos_token_id' generate bad_eos --text hi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
