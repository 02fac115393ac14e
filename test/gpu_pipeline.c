// gpu_pipeline.c — the CUDA backend (kernels.cu: backend_cuda) against the CPU backend (ops.c) and the
// diffusers goldens, through the one model graph of model.c. Built and run by test/run_gpu_tests.sh on a
// machine with a GPU; it is deliberately not named test/test_*.c, so the CPU suite (CI, no GPU) never
// builds or runs it.
//
//   1. ops: every Backend entry on small random tensors, with the aliasing model.c relies on (res == y,
//      in-place norms / act / add / blend / add_rows), weights stored through weight_store (the
//      convolution re-layout, 4-D and the temporal 5-D shape, the direct path for CLIP's patch conv);
//   2. models: clip_forward, vae_encode, unet_forward, vae_decode_chunk on the golden inputs of
//      test/data/golden/*, CUDA vs the CPU backend on the same fp32 .vdpw (vs diffusers printed as info);
//   3. generate: `./vdp generate --device cuda --dump` on one case: frames vs diffusers' frames, the
//      host-drawn noises bit-exact.
//
// ONE bound for every comparison (fp16 storage and weights, fp32 accumulation):
//     err = max|cuda - ref| / max(1, max|ref|)  <=  TOL = 1e-2   (VDP_GPU_TOL overrides it)
// i.e. absolute for values of order one (frames in [0,1]: 2.5/255) and relative for large ones. Why not
// tighter: fp16 storage alone costs more than 2e-3 here. `--emulate` (every weight, input and op output
// rounded to fp16, exact fp32 math otherwise) measures 0.3–0.8e-3 per op, up to 2.4e-3 on the tiny
// forward passes and 3.0e-3 on tiny3_resize's frames after 3 steps; 1e-2 leaves ~3x for the kernels' own
// fp16 intermediates (flash attention's P, the single-key cross-attention projections). A wiring error
// (wrong argument, layout, alias) shows up as O(1).
//
// Usage: gpu_pipeline [--emulate] [--only ops|models|pipeline|cli|generate] [--case NAME] [--vdp PATH] [--profile]
//   --only     comma-separated steps: ops (1), models (2), pipeline (3a), cli (3b); generate = 3a + 3b
//   --case     run steps 2 and 3 on this golden case only (test/data/golden/NAME)
//   --emulate  no GPU needed: the tested backend is the CPU one with every stored weight, uploaded input
//              and op output rounded to fp16. Checks this program itself and estimates the fp16 error
//              (the generate step then runs --device cpu). Not the SIMT emulator: built against
//              test/simt/ (make test-simt-full), this program tests the real kernels on the CPU.
//   --vdp      the vdp binary for step 3 (default ./vdp; the SIMT build passes build/simt/vdp)
//   --profile  step 3 also checks the SIMT emulator's per-step counters (SIMT_PROFILE=1): no copy in any
//              step, one graph launch per step with --cuda-graph on, none with off
// Output: "ok - NAME ..." / "FAIL - NAME ...", "# info ..." lines, then "N passed, N failed".
#include "../kernels.h"
#include "../model.h"
#include "golden.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double TOL = 1e-2;
static int n_pass = 0, n_fail = 0, emulate = 0;
static const Backend *G;                      // the backend under test
static const Backend *R = &backend_cpu;       // the fp32 reference
static char tmpdir[256];
static const char *only_case = NULL;  // --case: the one golden case of steps 2 and 3
static const char *vdp_bin = "./vdp";  // the binary run_generate runs (--vdp: e.g. the SIMT emulator's build)

// ---------------------------------------------------------------------------------------------------
// The fp16-emulating CPU backend (--emulate)
// ---------------------------------------------------------------------------------------------------
static void r16(void *p, int64_t n) {
  float *x = p;
  for (int64_t i = 0; i < n; i++) x[i] = half_to_float(float_to_half(x[i]));
}
static void em_weight_store(void *dst, const float *src, int kind, int ndim, const int64_t *shape) {
  backend_cpu.weight_store(dst, src, kind, ndim, shape);
  r16(dst, backend_cpu.weight_elems(kind, ndim, shape));
}
static void em_to_device(void *dst, const float *src, int64_t n) { backend_cpu.to_device(dst, src, n), r16(dst, n); }
static void em_linear(void *y, const void *x, const void *w, const void *b, int M, int K, int N, int act, const void *res) {
  backend_cpu.linear(y, x, w, b, M, K, N, act, res), r16(y, (int64_t)M * N);
}
static void em_conv2d(void *y, const void *x, const void *w, const void *b, int n, int cin, int h, int wd, int cout,
                      int kh, int kw, int stride, int pt, int pl, int pb, int pr, const void *ca, const void *res) {
  backend_cpu.conv2d(y, x, w, b, n, cin, h, wd, cout, kh, kw, stride, pt, pl, pb, pr, ca, res);
  r16(y, (int64_t)n * cout * ((h + pt + pb - kh) / stride + 1) * ((wd + pl + pr - kw) / stride + 1));
}
static void em_conv_temporal(void *y, const void *x, const void *w, const void *b, int nb, int nf, int cin, int hw,
                             int cout, const void *ca, const void *res) {
  backend_cpu.conv_temporal(y, x, w, b, nb, nf, cin, hw, cout, ca, res), r16(y, (int64_t)nb * nf * cout * hw);
}
static void em_groupnorm(void *y, const void *x, const void *g, const void *b, int nb, int nf, int c, int hw, int groups,
                         float eps, int silu) {
  backend_cpu.groupnorm(y, x, g, b, nb, nf, c, hw, groups, eps, silu), r16(y, (int64_t)nb * nf * c * hw);
}
static void em_layernorm(void *y, const void *x, const void *g, const void *b, int M, int C, float eps) {
  backend_cpu.layernorm(y, x, g, b, M, C, eps), r16(y, (int64_t)M * C);
}
static void em_attention(void *o, int64_t o_seq, int64_t o_row, const void *q, int64_t q_seq, int64_t q_row,
                         const void *k, int64_t k_seq, int64_t k_row, const void *v, int64_t v_seq, int64_t v_row,
                         int nseq, int lq, int lk, int heads, int hd, float scale) {
  backend_cpu.attention(o, o_seq, o_row, q, q_seq, q_row, k, k_seq, k_row, v, v_seq, v_row, nseq, lq, lk, heads, hd, scale);
  for (int s = 0; s < nseq; s++)
    for (int l = 0; l < lq; l++) r16((float *)o + s * o_seq + l * o_row, (int64_t)heads * hd);
}
static void em_cross(void *y, const void *res, const void *ctx, const void *wv, const void *wo, const void *bo, int nctx,
                     int ctx_dim, int C, int64_t rpc) {
  backend_cpu.cross_attn_1key(y, res, ctx, wv, wo, bo, nctx, ctx_dim, C, rpc), r16(y, nctx * rpc * C);
}
static void em_act(void *y, const void *x, int64_t n, int act) { backend_cpu.act(y, x, n, act), r16(y, n); }
static void em_add(void *y, const void *a, const void *b, int64_t n) { backend_cpu.add(y, a, b, n), r16(y, n); }
static void em_add_bcast(void *y, const void *v, int rows, int C, int64_t inner) {
  backend_cpu.add_bcast(y, v, rows, C, inner), r16(y, rows * C * inner);
}
static void em_add_rows(void *y, const void *v, int groups, int64_t group, int C) {
  backend_cpu.add_rows(y, v, groups, group, C), r16(y, groups * group * C);
}
static void em_blend(void *y, const void *a, const void *b, float alpha, int64_t n) {
  backend_cpu.blend(y, a, b, alpha, n), r16(y, n);
}
static void em_temb(void *y, const float *t, const int *step, int stride, int n, int dim) {
  backend_cpu.timestep_embedding(y, t, step, stride, n, dim), r16(y, (int64_t)n * dim);
}
static void em_step_input(void *xin, const float *x, const void *img, const StepTables *t, int B, int F, int64_t chw) {
  backend_cpu.step_input(xin, x, img, t, B, F, chw), r16(xin, (int64_t)B * F * 2 * chw);  // an fp16 tensor
}

