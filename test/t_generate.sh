#!/usr/bin/env bash
# t_generate.sh — `vdp generate` end to end on the tiny fixture:
#   1. the README's first command (PNG frames out), a repeat run byte-identical (determinism);
#   2. timestep stages: frames for S = 1, 2, 3 and an S that does not divide the steps are byte-identical
#      to the run without --stages, for K = 1 and K = 3 videos;
#   3. bad input gets a clear error and a non-zero exit, never a crash;
#   4. usage errors exit 2 before any work: flags given twice (--image may repeat), --height not a multiple
#      of 8, --world/--rank checked before whether CUDA is there, names vdp could not print or cut short;
#   5. memory admission before the weights load: under a lowered RLIMIT_AS (ulimit -v) a job that does not
#      fit is refused within a second, exit 1, nothing written, naming the total, the parts, the limit and
#      what would fit; `vdp bench` checks its flags (exit 2) and admits before building random weights;
#      a failed run removes the --dump folder it created.
# VDP=path overrides the binary (default ./vdp).
source "$(dirname "$0")/lib.sh"

convert_tiny3
IMG=test/data/images/test_48x40.png
COMMON=(--model "$M" --image "$IMG" --height 32 --width 48 --num-inference-steps 4 --num-frames 3)

# 1. PNG frames, determinism
if "$VDP" generate "${COMMON[@]}" --out "$tmp/a.png" >"$tmp/a.out" 2>"$tmp/a.err"; then
  n=$(ls "$tmp"/a_*.png 2>/dev/null | wc -l)
  if [ "$n" -eq 3 ] && grep -q "a_002.png" "$tmp/a.out"; then ok "generate -> 3 PNG frames, paths on stdout"
  else bad "generate wrote $n PNG frames (want 3); stdout: $(head -c 200 "$tmp/a.out")"; fi
  grep -q "step 4/4" "$tmp/a.err" && ok "progress on stderr" || bad "no step progress on stderr"
else
  bad "generate failed: $(tail -2 "$tmp/a.err")"
fi
"$VDP" generate "${COMMON[@]}" --out "$tmp/r1.npy" >/dev/null 2>&1
"$VDP" generate "${COMMON[@]}" --out "$tmp/r2.npy" >/dev/null 2>&1
if [ -s "$tmp/r1.npy" ] && cmp -s "$tmp/r1.npy" "$tmp/r2.npy"; then ok "same seed, same bytes"
else bad "two runs with the same seed differ"; fi
"$VDP" generate "${COMMON[@]}" --seed 1 --out "$tmp/s1.npy" >/dev/null 2>&1
if [ -s "$tmp/s1.npy" ] && ! cmp -s "$tmp/r1.npy" "$tmp/s1.npy"; then ok "another seed, other frames"
else bad "seed 1 gave the same frames as seed 0 (or failed)"; fi
"$VDP" generate "${COMMON[@]}" --cuda-graph off --out "$tmp/g0.npy" >/dev/null 2>&1
if [ -s "$tmp/g0.npy" ] && cmp -s "$tmp/r1.npy" "$tmp/g0.npy"; then ok "--cuda-graph off on the CPU: same bytes (the CPU ignores it)"
else bad "--cuda-graph off changed the CPU's frames (or failed)"; fi

# 2. stages: byte-identical frames whatever S, K = 1 and 3
for K in 1 3; do
  "$VDP" generate "${COMMON[@]}" --num-videos "$K" --out "$tmp/plain_k$K.npy" >/dev/null 2>"$tmp/plain.err" ||
    bad "K=$K without --stages failed: $(tail -1 "$tmp/plain.err")"
  for S in 1 2 3 4; do  # 3 does not divide 4 steps
    if ! "$VDP" generate "${COMMON[@]}" --num-videos "$K" --stages "$S" --out "$tmp/s${S}_k$K.npy" >/dev/null 2>"$tmp/s.err"; then
      bad "K=$K --stages $S failed: $(tail -1 "$tmp/s.err")"; continue
    fi
    same=1
    for ((v = 0; v < K; v++)); do
      suf=$([ "$K" -gt 1 ] && echo "_v$v" || echo "")
      cmp -s "$tmp/plain_k$K$suf.npy" "$tmp/s${S}_k$K$suf.npy" || same=0
    done
    [ $same -eq 1 ] && ok "--stages $S, $K video(s): frames byte-identical to the plain run" ||
      bad "--stages $S, $K video(s): frames differ from the plain run"
  done
done
if [ -s "$tmp/plain_k3_v0.npy" ] && ! cmp -s "$tmp/plain_k3_v0.npy" "$tmp/plain_k3_v1.npy"; then
  ok "--num-videos: video 1 uses seed+1 (differs from video 0)"
