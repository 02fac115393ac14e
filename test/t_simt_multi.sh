#!/usr/bin/env bash
# t_simt_multi.sh — the multi-GPU paths under the SIMT emulator, the fast part (seconds):
#   1. the emulated devices and NCCL, one semantic at a time ($SIMT/multi_selftest; planted errors exit 1)
#   2. `vdp sim --transport nccl` (the seed report's DummyUNet ring) over 1-7 emulated GPUs in one process:
#      the same final latents (norms and checksums of the bytes) as the CPU transport
#   3. the same as 2 and 3 processes with --rank/--world/--nccl-id-file: byte-identical, no id file or
#      rendezvous folder left
#   4. faults across processes: a rank killed with SIGKILL mid-run, a rank that exits early -> every other rank
#      exits non-zero within --timeout + 5 s naming the stage and the cause; no orphan process, nothing left
#   5. launchers: rank, world and GPU from Slurm / torchrun / Open MPI / MPICH-PMI variables (no flags); their
#      usage errors (exit 2); explicit flags win
# The emulated `vdp generate` over NCCL (slower) is t_simt_ring.sh.
source "$(dirname "$0")/lib.sh"
SIMT=${SIMT:-build/simt}
SELF=$SIMT/multi_selftest
EVDP=$SIMT/vdp
simt_require "$SELF" "$EVDP"
export TMPDIR=$tmp   # the emulated NCCL's rendezvous folders go here: leftovers are visible below
leftovers() { find "$tmp" -maxdepth 1 -name 'simt-nccl.*' | head -3; }

