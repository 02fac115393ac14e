#!/usr/bin/env bash
# bench.sh — vdp against diffusers, same machine, same run (the numbers of issue #5).
#
# On a GPU machine (nvidia-smi works and ./vdp has its CUDA backend): `vdp bench --device cuda` (random
# weights of the real architectures) for the issue's three cases
#   svd_14f_576x1024_cfg         SVD, 14 frames 576x1024, classifier-free guidance, 25 steps
#   svdxt_25f_576x1024_cfg_dc8   SVD-XT, 25 frames 576x1024, CFG, 25 steps, decode chunk 8
#   seed_14f_256x256_nocfg_21st  the seed report's case: 14 frames 256x256, 21 steps, no CFG
# and, when a Python with torch + diffusers is found, bench/diffusers_yardstick.py (fp16, SDPA, eager) on
# the same cases.
#
# Without a GPU (CPU mode, one command: `bash bench.sh`), fp32 on the CPU, vdp and torch alternating:
#   unet_svd_14f_128x128_nocfg, unet_svd_14f_256x256_nocfg   the SVD-config UNet step, random weights:
#       `vdp bench` vs diffusers' UNetSpatioTemporalConditionModel (diffusers_yardstick.py --unet-only)
#   ops                             `vdp bench --ops` vs bench/torch_ops.py (the same operator cases)
#   cpu_tiny3_14f_64x64_nocfg_21st  vdp generate vs StableVideoDiffusionPipeline on the tiny test model
# with min and median over ROUNDS alternating processes and /proc/loadavg recorded around each one.
# Prints a table and saves one JSON under bench/results/ (the machine's CPU name included).
# Environment: PYTHON (a python with torch + diffusers; default: venv/bin/python in this checkout, then
# ../venv/bin/python beside it, then python3), RUNS (timed UNet steps per GPU case, operator runs per
# process; 5), BENCH_CASES (case names to run, space separated; default all), and in CPU mode ROUNDS (3),
# RUNS_PER_ROUND (timed UNet steps per process, 1), SIZES ("128 256").
set -u
cd "$(dirname "$0")"
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p bench/results
TMP=$(mktemp -d /tmp/vdp_bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
RUNS=${RUNS:-5}

# a Python with torch + diffusers for the yardstick (plain python3 for the table)
PY=
for c in ${PYTHON:-} venv/bin/python ../venv/bin/python python3; do  # PYTHON=path/to/python picks one explicitly
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
  # ---------------------------------------------------------------------------------------------- CPU
  # The SVD-config UNet step (random weights, 14 frames, no CFG) at 128x128 and 256x256, vdp against
  # diffusers' UNetSpatioTemporalConditionModel (fp32, torch's own threads), and the operator cases of
  # `vdp bench --ops` against bench/torch_ops.py. vdp and torch alternate, ROUNDS times each (every
  # round = one process: setup, one warm-up step, RUNS_PER_ROUND timed steps); /proc/loadavg is recorded
  # with every run, since a busy machine makes wall-clock times meaningless. One JSON under bench/results/.
  ROUNDS=${ROUNDS:-3}
  RUNS_PER_ROUND=${RUNS_PER_ROUND:-1}
  SIZES=${SIZES:-128 256}
  [ -n "$PY" ] || echo "== no Python with torch + diffusers (set PYTHON=/work/venv/bin/python): vdp only"
  want() { [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" $1 "* ]]; }
  load() { cut -d' ' -f1-3 /proc/loadavg; }
  : >"$TMP/runs.jsonl"
  # record KIND CASE ROUND FILE LOAD_BEFORE: one line of runs.jsonl from the last line of FILE
  record() {
    $TPY - "$@" "$(load)" >>"$TMP/runs.jsonl" <<'PYEOF'
import json, sys
kind, case, rnd, path, before, after = sys.argv[1:7]
try:
    text = open(path).read().strip()
    try:
        d = json.loads(text)  # vdp bench --ops: one JSON object over several lines
    except ValueError:
        d = json.loads(text.splitlines()[-1])  # the others: the last line
except Exception:
    d = {"error": "no JSON (see the log beside it)"}
print(json.dumps({"impl": kind, "case": case, "round": int(rnd), "loadavg_before": before, "loadavg_after": after,
                  "result": d}))
PYEOF
  }
  if want ops; then
    for r in $(seq 1 "$ROUNDS"); do
      echo "== ops round $r/$ROUNDS: vdp bench --ops (load $(load))"
      l0=$(load)
      ./vdp bench --ops --runs "$RUNS" >"$TMP/ops.vdp.$r.json" 2>"$TMP/ops.vdp.$r.log" || tail -3 "$TMP/ops.vdp.$r.log"
      record vdp ops "$r" "$TMP/ops.vdp.$r.json" "$l0"
      if [ -n "$PY" ]; then
        echo "== ops round $r/$ROUNDS: bench/torch_ops.py (load $(load))"
        l0=$(load)
        "$PY" bench/torch_ops.py --runs "$RUNS" >"$TMP/ops.torch.$r.json" 2>"$TMP/ops.torch.$r.log" ||
          tail -3 "$TMP/ops.torch.$r.log"
        record torch ops "$r" "$TMP/ops.torch.$r.json" "$l0"
      fi
    done
  fi
  for S in $SIZES; do
    name=unet_svd_14f_${S}x${S}_nocfg
    want "$name" || continue
    for r in $(seq 1 "$ROUNDS"); do
      echo "== $name round $r/$ROUNDS: vdp bench (load $(load))"
      l0=$(load)
      ./vdp bench --config svd --num-frames 14 --height "$S" --width "$S" --cfg 0 --runs "$RUNS_PER_ROUND" \
        >"$TMP/$name.vdp.$r.json" 2>"$TMP/$name.vdp.$r.log" || tail -3 "$TMP/$name.vdp.$r.log"
      record vdp "$name" "$r" "$TMP/$name.vdp.$r.json" "$l0"
      if [ -n "$PY" ]; then
        echo "== $name round $r/$ROUNDS: diffusers UNetSpatioTemporalConditionModel (load $(load))"
        l0=$(load)
        "$PY" bench/diffusers_yardstick.py --device cpu --config svd --frames 14 --height "$S" --width "$S" --cfg 0 \
          --unet-only --no-flops --warmup 1 --runs "$RUNS_PER_ROUND" >"$TMP/$name.torch.$r.json" 2>"$TMP/$name.torch.$r.log" ||
          tail -3 "$TMP/$name.torch.$r.log"
        record torch "$name" "$r" "$TMP/$name.torch.$r.json" "$l0"
      fi
    done
  done
  OUTJ=bench/results/$STAMP-cpu.json
  REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD -- '*.c' '*.h' 2>/dev/null || REV="$REV+uncommitted"
  $TPY - "$TMP/runs.jsonl" "$OUTJ" "$ROUNDS" "$RUNS_PER_ROUND" "$RUNS" "$REV" <<'PYEOF'
