// vdp.c — the command line: `vdp convert | info | generate | sim`.
// Results go to stdout, progress and diagnostics to stderr.
#include "model.h"
#include "ring.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *o) {
  fprintf(o,
          "vdp %s — Stable Video Diffusion (image -> video) in C and CUDA\n"
          "\n"
          "usage:\n"
          "  vdp convert SRC_DIR OUT.vdpw [--dtype fp16|fp32]   diffusers SVD folder -> .vdpw\n"
          "  vdp info FILE.vdpw                                 configuration and parameter counts\n"
          "  vdp generate --model M.vdpw --image IN.png --out OUT.{npy,png,gif,mp4} [options]\n"
          "  vdp sim --stages S [options]                       the stage ring with a dummy denoiser\n"
          "  vdp bench --config svd|svd-xt [--num-frames F --height H --width W --cfg 0|1 --runs N]\n"
          "\n"
          "generate options (diffusers' names and defaults):\n"
          "  --height 576 --width 1024 --num-frames (model default) --num-inference-steps 25\n"
          "  --fps 7 --motion-bucket-id 127 --noise-aug-strength 0.02\n"
          "  --min-guidance-scale 1.0 --max-guidance-scale 3.0 --decode-chunk-size (all frames)\n"
          "  --seed 0 --device cpu|cuda --dump DIR\n"
          "  --num-videos K (seeds s, s+1, ...) or several --image; --stages S (timestep stages on a ring)\n"
          "  --timeout SECONDS (ring liveness bound, default 60)\n",
          VDP_VERSION);
}

// ---------------------------------------------------------------------------------------------------
// Flag parsing: every number is checked whole; a bad value names the flag.
// ---------------------------------------------------------------------------------------------------
static long parse_int(const char *flag, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) vdp_die("%s %s: expected an integer in [%ld, %ld]", flag, s, lo, hi);
  return v;
}

static uint64_t parse_u64(const char *flag, const char *s) {
  char *end;
  errno = 0;
  if (*s == '-') vdp_die("%s %s: expected a non-negative integer", flag, s);
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end) vdp_die("%s %s: expected a non-negative integer", flag, s);
  return v;
}

static float parse_float(const char *flag, const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) vdp_die("%s %s: expected a number in [%g, %g]", flag, s, lo, hi);
  return (float)v;
}

static const char *ext_of(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return dot && (!slash || dot > slash) ? dot + 1 : "";
}

// ---------------------------------------------------------------------------------------------------
// Output: .npy [F,H,W,3] float32, .png one file per frame, .gif/.mp4 through ffmpeg
// ---------------------------------------------------------------------------------------------------
static void write_video(const char *out, const float *frames, int F, int H, int W, int fps) {
  char err[512];
  const char *ext = ext_of(out);
  int64_t n = (int64_t)F * H * W * 3;
  if (!strcmp(ext, "npy")) {
    if (npy_save_f32(out, frames, (int64_t[]){F, H, W, 3}, 4, err, sizeof err)) vdp_die("%s", err);
    printf("%s\n", out);
    return;
  }
  uint8_t *u8 = vdp_malloc((size_t)n, "output frames");
  for (int64_t i = 0; i < n; i++) u8[i] = (uint8_t)nearbyintf(frames[i] * 255.0f);  // numpy round: half to even
  if (!strcmp(ext, "png")) {
    size_t stem = strlen(out) - 4;
    for (int f = 0; f < F; f++) {
      char path[4096];
      snprintf(path, sizeof path, "%.*s_%03d.png", (int)stem, out, f);
      if (image_save_png(path, u8 + (int64_t)f * H * W * 3, W, H, err, sizeof err)) vdp_die("%s", err);
      printf("%s\n", path);
    }
  } else if (!strcmp(ext, "gif") || !strcmp(ext, "mp4")) {
    if (video_save_ffmpeg(out, u8, F, W, H, fps, err, sizeof err)) vdp_die("%s", err);
    printf("%s\n", out);
  } else {
    vdp_die("--out %s: unknown extension '.%s' (use .npy, .png, .gif or .mp4)", out, ext);
  }
  free(u8);
}

