#!/usr/bin/env bash
# fuzz.sh [SECONDS] — builds the libFuzzer targets for the .vdpw and safetensors parsers (the latter also
# drives the single-file SGM checkpoint reader) and runs each for
# SECONDS (default 60), one after the other. Needs clang with libFuzzer (-fsanitize=fuzzer).
#   test/fuzz/seed-vdpw/, test/fuzz/seed-safetensors/   seed corpora (a valid small file of each kind)
#   test/fuzz/corpus-*/                                   the growing corpora (not committed)
#   test/fuzz/crash-*                                     reproducers of findings: run build/fuzz/fuzz_X FILE
# Environment: FUZZ_JOBS=2 runs both targets at the same time instead.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-60}
OUT=build/fuzz
CC_FUZZ=${CC_FUZZ:-clang}
command -v "$CC_FUZZ" >/dev/null || { echo "fuzz.sh: $CC_FUZZ not found (libFuzzer needs clang)"; exit 1; }
mkdir -p "$OUT"
FLAGS="-std=c11 -g -O1 -fopenmp -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
LIB="util.c safetensors.c sgm.c weights.c ops.c model.c rng.c image.c"
for t in vdpw safetensors; do
  echo "fuzz.sh: building $OUT/fuzz_$t"
  $CC_FUZZ $FLAGS -o "$OUT/fuzz_$t" "test/fuzz/fuzz_$t.c" $LIB -lpng -ljpeg -lm
done
run() {
  local t=$1
  local rc=0
  mkdir -p "test/fuzz/corpus-$t"
  # The SGM reader runs on every header that parses: start from the real SGM fixture (3.4 MB, not copied
  # into the committed seeds).
  if [ $t = safetensors ]; then cp test/data/sgm/svd_mini.safetensors "test/fuzz/corpus-$t/sgm-svd_mini.safetensors"; fi
  # -max_len: the vdpw seed holds the data of a small model (about 1.3 MB), the SGM fixture 3.4 MB; let
  # inputs be as large.
  "$OUT/fuzz_$t" -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix=test/fuzz/ \
    -max_len=$((4 * 1024 * 1024)) -timeout=20 -rss_limit_mb=4096 $([ $t = safetensors ] && echo -dict=test/fuzz/json.dict) \
    "test/fuzz/corpus-$t" "test/fuzz/seed-$t" \
    >"$OUT/fuzz_$t.log" 2>&1 || rc=$?
  echo "fuzz.sh: fuzz_$t exit $rc: $(grep -E 'stat::number_of_executed_units' "$OUT/fuzz_$t.log" | tr -s ' ')" \
    "$(grep -E 'stat::peak_rss_mb' "$OUT/fuzz_$t.log" | tr -s ' ')"
  [ $rc -eq 0 ] || { tail -40 "$OUT/fuzz_$t.log"; return 1; }
}
if [ "${FUZZ_JOBS:-1}" = 2 ]; then
  run vdpw & p1=$!
  run safetensors & p2=$!
  rc=0; wait $p1 || rc=1; wait $p2 || rc=1
  exit $rc
fi
run vdpw && run safetensors