else bad "--num-videos 3: videos 0 and 1 are identical or missing"; fi
if cmp -s "$tmp/plain_k3_v0.npy" "$tmp/r1.npy"; then ok "--num-videos: video 0 equals the single run"
else bad "--num-videos 3: video 0 differs from the single-video run"; fi

# 3. bad input: non-zero exit and a message naming the problem (never a signal)
expect_error() {  # want-substring args...
  local want=$1; shift
  "$VDP" generate "$@" >"$tmp/e.out" 2>"$tmp/e.err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q -- "$want" "$tmp/e.err"; then ok "error: $want (exit $rc)"
  else bad "generate $*: want a clean error containing '$want', got exit $rc: $(head -c 300 "$tmp/e.err")"; fi
}
# but FLAG...: ARGS = COMMON without those flags (and their values), for the cases that give them anew
# (a flag given twice is itself refused)
but() {
  ARGS=()
  local i f skip
  for ((i = 0; i < ${#COMMON[@]}; i++)); do
    skip=0
    for f in "$@"; do [ "${COMMON[i]}" = "$f" ] && skip=1; done
    if [ $skip = 1 ]; then i=$((i + 1)); else ARGS+=("${COMMON[i]}"); fi
  done
}
head -c 100 "$IMG" >"$tmp/trunc.png"
printf 'not an image at all' >"$tmp/garbage.png"
head -c 1000 "$M" >"$tmp/trunc.vdpw"
expect_error "--model M.vdpw is required" --image "$IMG" --out "$tmp/x.npy"
expect_error "No such file" --model "$tmp/none.vdpw" --image "$IMG" --out "$tmp/x.npy"
expect_error "trunc.vdpw" --model "$tmp/trunc.vdpw" --image "$IMG" --out "$tmp/x.npy"
expect_error "trunc.png" "${COMMON[@]}" --image "$tmp/trunc.png" --out "$tmp/x.npy"
expect_error "garbage.png" --model "$M" --image "$tmp/garbage.png" --height 32 --width 48 --out "$tmp/x.npy"
but --height; expect_error "multiple of 8" "${ARGS[@]}" --height 30 --out "$tmp/x.npy"
but --num-inference-steps; expect_error "--num-inference-steps abc" "${ARGS[@]}" --num-inference-steps abc --out "$tmp/x.npy"
expect_error "unknown extension" "${COMMON[@]}" --out "$tmp/x.txt"
expect_error "unknown option --bogus" "${COMMON[@]}" --bogus 1 --out "$tmp/x.npy"
expect_error "--cuda-graph maybe: expected on or off" "${COMMON[@]}" --cuda-graph maybe --out "$tmp/x.npy"
expect_error "more stages than" "${COMMON[@]}" --stages 5 --out "$tmp/x.npy"
expect_error "--device tpu" "${COMMON[@]}" --device tpu --out "$tmp/x.npy"
expect_error "it needs --device cuda" "${COMMON[@]}" --transport nccl --stages 1 --out "$tmp/x.npy"
expect_error "need --transport nccl" "${COMMON[@]}" --rank 0 --world 2 --out "$tmp/x.npy"
expect_error "--transport tcp" "${COMMON[@]}" --transport tcp --out "$tmp/x.npy"
expect_error "cannot" "${COMMON[@]}" --out /nonexistent_dir_vdp/x.npy
but --num-frames; expect_error "--num-frames 1" "${ARGS[@]}" --num-frames 1 --out "$tmp/x.npy"  # linspace(1, 3, 1) = [1]: no guidance
expect_error "in a --world run" "${COMMON[@]}" --gpu 0 --out "$tmp/x.npy"       # would be ignored
expect_error "it needs --stages" "${COMMON[@]}" --timeout 5 --out "$tmp/x.npy"   # would be ignored
# damaged weight bytes (NaN halves in the middle of the data) are named, not turned into NaN frames
cp "$M" "$tmp/nan.vdpw"
sz=$(stat -c %s "$M")
for off in $(( (sz / 2) & ~1 )) $(( (sz / 3) & ~1 )); do
  printf '\xff\x7f' | dd of="$tmp/nan.vdpw" bs=1 seek="$off" conv=notrunc 2>/dev/null
done
but --model; expect_error "non-finite value" "${ARGS[@]}" --model "$tmp/nan.vdpw" --out "$tmp/x.npy"
but --height --width --num-frames
expect_error "not enough memory" "${ARGS[@]}" --height 16384 --width 16384 --num-frames 1024 --out "$tmp/x.npy"

# 4. usage errors: exit 2, before any work (--model names a file that does not exist: it is never opened)
expect_usage() {  # want-substring args...
  local want=$1; shift
  local t0=$(date +%s%N)
  "$VDP" generate "$@" >"$tmp/u.out" 2>"$tmp/u.err"; local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/u.err" && [ ! -s "$tmp/u.out" ]; then ok "usage error (exit 2, ${ms} ms): $want"
  else bad "generate $(cut -c1-300 <<<"$*"): want exit 2 and '$want', got exit $rc: $(head -c 300 "$tmp/u.err")"; fi
}
U=(--model "$tmp/absent.vdpw" --image "$IMG" --num-inference-steps 4)
expect_usage "--out is given twice" "${U[@]}" --out "$tmp/a1.npy" --out "$tmp/b1.npy"
expect_usage "--height is given twice" "${U[@]}" --height 32 --height 64 --out "$tmp/x.npy"
expect_usage "--seed is given twice" "${U[@]}" --seed 1 --seed 1 --out "$tmp/x.npy"
expect_usage "--overwrite is given twice" "${U[@]}" --overwrite --overwrite --out "$tmp/x.npy"
expect_usage "--height 33: must be a multiple of 8" "${U[@]}" --height 33 --out "$tmp/x.npy"
expect_usage "--rank 2: must be below --world 2" "${U[@]}" --world 2 --rank 2 --device cuda --transport nccl \
  --nccl-id-file "$tmp/id" --out "$tmp/x.npy"
expect_usage "need --transport nccl" "${U[@]}" --world 2 --rank 2 --device cuda --out "$tmp/x.npy"
expect_usage "control character" "${U[@]}" --out "$tmp/new
line.npy"
expect_usage "control character" "${U[@]}" --dump "$tmp/d$(printf '\033')x" --out "$tmp/x.npy"
long=$tmp/$(printf 'd%.0s' $(seq 1 200))
while [ ${#long} -lt 4090 ]; do long=$long/$(printf 'd%.0s' $(seq 1 200)); done
long=${long:0:4089}.npy  # 4093 characters: a path alone (< 4096), not as OUT_v1.npy
expect_usage "more than a path may have" "${U[@]}" --num-videos 2 --out "$long"
[ ! -e "$tmp/a1.npy" ] && [ ! -e "$tmp/b1.npy" ] && ok "nothing written by the refused runs" || bad "a refused run wrote output"
# flags meant to repeat still do: two --image, two videos
if "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$tmp/two.npy" >"$tmp/two.out" 2>"$tmp/two.err" &&
   [ -s "$tmp/two_v0.npy" ] && [ -s "$tmp/two_v1.npy" ]; then ok "--image given twice: two videos"
else bad "--image twice failed: $(tail -1 "$tmp/two.err")"; fi

# 5. memory admission
but --height --width --num-frames
BIG=("${ARGS[@]}" --height 1024 --width 1024 --num-frames 14)
if [ "$sanitized" = 1 ]; then
  echo "ok - RLIMIT_AS admission: skipped (AddressSanitizer reserves its shadow memory up front: it cannot run under ulimit -v)"
else
  t0=$(date +%s%N)
  ( ulimit -v 1500000; exec "$VDP" generate "${BIG[@]}" --out "$tmp/big.npy" ) >"$tmp/lim.out" 2>"$tmp/lim.err"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  msg=$(cat "$tmp/lim.err")
  if [ $rc -eq 1 ] && [ $ms -lt 1000 ] && grep -q "not enough memory" <<<"$msg" && grep -q "RLIMIT_AS" <<<"$msg" &&
     grep -q "activation arena" <<<"$msg" && grep -q "would fit\|does not fit" <<<"$msg" && grep -q "Nothing was loaded" <<<"$msg"; then
    ok "ulimit -v 1.5 GB: 1024x1024, 14 frames refused before loading in ${ms} ms (exit 1), naming the limit, the parts and what fits"
  else bad "ulimit -v: want exit 1 within 1 s naming RLIMIT_AS, the arena and what fits; got exit $rc in ${ms} ms: $(head -c 600 <<<"$msg")"; fi
  [ ! -e "$tmp/big.npy" ] && [ -z "$(ls -A "$tmp" | grep '^\.big')" ] && ok "nothing written by the refused run" ||
    bad "the refused run left $(ls -A "$tmp" | grep big)"
  # what it says would fit does fit (and runs) under the same limit
  fit=$(grep -o -- "--decode-chunk-size [0-9]*\|--num-frames [0-9]* --decode-chunk-size 1" <<<"$msg" | head -1)
  but --height --width --num-frames --num-inference-steps
  SMALL=("${ARGS[@]}" --height 256 --width 256 --num-frames 3 --num-inference-steps 1)
  ( ulimit -v 1500000; exec "$VDP" generate "${SMALL[@]}" --out "$tmp/small.npy" ) >/dev/null 2>"$tmp/small.err" &&
    [ -s "$tmp/small.npy" ] && ok "a job that fits runs under the same limit" || bad "a small job under ulimit -v failed: $(tail -1 "$tmp/small.err")"
  [ -n "$fit" ] && ok "the refusal suggests: $fit" || bad "no suggestion in: $(head -c 300 <<<"$msg")"
  # vdp bench admits before building random weights (SVD's UNet alone is 5.7 GiB as held)
  t0=$(date +%s%N)
  ( ulimit -v 3000000; exec "$VDP" bench --config svd --num-frames 14 --runs 1 ) >"$tmp/bench.out" 2>"$tmp/bench.err"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $rc -eq 1 ] && [ $ms -lt 1000 ] && grep -q "not enough memory" "$tmp/bench.err" && ! grep -q "generating random" "$tmp/bench.err"; then
    ok "bench under ulimit -v 3 GB: refused in ${ms} ms before building weights (exit 1)"
  else bad "bench under ulimit -v: want exit 1 within 1 s before building; got exit $rc in ${ms} ms: $(head -c 400 "$tmp/bench.err")"; fi
fi
for args in "--config svd --height 12 --width 16 --runs 1" "--config svd --runs 1 --runs 2" "--config svdx" "--ops --height 16" \
            "--device tpu"; do
  t0=$(date +%s%N)
  "$VDP" bench $args >"$tmp/b.out" 2>"$tmp/b.err"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ $rc -eq 2 ] && [ $ms -lt 1000 ] && ok "bench $args: usage error in ${ms} ms" ||
    bad "bench $args: want exit 2 at once, got $rc in ${ms} ms: $(tail -1 "$tmp/b.err")"
done
# a failed run removes the --dump folder it created (and its files); an existing folder stays
"$VDP" generate "${COMMON[@]}" --dump "$tmp/newdump" --out /nonexistent_dir_vdp/x.npy >/dev/null 2>&1
[ ! -e "$tmp/newdump" ] && ok "--dump folder of a run refused at the output check: not left behind" || bad "the refused run left $tmp/newdump"
# a run stopped by SIGTERM once it has written dumps: the folder it created goes with them
but --num-inference-steps
"$VDP" generate "${ARGS[@]}" --num-inference-steps 60 --dump "$tmp/faildump" --out "$tmp/killed.npy" >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && [ ! -e "$tmp/faildump/latents_step_0.npy" ]; do sleep 0.1; i=$((i + 1)); done
n=$(ls "$tmp/faildump" 2>/dev/null | wc -l)
kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
if [ "$n" -gt 0 ] && [ $rc -ne 0 ] && [ ! -e "$tmp/faildump" ] && [ ! -e "$tmp/killed.npy" ]; then
  ok "a run stopped after writing $n dumps removed the --dump folder it created (exit $rc)"
else bad "stopped run (exit $rc, $n dumps seen) left: $(ls "$tmp/faildump" 2>/dev/null | wc -l) files in its new --dump folder"; fi
# a run that fails at its end (its output folder removed mid-run: the write fails, exit 1)
mkdir -p "$tmp/gone"
"$VDP" generate "${ARGS[@]}" --num-inference-steps 30 --dump "$tmp/faildump2" --out "$tmp/gone/x.npy" >/dev/null 2>"$tmp/f2.err" &
pid=$!
i=0
while [ $i -lt 300 ] && [ ! -e "$tmp/faildump2/latents_step_0.npy" ]; do sleep 0.1; i=$((i + 1)); done
rm -rf "$tmp/gone"
wait $pid; rc=$?
if [ $rc -eq 1 ] && [ ! -e "$tmp/faildump2" ]; then ok "a run that failed writing its output removed the --dump folder it created (exit 1)"
else bad "failed run (exit $rc: $(tail -1 "$tmp/f2.err")) left $(ls "$tmp/faildump2" 2>/dev/null | wc -l) files in its new --dump folder"; fi
mkdir -p "$tmp/keepdump"; echo keep >"$tmp/keepdump/mine.txt"
"$VDP" generate "${COMMON[@]}" --overwrite --dump "$tmp/keepdump" --out /nonexistent_dir_vdp/x.npy >/dev/null 2>&1
[ -f "$tmp/keepdump/mine.txt" ] && ok "an existing --dump folder and its files stay" || bad "an existing --dump folder was touched"

[ $fails -eq 0 ]
