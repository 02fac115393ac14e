#!/usr/bin/env bash
# t_simt_batch.sh — batch invariance (what --cfg-parallel's byte-identity rests on): the UNet's result for a
# sample does not depend on the batch it shares, on the CUDA backend under the SIMT emulator (the real
# kernels.cu) and on the CPU backend ($SIMT/batch_invariance, test/batch_invariance.c).
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
BIN=$SIMT/batch_invariance
simt_require "$BIN"
convert_tiny3
t0=$(date +%s%N)
OMP_WAIT_POLICY=passive "$BIN" "$M" cuda cpu
rc=$?
echo "# batch_invariance took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
exit $rc
