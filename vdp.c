// vdp.c — the command line: `vdp convert | info | generate | sim`.
// Results go to stdout, progress and diagnostics to stderr.
#include "cfgpar.h"
#include "model.h"
#include "ring.h"
#ifdef VDP_CUDA
#include "kernels.h"
#endif

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *o) {
  fprintf(o,
          "vdp %s — Stable Video Diffusion (image -> video) in C and CUDA\n"
          "\n"
          "usage:\n"
          "  vdp convert SRC_DIR OUT.vdpw [--dtype fp16|fp32] [--variant auto|fp32|fp16] [--overwrite]\n"
          "                                                     diffusers SVD folder -> .vdpw\n"
          "  vdp convert FILE.safetensors OUT.vdpw [--dtype fp16|fp32] [--num-frames N] [--overwrite]\n"
          "                                                     single-file SGM checkpoint (ComfyUI) -> .vdpw\n"
          "    both with [--unet UNET.safetensors] (another UNet's weights, e.g. AnimateLCM-SVD-xt)\n"
          "    and [--sampler euler|animatelcm] (the sampler generate uses by default)\n"
          "  vdp info FILE.vdpw                                 configuration and parameter counts\n"
          "  vdp generate --model M.vdpw --image IN.png --out OUT.{npy,png,gif,mp4} [options]\n"
          "  vdp sim --stages S [options]                       the stage ring with a dummy denoiser\n"
          "  vdp bench --config svd|svd-xt [--device cpu|cuda --num-frames F --height H --width W --cfg 0|1\n"
          "            --runs N --num-inference-steps N --decode-chunk-size N --components unet|all\n"
          "            --cuda-graph on|off]                                          JSON\n"
          "  vdp bench --ops [--device cpu|cuda --runs N]           operator timings (GFLOP/s), JSON\n"
          "\n"
          "generate options (diffusers' names and defaults):\n"
          "  --height 576 --width 1024 --num-frames (model default) --num-inference-steps 25 (animatelcm: 4)\n"
          "  --fps 7 --motion-bucket-id 127 --noise-aug-strength 0.02\n"
          "  --min-guidance-scale 1.0 --max-guidance-scale 3.0 (animatelcm: 1.2) --decode-chunk-size (all frames)\n"
          "  --sampler euler|animatelcm (default: the one the .vdpw records; animatelcm takes at most 40 steps)\n"
          "  --seed 0 --device cpu|cuda --dump DIR (writes each intermediate tensor as DIR/NAME.npy)\n"
          "  --overwrite: replace existing output files (regular files only), a non-empty --dump folder's files,\n"
          "    and delete a PNG sequence's earlier frames beyond the new frame count; without it any of these\n"
          "    stops vdp before the weights load\n"
          "  --max-pixels N (largest input image accepted, default %llu, at most %d x %d)\n"
          "  --num-videos K (seeds s, s+1, ...) or several --image; --stages S (timestep stages on a ring)\n"
          "  --timeout SECONDS (ring liveness bound: the longest one encode, step or decode may take;\n"
          "    default 60 with --transport nccl, 86400 on CPU threads, where one step can take minutes)\n"
          "  --transport cpu|nccl; with nccl and --device cuda, one process per GPU stage:\n"
          "    --rank R --world W --nccl-id-file PATH [--gpu G]; without --rank/--world, rank, world and GPU (local\n"
          "    rank) come from torchrun, Slurm, Open MPI or MPICH/PMI variables when a launcher set them\n"
          "  --cuda-graph on|off (default on): capture the first denoising step into a CUDA graph and replay it\n"
          "    for the others; off launches every kernel (debugging, comparison). The CPU ignores it\n"
          "  --cfg-parallel (--device cuda, guidance on): the unconditional and conditional halves of guidance on\n"
          "    GPUs 0 and 1 (or one half per process: --rank R --world 2 --nccl-id-file PATH, or a launcher);\n"
          "    byte-identical output, lower latency for one video; not with --stages\n"
          "\n"
          "exit status: 0 success, 1 failure (files, weights, the run), 2 usage error (flags)\n",
          VDP_VERSION, (unsigned long long)IMG_DEFAULT_MAX_PIXELS, IMG_MAX_SIDE, IMG_MAX_SIDE);
}

// ---------------------------------------------------------------------------------------------------
// Flag parsing: every number is checked whole; a bad value names the flag (a usage error: exit 2).
// ---------------------------------------------------------------------------------------------------
static long parse_int(const char *flag, const char *s, long lo, long hi) {
  long v;
  if (vdp_parse_long(s, lo, hi, &v))
    vdp_usage_die("%s %s: expected an integer in [%ld, %ld]", flag, s, lo, hi);
  return v;
}

static uint64_t parse_u64(const char *flag, const char *s) {
  char *end;
  errno = 0;
  if (!vdp_is_decimal(s, 0) || *s == '-' || *s == '+') vdp_usage_die("%s %s: expected a non-negative decimal integer", flag, s);
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) vdp_usage_die("%s %s: expected a non-negative integer below 2^64", flag, s);
  return v;
}

static float parse_float(const char *flag, const char *s, double lo, double hi) {
  double v;
  if (vdp_parse_double(s, lo, hi, &v))
    vdp_usage_die("%s %s: expected a decimal number in [%g, %g]", flag, s, lo, hi);
  return (float)v;
}

static int parse_on_off(const char *flag, const char *s) {
  if (!strcmp(s, "on")) return 1;
  if (!strcmp(s, "off")) return 0;
  vdp_usage_die("%s %s: expected on or off", flag, s);
  return 0;
}

// --height / --width: the VAE works on multiples of 8 (a model with more levels may ask for more: that
// is checked against the model's configuration once its header is read).
static int parse_side(const char *flag, const char *s) {
  int v = (int)parse_int(flag, s, 8, 16384);
  if (v % 8) vdp_usage_die("%s %d: must be a multiple of 8 (the VAE downsamples by 8; e.g. %d or %d)", flag, v, v / 8 * 8,
                           v / 8 * 8 + 8);
  return v;
}

static const char *ext_of(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return dot && (!slash || dot > slash) ? dot + 1 : "";
}

// ---------------------------------------------------------------------------------------------------
// Output: .npy [F,H,W,3] float32, .png one file per frame, .gif/.mp4 through ffmpeg
// ---------------------------------------------------------------------------------------------------
// .npy [F,H,W,3] float32, .png one file per frame (all or none), .gif/.mp4 through ffmpeg. Each follows
// the output rule of util.c; the checks of check_outputs ran before the weights were loaded.
static int write_video(const char *out, const float *frames, int F, int H, int W, int fps, char *err, size_t errlen) {
  const char *ext = ext_of(out);
  int64_t n = (int64_t)F * H * W * 3;
  if (!strcmp(ext, "npy")) {
    if (npy_save_f32(out, frames, (int64_t[]){F, H, W, 3}, 4, err, errlen)) return -1;
    printf("%s\n", out);
    return 0;
  }
  uint8_t *u8 = vdp_malloc((size_t)n, "output frames");
  for (int64_t i = 0; i < n; i++) u8[i] = (uint8_t)nearbyintf(frames[i] * 255.0f);  // numpy round: half to even
  int rc;
  if (!strcmp(ext, "png")) {
    char stem[4096];
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(out) - 4), out);
    rc = png_sequence_save(stem, u8, F, W, H, err, errlen);
    for (int f = 0; !rc && f < F; f++) {
      char path[4200];
      png_sequence_name(path, sizeof path, stem, f);
      printf("%s\n", path);
    }
  } else {
    rc = video_save_ffmpeg(out, u8, F, W, H, fps, err, errlen);
    if (!rc) printf("%s\n", out);
  }
  free(u8);
  return rc;
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
// --device: 1 for cuda, 0 for cpu (a usage check only: whether CUDA is there is asked later, by
// pick_backend, once every flag has been checked).
static int device_is_cuda(const char *device) {
  if (!strcmp(device, "cpu")) return 0;
  if (strcmp(device, "cuda")) vdp_usage_die("--device %s: expected cpu or cuda", device);
  return 1;
}

// The backend of --device: the CPU reference, or CUDA when built with it and a GPU is present.
static const Backend *pick_backend(const char *device) {
  if (!device_is_cuda(device)) return &backend_cpu;
  const Backend *be = backend_cuda();
  if (!be) vdp_die("--device cuda: no CUDA backend (built without nvcc, or no GPU / driver visible); use --device cpu");
  return be;
}

