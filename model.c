// model.c — the model graph: CLIP image encoder, VAE (encoder + temporal decoder), the spatio-temporal
// UNet, the Euler/Karras scheduler and the image-to-video pipeline, written once on the Backend table of
// model.h (the CPU reference in ops.c, or CUDA in kernels.cu).
//
// Reading order: weight binding (one description of every tensor, used to list the tensors a
// configuration needs, to load them into a backend and to make random ones) -> execution (the
// activation arena, counted operators) -> building blocks (resnets, attention, transformers) ->
// CLIP -> VAE -> UNet -> scheduler -> pipeline.
//
// Frame packing: the UNet and VAE decoder see a video batch [B, F, C, H, W] as [(B F), C, H, W]
// (row = b*F + f). Spatial layers treat each row as an image; temporal layers reach across the F rows
// of a video.
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double float_as_decimal(float f);

#ifndef VDP_CUDA
const Backend *backend_cuda(void) { return NULL; }  // built without CUDA (kernels.cu defines it otherwise)
#endif

// ---------------------------------------------------------------------------------------------------
// Weight binding
// ---------------------------------------------------------------------------------------------------
// Every model describes its tensors once, in its bind_* function. A Binder runs that description in
// one of four modes:
//   BIND_SPECS: append (name, shape) to a list  -> `vdp convert` checks checkpoints against it
//   BIND_COUNT: add up the backend's elements   -> size of the model's single allocation
//   BIND_LOAD:  find each tensor in the .vdpw, check its shape, store it in the backend's layout
//   BIND_RANDOM: fill with deterministic random values (benchmarks of a named configuration)
enum { BIND_SPECS, BIND_COUNT, BIND_LOAD, BIND_RANDOM };

typedef struct {
  int mode;
  const char *prefix;     // "unet." / "vae." / "image_encoder."
  VdpSpecList *specs;     // BIND_SPECS
  const VdpFile *file;    // BIND_LOAD
  const Backend *be;      // BIND_LOAD / BIND_RANDOM: where the tensors go
  char *pool;             // the component's one allocation
  size_t used;            // backend elements bound so far (the allocation's size after BIND_COUNT)
  size_t params;          // parameters bound so far
  char *err;
  size_t errlen;
  int failed;
} Binder;

static void speclist_push(VdpSpecList *l, const VdpTensorSpec *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 1024;
    VdpTensorSpec *p = realloc(l->specs, (size_t)l->cap * sizeof *p);
    if (!p) vdp_die("out of memory growing the tensor list");
    l->specs = p;
  }
  l->specs[l->n++] = *s;
}

void speclist_free(VdpSpecList *l) {
  free(l->specs);
  memset(l, 0, sizeof *l);
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

// Fills dst [numel] with the tensor's values as fp32 (from the file, or random for benchmarks).
static int stage_values(Binder *b, const VdpTensorSpec *s, int64_t numel, float *dst) {
  if (b->mode == BIND_RANDOM) {  // uniform(-1,1)/sqrt(fan_in) for weights; norm scales 1 ± 0.1, small biases
    int64_t fan_in = s->ndim >= 2 ? numel / s->shape[0] : 0;
    int is_norm_scale = s->ndim == 1 && strstr(s->name, "norm") && strstr(s->name, ".weight");
    uint64_t st = 0x9E3779B97F4A7C15ull ^ (uint64_t)b->params;
    for (int64_t i = 0; i < numel; i++) {
      st ^= st << 13, st ^= st >> 7, st ^= st << 17;  // xorshift64
      float u = (float)((st >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
      dst[i] = fan_in ? u / sqrtf((float)fan_in) : is_norm_scale ? 1.0f + 0.1f * u : 0.01f * u;
    }
    return 0;
  }
  const VdpTensor *t = vdpw_find(b->file, s->name);
  if (!t) {
    snprintf(b->err, b->errlen, "%s: tensor %s is missing", b->file->path, s->name);
    return -1;
  }
  int same = t->ndim == s->ndim;
  for (int i = 0; same && i < s->ndim; i++) same = t->shape[i] == s->shape[i];
  if (!same) {
    char e[96], f[96];
    fmt_shape(e, sizeof e, s->ndim, s->shape);
    fmt_shape(f, sizeof f, t->ndim, t->shape);
    snprintf(b->err, b->errlen, "%s: tensor %s has shape %s, expected %s", b->file->path, s->name, f, e);
    return -1;
  }
  if (t->dtype == VDP_F32) {
    memcpy(dst, t->data, (size_t)numel * sizeof(float));
  } else {
    const uint16_t *src = t->data;
    for (int64_t i = 0; i < numel; i++) {
      uint16_t h;
      memcpy(&h, src + i, 2);
      dst[i] = t->dtype == VDP_F16 ? half_to_float(h) : bf16_to_float(h);
    }
  }
  // A NaN or infinity in a weight (damaged bytes, or a broken checkpoint) would turn every output frame
  // into NaN without a word: refuse it here, naming the tensor.
  for (int64_t i = 0; i < numel; i++)
    if (!isfinite(dst[i])) {
      snprintf(b->err, b->errlen, "%s: tensor %s holds a non-finite value (%g) at element %lld: the file is damaged, "
               "or so is the checkpoint it was converted from", b->file->path, s->name, (double)dst[i], (long long)i);
      return -1;
    }
  return 0;
}

// Binds one tensor: in BIND_LOAD / BIND_RANDOM mode returns where it lives in the backend's allocation
// (and its first value in *first, for scalars the graph needs on the host); NULL otherwise.
static void *bind_kind(Binder *b, int kind, float *first, int ndim, const int64_t *shape, const char *fmt, ...) {
  if (b->failed) return NULL;
  VdpTensorSpec s = {0};
  int k = snprintf(s.name, sizeof s.name, "%s", b->prefix);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s.name + k, sizeof s.name - (size_t)k, fmt, ap);
  va_end(ap);
  s.ndim = ndim;
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) s.shape[i] = shape[i], numel *= shape[i];
  if (b->mode == BIND_SPECS) {
    speclist_push(b->specs, &s);
    return NULL;
  }
  size_t at = b->used;
  b->used += (size_t)(b->be ? b->be->weight_elems(kind, ndim, shape) : numel);
  b->params += (size_t)numel;
  if (b->mode == BIND_COUNT) return NULL;
  float *host = vdp_malloc((size_t)numel * sizeof(float), s.name);
  if (stage_values(b, &s, numel, host)) {
    b->failed = 1;
    free(host);
    return NULL;
  }
  void *dst = b->pool + at * b->be->elem_size;
  b->be->weight_store(dst, host, kind, ndim, shape);
  if (first) *first = host[0];
  free(host);
  return dst;
}
#define bind_tensor(b, ndim, shape, ...) bind_kind(b, WEIGHT_PLAIN, NULL, ndim, shape, __VA_ARGS__)

static void *bind1(Binder *b, const char *name, const char *what, int64_t d0) {
  return bind_tensor(b, 1, (const int64_t[]){d0}, "%s.%s", name, what);
}

static void bind_linear(Binder *b, Linear *l, int in, int out, int has_bias, const char *name) {
  l->in = in, l->out = out;
  l->w = bind_kind(b, WEIGHT_LINEAR, NULL, 2, (const int64_t[]){out, in}, "%s.weight", name);
  l->b = has_bias ? bind1(b, name, "bias", out) : NULL;
}

static void bind_conv(Binder *b, Conv *c, int cin, int cout, int k, int has_bias, const char *name) {
  c->cin = cin, c->cout = cout, c->k = k;
  c->w = bind_kind(b, WEIGHT_CONV, NULL, 4, (const int64_t[]){cout, cin, k, k}, "%s.weight", name);
  c->b = has_bias ? bind1(b, name, "bias", cout) : NULL;
}

// Conv3d with kernel (3,1,1): weight [cout, cin, 3, 1, 1], used as [cout, cin, 3].
static void bind_conv_t(Binder *b, Conv *c, int cin, int cout, const char *name) {
  c->cin = cin, c->cout = cout, c->k = 3;
  c->w = bind_kind(b, WEIGHT_CONV, NULL, 5, (const int64_t[]){cout, cin, 3, 1, 1}, "%s.weight", name);
  c->b = bind1(b, name, "bias", cout);
}

static void bind_norm(Binder *b, Norm *n, int c, float eps, const char *name) {
  n->c = c, n->eps = eps;
  n->g = bind1(b, name, "weight", c);
  n->b = bind1(b, name, "bias", c);
}

static float bind_scalar(Binder *b, const char *name) {
  float v = 0.0f;
  bind_kind(b, WEIGHT_PLAIN, &v, 1, (const int64_t[]){1}, "%s", name);
  return v;
}

// printf into a short-lived name buffer
static const char *nm(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, NAME_LEN, fmt, ap);
  va_end(ap);
  return buf;
}

// ---------------------------------------------------------------------------------------------------
// Building blocks: binding
// ---------------------------------------------------------------------------------------------------
// ResnetBlock2D (spatial): GN-SiLU-conv3x3 (+temb) GN-SiLU-conv3x3, 1x1 shortcut when cin != cout.
static void bind_res2d(Binder *b, ResBlock *r, int cin, int cout, int temb, float eps, const char *p) {
  char n[NAME_LEN];
  bind_norm(b, &r->norm1, cin, eps, nm(n, "%s.norm1", p));
  bind_conv(b, &r->conv1, cin, cout, 3, 1, nm(n, "%s.conv1", p));
  if (temb) bind_linear(b, &r->temb, temb, cout, 1, nm(n, "%s.time_emb_proj", p));
  bind_norm(b, &r->norm2, cout, eps, nm(n, "%s.norm2", p));
  bind_conv(b, &r->conv2, cout, cout, 3, 1, nm(n, "%s.conv2", p));
  if (cin != cout) bind_conv(b, &r->shortcut, cin, cout, 1, 1, nm(n, "%s.conv_shortcut", p));
}

// TemporalResnetBlock: the same over frames with (3,1,1) convolutions, no shortcut.
static void bind_res_t(Binder *b, ResBlock *r, int c, int temb, float eps, const char *p) {
  char n[NAME_LEN];
  bind_norm(b, &r->norm1, c, eps, nm(n, "%s.norm1", p));
  bind_conv_t(b, &r->conv1, c, c, nm(n, "%s.conv1", p));
  if (temb) bind_linear(b, &r->temb, temb, c, 1, nm(n, "%s.time_emb_proj", p));
  bind_norm(b, &r->norm2, c, eps, nm(n, "%s.norm2", p));
  bind_conv_t(b, &r->conv2, c, c, nm(n, "%s.conv2", p));
}

// SpatioTemporalResBlock: spatial resnet, temporal resnet, learned mix.
static void bind_strb(Binder *b, STResBlock *s, int cin, int cout, int temb, float eps, float teps,
                      int switch_mix, const char *p) {
  char n[NAME_LEN];
  s->cin = cin, s->cout = cout, s->switch_mix = switch_mix;
  bind_res2d(b, &s->spatial, cin, cout, temb, eps, nm(n, "%s.spatial_res_block", p));
  bind_res_t(b, &s->temporal, cout, temb, teps, nm(n, "%s.temporal_res_block", p));
  s->mix = bind_scalar(b, nm(n, "%s.time_mixer.mix_factor", p));
}

static void bind_attn(Binder *b, Attn *a, int c, int kv_dim, int heads, int qkv_bias, const char *p) {
  char n[NAME_LEN];
  a->heads = heads;
  bind_linear(b, &a->q, c, c, qkv_bias, nm(n, "%s.to_q", p));
  bind_linear(b, &a->k, kv_dim, c, qkv_bias, nm(n, "%s.to_k", p));
  bind_linear(b, &a->v, kv_dim, c, qkv_bias, nm(n, "%s.to_v", p));
  bind_linear(b, &a->o, c, c, 1, nm(n, "%s.to_out.0", p));
}

static void bind_ff(Binder *b, FeedForward *f, int c, const char *p) {
  char n[NAME_LEN];
  bind_linear(b, &f->proj, c, 8 * c, 1, nm(n, "%s.net.0.proj", p));  // GEGLU: 2 x inner (4c)
  bind_linear(b, &f->out, 4 * c, c, 1, nm(n, "%s.net.2", p));
}

static void bind_tstm(Binder *b, TSTM *t, int c, int heads, int layers, int cross, const char *p) {
  char n[NAME_LEN];
  t->c = c, t->heads = heads, t->layers = layers;
  bind_norm(b, &t->norm, c, 1e-6f, nm(n, "%s.norm", p));
  bind_linear(b, &t->proj_in, c, c, 1, nm(n, "%s.proj_in", p));
  for (int l = 0; l < layers; l++) {
    SpatialBlock *s = &t->spatial[l];
    bind_norm(b, &s->norm1, c, 1e-5f, nm(n, "%s.transformer_blocks.%d.norm1", p, l));
    bind_attn(b, &s->attn1, c, c, heads, 0, nm(n, "%s.transformer_blocks.%d.attn1", p, l));
    bind_norm(b, &s->norm2, c, 1e-5f, nm(n, "%s.transformer_blocks.%d.norm2", p, l));
    bind_attn(b, &s->attn2, c, cross, heads, 0, nm(n, "%s.transformer_blocks.%d.attn2", p, l));
    bind_norm(b, &s->norm3, c, 1e-5f, nm(n, "%s.transformer_blocks.%d.norm3", p, l));
    bind_ff(b, &s->ff, c, nm(n, "%s.transformer_blocks.%d.ff", p, l));
  }
  for (int l = 0; l < layers; l++) {
    TemporalBlock *s = &t->temporal[l];
    bind_norm(b, &s->norm_in, c, 1e-5f, nm(n, "%s.temporal_transformer_blocks.%d.norm_in", p, l));
    bind_ff(b, &s->ff_in, c, nm(n, "%s.temporal_transformer_blocks.%d.ff_in", p, l));
    bind_norm(b, &s->norm1, c, 1e-5f, nm(n, "%s.temporal_transformer_blocks.%d.norm1", p, l));
    bind_attn(b, &s->attn1, c, c, heads, 0, nm(n, "%s.temporal_transformer_blocks.%d.attn1", p, l));
    bind_norm(b, &s->norm2, c, 1e-5f, nm(n, "%s.temporal_transformer_blocks.%d.norm2", p, l));
    bind_attn(b, &s->attn2, c, cross, heads, 0, nm(n, "%s.temporal_transformer_blocks.%d.attn2", p, l));
    bind_norm(b, &s->norm3, c, 1e-5f, nm(n, "%s.temporal_transformer_blocks.%d.norm3", p, l));
    bind_ff(b, &s->ff, c, nm(n, "%s.temporal_transformer_blocks.%d.ff", p, l));
  }
  bind_linear(b, &t->pos1, c, 4 * c, 1, nm(n, "%s.time_pos_embed.linear_1", p));
  bind_linear(b, &t->pos2, 4 * c, c, 1, nm(n, "%s.time_pos_embed.linear_2", p));
  t->mix = bind_scalar(b, nm(n, "%s.time_mixer.mix_factor", p));
  bind_linear(b, &t->proj_out, c, c, 1, nm(n, "%s.proj_out", p));
}

