// test_model.c — properties of the model graph (model.c) on random tiny configurations, no fixtures:
//   1. the UNet's batch packing: video b of a B = 2 call equals a B = 1 call on video b alone (each video
//      has its own sample, CLIP token and added time ids), and identical videos give identical halves;
//      on a configuration the golden fixtures do not cover: 4 levels, layers_per_block 3,
//      transformer_layers_per_block 2 on some levels, level 0 without attention (so its
//      cross_attention_dim is unused and differs), odd latent sizes (the up path must meet 5x7 -> 3x4 ->
//      2x2 skips), one frame;
//   2. the activation arena: models_plan sizes it for the whole job (later passes do not grow it), and a
//      pass does not depend on what an earlier pass left in the arena (run, other pass, run again:
//      bit-identical);
//   3. the CPU backend table's contract: linear with GEGLU and a residual (also res == y), on 2 threads;
//   4. gen_shape / the model's limits refuse what cannot run (one frame with guidance that diffusers would
//      switch off mid-way, more than 40 animatelcm steps, VAE widths that are not multiples of the 32
//      GroupNorm groups), and carry one z per animatelcm step (none for a single step);
//   5. the CPU twins of the step ops (step_input, step_update) reproduce the host step loop they replaced,
//      formula for formula, bit for bit (B = 1 and 2, odd plane sizes, the last step's σ_next = 0);
//   6. memory admission: the plan from the configuration alone equals the real arena; the cgroup reader;
//      pipeline_encode's peak on a 4096^2 input (no float copy of the image);
//   7. AnimateLCM's schedule (sampler_table) against the published N = 4 values and its ends.
#include "../model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int n_fail = 0;

static void check(int ok, const char *name, const char *fmt, double a, double b) {
  if (!ok) n_fail++;
  printf("%s - %s ", ok ? "ok" : "FAIL", name);
  printf(fmt, a, b);
  printf("\n");
}

// max|a - b| / max(1, max|b|); NaN anywhere -> infinity
static double rel_err(const float *a, const float *b, size_t n) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
    double d = fabs((double)a[i] - b[i]);
    if (d > md) md = d;
    if (fabs(b[i]) > mr) mr = fabs(b[i]);
  }
  return md / (mr > 1 ? mr : 1);
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x[i] = scale * ((float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f);
  }
}

// A small configuration off the fixtures' beaten path (see the top of the file).
static void tiny_config(VdpConfig *c) {
  config_preset("svd", c);  // scheduler, CLIP normalisation, ...
  const int bo[4] = {32, 32, 32, 64}, da[4] = {0, 1, 1, 0}, ua[4] = {0, 1, 1, 0}, hd[4] = {1, 2, 4, 2};
  const int tl[4] = {1, 2, 1, 2}, cd[4] = {8, 24, 24, 24};  // level 0: no attention, its cross dim unused
  c->unet_levels = 4;
  for (int i = 0; i < 4; i++) {
    c->unet_block_out[i] = bo[i], c->unet_down_attn[i] = da[i], c->unet_up_attn[i] = ua[i];
    c->unet_heads[i] = hd[i], c->unet_transformer_layers[i] = tl[i], c->unet_cross_dim[i] = cd[i];
  }
  c->unet_layers_per_block = 3, c->unet_addition_time_embed_dim = 16, c->unet_proj_class_in_dim = 48;
  c->unet_num_frames = 3;
  c->vae_levels = 2, c->vae_block_out[0] = c->vae_block_out[1] = 32, c->vae_layers_per_block = 1;
  c->clip_hidden = 32, c->clip_intermediate = 40, c->clip_layers = 2, c->clip_heads = 2, c->clip_patch = 32;
  c->clip_image_size = 64, c->clip_projection_dim = 24;
}

typedef struct {
  int B, F, h, w, D;
  float *x, *ctx, *ids, *out;
} UCall;

