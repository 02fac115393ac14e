#!/usr/bin/env bash
# The CUDA backend on the host SIMT emulator (test/simt) against the CPU backend and the diffusers goldens:
# test/gpu_pipeline.c built against the emulator ($SIMT/gpu_pipeline), i.e. the real kernels.cu on the CPU.
#   t_simt_pipeline.sh         (make test) every Backend op; CLIP, VAE encode, UNet and the decode on one golden
#                              case; `vdp generate --device cuda` ($SIMT/vdp) on that case, frames within the
#                              fp16 tolerance of gpu_pipeline.c, host-drawn noises bit-exact
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
t0=$(date +%s%N)
out=$(OMP_WAIT_POLICY=passive "$BIN" "${args[@]}" 2>&1)
rc=$?
t1=$(date +%s%N)
grep -v -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out"
if [ $rc -ne 0 ] && ! grep -q '^FAIL - ' <<<"$out"; then echo "FAIL - simt_pipeline gpu_pipeline exited with status $rc"; fi
echo "# simt gpu_pipeline ${args[*]} took $(( (t1 - t0) / 1000000 )) ms"
exit $rc
