// test_ops.c — every CPU operator (ops.c) against a naive reference written here: straight loops,
// double accumulation, no blocking. Odd shapes on purpose (channels not multiples of 8, 1×1 and 7×5
// images, several frame counts, lq ≠ lk, a single key, head dims 4..512) and random non-zero inputs.
//
// Error measure, per op: max |got − ref| / max |ref| over the output (normwise relative error), with one
// tolerance per op; each line prints the measured error. The GEMM users (linear, conv, attention) run
// once per micro-kernel (VDP_ISA=generic|avx2|default; a kernel the CPU lacks falls back to generic).
// Speed lines (GFLOP/s) are informational and never fail.
#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int n_fail = 0;
static const char *g_isa = "default";  // micro-kernel forced through VDP_ISA, named in the GEMM users' lines

// ---------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {  // uniform [0, 1), xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
// n values uniform in [lo, hi), never exactly zero
static float *rnd(int64_t n, double lo, double hi) {
  float *p = vdp_malloc((size_t)(n ? n : 1) * sizeof(float), "test input");
  for (int64_t i = 0; i < n; i++) {
    float v = (float)(lo + (hi - lo) * urand());
    p[i] = v == 0.0f ? 1e-3f : v;
  }
  return p;
}
static double *dalloc(int64_t n) { return vdp_calloc((size_t)(n ? n : 1), sizeof(double), "test reference"); }

static double relerr(const float *got, const double *ref, int64_t n) {
  double emax = 0, rmax = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - ref[i]);
    if (!(e <= emax)) emax = e;  // NaN propagates as a failure
    if (fabs(ref[i]) > rmax) rmax = fabs(ref[i]);
  }
  return rmax > 0 ? emax / rmax : emax;
}
static void check(const char *name, double err, double tol) {
  if (err <= tol) {
    printf("ok - %s rel_err=%.2e (tol %.0e)\n", name, err, tol);
  } else {
    printf("FAIL - %s rel_err=%.2e, expected <= %.0e\n", name, err, tol);
    n_fail++;
  }
}

// ---------------------------------------------------------------------------------------------------
// linear
// ---------------------------------------------------------------------------------------------------
static void ref_linear(double *y, const float *x, const float *w, const float *b, int M, int K, int N) {
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = b ? b[n] : 0.0;
      for (int k = 0; k < K; k++) s += (double)x[(int64_t)m * K + k] * w[(int64_t)n * K + k];
      y[(int64_t)m * N + n] = s;
    }
}

static void test_linear(const char *isa) {
  static const int shapes[][4] = {
      // M, K, N, with bias
      {1, 7, 5, 1},     {3, 33, 17, 0},   {4, 1000, 9, 1},     {5, 300, 70, 1},      {37, 257, 130, 0},
      {130, 520, 300, 1}, {13, 3, 2, 1},  {257, 64, 4100, 1}, {100, 1, 33, 0}, {6, 5000, 1000, 1},
  };
  double worst = 0;
  char desc[256] = "";
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
    float *x = rnd((int64_t)M * K, -1, 1), *w = rnd((int64_t)N * K, -1, 1), *b = shapes[s][3] ? rnd(N, -1, 1) : NULL;
    float *y = rnd((int64_t)M * N, 5, 6);  // garbage: every output must be written
    double *r = dalloc((int64_t)M * N);
    op_linear(y, x, w, b, M, K, N);
    ref_linear(r, x, w, b, M, K, N);
    double e = relerr(y, r, (int64_t)M * N);
    if (e > worst) {
      worst = e;
      snprintf(desc, sizeof desc, "worst M=%d K=%d N=%d", M, K, N);
    }
    free(x), free(w), free(b), free(y), free(r);
  }
  char name[300];
  snprintf(name, sizeof name, "linear[%s] 10 shapes (%s)", isa, desc);
  check(name, worst, 1e-5);
}

// ---------------------------------------------------------------------------------------------------
// conv2d
// ---------------------------------------------------------------------------------------------------
static void ref_conv2d(double *y, const float *x, const float *w, const float *b, int n, int cin, int h, int wd,
                       int cout, int kh, int kw, int st, int pt, int pl, int pb, int pr) {
  int ho = (h + pt + pb - kh) / st + 1, wo = (wd + pl + pr - kw) / st + 1;
  for (int i = 0; i < n; i++)
    for (int o = 0; o < cout; o++)
      for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
          double s = b ? b[o] : 0.0;
          for (int c = 0; c < cin; c++)
            for (int ky = 0; ky < kh; ky++)
              for (int kx = 0; kx < kw; kx++) {
                int iy = oy * st - pt + ky, ix = ox * st - pl + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += (double)x[(((int64_t)i * cin + c) * h + iy) * wd + ix] *
                     w[(((int64_t)o * cin + c) * kh + ky) * kw + kx];
              }
          y[(((int64_t)i * cout + o) * ho + oy) * wo + ox] = s;
        }
}

