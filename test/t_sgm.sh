#!/usr/bin/env bash
# t_sgm.sh — `vdp convert FILE.safetensors` (a single-file SGM checkpoint) from the command line, on
# test/data/sgm/svd_mini.safetensors and the diffusers folder of the same weights (test/data/sgm/svd_mini/,
# both from test/golden/make_golden.py):
#   1. both convert to byte-identical .vdpw files; convert prints what it inferred and what it ignored
#   2. `vdp generate` on both gives byte-identical frames
#   3. the frame-count default (file name with "xt") and --num-frames; flags that would be ignored refused
# Tensor-by-tensor comparisons, the fp32 source and the malformed files are in test/test_sgm.c.
source "$(dirname "$0")/lib.sh"
T=$tmp
SGM=test/data/sgm/svd_mini.safetensors
DIR=test/data/sgm/svd_mini

# 1. convert both
if "$VDP" convert "$SGM" "$T/sgm.vdpw" >"$T/sgm.out" 2>"$T/sgm.err" && "$VDP" convert "$DIR" "$T/dir.vdpw" >/dev/null 2>"$T/dir.err"; then
  if cmp -s "$T/sgm.vdpw" "$T/dir.vdpw"; then ok "sgm_convert_identical .vdpw from the SGM file == from the folder ($(stat -c %s "$T/sgm.vdpw") bytes)"
  else bad "sgm_convert_identical the two .vdpw files differ"; fi
  for want in "num_attention_heads \[1,1\] = channels/64" "1 heads = 64/64" "num_frames 14" "ignored: .*OpenCLIP text-tower" \
    "first_stage_model.encoder (training-time encoder" "cross_attention_dim 16 (attn2.to_k.weight)"; do
    grep -q -- "$want" "$T/sgm.err" && ok "sgm_convert_log says '$want'" || bad "sgm_convert_log lacks '$want': $(head -c 300 "$T/sgm.err")"
  done
  [ ! -s "$T/sgm.out" ] && ok "sgm_convert_stdout empty (the log is on stderr)" || bad "sgm_convert_stdout: $(head -c 200 "$T/sgm.out")"
else
  bad "sgm_convert failed: $(tail -1 "$T/sgm.err") $(tail -1 "$T/dir.err")"
fi

# 2. generate on both
ARGS=(--image test/data/images/test_32x32.png --height 32 --width 32 --num-frames 3 --num-inference-steps 2 --seed 5)
if "$VDP" generate --model "$T/sgm.vdpw" "${ARGS[@]}" --out "$T/sgm.npy" >/dev/null 2>"$T/g1.err" &&
  "$VDP" generate --model "$T/dir.vdpw" "${ARGS[@]}" --out "$T/dir.npy" >/dev/null 2>"$T/g2.err"; then
  if [ -s "$T/sgm.npy" ] && cmp -s "$T/sgm.npy" "$T/dir.npy"; then ok "sgm_generate_identical frames from both models byte-identical"
  else bad "sgm_generate_identical frames differ"; fi
else
  bad "sgm_generate failed: $(tail -1 "$T/g1.err") $(tail -1 "$T/g2.err")"
fi

# 3. frame count and flags
info_frames() { "$VDP" info "$1" | grep -o 'unet_num_frames=[0-9]*'; }
cp "$SGM" "$T/svd_mini_xt.safetensors"
"$VDP" convert "$T/svd_mini_xt.safetensors" "$T/xt.vdpw" >/dev/null 2>&1
[ "$(info_frames "$T/xt.vdpw")" = "unet_num_frames=25" ] && ok "sgm_xt_name 25 frames by default" || bad "sgm_xt_name: $(info_frames "$T/xt.vdpw")"
# "xt" counts as a word of the name only, and the log says the rule (issue 20)
cp "$SGM" "$T/svd_context_fix.safetensors"
"$VDP" convert "$T/svd_context_fix.safetensors" "$T/ctx.vdpw" >/dev/null 2>"$T/ctx.err"
[ "$(info_frames "$T/ctx.vdpw")" = "unet_num_frames=14" ] && ok "sgm_xt_word svd_context_fix: 14 frames ('xt' inside 'context' is no word)" ||
  bad "sgm_xt_word svd_context_fix: $(info_frames "$T/ctx.vdpw")"
grep -q 'does not hold the word "xt" (delimited by' "$T/ctx.err" && ok "sgm_xt_rule the log states the rule" ||
  bad "sgm_xt_rule the log does not state the rule: $(grep num_frames "$T/ctx.err" | head -c 300)"
"$VDP" convert "$T/svd_mini_xt.safetensors" "$T/nf.vdpw" --num-frames 9 >/dev/null 2>&1
[ "$(info_frames "$T/nf.vdpw")" = "unet_num_frames=9" ] && ok "sgm_num_frames_flag --num-frames 9" || bad "sgm_num_frames_flag: $(info_frames "$T/nf.vdpw")"
expect_refused() {  # name, then the command
  local name=$1
  shift
  if "$@" >"$T/r.out" 2>"$T/r.err"; then bad "$name succeeded"
  elif grep -q "error:" "$T/r.err" && [ ! -e "$T/r.vdpw" ]; then ok "$name $(head -c 160 "$T/r.err")"
  else bad "$name unclear failure: $(head -c 200 "$T/r.err")"; fi
}
expect_refused sgm_variant_refused "$VDP" convert "$SGM" "$T/r.vdpw" --variant fp16
expect_refused sgm_num_frames_folder_refused "$VDP" convert "$DIR" "$T/r.vdpw" --num-frames 9
expect_refused sgm_num_frames_zero "$VDP" convert "$SGM" "$T/r.vdpw" --num-frames 0
expect_refused sgm_not_safetensors "$VDP" convert README.md "$T/r.vdpw"
expect_refused sgm_absent "$VDP" convert "$T/absent.safetensors" "$T/r.vdpw"
[ "$fails" -eq 0 ]
