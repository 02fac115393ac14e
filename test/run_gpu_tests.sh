#!/usr/bin/env bash
# What `make test-gpu` runs: builds test/test_gpu_kernels.cu (host code only; the kernels come from
# build/rel/kernels.o, compiled by the Makefile for GPU_ARCH) against the CPU operators (ops.o, util.o),
# then runs it. Extra arguments go to the test program (--small, --only a,b, --bench).
# The binary lives in build/gpu/, outside build/rel/test/, so that the CPU suite (run_tests.sh) never
# picks it up on a machine without a GPU.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/rel}
NVCC=${NVCC:-nvcc}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
command -v "$NVCC" >/dev/null 2>&1 || NVCC=$CUDA_HOME/bin/nvcc
OUTDIR=build/gpu
mkdir -p "$OUTDIR"
for o in kernels.o ops.o util.o; do
  if [ ! -f "$BUILD/$o" ]; then
    echo "FAIL - gpu_build $BUILD/$o missing (run make with nvcc available first)"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
BIN=$OUTDIR/test_gpu_kernels
if [ ! -x "$BIN" ] || [ test/test_gpu_kernels.cu -nt "$BIN" ] || [ "$BUILD/kernels.o" -nt "$BIN" ] ||
   [ "$BUILD/ops.o" -nt "$BIN" ] || [ kernels.h -nt "$BIN" ]; then
  if ! "$NVCC" -O2 -std=c++17 -I. -o "$BIN" test/test_gpu_kernels.cu "$BUILD/kernels.o" "$BUILD/ops.o" \
      "$BUILD/util.o" -Xcompiler -fopenmp -lgomp -lnccl -lm; then
    echo "FAIL - gpu_build compiling test/test_gpu_kernels.cu"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi
exec "$BIN" "$@"
