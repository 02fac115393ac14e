// model.h — the model graph's data structures (weights bound by name from the .vdpw) and the pipeline
// API used by the CLI and by the stage ring. See model.c.
#ifndef VDP_MODEL_H
#define VDP_MODEL_H

#include "vdp.h"

#define NAME_LEN 160
#define MAX_LAYERS 5      // resnets per block: layers_per_block + 1 (up blocks)
#define MAX_TF_LAYERS 4   // transformer_layers_per_block
#define MAX_CLIP_LAYERS 64

// ---------------------------------------------------------------------------------------------------
// Backends. The model graph below is written once and runs on either backend: tensors are opaque
// pointers to the backend's element type (fp32 host memory on the CPU, fp16 device memory on CUDA);
// the graph never reads them on the host. Ops take vdp.h's semantics, with optional fused epilogues
// (act, residual, per-channel add) that the CPU backend applies as separate steps.
// ---------------------------------------------------------------------------------------------------
enum { ACT_NONE = 0, ACT_SILU = 1, ACT_GELU = 2, ACT_QUICK_GELU = 3, ACT_GEGLU = 4 };  // = VDPC_ACT_*
enum { WEIGHT_PLAIN = 0, WEIGHT_CONV = 1, WEIGHT_LINEAR = 2 };  // a backend may store conv / Linear weights re-laid-out

struct StepTables;  // below
typedef struct Backend {
  const char *name;
  size_t elem_size;        // bytes per tensor element
  int64_t ff_chunk_rows;   // rows of a feed-forward processed at once (bounds its 8C-wide hidden)
  // memory: weights (one allocation per component) and the activation arena's single block
  int64_t (*weight_elems)(int kind, int ndim, const int64_t *shape);
  void (*weight_store)(void *dst, const float *src, int kind, int ndim, const int64_t *shape);
  void *(*mem_alloc)(size_t bytes, const char *what);  // dies with a message naming `what`
  void (*mem_free)(void *p);
  void (*to_device)(void *dst, const float *src, int64_t n);  // host fp32 -> tensor
  void (*to_host)(float *dst, const void *src, int64_t n);    // tensor -> host fp32
  void (*copy)(void *dst, const void *src, int64_t n);
  void (*sync)(void);
  size_t (*mem_peak)(void);  // peak bytes held through mem_alloc (NULL: not tracked)
  // free and total bytes of the calling thread's device, 0 on success (NULL: host memory, see vdp_mem_avail)
  int (*mem_info)(size_t *free_bytes, size_t *total_bytes);
  // operators (elements, not bytes, everywhere)
  void (*linear)(void *y, const void *x, const void *w, const void *b, int M, int K, int N, int act, const void *res);
  void (*conv2d)(void *y, const void *x, const void *w, const void *b, int n, int cin, int h, int wd, int cout,
                 int kh, int kw, int stride, int pt, int pl, int pb, int pr, const void *chan_add, const void *res);
  void (*conv_temporal)(void *y, const void *x, const void *w, const void *b, int nb, int nf, int cin, int hw,
                        int cout, const void *chan_add, const void *res);
  void (*groupnorm)(void *y, const void *x, const void *g, const void *b, int nb, int nf, int c, int hw, int groups,
                    float eps, int silu);
  void (*layernorm)(void *y, const void *x, const void *g, const void *b, int M, int C, float eps);
  void (*attention)(void *o, int64_t o_seq, int64_t o_row, const void *q, int64_t q_seq, int64_t q_row,
                    const void *k, int64_t k_seq, int64_t k_row, const void *v, int64_t v_seq, int64_t v_row,
                    int nseq, int lq, int lk, int heads, int hd, float scale);
  // y[r] = res[r] + to_out(to_v(ctx[r / rows_per_ctx]))  (attention to ONE key: its softmax is exactly 1)
  void (*cross_attn_1key)(void *y, const void *res, const void *ctx, const void *wv, const void *wo, const void *bo,
                          int nctx, int ctx_dim, int C, int64_t rows_per_ctx);
  void (*act)(void *y, const void *x, int64_t n, int act);
  void (*add)(void *y, const void *a, const void *b, int64_t n);
  void (*add_bcast)(void *y, const void *v, int rows, int C, int64_t inner);          // y[r,c,:] += v[r,c]
  void (*add_rows)(void *y, const void *v, int groups, int64_t group, int C);          // y[g,i,:] += v[g,:]
  void (*concat_rows)(void *y, const void *a, int64_t na, const void *b, int64_t nb, int rows);  // y[r] = a[r] | b[r]
  void (*blend)(void *y, const void *a, const void *b, float alpha, int64_t n);       // alpha·a + (1-alpha)·b
  // y [n, dim] = [cos(t_r·f_k) | sin(t_r·f_k)] with t_r read in backend memory (fp32): t[row·stride + r],
  // row = *step when step is given (a device-side counter: the step tables below), else 0; t NULL: t_r = r
  void (*timestep_embedding)(void *y, const float *t, const int *step, int stride, int n, int dim);
  void (*upsample_nearest)(void *y, const void *x, int n, int c, int h, int w, int ho, int wo);
  void (*transpose_0213)(void *y, const void *x, int A, int B, int C, int64_t D);
  // raw bytes between host and backend memory (fp32 tables, counters); synchronous like to_device
  void (*upload_bytes)(void *dst, const void *src, size_t bytes);
  void (*download_bytes)(void *dst, const void *src, size_t bytes);
  // The denoising step (pipeline_step), indexed on the device by the tables' step counter (StepTables):
  // x [F, C, hw] is the fp32 latent in backend memory, img [B, C, hw] the image latents (tensor).
  //   step_input:  xin [B, F, 2C, hw] = x[f] / c_in | img[b]   (per frame and CFG half)
  //   step_update: v [B, F, C, hw] -> guided v (B = 2: vu + g[f]·(vc - vu)) -> x updated in place by the
  //                sampler of the tables; then the step counter advances by one.
  void (*step_input)(void *xin, const float *x, const void *img, const struct StepTables *t, int B, int F, int64_t chw);
  void (*step_update)(float *x, const void *v, const struct StepTables *t, int B, int F, int64_t chw);
  // CUDA graphs (NULL on the CPU): the ops this thread queues between graph_begin and graph_end are
  // recorded, not run, into a graph that graph_launch replays (same kernels, same arguments, same addresses).
  void (*graph_begin)(void);
  void *(*graph_end)(void);
  void (*graph_launch)(void *graph);
  void (*graph_free)(void *graph);
  void (*step_mark)(int step, int end);  // profiling marker around one step (the SIMT emulator's counters); may be NULL
} Backend;