static void ucall_init(UCall *u, const VdpConfig *c, int B, int F, int h, int w, uint64_t seed) {
  u->B = B, u->F = F, u->h = h, u->w = w, u->D = c->clip_projection_dim;
  size_t nx = (size_t)B * F * c->unet_in_channels * h * w;
  u->x = malloc(nx * sizeof(float)), u->ctx = malloc((size_t)B * u->D * sizeof(float));
  u->ids = malloc((size_t)B * 3 * sizeof(float));
  u->out = malloc((size_t)B * F * c->unet_out_channels * h * w * sizeof(float));
  fill(u->x, nx, seed, 1.0f), fill(u->ctx, (size_t)B * u->D, seed + 1, 1.0f);
  for (int b = 0; b < B; b++) u->ids[3 * b] = 6 - b, u->ids[3 * b + 1] = 127 - 40 * b, u->ids[3 * b + 2] = 0.02f + 0.03f * b;
}
static void ucall_free(UCall *u) { free(u->x), free(u->ctx), free(u->ids), free(u->out); }
static void ucall_run(const Models *m, UCall *u, float t) {
  unet_forward(m, u->x, u->B, u->F, u->h, u->w, t, u->ctx, u->ids, u->out);
}

// Video b of a B = 2 call against B = 1 calls; identical videos -> identical halves.
static void batch_checks(const Models *m, int F, int h, int w) {
  const VdpConfig *c = &m->cfg;
  char name[128];
  UCall two, one;
  ucall_init(&two, c, 2, F, h, w, 11);
  ucall_run(m, &two, 0.7f);
  size_t vin = (size_t)F * c->unet_in_channels * h * w, vout = (size_t)F * c->unet_out_channels * h * w;
  double worst = 0;
  for (int b = 0; b < 2; b++) {
    ucall_init(&one, c, 1, F, h, w, 99);
    memcpy(one.x, two.x + b * vin, vin * sizeof(float));
    memcpy(one.ctx, two.ctx + b * two.D, (size_t)two.D * sizeof(float));
    memcpy(one.ids, two.ids + 3 * b, 3 * sizeof(float));
    ucall_run(m, &one, 0.7f);
    double e = rel_err(two.out + b * vout, one.out, vout);
    worst = e > worst ? e : worst;
    ucall_free(&one);
  }
  snprintf(name, sizeof name, "unet F=%d %dx%d: video b of a B=2 call == B=1 call on video b", F, h, w);
  check(worst <= 1e-5, name, "(err %.2e, tol %.0e)", worst, 1e-5);

  // identical videos: copy video 0 over video 1
  memcpy(two.x + vin, two.x, vin * sizeof(float));
  memcpy(two.ctx + two.D, two.ctx, (size_t)two.D * sizeof(float));
  memcpy(two.ids + 3, two.ids, 3 * sizeof(float));
  ucall_run(m, &two, 0.7f);
  double e = rel_err(two.out + vout, two.out, vout);
  snprintf(name, sizeof name, "unet F=%d %dx%d: identical videos give identical halves", F, h, w);
  check(e <= 1e-6, name, "(err %.2e, tol %.0e)", e, 1e-6);
  ucall_free(&two);
}

// backend_cpu.linear(y, x, GEGLU, res) against op_linear + op_geglu + op_add, res separate and res == y.
static void geglu_residual_check(void) {
#ifdef _OPENMP
  omp_set_num_threads(2);  // the in-place GEGLU race needs two threads
#endif
  int M = 4096, K = 16, N = 64;
  float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * 2 * N * K), *b = malloc(sizeof(float) * 2 * N);
  float *res = malloc(sizeof(float) * M * N), *y = malloc(sizeof(float) * M * N), *ref = malloc(sizeof(float) * M * N);
  float *t = malloc(sizeof(float) * M * 2 * N);
  fill(x, (size_t)M * K, 1, 1.0f), fill(w, (size_t)2 * N * K, 2, 0.3f), fill(b, (size_t)2 * N, 3, 0.1f);
  fill(res, (size_t)M * N, 4, 0.5f);
  op_linear(t, x, w, b, M, K, 2 * N);
  op_geglu(ref, t, M, N);
  op_add(ref, ref, res, (int64_t)M * N);
  const int64_t wshape[2] = {2 * N, K};  // the backend reads its own (packed) layout of the weights
  float *wp = backend_cpu.mem_alloc((size_t)backend_cpu.weight_elems(WEIGHT_LINEAR, 2, wshape) * sizeof(float), "w");
  backend_cpu.weight_store(wp, w, WEIGHT_LINEAR, 2, wshape);
  backend_cpu.linear(y, x, wp, b, M, K, N, ACT_GEGLU, res);
  double e1 = rel_err(y, ref, (size_t)M * N);
  memcpy(y, res, sizeof(float) * M * N);
  backend_cpu.linear(y, x, wp, b, M, K, N, ACT_GEGLU, y);
  backend_cpu.mem_free(wp);
  double e2 = rel_err(y, ref, (size_t)M * N);
  check(e1 <= 1e-6 && e2 <= 1e-6, "cpu backend: linear GEGLU + residual (res apart, res == y)", "(err %.2e, %.2e)", e1, e2);
  free(x), free(w), free(b), free(res), free(y), free(ref), free(t);
}

