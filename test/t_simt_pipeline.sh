#!/usr/bin/env bash
# The CUDA backend on the host SIMT emulator (test/simt) against the CPU backend and the diffusers goldens:
# test/gpu_pipeline.c built against the emulator ($SIMT/gpu_pipeline), i.e. the real kernels.cu on the CPU.
#   t_simt_pipeline.sh         (make test) every Backend op; CLIP, VAE encode, UNet and the decode on one golden
#                              case; `vdp generate --device cuda` ($SIMT/vdp) on that case, frames within the
#                              fp16 tolerance of gpu_pipeline.c, host-drawn noises bit-exact; then the animatelcm
#                              case lcm_3step_chunk2 in-process and through `vdp generate --device cuda`
#   t_simt_pipeline.sh --full  (make test-simt-full) everything: all golden cases, two in-process pipelines
# Output: gpu_pipeline's "ok - ..." / "FAIL - ..." lines.
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
BIN=$SIMT/gpu_pipeline
simt_require "$BIN" "$SIMT/vdp"
if [ ! -x ./vdp ]; then echo "FAIL - simt_pipeline ./vdp (model conversion) is missing"; exit 1; fi
if [ "${1:-}" = --full ]; then
  args=(--vdp "$SIMT/vdp" --profile)
else
  args=(--only ops,models,cli --case tiny3_resize --vdp "$SIMT/vdp" --profile)
fi
run() {  # gpu_pipeline args...; its lines, and a FAIL line when it exits non-zero without one
  local t0 t1 out rc
  t0=$(date +%s%N)
  out=$(OMP_WAIT_POLICY=passive "$BIN" "$@" 2>&1)
  rc=$?
  t1=$(date +%s%N)
  grep -v -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out"
  if [ $rc -ne 0 ] && ! grep -q '^FAIL - ' <<<"$out"; then echo "FAIL - simt_pipeline gpu_pipeline exited with status $rc"; fi
  echo "# simt gpu_pipeline $* took $(( (t1 - t0) / 1000000 )) ms"
  return $rc
}
run "${args[@]}"
rc=$?
# The AnimateLCM sampler on the emulated CUDA backend (swapped UNet, z drawn on the host at encode and
# uploaded once; its update kernel is checked against the CPU twin with the ops above): the pipeline
# in-process and `vdp generate --device cuda` with --cuda-graph on and off, frames within the fp16
# tolerance of diffusers', z bit-exact, no copy inside any step. (--full runs every golden case's models
# already; this case also has an odd step count and decode chunks.)
run --only pipeline,cli --case lcm_3step_chunk2 --vdp "$SIMT/vdp" --profile || rc=1

# Memory admission on a GPU backend (issue 20): the job's device share (weights + arena) against
# cudaMemGetInfo (the emulator reports the host's free memory) before anything is uploaded.
convert_tiny3
t0=$(date +%s%N)
"$SIMT/vdp" generate --device cuda --model "$M" --image test/data/images/test_48x40.png --height 16384 --width 16384 \
  --num-frames 1 --min-guidance-scale 2 --num-inference-steps 1 --out "$tmp/adm.npy" >/dev/null 2>"$tmp/adm.err"
arc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $arc -eq 1 ] && [ $ms -lt 2000 ] && grep -q "not enough GPU memory" "$tmp/adm.err" && [ ! -e "$tmp/adm.npy" ]; then
  echo "ok - simt_admission 16384^2 on the emulated GPU refused before uploading in ${ms} ms (exit 1)"
else
  echo "FAIL - simt_admission want exit 1 within 2 s and 'not enough GPU memory', got $arc in ${ms} ms: $(head -c 400 "$tmp/adm.err")"
  rc=1
fi
exit $rc