static Backend em_backend(void) {
  Backend b = backend_cpu;
  b.name = "cpu-fp16-emulation";
  b.weight_store = em_weight_store, b.to_device = em_to_device;
  b.linear = em_linear, b.conv2d = em_conv2d, b.conv_temporal = em_conv_temporal, b.groupnorm = em_groupnorm;
  b.layernorm = em_layernorm, b.attention = em_attention, b.cross_attn_1key = em_cross, b.act = em_act;
  b.add = em_add, b.add_bcast = em_add_bcast, b.add_rows = em_add_rows, b.blend = em_blend;
  b.step_input = em_step_input;    // step_update writes the fp32 latent: no rounding
  b.timestep_embedding = em_temb;  // copy, concat, upsample, transpose move fp16 values: no rounding needed
  return b;
}

// ---------------------------------------------------------------------------------------------------
// Comparison (the one rule above)
// ---------------------------------------------------------------------------------------------------
static double compare(const char *what, const float *got, const float *ref, int64_t n, int exact, int info) {
  GoldenDiff d = golden_diff(got, ref, n);
  int ok = golden_ok(&d, exact, TOL);
  if (!info) ok ? n_pass++ : n_fail++;
  golden_print(info ? "# info -" : ok ? "ok -" : "FAIL -", what, &d, exact, TOL);
  return d.err;
}

static const char *convert_or_fail(const char *model) {
  const char *vdpw = convert_model(tmpdir, model);
  if (!vdpw) printf("FAIL - convert %s\n", model), n_fail++;
  return vdpw;
}

// ---------------------------------------------------------------------------------------------------
// 1. ops: a tensor held on both backends; BOTH(stmt) runs stmt on the tested backend, then on the CPU
// ---------------------------------------------------------------------------------------------------
typedef struct { int64_t n; float *h; void *g, *r; } Tn;
static int g_side;  // 0: G, 1: R
#define P(t) (g_side ? (t).r : (t).g)
#define BOTH(stmt)                                \
  do {                                            \
    for (g_side = 0; g_side < 2; g_side++) {      \
      const Backend *be = g_side ? R : G;         \
      stmt;                                       \
    }                                             \
  } while (0)
static const Tn NONE_T = {0, NULL, NULL, NULL};

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float urand(void) {  // uniform in [-1, 1)
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *host_rand(int64_t n, float scale) {  // fp16-representable values: both sides see the same
  float *h = vdp_malloc((size_t)n * sizeof(float), "test data");
  for (int64_t i = 0; i < n; i++) h[i] = half_to_float(float_to_half(scale * urand()));
  return h;
}
static void *up(const Backend *be, const float *h, int64_t n) {
  void *p = be->mem_alloc((size_t)n * be->elem_size, "test tensor");
  be->to_device(p, h, n);
  return p;
}
static Tn tn_in(int64_t n, float scale) {
  Tn t = {n, host_rand(n, scale), NULL, NULL};
  t.g = up(G, t.h, n), t.r = up(R, t.h, n);
  return t;
}
static void tn_set(Tn *t) {  // t->h changed on the host: round to fp16 and upload to both backends
  for (int64_t i = 0; i < t->n; i++) t->h[i] = half_to_float(float_to_half(t->h[i]));
  G->to_device(t->g, t->h, t->n), R->to_device(t->r, t->h, t->n);
}
static Tn tn_out(int64_t n) {  // poisoned with NaN: an element the op does not write fails the check
  Tn t = {n, vdp_malloc((size_t)n * sizeof(float), "test data"), NULL, NULL};
  for (int64_t i = 0; i < n; i++) t.h[i] = NAN;
  t.g = up(G, t.h, n), t.r = up(R, t.h, n);
  return t;
}
static Tn tn_w(int kind, int ndim, const int64_t *shape, float scale) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  Tn t = {n, host_rand(n, scale), NULL, NULL};
  const Backend *bes[2] = {G, R};
  for (int s = 0; s < 2; s++) {
    void *p = bes[s]->mem_alloc((size_t)bes[s]->weight_elems(kind, ndim, shape) * bes[s]->elem_size, "test weight");
    bes[s]->weight_store(p, t.h, kind, ndim, shape);
    *(s ? &t.r : &t.g) = p;
  }
  return t;
}
static void tn_free(Tn *t) {
  if (t->g) G->mem_free(t->g);
  if (t->r) R->mem_free(t->r);
  free(t->h);
  memset(t, 0, sizeof *t);
}
static float *f32_up(const Backend *be, const float *h, int64_t n) {  // raw fp32 in backend memory
  float *p = be->mem_alloc((size_t)n * sizeof(float), "test table");
  be->upload_bytes(p, h, (size_t)n * sizeof(float));
  return p;
}
static int *int_up(const Backend *be, int v) {
  int *p = be->mem_alloc(sizeof(int), "test counter");
  be->upload_bytes(p, &v, sizeof v);
  return p;
}
static void check(const char *name, const Tn *t);
static double compare(const char *what, const float *got, const float *ref, int64_t n, int exact, int info);

