#!/usr/bin/env bash
# sgt::dispatch end to end (docs/reliability.md, "Runtime dispatch"):
#  1. for every instruction set compiled into the dispatched program: forced with SGT_ISA, it runs
#     exactly when this CPU can run it, and then gives the bits of the header-only build of that
#     instruction set (f32 on the demo model, bf16 on a bf16 e2e fixture);
#     and --precision auto becomes bf16 on BF16 weights exactly where the instruction set has a
#     bf16 dot product (avx512bf16), f32 where bf16 would be emulated (docs/format.md 1.4), in the
#     dispatched program, its header-only builds and the sgt tool (SGT_TOOL) alike;
#  2. without SGT_ISA it runs the best of those; a bad SGT_ISA is an error that names the choices;
#  3. under qemu-x86_64 (when installed) with CPU models that lack AVX-512 (Haswell) or AVX
#     (Nehalem) it picks avx2 or sse2 and runs without SIGILL: no AVX-512 instruction leaks into
#     what those CPUs execute.
#
#   check_dispatch.sh DISPATCHED_PROGRAM HEADER_ONLY_PREFIX SOURCE_DIR WORK_DIR ISA...
# HEADER_ONLY_PREFIX_<isa> is the header-only build for <isa>; ISA... the compiled ones, best first.
# SGT_DISPATCH_NO_HEADER_ONLY=<why> leaves out what needs the header-only builds (the sanitizer
# builds and SGT_TEST_DISPATCH_HEADER_ONLY=OFF do not make them), SGT_DISPATCH_NO_QEMU=<why> the
# emulated CPUs.
set -uo pipefail
# The caller's SGT_ISA (a whole ctest run under SGT_ISA=avx2) must not reach the runs that test the
# automatic choice or the emulated CPUs.
unset SGT_ISA
prog=${1:?} prefix=${2:?} src=${3:?} work=${4:?}
shift 4
isas=("$@")
rm -rf "$work" && mkdir -p "$work"
fail=0
failed() { echo "FAIL: $*"; fail=1; }

cases=("$src/examples/models/demo 37 f32" "$src/tests/data/e2e/llama_gqa_llama3_bf16 45 bf16")
best=""
for isa in "${isas[@]}"; do
  if ! SGT_ISA=$isa "$prog" ${cases[0]} "$work/probe.bin" > "$work/probe.out" 2>&1; then
    grep -q "SGT_ISA=$isa: this CPU cannot run it" "$work/probe.out" ||
      failed "SGT_ISA=$isa: neither ran nor said the CPU cannot run it: $(cat "$work/probe.out")"
    echo "$isa: not runnable on this CPU (refused with a clear error)"
    continue
  fi
  [ -n "$best" ] || best=$isa
  grep -qx "kernels: $isa" "$work/probe.out" || failed "SGT_ISA=$isa ran $(cat "$work/probe.out")"
  header_only=1
  if [ -n "${SGT_DISPATCH_NO_HEADER_ONLY:-}" ]; then
    # The sanitizer builds (the dispatched runs still go through the sanitizer) and the x86-64
    # preset: the bits of the header-only builds are compared by the ci build.
    header_only=0
    echo "$isa: header-only comparison skipped: ${SGT_DISPATCH_NO_HEADER_ONLY}"
  elif [ ! -x "${prefix}_$isa" ]; then
    # tests/CMakeLists.txt builds the header-only programs of the instruction sets that the
    # configuring machine ran.
    failed "no header-only $isa program: configured on a machine that cannot run $isa? (reconfigure here)"
    continue
  fi
  for c in "${cases[@]}"; do
    tag=$(basename "$(echo "$c" | cut -d' ' -f1)")
    SGT_ISA=$isa "$prog" $c "$work/$isa.$tag.dispatched.bin" > /dev/null || failed "$isa $tag dispatched"
    [ $header_only -eq 1 ] || continue
    "${prefix}_$isa" $c "$work/$isa.$tag.header_only.bin" > "$work/ho.out" || failed "$isa $tag header-only"
    grep -qx "kernels: $isa" "$work/ho.out" || failed "header-only $isa build ran $(cat "$work/ho.out")"
    if cmp -s "$work/$isa.$tag.dispatched.bin" "$work/$isa.$tag.header_only.bin"; then
      echo "$isa $tag: dispatched == header-only ($(stat -c %s "$work/$isa.$tag.dispatched.bin") bytes)"
    else
      failed "$isa $tag: the dispatched run differs from the header-only $isa build"
    fi
  done
  # Auto precision on BF16 weights: bf16 only on the CPU's bf16 dot product.
  want=f32
  [ "$isa" != avx512bf16 ] || want=bf16
  bf16_model=$(echo "${cases[1]}" | cut -d' ' -f1)
  SGT_ISA=$isa "$prog" "$bf16_model" 8 auto "$work/auto_precision.bin" > "$work/auto.out" 2>&1
  grep -qx "precision auto: $want" "$work/auto.out" ||
    failed "SGT_ISA=$isa, auto precision on bf16 weights: expected $want, got $(cat "$work/auto.out")"
  if [ $header_only -eq 1 ]; then
    "${prefix}_$isa" "$bf16_model" 8 auto "$work/auto_precision.bin" > "$work/auto.out" 2>&1
    grep -qx "precision auto: $want" "$work/auto.out" ||
      failed "header-only $isa, auto precision on bf16 weights: expected $want," \
             "got $(cat "$work/auto.out")"
  fi
  if [ -n "${SGT_TOOL:-}" ]; then
    SGT_ISA=$isa "$SGT_TOOL" info "$src/examples/models/demo" > "$work/tool_info.out" 2>&1
    grep -q "\"precision\": \"$want\"" "$work/tool_info.out" ||
      failed "SGT_ISA=$isa sgt info: auto precision is not $want: $(cat "$work/tool_info.out")"
    SGT_ISA=$isa "$SGT_TOOL" transform "$src/examples/models/demo" --chat "$src/examples/chat.json" \
      --rng torch --seed 3 --threads 1 --output "$work/tool_auto.safetensors" > "$work/tool_auto.out" 2>&1
    grep -q "$isa, precision $want)" "$work/tool_auto.out" ||
      failed "SGT_ISA=$isa sgt transform: the summary does not say precision $want: $(cat "$work/tool_auto.out")"
  fi
  echo "$isa: auto precision on bf16 weights is $want"
