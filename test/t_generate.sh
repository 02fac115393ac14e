#!/usr/bin/env bash
# t_generate.sh — `vdp generate` end to end on the tiny fixture:
#   1. the README's first command (PNG frames out), a repeat run byte-identical (determinism);
#   2. timestep stages: frames for S = 1, 2, 3 and an S that does not divide the steps are byte-identical
#      to the run without --stages, for K = 1 and K = 3 videos;
#   3. bad input gets a clear error and a non-zero exit, never a crash.
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
head -c 100 "$IMG" >"$tmp/trunc.png"
printf 'not an image at all' >"$tmp/garbage.png"
head -c 1000 "$M" >"$tmp/trunc.vdpw"
expect_error "--model M.vdpw is required" --image "$IMG" --out "$tmp/x.npy"
expect_error "No such file" --model "$tmp/none.vdpw" --image "$IMG" --out "$tmp/x.npy"
expect_error "trunc.vdpw" --model "$tmp/trunc.vdpw" --image "$IMG" --out "$tmp/x.npy"
expect_error "trunc.png" "${COMMON[@]}" --image "$tmp/trunc.png" --out "$tmp/x.npy"
expect_error "garbage.png" --model "$M" --image "$tmp/garbage.png" --height 32 --width 48 --out "$tmp/x.npy"
expect_error "multiples of 8" "${COMMON[@]}" --height 30 --out "$tmp/x.npy"
expect_error "--num-inference-steps abc" "${COMMON[@]}" --num-inference-steps abc --out "$tmp/x.npy"
expect_error "unknown extension" "${COMMON[@]}" --out "$tmp/x.txt"
expect_error "unknown option --bogus" "${COMMON[@]}" --bogus 1 --out "$tmp/x.npy"
expect_error "--cuda-graph maybe: expected on or off" "${COMMON[@]}" --cuda-graph maybe --out "$tmp/x.npy"
expect_error "more stages than" "${COMMON[@]}" --stages 5 --out "$tmp/x.npy"
expect_error "--device tpu" "${COMMON[@]}" --device tpu --out "$tmp/x.npy"
expect_error "it needs --device cuda" "${COMMON[@]}" --transport nccl --stages 1 --out "$tmp/x.npy"
expect_error "need --transport nccl" "${COMMON[@]}" --rank 0 --world 2 --out "$tmp/x.npy"
expect_error "--transport tcp" "${COMMON[@]}" --transport tcp --out "$tmp/x.npy"
expect_error "cannot" "${COMMON[@]}" --out /nonexistent_dir_vdp/x.npy
expect_error "--num-frames 1" "${COMMON[@]}" --num-frames 1 --out "$tmp/x.npy"  # linspace(1, 3, 1) = [1]: no guidance
expect_error "in a --world run" "${COMMON[@]}" --gpu 0 --out "$tmp/x.npy"       # would be ignored
expect_error "it needs --stages" "${COMMON[@]}" --timeout 5 --out "$tmp/x.npy"   # would be ignored
# damaged weight bytes (NaN halves in the middle of the data) are named, not turned into NaN frames
cp "$M" "$tmp/nan.vdpw"
sz=$(stat -c %s "$M")
for off in $(( (sz / 2) & ~1 )) $(( (sz / 3) & ~1 )); do
  printf '\xff\x7f' | dd of="$tmp/nan.vdpw" bs=1 seek="$off" conv=notrunc 2>/dev/null
done
expect_error "non-finite value" "${COMMON[@]}" --model "$tmp/nan.vdpw" --out "$tmp/x.npy"
expect_error "GiB of memory" "${COMMON[@]}" --height 16384 --width 16384 --num-frames 1024 --out "$tmp/x.npy"

[ $fails -eq 0 ]