// The step ops at row 1 of a 3-step table: the UNet input, then guidance + Euler on an fp32 latent, and the
// counter's advance. Both sides get the same fp16 inputs, so the update must agree to fp32 rounding.
static void step_ops_case(int B, int F, int64_t chw) {
  char name[96];
  float sched[3 * SCH_COLS] = {0}, g[16];
  for (int i = 0; i < 3; i++) {
    float sigma = 10.0f / (float)(i + 1), next = i == 2 ? 0.0f : 10.0f / (float)(i + 2), *r = sched + i * SCH_COLS;
    r[SCH_SIGMA] = sigma, r[SCH_SIGMA_NEXT] = next, r[SCH_T] = 0.25f * logf(sigma);
    r[SCH_C_IN] = sqrtf(sigma * sigma + 1.0f), r[SCH_C_OUT] = -sigma / sqrtf(sigma * sigma + 1.0f);
    r[SCH_C_SKIP_DIV] = sigma * sigma + 1.0f, r[SCH_DT] = next - sigma;
  }
  for (int f = 0; f < F; f++) g[f] = 1.0f + 0.75f * (float)f;
  float *lat = host_rand((int64_t)F * chw, 8.0f);
  float *latd[2], *schd[2], *gd[2];
  int *stepd[2];
  StepTables tab[2];
  for (int s = 0; s < 2; s++) {
    const Backend *be = s ? R : G;
    latd[s] = f32_up(be, lat, (int64_t)F * chw), schd[s] = f32_up(be, sched, 3 * SCH_COLS), gd[s] = f32_up(be, g, F);
    stepd[s] = int_up(be, 1);
    tab[s] = (StepTables){SAMPLER_EULER_V, 3, schd[s], gd[s], stepd[s]};
  }
  Tn img = tn_in((int64_t)B * chw, 1.0f), xin = tn_out((int64_t)B * F * 2 * chw), v = tn_in((int64_t)B * F * chw, 1.0f);
  BOTH(be->step_input(P(xin), latd[g_side], P(img), &tab[g_side], B, F, chw));
  snprintf(name, sizeof name, "step_input_b%d_f%d_chw%lld", B, F, (long long)chw);
  check(name, &xin);
  BOTH(be->step_update(latd[g_side], P(v), &tab[g_side], B, F, chw));
  float *a = vdp_malloc((size_t)F * chw * sizeof(float), "check"), *b = vdp_malloc((size_t)F * chw * sizeof(float), "check");
  G->download_bytes(a, latd[0], (size_t)F * chw * sizeof(float)), R->download_bytes(b, latd[1], (size_t)F * chw * sizeof(float));
  snprintf(name, sizeof name, "op step_update_euler_b%d_f%d_chw%lld (fp32 latent)", B, F, (long long)chw);
  compare(name, a, b, (int64_t)F * chw, 0, 0);
  int sa = -1, sb = -1;
  G->download_bytes(&sa, stepd[0], sizeof sa), R->download_bytes(&sb, stepd[1], sizeof sb);
  if (sa == 2 && sb == 2) printf("ok - op step_update advances the step counter 1 -> 2\n"), n_pass++;
  else printf("FAIL - op step_update: step counter %d (tested) / %d (cpu), expected 2\n", sa, sb), n_fail++;
  free(a), free(b), free(lat);
  tn_free(&img), tn_free(&xin), tn_free(&v);
  for (int s = 0; s < 2; s++) {
    const Backend *be = s ? R : G;
    be->mem_free(latd[s]), be->mem_free(schd[s]), be->mem_free(gd[s]), be->mem_free(stepd[s]);
  }
}

static void check(const char *name, const Tn *t) {
  float *a = vdp_malloc((size_t)t->n * sizeof(float), "check"), *b = vdp_malloc((size_t)t->n * sizeof(float), "check");
  G->to_host(a, t->g, t->n), R->to_host(b, t->r, t->n);
  char what[160];
  snprintf(what, sizeof what, "op %s", name);
  compare(what, a, b, t->n, 0, 0);
  free(a), free(b);
}

static void op_linear_case(const char *name, int M, int K, int N, int act, int bias, int res_mode) {
  // res_mode 0: none, 1: a separate residual, 2: res == y (y holds the residual stream)
  int wide = act == ACT_GEGLU ? 2 * N : N;
  Tn x = tn_in((int64_t)M * K, 1.0f), w = tn_w(WEIGHT_LINEAR, 2, (int64_t[]){wide, K}, 1.0f / sqrtf((float)K));
  Tn b = bias ? tn_in(wide, 0.5f) : NONE_T, res = res_mode == 1 ? tn_in((int64_t)M * N, 1.0f) : NONE_T;
  Tn y = res_mode == 2 ? tn_in((int64_t)M * N, 1.0f) : tn_out((int64_t)M * N);
  BOTH(be->linear(P(y), P(x), P(w), P(b), M, K, N, act, res_mode == 2 ? P(y) : P(res)));
  check(name, &y);
  tn_free(&x), tn_free(&w), tn_free(&b), tn_free(&res), tn_free(&y);
}

static void op_conv_case(const char *name, int n, int cin, int h, int wd, int cout, int k, int stride, int pt, int pl,
                         int pb, int pr, int cadd, int res_on) {
  int ho = (h + pt + pb - k) / stride + 1, wo = (wd + pl + pr - k) / stride + 1;
  Tn x = tn_in((int64_t)n * cin * h * wd, 1.0f);
  Tn w = tn_w(WEIGHT_CONV, 4, (int64_t[]){cout, cin, k, k}, 1.0f / sqrtf((float)cin * k * k));
  Tn b = tn_in(cout, 0.5f), ca = cadd ? tn_in((int64_t)n * cout, 1.0f) : NONE_T;
  Tn res = res_on ? tn_in((int64_t)n * cout * ho * wo, 1.0f) : NONE_T, y = tn_out((int64_t)n * cout * ho * wo);
  BOTH(be->conv2d(P(y), P(x), P(w), P(b), n, cin, h, wd, cout, k, k, stride, pt, pl, pb, pr, P(ca), P(res)));
  check(name, &y);
  tn_free(&x), tn_free(&w), tn_free(&b), tn_free(&ca), tn_free(&res), tn_free(&y);
}

