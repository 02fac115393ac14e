#!/usr/bin/env bash
# The SIMT emulator's own tests (test/simt/selftest.cu): the collectives against scalar references, then one
# kernel per error class the emulator must report. Each error case must exit with status 1 and print a
# "simt: error" message naming selftest.cu's line marked "planted: CASE" (for a stack overflow: the launch).
set -u
cd "$(dirname "$0")/.."
SIMT=${SIMT:-build/simt}
BIN=$SIMT/simt_selftest
SRC=test/simt/selftest.cu
if [ ! -x "$BIN" ]; then echo "FAIL - simt_build $BIN is missing (make test builds it; CUDA headers needed)"; exit 1; fi
"$BIN" semantics
rc=$?
for c in deadlock divergent-barrier exit-at-barrier ldmatrix-misaligned ldmatrix-global cp-async-misaligned shfl-mask \
         smem-over-48k stack-overflow; do
  line=$(grep -n "planted: $c" "$SRC" | head -1 | cut -d: -f1)
  out=$("$BIN" "$c" 2>&1)
  st=$?
  msg=$(grep -m1 'simt: error' <<<"$out" | cut -c1-160)
  if [ $st -eq 1 ] && grep -q 'simt: error' <<<"$out" && grep -q "selftest.cu:$line\b" <<<"$out"; then
    echo "ok - simt_selftest error_$c reported at selftest.cu:$line: $msg"
  else
    echo "FAIL - simt_selftest error_$c not reported (status $st, expected 1 and a message naming selftest.cu:$line): $(head -c 300 <<<"$out")"
    rc=1
  fi
done
exit $rc
