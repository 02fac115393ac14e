#!/usr/bin/env bash
# t_lcm.sh — AnimateLCM-SVD-xt through the CLI (the numbers against diffusers are test_golden's; the UNet swap's
# tensor checks are test_sgm's):
#   1. vdp convert --unet --sampler animatelcm: the sampler recorded (vdp info); usage errors exit 2, a wrong
#      --unet file exits 1 before anything is written
#   2. generate takes the file's sampler and its defaults (4 steps, guidance 1.0 -> 1.2); --sampler overrides;
#      more than 40 steps is a usage error (exit 2) before the weights load (generate and bench)
#   3. the stage ring: S = 1, 2, 3 byte-identical to the plain loop (each stage continues the one stream);
#      several videos: video k is the single video of seed s + k
source "$(dirname "$0")/lib.sh"
BASE=test/data/sgm/svd_mini
UNET=test/data/models/svd_mini_lcm_unet.safetensors
IMG=test/data/images/test_32x32.png
L=$tmp/lcm.vdpw

# 1. convert
if ! "$VDP" convert $BASE "$L" --unet $UNET --sampler animatelcm --dtype fp32 >/dev/null 2>"$tmp/conv.err"; then
  bad "convert --unet --sampler animatelcm: $(tail -1 "$tmp/conv.err")"; exit 1
fi
grep -q "replace the base's UNet; sampler recorded: animatelcm" "$tmp/conv.err" && ok "convert --unet says what it did" ||
  bad "convert --unet progress line: $(cat "$tmp/conv.err" | head -5)"
if "$VDP" info "$L" | grep -q "^  sched_sampler=1 " && "$VDP" info "$L" | grep -q "^sampler: animatelcm"; then
  ok "vdp info shows the sampler: animatelcm (sched_sampler=1)"
else bad "vdp info: $("$VDP" info "$L" | grep sampler)"; fi
"$VDP" convert $BASE "$tmp/base.vdpw" >/dev/null 2>&1 && "$VDP" info "$tmp/base.vdpw" | grep -q "^sampler: euler" &&
  ok "vdp info: a plain convert records euler" || bad "plain convert's sampler: $("$VDP" info "$tmp/base.vdpw" | grep sampler)"

expect_rc() {  # want-rc want-substring command...
  local want=$1 sub=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq "$want" ] && grep -q -- "$sub" "$tmp/err"; then ok "exit $want: ${*:2:12}"
  else bad "want exit $want and '$sub' from '$*', got $rc: $(head -c 300 "$tmp/err")"; fi
}
expect_rc 2 "--sampler must be euler or animatelcm" "$VDP" convert $BASE "$tmp/x.vdpw" --sampler lcm
expect_rc 2 "needs a value" "$VDP" convert $BASE "$tmp/x.vdpw" --unet
expect_rc 1 "looks like a VAE" "$VDP" convert $BASE "$tmp/x.vdpw" --unet $BASE/vae/diffusion_pytorch_model.fp16.safetensors
expect_rc 1 "with the wrong shape" "$VDP" convert $BASE "$tmp/x.vdpw" --unet test/data/models/tiny/unet/diffusion_pytorch_model.fp16.safetensors
[ -e "$tmp/x.vdpw" ] && bad "a refused convert left $tmp/x.vdpw" || ok "refused converts wrote nothing"
cp $UNET "$tmp/u.safetensors"  # the --unet file is one of convert's inputs: never its output, even with --overwrite
expect_rc 1 "is the same file as the input" "$VDP" convert $BASE "$tmp/u.safetensors" --unet "$tmp/u.safetensors" --overwrite
cmp -s $UNET "$tmp/u.safetensors" && ok "--unet file untouched" || bad "convert wrote over its --unet file"
expect_rc 2 "given twice" "$VDP" convert $BASE "$tmp/x.vdpw" --unet $UNET --unet $UNET

