#!/usr/bin/env python3
"""Generates test/rng_vectors.h: torch.randn reference draws for test/test_rng.c.

Two sources, both torch 2.11.0 (official Linux x86-64 wheel, CPU generator):
  1. ../shared/torch-rng-vectors-2.11.json (made on an H100 host's CPU): for each seed one generator
     draws randn(1), randn(7), randn(16), randn(17), randn(100) (float32), and a fresh generator draws
     randn(40, dtype=float16). The script first checks that the local torch reproduces every value of
     the JSON and stops otherwise (so both sources agree).
  2. The local torch: larger draws and longer sequences (the pipeline's two draws, the N < 16 cache
     across calls, mixed float32/float16 on one generator, 12288 and 100000 elements).

Large draws are stored compactly: the FNV-1a 64-bit hash of the tensor's little-endian bytes
(4 bytes per float32, 2 per float16) plus the first 16 bit patterns.

Run from anywhere (CPU only, deterministic; two runs give identical output):
    venv/bin/python test/golden/make_rng_vectors.py [path/to/torch-rng-vectors-2.11.json]
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON_DEFAULT = os.path.join(ROOT, "..", "shared", "torch-rng-vectors-2.11.json")
OUT = os.path.join(ROOT, "test", "rng_vectors.h")

F32, F16 = 0, 1
FULL_LIMIT = 5000  # draws up to this many elements are stored whole


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bits(t):
    """Bit patterns of a float32/float16 tensor as Python ints."""
    if t.dtype == torch.float32:
        return [v & 0xFFFFFFFF for v in t.view(torch.int32).tolist()]
    return [v & 0xFFFF for v in t.view(torch.int16).tolist()]


def draw(g, n, dtype):
    return torch.randn(n, generator=g, dtype=torch.float32 if dtype == F32 else torch.float16)


class Case:
    """One named sequence of draws from one generator."""

    def __init__(self, name, seed, source):
        self.name, self.seed, self.source, self.draws = name, seed, source, []


def run_sequence(name, seed, seq, source, expected=None):
    """seq: list of (n, dtype); expected: optional list of bit lists that must be reproduced."""
    g = torch.Generator("cpu")
    g.manual_seed(seed if seed < 2**63 else seed - 2**64)
    case = Case(name, seed, source)
    for i, (n, dt) in enumerate(seq):
        b = bits(draw(g, n, dt))
        if expected is not None and b != expected[i]:
            bad = sum(x != y for x, y in zip(b, expected[i]))
            sys.exit(f"local torch {torch.__version__} disagrees with the JSON: case {name}, draw {i} "
                     f"(n={n}): {bad} values differ")
        width = 4 if dt == F32 else 2
        h = fnv1a64(b"".join(v.to_bytes(width, "little") for v in b))
        stored = b if n <= FULL_LIMIT else b[:16]
        case.draws.append((n, dt, h, stored))
    return case


def main():
    json_path = sys.argv[1] if len(sys.argv) > 1 else JSON_DEFAULT
    with open(json_path) as f:
        ref = json.load(f)
    torch.set_num_threads(1)

    cases = []
    # 1. the JSON vectors (checked against local torch on the way)
    for key in ref:
        if key.endswith("_f16"):
            continue
        seed = int(key)
        cases.append(run_sequence(f"json seed {seed} f32 [1,7,16,17,100]", seed,
                                  [(1, F32), (7, F32), (16, F32), (17, F32), (100, F32)], "json",
                                  expected=ref[key]))
        cases.append(run_sequence(f"json seed {seed} f16 [40]", seed, [(40, F16)], "json",
                                  expected=[ref[key + "_f16"]]))
    # 2. local wheel
    cases.append(run_sequence("pipeline seed 0 f32 [3*32*32, 2*4*16*16]", 0, [(3072, F32), (2048, F32)], "wheel"))
    cases.append(run_sequence("pipeline seed 42 f16 [3*32*32, 2*4*16*16]", 42, [(3072, F16), (2048, F16)], "wheel"))
    cases.append(run_sequence("pipeline seed 42 f32 [1*3*64*64, 1*14*4*8*8]", 42, [(12288, F32), (3584, F32)], "wheel"))
    cases.append(run_sequence("seed 0 f32 [12288]", 0, [(12288, F32)], "wheel"))
    cases.append(run_sequence("seed 1234 f32 [100000]", 1234, [(100000, F32)], "wheel"))
    cases.append(run_sequence("seed 99 f16 [100000]", 99, [(100000, F16)], "wheel"))
    # the N < 16 double cache survives fill-path calls and dtype changes
    cases.append(run_sequence("cache seed 5 mixed [7,3,1000,5,17,1,f16 15,f16 33,f16 1,f32 2]", 5,
                              [(7, F32), (3, F32), (1000, F32), (5, F32), (17, F32), (1, F32),
                               (15, F16), (33, F16), (1, F16), (2, F32)], "wheel"))
    cases.append(run_sequence("seed 2^64-1 (python -1) f32 [3,31]", 2**64 - 1, [(3, F32), (31, F32)], "wheel"))
    cases.append(run_sequence("tails seed 77 f32 [15,16,31,33,47,65,255,1023]", 77,
                              [(n, F32) for n in (15, 16, 31, 33, 47, 65, 255, 1023)], "wheel"))

    lines = [
        "// GENERATED by test/golden/make_rng_vectors.py -- do not edit.",
        f"// Reference draws of torch.randn on torch.Generator('cpu').manual_seed(seed), torch {torch.__version__}",
        "// (official Linux x86-64 wheel). source 'json': ../shared/torch-rng-vectors-2.11.json (made on an",
        "// H100 host's CPU; re-checked against the local wheel by the script); source 'wheel': the local wheel.",
        "// Each case is one generator; its draws are made in order. Draws of more than "
        f"{FULL_LIMIT} elements store only",
        "// the first 16 bit patterns; every draw stores the FNV-1a 64 hash of its little-endian bytes.",
        "// Regenerate: venv/bin/python test/golden/make_rng_vectors.py",
        "#ifndef RNG_VECTORS_H",
        "#define RNG_VECTORS_H",
        "#include <stdint.h>",
        "",
        "enum { RNGV_F32 = 0, RNGV_F16 = 1 };",
        "typedef struct {",
        "  int64_t n;              // numel of this torch.randn call",
        "  int dtype;              // RNGV_F32 or RNGV_F16",
        "  uint64_t fnv1a;         // FNV-1a 64 over the whole draw's little-endian bytes",
        "  int n_stored;           // leading values stored in bits (n_stored == n: all)",
        "  const uint32_t *bits;   // float32 or binary16 bit patterns",
        "} RngvDraw;",
        "typedef struct {",
        "  const char *name;",
        "  const char *source;     // \"json\" or \"wheel\"",
        "  uint64_t seed;          // manual_seed argument (as uint64)",
        "  int n_draws;",
        "  const RngvDraw *draws;",
        "} RngvCase;",
        "",
    ]
    for ci, c in enumerate(cases):
        for di, (n, dt, h, stored) in enumerate(c.draws):
            lines.append(f"static const uint32_t rngv_{ci}_{di}[{len(stored)}] = {{")
            fmt = "0x{:08x}" if dt == F32 else "0x{:04x}"
            per = 8 if dt == F32 else 12
            for i in range(0, len(stored), per):
                lines.append("  " + ", ".join(fmt.format(v) for v in stored[i:i + per]) + ",")
            lines.append("};")
        lines.append(f"static const RngvDraw rngv_{ci}[] = {{")
        for di, (n, dt, h, stored) in enumerate(c.draws):
            dts = "RNGV_F32" if dt == F32 else "RNGV_F16"
            lines.append(f"  {{{n}, {dts}, UINT64_C(0x{h:016x}), {len(stored)}, rngv_{ci}_{di}}},")
        lines.append("};")
    lines.append("static const RngvCase rngv_cases[] = {")
    for ci, c in enumerate(cases):
        lines.append(f"  {{\"{c.name}\", \"{c.source}\", UINT64_C({c.seed}), {len(c.draws)}, rngv_{ci}}},")
    lines.append("};")
    lines.append(f"#define RNGV_N_CASES {len(cases)}")
    lines.append("#endif")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases, "
          f"{sum(len(c.draws) for c in cases)} draws, {sum(n for c in cases for n, *_ in c.draws)} values")


if __name__ == "__main__":
    main()
