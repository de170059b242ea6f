#!/usr/bin/env bash
# The include graph of include/sgt must match its folders (docs/architecture.md):
#
#   core  <-  io, kernels, random  <-  model  <-  lm  <-  audit
#   core  <-  kernels  <-  dispatch   (sgt::dispatch: the kernels chosen at run time)
#   core  <-  io  <-  text/tokenizer, text/jinja  <-  text/chat   (the text front end)
#   core  <-  io  <-  model  <-  convert   (other formats into model directories: GGUF import;
#                                          a transform made from a base model, checked by the
#                                          model's own config parser and tensor list)
#   everything  <-  pipeline          (the pipelines front ends call: text + transform + LM)
#   everything  <-  serve             (the OpenAI protocol as data: requests, responses, SSE, the
#                                      proxy's pipeline; no sockets, no HTTP library)
#
# model/ is the shared decoder, the estimator and the transform; lm/ the causal LM (KV cache,
# generation); audit/ the evaluations of a transform (recovery, and its cost to a base LM). The
# text rooms are layers of their own: the tokenizer and the template engine never see each other.
#
# 1. A header includes sgt headers of its own layer and the layers below it only. A new folder
#    has no rule yet and fails until it gets one here.
# 2. No kernel or model code names xsimd or intrinsics (xsimd::, _mm*, __m128/256/512): it calls
#    sgt::simd::*, which has a portable path for every instruction set.
# 3. Third-party headers stay where they belong: xsimd and intrinsics only in core/simd.hpp (the
#    SIMD shim), Eigen nowhere in the library, and nlohmann's JSON reachable, through any chain
#    of includes, only from io/ headers that parse JSON and the model headers that load a config
#    (so the compute path -- kernels, activations, layers, estimators -- never pulls a JSON parser).
# 4. Code compiled per instruction set sits in its instruction-set namespace (core/isa.hpp): every
#    header that includes core/simd.hpp, and every model/ header, opens SGT_ISA_BEGIN; and no
#    namespace is declared inside it (the namespace goes innermost, or `detail` turns ambiguous).
#
# usage: check_layering.sh INCLUDE_DIR     (prints every violation; exit 1 if there is one)
set -u
root=${1:?usage: check_layering.sh INCLUDE_DIR}
cd "$root" || exit 2