import json, os, platform, sys
runs_path, outj, rounds, per_round, op_runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rev = sys.argv[6]
rows = [json.loads(l) for l in open(runs_path) if l.strip()]
def cpu_name():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return platform.processor()
def med(v):
    v = sorted(v)
    return None if not v else v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
out = {"mode": "cpu", "vdp_commit": rev, "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "memory_gib": round(mem_gib, 1),
                                  "kernel": platform.release()},
       "conditions": "vdp and torch alternate, %d rounds (one process each: setup, a warm-up step, %d timed); "
                     "operator cases: %d timed runs per process; loadavg (1, 5, 15 min) recorded around every "
                     "process. Wall-clock times: only comparable where the load was low." % (rounds, per_round, op_runs),
       "unet": [], "ops": [], "runs": rows}
cases = sorted({r["case"] for r in rows if r["case"] != "ops"})
for c in cases:
    entry = {"case": c}
    for impl in ("vdp", "torch"):
        ms, loads = [], []
        for r in rows:
            if r["case"] != c or r["impl"] != impl:
                continue
            d = r["result"]
            ms += d.get("unet_ms_per_step_runs") or ([d["unet_ms_per_step_min"]] if per_round == 1 and "unet_ms_per_step_min" in d else [])
            if impl == "vdp" and per_round > 1 and "unet_ms_per_step_median" in d:
                ms.append(d["unet_ms_per_step_median"])  # vdp reports min and median per process
            loads.append(r["loadavg_before"])
            flop = d.get("unet_flop_per_step")
            if flop:
                entry[impl + "_flop_per_step"] = flop
        entry[impl] = {"ms_runs": ms, "ms_min": min(ms) if ms else None, "ms_median": med(ms), "loadavg_before": loads}
    v, t = entry["vdp"], entry["torch"]
    entry["vdp_over_torch_min"] = v["ms_min"] / t["ms_min"] if v["ms_min"] and t["ms_min"] else None
    entry["vdp_over_torch_median"] = v["ms_median"] / t["ms_median"] if v["ms_median"] and t["ms_median"] else None
    out["unet"].append(entry)