static void test_conv2d(void) {
  static const struct {
    const char *what;
    int n, cin, h, w, cout, kh, kw, st, pt, pl, pb, pr, bias;
  } cases[] = {
      {"3x3 s1 p1 7x5", 2, 3, 7, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1},
      {"3x3 s1 p1 1x1 image", 1, 6, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1},
      {"3x3 s2 p1 9x11", 1, 13, 9, 11, 17, 3, 3, 2, 1, 1, 1, 1, 1},
      {"3x3 s2 pad(0,0,1,1) 8x8", 2, 4, 8, 8, 6, 3, 3, 2, 0, 0, 1, 1, 1},
      {"3x3 s2 pad(0,0,1,1) 7x5", 1, 5, 7, 5, 3, 3, 3, 2, 0, 0, 1, 1, 1},
      {"1x1 5x3", 2, 7, 5, 3, 9, 1, 1, 1, 0, 0, 0, 0, 1},
      {"1x1 no bias", 1, 20, 4, 6, 13, 1, 1, 1, 0, 0, 0, 0, 0},
      {"patch 14 (CLIP), no bias", 1, 3, 28, 42, 10, 14, 14, 14, 0, 0, 0, 0, 0},
      {"3x3 p1 many im2col bands", 1, 300, 30, 31, 8, 3, 3, 1, 1, 1, 1, 1, 1},
      {"3x3 cout 37 (edge tiles)", 3, 9, 6, 13, 37, 3, 3, 1, 1, 1, 1, 1, 1},
      {"5x3 s3 pad(2,1,0,2) 11x8", 2, 6, 11, 8, 7, 5, 3, 3, 2, 1, 0, 2, 1},
      {"3x3 s2 p1 on 2x1 image", 1, 4, 2, 1, 5, 3, 3, 2, 1, 1, 1, 1, 1},
      {"3x3 p1 14 frames 5x5 (tiles straddle frames, K > 256)", 14, 40, 5, 5, 30, 3, 3, 1, 1, 1, 1, 1, 1},
      {"1x1 6 frames 3x3, K 300", 6, 300, 3, 3, 25, 1, 1, 1, 0, 0, 0, 0, 1},
      {"3x3 p1 several B blocks (n·P > 16 MiB / K)", 3, 320, 24, 23, 13, 3, 3, 1, 1, 1, 1, 1, 1},
      {"3x3 s2 pad(0,0,1,1) 5 frames 9x7", 5, 30, 9, 7, 14, 3, 3, 2, 0, 0, 1, 1, 1},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int n = cases[t].n, cin = cases[t].cin, h = cases[t].h, wd = cases[t].w, cout = cases[t].cout;
    int kh = cases[t].kh, kw = cases[t].kw, st = cases[t].st;
    int pt = cases[t].pt, pl = cases[t].pl, pb = cases[t].pb, pr = cases[t].pr;
    int ho = (h + pt + pb - kh) / st + 1, wo = (wd + pl + pr - kw) / st + 1;
    int64_t ny = (int64_t)n * cout * ho * wo;
    float *x = rnd((int64_t)n * cin * h * wd, -1, 1), *w = rnd((int64_t)cout * cin * kh * kw, -1, 1);
    float *b = cases[t].bias ? rnd(cout, -1, 1) : NULL, *y = rnd(ny, 5, 6);
    double *r = dalloc(ny);
    op_conv2d(y, x, w, b, n, cin, h, wd, cout, kh, kw, st, pt, pl, pb, pr);
    ref_conv2d(r, x, w, b, n, cin, h, wd, cout, kh, kw, st, pt, pl, pb, pr);
    char name[200];
    snprintf(name, sizeof name, "conv2d %s (n=%d cin=%d cout=%d -> %dx%d)", cases[t].what, n, cin, cout, ho, wo);
    check(name, relerr(y, r, ny), 1e-5);
    free(x), free(w), free(b), free(y), free(r);
  }
}