// Attention with its own GroupNorm and residual (VAE mid blocks): one head of the full width.
static void bind_vae_attn(Binder *b, VaeAttn *a, int c, const char *p) {
  char n[NAME_LEN];
  bind_norm(b, &a->norm, c, 1e-6f, nm(n, "%s.group_norm", p));
  bind_attn(b, &a->attn, c, c, 1, 1, p);
}

// ---------------------------------------------------------------------------------------------------
// Models: binding (this is THE description of each model's parameters)
// ---------------------------------------------------------------------------------------------------
static void bind_unet(Binder *b, const VdpConfig *cfg, UNet *u) {
  char n[NAME_LEN];
  int L = cfg->unet_levels, lpb = cfg->unet_layers_per_block, b0 = cfg->unet_block_out[0];
  int temb = 4 * b0;
  u->levels = L, u->lpb = lpb, u->temb_dim = temb;
  bind_conv(b, &u->conv_in, cfg->unet_in_channels, b0, 3, 1, "conv_in");
  bind_linear(b, &u->time1, b0, temb, 1, "time_embedding.linear_1");
  bind_linear(b, &u->time2, temb, temb, 1, "time_embedding.linear_2");
  bind_linear(b, &u->add1, cfg->unet_proj_class_in_dim, temb, 1, "add_embedding.linear_1");
  bind_linear(b, &u->add2, temb, temb, 1, "add_embedding.linear_2");
  int ch = b0;
  for (int i = 0; i < L; i++) {  // down blocks: eps 1e-6 with attention, 1e-5 without (diffusers)
    UNetLevel *d = &u->down[i];
    int out = cfg->unet_block_out[i];
    d->attn = cfg->unet_down_attn[i];
    float eps = d->attn ? 1e-6f : 1e-5f;
    for (int j = 0; j < lpb; j++) {
      bind_strb(b, &d->res[j], j == 0 ? ch : out, out, temb, eps, eps, 0, nm(n, "down_blocks.%d.resnets.%d", i, j));
      if (d->attn)
        bind_tstm(b, &d->tf[j], out, cfg->unet_heads[i], cfg->unet_transformer_layers[i], cfg->unet_cross_dim[i],
                  nm(n, "down_blocks.%d.attentions.%d", i, j));
    }
    d->has_sample = i < L - 1;
    if (d->has_sample) bind_conv(b, &d->sample, out, out, 3, 1, nm(n, "down_blocks.%d.downsamplers.0.conv", i));
    ch = out;
  }
  int top = cfg->unet_block_out[L - 1];
  bind_strb(b, &u->mid_res[0], top, top, temb, 1e-5f, 1e-5f, 0, "mid_block.resnets.0");
  bind_tstm(b, &u->mid_tf, top, cfg->unet_heads[L - 1], cfg->unet_transformer_layers[L - 1], cfg->unet_cross_dim[L - 1],
            "mid_block.attentions.0");
  bind_strb(b, &u->mid_res[1], top, top, temb, 1e-5f, 1e-5f, 0, "mid_block.resnets.1");
  // up blocks: up block i works at level L-1-i; its resnets take (previous output + skip) channels
  int prev = top;
  for (int i = 0; i < L; i++) {
    UNetLevel *up = &u->up[i];
    int lev = L - 1 - i, out = cfg->unet_block_out[lev];
    int in = cfg->unet_block_out[lev > 0 ? lev - 1 : 0];  // channels of the deepest skip this block eats
    up->attn = cfg->unet_up_attn[i];
    for (int j = 0; j < lpb + 1; j++) {
      int skip = j == lpb ? in : out;
      int rin = (j == 0 ? prev : out) + skip;
      bind_strb(b, &up->res[j], rin, out, temb, 1e-6f, 1e-6f, 0, nm(n, "up_blocks.%d.resnets.%d", i, j));
      if (up->attn)
        bind_tstm(b, &up->tf[j], out, cfg->unet_heads[lev], cfg->unet_transformer_layers[lev], cfg->unet_cross_dim[lev],
                  nm(n, "up_blocks.%d.attentions.%d", i, j));
    }
    up->has_sample = i < L - 1;
    if (up->has_sample) bind_conv(b, &up->sample, out, out, 3, 1, nm(n, "up_blocks.%d.upsamplers.0.conv", i));
    prev = out;
  }
  bind_norm(b, &u->norm_out, b0, 1e-5f, "conv_norm_out");
  bind_conv(b, &u->conv_out, b0, cfg->unet_out_channels, 3, 1, "conv_out");
}

static void bind_vae(Binder *b, const VdpConfig *cfg, Vae *v) {
  char n[NAME_LEN];
  int L = cfg->vae_levels, lpb = cfg->vae_layers_per_block, lat = cfg->vae_latent_channels;
  v->levels = L, v->lpb = lpb;
  // encoder (standard KL encoder, GroupNorm eps 1e-6)
  bind_conv(b, &v->enc_in, cfg->vae_in_channels, cfg->vae_block_out[0], 3, 1, "encoder.conv_in");
  int ch = cfg->vae_block_out[0];
  for (int i = 0; i < L; i++) {
    int out = cfg->vae_block_out[i];
    for (int j = 0; j < lpb; j++)
      bind_res2d(b, &v->enc_res[i][j], j == 0 ? ch : out, out, 0, 1e-6f, nm(n, "encoder.down_blocks.%d.resnets.%d", i, j));
    if (i < L - 1) bind_conv(b, &v->enc_down[i], out, out, 3, 1, nm(n, "encoder.down_blocks.%d.downsamplers.0.conv", i));
    ch = out;
  }
  bind_res2d(b, &v->enc_mid_res[0], ch, ch, 0, 1e-6f, "encoder.mid_block.resnets.0");
  bind_vae_attn(b, &v->enc_mid_attn, ch, "encoder.mid_block.attentions.0");
  bind_res2d(b, &v->enc_mid_res[1], ch, ch, 0, 1e-6f, "encoder.mid_block.resnets.1");
  bind_norm(b, &v->enc_norm_out, ch, 1e-6f, "encoder.conv_norm_out");
  bind_conv(b, &v->enc_out, ch, 2 * lat, 3, 1, "encoder.conv_out");
  bind_conv(b, &v->quant, 2 * lat, 2 * lat, 1, 1, "quant_conv");
  // temporal decoder: spatial GN eps 1e-6, temporal GN eps 1e-5, mix switched
  int top = cfg->vae_block_out[L - 1];
  bind_conv(b, &v->dec_in, lat, top, 3, 1, "decoder.conv_in");
  for (int j = 0; j < lpb; j++)
    bind_strb(b, &v->dec_mid_res[j], top, top, 0, 1e-6f, 1e-5f, 1, nm(n, "decoder.mid_block.resnets.%d", j));
  bind_vae_attn(b, &v->dec_mid_attn, top, "decoder.mid_block.attentions.0");
  int prev = top;
  for (int i = 0; i < L; i++) {
    int out = cfg->vae_block_out[L - 1 - i];
    for (int j = 0; j < lpb + 1; j++)
      bind_strb(b, &v->dec_res[i][j], j == 0 ? prev : out, out, 0, 1e-6f, 1e-5f, 1,
                nm(n, "decoder.up_blocks.%d.resnets.%d", i, j));
    if (i < L - 1) bind_conv(b, &v->dec_up[i], out, out, 3, 1, nm(n, "decoder.up_blocks.%d.upsamplers.0.conv", i));
    prev = out;
  }
  int b0 = cfg->vae_block_out[0];
  bind_norm(b, &v->dec_norm_out, b0, 1e-6f, "decoder.conv_norm_out");
  bind_conv(b, &v->dec_out, b0, cfg->vae_out_channels, 3, 1, "decoder.conv_out");
  bind_conv_t(b, &v->time_conv_out, cfg->vae_out_channels, cfg->vae_out_channels, "decoder.time_conv_out");
}

static void bind_clip(Binder *b, const VdpConfig *cfg, Clip *c) {
  char n[NAME_LEN];
  int D = cfg->clip_hidden, P = cfg->clip_patch, G = cfg->clip_image_size / P;
  c->hidden = D, c->grid = G, c->tokens = G * G + 1;
  c->patch_w = bind_kind(b, WEIGHT_CONV, NULL, 4, (const int64_t[]){D, cfg->clip_channels, P, P},
                         "vision_model.embeddings.patch_embedding.weight");
  c->class_emb = bind_tensor(b, 1, (const int64_t[]){D}, "vision_model.embeddings.class_embedding");
  c->pos_emb = bind_tensor(b, 2, (const int64_t[]){c->tokens, D}, "vision_model.embeddings.position_embedding.weight");
  float eps = cfg->clip_eps;
  bind_norm(b, &c->pre_ln, D, eps, "vision_model.pre_layrnorm");
  for (int i = 0; i < cfg->clip_layers; i++) {
    ClipLayer *l = &c->layer[i];
    bind_norm(b, &l->ln1, D, eps, nm(n, "vision_model.encoder.layers.%d.layer_norm1", i));
    bind_linear(b, &l->q, D, D, 1, nm(n, "vision_model.encoder.layers.%d.self_attn.q_proj", i));
    bind_linear(b, &l->k, D, D, 1, nm(n, "vision_model.encoder.layers.%d.self_attn.k_proj", i));
    bind_linear(b, &l->v, D, D, 1, nm(n, "vision_model.encoder.layers.%d.self_attn.v_proj", i));
    bind_linear(b, &l->o, D, D, 1, nm(n, "vision_model.encoder.layers.%d.self_attn.out_proj", i));
    bind_norm(b, &l->ln2, D, eps, nm(n, "vision_model.encoder.layers.%d.layer_norm2", i));
    bind_linear(b, &l->fc1, D, cfg->clip_intermediate, 1, nm(n, "vision_model.encoder.layers.%d.mlp.fc1", i));
    bind_linear(b, &l->fc2, cfg->clip_intermediate, D, 1, nm(n, "vision_model.encoder.layers.%d.mlp.fc2", i));
  }
  bind_norm(b, &c->post_ln, D, eps, "vision_model.post_layernorm");
  bind_linear(b, &c->proj, D, cfg->clip_projection_dim, 0, "visual_projection");
}

typedef void (*BindFn)(Binder *, const VdpConfig *, void *);
static const struct {
  const char *prefix;
  BindFn fn;
} COMPONENTS[] = {
    {"unet.", (BindFn)bind_unet},
    {"vae.", (BindFn)bind_vae},
    {"image_encoder.", (BindFn)bind_clip},
};

// Limits of the fixed-size arrays in model.h; config_validate reports the user-facing error, this
// guards the structs in case it was not called.
static int check_limits(const VdpConfig *cfg, char *err, size_t errlen) {
  if (cfg->unet_levels < 1 || cfg->unet_levels > VDP_MAX_LEVELS || cfg->vae_levels < 1 ||
      cfg->vae_levels > VDP_MAX_LEVELS || cfg->unet_layers_per_block < 1 || cfg->unet_layers_per_block > MAX_LAYERS - 1 ||
      cfg->vae_layers_per_block < 1 || cfg->vae_layers_per_block > MAX_LAYERS - 1 || cfg->clip_layers < 1 ||
      cfg->clip_layers > MAX_CLIP_LAYERS || cfg->clip_patch < 1 || cfg->clip_image_size < cfg->clip_patch) {
    snprintf(err, errlen, "configuration outside vdp's limits (levels 1..%d, layers_per_block 1..%d, CLIP layers 1..%d)",
             VDP_MAX_LEVELS, MAX_LAYERS - 1, MAX_CLIP_LAYERS);
    return -1;
  }
  int L = cfg->unet_levels;
  for (int i = 0; i < L; i++) {
    if (cfg->unet_transformer_layers[i] < 1 || cfg->unet_transformer_layers[i] > MAX_TF_LAYERS) {
      snprintf(err, errlen, "transformer_layers_per_block[%d] = %d outside 1..%d", i, cfg->unet_transformer_layers[i],
               MAX_TF_LAYERS);
      return -1;
    }
    // The UNet has one context [B, D] (the CLIP token): every level with attention reads the same width.
    int attn = cfg->unet_down_attn[i] || cfg->unet_up_attn[L - 1 - i] || i == L - 1;
    if (attn && cfg->unet_cross_dim[i] != cfg->unet_cross_dim[L - 1]) {
      snprintf(err, errlen, "cross_attention_dim[%d] = %d differs from the mid block's %d (one context for all levels)",
               i, cfg->unet_cross_dim[i], cfg->unet_cross_dim[L - 1]);
      return -1;
    }
  }
  // Every GroupNorm of the graph has 32 groups (diffusers hard-codes them for these models).
  for (int i = 0; i < L; i++)
    if (cfg->unet_block_out[i] < 32 || cfg->unet_block_out[i] % 32) {
      snprintf(err, errlen, "unet block_out_channels[%d] = %d: must be a positive multiple of 32 (GroupNorm groups)", i,
               cfg->unet_block_out[i]);
      return -1;
    }
  for (int i = 0; i < cfg->vae_levels; i++)
    if (cfg->vae_block_out[i] < 32 || cfg->vae_block_out[i] % 32) {
      snprintf(err, errlen, "vae block_out_channels[%d] = %d: must be a positive multiple of 32 (GroupNorm groups)", i,
               cfg->vae_block_out[i]);
      return -1;
    }
  return 0;
}