// Frames STEM_NNN.png with NNN >= F (any number of digits >= 3): left from a longer earlier run, they
// would look like part of the new video. Their names go to *list (malloc'd, NULL when none); with
// remove set, those that are regular files are deleted. Returns how many there are.
static int stale_frames(const char *stem, int F, int remove, char **list) {
  char dir[4096];
  const char *slash = strrchr(stem, '/'), *base = slash ? slash + 1 : stem;
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == stem ? 1 : (int)(slash - stem), stem);
  *list = NULL;
  DIR *d = opendir(dir);
  if (!d) return 0;
  size_t bl = strlen(base), len = 0, cap = 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *nm = e->d_name;
    if (strncmp(nm, base, bl) || nm[bl] != '_') continue;
    const char *q = nm + bl + 1;
    int digits = 0;
    long num = 0;
    while (q[digits] >= '0' && q[digits] <= '9' && digits < 9) num = num * 10 + (q[digits] - '0'), digits++;
    if (digits < 3 || strcmp(q + digits, ".png") || num < F) continue;
    char path[4400];
    snprintf(path, sizeof path, "%s%s%s", slash ? dir : "", slash && slash != stem ? "/" : "", nm);
    if (remove) {
      struct stat st;
      if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) unlink(path);
      continue;
    }
    size_t k = strlen(path);
    if (len + k + 3 > cap) {
      cap = (len + k + 3) * 2;
      char *p = realloc(*list, cap);
      if (!p) break;
      *list = p;
    }
    len += (size_t)snprintf(*list + len, cap - len, "%s%s", n ? ", " : "", path);
    n++;
  }
  closedir(d);
  return n;
}

// Every output of the run, checked before the weights load: the target names are free (or, with
// --overwrite, regular writable files), their folders take new files, .gif/.mp4 can be encoded, and a
// PNG sequence has no stale frames beyond the new frame count.
static void check_outputs(const char *out, int n_videos, int F, int fps, int overwrite, const char *const *inputs,
                          int n_inputs) {
  char err[4600];
  const char *ext = ext_of(out);
  for (int v = 0; v < n_videos; v++) {
    char name[4096];
    numbered(name, sizeof name, out, v, n_videos);
    if (!strcmp(ext, "png")) {
      char stem[4096], frame[4200], *list = NULL;
      snprintf(stem, sizeof stem, "%.*s", (int)(strlen(name) - 4), name);
      for (int f = 0; f < F; f++) {
        png_sequence_name(frame, sizeof frame, stem, f);
        // the folder probe once per sequence (same folder), the name check for every frame
        if ((f ? target_check : out_check)(frame, overwrite, err, sizeof err) ||
            out_not_input(frame, inputs, n_inputs, err, sizeof err))
          vdp_die("--out %s: %s", out, err);
      }
      int n = stale_frames(stem, F, 0, &list);
      if (n && !overwrite)
        vdp_die("--out %s: %d frame file%s of an earlier, longer sequence would look like part of this %d-frame "
                "video: %.2000s (remove them, or give --overwrite to replace the sequence and delete them)",
                out, n, n > 1 ? "s" : "", F, list ? list : "");
      free(list);
      continue;
    }
    if (out_check(name, overwrite, err, sizeof err) || out_not_input(name, inputs, n_inputs, err, sizeof err))
      vdp_die("--out: %s", err);
    if (strcmp(ext, "npy") && video_check(name, fps, err, sizeof err)) vdp_die("--out: %s", err);
  }
}

// --dump DIR: created when absent; an existing one must be a folder, and an empty one unless --overwrite
// (its files would be replaced one by one).
static void check_dump_dir(const char *dir, int overwrite) {
  struct stat st;
  if (lstat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) vdp_die("--dump %s: is %s, expected a folder (or a name to create one)", dir, file_kind(st.st_mode));
    DIR *d = opendir(dir);
    if (!d) vdp_die("--dump %s: cannot read: %s", dir, strerror(errno));
    struct dirent *e;
    const char *first = NULL;
    while (!first && (e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) first = e->d_name;
    if (first && !overwrite)
      vdp_die("--dump %s: the folder is not empty (it holds %s); its files would be replaced: choose an empty or new "
              "folder, or give --overwrite", dir, first);
    closedir(d);
  } else if (errno != ENOENT || mkdir(dir, 0777)) {
    vdp_die("--dump %s: cannot create: %s", dir, strerror(errno));
  } else {
    out_created(dir, 1);  // created by this run: a failed run removes it (and the dumps it wrote)
  }
  char probe[4200], err[4600];
  snprintf(probe, sizeof probe, "%s/final_latents.npy", dir);
  if (out_check(probe, overwrite, err, sizeof err)) vdp_die("--dump: %s", err);
}

// One job = K videos of the same model and parameters. The three phases are RingDenoiser callbacks, so
// the plain loop (no --stages) and the stage ring run exactly the same code per step.
typedef struct {
  Models *m;              // shared by CPU stage threads; NULL when every stage loads its own (GPU stages)
  const VdpFile *file;
  const Backend *be;
  GenParams p;
  GenShape s;
  const char **images;
  VdpImage *imgs;         // [n_images] decoded before the weights load; rgb NULL: decode again when needed
  int n_images, n_videos, stages, overwrite, cfg_parallel;
  int graphs;             // --cuda-graph: capture the first step, replay the others (CUDA only)
  int in_w, in_h;         // the largest input image (memory admission)
  const char *out;
  double t0;
  double *t_encode, *t_decode;  // per video
} GenJob;

// A GPU stage thread's CUDA stream and scratch go when the stage does.
static void cuda_thread_release(void) {
#ifdef VDP_CUDA
  vdp_cuda_thread_release();
#endif
}

// What one stage works with: the job and its models. CPU stages share the weights and plan their own
// activation arena; a GPU stage loads the weights onto its own device (the ring set it before calling).
typedef struct {
  GenJob *j;
  Models *m;
  int own;
  int stage;        // or the CFG-parallel half
  PipeState *st;    // the step loop's backend memory (latent, conditioning, tables, graphs)
  int cond_video;   // the video whose conditioning st holds (-1: none)
} StageCtx;

static void *gen_stage_ctx(void *user, int stage, char *err, size_t errlen) {
  GenJob *j = user;
  StageCtx *sc = vdp_calloc(1, sizeof *sc, "stage");
  sc->j = j, sc->m = j->m, sc->stage = stage;
  if (!sc->m) {
    sc->m = vdp_calloc(1, sizeof *sc->m, "models"), sc->own = 1;
    // only stage 0 encodes and decodes: the other stages need the UNet alone; admitted on this stage's
    // device before anything is uploaded
    int want = stage == 0 || j->cfg_parallel ? WANT_ALL : 1 << COMP_UNET;  // CFG-parallel: both halves encode
    if (models_admit(&j->file->cfg, j->be, &j->p, want, j->in_w, j->in_h, 1, j->n_videos > 1, err, errlen) ||
        models_load(j->file, j->be, sc->m, want, err, errlen)) {
      models_free(sc->m), free(sc->m), free(sc);
      cuda_thread_release();
      return NULL;
    }
  }
  models_plan(sc->m, &j->p);
  models_warm_up(sc->m, &j->p);
  sc->stage = stage, sc->cond_video = -1;
  sc->st = pipeline_state_new(sc->m, &j->p, j->graphs);
  return sc;
}

static void gen_free_stage_ctx(void *ctx) {
  StageCtx *sc = ctx;
  pipeline_state_free(sc->st);
  models_thread_release(sc->m);
  if (sc->own) models_free(sc->m), free(sc->m), cuda_thread_release();
  free(sc);
}

// The ring's latents of a stage: in its backend's memory (GPU stages: device memory that NCCL sends GPU to
// GPU; CPU stages: host memory the CPU transport copies), where the steps work on them in place
static void *gen_latent_alloc(void *ctx, size_t bytes) {
  StageCtx *sc = ctx;
  return sc->m->be->mem_alloc(bytes, "ring latent");
}
static void gen_latent_free(void *ctx, void *p) {
  StageCtx *sc = ctx;
  sc->m->be->mem_free(p);
}

static int gen_encode(void *ctx, int video, void *cond, float *latent, char *err, size_t errlen) {
  StageCtx *sc = ctx;
  GenJob *j = sc->j;
  int i = j->n_images > 1 ? video : 0;
  const char *path = j->images[i];
  double t = vdp_now();
  VdpImage own = {0}, *img = &j->imgs[i];
  if (j->cfg_parallel) {  // both halves encode at once: each decodes its own copy
    img = &own;
    if (image_load(path, img, err, errlen)) return -1;
  } else if (!img->rgb && image_load(path, img, err, errlen)) {
    return -1;  // (over the memory budget of the check)
  }
  // The CLIP branch works on the image at full size: say so when that takes a while.
  if ((int64_t)img->w * img->h > 4 << 20)
    fprintf(stderr, "video %d: encoding a %dx%d image (%.0f megapixels)...\n", video, img->w, img->h,
            (double)img->w * img->h / 1e6);
  int rc = pipeline_encode(sc->m, &j->p, img, j->p.seed + (uint64_t)video, sc->st, cond, latent, err, errlen);
  sc->cond_video = video;
  if (img == &own || j->n_images > 1 || video == j->n_videos - 1) image_free(img);  // its last use
  // The CLIP image encoder is done after the last video's encode: give its memory back (a third of SVD's
  // weights). Only where the models are not shared with stages that still read them.
  if (video == j->n_videos - 1 && (!j->stages || sc->own)) models_free_component(sc->m, COMP_CLIP);
  if (!j->cfg_parallel || sc->stage == 0) j->t_encode[video] = vdp_now() - t;
  return rc;
}

