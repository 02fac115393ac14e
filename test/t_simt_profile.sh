#!/usr/bin/env bash
# The SIMT_PROFILE counters (test/simt/profile.cpp: bank-conflict wavefronts, global sectors) on hand-made
# patterns with known costs: conflict-free, 2-way, 32-way, padded, broadcast, 16-byte, ldmatrix with 64- and
# 80-byte rows, coalesced / misaligned / strided / broadcast global loads, cp.async (test/simt/prof_selftest.cu,
# built in the profiling build build/simt-prof by make test).
set -u
cd "$(dirname "$0")/.."
BIN=${SIMT_PROF:-build/simt-prof}/simt_prof_selftest
if [ ! -x "$BIN" ]; then echo "FAIL - simt_profile $BIN is missing (make test builds it: make simt-prof-selftest)"; exit 1; fi
"$BIN" 2>/dev/null
