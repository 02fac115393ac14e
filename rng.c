// rng.c — torch's CPU generator (MT19937) and torch.randn, reproduced bit for bit.
//
// What is reproduced: `g = torch.Generator("cpu").manual_seed(s)` followed by any sequence of
// `torch.randn(n, generator=g)` (float32) and `torch.randn(n, generator=g, dtype=torch.float16)`
// on an x86-64 Linux build of torch (checked against the official torch 2.11.0 pip wheel, see
// test/test_rng.c and test/golden/make_rng_vectors.py). The algorithm is described in our own words
// in ../shared/torch-rng.md; the section numbers below (§n) refer to that document.
//
// Paths taken by torch.randn (§4):
//   n >= 16, float32  fill path with the AVX2 kernel: Cephes-style log/sincos polynomials in float32
//                     (§6a). No libm, so the bits depend only on where the FMAs sit. The placement
//                     below is the one of the GCC-built Linux wheels; every FMA is an explicit fmaf and
//                     every other multiply/add is rounded on its own.
//   n >= 16, float16  fill path with the scalar kernel evaluated in half precision, libm logf/sqrtf/
//                     cosf/sinf (§6b, §7, torch >= 2.x rounding of each intermediate to half).
//   n < 16            per-element double Box–Muller with a cache that survives between calls (§8).
#include "vdp.h"

#include <float.h>
#include <math.h>
#include <string.h>

// The float32 kernel must not be contracted into FMAs by the compiler: fused and unfused operations
// are chosen explicitly below. GCC in strict ISO mode (-std=c11, the Makefile's flags) never contracts;
// clang contracts within an expression unless told not to.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif
// Excess precision (x87) would round intermediates differently from the SSE/AVX code of torch.
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "rng.c needs FLT_EVAL_METHOD == 0 (float arithmetic evaluated in float, e.g. SSE on x86-64)"
#endif

// ---------------------------------------------------------------------------------------------------
// MT19937 (§1, §2)
// ---------------------------------------------------------------------------------------------------
#define MT_N 624
#define MT_M 397

void torch_manual_seed(TorchGenerator *g, uint64_t seed) {
  // Only the low 32 bits of the seed reach the engine (seeds s and s + 2^32 give the same stream).
  uint32_t s = (uint32_t)(seed & 0xFFFFFFFFu);
  g->mt[0] = s;
  for (int i = 1; i < MT_N; i++) g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + (uint32_t)i;
  g->next = MT_N;  // the first draw regenerates the whole block, exactly like std::mt19937(s)
  g->has_cached_normal = 0;
  g->cached_normal = 0.0;
}

// Regenerates the 624-word block (the standard MT19937 twist).
static void mt_twist(TorchGenerator *g) {
  uint32_t *mt = g->mt;
  for (int i = 0; i < MT_N; i++) {
    uint32_t y = (mt[i] & 0x80000000u) | (mt[(i + 1) % MT_N] & 0x7FFFFFFFu);
    mt[i] = mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908B0DFu : 0u);
  }
  g->next = 0;
}