// ---------------------------------------------------------------------------------------------------
// temporal conv
// ---------------------------------------------------------------------------------------------------
static void test_conv_temporal(void) {
  static const int cases[][6] = {{1, 1, 7, 6, 9, 1},   {2, 2, 5, 11, 3, 1},    {1, 5, 7, 6, 9, 0},
                                 {2, 5, 33, 35, 20, 1}, {2, 7, 100, 13, 17, 1}, {1, 14, 90, 4, 40, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int nb = cases[t][0], nf = cases[t][1], cin = cases[t][2], hw = cases[t][3], cout = cases[t][4];
    int64_t ny = (int64_t)nb * nf * cout * hw;
    float *x = rnd((int64_t)nb * nf * cin * hw, -1, 1), *w = rnd((int64_t)cout * cin * 3, -1, 1);
    float *b = cases[t][5] ? rnd(cout, -1, 1) : NULL, *y = rnd(ny, 5, 6);
    double *r = dalloc(ny);
    for (int bi = 0; bi < nb; bi++)
      for (int f = 0; f < nf; f++)
        for (int o = 0; o < cout; o++)
          for (int p = 0; p < hw; p++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < 3; k++) {
              int fi = f + k - 1;
              if (fi < 0 || fi >= nf) continue;
              for (int c = 0; c < cin; c++)
                s += (double)w[((int64_t)o * cin + c) * 3 + k] * x[(((int64_t)bi * nf + fi) * cin + c) * hw + p];
            }
            r[(((int64_t)bi * nf + f) * cout + o) * hw + p] = s;
          }
    op_conv_temporal(y, x, w, b, nb, nf, cin, hw, cout);
    char name[160];
    snprintf(name, sizeof name, "conv_temporal nb=%d nf=%d cin=%d hw=%d cout=%d%s", nb, nf, cin, hw, cout,
             b ? "" : " no bias");
    check(name, relerr(y, r, ny), 1e-5);
    free(x), free(w), free(b), free(y), free(r);
  }
}

// ---------------------------------------------------------------------------------------------------
// the CPU backend's Linear and convolutions: weights packed at store time, epilogues fused
// ---------------------------------------------------------------------------------------------------
static void test_backend_packed(const char *isa) {
  const Backend *be = &backend_cpu;
  char name[300];
  static const int lin[][3] = {{5, 300, 70}, {130, 520, 45}, {1, 33, 1000}};  // M, K, N: odd edges, K > 256
  for (int s = 0; s < 3; s++) {
    int M = lin[s][0], K = lin[s][1], N = lin[s][2];
    int64_t shape[2] = {N, K};
    float *x = rnd((int64_t)M * K, -1, 1), *w = rnd((int64_t)N * K, -1, 1), *b = rnd(N, -1, 1);
    float *res = rnd((int64_t)M * N, -1, 1), *y = rnd((int64_t)M * N, 5, 6);
    float *wp = be->mem_alloc((size_t)be->weight_elems(WEIGHT_LINEAR, 2, shape) * sizeof(float), "test weights");
    be->weight_store(wp, w, WEIGHT_LINEAR, 2, shape);
    double *r = dalloc((int64_t)M * N);
    ref_linear(r, x, w, b, M, K, N);
    be->linear(y, x, wp, b, M, K, N, ACT_NONE, NULL);
    snprintf(name, sizeof name, "backend[%s] linear packed weights M=%d K=%d N=%d", isa, M, K, N);
    check(name, relerr(y, r, (int64_t)M * N), 1e-5);
    for (int64_t i = 0; i < (int64_t)M * N; i++) r[i] += res[i];
    memcpy(y, res, (size_t)M * N * sizeof(float));
    be->linear(y, x, wp, b, M, K, N, ACT_NONE, y);  // residual fused, in place
    snprintf(name, sizeof name, "backend[%s] linear packed weights + residual in place M=%d K=%d N=%d", isa, M, K, N);
    check(name, relerr(y, r, (int64_t)M * N), 1e-5);
    free(x), free(w), free(b), free(res), free(y), free(r), be->mem_free(wp);
  }
  {  // 3×3 p1, 7 frames of 6×5, cin 31 (K = 279: two k blocks), cout 26 (a partial 12-row panel)
    int n = 7, cin = 31, h = 6, wd = 5, cout = 26;
    int64_t ny = (int64_t)n * cout * h * wd, shape[4] = {cout, cin, 3, 3};
    float *x = rnd((int64_t)n * cin * h * wd, -1, 1), *w = rnd((int64_t)cout * cin * 9, -1, 1), *b = rnd(cout, -1, 1);
    float *chan = rnd((int64_t)n * cout, -1, 1), *res = rnd(ny, -1, 1), *y = rnd(ny, 5, 6);
    float *wp = vdp_malloc((size_t)be->weight_elems(WEIGHT_CONV, 4, shape) * sizeof(float), "test weights");
    be->weight_store(wp, w, WEIGHT_CONV, 4, shape);
    double *r = dalloc(ny);
    ref_conv2d(r, x, w, b, n, cin, h, wd, cout, 3, 3, 1, 1, 1, 1, 1);
    for (int64_t i = 0; i < ny; i++) r[i] += (double)chan[i / (h * wd)] + res[i];
    be->conv2d(y, x, wp, b, n, cin, h, wd, cout, 3, 3, 1, 1, 1, 1, 1, chan, res);
    snprintf(name, sizeof name, "backend[%s] conv2d packed weights + bias + chan_add + res (7 frames 6x5, cin 31, "
             "cout 26)", isa);
    check(name, relerr(y, r, ny), 1e-5);
    memcpy(y, res, (size_t)ny * sizeof(float));  // the residual may be the output itself
    be->conv2d(y, x, wp, b, n, cin, h, wd, cout, 3, 3, 1, 1, 1, 1, 1, chan, y);
    snprintf(name, sizeof name, "backend[%s] conv2d, residual in place", isa);
    check(name, relerr(y, r, ny), 1e-5);
    free(x), free(w), free(b), free(chan), free(res), free(y), free(wp), free(r);
  }
  {  // temporal: 2 videos of 5 frames, cin 100 (K = 300), hw 7, cout 13
    int nb = 2, nf = 5, cin = 100, hw = 7, cout = 13;
    int64_t ny = (int64_t)nb * nf * cout * hw, shape[5] = {cout, cin, 3, 1, 1};
    float *x = rnd((int64_t)nb * nf * cin * hw, -1, 1), *w = rnd((int64_t)cout * cin * 3, -1, 1), *b = rnd(cout, -1, 1);
    float *chan = rnd((int64_t)nb * nf * cout, -1, 1), *res = rnd(ny, -1, 1), *y = rnd(ny, 5, 6);
    float *wp = vdp_malloc((size_t)be->weight_elems(WEIGHT_CONV, 5, shape) * sizeof(float), "test weights");
    be->weight_store(wp, w, WEIGHT_CONV, 5, shape);
    double *r = dalloc(ny);
    for (int bi = 0; bi < nb; bi++)
      for (int f = 0; f < nf; f++)
        for (int o = 0; o < cout; o++)
          for (int p = 0; p < hw; p++) {
            int64_t at = (((int64_t)bi * nf + f) * cout + o) * hw + p;
            double s = (double)b[o] + chan[((int64_t)bi * nf + f) * cout + o] + res[at];
            for (int k = 0; k < 3; k++) {
              int fi = f + k - 1;
              if (fi < 0 || fi >= nf) continue;
              for (int c = 0; c < cin; c++)
                s += (double)w[((int64_t)o * cin + c) * 3 + k] * x[(((int64_t)bi * nf + fi) * cin + c) * hw + p];
            }
            r[at] = s;
          }
    be->conv_temporal(y, x, wp, b, nb, nf, cin, hw, cout, chan, res);
    snprintf(name, sizeof name, "backend[%s] conv_temporal packed weights + bias + chan_add + res (2x5 frames, "
             "cin 100, hw 7)", isa);
    check(name, relerr(y, r, ny), 1e-5);
    free(x), free(w), free(b), free(chan), free(res), free(y), free(wp), free(r);
  }
}

