#!/usr/bin/env bash
# bench.sh — vdp against diffusers, same machine, same run (the numbers of issue #5).
#
# On a GPU machine (nvidia-smi works and ./vdp has its CUDA backend): `vdp bench --device cuda` (random
# weights of the real architectures) for the issue's three cases
#   svd_14f_576x1024_cfg         SVD, 14 frames 576x1024, classifier-free guidance, 25 steps
#   svdxt_25f_576x1024_cfg_dc8   SVD-XT, 25 frames 576x1024, CFG, 25 steps, decode chunk 8
#   seed_14f_256x256_nocfg_21st  the seed report's case: 14 frames 256x256, 21 steps, no CFG
# and, when a Python with torch + diffusers is found, bench/diffusers_yardstick.py (fp16, SDPA, eager) on
# the same cases. Without a GPU it runs a CPU comparison on the tiny test model tiny3 instead (vdp
# generate vs diffusers' StableVideoDiffusionPipeline, both fp32 on the CPU) and says so.
# Prints a table (ms/step, TFLOP/s, peak memory, end to end, ratios) and saves the JSON under
# bench/results/. Environment: PYTHON (a python with torch + diffusers), RUNS (timed UNet steps, 5),
# BENCH_CASES (GPU case names to run, space separated; default all).
set -u
cd "$(dirname "$0")"
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p bench/results
TMP=$(mktemp -d /tmp/vdp_bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
RUNS=${RUNS:-5}

# a Python with torch + diffusers for the yardstick (plain python3 for the table)
PY=
for c in ${PYTHON:-} python3; do  # PYTHON=path/to/venv/bin/python picks an environment with torch + diffusers
  { command -v "$c" >/dev/null 2>&1 || [ -x "$c" ]; } || continue
  if "$c" -c 'import torch, diffusers' >/dev/null 2>&1; then PY=$c; break; fi
done
TPY=python3
command -v python3 >/dev/null 2>&1 || TPY=${PY:-}
[ -x ./vdp ] || make -j2 >/dev/null || { echo "bench.sh: ./vdp does not build"; exit 1; }

# GPU mode: a device is visible and ./vdp has a CUDA backend (an unknown --config fails after the backend check)
MODE=cpu
if nvidia-smi -L >/dev/null 2>&1 && ! ./vdp bench --device cuda --config none 2>&1 | grep -q 'no CUDA backend'; then
  MODE=gpu
fi
echo "== bench.sh: mode $MODE, $(date -u '+%Y-%m-%d %H:%M UTC'), diffusers: ${PY:-not available (torch/diffusers not importable)}"

# run_case NAME "VDP ARGS" "DIFFUSERS ARGS": writes $TMP/NAME.vdp.json and $TMP/NAME.diffusers.json
run_gpu_case() {
  local name=$1 vargs=$2 dargs=$3
  echo "== $name: ./vdp bench --device cuda $vargs"
  # shellcheck disable=SC2086
  if ! ./vdp bench --device cuda --runs "$RUNS" $vargs >"$TMP/$name.vdp.json" 2>"$TMP/$name.vdp.log"; then
    tail -3 "$TMP/$name.vdp.log" | sed 's/^/   /'
    echo '{"error": "vdp bench failed"}' >"$TMP/$name.vdp.json"
  fi
  if [ -n "$PY" ]; then
    echo "== $name: diffusers $dargs"
    # shellcheck disable=SC2086
    if ! "$PY" bench/diffusers_yardstick.py --device cuda --runs "$RUNS" $dargs >"$TMP/$name.diffusers.json" \
        2>"$TMP/$name.diffusers.log"; then
      tail -3 "$TMP/$name.diffusers.log" | sed 's/^/   /'
      echo '{"error": "diffusers yardstick failed"}' >"$TMP/$name.diffusers.json"
    fi
    tail -1 "$TMP/$name.diffusers.json" >"$TMP/x" && mv "$TMP/x" "$TMP/$name.diffusers.json"
  fi
}

CASES=()
if [ "$MODE" = gpu ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1 | sed 's/^/== GPU: /'
  want() { [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" $1 "* ]]; }
  if want svd_14f_576x1024_cfg; then
    CASES+=(svd_14f_576x1024_cfg)
    run_gpu_case svd_14f_576x1024_cfg "--config svd --num-frames 14 --height 576 --width 1024 --cfg 1 --num-inference-steps 25" \
      "--config svd --frames 14 --height 576 --width 1024 --cfg 1 --steps 25"
  fi
  if want svdxt_25f_576x1024_cfg_dc8; then
    CASES+=(svdxt_25f_576x1024_cfg_dc8)
    run_gpu_case svdxt_25f_576x1024_cfg_dc8 "--config svd-xt --num-frames 25 --height 576 --width 1024 --cfg 1 --num-inference-steps 25 --decode-chunk-size 8" \
      "--config svd-xt --frames 25 --height 576 --width 1024 --cfg 1 --steps 25 --decode-chunk-size 8"
  fi
  if want seed_14f_256x256_nocfg_21st; then
    CASES+=(seed_14f_256x256_nocfg_21st)
    run_gpu_case seed_14f_256x256_nocfg_21st "--config svd --num-frames 14 --height 256 --width 256 --cfg 0 --num-inference-steps 21" \
      "--config svd --frames 14 --height 256 --width 256 --cfg 0 --steps 21"
  fi
else
  # CPU comparison on the tiny test model (both fp32): vdp generate vs StableVideoDiffusionPipeline
  echo "== NO GPU here: CPU comparison on the tiny test model test/data/models/tiny3 (not the issue's GPU numbers)"
  name=cpu_tiny3_14f_64x64_nocfg_21st
  CASES+=("$name")
  IMG=test/data/images/test_224x224.png
  GARGS="--height 64 --width 64 --num-frames 14 --num-inference-steps 21 --min-guidance-scale 1.0 --max-guidance-scale 1.0 --seed 0"
  ./vdp convert test/data/models/tiny3 "$TMP/tiny3.vdpw" --dtype fp32 >/dev/null 2>&1 || { echo "convert failed"; exit 1; }
  runs=3
  : >"$TMP/$name.vdp.txt"
  for r in $(seq 0 $runs); do  # run 0 is a warm-up
    # shellcheck disable=SC2086
    ./vdp generate --device cpu --model "$TMP/tiny3.vdpw" --image $IMG --out "$TMP/o.npy" $GARGS >/dev/null 2>"$TMP/gen.log" ||
      { tail -3 "$TMP/gen.log"; exit 1; }
    [ "$r" -gt 0 ] && grep -E '^vdp: load' "$TMP/gen.log" >>"$TMP/$name.vdp.txt"
  done
  # "vdp: load Ls, encode Es, decode Ds, N steps in Ss, total Ts" -> medians
  $TPY - "$TMP/$name.vdp.txt" "$GARGS" >"$TMP/$name.vdp.json" <<'PYEOF'
import json, re, sys
rows = []
for line in open(sys.argv[1]):
    m = re.search(r"load ([\d.]+)s, encode ([\d.]+)s, decode ([\d.]+)s, (\d+) steps in ([\d.]+)s.*total ([\d.]+)s", line)
    if m:
        l, e, d, n, s, t = map(float, m.groups())
        rows.append({"ms_step": s / n * 1e3, "run_s": e + d + s})
med = lambda k: sorted(r[k] for r in rows)[len(rows) // 2]
print(json.dumps({"device": "cpu", "args": sys.argv[2], "runs": len(rows), "unet_ms_per_step_median": med("ms_step"),
                  "end_to_end_s": med("run_s")}))
PYEOF
  if [ -n "$PY" ]; then
    echo "== $name: diffusers on the CPU ($PY)"
    "$PY" bench/diffusers_yardstick.py --pipeline test/data/models/tiny3 --image $IMG --device cpu --frames 14 \
      --height 64 --width 64 --steps 21 --cfg 0 --runs $runs 2>"$TMP/d.log" | tail -1 >"$TMP/$name.diffusers.json" ||
      { tail -3 "$TMP/d.log"; echo '{"error": "diffusers failed"}' >"$TMP/$name.diffusers.json"; }
  fi
fi

# one JSON with everything + the table
OUTJ=bench/results/$STAMP-$MODE.json
$TPY - "$TMP" "$MODE" "$OUTJ" "${CASES[@]}" <<'PYEOF'
import json, os, sys
tmp, mode, outj, cases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def rd(p):
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except Exception:
        return None
out = {"mode": mode, "cases": []}
for c in cases:
    out["cases"].append({"name": c, "vdp": rd(os.path.join(tmp, c + ".vdp.json")),
                         "diffusers": rd(os.path.join(tmp, c + ".diffusers.json"))})
json.dump(out, open(outj, "w"), indent=1)
def g(d, k):
    return d.get(k) if isinstance(d, dict) else None
def f(v, fmt):
    return fmt % v if isinstance(v, (int, float)) else "-"
def ratio(a, b):  # how many times faster vdp is (b / a), for times
    return "%.2fx" % (b / a) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 else "-"
print()
if mode == "cpu":
    print("CPU comparison on the tiny test model tiny3 (fp32 both; NO GPU on this machine, so these are not the")
    print("issue's GPU numbers). 'e2e' = encode + steps + decode of one video, model loading excluded.")
else:
    print("GPU: vdp (fp16, CUDA backend) vs diffusers (fp16 eager, SDPA), random weights of the real architectures.")
    print("'e2e' = CLIP + VAE encode + steps x UNet + VAE decode; speedup = diffusers time / vdp time.")
print()
hdr = "| case | vdp ms/step | diffusers ms/step | speedup | vdp TFLOP/s | diffusers TFLOP/s | vdp peak MiB | diffusers peak MiB | vdp e2e s | diffusers e2e s | e2e speedup |"
print(hdr)
print("|" + "---|" * (hdr.count("|") - 1))
for c in out["cases"]:
    v, d = c["vdp"], c["diffusers"]
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        c["name"], f(g(v, "unet_ms_per_step_median"), "%.1f"), f(g(d, "unet_ms_per_step_median"), "%.1f"),
        ratio(g(v, "unet_ms_per_step_median"), g(d, "unet_ms_per_step_median")),
        f(g(v, "unet_tflops"), "%.0f"), f(g(d, "unet_tflops"), "%.0f"),
        f(g(v, "peak_device_mib"), "%.0f"), f(g(d, "peak_device_mib"), "%.0f"),
        f(g(v, "end_to_end_s"), "%.2f"), f(g(d, "end_to_end_s") or g(d, "total_s_median"), "%.2f"),
        ratio(g(v, "end_to_end_s"), g(d, "end_to_end_s") or g(d, "total_s_median"))))
print()
print("saved:", outj)
PYEOF
