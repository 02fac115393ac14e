#!/usr/bin/env bash
# t_simt_ring.sh — `vdp generate --device cuda` over the stage ring on emulated GPUs and emulated NCCL (SIMT):
# the real kernels, the real NCCL transport of ring.c, one GPU per stage.
#   1. one process, --transport nccl --stages S on S emulated GPUs, S = 1, 2, 3, for K = 1 and 3 videos:
#      every output byte-identical to the one-GPU run without the ring (itself checked against diffusers'
#      frames by t_simt_pipeline)
#   2. two and three processes with --rank/--world/--nccl-id-file: byte-identical; no id file left
#   3. a rank killed with SIGKILL mid-run: the other ranks exit 1 within --timeout + 5 s naming the stage
#      and the cause; no orphan process, no id file or rendezvous folder left
#   4. --cfg-parallel (the two halves of guidance on two GPUs): two threads, 2 videos, and two processes from
#      torchrun's variables, byte-identical to the one-GPU run
#   5. --cfg-parallel with one half killed: the other exits 1 within --timeout + 5 s naming its half and the cause
# The case is the smallest that runs three stages with guidance: the tiny3 fixture, 16x16, one frame, 3 steps.
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
EVDP=$SIMT/vdp
simt_require "$EVDP"
export TMPDIR=$tmp OMP_WAIT_POLICY=passive
convert_tiny3
ARGS=(--model "$M" --image test/data/images/test_48x40.png --height 16 --width 16 --num-frames 1
      --num-inference-steps 3 --min-guidance-scale 2 --max-guidance-scale 3 --seed 7 --device cuda)
leftovers() { find "$tmp" -maxdepth 1 -name 'simt-nccl.*' | head -3; }
T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

same() {  # OUT-STEM K: the K outputs equal the reference's first K
  local v
  if [ "$2" = 1 ]; then cmp -s "$1.npy" "$tmp/ref_v0.npy"; return; fi
  for ((v = 0; v < $2; v++)); do cmp -s "${1}_v$v.npy" "$tmp/ref_v$v.npy" || return 1; done
}
# gen S K: generate K videos over S stages on S emulated GPUs (S = 0: the reference, one GPU, no ring)
gen() {
  local S=$1 K=$2 t; t=$(date +%s%N)
  if [ "$S" = 0 ]; then "$EVDP" generate "${ARGS[@]}" --num-videos $K --out "$tmp/ref.npy" >/dev/null 2>"$tmp/ref.err"
  else SIMT_DEVICES=$S "$EVDP" generate "${ARGS[@]}" --num-videos $K --transport nccl --stages $S \
         --out "$tmp/s${S}k$K.npy" >/dev/null 2>"$tmp/s${S}k$K.err"; fi
  echo "$? $(ms $t)" >"$tmp/s${S}k$K.rc"
}
check() {  # S K: the run's status and its outputs against the reference
  local S=$1 K=$2 rc t
  read -r rc t <"$tmp/s${S}k$K.rc"
  if [ "$rc" != 0 ]; then bad "generate --transport nccl --stages $S, $K video(s) failed: $(grep -m1 error "$tmp/s${S}k$K.err")"
  elif same "$tmp/s${S}k$K" $K; then
    ok "generate --transport nccl --stages $S on $S emulated GPUs, $K video(s): byte-identical to the one-GPU run ($t ms)"
  else bad "generate --transport nccl --stages $S, $K video(s): output differs from the one-GPU run"; fi
}

# The reference (one emulated GPU, no ring, seeds 7, 8, 9) and the one-stage runs use one core each: together.
gen 0 3 & p0=$!
gen 1 1 & p1=$!
gen 1 3 & p2=$!
wait $p0 $p1 $p2
read -r rc t <"$tmp/s0k3.rc"
[ "$rc" = 0 ] || { bad "reference run (one emulated GPU, no ring) failed: $(grep -m1 error "$tmp/ref.err")"; exit 1; }
echo "# reference, 3 videos on one emulated GPU: $t ms (beside the two one-stage runs)"