static void run_ops(void) {
  printf("# 1. Backend entries: %s vs %s\n", G->name, R->name);
  op_linear_case("linear_37x40x24_bias", 37, 40, 24, ACT_NONE, 1, 0);
  op_linear_case("linear_300x64x64_silu", 300, 64, 64, ACT_SILU, 1, 0);
  op_linear_case("linear_33x40x37_gelu_nobias", 33, 40, 37, ACT_GELU, 0, 0);
  op_linear_case("linear_50x32x40_quick_gelu", 50, 32, 40, ACT_QUICK_GELU, 1, 0);
  op_linear_case("linear_70x32x48_geglu", 70, 32, 48, ACT_GEGLU, 1, 0);
  op_linear_case("linear_70x32x48_res", 70, 32, 48, ACT_NONE, 1, 1);
  op_linear_case("linear_70x128x32_res_is_y", 70, 128, 32, ACT_NONE, 1, 2);
  op_linear_case("linear_40x24x16_geglu_res_is_y", 40, 24, 16, ACT_GEGLU, 1, 2);
  op_conv_case("conv3x3_n2_c5_9x7_to12_chan_add_res", 2, 5, 9, 7, 12, 3, 1, 1, 1, 1, 1, 1, 1);
  op_conv_case("conv3x3s2_vae_pad0011_c8_16x16_to16", 1, 8, 16, 16, 16, 3, 2, 0, 0, 1, 1, 0, 0);
  op_conv_case("conv3x3s2_unet_pad1111_c16_9x11_to16", 3, 16, 9, 11, 16, 3, 2, 1, 1, 1, 1, 0, 0);
  op_conv_case("conv1x1_shortcut_c16_6x5_to8", 2, 16, 6, 5, 8, 1, 1, 0, 0, 0, 0, 0, 0);
  op_conv_case("conv_patch_k8s8_c3_32x32_to24 (direct path)", 1, 3, 32, 32, 24, 8, 8, 0, 0, 0, 0, 0, 0);
  op_conv_case("conv_patch_k14s14_c3_28x42_to16 (direct path)", 1, 3, 28, 42, 16, 14, 14, 0, 0, 0, 0, 0, 0);
  op_conv_case("conv_k4s4_c5_12x12_to7_chan_add_res (direct path)", 2, 5, 12, 12, 7, 4, 4, 0, 0, 0, 0, 1, 1);
  {  // temporal conv: 5-D weight [cout, cin, 3, 1, 1], chan_add [(nb nf), cout], residual
    int nb = 2, nf = 3, cin = 6, hw = 20, cout = 10;
    Tn x = tn_in((int64_t)nb * nf * cin * hw, 1.0f), w = tn_w(WEIGHT_CONV, 5, (int64_t[]){cout, cin, 3, 1, 1}, 0.3f);
    Tn b = tn_in(cout, 0.5f), ca = tn_in((int64_t)nb * nf * cout, 1.0f), res = tn_in((int64_t)nb * nf * cout * hw, 1.0f);
    Tn y = tn_out((int64_t)nb * nf * cout * hw);
    BOTH(be->conv_temporal(P(y), P(x), P(w), P(b), nb, nf, cin, hw, cout, P(ca), P(res)));
    check("conv_temporal_nb2_f3_c6_hw20_to10_chan_add_res", &y);
    BOTH(be->conv_temporal(P(y), P(x), P(w), P(b), 1, nb * nf, cin, hw, cout, NULL, NULL));
    check("conv_temporal_nb1_f6_plain", &y);
    tn_free(&x), tn_free(&w), tn_free(&b), tn_free(&ca), tn_free(&res), tn_free(&y);
  }
  {  // norms, in place as model.c uses them
    int nb = 2, nf = 3, c = 64, hw = 15;
    Tn x = tn_in((int64_t)nb * nf * c * hw, 2.0f), g = tn_in(c, 1.0f), b = tn_in(c, 0.5f), y = tn_out(x.n);
    BOTH(be->groupnorm(P(y), P(x), P(g), P(b), nb * nf, 1, c, hw, 32, 1e-6f, 0));
    check("groupnorm_n6_c64_hw15", &y);
    BOTH(be->groupnorm(P(x), P(x), P(g), P(b), nb, nf, c, hw, 32, 1e-6f, 1));
    check("groupnorm_silu_temporal_nb2_f3_in_place", &x);
    tn_free(&x), tn_free(&g), tn_free(&b), tn_free(&y);
    int M = 17, C = 40;
    Tn u = tn_in((int64_t)M * C, 3.0f), lg = tn_in(C, 1.0f), lb = tn_in(C, 0.5f), v = tn_out(u.n);
    BOTH(be->layernorm(P(v), P(u), P(lg), P(lb), M, C, 1e-5f));
    check("layernorm_17x40", &v);
    BOTH(be->layernorm(P(u), P(u), P(lg), P(lb), M, C, 1e-5f));
    check("layernorm_17x40_in_place", &u);
    tn_free(&u), tn_free(&lg), tn_free(&lb), tn_free(&v);
  }
  {  // norms on structured inputs: random noise gives every frame and row the same statistics and a variance
     // that dwarfs eps, so a wiring error that pools the wrong frames or passes the wrong eps would pass.
     // Here each video's groups are a ramp across frames, channels and pixels plus a per-channel offset,
     // except one near-constant group (variance = eps); the LayerNorm rows alike.
    int nb = 2, nf = 3, c = 64, hw = 15, groups = 32, cpg = c / groups;
    Tn x = tn_in((int64_t)nb * nf * c * hw, 1.0f), g = tn_in(c, 1.0f), b = tn_in(c, 0.5f), y = tn_out(x.n);
    const float len = (float)(nf * cpg * hw - 1);
    for (int v = 0; v < nb; v++)
      for (int f = 0; f < nf; f++)
        for (int ch = 0; ch < c; ch++)
          for (int p = 0; p < hw; p++) {
            const int gr = ch / cpg, e = (f * cpg + ch % cpg) * hw + p;
            const float ramp = 2.0f * (float)e / len - 1.0f;
            x.h[(((int64_t)v * nf + f) * c + ch) * hw + p] =
                gr == 5 + v ? 0.01f + sqrtf(3e-6f) * ramp : ramp + 0.25f * (float)((ch * 7) % 5 - 2);
          }
    tn_set(&x);
    BOTH(be->groupnorm(P(y), P(x), P(g), P(b), nb, nf, c, hw, groups, 1e-6f, 1));
    check("groupnorm_silu_temporal_structured_nb2_f3_c64_hw15", &y);
    tn_free(&x), tn_free(&g), tn_free(&b), tn_free(&y);
    int M = 9, C = 40;
    Tn u = tn_in((int64_t)M * C, 1.0f), lg = tn_in(C, 1.0f), lb = tn_in(C, 0.5f), w = tn_out(u.n);
    for (int m = 0; m < M; m++)
      for (int i = 0; i < C; i++) {
        const float ramp = 2.0f * (float)i / (float)(C - 1) - 1.0f;
        u.h[(int64_t)m * C + i] = m % 3 == 1 ? 0.01f + sqrtf(3e-5f) * ramp : ramp + 0.25f * (float)((i * 7) % 5 - 2);
      }
    tn_set(&u);
    BOTH(be->layernorm(P(w), P(u), P(lg), P(lb), M, C, 1e-5f));
    check("layernorm_structured_9x40", &w);
    tn_free(&u), tn_free(&lg), tn_free(&lb), tn_free(&w);
  }
  {  // attention, the model's contiguous [nseq, L, C] layout: head dims 8 (warp kernel) and 64 (flash)
    const int cases[3][4] = {{3, 20, 2, 8}, {2, 70, 2, 64}, {40, 5, 2, 64}};  // nseq, L, heads, hd
    for (int i = 0; i < 3; i++) {
      int nseq = cases[i][0], L = cases[i][1], heads = cases[i][2], hd = cases[i][3], C = heads * hd;
      int64_t n = (int64_t)nseq * L * C, seq = (int64_t)L * C;
      Tn q = tn_in(n, 1.0f), k = tn_in(n, 1.0f), v = tn_in(n, 1.0f), o = tn_out(n);
      BOTH(be->attention(P(o), seq, C, P(q), seq, C, P(k), seq, C, P(v), seq, C, nseq, L, L, heads, hd,
                         1.0f / sqrtf((float)hd)));
      char name[96];
      snprintf(name, sizeof name, "attention_%dx%d_h%d_hd%d", nseq, L, heads, hd);
      check(name, &o);
      tn_free(&q), tn_free(&k), tn_free(&v), tn_free(&o);
    }
  }
  {  // single-key cross-attention, residual stream in place
    int nctx = 2, cd = 24, C = 16;
    int64_t rpc = 30;
    Tn ctx = tn_in((int64_t)nctx * cd, 1.0f), wv = tn_w(WEIGHT_LINEAR, 2, (int64_t[]){C, cd}, 0.2f);
    Tn wo = tn_w(WEIGHT_LINEAR, 2, (int64_t[]){C, C}, 0.25f), bo = tn_in(C, 0.5f), y = tn_in(nctx * rpc * C, 1.0f);
    BOTH(be->cross_attn_1key(P(y), P(y), P(ctx), P(wv), P(wo), P(bo), nctx, cd, C, rpc));
    check("cross_attn_1key_res_is_y", &y);
    tn_free(&ctx), tn_free(&wv), tn_free(&wo), tn_free(&bo), tn_free(&y);
  }
  {  // elementwise and data movement
    int64_t n = 1001;
    Tn a = tn_in(n, 3.0f), b = tn_in(n, 3.0f), y = tn_out(n);
    BOTH(be->act(P(y), P(a), n, ACT_NONE));
    check("act_none_is_copy", &y);
    BOTH(be->act(P(y), P(a), n, ACT_GELU));
    check("act_gelu", &y);
    BOTH(be->act(P(y), P(a), n, ACT_QUICK_GELU));
    check("act_quick_gelu", &y);
    BOTH(be->act(P(a), P(a), n, ACT_SILU));
    check("act_silu_in_place", &a);
    BOTH(be->add(P(a), P(a), P(b), n));
    check("add_in_place", &a);
    BOTH(be->blend(P(y), P(a), P(b), 0.3f, n));
    check("blend", &y);
    BOTH(be->blend(P(a), P(a), P(b), 0.7f, n));
    check("blend_y_is_a", &a);
    BOTH(be->blend(P(b), P(a), P(b), 0.2f, n));
    check("blend_y_is_b", &b);
    BOTH(be->copy(P(y), P(b), n - 1));
    check("copy", &y);
    tn_free(&a), tn_free(&b), tn_free(&y);

    Tn x = tn_in(3 * 5 * 7, 1.0f), v = tn_in(3 * 5, 1.0f);
    BOTH(be->add_bcast(P(x), P(v), 3, 5, 7));
    check("add_bcast_3x5x7", &x);
    tn_free(&x), tn_free(&v);
    x = tn_in(2 * 6 * 10, 1.0f), v = tn_in(2 * 10, 1.0f);
    BOTH(be->add_rows(P(x), P(v), 2, 6, 10));
    check("add_rows_g2_6x10", &x);
    tn_free(&x), tn_free(&v);
    Tn ca = tn_in(4 * 7, 1.0f), cb = tn_in(4 * 5, 1.0f), cy = tn_out(4 * 12);
    BOTH(be->concat_rows(P(cy), P(ca), 7, P(cb), 5, 4));
    check("concat_rows_4x(7|5)", &cy);
    tn_free(&ca), tn_free(&cb), tn_free(&cy);

    // timestep values in backend memory (fp32): plain, at a device-side row of a table, frame positions
    const float ts[6] = {0.0f, 1.5f, 700.0f, 6.0f, 127.0f, 0.02f};
    float *tsd[2] = {f32_up(G, ts, 6), f32_up(R, ts, 6)};
    const int row = 2;  // row 2 of a [3, 2] table: {127, 0.02}
    int *rowd[2] = {int_up(G, row), int_up(R, row)};
    Tn e = tn_out(3 * 33);
    BOTH(be->timestep_embedding(P(e), tsd[g_side], NULL, 0, 3, 33));
    check("timestep_embedding_n3_d33", &e);
    tn_free(&e);
    e = tn_out(6 * 16);
    BOTH(be->timestep_embedding(P(e), tsd[g_side], NULL, 0, 6, 16));
    check("timestep_embedding_n6_d16", &e);
    tn_free(&e);
    e = tn_out(2 * 17);
    BOTH(be->timestep_embedding(P(e), tsd[g_side], rowd[g_side], 2, 2, 17));
    check("timestep_embedding_table_row2_n2_d17", &e);
    tn_free(&e);
    e = tn_out(5 * 16);
    BOTH(be->timestep_embedding(P(e), NULL, NULL, 0, 5, 16));
    check("timestep_embedding_positions_n5_d16", &e);
    tn_free(&e);
    for (int s = 0; s < 2; s++) (s ? R : G)->mem_free(tsd[s]), (s ? R : G)->mem_free(rowd[s]);
    for (int B = 1; B <= 2; B++) step_ops_case(B, 3, 37);  // odd plane size

    Tn ux = tn_in(2 * 3 * 4 * 5, 1.0f), uy = tn_out(2 * 3 * 8 * 10);
    BOTH(be->upsample_nearest(P(uy), P(ux), 2, 3, 4, 5, 8, 10));
    check("upsample_nearest_x2", &uy);
    tn_free(&ux), tn_free(&uy);
    ux = tn_in(1 * 3 * 9 * 7, 1.0f), uy = tn_out(1 * 3 * 13 * 20);
    BOTH(be->upsample_nearest(P(uy), P(ux), 1, 3, 9, 7, 13, 20));
    check("upsample_nearest_9x7_to_13x20", &uy);
    tn_free(&ux), tn_free(&uy);

    Tn tx = tn_in(2 * 37 * 45, 1.0f), ty = tn_out(tx.n);
    BOTH(be->transpose_0213(P(ty), P(tx), 2, 37, 45, 1));
    check("transpose_0213_D1", &ty);
    tn_free(&tx), tn_free(&ty);
    tx = tn_in(2 * 3 * 5 * 6, 1.0f), ty = tn_out(tx.n);
    BOTH(be->transpose_0213(P(ty), P(tx), 2, 3, 5, 6));
    check("transpose_0213_D6", &ty);
    tn_free(&tx), tn_free(&ty);
  }
}

