# Shared by the CLI test scripts (sourced): pass/fail counting and the two expectations every
# command's contract is checked with. $sgt is the tool under test; runs happen in the current folder.
passed=0
failed=0
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
ok() { passed=$((passed + 1)); }

# expect_error NAME PATTERN ARGS... : non-zero exit, one stderr line matching PATTERN, no out.safetensors
expect_error() {
  local name=$1 pattern=$2
  shift 2
  rm -f out.safetensors
  "$sgt" "$@" >stdout.txt 2>stderr.txt
  local rc=$?
  local lines
  lines=$(wc -l <stderr.txt)
  if [ $rc -eq 0 ]; then
    fail "$name: exit 0"
  elif [ "$lines" -ne 1 ]; then
    fail "$name: $lines stderr lines: $(cat stderr.txt)"
  elif ! grep -qiE -- "$pattern" stderr.txt; then
    fail "$name: stderr '$(cat stderr.txt)' does not match '$pattern'"
  elif [ -e out.safetensors ] || ls out.safetensors.tmp* >/dev/null 2>&1; then
    fail "$name: an output file was left behind"
  else
    ok
  fi
}

expect_ok() {
  local name=$1
  shift
  "$sgt" "$@" >stdout.txt 2>stderr.txt || { fail "$name: exit $? $(cat stderr.txt)"; return 1; }
  ok
}
