#!/usr/bin/env bash
# No kernel spills registers, on any architecture the build targets (sm_80, sm_86, sm_89, sm_90): ptxas's
# figures via tools/gpu_resources.sh --check (one nvcc compile per architecture). Needs nvcc; without it the
# check is reported as skipped (the emulated tests do not need nvcc, this one does).
# Output: "ok - ptxas_no_spill ..." or one "FAIL - ptxas_no_spill sm_XX KERNEL spills ..." per spilling kernel.
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/vdp_t_gpu_resources_XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s%N)
bash tools/gpu_resources.sh --check --out "$tmp/report.md" 2>"$tmp/err"
rc=$?
if [ $rc -eq 77 ]; then
  echo "ok - ptxas_no_spill skipped: $(cat "$tmp/err")"
  exit 0
fi
grep -E '^(ok|FAIL) - ' "$tmp/err"
grep -v -E '^(ok|FAIL) - ' "$tmp/err" | head -20
if [ $rc -ne 0 ] && ! grep -q '^FAIL - ' "$tmp/err"; then echo "FAIL - ptxas_no_spill tools/gpu_resources.sh exited with status $rc"; fi
echo "# ptxas for 4 architectures took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
exit $rc
