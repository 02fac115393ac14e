#!/usr/bin/env bash
# Every CUDA kernel of kernels.cu against its CPU twin on the host SIMT emulator (test/simt): the GPU test
# program test/test_gpu_kernels.cu, built by make against the emulator ($SIMT/test_gpu_kernels), runs its
# small shapes under two schedules: round-robin (a missing __syncthreads lets a thread run ahead into the
# next phase) and one-warp-at-a-time (write-after-read hazards that lock-step order hides), the second with
# the grid's blocks in reverse order (SIMT_BLOCKS=rev: a block that overwrites a neighbour's output is no
# longer repaired by the neighbour running after it). Every run has the emulator's device-memory guard
# zones (an access out of bounds of a cudaMalloc allocation stops it with the kernel, block, thread and line).
#   t_simt_kernels.sh          both schedules (make test); round-robin only in the ASan + UBSan build
#                              (SIMT=build/simt-san under SANITIZE=1: memory errors do not depend on the order)
#   t_simt_kernels.sh --tsan   round-robin only, and every ThreadSanitizer report is a failure
# Then the convolutions again with the device's opt-in shared memory set to 99 KiB (sm_86 / sm_89), where the
# implicit GEMM picks other tiles, the blocks in a shuffled order (simt[rr,smem99,random]).
# Output: the program's checks prefixed with the schedule, "ok - simt[rr] NAME ..." / "FAIL - ...".
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
BIN=$SIMT/test_gpu_kernels
simt_require "$BIN"
scheds="rr warp,rev rr,smem99,random" tsan=0
if [ "${1:-}" = --tsan ]; then scheds="rr" tsan=1; fi
case "$SIMT" in *san*) scheds="rr" ;; esac
fail=0
for s in $scheds; do
  t0=$(date +%s%N)
  args=(--small) smem="" blocks=fwd
  case "$s" in *,smem99*) args=(--small --only conv) smem=99 ;; esac
  case "$s" in *,rev*) blocks=rev ;; *,random*) blocks=random:18 ;; esac
  [ "$blocks" = fwd ] || echo "# simt[$s] SIMT_BLOCKS=$blocks"
  out=$(SIMT_SCHED=${s%%,*} SIMT_BLOCKS=$blocks SIMT_SMEM_OPTIN_KB=$smem TSAN_OPTIONS="halt_on_error=0 exitcode=0 ignore_noninstrumented_modules=1 ${TSAN_OPTIONS:-}" "$BIN" "${args[@]}" 2>&1)
  rc=$?
  t1=$(date +%s%N)
  grep -v -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | grep -v '^ok - ' | grep -v '^FAIL - ' | head -200
  sed -n -e "s/^ok - /ok - simt[$s] /p" -e "s/^FAIL - /FAIL - simt[$s] /p" <<<"$out"
  if [ $rc -ne 0 ] && ! grep -q '^FAIL - ' <<<"$out"; then
    echo "FAIL - simt[$s] test_gpu_kernels exited with status $rc (see the simt: lines above)"
  fi
  [ $rc -ne 0 ] && fail=1
  if [ $tsan = 1 ]; then
    n=$(grep -c 'WARNING: ThreadSanitizer' <<<"$out")
    if [ "$n" -gt 0 ]; then echo "FAIL - simt[$s] tsan $n ThreadSanitizer report(s) (above)"; fail=1
    else echo "ok - simt[$s] tsan no ThreadSanitizer report"; fi
  fi
  echo "# simt[$s] test_gpu_kernels ${args[*]} took $(( (t1 - t0) / 1000000 )) ms"
done
exit $fail
