#!/usr/bin/env bash
# The SIMT_PROFILE counters (test/simt/profile.cpp: bank-conflict wavefronts, global sectors) on hand-made
# patterns with known costs: conflict-free, 2-way, 32-way, padded, broadcast, 16-byte, ldmatrix with 64- and
# 80-byte rows, coalesced / misaligned / strided / broadcast global loads, cp.async (test/simt/prof_selftest.cu,
# built in the profiling build build/simt-prof by make test: make simt-prof-selftest).
source "$(dirname "$0")/lib.sh"
BIN=${SIMT_PROF:-build/simt-prof}/simt_prof_selftest
simt_require "$BIN"
"$BIN" 2>/dev/null