int model_expected_tensors(const VdpConfig *cfg, VdpSpecList *out, char *err, size_t errlen) {
  if (check_limits(cfg, err, errlen)) return -1;
  Models *scratch = vdp_calloc(1, sizeof *scratch, "model description");
  void *dst[3] = {&scratch->unet, &scratch->vae, &scratch->clip};
  for (int i = 0; i < 3; i++) {
    Binder b = {.mode = BIND_SPECS, .prefix = COMPONENTS[i].prefix, .specs = out, .err = err, .errlen = errlen};
    COMPONENTS[i].fn(&b, cfg, dst[i]);
  }
  free(scratch);
  return 0;
}

// Binds every wanted component: count, one allocation per component, then load (or randomise).
static int bind_components(const VdpConfig *cfg, const VdpFile *f, const Backend *be, Models *m, int want, int mode,
                           char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg, m->be = be;
  if (check_limits(cfg, err, errlen)) return -1;
  void *dst[3] = {&m->unet, &m->vae, &m->clip};
  for (int i = 0; i < 3; i++) {
    if (!(want & (1 << i))) continue;
    Binder b = {.mode = BIND_COUNT, .prefix = COMPONENTS[i].prefix, .be = be, .err = err, .errlen = errlen};
    COMPONENTS[i].fn(&b, cfg, dst[i]);
    m->nparams[i] = b.params;
    static const char *what[3] = {"the UNet weights", "the VAE weights", "the image encoder weights"};
    m->pool[i] = be->mem_alloc(b.used * be->elem_size, what[i]);
    b = (Binder){.mode = mode, .prefix = COMPONENTS[i].prefix, .file = f, .be = be, .pool = m->pool[i], .err = err,
                 .errlen = errlen};
    COMPONENTS[i].fn(&b, cfg, dst[i]);
    if (b.failed) return -1;
  }
  return 0;
}

int models_load(const VdpFile *f, const Backend *be, Models *m, int want, char *err, size_t errlen) {
  return bind_components(&f->cfg, f, be, m, want, BIND_LOAD, err, errlen);
}

int models_random(const VdpConfig *cfg, const Backend *be, Models *m, int want, char *err, size_t errlen) {
  return bind_components(cfg, NULL, be, m, want, BIND_RANDOM, err, errlen);
}

// ---------------------------------------------------------------------------------------------------
// Memory admission: what a job will hold, from the configuration alone (nothing loaded), against what
// the process may use
// ---------------------------------------------------------------------------------------------------
static void plan_passes(const Models *m, const GenParams *p, int want);
static _Thread_local int g_measure_only;  // models_mem_plan: dry runs that only record their peak
static _Thread_local size_t g_measured;   // the largest peak they recorded

int models_mem_plan(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h,
                    MemPlan *mp, char *err, size_t errlen) {
  memset(mp, 0, sizeof *mp);
  if (check_limits(cfg, err, errlen)) return -1;
  Models *m = vdp_calloc(1, sizeof *m, "model description");
  m->cfg = *cfg, m->be = be;
  GenShape s;
  if (gen_shape(m, p, &s, err, errlen)) {
    free(m);
    return -1;
  }
  // The weights as the backend will hold them (its packed layouts: weight_elems), and the structure the
  // dry runs walk.
  void *dst[3] = {&m->unet, &m->vae, &m->clip};
  for (int i = 0; i < 3; i++) {
    if (!(want & (1 << i))) continue;
    Binder b = {.mode = BIND_COUNT, .prefix = COMPONENTS[i].prefix, .be = be, .err = err, .errlen = errlen};
    COMPONENTS[i].fn(&b, cfg, dst[i]);
    mp->weights[i] = b.used * be->elem_size;
  }
  // The arena: the largest of the job's passes, measured by the same dry runs models_plan makes.
  g_measure_only = 1, g_measured = 0;
  plan_passes(m, p, want);
  g_measure_only = 0;
  mp->arena = g_measured;
  free(m);
  // Host buffers of each phase (pipeline_encode / _step / _decode and gen_finish), in bytes.
  size_t F = (size_t)s.F, npix = (size_t)p->height * p->width, inpix = (size_t)in_w * in_h, S = (size_t)cfg->clip_image_size;
  size_t plane = (size_t)s.lat_c * s.h * s.w, keep = s.cond_n * 4 + s.latent_n * 4;  // conditioning + latent
  size_t lanczos = (size_t)3 * ((size_t)in_h * p->width > (size_t)p->height * in_w ? (size_t)in_h * p->width
                                                                                      : (size_t)p->height * in_w);
  size_t clip_branch = 4 * ((size_t)in_h * 4 * S + 16 * S * S + 3 * S * S);  // blur temporaries, pixels
  size_t vae_branch = 3 * npix + lanczos + 2 * 12 * npix + plane * 4;         // sized RGB8, vin + noise, mean
  mp->encode = keep + 3 * inpix + (clip_branch > vae_branch ? clip_branch : vae_branch);
  mp->step = keep + 4 * ((size_t)s.B * F * 3 * plane + F * plane);            // UNet input, output, guided
  mp->decode = keep + 4 * s.latent_n + 12 * F * npix + 12 * F * npix;         // z, decoded, frames
  return 0;
}

size_t mem_plan_peak(const MemPlan *mp, int arenas, int clip_kept, int device) {
  size_t w = mp->weights[COMP_UNET] + mp->weights[COMP_VAE], host = mp->encode;
  if (mp->step > host) host = mp->step;
  if (mp->decode > host) host = mp->decode;
  if (device) return w + mp->weights[COMP_CLIP] + (size_t)arenas * mp->arena;  // GPU memory: buffers are on the host
  size_t during_encode = mp->weights[COMP_CLIP] + mp->encode;
  size_t after = (clip_kept ? mp->weights[COMP_CLIP] : 0) + (mp->step > mp->decode ? mp->step : mp->decode);
  if (arenas > 1) return w + mp->weights[COMP_CLIP] + (size_t)arenas * mp->arena + host * 2;  // stages overlap phases
  return w + mp->arena + (during_encode > after ? during_encode : after);
}

static double gib(size_t b) { return b / 1073741824.0; }

// Host and (on a GPU backend) device needs of a job.
static int job_needs(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h,
                     int arenas, int clip_kept, MemPlan *mp, size_t *host, size_t *dev) {
  char err[256];
  if (models_mem_plan(cfg, be, p, want, in_w, in_h, mp, err, sizeof err)) return -1;
  int gpu = be->mem_info != NULL;
  size_t h = mp->encode > mp->step ? mp->encode : mp->step;
  if (mp->decode > h) h = mp->decode;
  *host = gpu ? h : mem_plan_peak(mp, arenas, clip_kept, 0);
  *dev = gpu ? mem_plan_peak(mp, arenas, clip_kept, 1) : 0;
  return 0;
}

static int job_fits(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h,
                    int arenas, int clip_kept, size_t host_avail, size_t dev_avail) {
  MemPlan mp;
  size_t h, d;
  return !job_needs(cfg, be, p, want, in_w, in_h, arenas, clip_kept, &mp, &h, &d) && h <= host_avail && d <= dev_avail;
}

int models_admit(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h, int arenas,
                 int clip_kept, char *err, size_t errlen) {
  MemPlan mp;
  size_t need_host = 0, need_dev = 0;
  if (models_mem_plan(cfg, be, p, want, in_w, in_h, &mp, err, errlen)) return -1;  // (its message)
  job_needs(cfg, be, p, want, in_w, in_h, arenas, clip_kept, &mp, &need_host, &need_dev);
  int dev = be->mem_info != NULL;
  VdpMemAvail host;
  vdp_mem_avail(&host);
  size_t dev_free = SIZE_MAX, dev_total = 0;
  if (dev && be->mem_info(&dev_free, &dev_total)) dev_free = SIZE_MAX;
  int host_short = need_host > host.bytes, dev_short = dev && need_dev > dev_free;
  if (!host_short && !dev_short) return 0;
  // What would fit: a smaller decode chunk first (it only sizes the decoder's pass), then the most frames
  // with a decode chunk of 1 (the peak grows with the frames: a binary search). Nothing is searched when
  // even one frame decoded alone does not fit (each dry run of a huge job costs time too).
  char fit[256] = "";
  GenParams q = *p, least = *p;
  least.num_frames = 1, least.decode_chunk = 1;
  if (least.max_guidance > 1.0f && least.min_guidance <= 1.0f) least.min_guidance = least.max_guidance;  // (gen_shape)
  int F = p->num_frames;
  if (F > 1 && job_fits(cfg, be, &least, want, in_w, in_h, arenas, clip_kept, host.bytes, dev_free)) {
    for (int k = (p->decode_chunk < F ? p->decode_chunk : F) / 2; k >= 1 && !*fit; k /= 2) {
      q.decode_chunk = k;
      if (job_fits(cfg, be, &q, want, in_w, in_h, arenas, clip_kept, host.bytes, dev_free))
        snprintf(fit, sizeof fit, "--decode-chunk-size %d would fit", k);
    }
    q.decode_chunk = 1;
    int lo = 1, hi = F - 1;  // 1 frame fits, F frames do not: the most that fit lie in [lo, hi]
    while (!*fit && lo < hi) {
      int mid = (lo + hi + 1) / 2;
      q.num_frames = mid;
      if (job_fits(cfg, be, &q, want, in_w, in_h, arenas, clip_kept, host.bytes, dev_free)) lo = mid;
      else hi = mid - 1;
    }
    if (!*fit) snprintf(fit, sizeof fit, "--num-frames %d --decode-chunk-size 1 would fit", lo);
  }
  if (!*fit) snprintf(fit, sizeof fit, "even 1 frame with --decode-chunk-size 1 does not fit: use a smaller --height/--width");
  const char *names[3] = {"UNet", "VAE", "image encoder"};
  char parts[400];
  snprintf(parts, sizeof parts, "weights %s %.2f GiB, %s %.2f GiB, %s %.2f GiB (%s), activation arena %.2f GiB%s, "
           "pipeline buffers %.2f GiB at most",
           names[0], gib(mp.weights[0]), names[1], gib(mp.weights[1]), names[2], gib(mp.weights[2]),
           clip_kept ? "held throughout" : "freed after the encode", gib(mp.arena), arenas > 1 ? " per stage" : "",
           gib(mp.decode > mp.encode ? (mp.decode > mp.step ? mp.decode : mp.step) : mp.encode > mp.step ? mp.encode : mp.step));
  if (dev_short)
    return errf(err, errlen, "not enough GPU memory: %dx%d, %d frames needs %.2f GiB on the device (%s) but %.2f GiB of %.2f "
                "GiB are free; %s. Nothing was loaded.", p->width, p->height, p->num_frames, gib(need_dev), parts,
                gib(dev_free), gib(dev_total), fit);
  return errf(err, errlen, "not enough memory: %dx%d, %d frames needs %.2f GiB (%s) but this process may use %.2f GiB (%s); "
              "%s. Nothing was loaded.", p->width, p->height, p->num_frames, gib(need_host), parts, gib(host.bytes),
              host.what, fit);
}

// The published configurations (svd-spec.md §2.1, §3.1, §4.1, §1.10), for benchmarks without a download.
int config_preset(const char *name, VdpConfig *c) {
  int xt = !strcmp(name, "svd-xt");
  if (!xt && strcmp(name, "svd")) return -1;
  memset(c, 0, sizeof *c);
  const int bo[4] = {320, 640, 1280, 1280}, da[4] = {1, 1, 1, 0}, ua[4] = {0, 1, 1, 1}, hd[4] = {5, 10, 20, 20};
  c->unet_in_channels = 8, c->unet_out_channels = 4, c->unet_levels = 4;
  for (int i = 0; i < 4; i++) {
    c->unet_block_out[i] = bo[i], c->unet_down_attn[i] = da[i], c->unet_up_attn[i] = ua[i], c->unet_heads[i] = hd[i];
    c->unet_transformer_layers[i] = 1, c->unet_cross_dim[i] = 1024;
  }
  c->unet_layers_per_block = 2, c->unet_addition_time_embed_dim = 256, c->unet_proj_class_in_dim = 768;
  c->unet_num_frames = xt ? 25 : 14, c->unet_sample_size = 96;
  const int vb[4] = {128, 256, 512, 512};
  c->vae_in_channels = 3, c->vae_out_channels = 3, c->vae_latent_channels = 4, c->vae_levels = 4;
  for (int i = 0; i < 4; i++) c->vae_block_out[i] = vb[i];
  c->vae_layers_per_block = 2, c->vae_norm_groups = 32, c->vae_scaling_factor = 0.18215f, c->vae_force_upcast = 1;
  c->clip_hidden = 1280, c->clip_intermediate = 5120, c->clip_layers = 32, c->clip_heads = 16, c->clip_patch = 14;
  c->clip_image_size = 224, c->clip_channels = 3, c->clip_projection_dim = 1024, c->clip_act = 0, c->clip_eps = 1e-5f;
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  for (int i = 0; i < 3; i++) c->clip_mean[i] = mean[i], c->clip_std[i] = std[i];
  c->sched_sigma_min = 0.002f, c->sched_sigma_max = 700.0f, c->sched_num_train_timesteps = 1000;
  c->sched_v_prediction = 1, c->sched_karras = 1, c->sched_continuous = 1, c->sched_leading = 1;
  return 0;
}