// The step tables: written once per job before the step loop (backend memory), read by the step ops at
// row *step. A sampler is a kind of table plus its update (step_update switches on `sampler`, a
// VDP_SAMPLER_* of vdp.h):
//   euler       x0 = v·c_out + x / c_skip_div;  d = (x − x0) / σ;  x += d · dt   (EulerDiscrete, v-prediction)
//   animatelcm  denoised = c_out·v + c_skip·x;  x = denoised + z[step]·σ_next   (z NULL: x = denoised)
// columns of one step's row of `sched` (fp32)
enum { SCH_SIGMA, SCH_SIGMA_NEXT, SCH_T, SCH_C_IN, SCH_C_OUT, SCH_C_SKIP_DIV, SCH_DT, SCH_C_SKIP, SCH_COLS = 8 };
typedef struct StepTables {
  int sampler;          // VDP_SAMPLER_*
  int steps;            // rows of sched
  const float *sched;   // [steps, SCH_COLS] per-step scalars
  const float *guidance;  // [F] per-frame guidance scale (read when B = 2)
  const float *z;       // animatelcm with steps > 1: [steps, F, C, hw] fp32, every step's noise; else NULL
  int *step;            // the device-side step counter: the row the next step reads
} StepTables;

extern const Backend backend_cpu;           // ops.c
const Backend *backend_cuda(void);          // kernels.cu; NULL when built without CUDA or no GPU

// The activation arena: one block, carved first-fit. Its size is planned by a dry run of the same
// forward pass (ops skipped, allocations simulated), so the real run never allocates.
typedef struct { size_t off, size; } ArenaBlock;
typedef struct {
  char *base;              // NULL while planning
  size_t cap, peak;        // cap = SIZE_MAX while planning
  ArenaBlock *used;        // live blocks sorted by offset
  int n_used, cap_used;
  int planning;
} Arena;

// Parameters: backend tensors inside the component's single allocation (plus host copies of scalars).
typedef struct { void *w, *b; int in, out; } Linear;             // w [out, in]
typedef struct { void *w, *b; int cin, cout, k; } Conv;          // w [cout, cin, k, k] or [cout, cin, 3] (temporal)
typedef struct { void *g, *b; int c; float eps; } Norm;          // GroupNorm(32) or LayerNorm
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
  void *patch_w, *class_emb, *pos_emb;
  Norm pre_ln, post_ln;
  ClipLayer layer[MAX_CLIP_LAYERS];
  Linear proj;
  int hidden, grid, tokens;
} Clip;