# 2. generate: the file's sampler and its defaults, --sampler overrides, the step limit
gen() {  # stderr-file args... (a small video: 2 frames of 32x32)
  local e=$1; shift
  "$VDP" generate --model "$L" --image $IMG --height 32 --width 32 --num-frames 2 "$@" 2>"$e"
}
gen "$tmp/g1.err" --out "$tmp/g1.npy" >/dev/null &&
  grep -q "animatelcm sampler, 4 steps, guidance on" "$tmp/g1.err" && grep -q "^step 4/4" "$tmp/g1.err" &&
  ok "generate uses the file's sampler: animatelcm, 4 steps, guidance on (1.0 -> 1.2)" ||
  bad "generate defaults with the animatelcm file: $(head -3 "$tmp/g1.err")"
gen "$tmp/g2.err" --out "$tmp/g2.npy" --sampler euler --num-inference-steps 3 >/dev/null &&
  grep -q "euler sampler, 3 steps" "$tmp/g2.err" && ! cmp -s "$tmp/g1.npy" "$tmp/g2.npy" &&
  ok "--sampler euler overrides the file's sampler" || bad "--sampler euler: $(head -3 "$tmp/g2.err")"
gen "$tmp/g3.err" --out "$tmp/g3.npy" --max-guidance-scale 1.0 >/dev/null &&
  grep -q "animatelcm sampler, 4 steps, guidance off" "$tmp/g3.err" && ok "--max-guidance-scale 1.0 turns guidance off" ||
  bad "guidance off: $(head -3 "$tmp/g3.err")"
expect_rc 2 "at most 40 steps" gen "$tmp/err" --out "$tmp/e.npy" --num-inference-steps 41
expect_rc 2 "at most 40 steps" "$VDP" generate --model "$L" --image $IMG --out "$tmp/e.npy" --sampler animatelcm --num-inference-steps 41
expect_rc 2 "expected euler or animatelcm" "$VDP" generate --model "$L" --image $IMG --out "$tmp/e.npy" --sampler ddim
expect_rc 2 "more stages than the 4 steps" gen "$tmp/err" --out "$tmp/e.npy" --stages 5
[ -e "$tmp/e.npy" ] && bad "a usage error left an output" || ok "usage errors wrote nothing"

expect_rc 2 "expected euler or animatelcm" "$VDP" bench --sampler ddim
expect_rc 2 "takes at most 40 steps" "$VDP" bench --sampler animatelcm --num-inference-steps 41

# 3. the ring: byte-identical for every S; several videos = seed s + k
gen "$tmp/r.err" --out "$tmp/ref.npy" --seed 5 >/dev/null || bad "plain run: $(tail -1 "$tmp/r.err")"
for S in 1 2 3; do
  if gen "$tmp/s.err" --out "$tmp/s$S.npy" --seed 5 --stages $S >/dev/null && cmp -s "$tmp/ref.npy" "$tmp/s$S.npy"; then
    ok "animatelcm --stages $S byte-identical to the plain loop"
  else bad "animatelcm --stages $S differs from the plain loop (or failed: $(tail -1 "$tmp/s.err"))"; fi
done
gen "$tmp/k.err" --out "$tmp/k.npy" --seed 4 --num-videos 3 --stages 2 >/dev/null || bad "3 videos: $(tail -1 "$tmp/k.err")"
gen "$tmp/k6.err" --out "$tmp/k6.npy" --seed 6 >/dev/null || bad "seed 6: $(tail -1 "$tmp/k6.err")"
if cmp -s "$tmp/k_v1.npy" "$tmp/ref.npy" && cmp -s "$tmp/k_v2.npy" "$tmp/k6.npy" && ! cmp -s "$tmp/k_v0.npy" "$tmp/ref.npy"; then
  ok "--num-videos 3 --seed 4 --stages 2: videos 1 and 2 are the single videos of seeds 5 and 6"
else bad "several videos: video k is not the video of seed s + k"; fi
[ "$fails" -eq 0 ]
