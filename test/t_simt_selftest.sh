#!/usr/bin/env bash
# The SIMT emulator's own tests (test/simt/selftest.cu): the collectives against scalar references, then one
# kernel per error class the emulator must report. Each error case must exit with status 1 and print a
# "simt: error" message naming selftest.cu's line marked "planted: CASE" (for a stack overflow: the launch).
# The guard-* cases write or read out of bounds of a cudaMalloc allocation (past its 256-byte-rounded end: a
# fault, reported with the kernel, block, thread and the line of the access; inside the rounding or before
# the start: the guard pattern, found after the launch and named with the launch's line; a cudaMemcpy past
# the end; a host write into the slack, found at cudaFree). block-order: SIMT_BLOCKS=fwd, rev and random
# run a grid's blocks in that order.
set -u
cd "$(dirname "$0")/.."
SIMT=${SIMT:-build/simt}
BIN=$SIMT/simt_selftest
SRC=test/simt/selftest.cu
if [ ! -x "$BIN" ]; then echo "FAIL - simt_build $BIN is missing (make test builds it; CUDA headers needed)"; exit 1; fi
"$BIN" semantics
rc=$?
for b in fwd rev random:7; do SIMT_BLOCKS=$b "$BIN" block-order || rc=1; done
for c in deadlock divergent-barrier exit-at-barrier ldmatrix-misaligned ldmatrix-global cp-async-misaligned shfl-mask \
         smem-over-48k stack-overflow guard-write guard-read guard-slack guard-before guard-memcpy guard-free; do
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
# SIMT_GUARD=block names the block that wrote into the slack
out=$(SIMT_GUARD=block "$BIN" guard-slack 2>&1)
if grep -q 'simt: error: out-of-bounds write.*after block (2,0,0) of kernel guard_slack_kernel' <<<"$out"; then
  echo "ok - simt_selftest error_guard-slack_block names block (2,0,0) under SIMT_GUARD=block"
else
  echo "FAIL - simt_selftest error_guard-slack_block SIMT_GUARD=block did not name block (2,0,0): $(head -c 300 <<<"$out")"
  rc=1
fi
exit $rc
