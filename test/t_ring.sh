#!/usr/bin/env bash
# t_ring.sh — `vdp sim`, the weight-free check of the stage ring (CPU transport):
#   flags (bad ones exit 2), final latents bit-identical for every S (checksums of the bytes),
#   the throughput gain with several videos in flight, and clean, timely exits on injected faults.
# VDP=path overrides the binary (default ./vdp).
set -u
cd "$(dirname "$0")/.."
VDP=${VDP:-./vdp}
fails=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$VDP" ]; then bad "vdp binary $VDP not found (run make)"; exit 1; fi
if ! "$VDP" sim --help >"$tmp/help" 2>&1 || ! grep -q "usage: vdp sim" "$tmp/help"; then
  bad "'$VDP sim --help' does not print the sim usage: $(head -c 200 "$tmp/help")"; exit 1
fi
ok "vdp sim --help"

# 1. Bad flags: exit status 2 and a message naming the problem.
check_bad() {  # expected-substring args...
  local want=$1; shift
  "$VDP" sim "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/err"; then ok "bad flags '$*' -> exit 2"
  else bad "bad flags '$*': want exit 2 and '$want', got $rc: $(head -1 "$tmp/err")"; fi
}
check_bad "--stages needs an integer" --stages 0
check_bad "--stages needs an integer" --stages abc
check_bad "unknown option" --bogus
check_bad "--latent-shape needs" --latent-shape --stages 2
check_bad "exceeds the 28 denoising steps" --stages 29
check_bad "--transport must be" --transport tcp
check_bad "KIND:STAGE:VIDEO:STEP" --inject-fault boom
check_bad "cannot happen" --stages 3 --inject-fault error:1:0:3

# 2. The output does not depend on S: per-video checksums of the final latent bytes and norms.
run_sim() {  # out-file args...
  local out=$1; shift
  "$VDP" sim "$@" >"$out" 2>"$tmp/err" || { bad "vdp sim $* failed: $(tail -1 "$tmp/err")"; return 1; }
}
for K in 1 3; do
  run_sim "$tmp/ref" --num-videos $K || continue
  grep '^video ' "$tmp/ref" | awk '{print $1, $2, $6, $8}' >"$tmp/ref.sum"   # video N norm X checksum Y
  n=$(wc -l <"$tmp/ref.sum")
  [ "$n" -eq $K ] || bad "S=1 K=$K printed $n video lines"
  for S in 2 3 5 7; do   # 5 does not divide 28
    run_sim "$tmp/s$S" --stages $S --num-videos $K || continue
    grep '^video ' "$tmp/s$S" | awk '{print $1, $2, $6, $8}' >"$tmp/s$S.sum"
    if cmp -s "$tmp/ref.sum" "$tmp/s$S.sum"; then ok "S=$S K=$K bit-identical to S=1 ($(head -1 "$tmp/ref.sum"))"
    else bad "S=$S K=$K differs from S=1: $(diff "$tmp/ref.sum" "$tmp/s$S.sum" | head -4 | tr '\n' ' ')"; fi
  done
done
# The checksums are not blind: another seed, or one step more, changes them.
run_sim "$tmp/seed7" --seed 7 && run_sim "$tmp/steps29" --num-inference-steps 29 && {
  a=$(awk '/^video 0 /{print $8}' "$tmp/ref"); b=$(awk '/^video 0 /{print $8}' "$tmp/seed7")
  c=$(awk '/^video 0 /{print $8}' "$tmp/steps29")
  if [ -n "$a" ] && [ "$a" != "$b" ] && [ "$a" != "$c" ]; then ok "checksums change with the seed and the step count"
  else bad "checksums do not react: $a / seed 7 $b / 29 steps $c"; fi
}

# 3. Throughput: K videos over S stages vs one stage, simulated 20 ms steps (sleeps: the CI cores
#    do not limit it). Bound: 0.9 * S*K/(K+S-1).
tp() { awk '/^throughput_videos_per_s/{print $2}' "$1"; }
if run_sim "$tmp/t1" --stages 1 --num-inference-steps 12 --num-videos 6 --step-ms 20 --latent-shape 4 8 8 &&
   run_sim "$tmp/t3" --stages 3 --num-inference-steps 12 --num-videos 6 --step-ms 20 --latent-shape 4 8 8; then
  t1=$(tp "$tmp/t1"); t3=$(tp "$tmp/t3")
  h=$(awk '/^handoffs/{print $4}' "$tmp/t3")
  if awk -v a="$t1" -v b="$t3" 'BEGIN { exit !(a > 0 && b / a >= 0.9 * 3 * 6 / 8) }'; then
    ok "sim throughput S=3 K=6: $t3 videos/s vs $t1 for one stage (ratio $(awk -v a="$t1" -v b="$t3" 'BEGIN{printf "%.3f", b/a}'), bound 2.025; handoff overhead $h ms)"
  else
    bad "sim throughput S=3 K=6: $t3 videos/s vs $t1 for one stage, want ratio >= 2.025"
  fi
fi

# 4. Faults: exit status 1, an error naming the stage and the cause, well within the timeout.
check_fault() {  # name max-seconds expected-substring args...
  local name=$1 max=$2 want=$3; shift 3
  local t0; t0=$(date +%s.%N)
  "$VDP" sim "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  local msg; msg=$(grep 'vdp: error' "$tmp/err" | head -1)
  if [ $rc -eq 1 ] && grep -q -- "$want" "$tmp/err" && awk -v d="$dt" -v m="$max" 'BEGIN{exit !(d < m)}'; then
    ok "$name: exit 1 in $dt s ($msg)"
  else
    bad "$name: want exit 1 with '$want' in < $max s, got $rc in $dt s: $msg"
  fi
}
check_fault "error in a step of stage 1" 6 "stage 1: step 12 of video 0 failed" --stages 3 --num-videos 3 --timeout 5 --inject-fault error:1:0:12
check_fault "stage 2 exits" 6 "stage 2 exited unexpectedly" --stages 3 --num-videos 3 --timeout 5 --inject-fault exit:2:1:20
check_fault "stage 1 stops responding" 3 "stage 1 stopped responding" --stages 3 --num-videos 3 --timeout 2 --inject-fault hang:1:0:12

[ $fails -eq 0 ]
