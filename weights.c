// weights.c — the weight files vdp writes and reads. Reading order: safetensors.c first (the helpers,
// 1. the JSON parser, 2. the safetensors reader: the readers of foreign formats), then this file:
//   3. config_from_diffusers: the diffusers/transformers config.json files -> VdpConfig, config_validate
//   4. the .vdpw format (weights/FORMAT.md): configuration text, tensor table, writer, mmap reader
//   5. `vdp convert` (diffusers folder, or a single-file SGM checkpoint through sgm.c, -> .vdpw) and `vdp info`
// The JSON DOM, the safetensors header and the shared helpers (errf, err_prefix, rd_u64, ...) are declared
// in vdp.h section 2b.
//
// Every parser here reads untrusted bytes: lengths and offsets from a file are checked against the real
// size before they are used, arithmetic on them is overflow-checked, and errors come back as -1 with one
// message in the caller's buffer (never exit, never crash). The fuzz target test/fuzz/fuzz_vdpw.c drives
// vdpw_parse.
#include "vdp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// The .vdpw data and safetensors buffers are used in place as little-endian numbers.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights.c reads little-endian files in place: a little-endian host is required"
#endif

// Non-static entry points outside vdp.h (test/test_weights.c calls vdpw_convert).
int vdpw_convert(const char *src_dir, const char *out_path, int out_dtype, int variant, int verbose, char *err,
                 size_t errlen);
// The same with a single-file SGM checkpoint as the source too (sgm.c); num_frames > 0 overrides its default.
int vdpw_convert_src(const char *src, const char *out_path, int out_dtype, int variant, int num_frames, int verbose,
                     char *err, size_t errlen);
// The same with every option: unet (NULL: the source's) replaces the UNet's tensors by a file's (`--unet`),
// sampler (-1: the source's, i.e. euler) is recorded as the file's sampler (`--sampler`).
typedef struct {
  int out_dtype, variant, num_frames, verbose;
  const char *unet;
  int sampler;
} ConvertOpts;
int vdpw_convert_opts(const char *src, const char *out_path, const ConvertOpts *o, char *err, size_t errlen);
int config_to_text(const VdpConfig *c, char **text, size_t *len);
int config_from_text(const char *text, size_t len, VdpConfig *c, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------
static uint32_t rd_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
// double -> float without undefined behaviour for values beyond the float range (they become +-inf,
// which config_validate then refuses).
static float to_float(double v) {
  if (v > 3.4028234663852886e38) return INFINITY;
  if (v < -3.4028234663852886e38) return -INFINITY;
  return (float)v;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static const char *dtype_name(int dt) {
  return dt == VDP_F32 ? "F32" : dt == VDP_F16 ? "F16" : dt == VDP_BF16 ? "BF16" : "?";
}
static int dtype_size(int dt) { return dt == VDP_F32 ? 4 : (dt == VDP_F16 || dt == VDP_BF16) ? 2 : 0; }

// A growable text buffer (for messages and the configuration block).
typedef struct {
  char *s;
  size_t n, cap;
} Str;
static void str_printf(Str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_printf(Str *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->n;
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->s && (size_t)k < room) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + (size_t)k + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) vdp_die("out of memory formatting text");
    b->s = p;
    b->cap = cap;
  }
}

// Reads a whole small file (config.json) into a NUL-terminated buffer; refuses files over `max`.
static int read_small_file(const char *path, char **buf, size_t *len, size_t max, char *err, size_t errlen) {
  uint64_t size;
  int fd = open_regular(path, &size, err, errlen);
  if (fd < 0) return -1;
  if (size > max) {
    close(fd);
    return errf(err, errlen, "%s: file too large (%llu bytes, limit %zu)", path, (unsigned long long)size, max);
  }
  size_t n = (size_t)size, got = 0;
  char *p = vdp_malloc(n + 1, path);
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(p);
      close(fd);
      return errf(err, errlen, "%s: read error: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
    }
    got += (size_t)r;
  }
  close(fd);
  p[n] = 0;
  *buf = p;
  *len = n;
  return 0;
}

// Present under that name, whatever it is: the opener then names a directory, FIFO or device as such
// instead of calling it "not found".
static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 || lstat(path, &st) == 0;
}

// ---------------------------------------------------------------------------------------------------
// 3. Configuration: field table, validation, diffusers import
// ---------------------------------------------------------------------------------------------------
// One table built from the X-macro drives the .vdpw configuration text (writer and reader) and `vdp info`.
typedef struct {
  const char *name;
  char kind;  // 'i' int, 'f' float
  int count;  // > 1: array
  size_t off;
  const char *comp, *key;
} CfgField;
#define FD_I(name, comp, key) {#name, 'i', 1, offsetof(VdpConfig, name), comp, key},
#define FD_F(name, comp, key) {#name, 'f', 1, offsetof(VdpConfig, name), comp, key},
#define FD_IA(name, n, comp, key) {#name, 'i', n, offsetof(VdpConfig, name), comp, key},
#define FD_FA(name, n, comp, key) {#name, 'f', n, offsetof(VdpConfig, name), comp, key},
static const CfgField CFG_FIELDS[] = {VDP_CONFIG_FIELDS(FD_I, FD_F, FD_IA, FD_FA)};
#undef FD_I
#undef FD_F
#undef FD_IA
#undef FD_FA
#define N_CFG_FIELDS ((int)(sizeof CFG_FIELDS / sizeof CFG_FIELDS[0]))

// Entries of an array field in use: per-level arrays (VDP_MAX_LEVELS entries) hold unet_levels or
// vae_levels values, chosen by the name's component prefix; other arrays are used in full.
static int cfg_used(const VdpConfig *c, const CfgField *f) {
  if (f->count == 1) return 1;
  if (f->count != VDP_MAX_LEVELS) return f->count;
  int n = !strncmp(f->name, "unet_", 5) ? c->unet_levels : !strncmp(f->name, "vae_", 4) ? c->vae_levels : f->count;
  return n < 0 ? 0 : n > f->count ? f->count : n;
}

// Caps that keep every derived size far from integer overflow.
#define MAX_CH 65536
#define MAX_LAYERS 1024

int config_validate(const VdpConfig *c, char *err, size_t errlen) {
  // Floats first: no NaN or infinity anywhere.
  for (int i = 0; i < N_CFG_FIELDS; i++) {
    const CfgField *f = &CFG_FIELDS[i];
    if (f->kind != 'f') continue;
    const float *v = (const float *)((const char *)c + f->off);
    for (int k = 0; k < f->count; k++)
      if (!isfinite(v[k])) return errf(err, errlen, "config: %s is %g (must be finite)", f->name, (double)v[k]);
  }
#define REQ(cond, ...) \
  do {                 \
    if (!(cond)) return errf(err, errlen, "config: " __VA_ARGS__); \
  } while (0)
#define RANGE(v, lo, hi) REQ(c->v >= (lo) && c->v <= (hi), "%s = %d outside %d..%d", #v, c->v, (lo), (hi))
  // UNet
  RANGE(unet_levels, 1, VDP_MAX_LEVELS);
  RANGE(unet_in_channels, 1, MAX_CH);
  RANGE(unet_out_channels, 1, MAX_CH);
  RANGE(unet_layers_per_block, 1, MAX_LAYERS);
  RANGE(unet_addition_time_embed_dim, 2, MAX_CH);
  RANGE(unet_proj_class_in_dim, 1, 3 * MAX_CH);
  RANGE(unet_num_frames, 1, MAX_LAYERS);
  RANGE(unet_sample_size, 0, MAX_CH);  // 0: not given (diffusers' default None)
  REQ(c->unet_addition_time_embed_dim % 2 == 0, "addition_time_embed_dim %d must be even (cos|sin halves)",
      c->unet_addition_time_embed_dim);
  REQ(3 * c->unet_addition_time_embed_dim == c->unet_proj_class_in_dim,
      "projection_class_embeddings_input_dim %d != 3 * addition_time_embed_dim %d (fps, motion bucket, noise aug)",
      c->unet_proj_class_in_dim, c->unet_addition_time_embed_dim);
  int L = c->unet_levels;
  for (int i = 0; i < L; i++) {
    int ch = c->unet_block_out[i];
    REQ(ch >= 32 && ch <= MAX_CH && ch % 32 == 0, "unet block_out_channels[%d] = %d must be a positive multiple of 32 (GroupNorm groups)", i, ch);
    REQ(c->unet_down_attn[i] == 0 || c->unet_down_attn[i] == 1, "unet_down_attn[%d] = %d must be 0 or 1", i, c->unet_down_attn[i]);
    REQ(c->unet_up_attn[i] == 0 || c->unet_up_attn[i] == 1, "unet_up_attn[%d] = %d must be 0 or 1", i, c->unet_up_attn[i]);
  }
  // Level i has attention in down block i, in up block L-1-i (up blocks run in reverse level order) and,
  // for the last level, in the mid block.
  for (int i = 0; i < L; i++) {
    int used = c->unet_down_attn[i] || c->unet_up_attn[L - 1 - i] || i == L - 1;
    if (!used) continue;
    int ch = c->unet_block_out[i], h = c->unet_heads[i];
    REQ(h >= 1 && h <= ch && ch % h == 0, "num_attention_heads[%d] = %d does not divide %d channels", i, h, ch);
    REQ(c->unet_transformer_layers[i] >= 1 && c->unet_transformer_layers[i] <= MAX_LAYERS,
        "transformer_layers_per_block[%d] = %d outside 1..%d", i, c->unet_transformer_layers[i], MAX_LAYERS);
    REQ(c->unet_cross_dim[i] == c->clip_projection_dim,
        "unet cross_attention_dim[%d] = %d != image_encoder projection_dim %d (the image embedding is the context)", i,
        c->unet_cross_dim[i], c->clip_projection_dim);
  }
  // VAE
  RANGE(vae_levels, 1, VDP_MAX_LEVELS);
  RANGE(vae_in_channels, 1, MAX_CH);
  RANGE(vae_out_channels, 1, MAX_CH);
  RANGE(vae_latent_channels, 1, MAX_CH);
  RANGE(vae_layers_per_block, 1, MAX_LAYERS);
  RANGE(vae_norm_groups, 1, MAX_CH);
  RANGE(vae_force_upcast, 0, 1);
  for (int i = 0; i < c->vae_levels; i++) {
    int ch = c->vae_block_out[i];
    REQ(ch >= 1 && ch <= MAX_CH && ch % c->vae_norm_groups == 0, "vae block_out_channels[%d] = %d must be a positive multiple of %d (GroupNorm groups)", i,
        ch, c->vae_norm_groups);
  }
  REQ(c->vae_scaling_factor > 0, "vae scaling_factor %g must be positive", (double)c->vae_scaling_factor);
  REQ(c->vae_in_channels == 3 && c->vae_out_channels == 3, "vae in/out channels %d/%d: the pipeline needs RGB (3/3)",
      c->vae_in_channels, c->vae_out_channels);
  REQ(c->unet_in_channels == 2 * c->vae_latent_channels,
      "unet in_channels %d != 2 * vae latent_channels %d (noisy latents + image latents)", c->unet_in_channels, c->vae_latent_channels);
  REQ(c->unet_out_channels == c->vae_latent_channels, "unet out_channels %d != vae latent_channels %d",
      c->unet_out_channels, c->vae_latent_channels);
  // CLIP
  RANGE(clip_hidden, 1, MAX_CH);
  RANGE(clip_intermediate, 1, 8 * MAX_CH);
  RANGE(clip_layers, 1, MAX_LAYERS);
  RANGE(clip_heads, 1, MAX_CH);
  RANGE(clip_patch, 1, 4096);
  RANGE(clip_image_size, 1, 4096);
  RANGE(clip_channels, 3, 3);
  RANGE(clip_projection_dim, 1, MAX_CH);
  RANGE(clip_act, 0, 1);
  REQ(c->clip_hidden % c->clip_heads == 0, "image_encoder num_attention_heads %d does not divide hidden_size %d",
      c->clip_heads, c->clip_hidden);
  REQ(c->clip_image_size % c->clip_patch == 0, "image_encoder image_size %d is not a multiple of patch_size %d",
      c->clip_image_size, c->clip_patch);
  REQ(c->clip_eps > 0, "image_encoder layer_norm_eps %g must be positive", (double)c->clip_eps);
  for (int k = 0; k < 3; k++) REQ(c->clip_std[k] > 0, "feature_extractor image_std[%d] = %g must be positive", k, (double)c->clip_std[k]);
  // Scheduler: vdp implements the Euler/Karras/v-prediction/continuous-timestep configuration of SVD.
  REQ(c->sched_sigma_min > 0 && c->sched_sigma_max > c->sched_sigma_min, "scheduler needs 0 < sigma_min < sigma_max (found %g, %g)",
      (double)c->sched_sigma_min, (double)c->sched_sigma_max);
  RANGE(sched_num_train_timesteps, 1, 1000000);
  REQ(c->sched_v_prediction == 1, "scheduler prediction_type epsilon is not supported (vdp implements v_prediction)");
  REQ(c->sched_karras == 1, "scheduler use_karras_sigmas false is not supported (vdp implements the Karras schedule)");
  REQ(c->sched_continuous == 1, "scheduler timestep_type discrete is not supported (vdp implements continuous timesteps)");
  RANGE(sched_leading, 0, 1);
  RANGE(sched_sampler, 0, VDP_N_SAMPLERS - 1);
#undef RANGE
#undef REQ
  return 0;
}