# 1. semantics and planted errors
out=$(SIMT_DEVICES=4 timeout 120 "$SELF" semantics 2>&1); rc=$?
grep -E '^(ok|FAIL) - ' <<<"$out"
[ $rc -eq 0 ] || bad "multi_selftest semantics exited with status $rc: $(grep -v '^ok' <<<"$out" | head -3)"
out=$(SIMT_DEVICES=4 SIMT_NCCL_TIMEOUT=1 timeout 60 "$SELF" deadlock 2>&1); rc=$?
grep -E '^(ok|FAIL) - ' <<<"$out"
[ $rc -eq 0 ] || bad "multi_selftest deadlock exited with status $rc"
for c in cross-device-kernel:"multi_selftest.cu:$(grep -n 'planted: cross-device-kernel' test/simt/multi_selftest.cu | cut -d: -f1)" \
         cross-device-copy:"device 1's memory and device 0 has no peer access"; do
  name=${c%%:*} want=${c#*:}
  out=$(SIMT_DEVICES=4 "$SELF" "$name" 2>&1); st=$?
  if [ $st -eq 1 ] && grep -q "simt: error" <<<"$out" && grep -qF "$want" <<<"$out"; then
    ok "multi_selftest error_$name reported: $(grep -m1 'simt: error' <<<"$out" | cut -c1-150)"
  else
    bad "multi_selftest error_$name not reported (status $st, want 1 and '$want'): $(head -c 300 <<<"$out")"
  fi
done
[ -z "$(leftovers)" ] || bad "multi_selftest left rendezvous folders: $(leftovers)"

# 2. vdp sim over emulated NCCL, one process, S = 1..7 GPUs: the CPU transport's final latents
sums() { grep '^video ' "$1" | awk '{print $1, $2, $6, $8}'; }   # video N norm X checksum Y
"$VDP" sim --num-videos 3 >"$tmp/cpu" 2>"$tmp/err" || bad "vdp sim (CPU transport) failed: $(tail -1 "$tmp/err")"
sums "$tmp/cpu" >"$tmp/cpu.sum"
t0=$(date +%s%N)
for S in 1 2 3 4 5 6 7; do
  if ! SIMT_DEVICES=$S timeout 120 "$EVDP" sim --transport nccl --stages $S --num-videos 3 >"$tmp/n$S" 2>"$tmp/err"; then
    bad "vdp sim --transport nccl --stages $S failed: $(grep -m1 error "$tmp/err")"; continue
  fi
  sums "$tmp/n$S" >"$tmp/n$S.sum"
  if [ -s "$tmp/cpu.sum" ] && cmp -s "$tmp/cpu.sum" "$tmp/n$S.sum"; then
    ok "sim --transport nccl --stages $S (emulated GPUs 0..$((S - 1))): final latents bit-identical to the CPU transport ($(head -1 "$tmp/n$S.sum"))"
  else
    bad "sim --transport nccl --stages $S differs from the CPU transport: $(diff "$tmp/cpu.sum" "$tmp/n$S.sum" | head -3 | tr '\n' ' ')"
  fi
done
echo "# sim over emulated NCCL, S = 1..7: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
if SIMT_DEVICES=2 "$EVDP" sim --transport nccl --stages 3 >"$tmp/few" 2>&1; then bad "3 stages on 2 emulated GPUs ran"
elif grep -q "3 stages need 3 GPUs, 2 visible" "$tmp/few"; then ok "3 NCCL stages on 2 emulated GPUs refused: $(grep -m1 error "$tmp/few")"
else bad "3 NCCL stages on 2 emulated GPUs: unclear error: $(head -2 "$tmp/few")"; fi

# 3. several processes: one stage each
# run_world W OUTPREFIX ARGS...: W ranks in the background, environment from $RANK_ENV_<r> if set; waits all
run_world() {
  local W=$1 pre=$2; shift 2
  local r pids=()
  for ((r = 0; r < W; r++)); do
    SIMT_DEVICES=$W "$EVDP" sim --transport nccl --rank $r --world $W --nccl-id-file "$tmp/id" "$@" \
      >"$pre.$r" 2>"$pre.$r.err" &
    pids+=($!)
  done
  echo "${pids[*]}" >"$pre.pids"
  wait_rcs=""
  for p in "${pids[@]}"; do wait "$p"; wait_rcs+=" $?"; done
}
for W in 2 3; do
  run_world $W "$tmp/w$W" --num-videos 3
  sums "$tmp/w$W.0" >"$tmp/w$W.sum"
  if [ "$wait_rcs" = "$(printf ' 0%.0s' $(seq $W))" ] && cmp -s "$tmp/cpu.sum" "$tmp/w$W.sum" && [ ! -e "$tmp/id" ] && [ -z "$(leftovers)" ]; then
    ok "sim over $W processes (--rank/--world/--nccl-id-file): bit-identical to the CPU transport, id file and rendezvous folder removed"
  else
    bad "sim over $W processes: statuses$wait_rcs, $(diff "$tmp/cpu.sum" "$tmp/w$W.sum" | head -2 | tr '\n' ' ') id file $(ls "$tmp/id" 2>/dev/null) folders $(leftovers) $(grep -h -m1 error "$tmp/w$W".*.err)"
  fi
done

# 4. faults across 3 processes (--timeout 5): each surviving rank exits 1 within 10 s naming the stage and the cause
fault_check() {  # name started-at expected-regex-in-survivors killed-rank
  local name=$1 t0=$2 want=$3 dead=$4 r all=1 msgs=""
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  set -- $wait_rcs
  for ((r = 0; r < 3; r++)); do
    local st=${1:-x}; shift
    [ $r -eq "$dead" ] && continue
    local m; m=$(grep -m1 'vdp: error' "$tmp/f.$r.err")
    msgs+=" [rank $r: $st: $m]"
    { [ "$st" = 1 ] && grep -q "stage $r" <<<"$m" && grep -Eq -- "$want" <<<"$m"; } || all=0
  done
  local orphans="" p
  for p in $(cat "$tmp/f.pids"); do kill -0 "$p" 2>/dev/null && orphans+=" $p"; done
  if [ $all = 1 ] && awk -v d="$dt" 'BEGIN{exit !(d < 10)}' && [ -z "$orphans" ] && [ ! -e "$tmp/id" ] && [ -z "$(leftovers)" ]; then
    ok "$name: the other ranks exit 1 in $dt s (--timeout 5), no orphan, nothing left:$msgs"
  else
    bad "$name: want exit 1 within 10 s naming 'stage R' and '$want', no orphans ($orphans), no id file, no folder ($(leftovers)); got $dt s:$msgs"
  fi
}
t0=$(date +%s.%N)
rm -f "$tmp/f.pids"
(sleep 1.5; [ -s "$tmp/f.pids" ] && kill -KILL "$(cut -d' ' -f2 "$tmp/f.pids")") &
killer=$!
run_world 3 "$tmp/f" --num-videos 3 --step-ms 40 --timeout 5
wait $killer
# (a survivor may learn it from the dead rank's closed connection, or from the other survivor's abort)
fault_check "rank 1 killed with SIGKILL mid-run" "$t0" "rank (1 closed its connection|[02] aborted)" 1
t0=$(date +%s.%N)
run_world 3 "$tmp/f" --num-videos 3 --step-ms 20 --timeout 5 --inject-fault exit:2:1:20
fault_check "rank 2 exits early (its stage thread returns in step 20 of video 1)" "$t0" "rank [0-2] aborted" 2

# 5. launchers: no --rank/--world; rank, world and GPU (local rank) from each launcher's variables
launch2() {  # NAME RANKVAR SIZEVAR LOCALVAR: two processes with only those variables set
  local name=$1 rv=$2 sv=$3 lv=$4 r pids=() rcs=""
  for r in 0 1; do
    env "$rv=$r" "$sv=2" "$lv=$r" SIMT_DEVICES=2 "$EVDP" sim --transport nccl --nccl-id-file "$tmp/id" --num-videos 3 \
      >"$tmp/l.$r" 2>"$tmp/l.$r.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; rcs+=" $?"; done
  sums "$tmp/l.0" >"$tmp/l.sum"
  if [ "$rcs" = " 0 0" ] && cmp -s "$tmp/cpu.sum" "$tmp/l.sum" && grep -q "rank 1 of 2 from $name ($rv=1 $sv=2 $lv=1); GPU 1" "$tmp/l.1.err"; then
    ok "launcher $name: two processes with $rv/$sv/$lv and no flags, bit-identical; rank 1 says: $(head -1 "$tmp/l.1.err")"
  else
    bad "launcher $name: statuses$rcs, $(diff "$tmp/cpu.sum" "$tmp/l.sum" | head -2 | tr '\n' ' ') stderr: $(head -2 "$tmp/l.1.err" | tr '\n' ' ')"
  fi
}
launch2 Slurm SLURM_PROCID SLURM_NTASKS SLURM_LOCALID
launch2 torchrun RANK WORLD_SIZE LOCAL_RANK
launch2 "Open MPI" OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK
launch2 MPICH/PMI PMI_RANK PMI_SIZE MPI_LOCALRANKID
launch_bad() {  # expected-substring env-assignments... -- vdp args...
  local want=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$@" >"$tmp/lb" 2>&1; local st=$?
  if [ $st -eq 2 ] && grep -q -- "$want" "$tmp/lb" && [ ! -e "$tmp/id" ]; then ok "launcher usage error (exit 2, nothing written): ${envs[*]} $(basename "$1") $2: $(grep -m1 -- "$want" "$tmp/lb" | cut -c1-140)"
  else bad "launcher ${envs[*]} $*: want exit 2 and '$want', got $st: $(head -2 "$tmp/lb" | tr '\n' ' ')"; fi
}
launch_bad "Slurm says rank 0 of 2" SLURM_PROCID=0 SLURM_NTASKS=2 RANK=1 WORLD_SIZE=2 -- "$EVDP" sim --transport nccl --nccl-id-file "$tmp/id"
launch_bad "SLURM_PROCID=2 is not below SLURM_NTASKS=2" SLURM_PROCID=2 SLURM_NTASKS=2 -- "$EVDP" sim --transport nccl --nccl-id-file "$tmp/id"
launch_bad "sets PMI_RANK but not PMI_SIZE" PMI_RANK=1 -- "$EVDP" sim --transport nccl --nccl-id-file "$tmp/id"
launch_bad "OMPI_COMM_WORLD_SIZE=two is not a valid" OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=two -- "$EVDP" generate --device cuda --transport nccl --model "$tmp/none.vdpw" --image none.png --out "$tmp/x.npy" --nccl-id-file "$tmp/id"
launch_bad "torchrun (RANK=3 WORLD_SIZE=4 LOCAL_RANK=3)" RANK=3 WORLD_SIZE=4 LOCAL_RANK=3 -- "$EVDP" generate --device cuda --transport nccl --stages 2 --model "$tmp/none.vdpw" --image none.png --out "$tmp/x.npy" --nccl-id-file "$tmp/id"
# explicit flags win over the variables (which here would say rank 5 of 9)
if SLURM_PROCID=5 SLURM_NTASKS=9 SIMT_DEVICES=1 "$EVDP" sim --transport nccl --rank 0 --world 1 --nccl-id-file "$tmp/id" >"$tmp/fl" 2>"$tmp/fl.err" &&
   ! grep -q "from Slurm" "$tmp/fl.err"; then ok "explicit --rank/--world win over SLURM_* (which say rank 5 of 9)"
else bad "explicit --rank 0 --world 1 with SLURM_PROCID=5 SLURM_NTASKS=9: $(head -2 "$tmp/fl.err" | tr '\n' ' ')"; fi
# a launcher world of one process (e.g. a plain command in an sbatch script) is an ordinary run
if SLURM_PROCID=0 SLURM_NTASKS=1 SIMT_DEVICES=2 "$EVDP" sim --transport nccl --stages 2 >"$tmp/one" 2>&1; then ok "SLURM_NTASKS=1 with --stages 2: one process drives both stages"
else bad "SLURM_NTASKS=1 with --stages 2 failed: $(grep -m1 error "$tmp/one")"; fi

[ "$fails" -eq 0 ]