// --dump: every step's latent (a download per step: debugging only)
static void dump_step_latent(StageCtx *sc, int step, const float *lat) {
  GenJob *j = sc->j;
  if (!j->p.dump_dir) return;
  char name[64];
  float *h = vdp_malloc(j->s.latent_n * sizeof(float), "dump");
  pipeline_latent_to_host(sc->m, h, lat, j->s.latent_n);
  snprintf(name, sizeof name, "latents_step_%d", step);
  dump_tensor(&j->p, name, h, 5, (int64_t[]){1, j->s.F, j->s.lat_c, j->s.h, j->s.w});
  free(h);
}

static int gen_step(void *ctx, int video, int step, const void *cond, float *latent, char *err, size_t errlen) {
  StageCtx *sc = ctx;
  GenJob *j = sc->j;
  if (sc->cond_video != video) pipeline_load_cond(sc->st, cond), sc->cond_video = video;  // a video arrived
  // latent: backend memory (the ring's latents of a GPU stage are device memory: gen_latent_alloc)
  float *lat = latent;
  pipeline_step(sc->m, &j->p, step, sc->st, lat);
  // A GPU stage's block ends: its queued work must be done before NCCL sends the latent (the one host
  // synchronisation of a block, not inside it)
  if (j->stages && step == ring_stage_first(j->p.steps, j->stages, sc->stage + 1) - 1) sc->m->be->sync();
  dump_step_latent(sc, step, lat);
  if (j->n_videos > 1 || j->stages > 1)
    fprintf(stderr, "video %d step %d/%d  elapsed %.1fs\n", video, step + 1, j->p.steps, vdp_now() - j->t0);
  else
    progress("step", step + 1, j->p.steps, j->t0 + j->t_encode[0]);
  return 0;
}

// CFG-parallel: this half's UNet pass, the exchange of v-predictions, the shared update (cfgpar.h). The
// driver works on the half's own latent in backend memory (gen_half_latent), like a ring stage's.
static float *gen_half_latent(void *ctx) { return pipeline_latent(((StageCtx *)ctx)->st); }
static int cfg_exchange_cb(void *x, const void *mine, void *theirs, size_t bytes, char *err, size_t errlen) {
  return cfg_exchange(x, mine, theirs, bytes, err, errlen);
}
static int gen_step_half(void *ctx, int video, int step, const void *cond, float *latent, int half, CfgExchange *x,
                         char *err, size_t errlen) {
  StageCtx *sc = ctx;
  GenJob *j = sc->j;
  if (sc->cond_video != video) pipeline_load_cond(sc->st, cond), sc->cond_video = video;
  float *lat = latent;  // backend memory: this half's PipeState latent (gen_half_latent)
  if (pipeline_step_half(sc->m, &j->p, step, sc->st, lat, half, cfg_exchange_cb, x, err, errlen)) return -1;
  if (half == 0) dump_step_latent(sc, step, lat);
  if (half == 0) fprintf(stderr, "video %d step %d/%d  elapsed %.1fs\n", video, step + 1, j->p.steps, vdp_now() - j->t0);
  return 0;
}

static int gen_finish(void *ctx, int video, const void *cond, const float *latent, char *err, size_t errlen) {
  StageCtx *sc = ctx;
  GenJob *j = sc->j;
  double t = vdp_now();
  const float *lat = latent;  // backend memory
  if (j->p.dump_dir) {
    float *h = vdp_malloc(j->s.latent_n * sizeof(float), "dump");
    pipeline_latent_to_host(sc->m, h, lat, j->s.latent_n);
    dump_tensor(&j->p, "final_latents", h, 5, (int64_t[]){1, j->s.F, j->s.lat_c, j->s.h, j->s.w});
    free(h);
  }
  float *frames = vdp_malloc((size_t)j->s.F * j->p.height * j->p.width * 3 * sizeof(float), "frames");
  pipeline_decode(sc->m, &j->p, lat, frames);
  dump_tensor(&j->p, "frames", frames, 4, (int64_t[]){j->s.F, j->p.height, j->p.width, 3});
  char name[4096];
  numbered(name, sizeof name, j->out, video, j->n_videos);
  int rc = write_video(name, frames, j->s.F, j->p.height, j->p.width, j->p.fps, err, errlen);
  free(frames);
  if (!rc && j->overwrite && !strcmp(ext_of(name), "png")) {  // --overwrite: earlier frames beyond F go
    char stem[4096], *list = NULL;
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(name) - 4), name);
    stale_frames(stem, j->s.F, 1, &list);
    free(list);
  }
  j->t_decode[video] = vdp_now() - t;
  return rc;
}

// The options of `vdp generate` that take a value (all but --overwrite and --help).
static const char *const GEN_FLAGS[] = {
    "--model", "--image", "--out", "--height", "--width", "--num-frames", "--num-inference-steps", "--fps",
    "--motion-bucket-id", "--noise-aug-strength", "--min-guidance-scale", "--max-guidance-scale",
    "--decode-chunk-size", "--seed", "--device", "--dump", "--num-videos", "--stages", "--timeout", "--transport",
    "--rank", "--world", "--nccl-id-file", "--gpu", "--max-pixels", "--cuda-graph", "--sampler", NULL};

// The defaults that depend on the sampler (diffusers' for euler, the AnimateLCM demo's for animatelcm):
// steps and the top of the guidance ramp. Flags given on the command line keep their values.
static void sampler_defaults(GenParams *p, int steps_given, int max_guidance_given) {
  int lcm = p->sampler == VDP_SAMPLER_ANIMATELCM;
  if (!steps_given) p->steps = lcm ? 4 : 25;
  if (!max_guidance_given) p->max_guidance = lcm ? 1.2f : 3.0f;
  if (lcm && p->steps > ANIMATELCM_POINTS)
    vdp_usage_die("--num-inference-steps %d: the animatelcm sampler's schedule has %d points, so at most %d steps "
                  "(its model card: 2 to 8)", p->steps, ANIMATELCM_POINTS, ANIMATELCM_POINTS);
}