// One video job's parameters (diffusers' names).
typedef struct {
  int height, width, num_frames, steps, fps, motion_bucket_id, decode_chunk;
  float noise_aug, min_guidance, max_guidance;
  uint64_t seed;
  int sampler;           // VDP_SAMPLER_*
  const char *dump_dir;  // NULL: no dump
  int quiet;             // no per-step progress
} GenParams;

enum { COMP_UNET = 0, COMP_VAE = 1, COMP_CLIP = 2 };
#define WANT_ALL 7
typedef struct {
  VdpConfig cfg;
  UNet unet;
  Vae vae;
  Clip clip;
  const Backend *be;
  void *pool[3];      // one allocation per component
  size_t nparams[3];
} Models;

// What a job will hold, computed from the configuration alone (nothing is loaded or allocated): the
// weights as backend `be` holds them, the activation arena (the largest of the job's passes, by the
// same dry runs as models_plan) and the host buffers of each phase, for an input image in_w x in_h.
typedef struct {
  size_t weights[3];             // bytes per component (COMP_*), 0 when not in `want`
  size_t arena;                  // one thread's activation arena
  size_t encode, step, decode;   // host buffers of pipeline_encode / _step / _decode + the written frames
} MemPlan;
int models_mem_plan(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h,
                    MemPlan *mp, char *err, size_t errlen);
// The peak over the phases: `arenas` threads' arenas (CPU stage threads; 1 otherwise), CLIP freed after
// the encode unless clip_kept; device: the GPU's share (weights + arena) instead of the host's.
size_t mem_plan_peak(const MemPlan *mp, int arenas, int clip_kept, int device);
// One admission check before anything loads: the job's peak against what the process may use
// (vdp_mem_avail) and, for a GPU backend, against the device's free memory (be->mem_info). -1 with the
// total, the parts and what would fit (--decode-chunk-size N, fewer frames) when it does not fit.
int models_admit(const VdpConfig *cfg, const Backend *be, const GenParams *p, int want, int in_w, int in_h, int arenas,
                 int clip_kept, char *err, size_t errlen);

// want: bits 1 << COMP_*; be: &backend_cpu or backend_cuda()
int models_load(const VdpFile *f, const Backend *be, Models *m, int want, char *err, size_t errlen);
int models_random(const VdpConfig *cfg, const Backend *be, Models *m, int want, char *err, size_t errlen);
int config_preset(const char *name, VdpConfig *cfg);  // "svd" or "svd-xt"; -1 for an unknown name
void models_free_component(Models *m, int which);
void models_free(Models *m);

// Sizes the activation arena for every forward pass of the job p (dry runs); later passes of those
// shapes never allocate. Optional: a forward pass that does not fit re-plans itself first.
// The arena belongs to the calling thread (stage threads share the weights, not the activations).
void models_plan(const Models *m, const GenParams *p);
void models_thread_release(const Models *m);  // frees the calling thread's arena
size_t models_arena_bytes(void);              // the calling thread's arena size
char *models_arena_base(void);                // ... and where it is (a captured graph holds its addresses)
void models_warm_up(const Models *m, const GenParams *p);  // one UNet pass on zeros (GPU backends only)

// Forward passes on host fp32 arrays (inputs are uploaded, outputs downloaded; the step loop uses the
// device-resident unet_forward_dev in model.c's pipeline_step).
void clip_forward(const Models *m, const float *pixels, float *embeds);                       // [3,S,S] -> [D]
void vae_encode(const Models *m, const float *img, int H, int W, float *mean);                // [3,H,W] -> [4,h,w]
void vae_decode_chunk(const Models *m, const float *z, int n, int h, int w, float *out);      // [n,4,h,w] -> [n,3,H,W]
void unet_forward(const Models *m, const float *sample, int B, int F, int h, int w, float t, const float *ctx,
                  const float *ids, float *out);                                              // [B,F,8,h,w] -> [B,F,4,h,w]
double model_flops_take(void);  // FLOPs executed by this thread's forward passes since the last call
void model_flops_add(double f);  // (a replayed graph's)
float scheduler_karras(const VdpConfig *cfg, int n, float *sigmas, float *timesteps);         // -> init_noise_sigma