// ---------------------------------------------------------------------------------------------------
// 2. models on the golden inputs
// ---------------------------------------------------------------------------------------------------
static float *load(const char *dir, const char *name, int64_t *shape, int *ndim) {
  char path[1200], err[512];
  float *x = NULL;
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  if (access(path, R_OK)) return NULL;
  if (npy_load_f32(path, &x, shape, ndim, err, sizeof err)) {
    printf("FAIL - load %s: %s\n", path, err), n_fail++;
    return NULL;
  }
  return x;
}
// "key": value from case.json (a number), or def
static double case_num(const char *casedir, const char *key, double def) {
  char path[1200], buf[16384], pat[96];
  snprintf(path, sizeof path, "%s/case.json", casedir);
  FILE *f = fopen(path, "rb");
  if (!f) return def;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = 0;
  snprintf(pat, sizeof pat, "\"%s\":", key);
  char *p = strstr(buf, pat);
  if (!p) return def;
  char *end;
  double v = strtod(p + strlen(pat), &end);
  return end == p + strlen(pat) ? def : v;
}

// got (tested backend) vs ref (CPU backend): checked; got vs diffusers' golden: info
static void compare3(const char *name, const char *what, const float *got, const float *cpu, const float *golden,
                     int64_t n) {
  char s[300];
  snprintf(s, sizeof s, "%s/%s %s vs cpu", name, what, G->name);
  compare(s, got, cpu, n, 0, 0);
  if (golden) {
    snprintf(s, sizeof s, "%s/%s %s vs diffusers", name, what, G->name);
    compare(s, got, golden, n, 0, 1);
  }
}