int cmd_generate(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *device = "cpu";
  const char *images[64];
  const char *transport = "cpu", *nccl_id_file = NULL;
  int n_images = 0, num_frames = -1, decode_chunk = -1, n_videos = 1, stages = 0, rank = 0, world = 0, gpu = -1;
  int overwrite = 0, graphs = 1, sampler = -1, steps_given = 0, max_guidance_given = 0;  // sampler -1: the file's
  int rank_given = 0, cfg_parallel = 0;
  uint64_t max_pixels = IMG_DEFAULT_MAX_PIXELS;
  double timeout = 0;  // 0: not given
  GenParams p = {.height = 576, .width = 1024, .steps = 25, .fps = 7, .motion_bucket_id = 127, .noise_aug = 0.02f,
                 .min_guidance = 1.0f, .max_guidance = 3.0f, .seed = 0};  // steps, max_guidance: sampler_defaults
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
  vdp_flags_once("generate", argc, argv, GEN_FLAGS, (const char *const[]){"--image", NULL});
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || !a[1])
      vdp_usage_die("generate: unexpected argument '%s' (every input is given by an option, e.g. --image %s; see vdp --help)", a, a);
    if (!strcmp(a, "--overwrite")) {
      overwrite = 1;
      continue;
    }
    if (!strcmp(a, "--cfg-parallel")) {
      cfg_parallel = 1;
      continue;
    }
    int known = 0;
    for (int k = 0; GEN_FLAGS[k] && !known; k++) known = !strcmp(a, GEN_FLAGS[k]);
    if (!known) vdp_usage_die("generate: unknown option %s (see vdp --help)", a);
    if (i + 1 >= argc) vdp_usage_die("%s: missing value (see vdp --help)", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--image")) {
      if (n_images == 64) vdp_usage_die("--image: at most 64 images");
      images[n_images++] = v;
    } else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--height")) p.height = parse_side(a, v);
    else if (!strcmp(a, "--width")) p.width = parse_side(a, v);
    else if (!strcmp(a, "--num-frames")) num_frames = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--num-inference-steps")) p.steps = (int)parse_int(a, v, 1, 1000), steps_given = 1;
    else if (!strcmp(a, "--fps")) p.fps = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--motion-bucket-id")) p.motion_bucket_id = (int)parse_int(a, v, 0, 100000);
    else if (!strcmp(a, "--noise-aug-strength")) p.noise_aug = parse_float(a, v, 0.0, 100.0);
    else if (!strcmp(a, "--min-guidance-scale")) p.min_guidance = parse_float(a, v, 0.0, 100.0);
    else if (!strcmp(a, "--max-guidance-scale")) p.max_guidance = parse_float(a, v, 0.0, 100.0), max_guidance_given = 1;
    else if (!strcmp(a, "--decode-chunk-size")) decode_chunk = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--seed")) p.seed = parse_u64(a, v);
    else if (!strcmp(a, "--device")) device = v;
    else if (!strcmp(a, "--dump")) p.dump_dir = v;
    else if (!strcmp(a, "--num-videos")) n_videos = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--stages")) stages = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--timeout")) timeout = parse_float(a, v, 0.1, 1e6);
    else if (!strcmp(a, "--transport")) transport = v;
    else if (!strcmp(a, "--rank")) rank = (int)parse_int(a, v, 0, 1023), rank_given = 1;
    else if (!strcmp(a, "--world")) world = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--nccl-id-file")) nccl_id_file = v;
    else if (!strcmp(a, "--gpu")) gpu = (int)parse_int(a, v, 0, 1023);
    else if (!strcmp(a, "--cuda-graph")) graphs = parse_on_off(a, v);
    else if (!strcmp(a, "--max-pixels")) max_pixels = (uint64_t)parse_int(a, v, 1, (long)IMG_MAX_SIDE * IMG_MAX_SIDE);
    else if (!strcmp(a, "--sampler") && (sampler = sampler_from_name(v)) < 0)
      vdp_usage_die("--sampler %s: expected euler or animatelcm", v);
  }
  // The sampler is the file's unless --sampler names one; with a named one its defaults apply now (and the
  // step limit is checked before anything loads), else once the file's header is read.
  if (sampler >= 0) p.sampler = sampler, sampler_defaults(&p, steps_given, max_guidance_given);
  if (!model) vdp_usage_die("generate: --model M.vdpw is required");
  if (!n_images) vdp_usage_die("generate: --image IN.png is required");
  if (!out) vdp_usage_die("generate: --out OUT.{npy,png,gif,mp4} is required");
  const char *ext = ext_of(out);
  if (!*ext) vdp_usage_die("--out %s: no file extension; the extension picks the format: .npy, .png, .gif or .mp4", out);
  if (strcmp(ext, "npy") && strcmp(ext, "png") && strcmp(ext, "gif") && strcmp(ext, "mp4"))
    vdp_usage_die("--out %s: unknown extension '.%s' (use .npy, .png, .gif or .mp4)", out, ext);
  if (!strcmp(ext, "gif") && p.fps > 50)
    vdp_usage_die("--fps %d: GIF frame delays are whole hundredths of a second, so a GIF plays at most 50 fps (players "
                  "show faster ones at 10 fps); use .mp4 or --fps 50 or less", p.fps);
  if (name_has_control(out)) vdp_usage_die("--out: the name holds a control character (a newline, tab or escape); "
                                           "it would split the printed file list: choose a plain name");
  if (p.dump_dir && (!*p.dump_dir || name_has_control(p.dump_dir)))
    vdp_usage_die("--dump: %s", *p.dump_dir ? "the folder name holds a control character (a newline, tab or escape)"
                                            : "empty folder name");
  int cuda = device_is_cuda(device);
  int nccl = !strcmp(transport, "nccl");
  if (!nccl && strcmp(transport, "cpu")) vdp_usage_die("--transport %s: expected cpu or nccl", transport);
  if (nccl && !cuda) vdp_usage_die("--transport nccl moves latents between GPUs: it needs --device cuda");
  if (cfg_parallel) {  // the two halves of guidance on two GPUs (cfgpar.h)
    if (!cuda) vdp_usage_die("--cfg-parallel puts the two halves of guidance on two GPUs: it needs --device cuda");
    if (p.max_guidance <= 1.0f)
      vdp_usage_die("--cfg-parallel: guidance is off (--max-guidance-scale %g <= 1), so there is no second half to "
                    "run in parallel", p.max_guidance);
    if (stages) vdp_usage_die("--cfg-parallel with --stages is not supported yet: use one or the other");
    if (strcmp(transport, "cpu") && !nccl) vdp_usage_die("--transport %s: expected cpu or nccl", transport);
    nccl = 1;  // the halves exchange over NCCL
  }
  // Launched by srun / mpirun / torchrun: rank, world and GPU from their variables (explicit flags win).
  if (nccl && !world && !rank_given) {
    RingLaunch le;
    char e[512];
    int lr = ring_launch_env(&le, e, sizeof e);
    if (lr < 0) vdp_usage_die("%s", e);
    if (lr > 0) {
      if (cfg_parallel && le.world != 2)
        vdp_usage_die("--cfg-parallel runs two halves, but %s starts %d processes", le.source, le.world);
      if (stages && stages != le.world)
        vdp_usage_die("--stages %d but %s starts %d processes (one stage each); unset the launcher's variables to run "
                      "all stages in this process", stages, le.source, le.world);
      rank = le.rank, world = le.world;
      if (gpu < 0 && le.local_rank >= 0) gpu = le.local_rank;
      if (gpu >= 0) fprintf(stderr, "vdp: rank %d of %d from %s; GPU %d (local rank)\n", rank, world, le.source, gpu);
      else fprintf(stderr, "vdp: rank %d of %d from %s; GPU rank %% visible GPUs\n", rank, world, le.source);
    }
  }
  // Flags that only mean something for the ring: refuse them where they would be silently ignored.
  if (nccl && !stages && !world && !cfg_parallel) vdp_usage_die("--transport nccl hands latents between stages: give --stages S (or --rank/--world)");
  if (!world && (rank || gpu >= 0))
    vdp_usage_die("--rank/--gpu pick this process's stage and GPU in a --world run; without --world use "
                  "CUDA_VISIBLE_DEVICES to choose the GPU");
  if (!world && nccl_id_file)
    vdp_usage_die("--nccl-id-file is where the processes of a --world run meet: it needs --world W (and --rank R)");
  if (timeout > 0 && !stages && !world && !cfg_parallel)
    vdp_usage_die("--timeout bounds the stage ring's waits: it needs --stages S (or --cfg-parallel)");
  if (cfg_parallel) {
    if (world && world != 2) vdp_usage_die("--cfg-parallel --world %d: the two halves of guidance are two processes: --world 2", world);
    if (world && !nccl_id_file) vdp_usage_die("--cfg-parallel --world 2: --nccl-id-file PATH is required (rank 0 writes the NCCL id there)");
    if (world && rank >= world) vdp_usage_die("--rank %d: must be below --world %d", rank, world);
    int visible = cfgpar_gpus_visible();
    if (!world && visible < 2)
      vdp_usage_die("--cfg-parallel needs two GPUs, %d visible (or one half per process: --rank R --world 2 "
                    "--nccl-id-file PATH, or a launcher)", visible);
  } else if (world) {  // one stage per process: --stages is the world size
    if (!nccl) vdp_usage_die("--rank/--world need --transport nccl");
    if (!nccl_id_file) vdp_usage_die("--world %d: --nccl-id-file PATH is required (rank 0 writes the NCCL id there)", world);
    if (rank >= world) vdp_usage_die("--rank %d: must be below --world %d", rank, world);
    if (stages && stages != world) vdp_usage_die("--stages %d with --world %d: one stage per process, so they must match", stages, world);
    stages = world;
  }
  // GPU stages hand latents between GPUs: one GPU per stage, over NCCL (one process driving all visible
  // GPUs, or one stage per process with --rank/--world).
  if (cuda && stages > 1 && !nccl)
    vdp_usage_die("--stages %d with --device cuda: add --transport nccl (one GPU per stage)", stages);
  if (n_images > 1 && n_videos > 1) vdp_usage_die("give either several --image or --num-videos, not both");
  if (n_images > 1) n_videos = n_images;
  if (p.seed > UINT64_MAX - (uint64_t)(n_videos - 1))
    vdp_usage_die("--seed %llu with %d videos: video k uses seed + k, which would pass 2^64 - 1 and wrap to 0; use a "
                  "smaller --seed", (unsigned long long)p.seed, n_videos);
  if (stages > p.steps && (steps_given || sampler >= 0))
    vdp_usage_die("--stages %d: more stages than --num-inference-steps %d (every stage runs at least one step)", stages, p.steps);
  if (p.dump_dir && n_videos > 1) vdp_usage_die("--dump works with one video only");
  {  // every name the run will write fits a path (PATH_MAX): none is cut short
    char last[8192];
    numbered(last, sizeof last, out, n_videos - 1, n_videos);
    size_t len = strlen(last) + (!strcmp(ext, "png") ? 5 : 0);  // STEM_NNNN.png: up to 4 frame digits
    if (len >= 4096)
      vdp_usage_die("--out: %s is %zu characters long%s, more than a path may have (4095): choose a shorter name",
                    n_videos > 1 ? "the numbered name of the last video" : !strcmp(ext, "png") ? "a frame's name" : "the name",
                    len, n_videos > 1 ? " (OUT_vK.EXT)" : "");
  }
  const Backend *be = pick_backend(device);  // the flags are all checked: now whether CUDA is there
  out_set_replace(overwrite);
  image_set_max_pixels(max_pixels);

  // Cheap checks before the weights load, so that nothing fails after hours of work: the model file, every
  // image decoded and size-checked, every output path (check_outputs, once the frame count is known), the
  // --dump folder.
  {
    struct stat st;
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/model_index.json", model);
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode) && access(idx, F_OK) == 0)
      vdp_die("--model %s: is a diffusers folder; convert it once with `vdp convert %s OUT.vdpw`, then pass "
              "--model OUT.vdpw", model, model);
  }
  char err[1024];
  VdpImage *imgs = vdp_calloc((size_t)n_images, sizeof *imgs, "images");
  int in_w = 0, in_h = 0;  // the largest image: its encode buffers are admitted with the rest
  {
    size_t kept = 0;  // decoded images kept for the encode, up to 1 GiB; the rest is decoded again there
    for (int i = 0; i < n_images; i++) {
      if (image_load(images[i], &imgs[i], err, sizeof err)) vdp_die("--image: %s", err);
      if ((int64_t)imgs[i].w * imgs[i].h > (int64_t)in_w * in_h) in_w = imgs[i].w, in_h = imgs[i].h;
      size_t bytes = (size_t)imgs[i].w * imgs[i].h * 3;
      if (kept + bytes > ((size_t)1 << 30)) image_free(&imgs[i]);
      else kept += bytes;
    }
  }
  double t0 = vdp_now();
  VdpFile f;
  if (vdpw_open(model, &f, err, sizeof err)) vdp_die("%s", err);  // the header only; the weights load below
  if (sampler < 0) {  // the file's sampler and its defaults
    p.sampler = f.cfg.sched_sampler;
    sampler_defaults(&p, steps_given, max_guidance_given);
    if (stages > p.steps)
      vdp_usage_die("--stages %d: more stages than the %d steps of the %s sampler (every stage runs at least one step)",
                    stages, p.steps, sampler_name(p.sampler));
  }
  p.num_frames = num_frames > 0 ? num_frames : f.cfg.unet_num_frames;
  p.decode_chunk = decode_chunk > 0 ? decode_chunk : p.num_frames;
  Models *m = vdp_calloc(1, sizeof *m, "models");
  m->cfg = f.cfg;  // the configuration only: gen_shape needs it
  GenShape shape;
  if (gen_shape(m, &p, &shape, err, sizeof err)) vdp_usage_die("%s", err);  // flags that this model cannot take
  {
    const char *inputs[65];
    inputs[0] = model;
    for (int i = 0; i < n_images; i++) inputs[1 + i] = images[i];
    check_outputs(out, n_videos, shape.F, p.fps, overwrite, inputs, 1 + n_images);
  }
  if (p.dump_dir) check_dump_dir(p.dump_dir, overwrite);
  // GPU stages of the ring load their own models on their own device (in the stage thread)
  int per_stage = (stages >= 1 || cfg_parallel) && be != &backend_cpu;
  // One admission check before anything loads: the weights as held, the arena(s), the pipeline buffers
  // (CPU stage threads plan an arena each and share weights in which CLIP stays; GPU stages admit their
  // own device in gen_stage_ctx).
  if (!per_stage &&
      models_admit(&f.cfg, be, &p, WANT_ALL, in_w, in_h, stages >= 1 ? stages : 1, n_videos > 1 || stages >= 1, err,
                   sizeof err))
    vdp_die("%s", err);
  if (!per_stage && models_load(&f, be, m, WANT_ALL, err, sizeof err)) vdp_die("%s", err);
  double t_load = vdp_now() - t0;
  GenJob j = {.m = per_stage ? NULL : m, .file = &f, .be = be, .p = p, .s = shape, .images = images, .imgs = imgs,
              .n_images = n_images, .n_videos = n_videos, .stages = stages, .overwrite = overwrite, .in_w = in_w,
              .in_h = in_h, .out = out, .cfg_parallel = cfg_parallel, .graphs = graphs, .t0 = vdp_now()};
  fprintf(stderr, "vdp: %s: %d frames %dx%d, %s sampler, %d steps, guidance %s, seed %llu, %d video%s%s\n", model, j.s.F,
          p.width, p.height, sampler_name(p.sampler), p.steps, j.s.B == 2 ? "on" : "off", (unsigned long long)p.seed,
          n_videos, n_videos > 1 ? "s" : "",
          cfg_parallel ? ", guidance halves on two GPUs (CFG-parallel)"
          : !stages    ? ""
          : nccl       ? ", timestep stages over NCCL"
                       : ", timestep stages on CPU threads");
  j.t_encode = vdp_calloc((size_t)n_videos, sizeof(double), "timings");
  j.t_decode = vdp_calloc((size_t)n_videos, sizeof(double), "timings");
  double *latency = vdp_calloc((size_t)n_videos, sizeof(double), "timings");

  RingDenoiser d = {.latent_floats = j.s.latent_n, .cond_bytes = j.s.cond_n * sizeof(float), .n_steps = p.steps,
                    .make_stage_ctx = gen_stage_ctx, .free_stage_ctx = gen_free_stage_ctx, .encode = gen_encode, .step = gen_step, .finish = gen_finish,
                    .latent_alloc = gen_latent_alloc, .latent_free = gen_latent_free,
                    .user = &j};
  double t_run = vdp_now();
  if (cfg_parallel) {
    CfgJob cj = {.latent_floats = j.s.latent_n, .cond_bytes = j.s.cond_n * sizeof(float), .n_steps = p.steps,
                 .make_ctx = gen_stage_ctx, .free_ctx = gen_free_stage_ctx, .encode = gen_encode,
                 .step = gen_step_half, .finish = gen_finish, .latent_of = gen_half_latent, .user = &j};
    CfgOptions co = {.timeout_s = timeout > 0 ? timeout : 60, .rank = rank, .world = world, .device = gpu,
                     .nccl_id_file = nccl_id_file};
    int stuck = 0;
    if (cfgpar_run(&cj, n_videos, &co, &stuck, err, sizeof err)) {
      fprintf(stderr, "vdp: error: %s\n", err);
      out_cleanup();
      if (stuck) _exit(1);  // a half is still inside the model: do not free it under its feet
      exit(1);
    }
    for (int v = 0; v < n_videos; v++) latency[v] = 0;
  } else if (stages >= 1) {
    RingOptions o;
    ring_options_default(&o);
    // The liveness bound must exceed the longest callback. A CPU step of the real SVD takes minutes, and
    // in-process stage threads cannot vanish unnoticed, so CPU threads default to a day.
    o.timeout_s = timeout > 0 ? timeout : nccl ? 60 : 86400;
    o.transport = nccl ? RING_NCCL : RING_CPU;
    o.rank = rank, o.world = world, o.device = gpu, o.nccl_id_file = nccl_id_file;
    RingStats st = {.latency_s = latency};
    if (ring_run(&d, stages, n_videos, &o, &st, err, sizeof err)) {
      fprintf(stderr, "vdp: error: %s\n", err);
      if (st.stuck_threads) {  // a stage is still inside the model: do not free it under its feet
        out_cleanup();
        _exit(1);
      }
      exit(1);
    }
    fprintf(stderr, "vdp: %d stages: %d videos in %.2fs (%.3f videos/s), handoff %.3f ms mean\n", stages, n_videos,
            st.run_s, st.throughput, st.handoff_mean_s * 1e3);
  } else {  // the plain loop: encode, every step, finish
    StageCtx sc = {.j = &j, .m = m, .cond_video = -1};
    models_plan(m, &p);
    models_warm_up(m, &p);
    sc.st = pipeline_state_new(m, &p, graphs);
    fprintf(stderr, "vdp: weights %.1f MiB, activation arena %.1f MiB (%s)\n",
            (double)(m->nparams[0] + m->nparams[1] + m->nparams[2]) * m->be->elem_size / 1048576.0,
            models_arena_bytes() / 1048576.0, m->be->name);
    // the latent lives in backend memory from encode to decode (on CUDA: the device)
    float *cond = vdp_malloc(d.cond_bytes, "conditioning"), *latent = pipeline_latent(sc.st);
    for (int v = 0; v < n_videos; v++) {
      double tv = vdp_now();
      if (gen_encode(&sc, v, cond, latent, err, sizeof err)) vdp_die("%s", err);
      j.t0 = vdp_now() - j.t_encode[v];
      for (int i = 0; i < p.steps; i++) gen_step(&sc, v, i, cond, latent, err, sizeof err);
      if (gen_finish(&sc, v, cond, latent, err, sizeof err)) vdp_die("%s", err);
      latency[v] = vdp_now() - tv;
    }
    free(cond);
    pipeline_state_free(sc.st);
    models_thread_release(m);
  }
  double run = vdp_now() - t_run, enc = 0, dec = 0;
  for (int v = 0; v < n_videos; v++) {
    enc += j.t_encode[v], dec += j.t_decode[v];
    if (n_videos > 1) fprintf(stderr, "vdp: video %d latency %.2fs\n", v, latency[v]);
  }
  const int whole = stages || cfg_parallel;  // the encodes and decodes overlap the steps
  double steps_s = run - (whole ? 0 : enc + dec);
  fprintf(stderr, "vdp: load %.2fs, encode %.2fs, decode %.2fs, %d steps in %.2fs%s, total %.2fs\n", t_load, enc, dec,
          p.steps * n_videos, steps_s, stages ? " (whole ring)" : cfg_parallel ? " (whole run)" : "", vdp_now() - t0);
  free(j.t_encode), free(j.t_decode), free(latency);
  for (int i = 0; i < n_images; i++) image_free(&imgs[i]);
  free(imgs);
  models_free(m);
  free(m);
  vdpw_close(&f);
  out_created_keep();  // the run succeeded: its --dump folder stays
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// vdp bench: random weights of a named configuration, UNet step timing; or the operators alone (--ops).
// JSON on stdout, progress on stderr. A value that was not measured is null, never 0.
// ---------------------------------------------------------------------------------------------------
static void bench_usage(FILE *o) {
  fprintf(o,
          "usage: vdp bench [--config svd|svd-xt] [options]       random weights, UNet step timing; JSON on stdout\n"
          "       vdp bench --ops [--device D] [--runs N]          the operator cases alone; JSON on stdout\n"
          "\n"
          "  --device cpu|cuda            backend (default cpu)\n"
          "  --num-frames F --height H --width W   video size (defaults: the config's frames, 576x1024)\n"
          "  --cfg 0|1                    classifier-free guidance: a batch of 2 (default 1)\n"
          "  --runs N                     timed runs after one warm-up run (default 5); medians and minima\n"
          "  --components unet|all        all: also CLIP, VAE encode and decode, and an end-to-end estimate\n"
          "                               (default unet on the CPU, all on CUDA)\n"
          "  --sampler euler|animatelcm   the sampler whose step count the end-to-end estimate uses (default euler)\n"
          "  --num-inference-steps N      steps of the end-to-end estimate (with --components all; default the\n"
          "                               sampler's: 25 for euler, 4 for animatelcm)\n"
          "  --decode-chunk-size N        frames per VAE decode call (default: all)\n"
          "  --cuda-graph on|off          the denoising step is timed launched kernel by kernel and, with on (the\n"
          "                               default) on CUDA, also replayed from its CUDA graph: ms per step both ways\n"
          "  --ops                        time linear, conv 3x3 / temporal, attention, GroupNorm+SiLU instead,\n"
          "                               and the micro-kernel's peak on this machine\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Sorts v; the median is the mean of the two middle values for an even count.
static double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int bench_threads(void) {
#ifdef _OPENMP
  extern int omp_get_max_threads(void);  // <omp.h>'s, declared here to keep the benchmark self-contained
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// "name": value with two decimals, or null when not measured
static void json_num(const char *name, double v, int measured, const char *sep) {
  if (measured) printf("\"%s\": %.2f%s", name, v, sep);
  else printf("\"%s\": null%s", name, sep);
}

// Device tensors for the operator cases: random values in [-scale, scale) (a fixed LCG).
static void *bench_tensor(const Backend *be, int64_t n, float scale, uint32_t seed) {
  float *h = vdp_malloc((size_t)n * sizeof(float), "bench tensor");
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    h[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
  }
  void *d = be->mem_alloc((size_t)n * be->elem_size, "bench tensor");
  be->to_device(d, h, n);
  free(h);
  return d;
}
static void *bench_weight(const Backend *be, int kind, int ndim, const int64_t *shape, float scale) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  float *h = vdp_malloc((size_t)n * sizeof(float), "bench weight");
  uint32_t seed = 12345;
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    h[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
  }
  void *d = be->mem_alloc((size_t)be->weight_elems(kind, ndim, shape) * be->elem_size, "bench weight");
  be->weight_store(d, h, kind, ndim, shape);
  free(h);
  return d;
}

// The operator cases of `vdp bench --ops` (SVD's shapes: 14 frames, 320 channels at 32x32 latents).
enum { OP_LINEAR, OP_CONV3, OP_CONV_T, OP_ATTN, OP_GN_SILU };
typedef struct {
  const char *name;
  int op;
  int a, b, c, d, e;  // linear M K N; conv n cin h w cout; temporal nb nf cin hw cout; attention nseq L heads hd;
                      // groupnorm n c hw groups
} OpCase;
static const OpCase OP_CASES[] = {
    {"linear 1024x1024x1024", OP_LINEAR, 1024, 1024, 1024, 0, 0},
    {"linear 3584x320x2560 (GEGLU proj, 14 frames 16x16)", OP_LINEAR, 3584, 320, 2560, 0, 0},
    {"conv3x3 320->320 [14,320,32,32]", OP_CONV3, 14, 320, 32, 32, 320},
    {"conv3x3 1280->1280 [14,1280,4,4]", OP_CONV3, 14, 1280, 4, 4, 1280},
    {"conv_temporal 320->320 [1,14,320,32x32]", OP_CONV_T, 1, 14, 320, 1024, 320},
    {"attention spatial 1 seq x 4096 tokens x 5 heads x 64", OP_ATTN, 1, 4096, 5, 64, 0},
    {"attention temporal 1024 seqs x 14 frames x 5 heads x 64", OP_ATTN, 1024, 14, 5, 64, 0},
    {"groupnorm+silu [14,320,32,32] 32 groups", OP_GN_SILU, 14, 320, 1024, 32, 0},
};

static int bench_ops(const Backend *be, int runs) {
  double peak = -1;
  if (be == &backend_cpu) {
    fprintf(stderr, "bench: measuring the micro-kernel's peak (1 s)...\n");
    peak = op_kernel_peak_gflops(1.0);
  }
  int ncase = (int)(sizeof OP_CASES / sizeof OP_CASES[0]);
  printf("{\"device\": \"%s\", \"threads\": %d, \"runs\": %d, \"kernel_peak_gflops\": ", be->name, bench_threads(), runs);
  if (peak > 0) printf("%.1f, \"ops\": [\n", peak);
  else printf("null, \"ops\": [\n");
  double *ms = vdp_malloc((size_t)runs * sizeof(double), "timings");
  for (int ci = 0; ci < ncase; ci++) {
    const OpCase *c = &OP_CASES[ci];
    void *x = NULL, *y = NULL, *w = NULL, *bias = NULL, *g = NULL, *k = NULL, *v = NULL;
    double flop = 0;
    switch (c->op) {
      case OP_LINEAR:  // x [M, K] · w [N, K]ᵀ + b
        x = bench_tensor(be, (int64_t)c->a * c->b, 1.0f, 1), y = bench_tensor(be, (int64_t)c->a * c->c, 0, 2);
        w = bench_weight(be, WEIGHT_PLAIN, 2, (const int64_t[]){c->c, c->b}, 0.05f);
        bias = bench_tensor(be, c->c, 0.1f, 3);
        flop = 2.0 * c->a * c->b * c->c;
        break;
      case OP_CONV3:  // x [n, cin, h, w], 3x3 padding 1
        x = bench_tensor(be, (int64_t)c->a * c->b * c->c * c->d, 1.0f, 1);
        y = bench_tensor(be, (int64_t)c->a * c->e * c->c * c->d, 0, 2);
        w = bench_weight(be, WEIGHT_CONV, 4, (const int64_t[]){c->e, c->b, 3, 3}, 0.02f);
        bias = bench_tensor(be, c->e, 0.1f, 3);
        flop = 2.0 * c->a * c->e * c->b * 9.0 * c->c * c->d;
        break;
      case OP_CONV_T:  // x [nb·nf, cin, hw]
        x = bench_tensor(be, (int64_t)c->a * c->b * c->c * c->d, 1.0f, 1);
        y = bench_tensor(be, (int64_t)c->a * c->b * c->e * c->d, 0, 2);
        w = bench_weight(be, WEIGHT_CONV, 5, (const int64_t[]){c->e, c->c, 3, 1, 1}, 0.05f);
        bias = bench_tensor(be, c->e, 0.1f, 3);
        flop = 2.0 * c->a * c->b * c->e * c->c * 3.0 * c->d;
        break;
      case OP_ATTN: {  // q, k, v, o [nseq, L, heads·hd]
        int64_t n = (int64_t)c->a * c->b * c->c * c->d;
        x = bench_tensor(be, n, 1.0f, 1), k = bench_tensor(be, n, 1.0f, 4), v = bench_tensor(be, n, 1.0f, 5);
        y = bench_tensor(be, n, 0, 2);
        flop = 4.0 * c->a * c->c * (double)c->b * c->b * c->d;
        break;
      }
      case OP_GN_SILU:  // x [n, c, hw], frame-pooled per group as in SVD's temporal blocks
        x = bench_tensor(be, (int64_t)c->a * c->b * c->c, 1.0f, 1), y = bench_tensor(be, (int64_t)c->a * c->b * c->c, 0, 2);
        g = bench_tensor(be, c->b, 1.0f, 6), bias = bench_tensor(be, c->b, 0.1f, 7);
        flop = 0;  // memory-bound: reported as GB/s of one read and one write
        break;
    }
    for (int r = -1; r < runs; r++) {  // r = -1: warm-up
      double t0 = vdp_now();
      switch (c->op) {
        case OP_LINEAR: be->linear(y, x, w, bias, c->a, c->b, c->c, ACT_NONE, NULL); break;
        case OP_CONV3:
          be->conv2d(y, x, w, bias, c->a, c->b, c->c, c->d, c->e, 3, 3, 1, 1, 1, 1, 1, NULL, NULL);
          break;
        case OP_CONV_T: be->conv_temporal(y, x, w, bias, c->a, c->b, c->c, c->d, c->e, NULL, NULL); break;
        case OP_ATTN: {
          int64_t row = (int64_t)c->c * c->d, seq = row * c->b;
          be->attention(y, seq, row, x, seq, row, k, seq, row, v, seq, row, c->a, c->b, c->b, c->c, c->d,
                        1.0f / sqrtf((float)c->d));
          break;
        }
        case OP_GN_SILU: be->groupnorm(y, x, g, bias, 1, c->a, c->b, c->c, c->d, 1e-5f, 1); break;
      }
      be->sync();
      if (r >= 0) ms[r] = (vdp_now() - t0) * 1e3;
    }
    double med = median_of(ms, runs), best = ms[0];
    fprintf(stderr, "bench: %s: median %.2f ms, min %.2f ms\n", c->name, med, best);
    printf("  {\"name\": \"%s\", \"ms_median\": %.3f, \"ms_min\": %.3f, ", c->name, med, best);
    if (flop > 0) {
      printf("\"gflop\": %.4f, \"gflops_median\": %.1f, \"gflops_best\": %.1f, \"share_of_kernel_peak\": ", flop / 1e9,
             flop / med / 1e6, flop / best / 1e6);
      if (peak > 0) printf("%.3f}", flop / best / 1e6 / peak);
      else printf("null}");
    } else {
      double bytes = 2.0 * c->a * c->b * c->c * sizeof(float);
      printf("\"gbytes_per_s_median\": %.1f}", bytes / med / 1e6);
    }
    printf("%s\n", ci + 1 < ncase ? "," : "");
    void *all[] = {x, y, w, bias, g, k, v};
    for (int i = 0; i < 7; i++)
      if (all[i]) be->mem_free(all[i]);
  }
  printf("]}\n");
  free(ms);
  return 0;
}

static int cmd_bench(int argc, char **argv) {
  const char *config = "svd", *device = "cpu", *components = NULL;
  int F = -1, H = 576, W = 1024, cfg_on = 1, runs = 5, steps = -1, chunk = -1, ops = 0, graphs = 1,
      sampler = VDP_SAMPLER_EULER;
  static const char *const valued[] = {"--config", "--num-frames", "--height", "--width", "--cfg", "--runs",
                                       "--num-inference-steps", "--decode-chunk-size", "--components", "--device",
                                       "--cuda-graph", "--sampler", NULL};
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      bench_usage(stdout);
      return 0;
    }
  vdp_flags_once("bench", argc, argv, valued, NULL);
  int given_model_flag = 0;  // a flag of the model benchmark (meaningless with --ops)
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--ops")) {
      ops = 1;
      continue;
    }
    if (strncmp(a, "--", 2)) vdp_usage_die("bench: unexpected argument '%s' (see vdp bench --help)", a);
    int known = 0;
    for (size_t k = 0; valued[k]; k++) known |= !strcmp(a, valued[k]);
    if (!known) vdp_usage_die("bench: unknown option %s (see vdp bench --help)", a);
    if (i + 1 >= argc) vdp_usage_die("bench: %s needs a value (see vdp bench --help)", a);
    const char *v = argv[++i];
    given_model_flag |= strcmp(a, "--device") && strcmp(a, "--runs");
    if (!strcmp(a, "--config")) config = v;
    else if (!strcmp(a, "--num-frames")) F = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--height")) H = parse_side(a, v);
    else if (!strcmp(a, "--width")) W = parse_side(a, v);
    else if (!strcmp(a, "--cfg")) cfg_on = (int)parse_int(a, v, 0, 1);
    else if (!strcmp(a, "--runs")) runs = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--num-inference-steps")) steps = (int)parse_int(a, v, 1, 1000);
    else if (!strcmp(a, "--decode-chunk-size")) chunk = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--components")) components = v;
    else if (!strcmp(a, "--cuda-graph")) graphs = parse_on_off(a, v);
    else if (!strcmp(a, "--sampler")) {
      if ((sampler = sampler_from_name(v)) < 0) vdp_usage_die("bench --sampler %s: expected euler or animatelcm", v);
    } else device = v;  // --device
  }
  if (steps < 0) steps = sampler == VDP_SAMPLER_ANIMATELCM ? 4 : 25;  // the samplers' defaults, as generate has them
  if (sampler == VDP_SAMPLER_ANIMATELCM && steps > ANIMATELCM_POINTS)
    vdp_usage_die("bench --num-inference-steps %d: the animatelcm sampler takes at most %d steps", steps, ANIMATELCM_POINTS);
  if (sampler == VDP_SAMPLER_ANIMATELCM && runs + 1 > ANIMATELCM_POINTS)  // the step timing walks the step table
    vdp_usage_die("bench --runs %d: with the animatelcm sampler at most %d (a warm-up step and the timed ones walk its "
                  "%d-row step table)", runs, ANIMATELCM_POINTS - 1, ANIMATELCM_POINTS);
  // Every flag is checked before anything is built: usage errors exit 2 at once.
  int cuda = device_is_cuda(device);
  if (ops && given_model_flag)
    vdp_usage_die("bench --ops times the operator cases alone: it takes --device and --runs only");
  VdpConfig c;
  if (!ops && config_preset(config, &c)) vdp_usage_die("bench --config %s: expected svd or svd-xt", config);
  if (!components) components = cuda ? "all" : "unet";  // the CPU one is slow: UNet only by default
  int all = !strcmp(components, "all");
  if (!all && strcmp(components, "unet")) vdp_usage_die("bench --components %s: expected unet or all", components);
  if (F < 0) F = ops ? 1 : c.unet_num_frames;
  if (chunk < 0) chunk = F;
  GenParams p = {.height = H, .width = W, .num_frames = F, .steps = steps, .fps = 7, .motion_bucket_id = 127,
                 .noise_aug = 0.02f, .min_guidance = cfg_on ? 3.0f : 1.0f, .max_guidance = cfg_on ? 3.0f : 1.0f,
                 .decode_chunk = chunk, .sampler = sampler};  // the scales only decide the batch (B = 2 with --cfg 1), also for 1 frame
  char err[1024];
  Models *m = vdp_calloc(1, sizeof *m, "models");
  if (!ops) {
    m->cfg = c;  // the configuration only: the shape check needs it
    GenShape s0;
    if (gen_shape(m, &p, &s0, err, sizeof err)) vdp_usage_die("bench: %s", err);
  }
  const Backend *be = pick_backend(device);
  if (ops) return free(m), bench_ops(be, runs);
  // The memory the benchmark will hold (its weights, arena and buffers), admitted before building.
  if (models_admit(&c, be, &p, all ? WANT_ALL : 1 << COMP_UNET, all ? W : 0, all ? H : 0, 1, 1, err, sizeof err))
    vdp_die("bench: %s", err);
  double t_start = vdp_now();
  fprintf(stderr, "bench: generating random %s weights (%s) on %s; on the CPU this takes a minute or so...\n", config,
          all ? "UNet, VAE, CLIP" : "UNet", be->name);
  if (models_random(&c, be, m, all ? WANT_ALL : 1 << COMP_UNET, err, sizeof err)) vdp_die("%s", err);
  GenShape s;
  if (gen_shape(m, &p, &s, err, sizeof err)) vdp_die("%s", err);
  fprintf(stderr, "bench: weights ready in %.1f s; planning the activation arena...\n", vdp_now() - t_start);
  models_plan(m, &p);
  size_t nin = (size_t)s.B * F * 2 * s.lat_c * s.h * s.w, nout = (size_t)s.B * F * s.lat_c * s.h * s.w;
  float *x = vdp_malloc(nin * sizeof(float), "bench input"), *y = vdp_malloc(nout * sizeof(float), "bench output");
  float *ctx = vdp_calloc((size_t)s.B * s.ctx_dim, sizeof(float), "bench ctx"), ids[6] = {6, 127, 0.02f, 6, 127, 0.02f};
  for (size_t i = 0; i < nin; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (int i = 0; i < s.B * s.ctx_dim; i++) ctx[i] = (float)(i % 7) * 0.1f;
  double *ms = vdp_malloc((size_t)runs * sizeof(double), "timings"), flops = 0, first_ms = 0;
  for (int r = -1; r < runs; r++) {  // r = -1: the first call, timed apart (warm-up)
    if (r < 0) fprintf(stderr, "bench: UNet step (warm-up) %dx%dx%d, batch %d...\n", F, H, W, s.B);
    double t0 = vdp_now();
    unet_forward(m, x, s.B, F, s.h, s.w, 1.0f, ctx, ids, y);
    be->sync();
    double t = (vdp_now() - t0) * 1e3;
    flops = model_flops_take();
    if (r < 0) {
      first_ms = t;
      fprintf(stderr, "bench: UNet step (warm-up): %.1f ms\n", t);
    } else {
      ms[r] = t;
      fprintf(stderr, "bench: UNet step %d/%d: %.1f ms\n", r + 1, runs, t);
    }
  }
  double unet = median_of(ms, runs), unet_min = ms[0], clip_ms = 0, enc_ms = 0, dec_ms = 0;
  // The step loop's step (pipeline_step: UNet input, UNet, guidance + the sampler's update, all in backend
  // memory), launched kernel by kernel and, with --cuda-graph on on a backend with graphs, replayed from its captured graph.
  double step_ms[2] = {-1, -1};  // [graphs off, graphs on]
  for (int g = 0; g <= (graphs && be->graph_begin ? 1 : 0); g++) {
    GenParams ps = p;
    ps.steps = runs + 1;  // table rows: a warm-up step (the capture with graphs), then the timed ones
    PipeState *st = pipeline_state_new(m, &ps, g);
    GenShape ss;  // the blob of this table's steps (animatelcm carries one z per step)
    if (gen_shape(m, &ps, &ss, err, sizeof err)) vdp_die("%s", err);
    float *cond = vdp_calloc(ss.cond_n, sizeof(float), "bench conditioning");
    for (size_t i = 0; i < ss.cond_n; i++) cond[i] = (float)(i % 7) * 0.1f;
    pipeline_load_cond(st, cond);
    float *lat = pipeline_latent(st), *hl = vdp_malloc(s.latent_n * sizeof(float), "bench latent");
    for (size_t i = 0; i < s.latent_n; i++) hl[i] = (float)((i * 2654435761u) % 1000) / 50.0f - 10.0f;
    pipeline_latent_from_host(m, lat, hl, s.latent_n);
    for (int r = -1; r < runs; r++) {
      double t0 = vdp_now();
      pipeline_step(m, &ps, r + 1, st, lat);
      be->sync();
      double t = (vdp_now() - t0) * 1e3;
      if (r >= 0) ms[r] = t;
      if (r < 0) fprintf(stderr, "bench: step (warm-up%s): %.1f ms\n", g ? ", graph capture" : "", t);
      else fprintf(stderr, "bench: step %d/%d (graphs %s): %.1f ms\n", r + 1, runs, g ? "on" : "off", t);
    }
    step_ms[g] = median_of(ms, runs);
    fprintf(stderr, "bench: step with graphs %s: median %.1f ms\n", g ? "on" : "off", step_ms[g]);
    model_flops_take();
    free(cond), free(hl);
    pipeline_state_free(st);
  }
  if (all) {  // one timed call each, after a warm-up call
    fprintf(stderr, "bench: CLIP, VAE encode and decode (warm-up, then timed)...\n");
    int S = c.clip_image_size;
    float *pix = vdp_calloc((size_t)3 * S * S, sizeof(float), "pixels"), emb[1024];
    float *img = vdp_calloc((size_t)3 * H * W, sizeof(float), "image"), *mean = vdp_malloc(nout * sizeof(float), "mean");
    float *frames = vdp_malloc((size_t)F * 3 * H * W * sizeof(float), "frames");
    for (int rep = 0; rep < 2; rep++) {
      double t0 = vdp_now();
      clip_forward(m, pix, emb), be->sync();
      double t1 = vdp_now();
      vae_encode(m, img, H, W, mean), be->sync();
      double t2 = vdp_now();
      for (int f0 = 0; f0 < F; f0 += chunk)
        vae_decode_chunk(m, y + (size_t)f0 * s.lat_c * s.h * s.w, F - f0 < chunk ? F - f0 : chunk, s.h, s.w,
                         frames + (size_t)f0 * 3 * H * W);
      be->sync();
      double t3 = vdp_now();
      clip_ms = (t1 - t0) * 1e3, enc_ms = (t2 - t1) * 1e3, dec_ms = (t3 - t2) * 1e3;
    }
    model_flops_take();
    free(pix), free(img), free(mean), free(frames);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double rss_mib = ru.ru_maxrss / 1024.0;
  // On the CPU the "device" is host memory: its peak is the process's peak RSS.
  double peak_dev = be->mem_peak ? be->mem_peak() / 1048576.0 : be == &backend_cpu ? rss_mib : -1;
  printf("{\"device\": \"%s\", \"config\": \"%s\", \"frames\": %d, \"height\": %d, \"width\": %d, \"cfg\": %d, "
         "\"threads\": %d, \"runs\": %d, \"unet_ms_per_step_median\": %.2f, \"unet_ms_per_step_min\": %.2f, "
         "\"unet_first_step_ms\": %.2f, \"unet_flop_per_step\": %.6g, \"unet_tflops\": %.3f, ",
         be->name, config, F, H, W, cfg_on, bench_threads(), runs, unet, unet_min, first_ms, flops,
         flops / (unet * 1e-3) / 1e12);
  json_num("step_ms_graphs_off_median", step_ms[0], step_ms[0] >= 0, ", ");
  json_num("step_ms_graphs_on_median", step_ms[1], step_ms[1] >= 0, ", ");
  json_num("clip_ms", clip_ms, all, ", ");
  json_num("vae_encode_ms", enc_ms, all, ", ");
  json_num("vae_decode_ms", dec_ms, all, ", ");
  printf("\"decode_chunk_size\": ");
  printf(all ? "%d, " : "null, ", chunk);
  printf("\"sampler\": \"%s\", ", sampler_name(sampler));
  if (all) printf("\"end_to_end_steps\": %d, \"end_to_end_s\": %.3f, ", steps, (clip_ms + enc_ms + steps * unet + dec_ms) / 1e3);
  else printf("\"end_to_end_steps\": null, \"end_to_end_s\": null, ");
  printf("\"activation_arena_mib\": %.1f, \"weights_mib\": %.1f, ", models_arena_bytes() / 1048576.0,
         (double)(m->nparams[0] + m->nparams[1] + m->nparams[2]) * be->elem_size / 1048576.0);
  json_num("peak_device_mib", peak_dev, peak_dev >= 0, ", ");
  printf("\"peak_rss_mib\": %.0f}\n", rss_mib);
  free(x), free(y), free(ctx), free(ms);
  models_thread_release(m);
  models_free(m), free(m);
  return 0;
}

int main(int argc, char **argv) {
  out_install_cleanup();  // an exit or a signal removes the temporaries of unfinished outputs
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