void models_free_component(Models *m, int which) {
  if (m->pool[which]) m->be->mem_free(m->pool[which]);
  m->pool[which] = NULL;
}

void models_free(Models *m) {
  for (int i = 0; i < 3; i++) models_free_component(m, i);
  memset(m, 0, sizeof *m);
}

// ---------------------------------------------------------------------------------------------------
// Execution: the backend, the calling thread's activation arena, counted operators
// ---------------------------------------------------------------------------------------------------
// The forward functions below run on the backend of the models they get (g_be, set per pass). Every
// activation comes from the calling thread's arena: first fit in one block. Each pass first runs dry
// (ops skipped, allocations simulated) to measure its peak; the block grows only when a pass of a
// larger shape comes (models_plan sizes it for a whole job before the step loop, so the loop never
// allocates). FLOPs are counted as executed (2 per multiply-add; the skipped single-key
// cross-attention Q/K work is not counted).
static _Thread_local const Backend *g_be;
static _Thread_local Arena g_arena;
static _Thread_local const Backend *g_arena_be;  // who allocated g_arena.base
static _Thread_local int g_plan_only;
static _Thread_local double g_flops;
#define PLANNING (g_arena.planning)
#define PLAN_BASE ((char *)(uintptr_t)4096)  // a fake base while planning: offsets only, never dereferenced

double model_flops_take(void) {
  double f = g_flops;
  g_flops = 0;
  return f;
}

// Tensor of n backend elements from the arena (first fit among the gaps between live blocks).
static void *t_alloc(int64_t n) {
  Arena *a = &g_arena;
  size_t size = ((size_t)n * g_be->elem_size + 255) & ~(size_t)255, off = 0;
  int i = 0;
  for (; i < a->n_used; i++) {  // blocks are sorted by offset: take the first gap that fits
    if (a->used[i].off - off >= size) break;
    off = a->used[i].off + a->used[i].size;
  }
  if (off + size > a->cap) vdp_die("activation arena: %zu bytes do not fit in %zu (internal error)", size, a->cap);
  if (a->n_used == a->cap_used) {
    a->cap_used = a->cap_used ? 2 * a->cap_used : 64;
    a->used = realloc(a->used, (size_t)a->cap_used * sizeof *a->used);
    if (!a->used) vdp_die("out of memory (arena bookkeeping)");
  }
  memmove(a->used + i + 1, a->used + i, (size_t)(a->n_used - i) * sizeof *a->used);
  a->used[i] = (ArenaBlock){off, size};
  a->n_used++;
  if (off + size > a->peak) a->peak = off + size;
  return a->base + off;
}

static void t_free(const void *p) {
  Arena *a = &g_arena;
  size_t off = (size_t)((const char *)p - a->base);
  for (int i = 0; i < a->n_used; i++)
    if (a->used[i].off == off) {
      memmove(a->used + i, a->used + i + 1, (size_t)(a->n_used - i - 1) * sizeof *a->used);
      a->n_used--;
      return;
    }
  vdp_die("activation arena: freeing a block it does not hold (internal error)");
}

static void *at(const void *p, int64_t i) { return (char *)p + i * (int64_t)g_be->elem_size; }  // element offset

typedef void (*PassFn)(const Models *m, void *args);
// The step loop's UNet pass: inputs and output in backend memory (section UNet below).
typedef struct UNetDev UNetDev;
struct UNetDev {
  const void *sample, *ctx;  // tensors [B, F, Cin, h, w], [B, D]
  const float *t, *ids;      // fp32 backend memory: t[*t_step · t_stride] (t_step NULL: t[0]), ids [B, 3]
  const int *t_step;
  int t_stride;
  int B, F, h, w;
  void *out;                 // tensor [B, F, Cout, h, w]
};
static void unet_forward_dev(const Models *m, const UNetDev *a);

// Peaks already measured on this thread: (pass, models, configuration, shape) -> bytes. The step loop
// repeats one UNet shape, so its dry run happens once, not every step.
typedef struct {
  PassFn fn;
  const Models *m;
  uint64_t cfg_hash;
  int shape[4];
  size_t need;
} PlanEntry;
static _Thread_local PlanEntry g_plans[16];
static _Thread_local int g_n_plans;

