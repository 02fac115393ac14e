#!/usr/bin/env bash
# Runs every test program (build/*/test/test_*) and test script (test/t_*.sh) and sums their results.
# Protocol: each test prints one line per check, "ok - NAME ..." or "FAIL - NAME ...", and exits
# non-zero when any of its checks failed. A test that crashes counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/rel}
pass=0; fail=0
# TESTS="test_weights t_convert" limits the run to those names.
for t in "$BUILD"/test/test_* test/t_*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh)
  if [ -n "${TESTS:-}" ] && ! grep -qw -- "$name" <<<"$TESTS"; then continue; fi
  echo "== $name"
  if [[ "$t" == *.sh ]]; then out=$(BUILD=$BUILD bash "$t" 2>&1); rc=$?; else out=$("$t" 2>&1); rc=$?; fi
  echo "$out"
  p=$(grep -c '^ok - ' <<<"$out"); f=$(grep -c '^FAIL - ' <<<"$out")
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL - $name exited with status $rc"; f=1; fi
  if [ $rc -eq 0 ] && [ "$p" -eq 0 ]; then echo "FAIL - $name ran no check"; f=1; fi
  pass=$((pass + p)); fail=$((fail + f))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