static void check_case(const char *casedir, const char *name, const Models *mg, const Models *mr) {
  int64_t s1[8], s2[8], s3[8], s4[8], s5[8];
  int n1, n2, n3, n4, n5;
  // CLIP
  float *pix = load(casedir, "clip_pixel_values", s1, &n1), *emb = load(casedir, "image_embeds", s2, &n2);
  if (pix && emb) {
    int64_t n = numel(s2, n2);
    float *a = vdp_malloc((size_t)n * sizeof(float), "out"), *b = vdp_malloc((size_t)n * sizeof(float), "out");
    clip_forward(mg, pix, a), clip_forward(mr, pix, b);
    compare3(name, "clip_forward", a, b, emb, n);
    free(a), free(b);
  }
  free(pix), free(emb);
  // VAE encode: the pipeline's input = vae_input + noise_aug_strength · noise_aug
  float *vin = load(casedir, "vae_input", s1, &n1), *nz = load(casedir, "noise_aug", s2, &n2);
  float *lat = load(casedir, "image_latents", s3, &n3);
  if (vin && nz && lat && n1 == 4) {
    float aug = (float)case_num(casedir, "noise_aug_strength", 0.02);
    for (int64_t i = 0; i < numel(s1, n1); i++) vin[i] = vin[i] + aug * nz[i];
    int64_t n = numel(s3, n3);
    float *a = vdp_malloc((size_t)n * sizeof(float), "out"), *b = vdp_malloc((size_t)n * sizeof(float), "out");
    vae_encode(mg, vin, (int)s1[2], (int)s1[3], a), vae_encode(mr, vin, (int)s1[2], (int)s1[3], b);
    compare3(name, "vae_encode", a, b, lat, n);
    free(a), free(b);
  }
  free(vin), free(nz), free(lat);
  // UNet, first step's inputs
  float *in = load(casedir, "unet_in", s1, &n1), *t = load(casedir, "unet_t", s2, &n2);
  float *ehs = load(casedir, "unet_ehs", s3, &n3), *ids = load(casedir, "unet_ids", s4, &n4);
  float *out = load(casedir, "unet_out", s5, &n5);
  if (in && t && ehs && ids && out) {
    int64_t n = numel(s5, n5);
    float *a = vdp_malloc((size_t)n * sizeof(float), "out"), *b = vdp_malloc((size_t)n * sizeof(float), "out");
    unet_forward(mg, in, (int)s1[0], (int)s1[1], (int)s1[3], (int)s1[4], t[0], ehs, ids, a);
    unet_forward(mr, in, (int)s1[0], (int)s1[1], (int)s1[3], (int)s1[4], t[0], ehs, ids, b);
    compare3(name, "unet_forward", a, b, out, n);
    free(a), free(b);
  }
  free(in), free(t), free(ehs), free(ids), free(out);
  // VAE decode in the case's chunks
  float *z = load(casedir, "vae_decode_in", s1, &n1), *dec = load(casedir, "vae_decode_out", s2, &n2);
  if (z && dec) {
    int chunk = (int)case_num(casedir, "decode_chunk_size", (double)s1[0]);
    if (chunk < 1) chunk = (int)s1[0];
    int64_t n = numel(s2, n2), zin = s1[1] * s1[2] * s1[3], zout = s2[1] * s2[2] * s2[3];
    float *a = vdp_malloc((size_t)n * sizeof(float), "out"), *b = vdp_malloc((size_t)n * sizeof(float), "out");
    for (int f0 = 0; f0 < s1[0]; f0 += chunk) {
      int k = (int)(s1[0] - f0 < chunk ? s1[0] - f0 : chunk);
      vae_decode_chunk(mg, z + f0 * zin, k, (int)s1[2], (int)s1[3], a + f0 * zout);
      vae_decode_chunk(mr, z + f0 * zin, k, (int)s1[2], (int)s1[3], b + f0 * zout);
    }
    char what[64];
    snprintf(what, sizeof what, "vae_decode_chunk(%d)", chunk);
    compare3(name, what, a, b, dec, n);
    free(a), free(b);
  }
  free(z), free(dec);
}