done
[ -n "$best" ] || failed "no instruction set ran"
# For the record: how far apart two instruction sets are (docs/reliability.md says what differs).
lowest=${isas[${#isas[@]}-1]}
if [ -n "$best" ] && [ "$best" != "$lowest" ] && [ -f "$work/$lowest.demo.dispatched.bin" ]; then
  echo "$best vs $lowest on the demo: $(cmp -l "$work/$best.demo.dispatched.bin" "$work/$lowest.demo.dispatched.bin" | wc -l) bytes differ"
fi

out=$(env -u SGT_ISA "$prog" ${cases[0]} "$work/auto.bin" 2>&1)
[ "$out" = "kernels: $best" ] && echo "auto: $best" || failed "without SGT_ISA: '$out', expected kernels: $best"
out=$(SGT_ISA=auto "$prog" ${cases[0]} "$work/auto.bin" 2>&1)
[ "$out" = "kernels: $best" ] || failed "SGT_ISA=auto: '$out'"
out=$(SGT_ISA=avx9000 "$prog" ${cases[0]} "$work/bad.bin" 2>&1)
rc=$?
if [ $rc -eq 1 ] && [[ "$out" == *"SGT_ISA=avx9000: not an instruction set of this build (compiled: "* ]]; then
  echo "SGT_ISA=avx9000: refused"
else
  failed "SGT_ISA=avx9000: rc $rc, '$out'"
fi
[ ! -e "$work/bad.bin" ] || failed "SGT_ISA=avx9000 wrote an output"

# Emulated CPUs without AVX-512 or without AVX: the choice, and no illegal instruction.
#
# What counts as an answer from the emulated program: its exit status and output. An illegal
# instruction ends it with SIGILL (rc 132) and is a failure. SIGKILL (rc 137) is never the
# program's own doing -- no instruction raises it, and these runs use 30 MB -- but something
# outside (an OOM killer, a sandbox's process policy) stopping qemu: one CI machine did so with
# every qemu-x86_64 run while qemu-aarch64 ran the whole suite. Such a run is retried once and
# then reported as not checked, with what the machine says about it, rather than as a failure of
# the code under test; everything else still has to hold.
qemu_diagnostics() {
  echo "  qemu stderr: $(grep -v "TCG doesn.t support" "$1" | head -5 | tr '\n' ' ')"
  echo "  limits: $(ulimit -v) KiB virtual, $(ulimit -t) s CPU; memory: $(grep -E '^(MemAvailable|CommitLimit|Committed_AS)' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
  echo "  kernel log: $(dmesg 2>/dev/null | grep -iE 'kill|oom|qemu' | tail -3 | tr '\n' ' ' || true)"
}
# run_qemu ERRFILE OUTFILE CMD...: rc of CMD (retried once after SIGKILL); stdout to OUTFILE.
run_qemu() {
  local err=$1 out=$2 rc
  shift 2
  "$@" > "$out" 2> "$err"
  rc=$?
  if [ $rc -eq 137 ]; then
    sleep 2
    "$@" > "$out" 2> "$err"
    rc=$?
  fi
  return $rc
}
not_checked=0
killed_from_outside() {  # WHAT ERRFILE
  echo "NOT CHECKED: $1: qemu-x86_64 was killed from outside (SIGKILL, twice)"
  qemu_diagnostics "$2"
  not_checked=$((not_checked + 1))
}

if [ -n "${SGT_DISPATCH_NO_QEMU:-}" ]; then
  echo "emulated-CPU checks skipped: ${SGT_DISPATCH_NO_QEMU} (the plain builds run them)"
elif command -v qemu-x86_64 > /dev/null && [ "$(uname -m)" = x86_64 ]; then
  if ! run_qemu "$work/qemu.probe.err" "$work/qemu.probe.out" qemu-x86_64 -cpu Nehalem /bin/true; then
    echo "NOT CHECKED: qemu-x86_64 cannot run /bin/true on this machine: the emulated-CPU checks did not run"
    qemu_diagnostics "$work/qemu.probe.err"
    not_checked=1
  else
    for pair in Haswell:avx2 Nehalem:sse2; do
      cpu=${pair%%:*} isa=${pair##*:}
      [[ " ${isas[*]} " == *" $isa "* ]] || continue
      # (qemu warns on stderr about host features its CPU model leaves out)
      run_qemu "$work/qemu.$cpu.err" "$work/qemu.$cpu.out" \
        qemu-x86_64 -cpu "$cpu" "$prog" ${cases[0]} "$work/qemu.$cpu.bin"
      rc=$?
      out=$(cat "$work/qemu.$cpu.out")
      if [ $rc -eq 137 ]; then
        killed_from_outside "qemu -cpu $cpu" "$work/qemu.$cpu.err"
      elif [ $rc -ne 0 ] || [ "$out" != "kernels: $isa" ]; then
        failed "qemu -cpu $cpu: rc $rc, '$out' (expected kernels: $isa); $(grep -v "TCG doesn.t support" "$work/qemu.$cpu.err")"
      elif [ -f "$work/$isa.demo.header_only.bin" ] && ! cmp -s "$work/qemu.$cpu.bin" "$work/$isa.demo.header_only.bin"; then
        failed "qemu -cpu $cpu: output differs from the header-only $isa build"
      else
        echo "qemu -cpu $cpu: picked $isa, same bits as the header-only $isa build"
      fi
    done
    # The sgt tool itself (SGT_TOOL: built with sgt::dispatch), text front end and writer
    # included, on the CPU without AVX: the bits of its own sse2 kernels run natively.
    if [ -n "${SGT_TOOL:-}" ] && [[ " ${isas[*]} " == *" sse2 "* ]]; then
      args=(transform "$src/examples/models/demo" --chat "$src/examples/chat.json" --rng torch --seed 3
            --threads 2)
      SGT_ISA=sse2 "$SGT_TOOL" "${args[@]}" --output "$work/tool.native.safetensors" > /dev/null ||
        failed "SGT_ISA=sse2 sgt transform"
      run_qemu "$work/tool.qemu.err" "$work/tool.qemu.out" \
        qemu-x86_64 -cpu Nehalem "$SGT_TOOL" "${args[@]}" --output "$work/tool.qemu.safetensors"
      rc=$?
      if [ $rc -eq 137 ]; then
        killed_from_outside "qemu -cpu Nehalem sgt transform" "$work/tool.qemu.err"
      elif [ $rc -ne 0 ]; then
        failed "qemu -cpu Nehalem sgt transform: rc $rc, $(grep -v "TCG doesn.t support" "$work/tool.qemu.err")"
      elif ! grep -q "sse2, precision" "$work/tool.qemu.out"; then
        failed "qemu -cpu Nehalem sgt transform did not run sse2: $(cat "$work/tool.qemu.out")"
      elif ! cmp -s "$work/tool.native.safetensors" "$work/tool.qemu.safetensors"; then
        failed "qemu -cpu Nehalem sgt transform: output differs from SGT_ISA=sse2 natively"
      else
        echo "qemu -cpu Nehalem: sgt transform --chat ran its sse2 kernels, same file as SGT_ISA=sse2"
      fi
    fi
  fi
else
  echo "NOT CHECKED: qemu-x86_64 not installed: the emulated-CPU checks did not run"
fi

if [ $fail -eq 0 ] && [ $not_checked -eq 0 ]; then
  echo "dispatch: all checks passed"
elif [ $fail -eq 0 ]; then
  echo "dispatch: the checks that ran passed; $not_checked emulated-CPU check(s) NOT CHECKED (see above)"
fi
exit $fail