peak = [r["result"].get("kernel_peak_gflops") for r in rows if r["case"] == "ops" and r["impl"] == "vdp"]
peak = [p for p in peak if p]
out["kernel_peak_gflops_max"] = max(peak) if peak else None
names = []
for r in rows:
    if r["case"] == "ops":
        for o in r["result"].get("ops", []):
            if o["name"] not in names:
                names.append(o["name"])
for n in names:
    entry = {"name": n}
    for impl in ("vdp", "torch"):
        mins, meds, gfl = [], [], None
        for r in rows:
            if r["case"] == "ops" and r["impl"] == impl:
                for o in r["result"].get("ops", []):
                    if o["name"] == n:
                        mins.append(o["ms_min"]), meds.append(o["ms_median"])
                        gfl = o.get("gflop", gfl)
        entry[impl] = {"ms_min": min(mins) if mins else None, "ms_median_of_medians": med(meds),
                       "gflops_best": gfl / min(mins) * 1e3 if gfl and mins else None}
    v, t = entry["vdp"], entry["torch"]
    entry["vdp_over_torch_min"] = v["ms_min"] / t["ms_min"] if v["ms_min"] and t["ms_min"] else None
    out["ops"].append(entry)
json.dump(out, open(outj, "w"), indent=1)
f = lambda x, fmt="%.1f": fmt % x if isinstance(x, (int, float)) else "-"
print()
print("CPU (%s, %d logical CPUs), fp32; vdp/torch < 1 means vdp is faster." % (out["machine"]["cpu"], os.cpu_count()))
print("| UNet step | vdp min / median ms | torch min / median ms | vdp/torch min / median | loadavg before (vdp; torch) |")
print("|---|---|---|---|---|")
for e in out["unet"]:
    v, t = e["vdp"], e["torch"]
    print("| %s | %s / %s | %s / %s | %s / %s | %s; %s |" % (e["case"], f(v["ms_min"]), f(v["ms_median"]), f(t["ms_min"]),
          f(t["ms_median"]), f(e["vdp_over_torch_min"], "%.2f"), f(e["vdp_over_torch_median"], "%.2f"),
          " ".join(x.split()[0] for x in v["loadavg_before"]), " ".join(x.split()[0] for x in t["loadavg_before"])))
if out["ops"]:
    print()
    print("micro-kernel peak (vdp, all threads, in L1): %s GFLOP/s" % f(out["kernel_peak_gflops_max"]))
    print("| operator | vdp min ms (GFLOP/s) | torch min ms (GFLOP/s) | vdp/torch |")
    print("|---|---|---|---|")
    for e in out["ops"]:
        v, t = e["vdp"], e["torch"]
        print("| %s | %s (%s) | %s (%s) | %s |" % (e["name"], f(v["ms_min"], "%.2f"), f(v["gflops_best"]), f(t["ms_min"], "%.2f"),
              f(t["gflops_best"]), f(e["vdp_over_torch_min"], "%.2f")))
print()
print("saved:", outj)
PYEOF
  if want cpu_tiny3_14f_64x64_nocfg_21st; then  # (not indented further: heredocs below)
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
    ./vdp generate --device cpu --model "$TMP/tiny3.vdpw" --image $IMG --out "$TMP/o.npy" --overwrite $GARGS >/dev/null 2>"$TMP/gen.log" ||
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
  [ -s "$TMP/cpu_tiny3_14f_64x64_nocfg_21st.vdp.json" ] &&
    $TPY - "$TMP" "$OUTJ" <<'PYEOF'
import json, os, sys
tmp, outj = sys.argv[1], sys.argv[2]
def rd(p):
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except Exception:
        return None
out = json.load(open(outj))
n = "cpu_tiny3_14f_64x64_nocfg_21st"
out["tiny3_pipeline"] = {"name": n, "vdp": rd(os.path.join(tmp, n + ".vdp.json")), "diffusers": rd(os.path.join(tmp, n + ".diffusers.json"))}
json.dump(out, open(outj, "w"), indent=1)
v, d = out["tiny3_pipeline"]["vdp"] or {}, out["tiny3_pipeline"]["diffusers"] or {}
print("tiny3 pipeline 14f 64x64 21 steps: vdp %s ms/step, %s s e2e; diffusers %s ms/step, %s s e2e" % (
    v.get("unet_ms_per_step_median"), v.get("end_to_end_s"), d.get("unet_ms_per_step_median"), d.get("total_s_median")))
PYEOF
  exit 0
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