// --- diffusers config.json import ------------------------------------------------------------------
// Values absent from a file take the defaults of the diffusers/transformers classes (diffusers 0.40.0,
// transformers 5.3.0); null counts as absent.
typedef struct {
  Json j;
  int root;
  char path[1024];
  char *text;
} CfgFile;

static int cfgfile_open(CfgFile *f, const char *dir, const char *rel, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  f->root = -1;
  snprintf(f->path, sizeof f->path, "%s/%s", dir, rel);
  size_t len = 0;
  if (read_small_file(f->path, &f->text, &len, 16u << 20, err, errlen)) return -1;
  f->root = json_parse(&f->j, f->text, len, err, errlen);
  if (f->root < 0) {
    err_prefix(err, errlen, f->path);
    return -1;
  }
  if (f->j.nodes[f->root].type != J_OBJ) return errf(err, errlen, "%s: not a JSON object", f->path);
  return 0;
}

static void cfgfile_close(CfgFile *f) {
  json_free(&f->j);
  free(f->text);
  f->text = NULL;
}

// Member `key`, or -1 when absent or null.
static int cfg_member(const CfgFile *f, int obj, const char *key) {
  int n = jget(&f->j, obj, key);
  return n >= 0 && f->j.nodes[n].type == J_NULL ? -1 : n;
}

static int cfg_as_int(const CfgFile *f, int n, const char *key, int *out, char *err, size_t errlen) {
  const JNode *v = &f->j.nodes[n];
  if (v->type != J_NUM || !v->is_int || v->num < -1e9 || v->num > 1e9)
    return errf(err, errlen, "%s: \"%s\" must be an integer (found %s)", f->path, key, jtype_name(v->type));
  *out = (int)v->num;
  return 0;
}

static int cfg_int(const CfgFile *f, const char *key, int def, int *out, char *err, size_t errlen) {
  int n = cfg_member(f, f->root, key);
  if (n < 0) {
    *out = def;
    return 0;
  }
  return cfg_as_int(f, n, key, out, err, errlen);
}

static int cfg_float(const CfgFile *f, const char *key, double def, int required, float *out, char *err, size_t errlen) {
  int n = cfg_member(f, f->root, key);
  if (n < 0) {
    if (required) return errf(err, errlen, "%s: \"%s\" is missing", f->path, key);
    *out = to_float(def);
    return 0;
  }
  if (f->j.nodes[n].type != J_NUM) return errf(err, errlen, "%s: \"%s\" must be a number", f->path, key);
  *out = to_float(f->j.nodes[n].num);
  return 0;
}

// true/false (or a number, as Python would accept for a bool field).
static int cfg_bool(const CfgFile *f, const char *key, int def, int *out, char *err, size_t errlen) {
  int n = cfg_member(f, f->root, key);
  if (n < 0) *out = def;
  else if (f->j.nodes[n].type == J_TRUE || f->j.nodes[n].type == J_FALSE) *out = f->j.nodes[n].type == J_TRUE;
  else if (f->j.nodes[n].type == J_NUM) *out = f->j.nodes[n].num != 0;
  else return errf(err, errlen, "%s: \"%s\" must be true or false", f->path, key);
  return 0;
}

// String member or `def` when absent; *out points into the DOM (or at def).
static int cfg_string(const CfgFile *f, const char *key, const char *def, const char **out, char *err, size_t errlen) {
  int n = cfg_member(f, f->root, key);
  if (n < 0) {
    *out = def;
    return 0;
  }
  if (f->j.nodes[n].type != J_STR) return errf(err, errlen, "%s: \"%s\" must be a string", f->path, key);
  *out = jstr(&f->j, n);
  return 0;
}

// An int or a list of `levels` ints: an int applies to every level. `defs` (ndef entries, or one int when
// ndef == 1) is the class default; a default list must have `levels` entries like a given one.
static int cfg_int_levels(const CfgFile *f, const char *key, int levels, const int *defs, int ndef, int *out, char *err,
                          size_t errlen) {
  int n = cfg_member(f, f->root, key);
  if (n < 0) {
    if (ndef != 1 && ndef != levels)
      return errf(err, errlen, "%s: \"%s\" absent and its default has %d entries, not %d (one per block)", f->path, key, ndef, levels);
    for (int i = 0; i < levels; i++) out[i] = defs[ndef == 1 ? 0 : i];
    return 0;
  }
  const JNode *v = &f->j.nodes[n];
  if (v->type == J_NUM) {
    int x = 0;
    if (cfg_as_int(f, n, key, &x, err, errlen)) return -1;
    for (int i = 0; i < levels; i++) out[i] = x;
    return 0;
  }
  if (v->type != J_ARR) return errf(err, errlen, "%s: \"%s\" must be an integer or a list", f->path, key);
  if (v->count != levels)
    return errf(err, errlen, "%s: \"%s\" has %d entries, expected %d (one per block)", f->path, key, v->count, levels);
  int i = 0;
  for (int c = v->child; c >= 0; c = f->j.nodes[c].next, i++) {
    if (f->j.nodes[c].type == J_ARR)
      return errf(err, errlen, "%s: \"%s\": nested per-layer lists are not supported", f->path, key);
    if (cfg_as_int(f, c, key, &out[i], err, errlen)) return -1;
  }
  return 0;
}

// A list of strings (block types): count into *n, names via callback index.
static int cfg_str_list(const CfgFile *f, const char *key, const char *const *defs, int ndef, const char **out, int *n,
                        char *err, size_t errlen) {
  int m = cfg_member(f, f->root, key);
  if (m < 0) {
    for (int i = 0; i < ndef; i++) out[i] = defs[i];
    *n = ndef;
    return 0;
  }
  const JNode *v = &f->j.nodes[m];
  if (v->type != J_ARR) return errf(err, errlen, "%s: \"%s\" must be a list of strings", f->path, key);
  if (v->count > VDP_MAX_LEVELS) return errf(err, errlen, "%s: \"%s\" has %d entries (vdp supports at most %d blocks)", f->path, key, v->count, VDP_MAX_LEVELS);
  int i = 0;
  for (int c = v->child; c >= 0; c = f->j.nodes[c].next) {
    if (f->j.nodes[c].type != J_STR) return errf(err, errlen, "%s: \"%s\" must be a list of strings", f->path, key);
    out[i++] = jstr(&f->j, c);
  }
  *n = i;
  return 0;
}

// The `_class_name` of a diffusers config, when present, must be `want`.
static int cfg_check_class(const CfgFile *f, const char *want, char *err, size_t errlen) {
  const char *cls = want;
  if (cfg_string(f, "_class_name", want, &cls, err, errlen)) return -1;
  if (strcmp(cls, want)) return errf(err, errlen, "%s: _class_name is \"%.80s\", expected \"%s\"", f->path, cls, want);
  return 0;
}

static int import_model_index(const char *dir, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "model_index.json", err, errlen)) goto out;
  const char *cls = "";
  if (cfg_string(&f, "_class_name", "", &cls, err, errlen)) goto out;
  if (strcmp(cls, "StableVideoDiffusionPipeline")) {
    errf(err, errlen, "%s: _class_name is \"%.80s\", expected \"StableVideoDiffusionPipeline\"", f.path, cls);
    goto out;
  }
  static const char *const comps[][2] = {{"unet", "UNetSpatioTemporalConditionModel"},
                                         {"vae", "AutoencoderKLTemporalDecoder"},
                                         {"image_encoder", "CLIPVisionModelWithProjection"},
                                         {"scheduler", "EulerDiscreteScheduler"},
                                         {"feature_extractor", "CLIPImageProcessor"}};
  for (int i = 0; i < 5; i++) {
    int n = cfg_member(&f, f.root, comps[i][0]);
    if (n < 0) {
      errf(err, errlen, "%s: component \"%s\" is missing", f.path, comps[i][0]);
      goto out;
    }
    const JNode *v = &f.j.nodes[n];
    // ["library", "ClassName"]
    if (v->type != J_ARR || v->count != 2 || f.j.nodes[f.j.nodes[v->child].next].type != J_STR) {
      errf(err, errlen, "%s: component \"%s\" must be [library, class]", f.path, comps[i][0]);
      goto out;
    }
    const char *got = jstr(&f.j, f.j.nodes[v->child].next);
    // The fast image processor behaves the same for the mean/std vdp reads.
    int ok = !strcmp(got, comps[i][1]) || (i == 4 && (!strcmp(got, "CLIPImageProcessorFast") || !strcmp(got, "CLIPFeatureExtractor")));
    if (!ok) {
      errf(err, errlen, "%s: component \"%s\" is %.80s, expected %s", f.path, comps[i][0], got, comps[i][1]);
      goto out;
    }
  }
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