// "out.png" + video 2 -> "out_v2.png"
static void numbered(char *dst, size_t n, const char *out, int video, int nvideos) {
  if (nvideos == 1) {
    snprintf(dst, n, "%s", out);
    return;
  }
  const char *ext = ext_of(out);
  size_t stem = strlen(out) - (*ext ? strlen(ext) + 1 : 0);
  snprintf(dst, n, "%.*s_v%d%s%s", (int)stem, out, video, *ext ? "." : "", ext);
}

// ---------------------------------------------------------------------------------------------------
// Progress on stderr: a rewritten line on a terminal, a plain line per step otherwise
// ---------------------------------------------------------------------------------------------------
static void progress(const char *what, int k, int n, double t0) {
  double el = vdp_now() - t0, eta = k > 0 ? el / k * (n - k) : 0.0;
  if (isatty(2))
    fprintf(stderr, "\r%s %d/%d  elapsed %.1fs  eta %.1fs   %s", what, k, n, el, eta, k == n ? "\n" : "");
  else
    fprintf(stderr, "%s %d/%d  elapsed %.1fs  eta %.1fs\n", what, k, n, el, eta);
}

// ---------------------------------------------------------------------------------------------------
// vdp generate
// ---------------------------------------------------------------------------------------------------
// One job = K videos of the same model and parameters. The three phases are RingDenoiser callbacks, so
// the plain loop (no --stages) and the stage ring run exactly the same code per step.
typedef struct {
  Models *m;
  GenParams p;
  GenShape s;
  const char **images;
  int n_images, n_videos, stages;
  const char *out;
  double t0;
  double *t_encode, *t_decode;  // per video
} GenJob;

// Each stage thread plans its own activation arena (the weights are shared, read-only).
static void *gen_stage_ctx(void *user, int stage, char *err, size_t errlen) {
  GenJob *j = user;
  models_plan(j->m, &j->p);
  return user;
}
static void gen_free_stage_ctx(void *ctx) { models_thread_release(((GenJob *)ctx)->m); }

static int gen_encode(void *ctx, int video, void *cond, float *latent, char *err, size_t errlen) {
  GenJob *j = ctx;
  VdpImage img;
  const char *path = j->images[j->n_images > 1 ? video : 0];
  double t = vdp_now();
  if (image_load(path, &img, err, errlen)) return -1;
  int rc = pipeline_encode(j->m, &j->p, &img, j->p.seed + (uint64_t)video, cond, latent, err, errlen);
  image_free(&img);
  j->t_encode[video] = vdp_now() - t;
  return rc;
}

static int gen_step(void *ctx, int video, int step, const void *cond, float *latent, char *err, size_t errlen) {
  GenJob *j = ctx;
  pipeline_step(j->m, &j->p, step, cond, latent);
  char name[64];
  snprintf(name, sizeof name, "latents_step_%d", step);
  dump_tensor(&j->p, name, latent, 5, (int64_t[]){1, j->s.F, j->s.lat_c, j->s.h, j->s.w});
  if (j->n_videos > 1 || j->stages > 1)
    fprintf(stderr, "video %d step %d/%d  elapsed %.1fs\n", video, step + 1, j->p.steps, vdp_now() - j->t0);
  else
    progress("step", step + 1, j->p.steps, j->t0 + j->t_encode[0]);
  return 0;
}

static int gen_finish(void *ctx, int video, const void *cond, const float *latent, char *err, size_t errlen) {
  GenJob *j = ctx;
  double t = vdp_now();
  dump_tensor(&j->p, "final_latents", latent, 5, (int64_t[]){1, j->s.F, j->s.lat_c, j->s.h, j->s.w});
  float *frames = vdp_malloc((size_t)j->s.F * j->p.height * j->p.width * 3 * sizeof(float), "frames");
  pipeline_decode(j->m, &j->p, latent, frames);
  dump_tensor(&j->p, "frames", frames, 4, (int64_t[]){j->s.F, j->p.height, j->p.width, 3});
  char name[4096];
  numbered(name, sizeof name, j->out, video, j->n_videos);
  write_video(name, frames, j->s.F, j->p.height, j->p.width, j->p.fps);
  free(frames);
  j->t_decode[video] = vdp_now() - t;
  return 0;
}