# 1. one process, S stages on S emulated GPUs
for K in 1 3; do
  for S in 1 2 3; do
    [ $S = 1 ] || gen $S $K
    check $S $K
  done
done

# 2. one stage per process
for W in 2 3; do
  t=$(date +%s%N)
  pids=()
  for ((r = 0; r < W; r++)); do
    SIMT_DEVICES=$W "$EVDP" generate "${ARGS[@]}" --transport nccl --rank $r --world $W --nccl-id-file "$tmp/id" \
      --out "$tmp/w$W.npy" >/dev/null 2>"$tmp/w$W.$r.err" &
    pids+=($!)
  done
  rcs=""
  for p in "${pids[@]}"; do wait "$p"; rcs+=" $?"; done
  if [ "$rcs" = "$(printf ' 0%.0s' $(seq $W))" ] && same "$tmp/w$W" 1 && [ ! -e "$tmp/id" ] && [ -z "$(leftovers)" ]; then
    ok "generate over $W processes (--rank/--world/--nccl-id-file): byte-identical, id file and rendezvous folder removed ($(ms $t) ms)"
  else
    bad "generate over $W processes: statuses$rcs; $(grep -h -m1 error "$tmp/w$W".*.err | head -2 | tr '\n' ' ') id file: $(ls "$tmp/id" 2>/dev/null) folders: $(leftovers)"
  fi
done

# 3. SIGKILL one of three ranks while the ring runs (once rank 0 has begun the first step; the timeout is
#    generous because three emulated processes warming up on two loaded cores can take many seconds)
t=$(date +%s%N)
pids=()
for r in 0 1 2; do
  SIMT_DEVICES=3 "$EVDP" generate "${ARGS[@]}" --num-videos 2 --transport nccl --rank $r --world 3 --nccl-id-file "$tmp/id" \
    --timeout 30 --out "$tmp/k.npy" >/dev/null 2>"$tmp/k.$r.err" &
  pids+=($!)