// 7. AnimateLCM's schedule against the published values (../shared/animatelcm.md, N = 4, 7 digits), its ends
// (N = 40 reaches σ_min = 0.002; σ_N = 0 always) and the coefficients' definitions.
static void animatelcm_schedule_check(void) {
  StepScalars t[40];
  float init = sampler_table(NULL, VDP_SAMPLER_ANIMATELCM, 4, t);
  const double sig[4] = {700.0, 128.5637, 13.67844, 0.4968784}, ts[4] = {1.63777, 1.21411, 0.65396, -0.17485};
  double es = 0, et = 0;
  for (int i = 0; i < 4; i++) {
    es = fmax(es, fabs(t[i].sigma - sig[i]) / sig[i]);
    et = fmax(et, fabs(t[i].t - ts[i]));
  }
  check(es < 1e-6 && et < 1e-5, "animatelcm N=4 sigmas and timesteps are the published ones", "(sigma rel %.1e, t %.1e)", es, et);
  check(t[3].sigma_next == 0.0f && t[0].sigma_next == t[1].sigma && t[2].sigma_next == t[3].sigma,
        "animatelcm sigma_next: the next sigma, then 0", "(last %g%.0s)", t[3].sigma_next, 0);
  check(init == (float)sqrt(490001.0), "animatelcm init_noise_sigma = sqrt(700^2 + 1)", "(%.9g vs %.9g)", init, sqrt(490001.0));
  double ec = 0;
  for (int i = 0; i < 4; i++) {
    double s2 = (double)t[i].sigma * t[i].sigma;
    ec = fmax(ec, fabs(t[i].c_skip - 1.0 / (s2 + 1.0)) * (s2 + 1.0));
    ec = fmax(ec, fabs(t[i].c_out + t[i].sigma / sqrt(s2 + 1.0)));
    ec = fmax(ec, fabs(t[i].c_in - sqrt(s2 + 1.0)) / sqrt(s2 + 1.0));
  }
  check(ec < 1e-6, "animatelcm c_in, c_skip, c_out (sigma_data = 1)", "(max rel err %.1e%.0s)", ec, 0);
  sampler_table(NULL, VDP_SAMPLER_ANIMATELCM, 40, t);
  check(fabs(t[39].sigma - 0.002) < 1e-9 && t[0].sigma == 700.0f && t[39].sigma_next == 0.0f,
        "animatelcm N=40 runs the whole schedule, 700 to 0.002, then 0", "(last sigma %.9g%.0s)", t[39].sigma, 0);
  sampler_table(NULL, VDP_SAMPLER_ANIMATELCM, 3, t);  // r = 13: ramps 0, 13/39, 26/39
  double want = pow(pow(700.0, 1 / 7.0) + (26.0 / 39.0) * (pow(0.002, 1 / 7.0) - pow(700.0, 1 / 7.0)), 7.0);
  check(t[2].sigma == (float)want, "animatelcm N=3 samples the 40-point ramp at i*(40//3)/39", "(%.9g vs %.9g)", t[2].sigma,
        want);
}

// ---------------------------------------------------------------------------------------------------
// 6. memory admission: the cgroup reader on made-up cgroup trees (v2 and v1), and pipeline_encode's peak
// on a large input (no float copy of the whole image)
// ---------------------------------------------------------------------------------------------------
static void put(const char *dir, const char *name, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (f) fputs(text, f), fclose(f);
}

