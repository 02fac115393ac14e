// test_rng.c — torch_manual_seed + torch_randn_f32/f16 against torch 2.11 reference draws.
//
// The references (test/rng_vectors.h) come from torch itself: the shared JSON vectors
// (../shared/torch-rng-vectors-2.11.json) and draws made with the local torch 2.11.0 wheel by
// test/golden/make_rng_vectors.py. Each case is one generator; its draws are replayed in order, so the
// MT position and the N < 16 double cache are checked across calls. Every stored value must match bit
// for bit, and each draw's FNV-1a hash covers the values that are not stored.
#include "vdp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test/rng_vectors.h"

static int n_fail = 0;

static void check(int ok, const char *name, const char *detail) {
  printf("%s - %s %s\n", ok ? "ok" : "FAIL", name, detail);
  if (!ok) n_fail++;
}

// FNV-1a 64 over little-endian bytes of `width`-byte values (the same definition as the script).
static uint64_t fnv1a(const void *vals, int64_t n, int width) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int64_t i = 0; i < n; i++) {
    uint32_t v = width == 4 ? ((const uint32_t *)vals)[i] : ((const uint16_t *)vals)[i];
    for (int b = 0; b < width; b++) {
      h ^= (v >> (8 * b)) & 0xFFu;
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

// ulp distance between two float32 / binary16 bit patterns of the same sign (large if signs differ)
static uint32_t ulp_diff(uint32_t a, uint32_t b) { return a > b ? a - b : b - a; }

// Replays one case; prints one check line per case with the mismatch counts.
static void run_case(const RngvCase *c) {
  TorchGenerator g;
  torch_manual_seed(&g, c->seed);
  int64_t n_values = 0, n_compared = 0, n_mismatch = 0;
  uint32_t max_ulp = 0;
  int hash_bad = 0;
  char first_bad[200] = "";
  for (int d = 0; d < c->n_draws; d++) {
    const RngvDraw *r = &c->draws[d];
    int width = r->dtype == RNGV_F32 ? 4 : 2;
    uint32_t *bits = malloc((size_t)r->n * sizeof(uint32_t));  // [n] bit patterns, widened
    void *raw = malloc((size_t)r->n * (size_t)width);           // [n] float32 or binary16
    if (!bits || !raw) {
      fprintf(stderr, "test_rng: out of memory for %lld values\n", (long long)r->n);
      exit(2);
    }
    if (r->dtype == RNGV_F32) {
      torch_randn_f32(&g, (float *)raw, r->n);
      memcpy(bits, raw, (size_t)r->n * 4);
    } else {
      torch_randn_f16(&g, (uint16_t *)raw, r->n);
      for (int64_t i = 0; i < r->n; i++) bits[i] = ((uint16_t *)raw)[i];
    }
    for (int i = 0; i < r->n_stored; i++) {
      if (bits[i] == r->bits[i]) continue;
      if (n_mismatch == 0)
        snprintf(first_bad, sizeof first_bad, " first: draw %d (n=%lld) [%d] expected 0x%08x found 0x%08x", d,
                 (long long)r->n, i, r->bits[i], bits[i]);
      n_mismatch++;
      uint32_t u = ulp_diff(bits[i], r->bits[i]);
      if (u > max_ulp) max_ulp = u;
    }
    if (fnv1a(raw, r->n, width) != r->fnv1a) hash_bad++;
    n_values += r->n;
    n_compared += r->n_stored;
    free(bits);
    free(raw);
  }
  char name[256], detail[512];
  snprintf(name, sizeof name, "randn [%s] %s", c->source, c->name);
  snprintf(detail, sizeof detail,
           "values=%lld compared_bitwise=%lld mismatches=%lld max_ulp=%u hash_mismatched_draws=%d/%d%s",
           (long long)n_values, (long long)n_compared, (long long)n_mismatch, max_ulp, hash_bad, c->n_draws,
           first_bad);
  check(n_mismatch == 0 && hash_bad == 0, name, detail);
}

// Properties that need no reference data.
static void run_properties(void) {
  // Only the low 32 bits of the seed reach the engine: seeds 5 and 2^32 + 5 give the same stream.
  TorchGenerator a, b;
  float xa[40], xb[40];
  torch_manual_seed(&a, 5);
  torch_manual_seed(&b, (UINT64_C(1) << 32) + 5);
  torch_randn_f32(&a, xa, 40);
  torch_randn_f32(&b, xb, 40);
  check(memcmp(xa, xb, sizeof xa) == 0, "seed high 32 bits ignored", "(seed 5 == seed 2^32+5)");

  // Reseeding resets the stream and clears the double cache.
  torch_manual_seed(&a, 3);
  torch_randn_f32(&a, xa, 7);  // leaves a cached value
  torch_manual_seed(&a, 3);
  torch_randn_f32(&a, xb, 7);
  check(memcmp(xa, xb, 7 * sizeof(float)) == 0, "manual_seed clears the cache", "");

  // The well-known values: torch.manual_seed(0); torch.randn(5) = 1.5410 -0.2934 -2.1788 0.5684 -1.0845
  torch_manual_seed(&a, 0);
  torch_randn_f32(&a, xa, 5);
  const float want[5] = {1.5410f, -0.2934f, -2.1788f, 0.5684f, -1.0845f};
  double err = 0;
  for (int i = 0; i < 5; i++) err = fmax(err, fabs((double)xa[i] - want[i]));
  char det[64];
  snprintf(det, sizeof det, "max_abs_err=%.2e", err);
  check(err < 1e-4, "seed 0 randn(5) well-known values", det);

  // n = 0 consumes nothing.
  torch_manual_seed(&a, 11);
  torch_manual_seed(&b, 11);
  torch_randn_f32(&a, xa, 0);
  torch_randn_f32(&a, xa, 20);
  torch_randn_f32(&b, xb, 20);
  check(memcmp(xa, xb, 20 * sizeof(float)) == 0, "randn(0) consumes nothing", "");
}

int main(void) {
  run_properties();
  int64_t total = 0, compared = 0;
  for (int c = 0; c < RNGV_N_CASES; c++) {
    run_case(&rngv_cases[c]);
    for (int d = 0; d < rngv_cases[c].n_draws; d++) {
      total += rngv_cases[c].draws[d].n;
      compared += rngv_cases[c].draws[d].n_stored;
    }
  }
  printf("# %d reference cases, %lld values drawn, %lld compared bit for bit, the rest by hash\n", RNGV_N_CASES,
         (long long)total, (long long)compared);
  return n_fail ? 1 : 0;
}