done
for ((i = 0; i < 1200; i++)); do grep -q "step 1/3" "$tmp/k.0.err" 2>/dev/null && break; sleep 0.1; done
t_kill=$(date +%s.%N)
kill -KILL "${pids[1]}"
rc0=0 rc2=0
wait "${pids[0]}" || rc0=$?
wait "${pids[2]}" || rc2=$?
wait "${pids[1]}" 2>/dev/null
dt=$(awk -v a="$t_kill" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
m0=$(grep -m1 'vdp: error' "$tmp/k.0.err"); m2=$(grep -m1 'vdp: error' "$tmp/k.2.err")
orphans=""
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && orphans+=" $p"; done
# (a survivor may learn it from rank 1's closed connection or from the other survivor, which aborts when it
# sees it first)
if [ $rc0 = 1 ] && [ $rc2 = 1 ] && grep -Eq "stage 0.*rank (1 closed its connection|2 aborted)" <<<"$m0" &&
   grep -Eq "stage 2.*rank (1 closed its connection|0 aborted)" <<<"$m2" && awk -v d="$dt" 'BEGIN{exit !(d < 35)}' &&
   [ -z "$orphans" ] && [ ! -e "$tmp/id" ] && [ -z "$(leftovers)" ] && ! ls "$tmp"/k*.npy >/dev/null 2>&1; then
  ok "generate, rank 1 of 3 killed with SIGKILL: ranks 0 and 2 exit 1 within $dt s (--timeout 30), no orphan, no output, nothing left: [$m0] [$m2]"
else
  bad "generate, rank 1 of 3 killed: want ranks 0 and 2 to exit 1 within 35 s naming their stage and rank 1; got $rc0/$rc2 in $dt s: [$m0] [$m2] orphans:$orphans id: $(ls "$tmp/id" 2>/dev/null) folders: $(leftovers) outputs: $(ls "$tmp"/k*.npy 2>/dev/null)"
fi
# 4. --cfg-parallel (cfgpar.h): the two halves of guidance on two emulated GPUs (two threads), 2 videos, and over
#    two processes from torchrun's variables: byte-identical to the one-GPU run; no id file left
t=$(date +%s%N)
if ! SIMT_DEVICES=2 "$EVDP" generate "${ARGS[@]}" --num-videos 2 --cfg-parallel --out "$tmp/c.npy" >/dev/null 2>"$tmp/c.err"; then
  bad "generate --cfg-parallel, 2 videos, failed: $(grep -m1 error "$tmp/c.err")"
elif same "$tmp/c" 2; then
  ok "generate --cfg-parallel on two emulated GPUs, 2 videos: byte-identical to the one-GPU run ($(ms $t) ms)"
else
  bad "generate --cfg-parallel, 2 videos: output differs from the one-GPU run"
fi
t=$(date +%s%N)
pids=()
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r SIMT_DEVICES=2 "$EVDP" generate "${ARGS[@]}" --cfg-parallel --nccl-id-file "$tmp/id" \
    --out "$tmp/w.npy" >/dev/null 2>"$tmp/w.$r.err" &
  pids+=($!)
done
rcs=""
for p in "${pids[@]}"; do wait "$p"; rcs+=" $?"; done
if [ "$rcs" = " 0 0" ] && cmp -s "$tmp/w.npy" "$tmp/ref_v0.npy" && [ ! -e "$tmp/id" ] && grep -q "from torchrun" "$tmp/w.1.err"; then
  ok "generate --cfg-parallel over two processes (torchrun's RANK/WORLD_SIZE/LOCAL_RANK): byte-identical, id file removed ($(ms $t) ms)"
else
  bad "generate --cfg-parallel over two processes: statuses$rcs; $(grep -h -m1 error "$tmp"/w.*.err | head -2 | tr '\n' ' ') id: $(ls "$tmp/id" 2>/dev/null)"
fi

# 5. --cfg-parallel: SIGKILL one half (a process) during its steps; the other must stop within --timeout + 5 s
pids=()
for r in 0 1; do
  SIMT_DEVICES=2 "$EVDP" generate "${ARGS[@]}" --num-videos 2 --cfg-parallel --rank $r --world 2 --nccl-id-file "$tmp/id" \
    --timeout 30 --out "$tmp/ck.npy" >/dev/null 2>"$tmp/ck.$r.err" &
  pids+=($!)
done
for ((i = 0; i < 1200; i++)); do grep -q "step 1/3" "$tmp/ck.0.err" 2>/dev/null && break; sleep 0.1; done
t_kill=$(date +%s.%N)
kill -KILL "${pids[1]}"
rc0=0
wait "${pids[0]}" || rc0=$?
wait "${pids[1]}" 2>/dev/null
dt=$(awk -v a="$t_kill" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
m0=$(grep -m1 'vdp: error' "$tmp/ck.0.err")
if [ $rc0 = 1 ] && grep -q "half 0 (unconditional).*rank 1 closed its connection" <<<"$m0" && awk -v d="$dt" 'BEGIN{exit !(d < 35)}' &&
   ! kill -0 "${pids[0]}" 2>/dev/null && [ ! -e "$tmp/id" ] && ! ls "$tmp"/ck*.npy >/dev/null 2>&1; then
  ok "--cfg-parallel, half 1 killed with SIGKILL: half 0 exits 1 within $dt s (--timeout 30), no output, no id file: $m0"
else
  bad "--cfg-parallel, half 1 killed: want half 0 to exit 1 within 35 s naming its half and rank 1; got $rc0 in $dt s: $m0 id: $(ls "$tmp/id" 2>/dev/null) outputs: $(ls "$tmp"/ck*.npy 2>/dev/null)"
fi
echo "# t_simt_ring total: $(ms $T0) ms"
[ "$fails" -eq 0 ]