static void cgroup_checks(void) {
  char root[] = "/tmp/test_model_cg.XXXXXX", d[600];
  if (!mkdtemp(root)) {
    printf("FAIL - cgroup reader: cannot make a temporary folder\n");
    n_fail++;
    return;
  }
  // v2: /a/b limited to 1 GiB, 512 MiB charged of which 256 MiB page cache; /a unlimited ("max")
  snprintf(d, sizeof d, "%s/a", root), mkdir(d, 0700), put(d, "memory.max", "max\n");
  snprintf(d, sizeof d, "%s/a/b", root), mkdir(d, 0700);
  put(d, "memory.max", "1073741824\n"), put(d, "memory.current", "536870912\n");
  put(d, "memory.stat", "anon 268435456\nfile 268435456\nkernel 0\n");
  put(root, "proc_v2", "0::/a/b\n");
  VdpMemAvail a = {SIZE_MAX, ""};
  snprintf(d, sizeof d, "%s/proc_v2", root);
  vdp_mem_avail_cgroup(&a, d, root);
  check(a.bytes == (size_t)768 << 20 && strstr(a.what, "cgroup"), "cgroup v2: room = memory.max - (current - file)",
        "(%.0f MiB, want %.0f)", a.bytes / 1048576.0, 768);
  // v1: /x limited to 2 GiB with 1 GiB used (no cache); the hierarchy root's "unlimited" value is ignored;
  // a tighter MemAvailable-like figure already in `a` stays
  snprintf(d, sizeof d, "%s/memory", root), mkdir(d, 0700), put(d, "memory.limit_in_bytes", "9223372036854771712\n");
  snprintf(d, sizeof d, "%s/memory/x", root), mkdir(d, 0700);
  put(d, "memory.limit_in_bytes", "2147483648\n"), put(d, "memory.usage_in_bytes", "1073741824\n");
  put(d, "memory.stat", "cache 0\nrss 1073741824\ntotal_cache 0\n");
  put(root, "proc_v1", "5:devices:/\n4:memory:/x\n3:cpu,cpuacct:/\n");
  snprintf(d, sizeof d, "%s/proc_v1", root);
  VdpMemAvail b = {SIZE_MAX, ""};
  vdp_mem_avail_cgroup(&b, d, root);
  check(b.bytes == (size_t)1 << 30, "cgroup v1: room = memory.limit_in_bytes - (usage - total_cache)", "(%.0f MiB, want %.0f)",
        b.bytes / 1048576.0, 1024);
  VdpMemAvail c2 = {(size_t)100 << 20, "tighter"};
  vdp_mem_avail_cgroup(&c2, d, root);
  check(c2.bytes == (size_t)100 << 20 && !strcmp(c2.what, "tighter"), "cgroup: a tighter limit already found stays",
        "(%.0f MiB, want %.0f)", c2.bytes / 1048576.0, 100);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd)) printf("# could not remove %s\n", root);
}

static long vm_hwm_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) v = atol(line + 6);
  if (f) fclose(f);
  return v;
}

// pipeline_encode on a 4096 x 4096 image: the peak may grow by the encode's own buffers (the CLIP blur's
// columns, the small resized image) but not by a float copy of the input (12 bytes a pixel, 192 MiB).
static void encode_memory_check(const Models *m) {
  const int side = 4096;
  VdpImage img = {side, side, malloc((size_t)side * side * 3)};
  for (size_t k = 0; k < (size_t)side * side * 3; k++) img.rgb[k] = (uint8_t)(k * 2654435761u >> 24);
  GenParams p = {.height = 40, .width = 56, .num_frames = 3, .steps = 2, .fps = 7, .motion_bucket_id = 127,
                 .noise_aug = 0.02f, .min_guidance = 1.0f, .max_guidance = 3.0f, .decode_chunk = 3};
  GenShape s;
  char err[256];
  gen_shape(m, &p, &s, err, sizeof err);
  float *cond = malloc(s.cond_n * sizeof(float));
  models_plan(m, &p);
  PipeState *st = pipeline_state_new(m, &p, 0);
  FILE *f = fopen("/proc/self/clear_refs", "w");  // "5": resets VmHWM to the current RSS
  int reset = f && fputs("5", f) >= 0;
  if (f && fclose(f)) reset = 0;
  long before = vm_hwm_kib();
  int rc = pipeline_encode(m, &p, &img, 1, st, cond, pipeline_latent(st), err, sizeof err);
  long grew = vm_hwm_kib() - before;
  if (!reset) {
    printf("ok - pipeline_encode memory on a 4096^2 input: not measured (/proc/self/clear_refs cannot be written here)\n");
  } else {
    check(rc == 0 && grew < 96 * 1024, "pipeline_encode on a 4096^2 input holds no float copy of the image",
          "(peak grew by %.0f MiB; a float copy alone is %.0f MiB)", grew / 1024.0, (double)side * side * 12 / 1048576.0);
  }
  pipeline_state_free(st);
  free(img.rgb), free(cond);
}

