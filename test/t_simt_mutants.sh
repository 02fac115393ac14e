#!/usr/bin/env bash
# The emulator can fail: planted one-line kernel bugs. Each mutation below is applied to a copy of kernels.cu
# (it must match exactly one line, or the test fails: update it with the kernel), the copy is compiled by the
# emulator's compiler (-O1) and linked into test_gpu_kernels, and the affected kernels' checks must fail
# (a value check or an emulator error) under the round-robin schedule with the blocks in reverse order, or
# the one-warp-at-a-time schedule with the blocks in order.
# The first seven are synchronisation bugs; the rest are the bugs random inputs hid (a block reduction
# that drops its last warp, a split reduction that drops its split index, eps outside the square root, a
# variance divided by n − 1, a key mask off by one) or that only a crash showed (writes past the end of
# an output): test_gpu_kernels' structured inputs ("struct" / "negative" checks) and the emulator's
# guard zones must catch each well above the tolerance.
# Output: "ok - simt_mutant NAME caught by SCHED,BLOCKS (the first failure); worst: the largest error of
# the checks run" / "FAIL - simt_mutant NAME ...".
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
  "igemm_drop_cout_guard|^    if (oy >= p.HO .. ox >= p.WO .. co >= p.cout) continue;\$|s/ .. co >= p.cout//|conv3x3_odd,conv1x1_odd"
  "block_stat_drop_last_warp|Stat t = lane < (int)(blockDim.x >> 5) ? part[lane]|s/(int)(blockDim.x >> 5)/(int)(blockDim.x >> 5) - 1/|groupnorm_struct"
  "gn_stats_drop_split_index|part[((long long)row * groups + g) * gridDim.x + split] = s;|s/ + split\]/]/|groupnorm_struct"
  "gn_apply_drop_split_index|s = stat_combine(s, part[(((long long)video * nf + f) * groups + g) * splits + sp]);|s/ + sp\]/]/|groupnorm_struct"
  "gn_eps_outside_sqrt|sh_rstd = 1.0f / sqrtf(s.m2 / s.n + eps);|s#sqrtf(s.m2 / s.n + eps)#(sqrtf(s.m2 / s.n) + eps)#|groupnorm_struct"
  "gn_variance_n_minus_1|sh_rstd = 1.0f / sqrtf(s.m2 / s.n + eps);|s#s.m2 / s.n#s.m2 / (s.n - 1.f)#|groupnorm_struct"
  "ln_eps_outside_sqrt|const float rstd = 1.0f / sqrtf(ss / C + eps);|s#sqrtf(ss / C + eps)#(sqrtf(ss / C) + eps)#|layernorm_struct"
  "ln_variance_c_minus_1|const float rstd = 1.0f / sqrtf(ss / C + eps);|s#ss / C#ss / (C - 1)#|layernorm_struct"
  "flash_key_mask_off_by_one|s[i][e] = key < p.lk ? s[i][e] * sl2 : -INFINITY;|s/key < p.lk/key <= p.lk/|attn_flash_negative"
  "flash_store_row_lq|const int rl = k * 4 + (lane >> 3), row = q0 + warp * 16 + rl, c = (lane & 7) * 8;|n;s/row < p.lq/row <= p.lq/|attn_flash_negative,attn_flash_hd64_odd"
  "attn_warp_one_key_too_many|const int kc = min(KC, p.lk - k0);|s/p.lk - k0)/p.lk - k0 + 1)/|attn_warp_negative"
)

# MUTANTS=word,word: only the mutants whose name contains one of the words (while working on one kernel)
if [ -n "${MUTANTS:-}" ]; then
  keep=()
  for m in "${mutants[@]}"; do
    for w in ${MUTANTS//,/ }; do [[ "${m%%|*}" == *"$w"* ]] && { keep+=("$m"); break; }; done
  done
  mutants=("${keep[@]}")
fi
# the schedules each mutant runs under (SIMT_SCHED, then the block order SIMT_BLOCKS), until one catches it
runs="rr,rev warp,fwd"
blocks_of() { case "$1" in *,*) echo "${1#*,}" ;; *) echo fwd ;; esac; }
# the largest error of the checks run (the measure beside the tolerance), or what failed without one
worst_err() {
  awk '/^(ok|FAIL) - / && match($0, /err=[-+.0-9eE]+/) {
         e = substr($0, RSTART + 4, RLENGTH - 4) + 0; if (e > m || n == "") { m = e; n = $3 } }
       /^FAIL - / && /non-finite/ && nf == "" { nf = $3 }
       /simt: error/ && se == "" { se = $0 }
       END { s = (n == "") ? "no err= line" : sprintf("err=%.3g in %s", m, n)
             if (nf != "") s = s "; non-finite output in " nf
             if (se != "") s = s "; " substr(se, 1, 110)
             print s }'
}

build() {  # build NAME: compile the mutated copy and link test_gpu_kernels
  local d=$tmp/$1
  $SIMT_CXX $flags -fdata-sections -x c++ -include test/simt/simt.h -include "$SIMT/dynshared.h" -c -o "$d/body.o" \
    "$d/kernels.cu" >"$d/build.log" 2>&1 &&
    ld -r -T test/simt/shm.ld -o "$d/kernels.o" "$SIMT/shm_begin.o" "$d/body.o" "$SIMT/shm_end.o" >>"$d/build.log" 2>&1 &&
    $SIMT_CXX -o "$d/test_gpu_kernels" "$tmp/test_gpu_kernels.o" "$SIMT/ops.o" "$SIMT/util.o" "$d/kernels.o" \
      "$SIMT/simt.o" "$SIMT/simt_nccl.o" $SIMT_LIBS >>"$d/build.log" 2>&1
}

