#!/usr/bin/env bash
# What `make test-gpu` runs (on a machine with a GPU):
#   1. build/gpu/test_gpu_kernels: every CUDA kernel against its CPU twin (test/test_gpu_kernels.cu; host
#      code only, the kernels come from $BUILD/kernels.o, compiled by the Makefile for GPU_ARCH)
#   2. build/gpu/gpu_pipeline: the CUDA Backend table and the whole model graph against the CPU backend
#      and the diffusers goldens, plus `./vdp generate --device cuda` end to end (test/gpu_pipeline.c)
# Arguments go to test_gpu_kernels (--small, --only a,b, --bench); with --bench only that one runs.
# PIPELINE_ARGS goes to gpu_pipeline (e.g. PIPELINE_ARGS=--emulate checks it without a GPU).
# The binaries live in build/gpu/, outside build/rel/test/, so that the CPU suite (run_tests.sh) never
# picks them up on a machine without a GPU. Prints "N passed, N failed" over both; exit 1 on failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/rel}
NVCC=${NVCC:-nvcc}
CC=${CC:-gcc}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
command -v "$NVCC" >/dev/null 2>&1 || NVCC=$CUDA_HOME/bin/nvcc
OUTDIR=build/gpu
mkdir -p "$OUTDIR"
LIB_OBJ=$(for s in $(sed -n 's/^LIB_SRC *= *//p' Makefile); do echo "$BUILD/${s%.c}.o"; done)
for o in $BUILD/kernels.o $LIB_OBJ; do
  if [ ! -f "$o" ]; then
    echo "FAIL - gpu_build $o missing (run make with nvcc available first)"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
newer() {  # newer BIN FILES...: is any file newer than BIN (or BIN missing)?
  local bin=$1; shift
  [ -x "$bin" ] || return 0
  for f in "$@"; do [ "$f" -nt "$bin" ] && return 0; done
  return 1
}

pass=0 fail=0
tally() {  # tally LOG RC: add the program's "N passed, N failed" (or one failure if it has none)
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -n "$line" ]; then
    pass=$((pass + $(echo "$line" | awk '{print $1}'))) fail=$((fail + $(echo "$line" | awk '{print $3}')))
  else
    fail=$((fail + 1))
  fi
  [ "$2" -eq 0 ] || [ -n "$line" ] || echo "FAIL - $(basename "$1" .log) exited with status $2 and no summary"
}

# 1. kernels
BIN=$OUTDIR/test_gpu_kernels
if newer "$BIN" test/test_gpu_kernels.cu "$BUILD/kernels.o" "$BUILD/ops.o" kernels.h vdp.h; then
  if ! "$NVCC" -O2 -std=c++17 -I. -o "$BIN" test/test_gpu_kernels.cu "$BUILD/kernels.o" "$BUILD/ops.o" \
      "$BUILD/util.o" -Xcompiler -fopenmp -lgomp -lnccl -lm; then
    echo "FAIL - gpu_build compiling test/test_gpu_kernels.cu"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi
for a in "$@"; do [ "$a" = --bench ] && exec "$BIN" "$@"; done
LOG1=$OUTDIR/test_gpu_kernels.log
"$BIN" "$@" 2>&1 | tee "$LOG1"
tally "$LOG1" "${PIPESTATUS[0]}"

# 2. the Backend table and the pipeline (needs ./vdp for convert / generate)
PBIN=$OUTDIR/gpu_pipeline
if newer "$PBIN" test/gpu_pipeline.c test/golden.h "$BUILD/kernels.o" $LIB_OBJ kernels.h model.h vdp.h; then
  if ! "$CC" -std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fopenmp -D_GNU_SOURCE -I. \
      -o "$PBIN" test/gpu_pipeline.c $LIB_OBJ "$BUILD/kernels.o" -L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" \
      -lcudart -lnccl -lstdc++ -lpng -ljpeg -lm -lpthread; then
    echo "FAIL - gpu_build compiling test/gpu_pipeline.c"
    fail=$((fail + 1))
  fi
fi
if [ -x "$PBIN" ]; then
  LOG2=$OUTDIR/gpu_pipeline.log
  # shellcheck disable=SC2086
  "$PBIN" ${PIPELINE_ARGS:-} 2>&1 | tee "$LOG2"
  tally "$LOG2" "${PIPESTATUS[0]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
