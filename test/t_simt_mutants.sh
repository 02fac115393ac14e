#!/usr/bin/env bash
# The emulator can fail: planted one-line kernel bugs. Each mutation below is applied to a copy of kernels.cu
# (it must match exactly one line, or the test fails: update it with the kernel), the copy is compiled by the
# emulator's compiler (-O1) and linked into test_gpu_kernels, and the affected kernels' checks must fail
# (a value check or an emulator error) under the round-robin or the one-warp-at-a-time schedule.
# Output: "ok - simt_mutant NAME caught by SCHED (...)" / "FAIL - simt_mutant NAME ...".
# Not here: block_stat's second barrier. Dropping it lets warps 1-7 read `total` before lane 0 writes it, but
# gn_stats_kernel, its only caller, uses thread 0's result only, so no value can show it (make test-simt-tsan
# reports the race).
set -u
cd "$(dirname "$0")/.."
SIMT=${SIMT:-build/simt}
if [ ! -f "$SIMT/build.env" ] || [ ! -f "$SIMT/simt.o" ] || [ ! -f "$SIMT/simt_nccl.o" ]; then
  echo "FAIL - simt_build $SIMT/build.env, $SIMT/simt.o or $SIMT/simt_nccl.o is missing (make test builds them; CUDA headers needed)"
  exit 1
fi
# shellcheck disable=SC1091
. "$SIMT/build.env"
flags=$(sed -e 's/ -O[0-3s]/ -O1/' -e 's/ -g / /' <<<" $SIMT_CXXFLAGS")
tmp=$(mktemp -d /tmp/vdp_simt_mutants_XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# name | the line: a fixed string, or a regular expression starting with ^ | sed commands from that line |
# the test_gpu_kernels --only words of the affected kernels
mutants=(
  "igemm_drop_kloop_barrier|__syncthreads();     // ... everyone's|s/__syncthreads();//|conv3x3_n2_c64,linear_odd_130"
  "igemm_cp_async_wait_1_to_2|cp_async_wait<1>();  // this thread's copies|s/cp_async_wait<1>/cp_async_wait<2>/|conv3x3_n2_c64,linear_odd_130"
  "igemm_drop_epilogue_barrier_1|^  cp_async_wait<0>();\$|n;s/__syncthreads();//|conv3x3_n2_c64,linear_odd_130"
  "flash_ldsm_x4_t_to_ldsm_x4|ldsm_x4_t(b, vb +|s/ldsm_x4_t(/ldsm_x4(/|attn_flash_hd64_odd"
  "flash_shfl_xor_lane_1_to_4|mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));|s/mx\[r\], 1)/mx[r], 4)/|attn_flash_hd64_odd"
  "flash_cp_async_wait_0_to_1|^    cp_async_wait<0>();\$|s/cp_async_wait<0>/cp_async_wait<1>/|attn_flash_hd64_odd"
  "block_stat_drop_barrier_1|if (lane == 0) part[warp] = s;|n;s/__syncthreads();//|groupnorm_silu_tiny"
)

build() {  # build NAME: compile the mutated copy and link test_gpu_kernels
  local d=$tmp/$1
  $SIMT_CXX $flags -fdata-sections -x c++ -include test/simt/simt.h -include "$SIMT/dynshared.h" -c -o "$d/body.o" \
    "$d/kernels.cu" >"$d/build.log" 2>&1 &&
    ld -r -T test/simt/shm.ld -o "$d/kernels.o" "$SIMT/shm_begin.o" "$d/body.o" "$SIMT/shm_end.o" >>"$d/build.log" 2>&1 &&
    $SIMT_CXX $flags -x c++ -o "$d/test_gpu_kernels" test/test_gpu_kernels.cu -x none "$SIMT/ops.o" "$SIMT/util.o" \
      "$d/kernels.o" "$SIMT/simt.o" "$SIMT/simt_nccl.o" $SIMT_LIBS >>"$d/build.log" 2>&1
}

ok=1
t0=$(date +%s%N)
pids=()
for m in "${mutants[@]}"; do
  IFS='|' read -r name pat cmd only <<<"$m"
  d=$tmp/$name
  mkdir -p "$d"
  if [[ "$pat" == '^'* ]]; then lines=$(grep -n -e "$pat" kernels.cu | cut -d: -f1)
  else lines=$(grep -nF -e "$pat" kernels.cu | cut -d: -f1); fi
  if [ "$(wc -w <<<"$lines")" != 1 ]; then
    echo "FAIL - simt_mutant $name the pattern '$pat' matches $(wc -w <<<"$lines") lines of kernels.cu (must be 1)"
    ok=0
    continue
  fi
  sed "${lines}{${cmd}}" kernels.cu >"$d/kernels.cu"
  if cmp -s kernels.cu "$d/kernels.cu"; then
    echo "FAIL - simt_mutant $name the edit '$cmd' at kernels.cu:$lines changed nothing"
    ok=0
    continue
  fi
  diff kernels.cu "$d/kernels.cu" | grep '^[<>]' | head -2 | sed "s/^/# $name: /"
  # at most two compilations at once (the machine's cores are shared)
  build "$name" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

for m in "${mutants[@]}"; do
  IFS='|' read -r name pat cmd only <<<"$m"
  d=$tmp/$name
  [ -f "$d/kernels.cu" ] || continue
  if [ ! -x "$d/test_gpu_kernels" ]; then
    echo "FAIL - simt_mutant $name does not compile: $(head -3 "$d/build.log" | tr '\n' ' ')"
    ok=0
    continue
  fi
  caught=""
  for s in rr warp; do
    out=$(SIMT_SCHED=$s timeout 120 "$d/test_gpu_kernels" --small --only "$only" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
      why=$(grep -m1 -E '^FAIL - |simt: error' <<<"$out" | cut -c1-150)
      caught="$s ($why)"
      break
    fi
  done
  if [ -n "$caught" ]; then echo "ok - simt_mutant $name caught by $caught"
  else echo "FAIL - simt_mutant $name not caught: every check of '$only' passed under rr and warp"; ok=0; fi
done
echo "# simt mutants: ${#mutants[@]} built and run in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
[ $ok = 1 ]
