#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for SECONDS each, two at a time, each seeded from
# tests/data (tests/fuzz/seeds.txt) in a fresh corpus folder and given its dictionary
# (tests/fuzz/<target>.dict) when there is one. Prints one line per target: executions, coverage
# (edges) and features; exits non-zero when a target finds a crash, leak, timeout or OOM (the
# reproducer and log stay in the work folder, which is printed).
#
#   cmake --preset fuzz && cmake --build --preset fuzz
#   tests/fuzz/run_fuzzers.sh build/fuzz 60              # CI's smoke run
#   tests/fuzz/run_fuzzers.sh build/fuzz 600 fuzz_config  # one target, ten minutes
#
# SGT_FUZZ_KEEP_CORPORA=DIR keeps each target's final corpus in DIR/<target>/ (what
# tools/measure_input_bounds.py replays through the sgt tool).
set -uo pipefail
build=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$build" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sgt_fuzz_run.XXXXXX")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$f" ] && [ -f "$f" ] && targets+=("$(basename "$f")")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run_fuzzers: no fuzz_* programs in $build/tests/fuzz" >&2; exit 2; }

run_one() {
  local t=$1 dir=$work/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  local pattern
  while read -r name pattern; do
    [ "$name" = "$t" ] || continue
    # shellcheck disable=SC2086  # the pattern is a glob to expand
    for s in $root/$pattern; do [ -f "$s" ] && cp "$s" "$dir/corpus/$(echo "${s#"$root"/}" | tr / _)"; done
  done < <(grep -v '^#' "$root/tests/fuzz/seeds.txt")
  local dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  (cd "$dir" && TMPDIR=$dir "$build/tests/fuzz/$t" "${dict[@]}" -max_total_time="$seconds" \
     -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
     -artifact_prefix="$dir/artifacts/" corpus > "$dir/log" 2>&1)
  local rc=$?
  local execs cov ft
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$dir/log" | grep -oE '[0-9]+$')
  cov=$(grep -oE 'cov: [0-9]+' "$dir/log" | tail -1 | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' "$dir/log" | tail -1 | grep -oE '[0-9]+')
  if [ $rc -eq 0 ]; then
    echo "$t: ok, ${execs:-?} executions in ${seconds} s, coverage ${cov:-?} edges, ${ft:-?} features, $(ls "$dir/corpus" | wc -l) corpus files"
  else
    echo "$t: FAILED (exit $rc); log and reproducer in $dir"
    grep -E '^==[0-9]+==ERROR|SUMMARY|runtime error|uncaught exception|what\(\)' "$dir/log" | head -5
  fi
  return $rc
}

status=0
pids=()
names=()
for t in "${targets[@]}"; do
  run_one "$t" > "$work/$t.summary" &
  pids+=($!)
  names+=("$t")
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || status=1
    cat "$work/${names[0]}.summary"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "$work/${names[$i]}.summary"
done
if [ -n "${SGT_FUZZ_KEEP_CORPORA:-}" ]; then
  for t in "${targets[@]}"; do
    mkdir -p "$SGT_FUZZ_KEEP_CORPORA/$t" && cp -r "$work/$t/corpus/." "$SGT_FUZZ_KEEP_CORPORA/$t/"
  done
fi
if [ $status -eq 0 ]; then rm -rf "$work"; else echo "run_fuzzers: findings kept in $work"; fi
exit $status