static void run_models(void) {
  printf("# 2. forward passes on the golden inputs: %s vs %s (fp32 .vdpw)\n", G->name, R->name);
  const char *root = "test/data/golden";
  DIR *d = opendir(root);
  if (!d) {
    printf("FAIL - models: no %s (run from the repository root)\n", root), n_fail++;
    return;
  }
  char names[64][256];
  int nc = 0;
  struct dirent *e;
  while ((e = readdir(d)) && nc < 64)
    if (e->d_name[0] != '.') snprintf(names[nc++], sizeof names[0], "%s", e->d_name);
  closedir(d);
  qsort(names, (size_t)nc, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  int ncase = 0;
  for (int i = 0; i < nc; i++) {
    char casedir[600], model[256], err[1024];
    snprintf(casedir, sizeof casedir, "%s/%.200s", root, names[i]);
    struct stat st;
    if (stat(casedir, &st) || !S_ISDIR(st.st_mode) || case_str(casedir, "model", model, sizeof model)) continue;
    if (only_case && strcmp(names[i], only_case)) continue;
    const char *vdpw = convert_or_fail(model);
    if (!vdpw) continue;
    VdpFile f;
    Models *mg = vdp_calloc(1, sizeof *mg, "models"), *mr = vdp_calloc(1, sizeof *mr, "models");
    if (vdpw_open(vdpw, &f, err, sizeof err) || models_load(&f, G, mg, WANT_ALL, err, sizeof err) ||
        models_load(&f, R, mr, WANT_ALL, err, sizeof err)) {
      printf("FAIL - %s: %s\n", names[i], err), n_fail++;
      free(mg), free(mr);
      continue;
    }
    check_case(casedir, names[i], mg, mr);
    models_thread_release(mg);
    models_free(mg), models_free(mr), free(mg), free(mr), vdpw_close(&f);
    ncase++;
  }
  if (!ncase) printf("FAIL - models: no golden case could be run\n"), n_fail++;
  if (G->mem_peak) printf("# info - %s peak memory held through mem_alloc: %.2f MiB\n", G->name, G->mem_peak() / 1048576.0);
}

// The whole pipeline in this process (pipeline_encode, every step, pipeline_decode: what the CLI runs)
// on the tested backend: frames vs diffusers. Also what --emulate uses to estimate the fp16 frame error.
static void run_pipeline_inproc(const char *case_name) {
  char casedir[512], model[256], image[512], err[1024];
  snprintf(casedir, sizeof casedir, "test/data/golden/%s", case_name);
  printf("# 3a. the pipeline in-process on %s (%s): frames vs diffusers\n", G->name, case_name);
  if (case_str(casedir, "model", model, sizeof model) || case_str(casedir, "image", image, sizeof image)) {
    printf("FAIL - pipeline: cannot read %s/case.json\n", casedir), n_fail++;
    return;
  }
  const char *vdpw = convert_or_fail(model);
  if (!vdpw) return;
  GenParams p = {.height = (int)case_num(casedir, "height", 0), .width = (int)case_num(casedir, "width", 0),
                 .num_frames = (int)case_num(casedir, "num_frames", 0),
                 .steps = (int)case_num(casedir, "num_inference_steps", 0), .fps = (int)case_num(casedir, "fps", 7),
                 .motion_bucket_id = (int)case_num(casedir, "motion_bucket_id", 127),
                 .decode_chunk = (int)case_num(casedir, "decode_chunk_size", 0),
                 .noise_aug = (float)case_num(casedir, "noise_aug_strength", 0.02),
                 .min_guidance = (float)case_num(casedir, "min_guidance_scale", 1.0),
                 .max_guidance = (float)case_num(casedir, "max_guidance_scale", 3.0),
                 .seed = (uint64_t)case_num(casedir, "seed", 0), .quiet = 1};
  VdpFile f;
  VdpImage img;
  Models *m = vdp_calloc(1, sizeof *m, "models");
  GenShape s;
  if (vdpw_open(vdpw, &f, err, sizeof err) || models_load(&f, G, m, WANT_ALL, err, sizeof err) ||
      gen_shape(m, &p, &s, err, sizeof err) || image_load(image, &img, err, sizeof err)) {
    printf("FAIL - pipeline %s: %s\n", case_name, err), n_fail++;
    free(m);
    return;
  }
  float *cond = vdp_malloc(s.cond_n * sizeof(float), "cond");
  float *frames = vdp_malloc((size_t)s.F * p.height * p.width * 3 * sizeof(float), "frames");
  models_plan(m, &p);
  models_warm_up(m, &p);  // first launches (workspace, attributes) before the step graph is captured
  PipeState *st = pipeline_state_new(m, &p, 1);
  float *lat = pipeline_latent(st);
  if (pipeline_encode(m, &p, &img, p.seed, st, cond, lat, err, sizeof err)) {
    printf("FAIL - pipeline %s: %s\n", case_name, err), n_fail++;
  } else {
    for (int i = 0; i < p.steps; i++) pipeline_step(m, &p, i, st, lat);
    pipeline_decode(m, &p, lat, frames);
    int64_t sr[8];
    int nr;
    float *ref = load(casedir, "frames", sr, &nr);
    char what[300];
    snprintf(what, sizeof what, "pipeline/%s/frames (%s, in-process)", case_name, G->name);
    if (!ref || numel(sr, nr) != (int64_t)s.F * p.height * p.width * 3)
      printf("FAIL - %s: golden frames missing or of another size\n", what), n_fail++;
    else
      compare(what, frames, ref, numel(sr, nr), 0, 0);
    free(ref);
  }
  pipeline_state_free(st);
  free(cond), free(frames);
  image_free(&img);
  models_thread_release(m);
  models_free(m), free(m), vdpw_close(&f);
}

// ---------------------------------------------------------------------------------------------------
// 3. the CLI end to end on one case
// ---------------------------------------------------------------------------------------------------
static int check_profile = 0;  // --profile: the emulator's per-step counters must show a device-resident loop

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t cap = 0, len = 0, k;
  do {
    if (len == cap) buf = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
    k = fread(buf + len, 1, cap - len, f);
    len += k;
  } while (k > 0);
  fclose(f);
  *n = len;
  return buf;
}

// The per-step lines of SIMT_PROFILE=1 in gen_graph_{on,off}.log: every step copies nothing either way;
// with graphs each step is one graph launch and no kernel launch of its own, without them no graph.
static void check_step_profile(const char *case_name, int graphs, int steps) {
  char path[700], line[1024];
  snprintf(path, sizeof path, "%s/gen_graph_%s.log", tmpdir, graphs ? "on" : "off");
  FILE *f = fopen(path, "r");
  int seen = 0, bad = 0;
  long long kl_total = 0, kg_total = 0;
  while (f && fgets(line, sizeof line, f)) {
    int step;
    long long kl, gl, kg, h2d, h2db, d2h, d2hb;
    if (sscanf(line, "simt: profile step %d: %lld kernel launches, %lld graph launches (%lld kernels), H2D %lld copies %lld "
                     "bytes, D2H %lld copies %lld bytes", &step, &kl, &gl, &kg, &h2d, &h2db, &d2h, &d2hb) != 8)
      continue;
    if (step != seen) bad = 1;
    seen++;
    kl_total += kl, kg_total += kg;
    if (h2d || d2h || (graphs ? gl != 1 || kl != 0 || kg == 0 : gl != 0 || kl == 0)) {
      printf("FAIL - generate/%s profile --cuda-graph %s: %s", case_name, graphs ? "on" : "off", line), n_fail++;
      bad = 2;
    }
  }
  if (f) fclose(f);
  if (seen != steps || bad == 1) {
    printf("FAIL - generate/%s profile --cuda-graph %s: %d step lines in %s, expected %d in order\n", case_name,
           graphs ? "on" : "off", seen, path, steps), n_fail++;
  } else if (!bad) {
    printf("ok - generate/%s profile --cuda-graph %s: %d steps, 0 H2D and 0 D2H copies in each; %s per step\n",
           case_name, graphs ? "on" : "off", steps, graphs ? "1 graph launch and 0 kernel launches" : "no graph");
    printf("# info - %s: %.0f kernels per step (%s)\n", case_name, (double)(graphs ? kg_total : kl_total) / steps,
           graphs ? "replayed from the graph" : "launched one by one");
  }
}