static int import_unet(const char *dir, VdpConfig *c, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "unet/config.json", err, errlen) || cfg_check_class(&f, "UNetSpatioTemporalConditionModel", err, errlen)) goto out;
  // UNetSpatioTemporalConditionModel defaults
  static const int def_block_out[] = {320, 640, 1280, 1280}, def_heads[] = {5, 10, 20, 20};
  static const char *const def_down[] = {"CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"};
  static const char *const def_up[] = {"UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                                       "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"};
  int n = cfg_member(&f, f.root, "block_out_channels");
  if (n < 0) {
    c->unet_levels = 4;
    memcpy(c->unet_block_out, def_block_out, sizeof def_block_out);
  } else {
    const JNode *v = &f.j.nodes[n];
    if (v->type != J_ARR || v->count < 1 || v->count > VDP_MAX_LEVELS) {
      errf(err, errlen, "%s: \"block_out_channels\" must be a list of 1..%d integers", f.path, VDP_MAX_LEVELS);
      goto out;
    }
    c->unet_levels = v->count;
    if (cfg_int_levels(&f, "block_out_channels", v->count, NULL, 0, c->unet_block_out, err, errlen)) goto out;
  }
  int L = c->unet_levels;
  const char *down[VDP_MAX_LEVELS], *up[VDP_MAX_LEVELS];
  int nd = 0, nu = 0;
  if (cfg_str_list(&f, "down_block_types", def_down, 4, down, &nd, err, errlen) ||
      cfg_str_list(&f, "up_block_types", def_up, 4, up, &nu, err, errlen))
    goto out;
  if (nd != L || nu != L) {
    errf(err, errlen, "%s: %d down_block_types and %d up_block_types for %d block_out_channels", f.path, nd, nu, L);
    goto out;
  }
  for (int i = 0; i < L; i++) {
    if (!strcmp(down[i], "CrossAttnDownBlockSpatioTemporal")) c->unet_down_attn[i] = 1;
    else if (!strcmp(down[i], "DownBlockSpatioTemporal")) c->unet_down_attn[i] = 0;
    else {
      errf(err, errlen, "%s: down_block_types[%d] \"%.80s\" is not supported (CrossAttnDownBlockSpatioTemporal or DownBlockSpatioTemporal)", f.path, i, down[i]);
      goto out;
    }
    if (!strcmp(up[i], "CrossAttnUpBlockSpatioTemporal")) c->unet_up_attn[i] = 1;
    else if (!strcmp(up[i], "UpBlockSpatioTemporal")) c->unet_up_attn[i] = 0;
    else {
      errf(err, errlen, "%s: up_block_types[%d] \"%.80s\" is not supported (CrossAttnUpBlockSpatioTemporal or UpBlockSpatioTemporal)", f.path, i, up[i]);
      goto out;
    }
  }
  int one = 1, d1024 = 1024, d2 = 2, lpb[VDP_MAX_LEVELS];
  if (cfg_int_levels(&f, "num_attention_heads", L, def_heads, 4, c->unet_heads, err, errlen) ||
      cfg_int_levels(&f, "cross_attention_dim", L, &d1024, 1, c->unet_cross_dim, err, errlen) ||
      cfg_int_levels(&f, "transformer_layers_per_block", L, &one, 1, c->unet_transformer_layers, err, errlen) ||
      cfg_int_levels(&f, "layers_per_block", L, &d2, 1, lpb, err, errlen))
    goto out;
  for (int i = 1; i < L; i++)
    if (lpb[i] != lpb[0]) {
      errf(err, errlen, "%s: different layers_per_block per block are not supported", f.path);
      goto out;
    }
  c->unet_layers_per_block = lpb[0];
  if (cfg_int(&f, "in_channels", 8, &c->unet_in_channels, err, errlen) ||
      cfg_int(&f, "out_channels", 4, &c->unet_out_channels, err, errlen) ||
      cfg_int(&f, "addition_time_embed_dim", 256, &c->unet_addition_time_embed_dim, err, errlen) ||
      cfg_int(&f, "projection_class_embeddings_input_dim", 768, &c->unet_proj_class_in_dim, err, errlen) ||
      cfg_int(&f, "num_frames", 25, &c->unet_num_frames, err, errlen) ||
      cfg_int(&f, "sample_size", 0, &c->unet_sample_size, err, errlen))
    goto out;
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

static int import_vae(const char *dir, VdpConfig *c, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "vae/config.json", err, errlen) || cfg_check_class(&f, "AutoencoderKLTemporalDecoder", err, errlen)) goto out;
  // AutoencoderKLTemporalDecoder defaults: block_out (64,), one DownEncoderBlock2D, layers_per_block 1.
  int n = cfg_member(&f, f.root, "block_out_channels");
  if (n < 0) {
    c->vae_levels = 1;
    c->vae_block_out[0] = 64;
  } else {
    const JNode *v = &f.j.nodes[n];
    if (v->type != J_ARR || v->count < 1 || v->count > VDP_MAX_LEVELS) {
      errf(err, errlen, "%s: \"block_out_channels\" must be a list of 1..%d integers", f.path, VDP_MAX_LEVELS);
      goto out;
    }
    c->vae_levels = v->count;
    if (cfg_int_levels(&f, "block_out_channels", v->count, NULL, 0, c->vae_block_out, err, errlen)) goto out;
  }
  static const char *const def_down[] = {"DownEncoderBlock2D"};
  const char *down[VDP_MAX_LEVELS];
  int nd = 0;
  if (cfg_str_list(&f, "down_block_types", def_down, 1, down, &nd, err, errlen)) goto out;
  if (nd != c->vae_levels) {
    errf(err, errlen, "%s: %d down_block_types for %d block_out_channels", f.path, nd, c->vae_levels);
    goto out;
  }
  for (int i = 0; i < nd; i++)
    if (strcmp(down[i], "DownEncoderBlock2D")) {
      errf(err, errlen, "%s: down_block_types[%d] \"%.80s\" is not supported (DownEncoderBlock2D)", f.path, i, down[i]);
      goto out;
    }
  // The class takes no norm_num_groups: its Encoder and TemporalDecoder always use 32 groups.
  c->vae_norm_groups = 32;
  if (cfg_int(&f, "in_channels", 3, &c->vae_in_channels, err, errlen) ||
      cfg_int(&f, "out_channels", 3, &c->vae_out_channels, err, errlen) ||
      cfg_int(&f, "latent_channels", 4, &c->vae_latent_channels, err, errlen) ||
      cfg_int(&f, "layers_per_block", 1, &c->vae_layers_per_block, err, errlen) ||
      cfg_float(&f, "scaling_factor", 0.18215, 0, &c->vae_scaling_factor, err, errlen) ||
      cfg_bool(&f, "force_upcast", 1, &c->vae_force_upcast, err, errlen))
    goto out;
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

static int import_clip(const char *dir, VdpConfig *c, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "image_encoder/config.json", err, errlen)) goto out;
  // A full CLIPConfig keeps the vision settings under "vision_config" (transformers reads them from there).
  int vc = cfg_member(&f, f.root, "vision_config");
  if (vc >= 0) {
    if (f.j.nodes[vc].type != J_OBJ) {
      errf(err, errlen, "%s: vision_config must be an object", f.path);
      goto out;
    }
    f.root = vc;
  }
  // CLIPVisionConfig defaults (transformers 5.3.0)
  const char *act = "";
  if (cfg_int(&f, "hidden_size", 768, &c->clip_hidden, err, errlen) ||
      cfg_int(&f, "intermediate_size", 3072, &c->clip_intermediate, err, errlen) ||
      cfg_int(&f, "projection_dim", 512, &c->clip_projection_dim, err, errlen) ||
      cfg_int(&f, "num_hidden_layers", 12, &c->clip_layers, err, errlen) ||
      cfg_int(&f, "num_attention_heads", 12, &c->clip_heads, err, errlen) ||
      cfg_int(&f, "num_channels", 3, &c->clip_channels, err, errlen) ||
      cfg_int(&f, "image_size", 224, &c->clip_image_size, err, errlen) ||
      cfg_int(&f, "patch_size", 32, &c->clip_patch, err, errlen) ||
      cfg_float(&f, "layer_norm_eps", 1e-5, 0, &c->clip_eps, err, errlen) ||
      cfg_string(&f, "hidden_act", "quick_gelu", &act, err, errlen))
    goto out;
  if (!strcmp(act, "gelu")) c->clip_act = 0;
  else if (!strcmp(act, "quick_gelu")) c->clip_act = 1;
  else {
    errf(err, errlen, "%s: hidden_act \"%.40s\" is not supported (gelu or quick_gelu)", f.path, act);
    goto out;
  }
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

static int import_scheduler(const char *dir, VdpConfig *c, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "scheduler/scheduler_config.json", err, errlen) || cfg_check_class(&f, "EulerDiscreteScheduler", err, errlen)) goto out;
  // EulerDiscreteScheduler defaults: epsilon, no Karras, spacing linspace, discrete timesteps,
  // sigma_min/sigma_max None (then derived from the beta schedule — not supported here).
  const char *pred = "", *spacing = "", *ttype = "", *final_type = "";
  int expo = 0, beta = 0;
  if (cfg_int(&f, "num_train_timesteps", 1000, &c->sched_num_train_timesteps, err, errlen) ||
      cfg_float(&f, "sigma_min", 0, 1, &c->sched_sigma_min, err, errlen) ||
      cfg_float(&f, "sigma_max", 0, 1, &c->sched_sigma_max, err, errlen) ||
      cfg_bool(&f, "use_karras_sigmas", 0, &c->sched_karras, err, errlen) ||
      cfg_bool(&f, "use_exponential_sigmas", 0, &expo, err, errlen) ||
      cfg_bool(&f, "use_beta_sigmas", 0, &beta, err, errlen) ||
      cfg_string(&f, "prediction_type", "epsilon", &pred, err, errlen) ||
      cfg_string(&f, "timestep_spacing", "linspace", &spacing, err, errlen) ||
      cfg_string(&f, "timestep_type", "discrete", &ttype, err, errlen) ||
      cfg_string(&f, "final_sigmas_type", "zero", &final_type, err, errlen))
    goto out;
  if (!strcmp(pred, "v_prediction")) c->sched_v_prediction = 1;
  else if (!strcmp(pred, "epsilon")) c->sched_v_prediction = 0;
  else {
    errf(err, errlen, "%s: prediction_type \"%.40s\" is not supported (v_prediction)", f.path, pred);
    goto out;
  }
  // With Karras sigmas and continuous timesteps the spacing only sets init_noise_sigma: "leading" gives
  // sqrt(sigma_max^2 + 1), "linspace" and "trailing" give sigma_max.
  if (!strcmp(spacing, "trailing") || !strcmp(spacing, "linspace")) c->sched_leading = 0;
  else if (!strcmp(spacing, "leading")) c->sched_leading = 1;
  else {
    errf(err, errlen, "%s: timestep_spacing \"%.40s\" is not one of leading, linspace, trailing", f.path, spacing);
    goto out;
  }
  if (!strcmp(ttype, "continuous")) c->sched_continuous = 1;
  else if (!strcmp(ttype, "discrete")) c->sched_continuous = 0;
  else {
    errf(err, errlen, "%s: timestep_type \"%.40s\" is not one of discrete, continuous", f.path, ttype);
    goto out;
  }
  if (expo || beta) {
    errf(err, errlen, "%s: use_%s_sigmas is not supported (vdp implements the Karras schedule)", f.path, expo ? "exponential" : "beta");
    goto out;
  }
  if (strcmp(final_type, "zero")) {
    errf(err, errlen, "%s: final_sigmas_type \"%.40s\" is not supported (zero)", f.path, final_type);
    goto out;
  }
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