declare -A allowed=(
  [core]="core"
  [io]="core io"
  [kernels]="core kernels"
  [random]="core random"
  [model]="core io kernels random model"
  [lm]="core io kernels random model lm"
  [audit]="core io kernels random model lm audit"
  [dispatch]="core kernels dispatch"
  [text/tokenizer]="core io text/tokenizer"
  [text/jinja]="core text/jinja"
  [text/chat]="core io text/tokenizer text/jinja text/chat"
  [convert]="core io kernels random model convert"
  [pipeline]="core io kernels random model lm audit text/tokenizer text/jinja text/chat convert pipeline"
  [serve]="core io kernels random model lm audit text/tokenizer text/jinja text/chat convert pipeline serve"
)
# A header's layer: its folder under sgt/, with text/'s rooms told apart (sgt/text/jinja/x.hpp ->
# text/jinja).
layer_of() { case "$1" in sgt/text/*/*) echo "$1" | cut -d/ -f2-3 ;; *) echo "$1" | cut -d/ -f2 ;; esac; }
# May reach <nlohmann/...>: readers of JSON files and what builds on them (and every header of
# text/, lm/, audit/ and pipeline/, below).
json_allowed=" sgt/sgt.hpp sgt/io/json.hpp sgt/io/json_precheck.hpp sgt/io/safetensors.hpp
  sgt/io/ordered_json.hpp sgt/io/safetensors_writer.hpp sgt/io/tensor_store.hpp sgt/io/transform_input.hpp
  sgt/io/stored_tensors.hpp sgt/io/transform_output.hpp sgt/model/config_json.hpp
  sgt/model/transform.hpp sgt/model/transform_info.hpp "
json_allowed=" $(echo $json_allowed) "  # one space between names

headers=$(find sgt -name '*.hpp' | sort)
[ -n "$headers" ] || { echo "no headers under $root/sgt"; exit 2; }
fail=0
violation() { echo "LAYERING: $*"; fail=1; }

sgt_includes() { grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]sgt/[^">]+' "$1" | sed -E 's/.*[<"]//'; }
direct_json() { grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<nlohmann/' "$1"; }

# Rule 1, and the direct third-party rules.
for f in $headers; do
  [ "$f" = sgt/sgt.hpp ] && continue
  layer=$(layer_of "$f")
  for inc in $(sgt_includes "$f"); do
    [ -f "$inc" ] || violation "$f includes $inc, which does not exist"
    to=$(layer_of "$inc")
    case " ${allowed[$layer]:-} " in
      *" $to "*) ;;
      *) violation "$f includes $inc: $layer/ may include only ${allowed[$layer]:-(no rule for $layer/ yet)}" ;;
    esac
  done
  if [ "$f" != sgt/core/simd.hpp ] &&
     grep -nE '#[[:space:]]*include[[:space:]]*<(xsimd/|immintrin\.h|x86intrin\.h|arm_neon\.h)' "$f" >/dev/null; then
    violation "$f includes xsimd or intrinsics directly: SIMD goes through sgt/core/simd.hpp"
  fi
  if [ "$layer" = kernels ] || [ "$layer" = model ] || [ "$layer" = lm ] || [ "$layer" = audit ]; then
    grep -nE 'xsimd::|\b_mm[0-9]*_|\b__m(128|256|512)|\b__mmask' "$f" | head -3 |
      while IFS= read -r hit; do echo "LAYERING: $f:$hit -- use sgt::simd::*"; done | grep . && fail=1
  fi
  grep -nE '#[[:space:]]*include[[:space:]]*<Eigen/' "$f" >/dev/null &&
    violation "$f includes Eigen: the library does not depend on it (benchmarks only)"
  # The HTTP library belongs to the sgt tool's serve sources (tools/sgt/serve/): a header user
  # never needs it.
  grep -nE '#[[:space:]]*include[[:space:]]*[<"]httplib\.h' "$f" >/dev/null &&
    violation "$f includes httplib.h: the library's headers never need the HTTP library"
done

# Rule 4: the instruction-set namespace.
for f in $headers; do
  if grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"sgt/core/simd.hpp"' "$f" ||
     [[ "$f" == sgt/model/* ]] || [[ "$f" == sgt/lm/* ]] || [[ "$f" == sgt/audit/* ]] ||
     [[ "$f" == sgt/pipeline/protected_generation.hpp ]] ||
     [[ "$f" == sgt/serve/chat_protection.hpp ]] ||
     [[ "$f" == sgt/convert/make_transform.hpp ]] ||
     [ "$f" = sgt/core/simd.hpp ]; then
    [ "$f" = sgt/sgt.hpp ] && continue
    grep -q '^SGT_ISA_BEGIN$' "$f" ||
      violation "$f compiles per instruction set but never opens SGT_ISA_BEGIN (core/isa.hpp)"
  fi
  awk -v f="$f" '/^SGT_ISA_BEGIN$/ {open = 1; next} /^SGT_ISA_END$/ {open = 0; next}
    open && /^[[:space:]]*(inline[[:space:]]+)?namespace[[:space:]][^=]*\{/ {
      print "LAYERING: " f ":" NR ": a namespace declared inside SGT_ISA_BEGIN (open it innermost)"; bad = 1 }
    END {exit bad}' "$f" || fail=1
done

# Rule 3: nlohmann through any chain of sgt includes.
declare -A reaches_json=()
reach() {  # sets reaches_json[$1] to yes/no
  local f=$1
  [ -n "${reaches_json[$f]:-}" ] && return
  reaches_json[$f]=no  # cycles (none expected) end here
  if direct_json "$f"; then reaches_json[$f]=yes; return; fi
  local inc
  for inc in $(sgt_includes "$f"); do
    [ -f "$inc" ] || continue
    reach "$inc"
    if [ "${reaches_json[$inc]}" = yes ]; then reaches_json[$f]=yes; return; fi
  done
}
for f in $headers; do
  reach "$f"
  # text/ reads tokenizer.json, tokenizer_config.json and chats; lm/ and audit/ load the models
  # they run, convert/ writes config and tokenizer files, the pipelines run what they read, and
  # serve/ parses and writes the protocol's JSON: every header there may.
  if [ "${reaches_json[$f]}" = yes ] && [[ "$json_allowed" != *" $f "* ]] && [[ "$f" != sgt/text/* ]] &&
     [[ "$f" != sgt/lm/* ]] && [[ "$f" != sgt/audit/* ]] && [[ "$f" != sgt/pipeline/* ]] &&
     [[ "$f" != sgt/serve/* ]] &&
     [[ "$f" != sgt/convert/* ]]; then
    violation "$f pulls <nlohmann/json.hpp> (directly or through its includes); only JSON readers may"
  fi
done

count=$(echo "$headers" | wc -l)
if [ "$fail" -ne 0 ]; then echo "header layering: violations found in $count headers"; exit 1; fi
echo "header layering: $count headers, no violation"