static uint64_t cfg_hash(const VdpConfig *c) {  // FNV-1a over the configuration's bytes
  const unsigned char *p = (const unsigned char *)c;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof *c; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Runs one forward pass: plans its peak with a dry run unless this shape was measured before, grows the
// arena if needed (only before the step loop when models_plan ran), then runs it for real.
static void run_pass(const Models *m, PassFn fn, void *args, const int shape[4]) {
  const Backend *prev = g_be;
  g_be = m->be;
  Arena *a = &g_arena;
  if (g_measure_only) {  // the peak alone, on a description without weights: nothing allocated or cached
    ArenaBlock *used = a->used;
    int n_used = a->n_used, cap_used = a->cap_used;
    Arena keep = *a;
    a->base = PLAN_BASE, a->cap = SIZE_MAX, a->planning = 1, a->peak = 0, a->n_used = 0, a->used = NULL, a->cap_used = 0;
    fn(m, args);
    if (a->peak > g_measured) g_measured = a->peak;
    free(a->used);
    *a = keep, a->used = used, a->n_used = n_used, a->cap_used = cap_used;
    g_be = prev;
    return;
  }
  if (g_arena_be && g_arena_be != m->be) models_thread_release(m);  // the block belongs to another backend
  uint64_t h = cfg_hash(&m->cfg);
  PlanEntry *e = NULL;
  for (int i = 0; i < g_n_plans && !e; i++)
    if (g_plans[i].fn == fn && g_plans[i].m == m && g_plans[i].cfg_hash == h && !memcmp(g_plans[i].shape, shape, sizeof g_plans[i].shape))
      e = &g_plans[i];
  size_t need;
  if (e) {
    need = e->need;
  } else {
    char *base = a->base;
    size_t cap = a->cap;
    a->base = PLAN_BASE, a->cap = SIZE_MAX, a->planning = 1, a->peak = 0, a->n_used = 0;
    fn(m, args);  // dry run: the peak of this pass
    need = a->peak;
    a->base = base, a->cap = cap, a->planning = 0, a->n_used = 0;
    e = &g_plans[g_n_plans < 16 ? g_n_plans++ : 15];
    *e = (PlanEntry){fn, m, h, {shape[0], shape[1], shape[2], shape[3]}, need};
  }
  if (need > a->cap) {
    if (a->base) g_arena_be->mem_free(a->base);
    a->base = m->be->mem_alloc(need, "activation arena");
    a->cap = need, g_arena_be = m->be;
  }
  if (!g_plan_only) {
    fn(m, args);
    if (a->n_used) vdp_die("activation arena: %d blocks still held after a pass (internal error)", a->n_used);
  }
  g_be = prev;
}

void models_thread_release(const Models *m) {
  if (g_arena.base && g_arena_be) g_arena_be->mem_free(g_arena.base);
  g_n_plans = 0;  // the models these peaks were measured for may go too
  free(g_arena.used);
  memset(&g_arena, 0, sizeof g_arena);
  g_arena_be = NULL;
}

size_t models_arena_bytes(void) { return g_arena.cap; }
char *models_arena_base(void) { return g_arena.base; }
void model_flops_add(double f) { g_flops += f; }

// GPUs pay for their first launches (module loading, kernel attributes): one UNet pass on zeros before the
// step loop keeps that out of the first step. The CPU has nothing to warm.
void models_warm_up(const Models *m, const GenParams *p) {
  GenShape s;
  char err[256];
  if (m->be == &backend_cpu || !m->pool[COMP_UNET] || gen_shape(m, p, &s, err, sizeof err)) return;
  size_t nin = (size_t)s.B * s.F * 2 * s.lat_c * s.h * s.w;
  float *x = vdp_calloc(nin, sizeof(float), "warm-up input"), *y = vdp_malloc(nin / 2 * sizeof(float), "warm-up output");
  float *ctx = vdp_calloc((size_t)s.B * s.ctx_dim, sizeof(float), "warm-up context"), ids[3 * 2] = {0};
  unet_forward(m, x, s.B, s.F, s.h, s.w, 0.0f, ctx, ids, y);
  m->be->sync();
  model_flops_take();
  free(x), free(y), free(ctx);
}

// The forward passes of a job p on the components in `want`, as dry runs (inputs and outputs never
// touched): models_plan sizes the arena with them, models_mem_plan measures them without weights.
static void plan_passes(const Models *m, const GenParams *p, int want) {
  GenShape s;
  char err[256];
  if (gen_shape(m, p, &s, err, sizeof err)) vdp_die("%s", err);
  g_plan_only = 1;
  if (want & (1 << COMP_CLIP)) clip_forward(m, NULL, NULL);
  if (want & (1 << COMP_VAE)) {
    vae_encode(m, NULL, p->height, p->width, NULL);
    vae_decode_chunk(m, NULL, p->decode_chunk < s.F ? p->decode_chunk : s.F, s.h, s.w, NULL);
  }
  if (want & (1 << COMP_UNET)) {
    unet_forward(m, NULL, s.B, s.F, s.h, s.w, 0.0f, NULL, NULL, NULL);
    unet_forward_dev(m, &(UNetDev){.B = s.B, .F = s.F, .h = s.h, .w = s.w});  // the step loop's pass
  }
  g_plan_only = 0;
}

void models_plan(const Models *m, const GenParams *p) {
  int want = 0;
  for (int i = 0; i < 3; i++) want |= m->pool[i] ? 1 << i : 0;
  plan_passes(m, p, want);
}

// Counted, plan-aware operators: the graph calls these, never the backend directly.
static void linear(void *y, const void *x, const Linear *l, int M, int act, const void *res) {
  if (PLANNING) return;
  g_flops += 2.0 * M * l->in * l->out;
  g_be->linear(y, x, l->w, l->b, M, l->in, act == ACT_GEGLU ? l->out / 2 : l->out, act, res);
}
static void conv2d(void *y, const void *x, const Conv *c, int n, int h, int w, int stride, int pt, int pl, int pb,
                   int pr, const void *chan_add, const void *res) {
  if (PLANNING) return;
  double ho = (h + pt + pb - c->k) / stride + 1, wo = (w + pl + pr - c->k) / stride + 1;
  g_flops += 2.0 * n * c->cout * c->cin * c->k * c->k * ho * wo;
  g_be->conv2d(y, x, c->w, c->b, n, c->cin, h, w, c->cout, c->k, c->k, stride, pt, pl, pb, pr, chan_add, res);
}
static void conv_temporal(void *y, const void *x, const Conv *c, int nb, int nf, int64_t hw, const void *chan_add,
                          const void *res) {
  if (PLANNING) return;
  g_flops += 2.0 * nb * nf * c->cout * c->cin * 3.0 * hw;
  g_be->conv_temporal(y, x, c->w, c->b, nb, nf, c->cin, (int)hw, c->cout, chan_add, res);
}
static void attention(void *o, const void *q, const void *k, const void *v, int nseq, int L, int heads, int C) {
  if (PLANNING) return;
  int hd = C / heads;
  g_flops += 4.0 * nseq * heads * (double)L * L * hd;
  int64_t seq = (int64_t)L * C;
  g_be->attention(o, seq, C, q, seq, C, k, seq, C, v, seq, C, nseq, L, L, heads, hd, 1.0f / sqrtf((float)hd));
}
static void groupnorm(void *y, const void *x, const Norm *n, int nb, int nf, int64_t hw, int silu) {
  if (!PLANNING) g_be->groupnorm(y, x, n->g, n->b, nb, nf, n->c, (int)hw, 32, n->eps, silu);
}
static void layernorm(void *y, const void *x, const Norm *n, int64_t M) {
  if (!PLANNING) g_be->layernorm(y, x, n->g, n->b, (int)M, n->c, n->eps);
}
static void act(void *y, const void *x, int64_t n, int kind) {
  if (!PLANNING) g_be->act(y, x, n, kind);
}
static void add(void *y, const void *a, const void *b, int64_t n) {
  if (!PLANNING) g_be->add(y, a, b, n);
}
static void add_rows(void *y, const void *v, int groups, int64_t group, int C) {
  if (!PLANNING) g_be->add_rows(y, v, groups, group, C);
}
static void blend(void *y, const void *a, const void *b, float alpha, int64_t n) {
  if (!PLANNING) g_be->blend(y, a, b, alpha, n);
}
static void transpose_0213(void *y, const void *x, int A, int B, int C, int64_t D) {
  if (!PLANNING) g_be->transpose_0213(y, x, A, B, C, D);
}
static void upsample_nearest(void *y, const void *x, int n, int c, int h, int w, int ho, int wo) {
  if (!PLANNING) g_be->upsample_nearest(y, x, n, c, h, w, ho, wo);
}
static void timestep_embedding(void *y, const float *t, const int *step, int stride, int n, int dim) {
  if (!PLANNING) g_be->timestep_embedding(y, t, step, stride, n, dim);
}
static void copy(void *y, const void *x, int64_t n) {
  if (!PLANNING) g_be->copy(y, x, n);
}
static void *upload(const float *host, int64_t n) {
  void *t = t_alloc(n);
  if (!PLANNING) g_be->to_device(t, host, n);
  return t;
}
static void download(float *host, const void *t, int64_t n) {
  if (!PLANNING) g_be->to_host(host, t, n);
}
// n fp32 values in the arena (timestep values, added time ids: read as fp32 by timestep_embedding)
static float *upload_f32(const float *host, int64_t n) {
  int64_t es = (int64_t)g_be->elem_size;
  float *t = t_alloc((n * (int64_t)sizeof(float) + es - 1) / es);
  if (!PLANNING) g_be->upload_bytes(t, host, (size_t)n * sizeof(float));
  return t;
}

// ---------------------------------------------------------------------------------------------------
// Building blocks: forward
// ---------------------------------------------------------------------------------------------------
static float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// y [n, cout, ho, wo] = conv(x [n, cin, h, w]) with "same" padding k/2 and the given stride
static void *conv_fwd(const Conv *c, const void *x, int n, int h, int w, int stride, int *ho, int *wo) {
  int p = c->k / 2;
  *ho = (h + 2 * p - c->k) / stride + 1;
  *wo = (w + 2 * p - c->k) / stride + 1;
  void *y = t_alloc((int64_t)n * c->cout * *ho * *wo);
  conv2d(y, x, c, n, h, w, stride, p, p, p, p, NULL, NULL);
  return y;
}

// Spatial resnet on x [N, cin, H, W]; temb_silu [N, temb] (already through SiLU) or NULL.
static void *res2d_fwd(const ResBlock *r, const void *x, int N, int H, int W, const void *temb_silu) {
  int cin = r->conv1.cin, cout = r->conv1.cout;
  int64_t hw = (int64_t)H * W;
  void *t = NULL, *h = t_alloc(N * cin * hw), *h1 = t_alloc(N * cout * hw), *sc = NULL;
  if (temb_silu) {  // time_emb_proj(SiLU(emb)) [N, cout], added per (image, channel) after conv1
    t = t_alloc((int64_t)N * cout);
    linear(t, temb_silu, &r->temb, N, ACT_NONE, NULL);
  }
  groupnorm(h, x, &r->norm1, N, 1, hw, 1);
  conv2d(h1, h, &r->conv1, N, H, W, 1, 1, 1, 1, 1, t, NULL);
  t_free(h);
  if (t) t_free(t);
  groupnorm(h1, h1, &r->norm2, N, 1, hw, 1);
  if (cin != cout) {  // 1x1 shortcut, then conv2 with the residual fused
    sc = t_alloc(N * cout * hw);
    conv2d(sc, x, &r->shortcut, N, H, W, 1, 0, 0, 0, 0, NULL, NULL);
  }
  void *h2 = t_alloc(N * cout * hw);
  conv2d(h2, h1, &r->conv2, N, H, W, 1, 1, 1, 1, 1, NULL, sc ? sc : x);
  t_free(h1);
  if (sc) t_free(sc);
  return h2;
}

// Temporal resnet on x [(nb nf), c, hw]: GroupNorms pool each video's nf frames; out = x + branch.
static void *res_t_fwd(const ResBlock *r, const void *x, int nb, int nf, int64_t hw, const void *temb_silu) {
  int c = r->conv1.cout, N = nb * nf;
  int64_t n = (int64_t)N * c * hw;
  void *t = NULL, *u = t_alloc(n), *u1 = t_alloc(n);
  if (temb_silu) {  // [(b f), c], added at [b, c, f, 1, 1]
    t = t_alloc((int64_t)N * c);
    linear(t, temb_silu, &r->temb, N, ACT_NONE, NULL);
  }
  groupnorm(u, x, &r->norm1, nb, nf, hw, 1);
  conv_temporal(u1, u, &r->conv1, nb, nf, hw, t, NULL);
  if (t) t_free(t);
  groupnorm(u1, u1, &r->norm2, nb, nf, hw, 1);
  conv_temporal(u, u1, &r->conv2, nb, nf, hw, NULL, x);
  t_free(u1);
  return u;
}

// SpatioTemporalResBlock: x [(nb nf), cin, H, W] -> [(nb nf), cout, H, W]
static void *strb_fwd(const STResBlock *s, const void *x, int nb, int nf, int H, int W, const void *temb_silu) {
  int64_t hw = (int64_t)H * W;
  void *S = res2d_fwd(&s->spatial, x, nb * nf, H, W, temb_silu);
  void *T = res_t_fwd(&s->temporal, S, nb, nf, hw, temb_silu);
  float a = sigmoidf_(s->mix);
  if (s->switch_mix) a = 1.0f - a;  // VAE decoder: sigmoid(m) weights the temporal output
  blend(T, S, T, a, (int64_t)nb * nf * s->cout * hw);  // a·S + (1-a)·T
  t_free(S);
  return T;
}

// y = to_out(self-attention(in)) + res over sequences in [nseq, L, C] (C = heads·hd); res may be NULL
// or y (the residual stream), in may not be y.
static void self_attn(const Attn *a, void *y, const void *in, const void *res, int nseq, int L) {
  int C = a->q.out;
  int64_t M = (int64_t)nseq * L;
  void *q = t_alloc(M * C), *k = t_alloc(M * C), *v = t_alloc(M * C), *o = t_alloc(M * C);
  linear(q, in, &a->q, (int)M, ACT_NONE, NULL);
  linear(k, in, &a->k, (int)M, ACT_NONE, NULL);
  linear(v, in, &a->v, (int)M, ACT_NONE, NULL);
  attention(o, q, k, v, nseq, L, a->heads, C);
  linear(y, o, &a->o, (int)M, ACT_NONE, res);
  t_free(q), t_free(k), t_free(v), t_free(o);
}

// y[r] += to_out(to_v(ctx[r / rows_per_ctx])): cross-attention to ONE context token. Softmax over a
// single key is exactly 1, so to_q and to_k cannot change the result.
static void cross_attn_residual(const Attn *a, void *y, const void *ctx, int nctx, int64_t rows_per_ctx) {
  if (PLANNING) return;
  g_flops += 2.0 * nctx * ((double)a->v.in * a->v.out + (double)a->o.in * a->o.out);
  g_be->cross_attn_1key(y, y, ctx, a->v.w, a->o.w, a->o.b, nctx, a->v.in, a->q.out, rows_per_ctx);
}

// y = x + GEGLU feed-forward(LN(x)), in row chunks so the 8C-wide hidden stays small. y may be x.
static void ff_residual(const FeedForward *f, const Norm *ln, void *y, const void *x, int64_t M, int C) {
  int64_t CH = g_be->ff_chunk_rows < M ? g_be->ff_chunk_rows : M;
  void *n = t_alloc(CH * C), *g = t_alloc(CH * 4 * C);
  for (int64_t r0 = 0; r0 < M; r0 += CH) {
    int rows = (int)(M - r0 < CH ? M - r0 : CH);
    layernorm(n, at(x, r0 * C), ln, rows);
    linear(g, n, &f->proj, rows, ACT_GEGLU, NULL);                  // [rows, 4C] = value · gelu(gate)
    linear(at(y, r0 * C), g, &f->out, rows, ACT_NONE, at(x, r0 * C));
  }
  t_free(n), t_free(g);
}

// TransformerSpatioTemporalModel. x [(B F), C, H, W]; ctx [B, kv] (one CLIP token per video).
static void *tstm_fwd(const TSTM *t, const void *x, int B, int F, int H, int W, const void *ctx) {
  int C = t->c, N = B * F, HW = H * W;
  int64_t M = (int64_t)N * HW, n = M * C;
  void *y = t_alloc(n), *tok = t_alloc(n), *ln = t_alloc(n), *z = t_alloc(n);
  groupnorm(y, x, &t->norm, N, 1, HW, 0);
  transpose_0213(tok, y, N, C, HW, 1);  // (b f) c hw -> (b f) hw c
  linear(y, tok, &t->proj_in, (int)M, ACT_NONE, NULL);  // y: [(b f), hw, c]

  // frame-position embedding: time_pos_embed(sinusoid(f)), f = 0..F-1, the same for every video
  // (t NULL: the embedding's own row index is its value, so no host array travels)
  void *pe0 = t_alloc((int64_t)F * C), *pe1 = t_alloc((int64_t)F * 4 * C), *pe = t_alloc((int64_t)F * C);
  timestep_embedding(pe0, NULL, NULL, 0, F, C);
  linear(pe1, pe0, &t->pos1, F, ACT_SILU, NULL);
  linear(pe, pe1, &t->pos2, F, ACT_NONE, NULL);
  float a = sigmoidf_(t->mix);

  for (int l = 0; l < t->layers; l++) {
    const SpatialBlock *s = &t->spatial[l];
    // spatial block: sequences are frames, L = HW
    layernorm(ln, y, &s->norm1, M);
    self_attn(&s->attn1, y, ln, y, N, HW);
    cross_attn_residual(&s->attn2, y, ctx, B, (int64_t)F * HW);  // frame rows share their video's token
    ff_residual(&s->ff, &s->norm3, y, y, M, C);

    // temporal block on z = y + pe[f], sequences over frames
    const TemporalBlock *tb = &t->temporal[l];
    copy(z, y, n);
    for (int b = 0; b < B; b++) add_rows(at(z, (int64_t)b * F * HW * C), pe, F, HW, C);  // b f hw c += pe[f]
    transpose_0213(tok, z, B, F, HW, C);  // b f hw c -> b hw f c  = (b hw) f c
    ff_residual(&tb->ff_in, &tb->norm_in, tok, tok, M, C);
    layernorm(ln, tok, &tb->norm1, M);
    self_attn(&tb->attn1, tok, ln, tok, B * HW, F);
    cross_attn_residual(&tb->attn2, tok, ctx, B, (int64_t)HW * F);  // context = frame 0's token of each video
    ff_residual(&tb->ff, &tb->norm3, tok, tok, M, C);
    transpose_0213(z, tok, B, HW, F, C);  // b hw f c -> b f hw c
    blend(y, y, z, a, n);                 // a·spatial + (1-a)·temporal
  }
  linear(tok, y, &t->proj_out, (int)M, ACT_NONE, NULL);
  void *out = t_alloc(n);
  transpose_0213(out, tok, N, HW, C, 1);  // (b f) hw c -> (b f) c hw
  add(out, out, x, n);
  t_free(y), t_free(tok), t_free(ln), t_free(z), t_free(pe0), t_free(pe1), t_free(pe);
  return out;
}

// VAE mid-block attention: GroupNorm, one head over all H·W tokens, residual. x [N, C, H, W]
static void *vae_attn_fwd(const VaeAttn *va, const void *x, int N, int H, int W) {
  int C = va->norm.c, HW = H * W;
  int64_t n = (int64_t)N * C * HW;
  void *y = t_alloc(n), *tok = t_alloc(n);
  groupnorm(y, x, &va->norm, N, 1, HW, 0);
  transpose_0213(tok, y, N, C, HW, 1);  // n c hw -> n hw c
  self_attn(&va->attn, y, tok, NULL, N, HW);
  transpose_0213(tok, y, N, HW, C, 1);  // n hw c -> n c hw
  add(tok, tok, x, n);
  t_free(y);
  return tok;
}

// ---------------------------------------------------------------------------------------------------
// CLIP image encoder: pixels [3, S, S] (normalised) -> image_embeds [projection_dim]
// ---------------------------------------------------------------------------------------------------
typedef struct { const float *pixels; float *embeds; } ClipArgs;
static void clip_pass(const Models *m, void *args) {
  ClipArgs *ca = args;
  const Clip *c = &m->clip;
  const VdpConfig *cfg = &m->cfg;
  int D = c->hidden, G = c->grid, T = c->tokens, P = cfg->clip_patch, I = cfg->clip_intermediate, S = cfg->clip_image_size;
  void *pix = upload(ca->pixels, (int64_t)cfg->clip_channels * S * S);
  void *p = t_alloc((int64_t)D * G * G);  // [D, G, G]
  Conv patch = {.w = c->patch_w, .b = NULL, .cin = cfg->clip_channels, .cout = D, .k = P};
  conv2d(p, pix, &patch, 1, S, S, P, 0, 0, 0, 0, NULL, NULL);
  void *x = t_alloc((int64_t)T * D), *n = t_alloc((int64_t)T * D), *h = t_alloc((int64_t)T * I);
  copy(x, c->class_emb, D);                   // token 0 = CLS
  transpose_0213(at(x, D), p, 1, D, G * G, 1);  // d (gy gx) -> (gy gx) d
  add(x, x, c->pos_emb, (int64_t)T * D);
  layernorm(x, x, &c->pre_ln, T);
  for (int i = 0; i < cfg->clip_layers; i++) {
    const ClipLayer *l = &c->layer[i];
    layernorm(n, x, &l->ln1, T);
    Attn a = {.q = l->q, .k = l->k, .v = l->v, .o = l->o, .heads = cfg->clip_heads};
    self_attn(&a, x, n, x, 1, T);
    layernorm(n, x, &l->ln2, T);
    linear(h, n, &l->fc1, T, cfg->clip_act == 1 ? ACT_QUICK_GELU : ACT_GELU, NULL);
    linear(x, h, &l->fc2, T, ACT_NONE, x);
  }
  layernorm(n, x, &c->post_ln, 1);  // CLS token only
  void *e = t_alloc(cfg->clip_projection_dim);
  linear(e, n, &c->proj, 1, ACT_NONE, NULL);
  download(ca->embeds, e, cfg->clip_projection_dim);
  t_free(pix), t_free(p), t_free(x), t_free(n), t_free(h), t_free(e);
}

void clip_forward(const Models *m, const float *pixels, float *embeds) {
  run_pass(m, clip_pass, &(ClipArgs){pixels, embeds}, (const int[4]){0});
}

// ---------------------------------------------------------------------------------------------------
// VAE
// ---------------------------------------------------------------------------------------------------
// Encoder: image [3, H, W] in [-1,1] -> mean [latent, H/s, W/s] (the distribution's mode)
typedef struct { const float *img; int H, W; float *mean; } EncArgs;
static void encode_pass(const Models *m, void *args) {
  EncArgs *ea = args;
  const Vae *v = &m->vae;
  int ho, wo, h = ea->H, w = ea->W, C = v->enc_in.cout;
  void *in = upload(ea->img, (int64_t)m->cfg.vae_in_channels * h * w);
  void *x = conv_fwd(&v->enc_in, in, 1, h, w, 1, &ho, &wo), *y;
  t_free(in);
  for (int i = 0; i < v->levels; i++) {
    for (int j = 0; j < v->lpb; j++) {
      y = res2d_fwd(&v->enc_res[i][j], x, 1, h, w, NULL);
      t_free(x), x = y;
    }
    C = v->enc_res[i][v->lpb - 1].conv2.cout;
    if (i < v->levels - 1) {  // downsample: zero pad right/bottom by one, 3x3 stride 2
      ho = (h + 1 - 3) / 2 + 1, wo = (w + 1 - 3) / 2 + 1;
      y = t_alloc((int64_t)C * ho * wo);
      conv2d(y, x, &v->enc_down[i], 1, h, w, 2, 0, 0, 1, 1, NULL, NULL);
      t_free(x), x = y, h = ho, w = wo;
    }
  }
  y = res2d_fwd(&v->enc_mid_res[0], x, 1, h, w, NULL);
  t_free(x), x = vae_attn_fwd(&v->enc_mid_attn, y, 1, h, w);
  t_free(y), y = res2d_fwd(&v->enc_mid_res[1], x, 1, h, w, NULL);
  groupnorm(y, y, &v->enc_norm_out, 1, 1, (int64_t)h * w, 1);
  t_free(x), x = conv_fwd(&v->enc_out, y, 1, h, w, 1, &ho, &wo);
  t_free(y), y = conv_fwd(&v->quant, x, 1, h, w, 1, &ho, &wo);  // moments [2·latent, h, w]
  download(ea->mean, y, (int64_t)m->cfg.vae_latent_channels * h * w);  // mean = the first half
  t_free(x), t_free(y);
}

void vae_encode(const Models *m, const float *img, int H, int W, float *mean) {
  run_pass(m, encode_pass, &(EncArgs){img, H, W, mean}, (const int[4]){H, W});
}

// Temporal decoder for one chunk of n frames: z [n, latent, h, w] -> frames [n, 3, H, W]
typedef struct { const float *z; int n, h, w; float *out; } DecArgs;
static void decode_pass(const Models *m, void *args) {
  DecArgs *da = args;
  const Vae *v = &m->vae;
  int ho, wo, n = da->n, h = da->h, w = da->w;
  void *zin = upload(da->z, (int64_t)n * m->cfg.vae_latent_channels * h * w);
  void *x = conv_fwd(&v->dec_in, zin, n, h, w, 1, &ho, &wo), *y;
  t_free(zin);
  y = strb_fwd(&v->dec_mid_res[0], x, 1, n, h, w, NULL);
  t_free(x), x = y;
  if (v->lpb >= 2) {  // diffusers pairs (attention, resnet i) for i >= 1 with ONE attention: zip stops after it
    y = vae_attn_fwd(&v->dec_mid_attn, x, n, h, w);
    t_free(x), x = strb_fwd(&v->dec_mid_res[1], y, 1, n, h, w, NULL);
    t_free(y);
  }
  for (int i = 0; i < v->levels; i++) {
    for (int j = 0; j < v->lpb + 1; j++) {
      y = strb_fwd(&v->dec_res[i][j], x, 1, n, h, w, NULL);
      t_free(x), x = y;
    }
    if (i < v->levels - 1) {  // nearest x2, then 3x3 conv
      int C = v->dec_up[i].cin;
      y = t_alloc((int64_t)n * C * 4 * h * w);
      upsample_nearest(y, x, n, C, h, w, 2 * h, 2 * w);
      t_free(x), h *= 2, w *= 2;
      x = conv_fwd(&v->dec_up[i], y, n, h, w, 1, &ho, &wo);
      t_free(y);
    }
  }
  int oc = v->dec_out.cout;
  groupnorm(x, x, &v->dec_norm_out, n, 1, (int64_t)h * w, 1);
  y = conv_fwd(&v->dec_out, x, n, h, w, 1, &ho, &wo);  // [n, 3, H, W]
  conv_temporal(x, y, &v->time_conv_out, 1, n, (int64_t)h * w, NULL, NULL);  // x is large enough
  download(da->out, x, (int64_t)n * oc * h * w);
  t_free(x), t_free(y);
}

void vae_decode_chunk(const Models *m, const float *z, int n, int h, int w, float *out) {
  run_pass(m, decode_pass, &(DecArgs){z, n, h, w, out}, (const int[4]){n, h, w});
}

// ---------------------------------------------------------------------------------------------------
// UNet: sample [B, F, Cin, h, w], scalar timestep t, ctx [B, D] (one CLIP token per video),
// added time ids [B, 3] -> out [B, F, Cout, h, w]. unet_body works on backend memory only: the step loop
// calls it directly (unet_forward_dev: nothing crosses to the host, so a CUDA graph can capture it);
// unet_forward uploads host inputs into the arena first and downloads the output.
// ---------------------------------------------------------------------------------------------------

static void unet_body(const Models *m, const UNetDev *ua) {
  const UNet *u = &m->unet;
  const VdpConfig *cfg = &m->cfg;
  int B = ua->B, F = ua->F, N = B * F, b0 = cfg->unet_block_out[0], T = u->temb_dim;
  int ad = cfg->unet_addition_time_embed_dim, H = ua->h, W = ua->w, C = b0, ho, wo;

  // time embedding + added-time-id embedding, one per video; every time_emb_proj takes SiLU(emb) per frame row
  void *ts = t_alloc(b0), *t1 = t_alloc(T), *temb = t_alloc(T);
  timestep_embedding(ts, ua->t, ua->t_step, ua->t_stride, 1, b0);
  linear(t1, ts, &u->time1, 1, ACT_SILU, NULL);
  linear(temb, t1, &u->time2, 1, ACT_NONE, NULL);
  void *idsin = t_alloc((int64_t)3 * B * ad), *a1 = t_alloc((int64_t)B * T), *aug = t_alloc((int64_t)B * T);
  timestep_embedding(idsin, ua->ids, NULL, 0, 3 * B, ad);  // [3B, ad] viewed [B, 3·ad]: fps | motion | aug
  linear(a1, idsin, &u->add1, B, ACT_SILU, NULL);
  linear(aug, a1, &u->add2, B, ACT_NONE, NULL);
  void *emb = t_alloc((int64_t)N * T);  // b -> (b f): repeat each video's embedding over its frames
  for (int b = 0; b < B; b++)
    for (int f = 0; f < F; f++) copy(at(emb, ((int64_t)b * F + f) * T), at(aug, (int64_t)b * T), T);
  add_rows(emb, temb, 1, N, T);
  act(emb, emb, (int64_t)N * T, ACT_SILU);
  t_free(ts), t_free(t1), t_free(temb), t_free(idsin), t_free(a1), t_free(aug);
  // ctx [B, D]: D is the cross-attention width of the levels with attention; the mid block (last level)
  // always has it, while level 0 may have none and an unrelated cross_attention_dim[0] entry.
  const void *ctx = ua->ctx;

  // skips: every down-path output, consumed last-in-first-out by the up path
  void *skip[1 + VDP_MAX_LEVELS * MAX_LAYERS];
  int skip_c[1 + VDP_MAX_LEVELS * MAX_LAYERS], skip_h[1 + VDP_MAX_LEVELS * MAX_LAYERS], skip_w[1 + VDP_MAX_LEVELS * MAX_LAYERS];
  int ns = 0;
  void *x = conv_fwd(&u->conv_in, ua->sample, N, H, W, 1, &ho, &wo), *y;  // (b f) c h w
#define PUSH_SKIP(t) (skip[ns] = (t), skip_c[ns] = C, skip_h[ns] = H, skip_w[ns] = W, ns++)
  PUSH_SKIP(x);
  for (int i = 0; i < u->levels; i++) {
    const UNetLevel *d = &u->down[i];
    for (int j = 0; j < u->lpb; j++) {
      y = strb_fwd(&d->res[j], x, B, F, H, W, emb);
      if (x != skip[ns - 1]) t_free(x);
      x = y, C = d->res[j].cout;
      if (d->attn) y = tstm_fwd(&d->tf[j], x, B, F, H, W, ctx), t_free(x), x = y;
      PUSH_SKIP(x);
    }
    if (d->has_sample) {
      x = conv_fwd(&d->sample, x, N, H, W, 2, &ho, &wo), H = ho, W = wo;
      PUSH_SKIP(x);
    }
  }
  y = strb_fwd(&u->mid_res[0], x, B, F, H, W, emb);
  x = tstm_fwd(&u->mid_tf, y, B, F, H, W, ctx);
  t_free(y), y = strb_fwd(&u->mid_res[1], x, B, F, H, W, emb);
  t_free(x), x = y;
  for (int i = 0; i < u->levels; i++) {
    const UNetLevel *up = &u->up[i];
    for (int j = 0; j < u->lpb + 1; j++) {
      ns--;  // cat([x, skip], channels) per frame row: (b f) (c1 + c2) h w
      int c2 = skip_c[ns];
      int64_t hw = (int64_t)H * W;
      void *cat = t_alloc((int64_t)N * (C + c2) * hw);
      if (!PLANNING) g_be->concat_rows(cat, x, C * hw, skip[ns], c2 * hw, N);
      t_free(skip[ns]), t_free(x);
      x = strb_fwd(&up->res[j], cat, B, F, H, W, emb);
      t_free(cat), C = up->res[j].cout;
      if (up->attn) y = tstm_fwd(&up->tf[j], x, B, F, H, W, ctx), t_free(x), x = y;
    }
    if (up->has_sample) {  // nearest to the next skip's size (= 2x unless h, w are odd somewhere), then 3x3
      int Ht = skip_h[ns - 1], Wt = skip_w[ns - 1];
      y = t_alloc((int64_t)N * C * Ht * Wt);
      upsample_nearest(y, x, N, C, H, W, Ht, Wt);
      t_free(x), H = Ht, W = Wt;
      x = conv_fwd(&up->sample, y, N, H, W, 1, &ho, &wo);
      t_free(y);
    }
  }
#undef PUSH_SKIP
  groupnorm(x, x, &u->norm_out, N, 1, (int64_t)H * W, 1);
  // conv_out straight into the caller's output tensor (conv_fwd would take an arena block)
  int p = u->conv_out.k / 2;
  conv2d(ua->out, x, &u->conv_out, N, H, W, 1, p, p, p, p, NULL, NULL);
  t_free(x), t_free(emb);
}

static void unet_pass_dev(const Models *m, void *args) { unet_body(m, args); }

typedef struct {
  const float *sample, *ctx, *ids;
  int B, F, h, w;
  float t;
  float *out;
} UNetArgs;

static void unet_pass(const Models *m, void *args) {
  UNetArgs *ua = args;
  const VdpConfig *cfg = &m->cfg;
  int N = ua->B * ua->F;
  int64_t nout = (int64_t)N * m->unet.conv_out.cout * ua->h * ua->w;
  void *ctx = upload(ua->ctx, (int64_t)ua->B * cfg->unet_cross_dim[m->unet.levels - 1]);
  void *in = upload(ua->sample, (int64_t)N * cfg->unet_in_channels * ua->h * ua->w);
  float *t = upload_f32(&ua->t, 1), *ids = upload_f32(ua->ids, (int64_t)3 * ua->B);
  void *out = t_alloc(nout);
  unet_body(m, &(UNetDev){in, ctx, t, ids, NULL, 0, ua->B, ua->F, ua->h, ua->w, out});
  download(ua->out, out, nout);
  t_free(out), t_free(ids), t_free(t), t_free(in), t_free(ctx);
}

void unet_forward(const Models *m, const float *sample, int B, int F, int h, int w, float t, const float *ctx,
                  const float *ids, float *out) {
  run_pass(m, unet_pass, &(UNetArgs){sample, ctx, ids, B, F, h, w, t, out}, (const int[4]){B, F, h, w});
}

// The step loop's UNet: every input and the output in backend memory, the timestep read on the device
// (row *t_step of a table with t_stride floats per row).
static void unet_forward_dev(const Models *m, const UNetDev *a) {
  run_pass(m, unet_pass_dev, (void *)a, (const int[4]){a->B, a->F, a->h, a->w});
}

// ---------------------------------------------------------------------------------------------------
// Schedulers and samplers: EulerDiscrete with Karras sigmas, continuous timesteps, v-prediction (SVD);
// AnimateLCM-SVD-xt's consistency sampler (few steps)
// ---------------------------------------------------------------------------------------------------
// The shortest decimal that reads back as the same float (what a JSON config held), as a double.
static double float_as_decimal(float f) {
  char buf[32];
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
    if ((float)strtod(buf, NULL) == f) break;
  }
  return strtod(buf, NULL);
}

