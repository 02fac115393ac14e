// model.h — the model graph's data structures (weights bound by name from the .vdpw) and the pipeline
// API used by the CLI and by the stage ring. See model.c.
#ifndef VDP_MODEL_H
#define VDP_MODEL_H

#include "vdp.h"

#define NAME_LEN 160
#define MAX_LAYERS 5      // resnets per block: layers_per_block + 1 (up blocks)
#define MAX_TF_LAYERS 4   // transformer_layers_per_block
#define MAX_CLIP_LAYERS 64

// Parameters: pointers into the component's single fp32 allocation.
typedef struct { float *w, *b; int in, out; } Linear;            // w [out, in]
typedef struct { float *w, *b; int cin, cout, k; } Conv;         // w [cout, cin, k, k] or [cout, cin, 3] (temporal)
typedef struct { float *g, *b; int c; float eps; } Norm;         // GroupNorm(32) or LayerNorm
typedef struct { Linear q, k, v, o; int heads; } Attn;
typedef struct { Linear proj, out; } FeedForward;                // GEGLU: proj C -> 8C, out 4C -> C
typedef struct { Norm norm1, norm2; Conv conv1, conv2, shortcut; Linear temb; } ResBlock;
typedef struct {
  ResBlock spatial, temporal;
  float mix;        // learned AlphaBlender logit
  int switch_mix;   // VAE decoder: sigmoid(mix) weights the temporal branch instead of the spatial one
  int cin, cout;
} STResBlock;
typedef struct { Norm norm1, norm2, norm3; Attn attn1, attn2; FeedForward ff; } SpatialBlock;
typedef struct { Norm norm_in, norm1, norm2, norm3; FeedForward ff_in, ff; Attn attn1, attn2; } TemporalBlock;
typedef struct {  // TransformerSpatioTemporalModel
  Norm norm;
  Linear proj_in, proj_out, pos1, pos2;
  SpatialBlock spatial[MAX_TF_LAYERS];
  TemporalBlock temporal[MAX_TF_LAYERS];
  float mix;
  int c, heads, layers;
} TSTM;
typedef struct {
  STResBlock res[MAX_LAYERS];
  TSTM tf[MAX_LAYERS];
  Conv sample;        // downsampler (stride 2) or upsampler (after nearest x2)
  int attn, has_sample;
} UNetLevel;
typedef struct {
  Conv conv_in, conv_out;
  Linear time1, time2, add1, add2;
  UNetLevel down[VDP_MAX_LEVELS], up[VDP_MAX_LEVELS];
  STResBlock mid_res[2];
  TSTM mid_tf;
  Norm norm_out;
  int levels, lpb, temb_dim;
} UNet;
typedef struct { Norm norm; Attn attn; } VaeAttn;
typedef struct {
  Conv enc_in, enc_down[VDP_MAX_LEVELS], enc_out, quant;
  ResBlock enc_res[VDP_MAX_LEVELS][MAX_LAYERS], enc_mid_res[2];
  VaeAttn enc_mid_attn, dec_mid_attn;
  Norm enc_norm_out, dec_norm_out;
  Conv dec_in, dec_up[VDP_MAX_LEVELS], dec_out, time_conv_out;
  STResBlock dec_mid_res[MAX_LAYERS], dec_res[VDP_MAX_LEVELS][MAX_LAYERS];
  int levels, lpb;
} Vae;
typedef struct { Norm ln1, ln2; Linear q, k, v, o, fc1, fc2; } ClipLayer;
typedef struct {
  float *patch_w, *class_emb, *pos_emb;
  Norm pre_ln, post_ln;
  ClipLayer layer[MAX_CLIP_LAYERS];
  Linear proj;
  int hidden, grid, tokens;
} Clip;

enum { COMP_UNET = 0, COMP_VAE = 1, COMP_CLIP = 2 };
#define WANT_ALL 7
typedef struct {
  VdpConfig cfg;
  UNet unet;
  Vae vae;
  Clip clip;
  float *pool[3];     // one allocation per component (fp32 weights)
  size_t nparams[3];
} Models;

int models_load(const VdpFile *f, Models *m, int want, char *err, size_t errlen);  // want: bits 1<<COMP_*
int models_random(const VdpConfig *cfg, Models *m, int want, char *err, size_t errlen);  // benchmark weights
int config_preset(const char *name, VdpConfig *cfg);  // "svd" or "svd-xt"; -1 for an unknown name
void models_free_component(Models *m, int which);
void models_free(Models *m);

// Forward passes (fp32, CPU)
void clip_forward(const Models *m, const float *pixels, float *embeds);                       // [3,S,S] -> [D]
void vae_encode(const Models *m, const float *img, int H, int W, float *mean);                // [3,H,W] -> [4,h,w]
void vae_decode_chunk(const Models *m, const float *z, int n, int h, int w, float *out);      // [n,4,h,w] -> [n,3,H,W]
void unet_forward(const Models *m, const float *sample, int B, int F, int h, int w, float t, const float *ctx,
                  const float *ids, float *out);                                              // [B,F,8,h,w] -> [B,F,4,h,w]
double model_flops_take(void);  // FLOPs executed by this thread's forward passes since the last call
float scheduler_karras(const VdpConfig *cfg, int n, float *sigmas, float *timesteps);         // -> init_noise_sigma

// ---------------------------------------------------------------------------------------------------
// Pipeline (diffusers StableVideoDiffusionPipeline, fp32)
// ---------------------------------------------------------------------------------------------------
typedef struct {
  int height, width, num_frames, steps, fps, motion_bucket_id, decode_chunk;
  float noise_aug, min_guidance, max_guidance;
  uint64_t seed;
  const char *dump_dir;  // NULL: no dump
  int quiet;             // no per-step progress
} GenParams;

// Derived sizes of one video's job.
typedef struct {
  int F, h, w, B;        // B = 2 with classifier-free guidance (uncond first), else 1
  int lat_c, ctx_dim;
  size_t latent_n;       // floats of the latent [F, lat_c, h, w]
  size_t cond_n;         // floats of the conditioning blob (see pipeline_encode)
} GenShape;
int gen_shape(const Models *m, const GenParams *p, GenShape *s, char *err, size_t errlen);

// Stage 0: CLIP + VAE encode + noise. Writes the conditioning blob cond [cond_n] =
//   ctx [B, D] | image latents [B, lat_c, h, w] | added time ids [B, 3] | guidance [F]
// and the initial latent [F, lat_c, h, w] (noise × init_noise_sigma).
int pipeline_encode(const Models *m, const GenParams *p, const VdpImage *img, uint64_t seed, float *cond,
                    float *latent, char *err, size_t errlen);
// One Euler step i (global index) on latent in place.
void pipeline_step(const Models *m, const GenParams *p, int i, const float *cond, float *latent);
// VAE decode in chunks + postprocess: frames [F, H, W, 3] in [0, 1].
void pipeline_decode(const Models *m, const GenParams *p, const float *latent, float *frames);
// Saves a named tensor into p->dump_dir when set (NAME.npy).
void dump_tensor(const GenParams *p, const char *name, const float *x, int ndim, const int64_t *shape);

#endif
