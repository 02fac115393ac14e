# test/lib.sh — the shared start of the test/t_*.sh scripts (sourced, not run; run_tests.sh picks up
# only t_*.sh): the repository root as working folder, the binary under test (VDP=path overrides
# ./vdp), run_tests.sh's protocol (one "ok - ..." or "FAIL - ..." line per check; the script ends with
# `[ "$fails" -eq 0 ]`), and a private temporary folder $tmp removed at exit (write bits restored first,
# for the tests that make read-only files).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VDP=${VDP:-./vdp}
fails=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
[ -x "$VDP" ] || { bad "vdp binary $VDP not found (run make)"; exit 1; }

# sanitized: 1 when $VDP is an AddressSanitizer build (it reserves terabytes of shadow address space, so
# it cannot run under `ulimit -v`: those cases are skipped with a printed reason)
sanitized=0
{ [[ "${BUILD:-}" == *san* ]] || ldd "$VDP" 2>/dev/null | grep -q libasan; } && sanitized=1

# convert_tiny3: $M = the tiny3 fixture converted to .vdpw in $tmp (exits the script if that fails)
convert_tiny3() {
  M=$tmp/tiny3.vdpw
  "$VDP" convert test/data/models/tiny3 "$M" >/dev/null 2>"$tmp/conv.err" || { bad "convert tiny3: $(tail -1 "$tmp/conv.err")"; exit 1; }
}

# simt_require BIN...: the emulated binaries ($SIMT/..., built by make test) exist, or one FAIL line that
# says why (the CUDA headers missing, or the build not run) and exit 1.
simt_require() {
  local b
  for b in "$@"; do
    [ -x "$b" ] && continue
    if [ ! -f "${CUDA_HOME:-/usr/local/cuda}/include/cuda_runtime.h" ]; then
      echo "FAIL - simt_build the CUDA headers are not in ${CUDA_HOME:-/usr/local/cuda}/include: the SIMT emulator cannot be built (set CUDA_HOME)"
    else
      echo "FAIL - simt_build $b is missing (make test builds it)"
    fi
    exit 1
  done
}
