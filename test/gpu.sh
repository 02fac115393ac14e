#!/usr/bin/env bash
# test/gpu.sh — everything the CUDA backend needs checked on a GPU machine, in one run (< 6 min on an H100):
#   1. build ./vdp for this GPU's architecture (nvidia-smi compute_cap -> make GPU_ARCH=..)
#   2. ldd ./vdp: libcudart and libnccl resolve
#   3. make test-gpu: every kernel against its CPU twin (test/test_gpu_kernels.cu), then the CUDA Backend
#      table + model graph vs the CPU backend and diffusers, and `vdp generate --device cuda` (test/gpu_pipeline.c)
#   4. compute-sanitizer: memcheck on all kernels (small shapes), racecheck on attention and norms
#   5. timings at the full SVD shapes (+ a device-to-device copy as the bandwidth yardstick), and one
#      `vdp bench --device cuda` (SVD, 14 frames 576x1024, CFG: UNet ms/step, components, peak memory)
#   5c. the NCCL transport of the stage ring with S = 1 (generate and sim) against the plain / CPU runs
#   6. a report in $OUT/gpu-report.md (default ./out), and a short table printed last
# Exit status: 0 when every step passed, 1 otherwise (the timing targets are reported, not enforced).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
REPORT=$OUT/gpu-report.md
T0=$(date +%s)
status=0
declare -a STEPS=()
note() { STEPS+=("| $1 | $2 |"); echo "== $1: $2"; }

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
[ -n "$cc" ] || cc=90
echo "== GPU: ${gpu:-unknown} (sm_$cc)"

# 1. build (falls back to the objects the GPU test needs if the full program does not link yet)
if timeout 150 make -j"$(nproc)" GPU_ARCH="$cc" >"$OUT/build.log" 2>&1; then
  note build "ok (make GPU_ARCH=$cc)"
else
  status=1
  tail -20 "$OUT/build.log"
  if timeout 120 make -j"$(nproc)" GPU_ARCH="$cc" build/rel/kernels.o build/rel/ops.o build/rel/util.o \
      >>"$OUT/build.log" 2>&1; then
    note build "FAIL for ./vdp (see build.log); kernels.o, ops.o, util.o built"
  else
    note build "FAIL (see build.log)"
  fi
fi

# 2. link check
if [ -x ./vdp ]; then
  ldd ./vdp | grep -E 'cudart|nccl|not found' | sed 's/^/   /'
  if ldd ./vdp | grep -q 'not found'; then note ldd "FAIL: unresolved libraries"; status=1
  elif ! ldd ./vdp | grep -q libcudart || ! ldd ./vdp | grep -q libnccl; then note ldd "FAIL: cudart/nccl not linked"; status=1
  else note ldd "ok (cudart + nccl resolve)"; fi
else
  note ldd "FAIL: no ./vdp"; status=1
fi

# 3. kernel tests (also builds build/gpu/test_gpu_kernels)
BIN=build/gpu/test_gpu_kernels
if [ -x ./vdp ]; then TESTCMD=(make --no-print-directory test-gpu GPU_ARCH="$cc"); else TESTCMD=(bash test/run_gpu_tests.sh); fi
timeout 240 "${TESTCMD[@]}" 2>&1 | tee "$OUT/test-gpu.log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/test-gpu.log" | tail -1)
if [ "$rc" -eq 0 ]; then note test-gpu "ok: $summary"; else note test-gpu "FAIL (rc $rc): ${summary:-no summary}"; status=1; fi
for part in test_gpu_kernels gpu_pipeline; do  # the per-program summaries (run_gpu_tests.sh keeps their logs)
  [ -f "build/gpu/$part.log" ] && cp "build/gpu/$part.log" "$OUT/" &&
    note "  $part" "$(grep -E '^[0-9]+ passed, [0-9]+ failed' "build/gpu/$part.log" | tail -1)"
done

# 4. compute-sanitizer
CS=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [ -n "$CS" ] || { [ -x "$c" ] && CS=$c; }
done
if [ -z "$CS" ] || [ ! -x "$BIN" ]; then
  note sanitizer "FAIL: compute-sanitizer or $BIN missing"; status=1