// One tempered 32-bit output.
static uint32_t mt_u32(TorchGenerator *g) {
  if (g->next >= MT_N || g->next < 0) mt_twist(g);
  uint32_t y = g->mt[g->next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9D2C5680u;
  y ^= (y << 15) & 0xEFC60000u;
  y ^= y >> 18;
  return y;
}

// 64-bit draw: the first 32-bit draw is the high word.
static uint64_t mt_u64(TorchGenerator *g) {
  uint64_t hi = mt_u32(g);
  uint64_t lo = mt_u32(g);
  return (hi << 32) | lo;
}

// Uniforms in [0, 1) from the LOW bits of the raw draw (§3); all exact.
static float uniform_f32(TorchGenerator *g) { return (float)(mt_u32(g) & 0xFFFFFFu) * 0x1p-24f; }
static float uniform_f16(TorchGenerator *g) { return (float)(mt_u32(g) & 0x7FFu) * 0x1p-11f; }
static double uniform_f64(TorchGenerator *g) {
  return (double)(mt_u64(g) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

// ---------------------------------------------------------------------------------------------------
// n < 16: per-element double Box–Muller with the persistent cache (§8)
// ---------------------------------------------------------------------------------------------------
static double normal_f64(TorchGenerator *g) {
  if (g->has_cached_normal) {
    g->has_cached_normal = 0;
    return g->cached_normal;
  }
  double u1 = uniform_f64(g);
  double u2 = uniform_f64(g);
  // torch >= 2.0 uses log1p(-u2) (log(1 - u2) before); the difference never survives the rounding
  // to float32/float16, but log1p is what the current wheel does.
  double r = sqrt(-2.0 * log1p(-u2));
  double th = 6.283185307179586 * u1;  // 2*pi as a double
  g->cached_normal = r * sin(th);
  g->has_cached_normal = 1;
  return r * cos(th);
}

// normal(mean = 0, std = 1) in double; "* std + mean" is kept because "+ 0.0" turns -0 into +0.
static double small_normal(TorchGenerator *g) { return normal_f64(g) * 1.0 + 0.0; }

// ---------------------------------------------------------------------------------------------------
// float32 fill path: the AVX2 kernel's arithmetic, one lane at a time (§6a)
// ---------------------------------------------------------------------------------------------------
static float f_from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
static uint32_t f_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

// Cephes log polynomial coefficients P0..P8 (float32 bit patterns).
static const uint32_t LOG_P[9] = {0x3d9021bb, 0xbdebd1b8, 0x3def251a, 0xbdfe5d4f, 0x3e11e9bf,
                                  0xbe2aae50, 0x3e4cceac, 0xbe7ffffc, 0x3eaaaaaa};

// Natural log of x in [2^-24, 1] as the vectorised Cephes log computes it.
static float log_cephes(float x) {
  if (!(x > 0.0f)) return NAN;             // cannot happen here: 1 - uniform is in (0, 1]
  if (x < FLT_MIN) x = FLT_MIN;            // the kernel clamps to the smallest normal
  uint32_t bx = f_bits(x);
  int k = (int)(bx >> 23) - 127;           // unbiased exponent (x > 0, so no sign bit)
  float m = f_from_bits((bx & 0x807FFFFFu) | 0x3F000000u);  // mantissa in [0.5, 1)
  float e = (float)k + 1.0f;
  float t;
  if (m < f_from_bits(0x3f3504f3)) {      // m < sqrt(1/2): use 2m - 1 and one exponent less
    e = e - 1.0f;
    t = (m - 1.0f) + m;
  } else {
    t = m - 1.0f;
  }
  float z = t * t;
  float y = f_from_bits(LOG_P[0]);
  for (int i = 1; i < 9; i++) y = fmaf(y, t, f_from_bits(LOG_P[i]));  // Horner, fused
  y = y * t;
  float eq1 = e * f_from_bits(0xb95e8083);  // e*Q1 rounded first ...
  y = fmaf(y, z, eq1);                      // ... then fused with y*z
  y = y - z * 0.5f;                          // z*0.5 is exact, so fused or not is the same
  return fmaf(e, 0.693359375f, t + y);       // e*Q2 is exact: equals (t + y) + e*Q2
}

// sin and cos of a (a = 2*pi*u in [0, 2*pi)) as the vectorised Cephes sincos computes them.
static void sincos_cephes(float a, float *sin_out, float *cos_out) {
  uint32_t sign_in = f_bits(a) & 0x80000000u;
  a = fabsf(a);
  int j = (int)(a * f_from_bits(0x3fa2f983));  // a * 4/pi rounded to float, then truncated
  j = (j + 1) & ~1;                             // round up to even: octant pairs
  float y = (float)j;
  uint32_t flip_sin = ((uint32_t)j & 4u) << 29;
  uint32_t flip_cos = ((uint32_t)(~(j - 2)) & 4u) << 29;
  int poly_is_sin = (j & 2) == 0;
  // Extended-precision range reduction a - j*pi/4 with three fused steps.
  float x = fmaf(y, f_from_bits(0xbf490000), a);
  x = fmaf(y, f_from_bits(0xb97da000), x);
  x = fmaf(y, f_from_bits(0xb3222169), x);
  float z = x * x;
  // cos polynomial: 1 - z/2 + z^2 * (CP0 z^2 + CP1 z + CP2)
  float c = fmaf(fmaf(f_from_bits(0x37ccf5ce), z, f_from_bits(0xbab6061a)), z, f_from_bits(0x3d2aaaa5));
  c = c * z;
  c = fmaf(c, z, -(z * 0.5f));
  c = c + 1.0f;
  // sin polynomial: x + x z (SP0 z^2 + SP1 z + SP2)
  float s = fmaf(fmaf(f_from_bits(0xb94ca1f9), z, f_from_bits(0x3c08839e)), z, f_from_bits(0xbe2aaaa3));
  s = s * z;
  s = fmaf(s, x, x);
  // The kernel selects with masks and adds the two masked halves: "+ 0.0f" reproduces -0 -> +0.
  float sv = (poly_is_sin ? s : c) + 0.0f;
  float cv = (poly_is_sin ? c : s) + 0.0f;
  *sin_out = f_from_bits(f_bits(sv) ^ (sign_in ^ flip_sin));
  *cos_out = f_from_bits(f_bits(cv) ^ flip_cos);
}

// d[0..15] hold uniforms; pairs (d[j], d[j+8]) become two normals (mean 0, std 1).
static void block16_f32(float *d) {
  const float mean = 0.0f, std_ = 1.0f, two_pi = f_from_bits(0x40c90fdb);
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j];  // in (0, 1]
    float u2 = d[j + 8];
    float radius = sqrtf(-2.0f * log_cephes(u1));
    float theta = two_pi * u2;
    float s, c;
    sincos_cephes(theta, &s, &c);
    d[j] = fmaf(radius * c, std_, mean);
    d[j + 8] = fmaf(radius * s, std_, mean);
  }
}

void torch_randn_f32(TorchGenerator *g, float *out, int64_t n) {
  if (n <= 0) return;
  if (n < 16) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)small_normal(g);
    return;
  }
  // Fill path (§5): n uniforms, full blocks in place, then a tail block on 16 NEW uniforms that
  // overwrites out[n-16 .. n-1].
  for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(g);
  for (int64_t b = 0; b + 16 <= n; b += 16) block16_f32(out + b);
  if (n % 16 != 0) {
    for (int i = 0; i < 16; i++) out[n - 16 + i] = uniform_f32(g);
    block16_f32(out + n - 16);
  }
}