static int import_feature_extractor(const char *dir, VdpConfig *c, char *err, size_t errlen) {
  CfgFile f;
  int rc = -1;
  if (cfgfile_open(&f, dir, "feature_extractor/preprocessor_config.json", err, errlen)) goto out;
  // CLIPImageProcessor defaults: the OpenAI CLIP mean/std. A single number applies to every channel.
  static const float def_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, def_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  const char *keys[2] = {"image_mean", "image_std"};
  const float *defs[2] = {def_mean, def_std};
  float *outs[2] = {c->clip_mean, c->clip_std};
  for (int k = 0; k < 2; k++) {
    int n = cfg_member(&f, f.root, keys[k]);
    if (n < 0) {
      memcpy(outs[k], defs[k], 3 * sizeof(float));
      continue;
    }
    const JNode *v = &f.j.nodes[n];
    if (v->type == J_NUM) {
      for (int i = 0; i < 3; i++) outs[k][i] = to_float(v->num);
      continue;
    }
    if (v->type != J_ARR || v->count != 3) {
      errf(err, errlen, "%s: \"%s\" must be a number or a list of 3 numbers", f.path, keys[k]);
      goto out;
    }
    int i = 0;
    for (int ch = v->child; ch >= 0; ch = f.j.nodes[ch].next) {
      if (f.j.nodes[ch].type != J_NUM) {
        errf(err, errlen, "%s: \"%s\" must be a list of 3 numbers", f.path, keys[k]);
        goto out;
      }
      outs[k][i++] = to_float(f.j.nodes[ch].num);
    }
  }
  rc = 0;
out:
  cfgfile_close(&f);
  return rc;
}