else
  timeout 100 "$CS" --tool memcheck --error-exitcode 9 "$BIN" --small >"$OUT/memcheck.log" 2>&1
  rc=$?
  tail -3 "$OUT/memcheck.log" | sed 's/^/   /'
  if [ $rc -eq 0 ]; then note memcheck "ok ($(grep -c '^ok - ' "$OUT/memcheck.log") checks, no errors)"
  else note memcheck "FAIL (rc $rc, see memcheck.log)"; status=1; fi
  timeout 80 "$CS" --tool racecheck --error-exitcode 9 "$BIN" --small --only attn,groupnorm,layernorm,cross \
    >"$OUT/racecheck.log" 2>&1
  rc=$?
  tail -3 "$OUT/racecheck.log" | sed 's/^/   /'
  if [ $rc -eq 0 ]; then note racecheck "ok ($(grep -c '^ok - ' "$OUT/racecheck.log") checks, no hazards)"
  else note racecheck "FAIL (rc $rc, see racecheck.log)"; status=1; fi
fi

# 5. timings
if [ -x "$BIN" ]; then
  timeout 120 "$BIN" --bench 2>&1 | tee "$OUT/bench.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] && note bench ok || { note bench "FAIL (see bench.log)"; status=1; }
fi
# 5b. the whole CUDA pipeline at the SVD shape (random weights): one JSON line
if [ -x ./vdp ]; then
  timeout 240 ./vdp bench --device cuda --config svd --num-frames 14 --height 576 --width 1024 --cfg 1 --runs 3 \
    >"$OUT/vdp-bench.json" 2>"$OUT/vdp-bench.log"
  rc=$?
  if [ $rc -eq 0 ] && [ -s "$OUT/vdp-bench.json" ]; then
    e2e=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("UNet %.1f ms/step (%.0f TFLOP/s), CLIP %.1f ms, encode %.1f ms, decode %.0f ms, 25-step e2e %.2f s, peak %.0f MiB" % (d["unet_ms_per_step_median"], d["unet_tflops"], d["clip_ms"], d["vae_encode_ms"], d["vae_decode_ms"], d["end_to_end_s"], d["peak_device_mib"]))' "$OUT/vdp-bench.json" 2>/dev/null || head -c 300 "$OUT/vdp-bench.json")
    note vdp-bench "ok: $e2e"
  else
    tail -5 "$OUT/vdp-bench.log" | sed 's/^/   /'
    note vdp-bench "FAIL (rc $rc, see vdp-bench.log)"; status=1
  fi