// ---------------------------------------------------------------------------------------------------
// float16 (§7): every intermediate is a c10::Half, i.e. computed in float and rounded to half.
// ---------------------------------------------------------------------------------------------------
static float round_half(float x) { return half_to_float(float_to_half(x)); }

// d[0..15] hold uniforms (exact halves, kept as floats); writes 16 half values to out.
static void block16_f16(const float *d, uint16_t *out) {
  const float mean = 0.0f, std_ = 1.0f;
  for (int j = 0; j < 8; j++) {
    float u1 = round_half(1.0f - d[j]);  // exact: 1 - k/2048
    float u2 = d[j + 8];
    float lg = round_half(logf(u1));
    float radius = round_half(sqrtf(round_half(-2.0f * lg)));
    // theta = 2*pi (double) * u2, rounded double -> float -> half
    float theta = round_half((float)(6.283185307179586 * (double)u2));
    float c = round_half(cosf(theta));
    float s = round_half(sinf(theta));
    float a = round_half(round_half(round_half(radius * c) * std_) + mean);
    float b = round_half(round_half(round_half(radius * s) * std_) + mean);
    out[j] = float_to_half(a);
    out[j + 8] = float_to_half(b);
  }
}

void torch_randn_f16(TorchGenerator *g, uint16_t *out, int64_t n) {
  if (n <= 0) return;
  if (n < 16) {
    // double Box–Muller, then double -> float -> half (two roundings)
    for (int64_t i = 0; i < n; i++) out[i] = float_to_half((float)small_normal(g));
    return;
  }
  // Same layout as float32: the uniforms live in out (as halves, exact), blocks run in place.
  for (int64_t i = 0; i < n; i++) out[i] = float_to_half(uniform_f16(g));
  float d[16];
  for (int64_t b = 0; b + 16 <= n; b += 16) {
    for (int i = 0; i < 16; i++) d[i] = half_to_float(out[b + i]);
    block16_f16(d, out + b);
  }
  if (n % 16 != 0) {
    for (int i = 0; i < 16; i++) d[i] = uniform_f16(g);
    block16_f16(d, out + n - 16);
  }
}