// ---------------------------------------------------------------------------------------------------
// norms
// ---------------------------------------------------------------------------------------------------
static void test_groupnorm(void) {
  static const struct {
    int nb, nf, c, hw, groups, silu, inplace;
    double mean, spread;
  } cases[] = {
      {1, 1, 12, 7, 4, 0, 0, 0, 1},   {2, 1, 12, 1, 3, 1, 0, 0, 1},      {2, 5, 32, 35, 8, 1, 0, 0, 2},
      {1, 2, 20, 6, 5, 0, 1, 0, 1},   {3, 5, 64, 13, 32, 1, 1, 0, 1},    {1, 3, 24, 50, 8, 0, 0, 30, 0.01}, {2, 2, 40, 9, 4, 1, 1, -5, 0.02},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int nb = cases[t].nb, nf = cases[t].nf, c = cases[t].c, hw = cases[t].hw, G = cases[t].groups;
    int64_t n = (int64_t)nb * nf * c * hw;
    float *x = rnd(n, cases[t].mean - cases[t].spread, cases[t].mean + cases[t].spread);
    float *g = rnd(c, 0.5, 1.5), *be = rnd(c, -0.5, 0.5), *y = cases[t].inplace ? x : rnd(n, 5, 6);
    double *r = dalloc(n), eps = 1e-6;
    int cpg = c / G;
    for (int b = 0; b < nb; b++)
      for (int gi = 0; gi < G; gi++) {
        double s = 0, ss = 0, cnt = (double)nf * cpg * hw;
        for (int f = 0; f < nf; f++)
          for (int cc = gi * cpg; cc < (gi + 1) * cpg; cc++)
            for (int p = 0; p < hw; p++) s += x[(((int64_t)b * nf + f) * c + cc) * hw + p];
        double mu = s / cnt;
        for (int f = 0; f < nf; f++)
          for (int cc = gi * cpg; cc < (gi + 1) * cpg; cc++)
            for (int p = 0; p < hw; p++) {
              double d = x[(((int64_t)b * nf + f) * c + cc) * hw + p] - mu;
              ss += d * d;
            }
        double rstd = 1.0 / sqrt(ss / cnt + eps);
        for (int f = 0; f < nf; f++)
          for (int cc = gi * cpg; cc < (gi + 1) * cpg; cc++)
            for (int p = 0; p < hw; p++) {
              int64_t i = (((int64_t)b * nf + f) * c + cc) * hw + p;
              double v = (x[i] - mu) * rstd * g[cc] + be[cc];
              r[i] = cases[t].silu ? v / (1.0 + exp(-v)) : v;
            }
      }
    op_groupnorm(y, x, g, be, nb, nf, c, hw, G, (float)eps, cases[t].silu);
    char name[200];
    snprintf(name, sizeof name, "groupnorm nb=%d nf=%d c=%d hw=%d groups=%d%s%s%s", nb, nf, c, hw, G,
             cases[t].silu ? " +silu" : "", cases[t].inplace ? " in-place" : "",
             cases[t].mean != 0 ? " (|mean| >> std)" : "");
    check(name, relerr(y, r, n), 1e-5);
    if (y != x) free(y);
    free(x), free(g), free(be), free(r);
  }
}