// 5. The host loop the step ops replaced (model.c before the step moved to the backend), written out:
// xin = x / c_in | image latents; v = vu + g·(vc − vu); x0 = v·c_out + x / (σ²+1); x += (x − x0)/σ · dt.
static void old_host_step(float *xin, float *x, const float *img, const float *v, const float *g, int B, int F,
                          int64_t plane, float sigma, float next) {
  float c_in = sqrtf(sigma * sigma + 1.0f);
  for (int b = 0; b < B; b++)
    for (int f = 0; f < F; f++) {
      float *dst = xin + ((int64_t)b * F + f) * 2 * plane;
      const float *src = x + (int64_t)f * plane;
      for (int64_t k = 0; k < plane; k++) dst[k] = src[k] / c_in;
      memcpy(dst + plane, img + (int64_t)b * plane, (size_t)plane * sizeof(float));
    }
  int64_t n = (int64_t)F * plane;
  float *vp = malloc((size_t)n * sizeof(float));
  for (int64_t j = 0; j < n; j++) vp[j] = B == 2 ? v[j] + g[j / plane] * (v[n + j] - v[j]) : v[j];
  float c_out = -sigma / sqrtf(sigma * sigma + 1.0f), c_skip_div = sigma * sigma + 1.0f, dt = next - sigma;
  for (int64_t j = 0; j < n; j++) {
    float xs = x[j], x0 = vp[j] * c_out + xs / c_skip_div;
    float d = (xs - x0) / sigma;
    x[j] = xs + d * dt;
  }
  free(vp);
}

static void step_twin_check(int B, int F, int64_t plane, int steps) {
  VdpConfig c;
  config_preset("svd", &c);
  float sig[8], ts[8];
  scheduler_karras(&c, steps, sig, ts);
  float tab[8 * SCH_COLS], g[8];
  for (int i = 0; i < steps; i++) {  // the rows pipeline_state_new writes
    float sigma = sig[i], next = sig[i + 1], *r = tab + i * SCH_COLS;
    r[SCH_SIGMA] = sigma, r[SCH_SIGMA_NEXT] = next, r[SCH_T] = ts[i], r[SCH_C_IN] = sqrtf(sigma * sigma + 1.0f);
    r[SCH_C_OUT] = -sigma / sqrtf(sigma * sigma + 1.0f), r[SCH_C_SKIP_DIV] = sigma * sigma + 1.0f, r[SCH_DT] = next - sigma;
  }
  for (int f = 0; f < F; f++) g[f] = 1.0f + 2.0f * (float)f / (float)(F > 1 ? F - 1 : 1);
  int64_t n = (int64_t)F * plane;
  float *x = malloc((size_t)n * sizeof(float)), *xr = malloc((size_t)n * sizeof(float));
  float *img = malloc((size_t)B * plane * sizeof(float)), *v = malloc((size_t)B * n * sizeof(float));
  float *xin = malloc((size_t)2 * B * n * sizeof(float)), *xinr = malloc((size_t)2 * B * n * sizeof(float));
  uint32_t h = 12345;
  for (int64_t i = 0; i < n; i++) h = h * 1664525u + 1013904223u, x[i] = xr[i] = 80.0f * ((float)(h >> 8) / 16777216.0f - 0.5f);
  for (int64_t i = 0; i < (int64_t)B * plane; i++) h = h * 1664525u + 1013904223u, img[i] = (float)(h >> 8) / 16777216.0f;
  int step = 0, same = 1, counter_ok = 1;
  StepTables t = {.sampler = VDP_SAMPLER_EULER, .steps = steps, .sched = tab, .guidance = g, .z = NULL, .step = &step};
  for (int i = 0; i < steps; i++) {
    for (int64_t k = 0; k < B * n; k++) h = h * 1664525u + 1013904223u, v[k] = 3.0f * ((float)(h >> 8) / 16777216.0f - 0.5f);
    backend_cpu.step_input(xin, x, img, &t, B, F, plane);
    backend_cpu.step_update(x, v, &t, B, F, plane);
    old_host_step(xinr, xr, img, v, g, B, F, plane, sig[i], sig[i + 1]);
    same &= !memcmp(xin, xinr, (size_t)2 * B * n * sizeof(float)) && !memcmp(x, xr, (size_t)n * sizeof(float));
    counter_ok &= step == i + 1;
  }
  char name[128];
  snprintf(name, sizeof name, "step_twins_bit_exact_b%d_f%d_plane%lld_%dsteps", B, F, (long long)plane, steps);
  check(same && counter_ok, name, same ? "(UNet input and latent bit-identical to the old host loop every step)" : "(differs from the old host loop)",
        0, 0);
  if (!counter_ok) printf("#   the step counter did not advance by one per step_update\n");
  free(x), free(xr), free(img), free(v), free(xin), free(xinr);
}