ok=1
t0=$(date +%s%N)
# the test program, compiled once for all mutants
if ! $SIMT_CXX $flags -x c++ -c -o "$tmp/test_gpu_kernels.o" test/test_gpu_kernels.cu >"$tmp/test.log" 2>&1; then
  echo "FAIL - simt_mutant test_gpu_kernels.cu does not compile: $(head -3 "$tmp/test.log" | tr '\n' ' ')"
  exit 1
fi
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
  caught="" worst=""
  for s in $runs; do
    out=$(SIMT_SCHED=${s%%,*} SIMT_BLOCKS=$(blocks_of "$s") timeout 120 "$d/test_gpu_kernels" --small --only "$only" 2>&1)
    rc=$?
    worst=$(worst_err <<<"$out")
    if [ $rc -ne 0 ]; then
      why=$(grep -m1 -E '^FAIL - |simt: error' <<<"$out" | cut -c1-150)
      [ -n "$why" ] || why="exit status $rc: $(tail -1 <<<"$out" | cut -c1-100)"
      caught="$s ($why)"
      break
    fi
  done
  if [ -n "$caught" ]; then echo "ok - simt_mutant $name caught by $caught; worst: $worst"
  else echo "FAIL - simt_mutant $name not caught: every check of '$only' passed under $runs; worst: $worst"; ok=0; fi
done
echo "# simt mutants: ${#mutants[@]} built and run in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# The step graph's planted bug: a per-step scalar passed by value inside the captured step. The UNet's
# timestep becomes a host-computed address (row host_step of the step table) instead of the row the device
# counter names: right when every step is launched anew (--cuda-graph off), frozen at the captured step's
# value when the graph replays. t_simt_pipeline's check (a) — `generate --device cuda` with --cuda-graph on
# and off byte-identical — must catch it; here on a smaller tiny3 video (2 frames 32x32, 2 steps, CFG) to
# keep CI short.
t1=$(date +%s%N)
name=step_timestep_by_value
pat='st->sched + SCH_T, st->ids, st->step,'
d=$tmp/$name
mkdir -p "$d"
lines=$(grep -nF -e "$pat" model.c | cut -d: -f1)
if [ "$(wc -w <<<"$lines")" != 1 ]; then
  echo "FAIL - simt_mutant $name the pattern '$pat' matches $(wc -w <<<"$lines") lines of model.c (must be 1)"
  ok=0
else
  sed "${lines}s/st->sched + SCH_T, st->ids, st->step,/st->sched + (int64_t)st->host_step * SCH_COLS + SCH_T, st->ids, NULL,/" \
    model.c >"$d/model.c"
  diff model.c "$d/model.c" | grep '^[<>]' | head -2 | sed "s/^/# $name: /"
  objs=()
  for src in $SIMT_LIB_SRC vdp.c; do [ "$src" = model.c ] || objs+=("$SIMT/${src%.c}.o"); done
  # shellcheck disable=SC2086
  if ! $SIMT_CC $SIMT_CFLAGS -I. -c -o "$d/model.o" "$d/model.c" >"$d/build.log" 2>&1 ||
     ! $SIMT_CC -o "$d/vdp" "${objs[@]}" "$d/model.o" "$SIMT/kernels.o" "$SIMT/simt.o" "$SIMT/simt_nccl.o" $SIMT_LIBS >>"$d/build.log" 2>&1; then
    echo "FAIL - simt_mutant $name does not build: $(head -3 "$d/build.log" | tr '\n' ' ')"
    ok=0
  elif ! ./vdp convert test/data/models/tiny3 "$d/tiny3.vdpw" >"$d/conv.log" 2>&1; then
    echo "FAIL - simt_mutant $name: converting tiny3 failed: $(tail -1 "$d/conv.log")"
    ok=0
  else
    gen_ok=1
    for g in on off; do
      OMP_WAIT_POLICY=passive timeout 600 "$d/vdp" generate --device cuda --model "$d/tiny3.vdpw" \
        --image test/data/images/test_32x32.png --height 32 --width 32 --num-frames 2 --num-inference-steps 2 \
        --min-guidance-scale 1.5 --max-guidance-scale 2.5 --seed 3 --cuda-graph $g --out "$d/frames_$g.npy" \
        >"$d/gen_$g.log" 2>&1 || gen_ok=0
    done
    if [ $gen_ok = 0 ]; then
      echo "FAIL - simt_mutant $name: the mutated vdp failed to run ($(tail -1 "$d/gen_on.log"; tail -1 "$d/gen_off.log"))"
      ok=0
    elif cmp -s "$d/frames_on.npy" "$d/frames_off.npy"; then
      echo "FAIL - simt_mutant $name not caught: frames with --cuda-graph on and off are byte-identical"
      ok=0
    else
      echo "ok - simt_mutant $name caught by generate --cuda-graph on vs off ($(cmp "$d/frames_on.npy" "$d/frames_off.npy" | head -1 | sed 's|.*/||'))"
    fi
  fi
fi
echo "# simt step-graph mutant built and run in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
[ $ok = 1 ]