// sigmas [n+1] (last = 0), timesteps [n], returns init_noise_sigma
float scheduler_karras(const VdpConfig *cfg, int n, float *sigmas, float *timesteps) {
  // diffusers computes in float64 from the config's Python floats (0.002, not the float32 nearest to
  // it), so recover the decimal the config was written with before widening.
  const double rho = 7.0;
  double lo = pow(float_as_decimal(cfg->sched_sigma_min), 1.0 / rho);
  double hi = pow(float_as_decimal(cfg->sched_sigma_max), 1.0 / rho);
  double step = n > 1 ? 1.0 / (double)(n - 1) : 0.0;
  for (int i = 0; i < n; i++) {
    double ramp = i == n - 1 && n > 1 ? 1.0 : (double)i * step;  // np.linspace(0, 1, n): i*step, exact end
    sigmas[i] = (float)pow(hi + ramp * (lo - hi), rho);
  }
  sigmas[n] = 0.0f;
  for (int i = 0; i < n; i++) timesteps[i] = 0.25f * logf(sigmas[i]);
  float smax = 0.0f;
  for (int i = 0; i <= n; i++) smax = sigmas[i] > smax ? sigmas[i] : smax;
  return cfg->sched_leading ? sqrtf(smax * smax + 1.0f) : smax;
}