int main(void) {
  geglu_residual_check();
  animatelcm_schedule_check();
  cgroup_checks();
  step_twin_check(1, 3, 37, 4);
  step_twin_check(2, 5, 41, 3);

  VdpConfig c;
  tiny_config(&c);
  char err[512];
  Models m;
  if (models_random(&c, &backend_cpu, &m, WANT_ALL, err, sizeof err)) {
    printf("FAIL - models_random: %s\n", err);
    return 1;
  }

  // 1. batch packing, odd sizes, one frame
  batch_checks(&m, 3, 8, 8);
  batch_checks(&m, 2, 5, 7);  // 5x7 -> 3x4 -> 2x2 -> 1x1: the upsamplers must meet the skips' sizes
  batch_checks(&m, 1, 6, 4);

  // 2. the arena: planned once for the job; passes independent of earlier arena contents
  GenParams p = {.height = 40, .width = 56, .num_frames = 3, .steps = 2, .fps = 7, .motion_bucket_id = 127,
                 .noise_aug = 0.02f, .min_guidance = 1.0f, .max_guidance = 3.0f, .decode_chunk = 2};
  GenShape s;
  if (gen_shape(&m, &p, &s, err, sizeof err)) {
    printf("FAIL - gen_shape: %s\n", err);
    return 1;
  }
  models_thread_release(&m);
  models_plan(&m, &p);
  size_t planned = models_arena_bytes();
  UCall u;
  ucall_init(&u, &c, s.B, s.F, s.h, s.w, 5);
  ucall_run(&m, &u, 0.3f);
  size_t nout = (size_t)s.B * s.F * c.unet_out_channels * s.h * s.w;
  float *first = malloc(nout * sizeof(float));
  memcpy(first, u.out, nout * sizeof(float));
  float *img = malloc((size_t)3 * p.height * p.width * sizeof(float)), *mean = malloc(s.latent_n * sizeof(float));
  float *pix = malloc((size_t)3 * c.clip_image_size * c.clip_image_size * sizeof(float)), emb[64];
  float *frames = malloc((size_t)2 * 3 * p.height * p.width * sizeof(float));
  fill(img, (size_t)3 * p.height * p.width, 7, 1.0f), fill(pix, (size_t)3 * c.clip_image_size * c.clip_image_size, 8, 1.0f);
  clip_forward(&m, pix, emb);
  vae_encode(&m, img, p.height, p.width, mean);
  vae_decode_chunk(&m, u.out, 2, s.h, s.w, frames);  // fills the arena with other values
  ucall_run(&m, &u, 0.3f);
  check(models_arena_bytes() == planned, "models_plan sized the arena for every pass of the job",
        "(planned %.0f bytes, now %.0f)", (double)planned, (double)models_arena_bytes());
  check(!memcmp(first, u.out, nout * sizeof(float)), "a UNet pass after other passes is bit-identical to the first",
        "(err %.2e%.0s)", rel_err(u.out, first, nout), 0);
  free(first), free(img), free(mean), free(pix), free(frames);
  ucall_free(&u);

  // 2b. the memory admission's plan, from the configuration alone (no weights), equals what loading and
  // planning really hold: the weight pools (packed layouts) and the arena, over several job shapes
  {
    const int shapes[][4] = {{40, 56, 3, 2}, {64, 64, 5, 5}, {24, 72, 1, 1}, {40, 56, 7, 3}};
    for (int k = 0; k < 4; k++) {
      GenParams q = p;
      q.height = shapes[k][0], q.width = shapes[k][1], q.num_frames = shapes[k][2], q.decode_chunk = shapes[k][3];
      if (q.num_frames == 1) q.min_guidance = 2.0f;
      MemPlan mp;
      int rc = models_mem_plan(&c, &backend_cpu, &q, WANT_ALL, 640, 480, &mp, err, sizeof err);
      models_thread_release(&m);
      models_plan(&m, &q);
      size_t real = models_arena_bytes();
      char name[160];
      snprintf(name, sizeof name, "admission plan %dx%d, %d frames, decode chunk %d: arena from the config alone = "
               "models_plan's", q.width, q.height, q.num_frames, q.decode_chunk);
      check(rc == 0 && mp.arena == real, name, "(plan %.0f bytes, real %.0f)", (double)mp.arena, (double)real);
      if (k == 0) {
        int held = 1;  // the weights as held: at least the parameters in fp32 (packing pads, never drops)
        for (int i = 0; i < 3; i++) held &= mp.weights[i] >= m.nparams[i] * sizeof(float) && m.nparams[i] > 0;
        check(held, "admission plan: weights as the CPU backend holds them (>= 4 bytes a parameter)",
              "(UNet %.0f bytes for %.0f parameters)", (double)mp.weights[0], (double)m.nparams[0]);
      }
    }
  }

  encode_memory_check(&m);

  // 3. refusals
  GenParams q = p;
  q.num_frames = 1, q.min_guidance = 1.0f, q.max_guidance = 3.0f;
  int rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc != 0 && strstr(err, "--num-frames 1"), "gen_shape refuses 1 frame with min guidance <= 1 < max",
        "(rc %.0f%.0s)", rc, 0);
  if (rc == 0 || !strstr(err, "--num-frames 1")) printf("#   message: %s\n", rc ? err : "(none)");
  q.min_guidance = 2.0f;
  rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc == 0 && s.B == 2, "gen_shape accepts 1 frame with min guidance > 1 (guidance on)", "(rc %.0f, B %.0f)", rc, s.B);
  q.min_guidance = q.max_guidance = 1.0f;
  rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc == 0 && s.B == 1, "gen_shape accepts 1 frame without guidance", "(rc %.0f, B %.0f)", rc, s.B);
  q = p, q.sampler = VDP_SAMPLER_ANIMATELCM, q.steps = ANIMATELCM_POINTS + 1;
  rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc != 0 && strstr(err, "at most 40"), "gen_shape refuses 41 animatelcm steps (a 40-point schedule)", "(rc %.0f%.0s)", rc, 0);
  q.steps = ANIMATELCM_POINTS;
  rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc == 0 && s.n_z == 40 && s.cond_n > (size_t)40 * s.latent_n, "gen_shape: 40 animatelcm steps carry 40 z",
        "(rc %.0f, n_z %.0f)", rc, s.n_z);
  q.steps = 1;
  rc = gen_shape(&m, &q, &s, err, sizeof err);
  check(rc == 0 && s.n_z == 0, "gen_shape: one animatelcm step draws no z", "(rc %.0f, n_z %.0f)", rc, s.n_z);
  models_thread_release(&m);
  models_free(&m);

  VdpConfig bad = c;
  bad.vae_block_out[0] = bad.vae_block_out[1] = 16, bad.vae_norm_groups = 16;  // the graph's GroupNorms have 32 groups
  Models m2;
  rc = models_random(&bad, &backend_cpu, &m2, WANT_ALL, err, sizeof err);
  check(rc != 0 && strstr(err, "32"), "VAE width 16 refused (GroupNorm has 32 groups)", "(rc %.0f%.0s)", rc, 0);
  if (rc == 0 || !strstr(err, "32")) printf("#   message: %s\n", rc ? err : "(none)");
  models_free(&m2);
  VdpSpecList l = {0};
  rc = model_expected_tensors(&bad, &l, err, sizeof err);
  check(rc != 0, "model_expected_tensors (vdp convert) refuses it too", "(rc %.0f%.0s)", rc, 0);
  speclist_free(&l);
  return n_fail ? 1 : 0;
}