int cmd_generate(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *device = "cpu";
  const char *images[64];
  int n_images = 0, num_frames = -1, decode_chunk = -1, n_videos = 1, stages = 0;
  double timeout = 60;
  GenParams p = {.height = 576, .width = 1024, .steps = 25, .fps = 7, .motion_bucket_id = 127, .noise_aug = 0.02f,
                 .min_guidance = 1.0f, .max_guidance = 3.0f, .seed = 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) vdp_die("%s: missing value (see vdp --help)", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--image")) {
      if (n_images == 64) vdp_die("--image: at most 64 images");
      images[n_images++] = v;
    } else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--height")) p.height = (int)parse_int(a, v, 8, 16384);
    else if (!strcmp(a, "--width")) p.width = (int)parse_int(a, v, 8, 16384);
    else if (!strcmp(a, "--num-frames")) num_frames = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--num-inference-steps")) p.steps = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--fps")) p.fps = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--motion-bucket-id")) p.motion_bucket_id = (int)parse_int(a, v, 0, 100000);
    else if (!strcmp(a, "--noise-aug-strength")) p.noise_aug = parse_float(a, v, 0.0, 100.0);
    else if (!strcmp(a, "--min-guidance-scale")) p.min_guidance = parse_float(a, v, 0.0, 100.0);
    else if (!strcmp(a, "--max-guidance-scale")) p.max_guidance = parse_float(a, v, 0.0, 100.0);
    else if (!strcmp(a, "--decode-chunk-size")) decode_chunk = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--seed")) p.seed = parse_u64(a, v);
    else if (!strcmp(a, "--device")) device = v;
    else if (!strcmp(a, "--dump")) p.dump_dir = v;
    else if (!strcmp(a, "--num-videos")) n_videos = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--stages")) stages = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--timeout")) timeout = parse_float(a, v, 0.1, 1e6);
    else vdp_die("unknown option %s (see vdp generate --help)", a);
  }
  if (!model) vdp_die("generate: --model M.vdpw is required");
  if (!n_images) vdp_die("generate: --image IN.png is required");
  if (!out) vdp_die("generate: --out OUT.{npy,png,gif,mp4} is required");
  const char *ext = ext_of(out);
  if (strcmp(ext, "npy") && strcmp(ext, "png") && strcmp(ext, "gif") && strcmp(ext, "mp4"))
    vdp_die("--out %s: unknown extension '.%s' (use .npy, .png, .gif or .mp4)", out, ext);
  if (strcmp(device, "cpu") && strcmp(device, "cuda")) vdp_die("--device %s: expected cpu or cuda", device);
  if (!strcmp(device, "cuda"))
    vdp_die("--device cuda: the GPU pipeline is not implemented yet in this build; use --device cpu");
  if (n_images > 1 && n_videos > 1) vdp_die("give either several --image or --num-videos, not both");
  if (n_images > 1) n_videos = n_images;
  if (stages > p.steps) vdp_die("--stages %d: more stages than --num-inference-steps %d (every stage runs at least one step)", stages, p.steps);
  {  // fail before hours of work, not after: the output's folder must be writable
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (access(slash ? (*dir ? dir : "/") : ".", W_OK)) vdp_die("--out %s: cannot write to its folder: %s", out, strerror(errno));
  }
  if (p.dump_dir) {
    if (n_videos > 1) vdp_die("--dump works with one video only");
    if (mkdir(p.dump_dir, 0777) && errno != EEXIST) vdp_die("--dump %s: cannot create: %s", p.dump_dir, strerror(errno));
  }

  char err[1024];
  double t0 = vdp_now();
  VdpFile f;
  if (vdpw_open(model, &f, err, sizeof err)) vdp_die("%s", err);
  Models *m = vdp_calloc(1, sizeof *m, "models");
  if (models_load(&f, &backend_cpu, m, WANT_ALL, err, sizeof err)) vdp_die("%s", err);
  double t_load = vdp_now() - t0;
  p.num_frames = num_frames > 0 ? num_frames : f.cfg.unet_num_frames;
  p.decode_chunk = decode_chunk > 0 ? decode_chunk : p.num_frames;
  GenJob j = {.m = m, .p = p, .images = images, .n_images = n_images, .n_videos = n_videos, .stages = stages,
              .out = out, .t0 = vdp_now()};
  if (gen_shape(m, &p, &j.s, err, sizeof err)) vdp_die("%s", err);
  for (int i = 0; i < n_images; i++)  // fail on a bad image before any work
    if (access(images[i], R_OK)) vdp_die("--image %s: %s", images[i], strerror(errno));
  fprintf(stderr, "vdp: %s: %d frames %dx%d, %d steps, guidance %s, seed %llu, %d video%s%s\n", model, j.s.F, p.width,
          p.height, p.steps, j.s.B == 2 ? "on" : "off", (unsigned long long)p.seed, n_videos, n_videos > 1 ? "s" : "",
          stages ? ", timestep stages on CPU threads" : "");
  j.t_encode = vdp_calloc((size_t)n_videos, sizeof(double), "timings");
  j.t_decode = vdp_calloc((size_t)n_videos, sizeof(double), "timings");
  double *latency = vdp_calloc((size_t)n_videos, sizeof(double), "timings");

  RingDenoiser d = {.latent_floats = j.s.latent_n, .cond_bytes = j.s.cond_n * sizeof(float), .n_steps = p.steps,
                    .make_stage_ctx = gen_stage_ctx, .free_stage_ctx = gen_free_stage_ctx, .encode = gen_encode, .step = gen_step, .finish = gen_finish,
                    .user = &j};
  double t_run = vdp_now();
  if (stages >= 1) {
    RingOptions o;
    ring_options_default(&o);
    o.timeout_s = timeout;
    RingStats st = {.latency_s = latency};
    if (ring_run(&d, stages, n_videos, &o, &st, err, sizeof err)) {
      fprintf(stderr, "vdp: error: %s\n", err);
      if (st.stuck_threads) _exit(1);  // a stage is still inside the model: do not free it under its feet
      exit(1);
    }
    fprintf(stderr, "vdp: %d stages: %d videos in %.2fs (%.3f videos/s), handoff %.3f ms mean\n", stages, n_videos,
            st.run_s, st.throughput, st.handoff_mean_s * 1e3);
  } else {  // the plain loop: encode, every step, finish
    models_plan(m, &p);
    fprintf(stderr, "vdp: weights %.1f MiB, activation arena %.1f MiB (%s)\n",
            (double)(m->nparams[0] + m->nparams[1] + m->nparams[2]) * m->be->elem_size / 1048576.0,
            models_arena_bytes() / 1048576.0, m->be->name);
    float *cond = vdp_malloc(d.cond_bytes, "conditioning"), *latent = vdp_malloc(j.s.latent_n * sizeof(float), "latent");
    for (int v = 0; v < n_videos; v++) {
      double tv = vdp_now();
      if (gen_encode(&j, v, cond, latent, err, sizeof err)) vdp_die("%s", err);
      j.t0 = vdp_now() - j.t_encode[v];
      for (int i = 0; i < p.steps; i++) gen_step(&j, v, i, cond, latent, err, sizeof err);
      gen_finish(&j, v, cond, latent, err, sizeof err);
      latency[v] = vdp_now() - tv;
    }
    free(cond), free(latent);
    models_thread_release(m);
  }
  double run = vdp_now() - t_run, enc = 0, dec = 0;
  for (int v = 0; v < n_videos; v++) {
    enc += j.t_encode[v], dec += j.t_decode[v];
    if (n_videos > 1) fprintf(stderr, "vdp: video %d latency %.2fs\n", v, latency[v]);
  }
  double steps_s = run - (stages ? 0 : enc + dec);
  fprintf(stderr, "vdp: load %.2fs, encode %.2fs, decode %.2fs, %d steps in %.2fs%s, total %.2fs\n", t_load, enc, dec,
          p.steps * n_videos, stages ? run : steps_s, stages ? " (whole ring)" : "", vdp_now() - t0);
  free(j.t_encode), free(j.t_decode), free(latency);
  models_free(m);
  free(m);
  vdpw_close(&f);
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// vdp bench: random weights of a named configuration, UNet step timing; JSON on stdout
// ---------------------------------------------------------------------------------------------------
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmd_bench(int argc, char **argv) {
  const char *config = "svd", *device = "cpu";
  int F = -1, H = 576, W = 1024, cfg_on = 1, runs = 5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) vdp_die("%s: missing value", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--config")) config = v;
    else if (!strcmp(a, "--num-frames")) F = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--height")) H = (int)parse_int(a, v, 8, 16384);
    else if (!strcmp(a, "--width")) W = (int)parse_int(a, v, 8, 16384);
    else if (!strcmp(a, "--cfg")) cfg_on = (int)parse_int(a, v, 0, 1);
    else if (!strcmp(a, "--runs")) runs = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--device")) device = v;
    else vdp_die("bench: unknown option %s", a);
  }
  if (strcmp(device, "cpu")) vdp_die("bench --device %s: only the CPU backend is available in this build", device);
  VdpConfig c;
  if (config_preset(config, &c)) vdp_die("bench --config %s: expected svd or svd-xt", config);
  if (F < 0) F = c.unet_num_frames;
  if (H % 8 || W % 8) vdp_die("bench: --height and --width must be multiples of 8");
  char err[512];
  Models *m = vdp_calloc(1, sizeof *m, "models");
  fprintf(stderr, "bench: random %s UNet weights (fp32, CPU)...\n", config);
  if (models_random(&c, &backend_cpu, m, 1 << COMP_UNET, err, sizeof err)) vdp_die("%s", err);
  int B = cfg_on ? 2 : 1, h = H / 8, w = W / 8, lat = 4;
  size_t nin = (size_t)B * F * 2 * lat * h * w, nout = (size_t)B * F * lat * h * w;
  float *x = vdp_malloc(nin * sizeof(float), "bench input"), *y = vdp_malloc(nout * sizeof(float), "bench output");
  float *ctx = vdp_calloc((size_t)B * 1024, sizeof(float), "bench ctx"), ids[6] = {6, 127, 0.02f, 6, 127, 0.02f};
  for (size_t i = 0; i < nin; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (int i = 0; i < B * 1024; i++) ctx[i] = (float)(i % 7) * 0.1f;
  double *ms = vdp_malloc((size_t)runs * sizeof(double), "timings"), flops = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = vdp_now();
    unet_forward(m, x, B, F, h, w, 1.0f, ctx, ids, y);
    ms[r] = (vdp_now() - t0) * 1e3;
    flops = model_flops_take();
    fprintf(stderr, "bench: UNet step %d/%d: %.0f ms\n", r + 1, runs, ms[r]);
  }
  qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
  double med = ms[runs / 2];
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"device\": \"cpu\", \"config\": \"%s\", \"frames\": %d, \"height\": %d, \"width\": %d, \"cfg\": %d, "
         "\"runs\": %d, \"unet_ms_per_step_median\": %.1f, \"unet_flop_per_step\": %.4g, \"unet_tflops\": %.4f, "
         "\"peak_rss_mib\": %.0f}\n",
         config, F, H, W, cfg_on, runs, med, flops, flops / (med * 1e-3) / 1e12, ru.ru_maxrss / 1024.0);
  free(x), free(y), free(ctx), free(ms);
  models_free(m), free(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("vdp %s\n", VDP_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
  if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
  if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
  if (!strcmp(cmd, "sim")) return cmd_sim(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
  fprintf(stderr, "vdp: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