const char *sampler_name(int sampler) { return sampler == VDP_SAMPLER_ANIMATELCM ? "animatelcm" : "euler"; }

int sampler_from_name(const char *name) {
  if (!strcmp(name, "euler")) return VDP_SAMPLER_EULER;
  if (!strcmp(name, "animatelcm")) return VDP_SAMPLER_ANIMATELCM;
  return -1;
}

// AnimateLCM-SVD-xt's schedule (../shared/animatelcm.md), as its demos configure the sampler whatever the
// base model's scheduler says: 40 Karras points (ρ = 7) from σ_max = 700 down to σ_min = 0.002, sampled at
// ramp_i = i·(40 // n) / 39 from the top, so the last σ is not σ_min; σ_n = 0. All in float64 like numpy,
// then σ stored as float32; the UNet timestep is 0.25·ln σ from the float64 σ (the UNet's time projection
// casts it to float32).
static float animatelcm_table(int n, StepScalars *tab) {
  const double rho = 7.0, lo = pow(0.002, 1.0 / rho), hi = pow(700.0, 1.0 / rho);
  const int r = ANIMATELCM_POINTS / n;
  for (int i = 0; i < n; i++) {
    double ramp = (double)(i * r) / (double)(ANIMATELCM_POINTS - 1);
    double sigma = pow(hi + ramp * (lo - hi), rho);
    tab[i].sigma = (float)sigma;
    tab[i].t = (float)(0.25 * log(sigma + 1e-44));
  }
  for (int i = 0; i < n; i++) {
    float s = tab[i].sigma, next = i + 1 < n ? tab[i + 1].sigma : 0.0f;
    tab[i].sigma_next = next < 0.0f ? 0.0f : next > 700.0f ? 700.0f : next;  // the sampler's clamp (a no-op here)
    tab[i].c_in = sqrtf(s * s + 1.0f);           // σ_data = 1
    tab[i].c_skip = 1.0f / (s * s + 1.0f);
    tab[i].c_out = -s / sqrtf(s * s + 1.0f);
  }
  return (float)sqrt(700.0 * 700.0 + 1.0);       // init_noise_sigma = sqrt(σ_max² + 1)
}

float sampler_table(const VdpConfig *cfg, int sampler, int n, StepScalars *tab) {
  if (sampler == VDP_SAMPLER_ANIMATELCM) return animatelcm_table(n, tab);
  float sig[1001], ts[1000];  // steps <= 1000 (gen_shape)
  float init = scheduler_karras(cfg, n, sig, ts);
  for (int i = 0; i < n; i++) {
    float s = sig[i];
    tab[i] = (StepScalars){.sigma = s, .sigma_next = sig[i + 1], .t = ts[i], .c_in = sqrtf(s * s + 1.0f),
                           .c_skip = 1.0f / (s * s + 1.0f), .c_out = -s / sqrtf(s * s + 1.0f)};
  }
  return init;
}

// ---------------------------------------------------------------------------------------------------
// Pipeline
// ---------------------------------------------------------------------------------------------------
static float *hbuf(int64_t n) { return vdp_malloc((size_t)n * sizeof(float), "pipeline buffer"); }

void dump_tensor(const GenParams *p, const char *name, const float *x, int ndim, const int64_t *shape) {
  if (!p->dump_dir) return;
  char path[1024], err[256];
  snprintf(path, sizeof path, "%s/%s.npy", p->dump_dir, name);
  int existed = access(path, F_OK) == 0;
  if (npy_save_f32(path, x, shape, ndim, err, sizeof err)) vdp_die("--dump: %s", err);
  if (!existed) out_created(path, 0);  // a failed run removes what it created
}

int gen_shape(const Models *m, const GenParams *p, GenShape *s, char *err, size_t errlen) {
  const VdpConfig *c = &m->cfg;
  int scale = 1 << (c->vae_levels - 1);  // vae_scale_factor = 2^(len(block_out_channels) - 1)
  if (p->height <= 0 || p->width <= 0 || p->height % 8 || p->width % 8 || p->height % scale || p->width % scale) {
    snprintf(err, errlen, "--height %d --width %d: both must be positive multiples of 8 and of the VAE's scale factor %d",
             p->height, p->width, scale);
    return -1;
  }
  if (p->num_frames < 1 || p->num_frames > 1024) {
    snprintf(err, errlen, "--num-frames %d: must be between 1 and 1024", p->num_frames);
    return -1;
  }
  if (p->steps < 1 || p->steps > 1000) {
    snprintf(err, errlen, "--num-inference-steps %d: must be between 1 and 1000", p->steps);
    return -1;
  }
  if (p->sampler < 0 || p->sampler >= VDP_N_SAMPLERS) {
    snprintf(err, errlen, "sampler %d: unknown", p->sampler);
    return -1;
  }
  if (p->sampler == VDP_SAMPLER_ANIMATELCM && p->steps > ANIMATELCM_POINTS) {
    snprintf(err, errlen, "--num-inference-steps %d: the animatelcm sampler's schedule has %d points, so at most %d "
             "steps (its model card: 2 to 8)", p->steps, ANIMATELCM_POINTS, ANIMATELCM_POINTS);
    return -1;
  }
  if (p->decode_chunk < 1) {
    snprintf(err, errlen, "--decode-chunk-size %d: must be at least 1", p->decode_chunk);
    return -1;
  }
  if (c->unet_in_channels != 2 * c->vae_latent_channels || c->unet_out_channels != c->vae_latent_channels) {
    snprintf(err, errlen, "model: UNet in/out channels %d/%d do not fit VAE latent channels %d (expected %d/%d)",
             c->unet_in_channels, c->unet_out_channels, c->vae_latent_channels, 2 * c->vae_latent_channels,
             c->vae_latent_channels);
    return -1;
  }
  if (p->min_guidance > 1.0f && p->max_guidance <= 1.0f) {  // diffusers would encode without and denoise with CFG
    snprintf(err, errlen, "--min-guidance-scale %g > 1 with --max-guidance-scale %g <= 1: guidance would be on for some "
             "frames but the unconditional inputs were never made (diffusers fails here too)", p->min_guidance,
             p->max_guidance);
    return -1;
  }
  if (p->num_frames == 1 && p->min_guidance <= 1.0f && p->max_guidance > 1.0f) {  // linspace(min, max, 1) = [min]
    snprintf(err, errlen, "--num-frames 1: the one frame gets --min-guidance-scale %g only (a linspace of one value), so "
             "guidance would be off although --max-guidance-scale %g > 1 made the unconditional inputs (diffusers fails "
             "here); use --min-guidance-scale > 1 for guidance, or --max-guidance-scale 1 for none", p->min_guidance,
             p->max_guidance);
    return -1;
  }
  s->F = p->num_frames, s->h = p->height / scale, s->w = p->width / scale;
  s->B = p->max_guidance > 1.0f ? 2 : 1;
  s->lat_c = c->vae_latent_channels, s->ctx_dim = c->clip_projection_dim;
  s->latent_n = (size_t)s->F * s->lat_c * s->h * s->w;
  s->n_z = p->sampler == VDP_SAMPLER_ANIMATELCM && p->steps > 1 ? p->steps : 0;
  s->cond_n = (size_t)s->B * s->ctx_dim + (size_t)s->B * s->lat_c * s->h * s->w + (size_t)s->B * 3 + (size_t)s->F +
              (size_t)s->n_z * s->latent_n;
  return 0;
}

// Views into the conditioning blob.
typedef struct { float *ctx, *img_lat, *ids, *guidance, *z; } CondView;
static CondView cond_view(const GenShape *s, float *cond) {
  CondView v;
  v.ctx = cond;                                              // [B, D]
  v.img_lat = v.ctx + (size_t)s->B * s->ctx_dim;            // [B, lat_c, h, w]
  v.ids = v.img_lat + (size_t)s->B * s->lat_c * s->h * s->w;  // [B, 3]
  v.guidance = v.ids + (size_t)s->B * 3;                    // [F]
  v.z = s->n_z ? v.guidance + s->F : NULL;                  // [n_z, F, lat_c, h, w]
  return v;
}

// torch.linspace(start, end, n) in float32: the first half counts up from start, the second half
// down from end.
static void linspace_f32(float *y, float start, float end, int n) {
  if (n == 1) {
    y[0] = start;
    return;
  }
  float step = (end - start) / (float)(n - 1);
  for (int i = 0; i < n; i++) y[i] = i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
}

static void set_step_counter(PipeState *st, int i);