fi
# 5c. the stage ring's NCCL transport with S = 1 (a send and a receive to itself: all one GPU allows) must
#     give the same frames as the plain CUDA run, and `vdp sim` over NCCL the same latents as over threads
if [ -x ./vdp ]; then
  R=$OUT/ring; mkdir -p "$R"
  G=(--model "$R/tiny3.vdpw" --image test/data/images/test_48x40.png --height 32 --width 48 --num-inference-steps 4 --device cuda)
  if ./vdp convert test/data/models/tiny3 "$R/tiny3.vdpw" >/dev/null 2>&1 &&
     timeout 120 ./vdp generate "${G[@]}" --num-videos 2 --out "$R/plain.npy" >/dev/null 2>"$R/plain.log" &&
     timeout 120 ./vdp generate "${G[@]}" --num-videos 2 --transport nccl --stages 1 --out "$R/nccl.npy" >/dev/null 2>"$R/nccl.log" &&
     cmp -s "$R/plain_v0.npy" "$R/nccl_v0.npy" && cmp -s "$R/plain_v1.npy" "$R/nccl_v1.npy"; then
    note nccl-generate "ok: --transport nccl --stages 1 frames byte-identical to the plain CUDA run"
  else
    tail -3 "$R/nccl.log" "$R/plain.log" 2>/dev/null | sed 's/^/   /'
    note nccl-generate "FAIL (see $R/*.log)"; status=1
  fi
  timeout 60 ./vdp sim --transport cpu --num-videos 3 2>/dev/null | grep '^video' >"$R/sim-cpu.txt"
  timeout 60 ./vdp sim --transport nccl --num-videos 3 2>"$R/sim-nccl.log" | grep '^video' >"$R/sim-nccl.txt"
  if [ -s "$R/sim-cpu.txt" ] && diff <(sed 's/latency.*//' "$R/sim-cpu.txt") <(sed 's/latency.*//' "$R/sim-nccl.txt") >/dev/null; then
    note nccl-sim "ok: vdp sim over NCCL (S=1) = over threads"
  else
    note nccl-sim "FAIL (see $R/sim-nccl.log)"; status=1
  fi
  # 5d. two GPUs or more: the real multi-GPU paths the emulator stands in for in CI (t_simt_ring.sh)
  ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
  if [ "$ngpu" -ge 2 ]; then
    for mode in "--transport nccl --stages 2" "--cfg-parallel"; do
      if timeout 120 ./vdp generate "${G[@]}" --num-videos 2 $mode --out "$R/multi.npy" >/dev/null 2>"$R/multi.log" &&
         cmp -s "$R/plain_v0.npy" "$R/multi_v0.npy" && cmp -s "$R/plain_v1.npy" "$R/multi_v1.npy"; then
        note multi-gpu "ok: $mode on $ngpu GPUs: frames byte-identical to the one-GPU run ($(grep -o 'steps in [0-9.]*s' "$R/multi.log"))"
      else
        tail -3 "$R/multi.log" | sed 's/^/   /'
        note multi-gpu "FAIL: $mode (see $R/multi.log)"; status=1
      fi
      rm -f "$R"/multi*.npy
    done
  else
    note multi-gpu "skipped: one GPU (stages over NCCL and --cfg-parallel need two)"
  fi
  rm -f "$R/tiny3.vdpw" "$R"/*.npy
fi
copy=$(awk '/^bench d2d_copy/{for(i=1;i<=NF;i++) if($i ~ /^gbs=/){sub("gbs=","",$i); print $i}}' "$OUT/bench.log" 2>/dev/null)
table=$(awk -v copy="${copy:-0}" '
  /^bench /{
    name=$2; ms=""; tf=""; gb="";
    for(i=3;i<=NF;i++){ split($i,kv,"="); if(kv[1]=="ms") ms=kv[2]; if(kv[1]=="tflops") tf=kv[2]; if(kv[1]=="gbs") gb=kv[2]; }
    rate = tf!="" ? tf " TFLOP/s" : gb " GB/s";
    target="";
    if (name ~ /^conv3x3_c320/) target = (tf+0 >= 250 ? "met" : "MISSED") " (>= 250 TFLOP/s)";
    if (name ~ /^flash_attn/) target = (tf+0 >= 250 ? "met" : "MISSED") " (>= 250 TFLOP/s)";
    if (name ~ /^groupnorm_silu/ && copy+0 > 0) target = sprintf("%s (%.0f%% of copy, >= 60%%)", (gb/copy >= 0.6 ? "met" : "MISSED"), 100*gb/copy);
    printf("| %s | %s | %s | %s |\n", name, ms, rate, target);
  }' "$OUT/bench.log" 2>/dev/null)

# 6. report
{
  echo "# vdp GPU report"
  echo
  echo "- GPU: ${gpu:-unknown} (sm_$cc)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- $(nvcc --version 2>/dev/null | grep release | sed 's/.*release/CUDA release/')"
  echo "- wall time of this script: $(( $(date +%s) - T0 )) s"
  echo
  echo "| step | result |"
  echo "|---|---|"
  printf '%s\n' "${STEPS[@]}"
  echo
  grep -E '^FAIL - ' "$OUT/test-gpu.log" 2>/dev/null | sed 's/^/    /' | head -40
  echo
  echo "Kernel timings (full SVD shapes; GB/s = copy-equivalent bytes (read + write once) / time):"
  echo
  echo "| kernel | ms | rate | target (H100) |"
  echo "|---|---|---|---|"
  echo "$table"
} >"$REPORT"

# The device tool brings back at most 8 files from $OUT: keep the report loose, pack every log into one archive.
(cd "$OUT" && find . -mindepth 1 ! -name gpu-report.md ! -name logs.tgz -print0 | tar czf logs.tgz --null -T - 2>/dev/null &&
  find . -mindepth 1 ! -name gpu-report.md ! -name logs.tgz -delete 2>/dev/null)

echo
echo "== report: $REPORT ($(( $(date +%s) - T0 )) s)"
printf '%s\n' "${STEPS[@]}"
echo "| kernel | ms | rate | target (H100) |"
echo "$table"
exit $status
