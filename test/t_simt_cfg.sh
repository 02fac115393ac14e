#!/usr/bin/env bash
# t_simt_cfg.sh — CFG-parallel (--cfg-parallel: the two halves of guidance on two GPUs) under the SIMT emulator:
#   1. batch invariance, what its byte-identity rests on: the UNet's result for a sample does not depend on
#      the batch it shares, on the emulated CUDA backend (the real kernels.cu) and the CPU backend
#      ($SIMT/batch_invariance: B = 2 halves against B = 1 passes, bit for bit)
#   2. refusals (exit 2): guidance off, fewer than two GPUs, with --stages, a world of three, the CPU
# The runs of --cfg-parallel (byte-identical to one GPU, two processes, a killed half) are in t_simt_ring.sh,
# which has the reference run they compare with.
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
BIN=$SIMT/batch_invariance
EVDP=$SIMT/vdp
simt_require "$BIN" "$EVDP"
export TMPDIR=$tmp OMP_WAIT_POLICY=passive
convert_tiny3
T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# 1. batch invariance
t=$(date +%s%N)
"$BIN" "$M" cuda cpu || true
echo "# batch_invariance took $(ms $t) ms"

ARGS=(--model "$M" --image test/data/images/test_48x40.png --height 16 --width 16 --num-frames 1
      --num-inference-steps 3 --seed 7)
DEFAULTS=(--min-guidance-scale 2 --max-guidance-scale 3 --device cuda)  # unless the case gives its own
# 2. refusals
refuse() {  # expected-substring devices args...
  local want=$1 dev=$2; shift 2
  local extra=() k  # the defaults the case does not set (a flag given twice is a usage error of its own)
  for ((k = 0; k < ${#DEFAULTS[@]}; k += 2)); do
    [[ " $* " == *" ${DEFAULTS[k]} "* ]] || extra+=("${DEFAULTS[k]}" "${DEFAULTS[k + 1]}")
  done
  SIMT_DEVICES=$dev "$EVDP" generate "${ARGS[@]}" "${extra[@]}" --cfg-parallel --out "$tmp/x.npy" "$@" >"$tmp/r" 2>&1; local st=$?
  if [ $st = 2 ] && grep -q -- "$want" "$tmp/r" && [ ! -e "$tmp/x.npy" ]; then ok "--cfg-parallel $* on $dev GPU(s) refused (exit 2): $(grep -m1 error "$tmp/r" | cut -c1-120)"
  else bad "--cfg-parallel $* on $dev GPU(s): want exit 2 and '$want', got $st: $(head -1 "$tmp/r")"; fi
}
refuse "guidance is off" 2 --min-guidance-scale 1 --max-guidance-scale 1
refuse "needs two GPUs, 1 visible" 1
refuse "with --stages is not supported" 2 --stages 2
refuse "the two halves of guidance are two processes: --world 2" 2 --rank 0 --world 3 --nccl-id-file "$tmp/id"
refuse "--cfg-parallel puts the two halves of guidance on two GPUs: it needs --device cuda" 2 --device cpu

echo "# t_simt_cfg total: $(ms $T0) ms"
[ "$fails" -eq 0 ]