int pipeline_encode(const Models *m, const GenParams *p, const VdpImage *img, uint64_t seed, PipeState *st,
                    float *cond, float *latent, char *err, size_t errlen) {
  const VdpConfig *c = &m->cfg;
  GenShape s;
  if (gen_shape(m, p, &s, err, errlen)) return -1;
  CondView cv = cond_view(&s, cond);
  int H = p->height, W = p->width, S = c->clip_image_size;

  // CLIP branch: original-size image in [-1,1] -> antialiased resize -> [0,1] -> mean/std. The [-1,1]
  // values are made row by row inside the resize (no float copy of the whole image: 12 bytes a pixel).
  float *pix = hbuf((int64_t)3 * S * S);
  resize_antialias_rgb8(pix, img->rgb, img->h, img->w, S, S);
  for (int ch = 0; ch < 3; ch++)
    for (int64_t i = 0; i < (int64_t)S * S; i++) {
      float v = (pix[ch * S * S + i] + 1.0f) / 2.0f;
      pix[ch * S * S + i] = (v - c->clip_mean[ch]) / c->clip_std[ch];
    }
  dump_tensor(p, "clip_pixel_values", pix, 4, (int64_t[]){1, 3, S, S});
  float *emb = hbuf(s.ctx_dim);
  clip_forward(m, pix, emb);
  free(pix);
  dump_tensor(p, "image_embeds", emb, 3, (int64_t[]){1, 1, s.ctx_dim});

  // VAE branch: Lanczos to (width, height) like PIL, [-1,1], plus augmentation noise (RNG draw #1)
  VdpImage sized = *img;
  if (img->w != W || img->h != H) image_resize_lanczos(img, &sized, W, H);
  int64_t npix = (int64_t)H * W;
  float *vin = hbuf(3 * npix), *noise = hbuf(3 * npix);
  for (int ch = 0; ch < 3; ch++)
    for (int64_t i = 0; i < npix; i++) vin[ch * npix + i] = 2.0f * ((float)sized.rgb[i * 3 + ch] / 255.0f) - 1.0f;
  if (sized.rgb != img->rgb) image_free(&sized);
  dump_tensor(p, "vae_input", vin, 4, (int64_t[]){1, 3, H, W});
  TorchGenerator *gen = vdp_malloc(sizeof *gen, "generator");
  torch_manual_seed(gen, seed);
  torch_randn_f32(gen, noise, 3 * npix);
  dump_tensor(p, "noise_aug", noise, 4, (int64_t[]){1, 3, H, W});
  for (int64_t i = 0; i < 3 * npix; i++) vin[i] = vin[i] + p->noise_aug * noise[i];
  int64_t lat_img = (int64_t)s.lat_c * s.h * s.w;
  float *mean = hbuf(lat_img);
  vae_encode(m, vin, H, W, mean);
  free(vin), free(noise);
  dump_tensor(p, "image_latents", mean, 4, (int64_t[]){1, s.lat_c, s.h, s.w});

  // conditioning: uncond row (zeros) first when guidance is on
  int cb = s.B - 1;  // row of the conditional video
  memset(cond, 0, s.cond_n * sizeof(float));
  memcpy(cv.ctx + (size_t)cb * s.ctx_dim, emb, (size_t)s.ctx_dim * sizeof(float));
  memcpy(cv.img_lat + (size_t)cb * lat_img, mean, (size_t)lat_img * sizeof(float));
  for (int b = 0; b < s.B; b++) {
    cv.ids[b * 3 + 0] = (float)(p->fps - 1);  // the UNet was trained on fps - 1
    cv.ids[b * 3 + 1] = (float)p->motion_bucket_id;
    cv.ids[b * 3 + 2] = p->noise_aug;
  }
  linspace_f32(cv.guidance, p->min_guidance, p->max_guidance, s.F);
  free(emb), free(mean);

  // initial latent: RNG draw #2, scaled by init_noise_sigma
  StepScalars *tab = vdp_malloc((size_t)p->steps * sizeof *tab, "step table");
  float init_sigma = sampler_table(c, p->sampler, p->steps, tab);
  float *x0 = hbuf((int64_t)s.latent_n);
  torch_randn_f32(gen, x0, (int64_t)s.latent_n);
  dump_tensor(p, "noise_latents", x0, 5, (int64_t[]){1, s.F, s.lat_c, s.h, s.w});
  for (size_t i = 0; i < s.latent_n; i++) x0[i] *= init_sigma;
  // animatelcm: every step's z, draws #3 ... in step order (the sampler draws one per step), into the blob
  for (int k = 0; k < s.n_z; k++) {
    float *zk = cv.z + (size_t)k * s.latent_n;
    torch_randn_f32(gen, zk, (int64_t)s.latent_n);
    char name[64];
    snprintf(name, sizeof name, "step_noise_%d", k);
    dump_tensor(p, name, zk, 5, (int64_t[]){1, s.F, s.lat_c, s.h, s.w});
  }
  free(gen);
  float *sig = hbuf(p->steps + 1), *ts = hbuf(p->steps);
  for (int i = 0; i < p->steps; i++) sig[i] = tab[i].sigma, ts[i] = tab[i].t;
  sig[p->steps] = 0.0f;
  dump_tensor(p, "sigmas", sig, 1, (int64_t[]){p->steps + 1});
  dump_tensor(p, "timesteps", ts, 1, (int64_t[]){p->steps});
  free(sig), free(ts), free(tab);
  // to the backend: the latent and the conditioning (the z included) stay there until the decode
  pipeline_latent_from_host(m, latent, x0, s.latent_n);
  free(x0);
  pipeline_load_cond(st, cond);
  set_step_counter(st, 0);  // the step counter starts here, not inside the loop
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// The step loop's state (model.h): backend memory allocated once per stage, tables written once.
// ---------------------------------------------------------------------------------------------------
#define MAX_STEP_GRAPHS 4  // graphs by latent address (a ring stage alternates between two buffers)
struct PipeState {
  const Models *m;
  const Backend *be;
  GenShape s;
  float *latent;       // [F, lat_c, h, w] fp32: the state's own latent
  void *ctx;           // [B, D] image embeddings (uncond row zero)
  void *img_lat;       // [B, lat_c, h, w] image latents
  float *ids;          // [B, 3] fp32 added time ids
  float *sched;        // [steps, SCH_COLS] fp32
  float *guidance;     // [F] fp32
  int *step;           // the device-side step counter
  float *z;            // animatelcm: [n_z, F, lat_c, h, w] fp32, every step's noise (NULL otherwise)
  int host_step;       // the value *step holds once the queued work is done (-1: unknown)
  StepTables tab;
  void *xin, *v;       // UNet input [B, F, 2·lat_c, h, w] and output [B, F, lat_c, h, w]
  int graphs;          // capture / replay (backends with graph_begin only)
  struct { const float *latent; void *graph; char *arena; double flops; } g[MAX_STEP_GRAPHS];
  int n_graphs;
};

static void *be_alloc_bytes(const Backend *be, size_t bytes, const char *what) { return be->mem_alloc(bytes, what); }

PipeState *pipeline_state_new(const Models *m, const GenParams *p, int graphs) {
  GenShape s;
  char err[256];
  if (gen_shape(m, p, &s, err, sizeof err)) vdp_die("%s", err);
  const Backend *be = m->be;
  PipeState *st = vdp_calloc(1, sizeof *st, "pipeline state");
  st->m = m, st->be = be, st->s = s, st->host_step = -1;
  st->graphs = graphs && be->graph_begin;
  int64_t plane = (int64_t)s.lat_c * s.h * s.w;
  st->latent = be_alloc_bytes(be, s.latent_n * sizeof(float), "latent");
  st->ctx = be_alloc_bytes(be, (size_t)s.B * s.ctx_dim * be->elem_size, "image embeddings");
  st->img_lat = be_alloc_bytes(be, (size_t)s.B * plane * be->elem_size, "image latents");
  st->ids = be_alloc_bytes(be, (size_t)s.B * 3 * sizeof(float), "added time ids");
  st->sched = be_alloc_bytes(be, (size_t)p->steps * SCH_COLS * sizeof(float), "step table");
  st->guidance = be_alloc_bytes(be, (size_t)s.F * sizeof(float), "guidance table");
  st->step = be_alloc_bytes(be, sizeof(int), "step counter");
  st->z = s.n_z ? be_alloc_bytes(be, (size_t)s.n_z * s.latent_n * sizeof(float), "step noises") : NULL;
  st->xin = be_alloc_bytes(be, (size_t)s.B * s.F * 2 * plane * be->elem_size, "UNet input");
  st->v = be_alloc_bytes(be, (size_t)s.B * s.F * plane * be->elem_size, "UNet output");

  // The tables, once per job: every per-step scalar is computed here on the host (sampler_table, in the
  // float expressions of the host loop they replaced), and read on the device at the step counter's row.
  StepScalars sc[1000];  // steps <= 1000 (gen_shape)
  sampler_table(&m->cfg, p->sampler, p->steps, sc);
  float *tab = vdp_calloc((size_t)p->steps * SCH_COLS, sizeof(float), "step table");
  for (int i = 0; i < p->steps; i++) {
    float sigma = sc[i].sigma, next = sc[i].sigma_next, *r = tab + (size_t)i * SCH_COLS;
    r[SCH_SIGMA] = sigma, r[SCH_SIGMA_NEXT] = next, r[SCH_T] = sc[i].t;
    r[SCH_C_IN] = sc[i].c_in;
    r[SCH_C_OUT] = sc[i].c_out;
    r[SCH_C_SKIP_DIV] = sigma * sigma + 1.0f;  // euler: x / (σ² + 1)
    r[SCH_DT] = next - sigma;
    r[SCH_C_SKIP] = sc[i].c_skip;              // animatelcm: c_skip · x
  }
  float *g = hbuf(s.F);
  linspace_f32(g, p->min_guidance, p->max_guidance, s.F);
  be->upload_bytes(st->sched, tab, (size_t)p->steps * SCH_COLS * sizeof(float));
  be->upload_bytes(st->guidance, g, (size_t)s.F * sizeof(float));
  free(tab), free(g);
  st->tab = (StepTables){p->sampler, p->steps, st->sched, st->guidance, st->z, st->step};
  return st;
}

void pipeline_state_free(PipeState *st) {
  if (!st) return;
  const Backend *be = st->be;
  be->sync();
  for (int k = 0; k < st->n_graphs; k++) be->graph_free(st->g[k].graph);
  void *bufs[] = {st->latent, st->ctx, st->img_lat, st->ids, st->sched, st->guidance, st->step, st->xin, st->v, st->z};
  for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
    if (bufs[k]) be->mem_free(bufs[k]);
  free(st);
}

float *pipeline_latent(PipeState *st) { return st->latent; }

void pipeline_latent_to_host(const Models *m, float *host, const float *latent, size_t n) {
  m->be->download_bytes(host, latent, n * sizeof(float));
}
void pipeline_latent_from_host(const Models *m, float *latent, const float *host, size_t n) {
  m->be->upload_bytes(latent, host, n * sizeof(float));
}

void pipeline_load_cond(PipeState *st, const float *cond) {
  const Backend *be = st->be;
  const GenShape *s = &st->s;
  CondView cv = cond_view(s, (float *)cond);
  be->to_device(st->ctx, cv.ctx, (int64_t)s->B * s->ctx_dim);
  be->to_device(st->img_lat, cv.img_lat, (int64_t)s->B * s->lat_c * s->h * s->w);
  be->upload_bytes(st->ids, cv.ids, (size_t)s->B * 3 * sizeof(float));
  if (s->n_z) be->upload_bytes(st->z, cv.z, (size_t)s->n_z * s->latent_n * sizeof(float));  // every step's z, once
}

static void set_step_counter(PipeState *st, int i) {
  st->be->upload_bytes(st->step, &i, sizeof i);
  st->host_step = i;
}

// One step on the backend: the UNet input, the UNet, guidance + the sampler's update (which advances the
// step counter). Nothing here reads or passes a per-step value on the host.
static void step_body(const Models *m, PipeState *st, float *latent) {
  const Backend *be = st->be;
  const GenShape *s = &st->s;
  int64_t plane = (int64_t)s->lat_c * s->h * s->w;
  be->step_input(st->xin, latent, st->img_lat, &st->tab, s->B, s->F, plane);
  unet_forward_dev(m, &(UNetDev){st->xin, st->ctx, st->sched + SCH_T, st->ids, st->step, SCH_COLS, s->B, s->F, s->h,
                                 s->w, st->v});
  be->step_update(latent, st->v, &st->tab, s->B, s->F, plane);
}

void pipeline_step(const Models *m, const GenParams *p, int i, PipeState *st, float *latent) {
  const Backend *be = st->be;
  if (i < 0 || i >= st->tab.steps) vdp_die("pipeline_step: step %d of %d (internal error)", i, st->tab.steps);
  // The counter is set from the host only when a block of steps begins elsewhere than where the last one
  // ended (a ring stage receiving a video; a new video): never between two consecutive steps.
  if (st->host_step != i) set_step_counter(st, i);
  if (be->step_mark) be->step_mark(i, 0);
  if (!st->graphs) {
    step_body(m, st, latent);
  } else {
    // one graph per latent buffer, captured at its first step; valid while the arena stays where it was
    int k = 0;
    char *arena = models_arena_base();
    while (k < st->n_graphs && (st->g[k].latent != latent || st->g[k].arena != arena)) k++;
    if (k == st->n_graphs) {
      if (k == MAX_STEP_GRAPHS) vdp_die("pipeline_step: more than %d latent buffers (internal error)", MAX_STEP_GRAPHS);
      model_flops_take();
      be->graph_begin();
      step_body(m, st, latent);
      st->g[k].graph = be->graph_end();
      st->g[k].latent = latent, st->g[k].arena = arena, st->g[k].flops = model_flops_take();
      st->n_graphs++;
    }
    be->graph_launch(st->g[k].graph);
    model_flops_add(st->g[k].flops);  // a replay runs the captured pass's FLOPs
  }
  if (be->step_mark) be->step_mark(i, 1);
  st->host_step = i + 1;
}

int pipeline_step_half(const Models *m, const GenParams *p, int i, PipeState *st, float *latent, int half,
                       PipeExchange exchange, void *xctx, char *err, size_t errlen) {
  const Backend *be = st->be;
  const GenShape *s = &st->s;
  if (s->B != 2 || half < 0 || half > 1 || i < 0 || i >= st->tab.steps) {
    snprintf(err, errlen, "pipeline_step_half: half %d, step %d of %d, batch %d (internal error)", half, i, st->tab.steps, s->B);
    return -1;
  }
  if (st->host_step != i) set_step_counter(st, i);
  if (be->step_mark) be->step_mark(i, 0);
  const int64_t plane = (int64_t)s->lat_c * s->h * s->w, vhalf = (int64_t)s->F * plane;  // one batch element's v
  const size_t es = be->elem_size;
  // Both halves' UNet inputs (cheap), then the UNet on this half alone: batch element `half` of xin, ctx, ids.
  // The UNet is batch-invariant (test/batch_invariance.c), so v_half is exactly that half of the batch-2 pass.
  be->step_input(st->xin, latent, st->img_lat, &st->tab, 2, s->F, plane);
  char *v = st->v;
  unet_forward_dev(m, &(UNetDev){(char *)st->xin + (size_t)(half * 2 * vhalf) * es, (char *)st->ctx + (size_t)half * s->ctx_dim * es,
                                 st->sched + SCH_T, st->ids + half * 3, st->step, SCH_COLS, 1, s->F, s->h, s->w,
                                 v + (size_t)(half * vhalf) * es});
  // The other GPU sends its half (same stream: after the UNet; before the update)
  if (exchange(xctx, v + (size_t)(half * vhalf) * es, v + (size_t)((1 - half) * vhalf) * es, (size_t)vhalf * es, err, errlen))
    return -1;
  be->step_update(latent, st->v, &st->tab, 2, s->F, plane);  // the same guidance + update on both GPUs
  if (be->step_mark) be->step_mark(i, 1);
  st->host_step = i + 1;
  return 0;
}

void pipeline_decode(const Models *m, const GenParams *p, const float *latent, float *frames) {
  GenShape s;
  char err[256];
  if (gen_shape(m, p, &s, err, sizeof err)) vdp_die("%s", err);
  int H = p->height, W = p->width, oc = m->cfg.vae_out_channels;
  int64_t plane = (int64_t)s.lat_c * s.h * s.w, npix = (int64_t)H * W;
  float inv = (float)(1.0 / float_as_decimal(m->cfg.vae_scaling_factor));  // 1 / 0.18215 as diffusers has it
  float *z = hbuf((int64_t)s.latent_n), *dec = hbuf((int64_t)s.F * oc * npix);
  pipeline_latent_to_host(m, z, latent, s.latent_n);  // the step loop is over: the latent leaves the device
  for (size_t i = 0; i < s.latent_n; i++) z[i] = inv * z[i];
  dump_tensor(p, "vae_decode_in", z, 4, (int64_t[]){s.F, s.lat_c, s.h, s.w});
  int chunks = (s.F + p->decode_chunk - 1) / p->decode_chunk;
  double t0 = vdp_now();
  for (int f0 = 0; f0 < s.F; f0 += p->decode_chunk) {  // each chunk is decoded as its own short video
    int n = s.F - f0 < p->decode_chunk ? s.F - f0 : p->decode_chunk;
    vae_decode_chunk(m, z + f0 * plane, n, s.h, s.w, dec + (int64_t)f0 * oc * npix);
    if (!p->quiet && chunks > 1)  // decoding is long on the CPU at full size: say where it is
      fprintf(stderr, "decode: frames %d-%d (chunk %d/%d)  elapsed %.1fs\n", f0, f0 + n - 1, f0 / p->decode_chunk + 1,
              chunks, vdp_now() - t0);
  }
  dump_tensor(p, "vae_decode_out", dec, 4, (int64_t[]){s.F, oc, H, W});
  for (int f = 0; f < s.F; f++)  // f c h w -> f h w c, x·0.5 + 0.5 clamped to [0,1]
    for (int ch = 0; ch < 3; ch++)
      for (int64_t i = 0; i < npix; i++) {
        float v = dec[((int64_t)f * oc + ch) * npix + i] * 0.5f + 0.5f;
        frames[((int64_t)f * npix + i) * 3 + ch] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
      }
  free(z), free(dec);
}