// The sampler of a job, in two pieces:
//   (a) sampler_table: every step's scalars, computed once per job on the host (pipeline_state_new writes
//       them into the step table, SCH_* columns);
//   (b) its update: the Backend's step_update (CPU twin in ops.c, CUDA kernel in kernels.cu), which switches
//       on StepTables.sampler; animatelcm reads that step's noise z from the tables (drawn at encode time:
//       see pipeline_encode).
#define ANIMATELCM_POINTS 40  // the length of AnimateLCM's Karras schedule: at most 40 steps
typedef struct {
  float sigma, sigma_next;  // σ_i and σ_{i+1} (σ_N = 0)
  float t;                  // the UNet's timestep
  float c_in;               // UNet input = x / c_in, c_in = sqrt(σ² + 1)
  float c_skip, c_out;      // c_out·v + c_skip·x: animatelcm's denoised; Euler's x0 divides by σ² + 1 instead
} StepScalars;
// tab [n] -> init_noise_sigma; cfg gives Euler its scheduler settings (animatelcm has its own, cfg may be NULL)
float sampler_table(const VdpConfig *cfg, int sampler, int n, StepScalars *tab);

// ---------------------------------------------------------------------------------------------------
// Pipeline (diffusers StableVideoDiffusionPipeline, fp32)
// ---------------------------------------------------------------------------------------------------

// Derived sizes of one video's job.
typedef struct {
  int F, h, w, B;        // B = 2 with classifier-free guidance (uncond first), else 1
  int lat_c, ctx_dim;
  size_t latent_n;       // floats of the latent [F, lat_c, h, w]
  size_t cond_n;         // floats of the conditioning blob (see pipeline_encode)
  int n_z;               // step noises carried in the blob: steps for animatelcm with steps > 1, else 0
} GenShape;
int gen_shape(const Models *m, const GenParams *p, GenShape *s, char *err, size_t errlen);

// The per-stage state of the step loop, in backend memory from encode to decode: the conditioning as
// tensors (image embeddings, image latents, added time ids), the step tables, the UNet's input and output,
// and (CUDA) the captured step graphs. One per stage thread, reused for every video of the job.
typedef struct PipeState PipeState;
// graphs: capture the first step into a CUDA graph and replay it (ignored by backends without graphs)
PipeState *pipeline_state_new(const Models *m, const GenParams *p, int graphs);
void pipeline_state_free(PipeState *st);
float *pipeline_latent(PipeState *st);  // the state's own latent [F, lat_c, h, w] (backend memory, fp32)

// Stage 0: CLIP + VAE encode + noise. Writes the conditioning blob cond [cond_n] (host) =
//   ctx [B, D] | image latents [B, lat_c, h, w] | added time ids [B, 3] | guidance [F] | z [n_z, F, lat_c, h, w]
// and the initial latent [F, lat_c, h, w] (noise × init_noise_sigma) into `latent` (backend memory, e.g.
// pipeline_latent(st)), and loads the conditioning into st. One torch stream seeded with `seed` draws
// noise_aug, the initial latent, then (animatelcm) every step's z in step order: drawing them all here is
// bit-identical to drawing each at its step, so the step loop needs no generator and no per-step copy, and
// a stage of the ring continues the stream exactly (it reads z[step] of the blob it received).
int pipeline_encode(const Models *m, const GenParams *p, const VdpImage *img, uint64_t seed, PipeState *st,
                    float *cond, float *latent, char *err, size_t errlen);
// A stage that receives a video loads its conditioning blob (once per video, before its steps).
void pipeline_load_cond(PipeState *st, const float *cond);
// One step i (global index) of the job's sampler on latent (backend memory) in place. On CUDA: no copy, no host sync; the
// graph of the first step is replayed by the later ones.
void pipeline_step(const Models *m, const GenParams *p, int i, PipeState *st, float *latent);
// The same step as one half of CFG-parallel (cfgpar.h): the UNet on batch element `half` (0 unconditional,
// 1 conditional) alone, then exchange(xctx, mine, theirs, bytes) swaps the two halves' v-predictions
// [F, lat_c, h, w] (backend memory, on the backend's stream), then the guidance + update of pipeline_step on
// the whole batch. Never captured into a graph. 0, or -1 with err (the exchange failed).
typedef int (*PipeExchange)(void *xctx, const void *mine, void *theirs, size_t bytes, char *err, size_t errlen);
int pipeline_step_half(const Models *m, const GenParams *p, int i, PipeState *st, float *latent, int half,
                       PipeExchange exchange, void *xctx, char *err, size_t errlen);
// VAE decode in chunks + postprocess: latent (backend memory) -> frames [F, H, W, 3] in [0, 1] (host).
void pipeline_decode(const Models *m, const GenParams *p, const float *latent, float *frames);
// The backend-memory latent as host fp32 (dumps, the ring's host transports).
void pipeline_latent_to_host(const Models *m, float *host, const float *latent, size_t n);
void pipeline_latent_from_host(const Models *m, float *latent, const float *host, size_t n);
// Saves a named tensor into p->dump_dir when set (NAME.npy).
void dump_tensor(const GenParams *p, const char *name, const float *x, int ndim, const int64_t *shape);

#endif