int config_from_diffusers(const char *dir, VdpConfig *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  if (import_model_index(dir, err, errlen) || import_unet(dir, cfg, err, errlen) || import_vae(dir, cfg, err, errlen) ||
      import_clip(dir, cfg, err, errlen) || import_scheduler(dir, cfg, err, errlen) ||
      import_feature_extractor(dir, cfg, err, errlen))
    return -1;
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// 4. The .vdpw format (weights/FORMAT.md)
// ---------------------------------------------------------------------------------------------------
#define VDPW_VERSION 1
#define VDPW_HEADER 16                     // magic, version, config_len, n_tensors
#define VDPW_ENTRY 256                     // bytes per tensor table entry
#define VDPW_ALIGN 64                      // table and every tensor's data start at multiples of 64
#define VDPW_MAX_CONFIG (1u << 20)
#define VDPW_MAX_TENSORS (1u << 20)
// Offsets inside a table entry
#define E_NAME 0
#define E_DTYPE 160
#define E_NDIM 164
#define E_SHAPE 168
#define E_OFFSET 216
#define E_NBYTES 224
#define E_RESERVED 232

// Configuration text: one "key=value" line per field in X-macro order; arrays as comma lists of their
// used entries; floats with %.9g (exact round trip of a float).
int config_to_text(const VdpConfig *c, char **text, size_t *len) {
  Str b = {0};
  for (int i = 0; i < N_CFG_FIELDS; i++) {
    const CfgField *f = &CFG_FIELDS[i];
    str_printf(&b, "%s=", f->name);
    int n = cfg_used(c, f);
    for (int k = 0; k < n; k++) {
      const char *p = (const char *)c + f->off;
      if (f->kind == 'i') str_printf(&b, "%s%d", k ? "," : "", ((const int *)p)[k]);
      else str_printf(&b, "%s%.9g", k ? "," : "", (double)((const float *)p)[k]);
    }
    str_printf(&b, "\n");
  }
  *text = b.s;
  *len = b.n;
  return 0;
}

// Parses the configuration text strictly: every field exactly once, no unknown keys, array lengths equal
// to the used count. Values are not range-checked here (config_validate does that).
int config_from_text(const char *text, size_t len, VdpConfig *c, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  int seen[N_CFG_FIELDS], given[N_CFG_FIELDS];
  memset(seen, 0, sizeof seen);
  memset(given, 0, sizeof given);
  size_t pos = 0;
  int line = 0;
  while (pos < len) {
    line++;
    const char *ln = text + pos;
    const char *nl = memchr(ln, '\n', len - pos);
    if (!nl) return errf(err, errlen, "configuration line %d: no newline at the end", line);
    size_t n = (size_t)(nl - ln);
    pos += n + 1;
    if (memchr(ln, 0, n)) return errf(err, errlen, "configuration line %d: NUL byte", line);
    const char *eq = memchr(ln, '=', n);
    if (!eq) return errf(err, errlen, "configuration line %d: no '='", line);
    size_t kl = (size_t)(eq - ln);
    int fi = -1;
    for (int i = 0; i < N_CFG_FIELDS; i++)
      if (strlen(CFG_FIELDS[i].name) == kl && !memcmp(CFG_FIELDS[i].name, ln, kl)) fi = i;
    if (fi < 0) return errf(err, errlen, "configuration line %d: unknown key '%.*s'", line, (int)(kl > 60 ? 60 : kl), ln);
    const CfgField *f = &CFG_FIELDS[fi];
    if (seen[fi]++) return errf(err, errlen, "configuration: %s given twice", f->name);
    // Values: comma-separated, each one fully consumed by strtol/strtod.
    char val[512];
    size_t vl = n - kl - 1;
    if (vl >= sizeof val) return errf(err, errlen, "configuration: value of %s too long", f->name);
    memcpy(val, eq + 1, vl);
    val[vl] = 0;
    int k = 0;
    char *p = val;
    if (vl > 0) {
      for (;;) {
        if (k >= f->count) return errf(err, errlen, "configuration: %s has more than %d values", f->name, f->count);
        char *end;
        errno = 0;
        char *ptr = (char *)c + f->off;
        if (*p == 0 || *p == ' ' || (*p >= '\t' && *p <= '\r')) return errf(err, errlen, "configuration: %s: empty or spaced value", f->name);
        if (f->kind == 'i') {
          long v = strtol(p, &end, 10);
          if (end == p || errno || v < INT32_MIN || v > INT32_MAX) return errf(err, errlen, "configuration: %s: invalid integer", f->name);
          ((int *)ptr)[k++] = (int)v;
        } else {
          double v = strtod(p, &end);
          if (end == p) return errf(err, errlen, "configuration: %s: invalid number", f->name);
          ((float *)ptr)[k++] = to_float(v);
        }
        if (*end == 0) break;
        if (*end != ',') return errf(err, errlen, "configuration: %s: unexpected '%c'", f->name, *end >= 0x20 && *end < 0x7f ? *end : '?');
        p = end + 1;
      }
    }
    given[fi] = k;
  }
  for (int i = 0; i < N_CFG_FIELDS; i++) {
    // sched_sampler came after the first files were written: absent, it is 0 (euler), as they meant
    if (!seen[i] && !strcmp(CFG_FIELDS[i].name, "sched_sampler")) {
      seen[i] = 1, given[i] = 1;
      continue;
    }
    if (!seen[i]) return errf(err, errlen, "configuration: %s is missing", CFG_FIELDS[i].name);
  }
  // Array lengths can be checked once the level counts are known.
  for (int i = 0; i < N_CFG_FIELDS; i++) {
    const CfgField *f = &CFG_FIELDS[i];
    if (f->count > 1 && f->count == VDP_MAX_LEVELS) {
      int lv = !strncmp(f->name, "unet_", 5) ? c->unet_levels : c->vae_levels;
      if (lv < 1 || lv > VDP_MAX_LEVELS)
        return errf(err, errlen, "configuration: %s_levels = %d outside 1..%d", !strncmp(f->name, "unet_", 5) ? "unet" : "vae", lv, VDP_MAX_LEVELS);
    }
    int want = cfg_used(c, f);
    if (given[i] != want) return errf(err, errlen, "configuration: %s has %d values, expected %d", f->name, given[i], want);
  }
  return 0;
}

static int cmp_spec_ptr(const void *a, const void *b) {
  return strcmp((*(const VdpTensorSpec *const *)a)->name, (*(const VdpTensorSpec *const *)b)->name);
}

// Expected tensors of cfg, sorted by name (pointers into *list). Duplicates in the list are an error.
static int expected_sorted(const VdpConfig *cfg, VdpSpecList *list, const VdpTensorSpec ***sorted, char *err, size_t errlen) {
  memset(list, 0, sizeof *list);
  *sorted = NULL;
  if (model_expected_tensors(cfg, list, err, errlen)) {
    speclist_free(list);
    return -1;
  }
  const VdpTensorSpec **s = malloc((size_t)(list->n + 1) * sizeof *s);
  if (!s) {
    speclist_free(list);
    return errf(err, errlen, "out of memory");
  }
  for (int i = 0; i < list->n; i++) s[i] = &list->specs[i];
  qsort(s, (size_t)list->n, sizeof *s, cmp_spec_ptr);
  for (int i = 1; i < list->n; i++)
    if (!strcmp(s[i - 1]->name, s[i]->name)) {
      errf(err, errlen, "internal error: the model lists tensor '%s' twice", s[i]->name);
      free(s);
      speclist_free(list);
      return -1;
    }
  *sorted = s;
  return 0;
}

// Collects "missing / extra / misshapen" reports into one message.
typedef struct {
  int n_missing, n_extra, n_shape, n_dtype;
  Str missing, extra, shape, dtype;
  int shape_first;  // report the misshapen tensors first
} SetDiff;

static void diff_add(Str *s, int *count, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void diff_add(Str *s, int *count, const char *fmt, ...) {
  if ((*count)++ >= 4) return;  // name the first few; the count says the rest
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  str_printf(s, "%s%s", *count > 1 ? ", " : "", buf);
}

static void diff_shape(SetDiff *d, const char *name, int endim, const int64_t *eshape, int fndim, const int64_t *fshape) {
  char e[128], f[128];
  fmt_dims(e, sizeof e, endim, eshape);
  fmt_dims(f, sizeof f, fndim, fshape);
  diff_add(&d->shape, &d->n_shape, "%s: expected %s, found %s", name, e, f);
}

static int same_shape(int an, const int64_t *a, int bn, const int64_t *b) {
  if (an != bn) return 0;
  for (int i = 0; i < an; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

// Turns the collected differences into the error message; returns -1 when there are any.
static int diff_report(SetDiff *d, const char *what, char *err, size_t errlen) {
  int rc = 0;
  if (d->n_missing || d->n_extra || d->n_shape || d->n_dtype) {
    Str m = {0};
    str_printf(&m, "%s does not match the configuration:", what);
    const char *sep = "";
    if (d->shape_first && d->n_shape)
      str_printf(&m, " %d with the wrong shape (%s%s)", d->n_shape, d->shape.s, d->n_shape > 4 ? ", ..." : ""), sep = ";";
    if (d->n_missing) str_printf(&m, "%s %d missing (%s%s)", sep, d->n_missing, d->missing.s, d->n_missing > 4 ? ", ..." : ""), sep = ";";
    if (d->n_extra) str_printf(&m, "%s %d unexpected (%s%s)", sep, d->n_extra, d->extra.s, d->n_extra > 4 ? ", ..." : ""), sep = ";";
    if (d->n_shape && !d->shape_first) str_printf(&m, "%s %d with the wrong shape (%s%s)", sep, d->n_shape, d->shape.s, d->n_shape > 4 ? ", ..." : ""), sep = ";";
    if (d->n_dtype) str_printf(&m, "%s %d of an unsupported dtype (%s%s)", sep, d->n_dtype, d->dtype.s, d->n_dtype > 4 ? ", ..." : "");
    errf(err, errlen, "%s", m.s);
    free(m.s);
    rc = -1;
  }
  free(d->missing.s), free(d->extra.s), free(d->shape.s), free(d->dtype.s);
  memset(d, 0, sizeof *d);
  return rc;
}

static int cmp_vt_offset(const void *a, const void *b) {
  const VdpTensor *x = *(const VdpTensor *const *)a, *y = *(const VdpTensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int vdpw_parse(const uint8_t *buf, size_t len, VdpFile *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  if (len < VDPW_HEADER) return errf(err, errlen, "file too short (%zu bytes) for a .vdpw header", len);
  if (memcmp(buf, "VDPW", 4)) return errf(err, errlen, "not a .vdpw file (bad magic)");
  uint32_t version = rd_u32(buf + 4), config_len = rd_u32(buf + 8), n = rd_u32(buf + 12);
  if (version != VDPW_VERSION) return errf(err, errlen, "unsupported .vdpw format version %u (this vdp reads version %d)", version, VDPW_VERSION);
  if (config_len > VDPW_MAX_CONFIG) return errf(err, errlen, "configuration length %u exceeds the limit (%u)", config_len, VDPW_MAX_CONFIG);
  if (VDPW_HEADER + (uint64_t)config_len > len)
    return errf(err, errlen, "file truncated: configuration needs %u bytes, file has %zu", config_len, len);
  if (n > VDPW_MAX_TENSORS) return errf(err, errlen, "tensor count %u exceeds the limit (%u)", n, VDPW_MAX_TENSORS);
  // All of these fit in 64 bits: config_len and n are bounded above.
  uint64_t table = align_up(VDPW_HEADER + (uint64_t)config_len, VDPW_ALIGN);
  uint64_t table_end = table + (uint64_t)n * VDPW_ENTRY, data_start = align_up(table_end, VDPW_ALIGN);
  if (table_end > len) return errf(err, errlen, "file truncated: tensor table ends at byte %" PRIu64 ", file has %zu", table_end, len);
  for (uint64_t i = VDPW_HEADER + config_len; i < table; i++)
    if (buf[i]) return errf(err, errlen, "non-zero padding after the configuration (byte %" PRIu64 ")", i);

  if (config_from_text((const char *)buf + VDPW_HEADER, config_len, &f->cfg, err, errlen) ||
      config_validate(&f->cfg, err, errlen))
    return -1;

  f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
  if (!f->tensors) return errf(err, errlen, "out of memory for %u tensors", n);
  int rc = -1;
  const VdpTensor **byoff = NULL;
  VdpSpecList list = {0};
  const VdpTensorSpec **exp = NULL;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *e = buf + table + (uint64_t)i * VDPW_ENTRY;
    VdpTensor *t = &f->tensors[i];
    const uint8_t *nul = memchr(e + E_NAME, 0, 160);
    if (!nul || nul == e) {
      errf(err, errlen, "tensor table entry %u: name %s", i, nul ? "empty" : "not NUL-terminated within 160 bytes");
      goto fail;
    }
    size_t nl = (size_t)(nul - e);
    for (size_t k = 0; k < nl; k++)
      if (e[k] <= 0x20 || e[k] >= 0x7f) {
        errf(err, errlen, "tensor table entry %u: name contains byte 0x%02x (printable ASCII only)", i, e[k]);
        goto fail;
      }
    for (size_t k = nl; k < 160; k++)
      if (e[k]) {
        errf(err, errlen, "tensor table entry %u: bytes after the name's NUL must be zero", i);
        goto fail;
      }
    memcpy(t->name, e, nl + 1);
    if (i > 0 && strcmp(f->tensors[i - 1].name, t->name) >= 0) {
      errf(err, errlen, "tensor '%s': %s", t->name, strcmp(f->tensors[i - 1].name, t->name) ? "table not sorted by name" : "duplicate name");
      goto fail;
    }
    uint32_t dt = rd_u32(e + E_DTYPE), nd = rd_u32(e + E_NDIM);
    if (dt > VDP_BF16) {
      errf(err, errlen, "tensor '%s': unknown dtype code %u", t->name, dt);
      goto fail;
    }
    if (nd > VDP_MAX_DIMS) {
      errf(err, errlen, "tensor '%s': %u dimensions (at most %d)", t->name, nd, VDP_MAX_DIMS);
      goto fail;
    }
    t->dtype = (int)dt;
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (int d = 0; d < VDP_MAX_DIMS; d++) {
      int64_t s = (int64_t)rd_u64(e + E_SHAPE + 8 * d);
      if ((uint32_t)d >= nd) {
        if (s != 0) {
          errf(err, errlen, "tensor '%s': unused shape entry %d is not zero", t->name, d);
          goto fail;
        }
        continue;
      }
      if (s < 0 || mul_checked(numel, (uint64_t)s, (uint64_t)1 << 60, &numel)) {
        errf(err, errlen, "tensor '%s': dimension %d = %" PRId64 " is negative or too large", t->name, d, s);
        goto fail;
      }
      t->shape[d] = s;
    }
    for (int k = E_RESERVED; k < VDPW_ENTRY; k++)
      if (e[k]) {
        errf(err, errlen, "tensor '%s': reserved bytes of the table entry are not zero", t->name);
        goto fail;
      }
    t->offset = rd_u64(e + E_OFFSET);
    t->nbytes = rd_u64(e + E_NBYTES);
    uint64_t want = numel * (uint64_t)dtype_size(t->dtype);  // numel <= 2^60, size <= 4: no overflow
    if (t->nbytes != want) {
      char dims[128];
      fmt_dims(dims, sizeof dims, t->ndim, t->shape);
      errf(err, errlen, "tensor '%s': %" PRIu64 " bytes recorded, shape %s of %s needs %" PRIu64, t->name, t->nbytes, dims,
           dtype_name(t->dtype), want);
      goto fail;
    }
    if (t->offset % VDPW_ALIGN) {
      errf(err, errlen, "tensor '%s': data offset %" PRIu64 " is not a multiple of %d", t->name, t->offset, VDPW_ALIGN);
      goto fail;
    }
    if (t->offset < data_start || t->offset > len || t->nbytes > len - t->offset) {
      errf(err, errlen, "tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") lies outside the data area [%" PRIu64 ", %zu)", t->name,
           t->offset, t->nbytes, data_start, len);
      goto fail;
    }
    t->data = buf + t->offset;
  }
  // No two tensors share bytes.
  byoff = malloc((size_t)(n + 1) * sizeof *byoff);
  if (!byoff) {
    errf(err, errlen, "out of memory");
    goto fail;
  }
  int m = 0;
  for (uint32_t i = 0; i < n; i++)
    if (f->tensors[i].nbytes) byoff[m++] = &f->tensors[i];
  qsort(byoff, (size_t)m, sizeof *byoff, cmp_vt_offset);
  for (int i = 1; i < m; i++)
    if (byoff[i]->offset < byoff[i - 1]->offset + byoff[i - 1]->nbytes) {
      errf(err, errlen, "tensors '%s' and '%s' overlap", byoff[i - 1]->name, byoff[i]->name);
      goto fail;
    }
  // The tensor set must be exactly what the configuration's models need.
  if (expected_sorted(&f->cfg, &list, &exp, err, errlen)) goto fail;
  SetDiff d = {0};
  int a = 0, b = 0;
  while (a < list.n || b < (int)n) {
    int c = a >= list.n ? 1 : b >= (int)n ? -1 : strcmp(exp[a]->name, f->tensors[b].name);
    if (c < 0) diff_add(&d.missing, &d.n_missing, "%s", exp[a++]->name);
    else if (c > 0) diff_add(&d.extra, &d.n_extra, "%s", f->tensors[b++].name);
    else {
      if (!same_shape(exp[a]->ndim, exp[a]->shape, f->tensors[b].ndim, f->tensors[b].shape))
        diff_shape(&d, exp[a]->name, exp[a]->ndim, exp[a]->shape, f->tensors[b].ndim, f->tensors[b].shape);
      a++, b++;
    }
  }
  if (diff_report(&d, "tensor set", err, errlen)) goto fail;
  f->n_tensors = (int)n;
  f->map = buf;
  f->map_size = len;
  rc = 0;
fail:
  free(byoff);
  free(exp);
  speclist_free(&list);
  if (rc) {
    free(f->tensors);
    memset(f, 0, sizeof *f);
  }
  return rc;
}

// vdpw_parse leaves path empty (the caller owns the buffer); vdpw_open sets it and owns the mapping.
int vdpw_open(const char *path, VdpFile *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  uint64_t fsize;
  int fd = open_regular(path, &fsize, err, errlen);
  if (fd < 0) return -1;
  size_t size = (size_t)fsize;
  if (size < VDPW_HEADER) {
    close(fd);
    return errf(err, errlen, "%s: file too short (%zu bytes) for a .vdpw header", path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return errf(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
  if (vdpw_parse(map, size, f, err, errlen)) {
    munmap(map, size);
    err_prefix(err, errlen, path);
    return -1;
  }
  snprintf(f->path, sizeof f->path, "%s", path);
  return 0;
}

void vdpw_close(VdpFile *f) {
  if (f->path[0] && f->map) munmap((void *)f->map, f->map_size);
  free(f->tensors);
  memset(f, 0, sizeof *f);
}

const VdpTensor *vdpw_find(const VdpFile *f, const char *name) {
  return f->n_tensors > 0 ? bsearch(name, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, name_key_cmp) : NULL;
}

// ---------------------------------------------------------------------------------------------------
// 5. vdp convert / vdp info
// ---------------------------------------------------------------------------------------------------
enum { VARIANT_AUTO, VARIANT_FP32, VARIANT_FP16 };

static const struct {
  const char *prefix;  // tensor name prefix in the .vdpw, without the dot
  const char *stem;    // file name in the component folder
} COMPS[3] = {{"unet", "diffusion_pytorch_model"}, {"vae", "diffusion_pytorch_model"}, {"image_encoder", "model"}};

// Buffers no file value is ever read into beyond: at most CHUNK elements at a time.
#define CHUNK ((size_t)1 << 20)

// Picks a component's safetensors file for the variant; *which names it for the progress line.
static int pick_file(const char *dir, int c, int variant, char *path, size_t plen, const char **which, char *err, size_t errlen) {
  char plain[1024], fp16[1024];
  snprintf(plain, sizeof plain, "%s/%s/%s.safetensors", dir, COMPS[c].prefix, COMPS[c].stem);
  snprintf(fp16, sizeof fp16, "%s/%s/%s.fp16.safetensors", dir, COMPS[c].prefix, COMPS[c].stem);
  int hp = file_exists(plain), hf = file_exists(fp16);
  const char *pick = NULL;
  if (variant == VARIANT_FP32) pick = hp ? plain : NULL, *which = "plain (--variant fp32)";
  else if (variant == VARIANT_FP16) pick = hf ? fp16 : NULL, *which = "fp16 variant (--variant fp16)";
  else if (hp) pick = plain, *which = hf ? "plain (auto; the fp16 variant is also present)" : "plain (auto)";
  else if (hf) pick = fp16, *which = "fp16 variant (auto; no plain file)";
  if (!pick) {
    char idx[1100];
    snprintf(idx, sizeof idx, "%s.index.json", variant == VARIANT_FP16 ? fp16 : plain);
    if (file_exists(idx)) return errf(err, errlen, "%s: sharded checkpoints are not supported", idx);
    return errf(err, errlen, "%s: not found%s", variant == VARIANT_FP16 ? fp16 : plain,
                variant == VARIANT_AUTO ? " (nor the .fp16 variant)" : "");
  }
  snprintf(path, plen, "%s", pick);
  return 0;
}

// Every file a conversion reads, for the same-file check (out_not_input): the single file, or the
// folder's config files and the safetensors file pick_file chooses for each component (one it cannot
// choose is reported later, where the folder is read). Another input of the run (a separate UNet file)
// joins this list. Returns the count.
#define CONVERT_MAX_INPUTS 16
static int convert_inputs(const char *src, int single, int variant, char paths[CONVERT_MAX_INPUTS][1100]) {
  static const char *const configs[] = {"model_index.json", "unet/config.json", "vae/config.json",
                                        "image_encoder/config.json", "scheduler/scheduler_config.json",
                                        "feature_extractor/preprocessor_config.json"};
  int n = 0;
  if (single) {
    snprintf(paths[n++], 1100, "%s", src);
    return n;
  }
  for (int i = 0; i < 6; i++) snprintf(paths[n++], 1100, "%s/%s", src, configs[i]);
  for (int c = 0; c < 3; c++) {
    const char *which;
    char e[8];
    if (!pick_file(src, c, variant, paths[n], 1100, &which, e, sizeof e)) n++;
  }
  return n;
}

// One output tensor and where its data comes from.
typedef struct {
  VdpTensor t;
  const StTensor *src;
  int comp;
  const SgmTensor *sgm;  // single-file SGM source: read through sgm_read
  int fd;                // the file it is read from, and its name for messages
  const char *path;
} OutTensor;

// Converts n elements from src (dtype sdt) to dst (dtype ddt). Returns the index of the first value that
// is NaN or infinite in the source (*why = 0) or overflows to infinity in fp16 (*why = 1), or -1.
// A non-finite weight is a damaged file: `vdp generate` refuses it too, so convert refuses it now.
static int64_t convert_elems(void *dst, int ddt, const void *src, int sdt, size_t n, int *why) {
  for (size_t i = 0; i < n; i++) {
    float x;
    if (sdt == VDP_F32) memcpy(&x, (const uint8_t *)src + 4 * i, 4);
    else {
      uint16_t h;
      memcpy(&h, (const uint8_t *)src + 2 * i, 2);
      x = sdt == VDP_F16 ? half_to_float(h) : bf16_to_float(h);
    }
    if (!isfinite(x)) return *why = 0, (int64_t)i;
    if (sdt == ddt) continue;
    if (ddt == VDP_F32) memcpy((uint8_t *)dst + 4 * i, &x, 4);
    else {
      uint16_t h = float_to_half(x);
      if ((h & 0x7fff) == 0x7c00) return *why = 1, (int64_t)i;
      memcpy((uint8_t *)dst + 2 * i, &h, 2);
    }
  }
  if (sdt == ddt) memcpy(dst, src, n * (size_t)dtype_size(sdt));
  return -1;
}

static int write_zeros(FILE *fp, uint64_t n) {
  static const uint8_t z[4096];
  while (n) {
    size_t k = n < sizeof z ? (size_t)n : sizeof z;
    if (fwrite(z, 1, k, fp) != k) return -1;
    n -= k;
  }
  return 0;
}

int vdpw_convert(const char *src_dir, const char *out_path, int out_dtype, int variant, int verbose, char *err, size_t errlen) {
  return vdpw_convert_src(src_dir, out_path, out_dtype, variant, 0, verbose, err, errlen);
}

// What a file given as --unet that holds no UNet tensor looks like, for the refusal.
static const char *looks_like(const StHeader *h) {
  static const struct {
    const char *prefix, *what;
  } kinds[] = {{"encoder.", "a VAE (encoder.*, decoder.*)"}, {"decoder.", "a VAE (encoder.*, decoder.*)"},
               {"quant_conv.", "a VAE"}, {"vision_model.", "a CLIP image encoder (vision_model.*)"},
               {"visual_projection.", "a CLIP image encoder"},
               {"first_stage_model.", "an SGM checkpoint without its UNet (first_stage_model.*)"},
               {"conditioner.", "an SGM checkpoint without its UNet (conditioner.*)"},
               {"unet.", "a UNet with a \"unet.\" prefix (give the UNet's own state_dict names)"}};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    for (int i = 0; i < h->n; i++)
      if (!strncmp(h->t[i].name, kinds[k].prefix, strlen(kinds[k].prefix))) return kinds[k].what;
  return "no known component";
}

// --unet: the UNet's tensors come from `path` instead of the base (the demos' load_state_dict(strict=True)):
// every tensor of the base's UNet present with the base's shape, nothing else. diffusers names
// (UNetSpatioTemporalConditionModel.state_dict(), AnimateLCM-SVD-xt's layout) or SGM names
// (model.diffusion_model.*). Only headers are read; the data is read when the output is written.
static int unet_swap(const char *path, const VdpConfig *cfg, const VdpTensorSpec **exp, int n, OutTensor *ot, StFile *uf,
                     SgmMap *um, char *err, size_t errlen) {
  if (st_open(path, uf, err, errlen)) {
    err_prefix(err, errlen, "--unet");
    return -1;
  }
  const StHeader *h = &uf->h;
  int n_sgm = 0, n_known = 0;
  for (int i = 0; i < h->n; i++) n_sgm += !strncmp(h->t[i].name, SGM_UNET_PREFIX, strlen(SGM_UNET_PREFIX));
  for (int i = 0; i < n && !n_sgm; i++)
    n_known += !strncmp(exp[i]->name, "unet.", 5) && st_find(h, exp[i]->name + 5) != NULL;
  if (!n_sgm && !n_known)
    return errf(err, errlen, "--unet %s: not a UNet: none of its %d tensors is a tensor of the base's UNet (it looks like %s)",
                path, h->n, looks_like(h));
  if (n_sgm) {
    if (sgm_map_unet(h, path, cfg, um, err, errlen)) return -1;
    for (int i = 0; i < n; i++) {
      if (strncmp(exp[i]->name, "unet.", 5)) continue;
      ot[i].sgm = sgm_find(um, exp[i]->name);
      ot[i].src = &ot[i].sgm->view;
      ot[i].fd = uf->fd, ot[i].path = path;
    }
    return 0;
  }
  SetDiff d = {0};
  uint8_t *used = calloc((size_t)h->n + 1, 1);
  if (!used) return errf(err, errlen, "out of memory");
  for (int i = 0; i < n; i++) {
    const char *nm = exp[i]->name;
    if (strncmp(nm, "unet.", 5)) continue;
    const StTensor *t = st_find(h, nm + 5);
    if (!t) {
      diff_add(&d.missing, &d.n_missing, "%s", nm + 5);
      continue;
    }
    used[t - h->t] = 1;
    if (!same_shape(exp[i]->ndim, exp[i]->shape, t->ndim, t->shape)) diff_shape(&d, nm + 5, exp[i]->ndim, exp[i]->shape, t->ndim, t->shape);
    else if (t->dtype < 0) diff_add(&d.dtype, &d.n_dtype, "%s: %s", nm + 5, t->dtype_str);
    ot[i].src = t, ot[i].sgm = NULL, ot[i].fd = uf->fd, ot[i].path = path;
  }
  for (int i = 0; i < h->n; i++)
    if (!used[i]) diff_add(&d.extra, &d.n_extra, "%s", h->t[i].name);
  free(used);
  char what[1200];
  snprintf(what, sizeof what, "--unet %s: the UNet (diffusers names)", path);
  d.shape_first = 1;  // a UNet of another architecture is named by its first misshapen tensor
  return diff_report(&d, what, err, errlen);
}

int vdpw_convert_src(const char *src_dir, const char *out_path, int out_dtype, int variant, int num_frames, int verbose,
                     char *err, size_t errlen) {
  ConvertOpts o = {.out_dtype = out_dtype, .variant = variant, .num_frames = num_frames, .verbose = verbose, .sampler = -1};
  return vdpw_convert_opts(src_dir, out_path, &o, err, errlen);
}

int vdpw_convert_opts(const char *src_dir, const char *out_path, const ConvertOpts *opt, char *err, size_t errlen) {
  const int out_dtype = opt->out_dtype, variant = opt->variant, num_frames = opt->num_frames, verbose = opt->verbose;
  VdpConfig cfg;
  VdpSpecList list = {0};
  const VdpTensorSpec **exp = NULL;
  StFile sf[3];
  OutTensor *ot = NULL;
  VdpOut o = {.slot = -1};
  FILE *fp = NULL;
  uint8_t *inbuf = NULL, *outbuf = NULL;
  char *cfgtext = NULL;
  const char *tmp = o.tmp;
  int rc = -1, nopen = 0, replace = out_replace();
  double t0 = vdp_now();
  // A file instead of a folder: a single-file SGM checkpoint (sgm.c maps and checks it).
  struct stat sst;
  int single = stat(src_dir, &sst) == 0 && S_ISREG(sst.st_mode);
  StFile sgf = {.fd = -1}, uf = {.fd = -1};
  SgmMap sgm = {0}, usgm = {0};

  // The output first (cheap): a name that may be written, in a folder that takes a new file, and none of
  // the files this run reads (with --overwrite it would be replaced by its own conversion).
  if (out_check(out_path, replace, err, errlen)) goto out;
  {
    char inputs[CONVERT_MAX_INPUTS][1100];
    const char *list_in[CONVERT_MAX_INPUTS];
    int n_in = convert_inputs(src_dir, single, variant, inputs);
    if (opt->unet) snprintf(inputs[n_in++], sizeof inputs[0], "%s", opt->unet);  // --unet's file
    for (int i = 0; i < n_in; i++) list_in[i] = inputs[i];
    if (out_not_input(out_path, list_in, n_in, err, errlen)) goto out;
  }
  size_t sl = strlen(src_dir);
  if (!single && sl > 12 && !strcmp(src_dir + sl - 12, ".safetensors") && stat(src_dir, &sst)) {
    errf(err, errlen, "%s: not found (a single-file checkpoint, or a diffusers folder)", src_dir);
    goto out;
  }
  if (single) {
    if (st_open(src_dir, &sgf, err, errlen) || sgm_map(&sgf.h, src_dir, num_frames, &sgm, verbose ? stderr : NULL, err, errlen))
      goto out;
    cfg = sgm.cfg;
  } else if (config_from_diffusers(src_dir, &cfg, err, errlen))
    goto out;
  if (opt->sampler >= 0) cfg.sched_sampler = opt->sampler;
  if (config_validate(&cfg, err, errlen)) {
    err_prefix(err, errlen, src_dir);
    goto out;
  }
  if (expected_sorted(&cfg, &list, &exp, err, errlen)) goto out;

  // Open each component's file and check it against the expected tensors of that component.
  for (int c = 0; c < 3 && !single; c++) {
    char path[1024];
    const char *which;
    if (pick_file(src_dir, c, variant, path, sizeof path, &which, err, errlen)) goto out;
    if (st_open(path, &sf[c], err, errlen)) goto out;
    nopen++;
    if (verbose) fprintf(stderr, "convert: %-13s %s: %d tensors, %s\n", COMPS[c].prefix, path, sf[c].h.n, which);
  }
  ot = calloc((size_t)list.n + 1, sizeof *ot);
  if (!ot) {
    errf(err, errlen, "out of memory");
    goto out;
  }
  SetDiff d = {0};
  // Expected tensors that the files lack or hold in another shape or an unsupported dtype.
  for (int i = 0; i < list.n; i++) {
    const char *nm = exp[i]->name;
    const StTensor *t = NULL;
    if (single) {
      ot[i].sgm = sgm_find(&sgm, nm);
      t = ot[i].sgm ? &ot[i].sgm->view : NULL;
      ot[i].fd = sgf.fd, ot[i].path = src_dir;
    }
    for (int c = 0; c < 3 && !single; c++) {
      size_t pl = strlen(COMPS[c].prefix);
      if (!strncmp(nm, COMPS[c].prefix, pl) && nm[pl] == '.')
        t = st_find(&sf[c].h, nm + pl + 1), ot[i].comp = c, ot[i].fd = sf[c].fd, ot[i].path = sf[c].path;
    }
    ot[i].src = t;
    if (!t) diff_add(&d.missing, &d.n_missing, "%s", nm);
    else if (!same_shape(exp[i]->ndim, exp[i]->shape, t->ndim, t->shape)) diff_shape(&d, nm, exp[i]->ndim, exp[i]->shape, t->ndim, t->shape);
    else if (t->dtype < 0) diff_add(&d.dtype, &d.n_dtype, "%s: %s", nm, t->dtype_str);
  }
  // Tensors of the files that no model uses (old transformers versions saved the position_ids buffer).
  for (int c = 0; c < 3 && !single; c++) {
    const StHeader *h = &sf[c].h;
    for (int i = 0; i < h->n; i++) {
      if (c == 2 && !strcmp(h->t[i].name, "vision_model.embeddings.position_ids")) continue;
      char full[400];
      VdpTensorSpec key, *kp = &key;
      size_t fl = (size_t)snprintf(full, sizeof full, "%s.%s", COMPS[c].prefix, h->t[i].name);
      int found = 0;
      if (fl < sizeof key.name) {  // a longer name cannot be an expected one
        memcpy(key.name, full, fl + 1);
        found = bsearch(&kp, exp, (size_t)list.n, sizeof *exp, cmp_spec_ptr) != NULL;
      }
      if (!found) diff_add(&d.extra, &d.n_extra, "%s", full);
    }
  }
  {
    char what[1200];
    snprintf(what, sizeof what, "checkpoint %s", src_dir);
    if (diff_report(&d, what, err, errlen)) goto out;
  }
  if (opt->unet) {
    if (unet_swap(opt->unet, &cfg, exp, list.n, ot, &uf, &usgm, err, errlen)) goto out;
    if (verbose)
      fprintf(stderr, "convert: unet          %s: %d tensors replace the base's UNet; sampler recorded: %s%s\n", opt->unet,
              uf.h.n, sampler_name(cfg.sched_sampler),
              cfg.sched_sampler == VDP_SAMPLER_EULER ? " (AnimateLCM-SVD-xt weights need --sampler animatelcm)" : "");
  }

  // Layout: header, configuration, table (64-aligned), then each tensor 64-aligned in name order.
  size_t cfglen;
  config_to_text(&cfg, &cfgtext, &cfglen);
  uint64_t table = align_up(VDPW_HEADER + cfglen, VDPW_ALIGN), pos = align_up(table + (uint64_t)list.n * VDPW_ENTRY, VDPW_ALIGN);
  uint64_t total_data = 0;
  for (int i = 0; i < list.n; i++) {
    VdpTensor *t = &ot[i].t;
    snprintf(t->name, sizeof t->name, "%s", exp[i]->name);
    t->dtype = out_dtype;
    t->ndim = exp[i]->ndim;
    memcpy(t->shape, exp[i]->shape, sizeof t->shape);
    t->nbytes = ot[i].src->numel * (uint64_t)dtype_size(out_dtype);
    t->offset = pos;
    pos = align_up(pos + t->nbytes, VDPW_ALIGN);
    total_data += t->nbytes;
  }
  uint64_t file_size = list.n ? ot[list.n - 1].t.offset + ot[list.n - 1].t.nbytes : pos;

  if (out_begin(&o, out_path, replace, err, errlen)) goto out;
  fp = o.fp;
  uint8_t hdr[VDPW_HEADER];
  uint32_t v32[3] = {VDPW_VERSION, (uint32_t)cfglen, (uint32_t)list.n};
  memcpy(hdr, "VDPW", 4);
  memcpy(hdr + 4, v32, 12);
  int werr = fwrite(hdr, 1, sizeof hdr, fp) != sizeof hdr || fwrite(cfgtext, 1, cfglen, fp) != cfglen ||
             write_zeros(fp, table - VDPW_HEADER - cfglen);
  for (int i = 0; i < list.n && !werr; i++) {
    uint8_t e[VDPW_ENTRY] = {0};
    const VdpTensor *t = &ot[i].t;
    uint32_t dt = (uint32_t)t->dtype, nd = (uint32_t)t->ndim;
    memcpy(e + E_NAME, t->name, strlen(t->name));
    memcpy(e + E_DTYPE, &dt, 4);
    memcpy(e + E_NDIM, &nd, 4);
    memcpy(e + E_SHAPE, t->shape, sizeof t->shape);
    memcpy(e + E_OFFSET, &t->offset, 8);
    memcpy(e + E_NBYTES, &t->nbytes, 8);
    werr = fwrite(e, 1, sizeof e, fp) != sizeof e;
  }
  inbuf = vdp_malloc(CHUNK * 4, "conversion buffer");
  outbuf = vdp_malloc(CHUNK * 4, "conversion buffer");
  uint64_t at = table + (uint64_t)list.n * VDPW_ENTRY, done = 0;
  int last_pct = -1;
  for (int i = 0; i < list.n && !werr; i++) {
    const VdpTensor *t = &ot[i].t;
    const StTensor *s = ot[i].src;
    int sdt = s->dtype, ssz = dtype_size(sdt);
    if (write_zeros(fp, t->offset - at)) {
      werr = 1;
      break;
    }
    at = t->offset;
    for (uint64_t e0 = 0; e0 < s->numel; e0 += CHUNK) {
      size_t n = (size_t)(s->numel - e0 < CHUNK ? s->numel - e0 : CHUNK);
      if (ot[i].sgm ? sgm_read(ot[i].fd, ot[i].sgm, e0, n, inbuf)
                    : pread_full(ot[i].fd, inbuf, n * (size_t)ssz, s->begin + e0 * (uint64_t)ssz)) {
        errf(err, errlen, "%s: read error in tensor '%s'", ot[i].path, s->name);
        goto out;
      }
      int why = 0;
      int64_t bad = convert_elems(outbuf, out_dtype, inbuf, sdt, n, &why);
      if (bad >= 0) {
        float x = sdt == VDP_F32 ? ((float *)inbuf)[bad]
                  : sdt == VDP_F16 ? half_to_float(((uint16_t *)inbuf)[bad]) : bf16_to_float(((uint16_t *)inbuf)[bad]);
        if (why == 1)
          errf(err, errlen, "tensor '%s': value %g at index %" PRIu64 " overflows fp16 (use --dtype fp32)", t->name, (double)x,
               e0 + (uint64_t)bad);
        else
          errf(err, errlen, "%s: tensor '%s' holds a non-finite value (%g) at index %" PRIu64 ": the checkpoint is damaged; "
               "nothing was written", ot[i].path, s->name, (double)x, e0 + (uint64_t)bad);
        goto out;
      }
      size_t nb = n * (size_t)dtype_size(out_dtype);
      if (fwrite(outbuf, 1, nb, fp) != nb) {
        werr = 1;
        break;
      }
      at += nb;
      done += nb;
    }
    int pct = total_data ? (int)(100 * done / total_data) : 100;
    if (verbose && pct / 10 != last_pct / 10) {
      fprintf(stderr, "convert: %3d%% (%d/%d tensors)\n", pct, i + 1, list.n);
      last_pct = pct;
    }
  }
  if (werr || at != file_size) {
    errf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
    goto out;
  }
  fp = NULL;
  if (out_close(&o, err, errlen)) goto out;
  // Check what was written with the reader before it takes the final name.
  {
    VdpFile vf;
    if (vdpw_open(tmp, &vf, err, errlen)) {
      err_prefix(err, errlen, "internal error: the written file does not validate");
      goto out;
    }
    vdpw_close(&vf);
  }
  if (out_rename(&o, err, errlen)) goto out;
  if (verbose)
    fprintf(stderr, "convert: wrote %s: %d tensors, %" PRIu64 " bytes (%s) in %.1f s\n", out_path, list.n, file_size,
            dtype_name(out_dtype), vdp_now() - t0);
  rc = 0;
out:
  if (rc) out_abort(&o);  // exactly the temporary this run created, nothing else
  for (int c = 0; c < nopen; c++) st_close(&sf[c]);
  st_close(&sgf);
  st_close(&uf);
  sgm_map_free(&sgm);
  sgm_map_free(&usgm);
  free(inbuf), free(outbuf), free(cfgtext), free(ot), free(exp);
  speclist_free(&list);
  return rc;
}

static void convert_usage(void) {
  fprintf(stderr,
          "usage: vdp convert SRC_DIR OUT.vdpw [--dtype fp16|fp32] [--variant auto|fp32|fp16] [--overwrite]\n"
          "       vdp convert FILE.safetensors OUT.vdpw [--dtype fp16|fp32] [--num-frames N] [--overwrite]\n"
          "       either one with [--unet UNET.safetensors] [--sampler euler|animatelcm]\n"
          "  SRC_DIR    a diffusers StableVideoDiffusionPipeline folder (model_index.json, unet/, vae/, ...)\n"
          "  FILE       a single-file SGM checkpoint (svd.safetensors, svd_xt.safetensors, svd_xt_1_1.safetensors\n"
          "             as ComfyUI and Stability's generative-models use them); the configuration is inferred\n"
          "  --dtype    storage type of the output (default fp16)\n"
          "  --variant  (folder) source files: fp32 = *.safetensors, fp16 = *.fp16.safetensors,\n"
          "             auto (default) = the plain file when present, else the fp16 variant\n"
          "  --num-frames  (file) default frame count stored in the output (default 25 when the file name\n"
          "             holds the word \"xt\" (svd_xt, svd_xt_1_1, AnimateLCM-SVD-xt), else 14)\n"
          "  --unet UNET.safetensors  replace the UNet's weights by this file's (e.g. AnimateLCM-SVD-xt.safetensors):\n"
          "             diffusers names (UNetSpatioTemporalConditionModel.state_dict()) or SGM names\n"
          "             (model.diffusion_model.*); every tensor of the base's UNet with its shape, nothing else\n"
          "  --sampler euler|animatelcm  the sampler the file records (vdp generate's default; default euler)\n"
          "  --overwrite  replace OUT.vdpw when it exists (a regular file only); without it vdp refuses\n"
          "exit status: 0 success, 1 failure, 2 usage error\n");
}

int cmd_convert(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int npos = 0, dtype = VDP_F16, variant = VARIANT_AUTO, num_frames = 0, variant_given = 0, overwrite = 0, sampler = -1;
  const char *unet = NULL;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      convert_usage();
      return 0;
    }
  vdp_flags_once("convert", argc, argv, (const char *const[]){"--dtype", "--variant", "--num-frames", "--unet", "--sampler", NULL},
                 NULL);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      convert_usage();
      return 0;
    }
    if (!strcmp(a, "--overwrite")) {
      overwrite = 1;
      continue;
    }
    if (!strcmp(a, "--dtype") || !strcmp(a, "--variant") || !strcmp(a, "--num-frames") || !strcmp(a, "--unet") ||
        !strcmp(a, "--sampler")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "vdp: error: %s needs a value\n", a);
        return 2;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--unet")) {
        unet = v;
      } else if (!strcmp(a, "--sampler")) {
        if ((sampler = sampler_from_name(v)) < 0) {
          fprintf(stderr, "vdp: error: --sampler must be euler or animatelcm, not '%s'\n", v);
          return 2;
        }
      } else if (!strcmp(a, "--num-frames")) {
        long nf;
        if (vdp_parse_long(v, 1, MAX_LAYERS, &nf)) {
          fprintf(stderr, "vdp: error: --num-frames must be an integer in 1..%d, not '%s'\n", MAX_LAYERS, v);
          return 2;
        }
        num_frames = (int)nf;
      } else if (!strcmp(a, "--dtype")) {
        if (!strcmp(v, "fp16")) dtype = VDP_F16;
        else if (!strcmp(v, "fp32")) dtype = VDP_F32;
        else {
          fprintf(stderr, "vdp: error: --dtype must be fp16 or fp32, not '%s'\n", v);
          return 2;
        }
      } else {
        variant_given = 1;
        if (!strcmp(v, "auto")) variant = VARIANT_AUTO;
        else if (!strcmp(v, "fp32")) variant = VARIANT_FP32;
        else if (!strcmp(v, "fp16")) variant = VARIANT_FP16;
        else {
          fprintf(stderr, "vdp: error: --variant must be auto, fp32 or fp16, not '%s'\n", v);
          return 2;
        }
      }
      continue;
    }
    if (a[0] == '-' && a[1]) {
      fprintf(stderr, "vdp: error: unknown option '%s'\n", a);
      convert_usage();
      return 2;
    }
    if (npos == 2) {
      fprintf(stderr, "vdp: error: unexpected argument '%s'\n", a);
      convert_usage();
      return 2;
    }
    pos[npos++] = a;
  }
  if (npos != 2) {
    convert_usage();
    return 2;
  }
  if (!*pos[0]) {
    fprintf(stderr, "vdp: error: convert: the source name is empty (give a diffusers folder or a .safetensors file)\n");
    return 2;
  }
  if (!*pos[1]) {
    fprintf(stderr, "vdp: error: convert: the output name is empty (give OUT.vdpw)\n");
    return 2;
  }
  if (name_has_control(pos[1])) {
    fprintf(stderr, "vdp: error: convert: the output name holds a control character (a newline, tab or escape): "
                    "choose a plain name\n");
    return 2;
  }
  // Flags that would be ignored are refused: --variant picks files of a folder, --num-frames sets what a
  // folder's unet/config.json holds.
  struct stat st;
  int single = stat(pos[0], &st) == 0 && S_ISREG(st.st_mode);
  if (single && variant_given) {
    fprintf(stderr, "vdp: error: --variant picks the files of a diffusers folder; %s is a single file\n", pos[0]);
    return 2;
  }
  if (!single && num_frames) {
    fprintf(stderr, "vdp: error: --num-frames applies to a single-file checkpoint; a diffusers folder's unet/config.json "
                    "sets num_frames\n");
    return 2;
  }
  char err[4096];
  out_set_replace(overwrite);
  ConvertOpts o = {.out_dtype = dtype, .variant = variant, .num_frames = num_frames, .verbose = 1, .unet = unet,
                   .sampler = sampler};
  if (vdpw_convert_opts(pos[0], pos[1], &o, err, sizeof err)) {
    fprintf(stderr, "vdp: error: %s\n", err);
    return 1;
  }
  return 0;
}

int cmd_info(int argc, char **argv) {
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: vdp info FILE.vdpw\n");
    return argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 2;
  }
  VdpFile f;
  char err[4096];
  if (vdpw_open(argv[1], &f, err, sizeof err)) {
    fprintf(stderr, "vdp: error: %s\n", err);
    return 1;
  }
  const VdpConfig *c = &f.cfg;
  printf("file: %s\n", f.path);
  printf("size: %zu bytes (%.3f GB)\n", f.map_size, f.map_size / 1e9);
  printf("format: vdpw version %d, %d tensors\n", VDPW_VERSION, f.n_tensors);
  printf("sampler: %s (what vdp generate uses unless --sampler says otherwise)\n", sampler_name(c->sched_sampler));
  printf("configuration:\n");
  for (int i = 0; i < N_CFG_FIELDS; i++) {
    const CfgField *fd = &CFG_FIELDS[i];
    char val[512];
    size_t k = 0;
    val[0] = 0;
    for (int j = 0; j < cfg_used(c, fd) && k < sizeof val; j++) {
      const char *p = (const char *)c + fd->off;
      if (fd->kind == 'i') k += (size_t)snprintf(val + k, sizeof val - k, "%s%d", j ? "," : "", ((const int *)p)[j]);
      else k += (size_t)snprintf(val + k, sizeof val - k, "%s%.9g", j ? "," : "", (double)((const float *)p)[j]);
    }
    char kv[600];
    snprintf(kv, sizeof kv, "%s=%s", fd->name, val);
    printf("  %-44s # %s: %s\n", kv, fd->comp, fd->key);
  }
  // Parameters per component (the name prefix before the first dot), bytes per dtype.
  const char *comps[3] = {"image_encoder", "unet", "vae"};
  uint64_t params[4] = {0}, bytes[3] = {0};
  int counts[4] = {0}, dcount[3] = {0};
  for (int i = 0; i < f.n_tensors; i++) {
    const VdpTensor *t = &f.tensors[i];
    uint64_t numel = t->nbytes / (uint64_t)dtype_size(t->dtype);
    int ci = 3;
    for (int k = 0; k < 3; k++) {
      size_t l = strlen(comps[k]);
      if (!strncmp(t->name, comps[k], l) && t->name[l] == '.') ci = k;
    }
    if (ci < 3) params[ci] += numel, counts[ci]++;
    params[3] += numel, counts[3]++;
    bytes[t->dtype] += t->nbytes;
    dcount[t->dtype]++;
  }
  printf("parameters:\n");
  for (int k = 0; k < 3; k++) printf("  %-14s %14" PRIu64 " (%d tensors)\n", comps[k], params[k], counts[k]);
  printf("  %-14s %14" PRIu64 " (%d tensors)\n", "total", params[3], counts[3]);
  printf("bytes by dtype:\n");
  for (int k = 0; k < 3; k++)
    if (dcount[k]) printf("  %-14s %14" PRIu64 " (%d tensors)\n", dtype_name(k), bytes[k], dcount[k]);
  vdpw_close(&f);
  return 0;
}