static void test_layernorm(void) {
  static const int cases[][3] = {{5, 77, 0}, {1, 1024, 1}, {33, 320, 0}, {3, 9, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int M = cases[t][0], C = cases[t][1], inplace = cases[t][2];
    float *x = inplace ? rnd((int64_t)M * C, 9.95, 10.05) : rnd((int64_t)M * C, -2, 3);
    float *g = rnd(C, 0.5, 1.5), *be = rnd(C, -0.5, 0.5), *y = inplace ? x : rnd((int64_t)M * C, 5, 6);
    double *r = dalloc((int64_t)M * C), eps = 1e-5;
    for (int m = 0; m < M; m++) {
      const float *xr = x + (int64_t)m * C;
      double s = 0, ss = 0;
      for (int i = 0; i < C; i++) s += xr[i];
      double mu = s / C;
      for (int i = 0; i < C; i++) ss += (xr[i] - mu) * (xr[i] - mu);
      double rstd = 1.0 / sqrt(ss / C + eps);
      for (int i = 0; i < C; i++) r[(int64_t)m * C + i] = (xr[i] - mu) * rstd * g[i] + be[i];
    }
    op_layernorm(y, x, g, be, M, C, (float)eps);
    char name[120];
    snprintf(name, sizeof name, "layernorm M=%d C=%d%s", M, C, inplace ? " in-place (mean 10)" : "");
    check(name, relerr(y, r, (int64_t)M * C), 1e-5);
    if (y != x) free(y);
    free(x), free(g), free(be), free(r);
  }
}

// ---------------------------------------------------------------------------------------------------
// attention
// ---------------------------------------------------------------------------------------------------
// q, k, v interleaved in one buffer per sequence as [L, 3, heads, hd] (a fused QKV projection) when
// lq == lk, separate [nseq, L, heads·hd] tensors otherwise; the output has its own padded row stride.
static void test_attention(void) {
  static const struct {
    int nseq, lq, lk, heads, hd;
    double spread;
  } cases[] = {
      {2, 5, 7, 3, 4, 1},   {1, 100, 1, 2, 80, 1},  {3, 70, 130, 2, 80, 1}, {1, 9, 300, 1, 512, 1},
      {40, 14, 14, 5, 64, 1}, {1, 200, 200, 2, 8, 4}, {2, 1, 33, 1, 64, 1},  {1, 77, 77, 3, 64, 1},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int S = cases[t].nseq, lq = cases[t].lq, lk = cases[t].lk, H = cases[t].heads, hd = cases[t].hd;
    int C = H * hd, fused = lq == lk;
    double sp = cases[t].spread;
    float *qkv = NULL, *qb = NULL, *kb = NULL, *vb = NULL;
    const float *q, *k, *v;
    int64_t q_seq, q_row, k_seq, k_row, v_seq, v_row;
    if (fused) {
      qkv = rnd((int64_t)S * lq * 3 * C, -sp, sp);
      q = qkv, k = qkv + C, v = qkv + 2 * C;
      q_row = k_row = v_row = 3 * C;
      q_seq = k_seq = v_seq = (int64_t)lq * 3 * C;
    } else {
      qb = rnd((int64_t)S * lq * C, -sp, sp), kb = rnd((int64_t)S * lk * C, -sp, sp);
      vb = rnd((int64_t)S * lk * C, -sp, sp);
      q = qb, k = kb, v = vb;
      q_row = k_row = v_row = C;
      q_seq = (int64_t)lq * C, k_seq = v_seq = (int64_t)lk * C;
    }
    int64_t o_row = C + 3, o_seq = (int64_t)lq * o_row, no = (int64_t)S * o_seq;
    float *o = rnd(no, 5, 6);
    double *r = dalloc(no), *sc = dalloc(lk);
    float scale = 1.0f / sqrtf((float)hd);
    for (int s = 0; s < S; s++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < lq; i++) {
          const float *qi = q + s * q_seq + i * q_row + h * hd;
          double mx = -1e300, sum = 0;
          for (int j = 0; j < lk; j++) {
            const float *kj = k + s * k_seq + j * k_row + h * hd;
            double d = 0;
            for (int e = 0; e < hd; e++) d += (double)qi[e] * kj[e];
            sc[j] = d * scale;
            if (sc[j] > mx) mx = sc[j];
          }
          for (int j = 0; j < lk; j++) sum += (sc[j] = exp(sc[j] - mx));
          for (int e = 0; e < hd; e++) {
            double acc = 0;
            for (int j = 0; j < lk; j++) acc += sc[j] * v[s * v_seq + j * v_row + h * hd + e];
            r[s * o_seq + i * o_row + h * hd + e] = acc / sum;
          }
        }
    op_attention(o, o_seq, o_row, q, q_seq, q_row, k, k_seq, k_row, v, v_seq, v_row, S, lq, lk, H, hd, scale);
    // compare only the written columns; the padding of each output row must stay untouched
    double emax = 0, rmax = 0;
    int pad_ok = 1;
    for (int64_t row = 0; row < (int64_t)S * lq; row++) {
      for (int c = 0; c < C; c++) {
        double e = fabs(o[row * o_row + c] - r[row * o_row + c]);
        if (!(e <= emax)) emax = e;
        if (fabs(r[row * o_row + c]) > rmax) rmax = fabs(r[row * o_row + c]);
      }
      for (int c = C; c < o_row; c++) pad_ok &= o[row * o_row + c] >= 5 && o[row * o_row + c] < 6;
    }
    char name[200];
    snprintf(name, sizeof name, "attention[%s] nseq=%d lq=%d lk=%d heads=%d hd=%d%s%s", g_isa, S, lq, lk, H, hd,
             fused ? " (fused qkv strides)" : "", sp > 1 ? " (peaked softmax)" : "");
    check(name, pad_ok ? emax / rmax : 1e9, 2e-5);
    free(qkv), free(qb), free(kb), free(vb), free(o), free(r), free(sc);
  }
}

// ---------------------------------------------------------------------------------------------------
// element-wise ops
// ---------------------------------------------------------------------------------------------------
static double gelu_d(double g) { return 0.5 * g * (1.0 + erf(g / sqrt(2.0))); }

static void test_elementwise(void) {
  const int64_t n = 1000003;  // odd, and large enough to take the parallel path
  float *x = rnd(n, -8, 8), *a = rnd(n, -3, 3), *y = rnd(n, 5, 6);
  double *r = dalloc(n);

  for (int64_t i = 0; i < n; i++) r[i] = x[i] / (1.0 + exp(-(double)x[i]));
  op_silu(y, x, n);
  check("silu n=1000003", relerr(y, r, n), 1e-6);

  for (int64_t i = 0; i < n; i++) r[i] = gelu_d(x[i]);
  op_gelu(y, x, n);
  check("gelu (erf) n=1000003", relerr(y, r, n), 1e-6);

  for (int64_t i = 0; i < n; i++) r[i] = x[i] / (1.0 + exp(-1.702 * x[i]));
  op_quick_gelu(y, x, n);
  check("quick_gelu n=1000003", relerr(y, r, n), 1e-6);

  for (int64_t i = 0; i < n; i++) r[i] = (double)x[i] + a[i];
  op_add(y, x, a, n);
  check("add n=1000003", relerr(y, r, n), 1e-7);

  for (int64_t i = 0; i < n; i++) r[i] = 0.3 * x[i] + 0.7 * a[i];
  op_blend(y, x, a, 0.3f, n);
  check("blend alpha=0.3", relerr(y, r, n), 1e-6);

  // in-place silu
  memcpy(y, x, n * sizeof(float));
  for (int64_t i = 0; i < n; i++) r[i] = x[i] / (1.0 + exp(-(double)x[i]));
  op_silu(y, y, n);
  check("silu in-place", relerr(y, r, n), 1e-6);

  // GEGLU: [M, 2H] -> [M, H]
  {
    int M = 37, H = 1281;
    float *g = rnd((int64_t)M * 2 * H, -4, 4), *gy = rnd((int64_t)M * H, 5, 6);
    double *gr = dalloc((int64_t)M * H);
    for (int m = 0; m < M; m++)
      for (int j = 0; j < H; j++)
        gr[(int64_t)m * H + j] = g[(int64_t)m * 2 * H + j] * gelu_d(g[(int64_t)m * 2 * H + H + j]);
    op_geglu(gy, g, M, H);
    check("geglu M=37 H=1281", relerr(gy, gr, (int64_t)M * H), 1e-6);
    free(g), free(gy), free(gr);
  }
  // broadcast add: [rows, C, inner] += v[rows, C]
  {
    int rows = 3, C = 17;
    int64_t inner = 1001, nn = rows * C * inner;
    float *b = rnd(nn, -1, 1), *v = rnd(rows * C, -1, 1);
    double *br = dalloc(nn);
    for (int64_t i = 0; i < nn; i++) br[i] = (double)b[i] + v[i / inner];
    op_add_bcast(b, v, rows, C, inner);
    check("add_bcast rows=3 C=17 inner=1001", relerr(b, br, nn), 1e-7);
    free(b), free(v), free(br);
    // inner = 1 (bias per column of a [rows, C] matrix)
    b = rnd(40 * 33, -1, 1), v = rnd(40 * 33, -1, 1), br = dalloc(40 * 33);
    for (int i = 0; i < 40 * 33; i++) br[i] = (double)b[i] + v[i];
    op_add_bcast(b, v, 40, 33, 1);
    check("add_bcast inner=1", relerr(b, br, 40 * 33), 1e-7);
    free(b), free(v), free(br);
  }
  free(x), free(a), free(y), free(r);
}

static void test_timestep_embedding(void) {
  // t up to 1000: the argument t·freq is rounded to float (as in PyTorch), an absolute error up to
  // ~6e-5 in cos/sin, hence the tolerance.
  float t[5] = {0.0f, 1.0f, 7.5f, 333.25f, 999.0f};
  int dims[2] = {320, 7};
  for (int di = 0; di < 2; di++) {
    int dim = dims[di], half = dim / 2;
    float *y = rnd(5 * dim, 5, 6);
    double *r = dalloc(5 * dim);
    for (int i = 0; i < 5; i++) {
      for (int k = 0; k < half; k++) {
        double e = t[i] * exp(-log(10000.0) * k / half);
        r[i * dim + k] = cos(e);
        r[i * dim + half + k] = sin(e);
      }
      if (dim & 1) r[i * dim + dim - 1] = 0;
    }
    op_timestep_embedding(y, t, 5, dim);
    char name[100];
    snprintf(name, sizeof name, "timestep_embedding dim=%d t=0..999", dim);
    check(name, relerr(y, r, 5 * dim), 2e-4);
    free(y), free(r);
  }
}

static void test_upsample(void) {
  // (h, w) -> (ho, wo): the ×2 used by the UNet, identity, and non-integer ratios
  static const int cases[][4] = {{7, 5, 14, 10}, {1, 1, 2, 2}, {3, 4, 3, 4}, {5, 3, 3, 7}, {4, 6, 9, 13}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int n = 2, c = 3, h = cases[t][0], w = cases[t][1], ho = cases[t][2], wo = cases[t][3];
    int64_t ny = (int64_t)n * c * ho * wo;
    float *x = rnd((int64_t)n * c * h * w, -1, 1), *y = rnd(ny, 5, 6);
    double *r = dalloc(ny);
    for (int p = 0; p < n * c; p++)
      for (int i = 0; i < ho; i++)
        for (int j = 0; j < wo; j++) {
          int si = (int)((int64_t)i * h / ho), sj = (int)((int64_t)j * w / wo);  // floor(dst·in/out)
          r[((int64_t)p * ho + i) * wo + j] = x[((int64_t)p * h + si) * w + sj];
        }
    op_upsample_nearest(y, x, n, c, h, w, ho, wo);
    char name[100];
    snprintf(name, sizeof name, "upsample_nearest %dx%d -> %dx%d", h, w, ho, wo);
    check(name, relerr(y, r, ny), 0);
    free(x), free(y), free(r);
  }
}

static void test_transpose(void) {
  static const int cases[][4] = {{2, 37, 45, 1}, {3, 5, 70, 3}, {1, 1, 9, 2}, {2, 64, 33, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int A = cases[t][0], B = cases[t][1], C = cases[t][2], D = cases[t][3];
    int64_t n = (int64_t)A * B * C * D;
    float *x = rnd(n, -1, 1), *y = rnd(n, 5, 6);
    double *r = dalloc(n);
    for (int a = 0; a < A; a++)
      for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
          for (int d = 0; d < D; d++)
            r[(((int64_t)a * C + c) * B + b) * D + d] = x[(((int64_t)a * B + b) * C + c) * D + d];
    op_transpose_0213(y, x, A, B, C, D);
    char name[100];
    snprintf(name, sizeof name, "transpose_0213 [%d,%d,%d,%d]", A, B, C, D);
    check(name, relerr(y, r, n), 0);
    free(x), free(y), free(r);
  }
}

// Every output element is summed in one fixed order: the result of a row must not depend on the
// other rows of the batch nor on the thread count.
static void test_invariance(void) {
  int M = 37, K = 700, N = 90;
  float *x = rnd((int64_t)M * K, -1, 1), *w = rnd((int64_t)N * K, -1, 1), *b = rnd(N, -1, 1);
  float *y = rnd((int64_t)M * N, 5, 6), *y2 = rnd((int64_t)M * N, 5, 6), *y1 = rnd((int64_t)2 * N, 5, 6);
  op_linear(y, x, w, b, M, K, N);
  op_linear(y1, x + (int64_t)20 * K, w, b, 2, K, N);  // rows 20, 21 alone
  int nth = omp_get_max_threads();
  omp_set_num_threads(1);
  op_linear(y2, x, w, b, M, K, N);
  omp_set_num_threads(nth);
  int same_rows = !memcmp(y1, y + (int64_t)20 * N, (size_t)2 * N * sizeof(float));
  int same_thr = !memcmp(y, y2, (size_t)M * N * sizeof(float));
  if (same_rows && same_thr) {
    printf("ok - linear bit-identical for a 2-row batch and for 1 vs %d threads\n", nth);
  } else {
    printf("FAIL - linear not batch/thread invariant (rows %s, threads %s)\n", same_rows ? "same" : "differ",
           same_thr ? "same" : "differ");
    n_fail++;
  }
  free(x), free(w), free(b), free(y), free(y2), free(y1);
  // the same for a convolution over a batch of images, with images narrower than a tile (staged) and not
  for (int s = 0; s < 2; s++) {
    int n = 3, cin = 40, h = s ? 8 : 5, wd = s ? 4 : 3, cout = 30, P = h * wd;
    float *xc = rnd((int64_t)n * cin * P, -1, 1), *wc = rnd((int64_t)cout * cin * 9, -1, 1), *bc = rnd(cout, -1, 1);
    float *yn = rnd((int64_t)n * cout * P, 5, 6), *yo = rnd((int64_t)cout * P, 5, 6);
    op_conv2d(yn, xc, wc, bc, n, cin, h, wd, cout, 3, 3, 1, 1, 1, 1, 1);
    op_conv2d(yo, xc + (int64_t)cin * P, wc, bc, 1, cin, h, wd, cout, 3, 3, 1, 1, 1, 1, 1);  // image 1 alone
    int same = !memcmp(yo, yn + (int64_t)cout * P, (size_t)cout * P * sizeof(float));
    printf("%s - conv2d %dx%d: image 1 of a 3-image batch bit-identical to it alone\n", same ? "ok" : "FAIL", h, wd);
    n_fail += !same;
    free(xc), free(wc), free(bc), free(yn), free(yo);
  }
}

int main(void) {
  const char *isas[3] = {"generic", "avx2", NULL};  // NULL: the default choice (best available)
  for (int i = 0; i < 3; i++) {
    if (isas[i])
      setenv("VDP_ISA", isas[i], 1);
    else
      unsetenv("VDP_ISA");
    g_isa = isas[i] ? isas[i] : "default";
    test_linear(g_isa);
    test_attention();
    test_backend_packed(g_isa);
    if (isas[i]) {  // conv, the other GEMM user, once per forced kernel
      float *x = rnd(2 * 5 * 7 * 9, -1, 1), *w = rnd(11 * 5 * 9, -1, 1), *y = rnd(2 * 11 * 63, 5, 6);
      double *r = dalloc(2 * 11 * 63);
      op_conv2d(y, x, w, NULL, 2, 5, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1);
      ref_conv2d(r, x, w, NULL, 2, 5, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1);
      char name[100];
      snprintf(name, sizeof name, "conv2d[%s] 3x3 7x9", isas[i]);
      check(name, relerr(y, r, 2 * 11 * 63), 1e-5);
      free(x), free(w), free(y), free(r);
    }
  }
  unsetenv("VDP_ISA");
  g_isa = "default";
  test_invariance();
  test_conv2d();
  test_conv_temporal();
  test_groupnorm();
  test_layernorm();
  test_elementwise();
  test_timestep_embedding();
  test_upsample();
  test_transpose();
  return n_fail ? 1 : 0;
}