static void run_generate(const char *case_name) {
  char casedir[512], model[256], line[4096], cmd[16384], dump[600], path[700];
  snprintf(casedir, sizeof casedir, "test/data/golden/%s", case_name);
  const char *device = emulate ? "cpu" : "cuda";
  printf("# 3b. ./vdp generate --device %s on %s: frames vs diffusers, noises bit-exact\n", device, case_name);
  snprintf(path, sizeof path, "%s/args.txt", casedir);
  FILE *f = fopen(path, "rb");
  if (!f || !fgets(line, sizeof line, f) || case_str(casedir, "model", model, sizeof model)) {
    printf("FAIL - generate: cannot read %s or its case.json\n", path), n_fail++;
    if (f) fclose(f);
    return;
  }
  fclose(f);
  line[strcspn(line, "\r\n")] = 0;
  char *args = strchr(line, '\t');
  args = args ? args + 1 : line;
  const char *vdpw = convert_or_fail(model);
  if (!vdpw) return;
  snprintf(dump, sizeof dump, "%s/dump_%s", tmpdir, case_name);
  // CUDA graphs on (the default; with --dump) and off: the frames must be byte-identical. SIMT_PROFILE=1
  // makes the emulator print its per-step counters (checked with --profile).
  for (int graphs = 1; graphs >= 0; graphs--) {
    snprintf(cmd, sizeof cmd, "SIMT_PROFILE=1 %s generate --device %s --model %s --out %s/%s_graph_%s.npy --cuda-graph %s "
             "%s%s %s >%s/gen_graph_%s.log 2>&1", vdp_bin, device, vdpw, tmpdir, case_name, graphs ? "on" : "off",
             graphs ? "on" : "off", graphs ? "--dump " : "", graphs ? dump : "", args, tmpdir, graphs ? "on" : "off");
    double t0 = vdp_now();
    if (system(cmd)) {
      printf("FAIL - generate: vdp generate failed: %s (log %s/gen_graph_%s.log)\n", cmd, tmpdir, graphs ? "on" : "off");
      n_fail++;
      return;
    }
    printf("# info - generate --cuda-graph %s took %.2f s\n", graphs ? "on" : "off", vdp_now() - t0);
    if (check_profile) check_step_profile(case_name, graphs, (int)case_num(casedir, "num_inference_steps", 0));
  }
  {
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/%s_graph_on.npy", tmpdir, case_name);
    snprintf(b, sizeof b, "%s/%s_graph_off.npy", tmpdir, case_name);
    size_t na = 0, nb = 0;
    char *fa = read_all(a, &na), *fb = read_all(b, &nb);
    if (fa && fb && na == nb && na > 0 && !memcmp(fa, fb, na))
      printf("ok - generate/%s/frames --cuda-graph on == off (byte-identical, %zu bytes)\n", case_name, na), n_pass++;
    else
      printf("FAIL - generate/%s/frames --cuda-graph on != off (%s vs %s)\n", case_name, a, b), n_fail++;
    free(fa), free(fb);
  }
  const char *names[] = {"frames", "noise_aug", "noise_latents", "image_embeds", "image_latents", "final_latents"};
  for (int i = 0; i < 6; i++) {
    int64_t sr[8], sg[8];
    int nr, ng;
    float *ref = load(casedir, names[i], sr, &nr), *got = load(dump, names[i], sg, &ng);
    char what[300];
    snprintf(what, sizeof what, "generate/%s/%s", case_name, names[i]);
    if (!ref || !got) {
      if (i < 3) printf("FAIL - %s: missing in the golden or the dump\n", what), n_fail++;
    } else if (numel(sr, nr) != numel(sg, ng)) {
      printf("FAIL - %s: %lld values, expected %lld\n", what, (long long)numel(sg, ng), (long long)numel(sr, nr)), n_fail++;
    } else {
      compare(what, got, ref, numel(sr, nr), i == 1 || i == 2, i >= 3);  // frames checked, noises exact, rest info
    }
    free(ref), free(got);
  }
}

int main(int argc, char **argv) {
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--emulate")) emulate = 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--vdp") && i + 1 < argc) vdp_bin = argv[++i];
    else if (!strcmp(argv[i], "--case") && i + 1 < argc) only_case = argv[++i];
    else if (!strcmp(argv[i], "--profile")) check_profile = 1;
    else {
      fprintf(stderr, "usage: %s [--emulate] [--only ops|models|pipeline|cli|generate] [--case NAME] [--vdp PATH] [--profile]\n", argv[0]);
      return 2;
    }
  }
  const char *tol = getenv("VDP_GPU_TOL");
  if (tol && atof(tol) > 0) TOL = atof(tol);
  static Backend em;
  if (emulate) {
    em = em_backend();
    G = &em;
  } else {
    G = backend_cuda();
    if (!G) {
      printf("FAIL - cuda_backend backend_cuda() is NULL (%d CUDA devices visible; built without nvcc?)\n",
             vdp_cuda_device_count());
      printf("0 passed, 1 failed\n");
      return 1;
    }
  }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/vdp_gpu_pipeline_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    printf("FAIL - mkdtemp\n0 passed, 1 failed\n");
    return 1;
  }
  printf("# tolerance rule: err = max|%s - ref| / max(1, max|ref|) <= %.0e; host-drawn noises bit-exact\n", G->name, TOL);
  if (!only || strstr(only, "ops")) run_ops();
  if (!only || strstr(only, "models")) run_models();
  const int all_gen = !only || strstr(only, "generate");
  if (all_gen || strstr(only, "pipeline")) {
    if (only_case) {
      run_pipeline_inproc(only_case);
    } else {
      run_pipeline_inproc("tiny3_resize");
      run_pipeline_inproc("tiny_cfg");
    }
  }
  if (all_gen || strstr(only, "cli")) run_generate(only_case ? only_case : "tiny3_resize");
  if (n_fail == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("# could not remove %s\n", tmpdir);
  } else {
    printf("# outputs kept in %s\n", tmpdir);
  }
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
