// vdp.h — Stable Video Diffusion (image -> video) in C and CUDA.
//
// Reading order (top-down, like llama2.c's run.c):
//   1. config        VdpConfig: every size of the UNet, VAE, CLIP image encoder and scheduler
//   2. weights       the .vdpw file (weights/FORMAT.md), `vdp convert` / `vdp info` (weights.c);
//                    JSON and safetensors readers (safetensors.c); single-file SGM checkpoints (sgm.c)
//   3. ops           the CPU reference operators, plain fp32 C, and the CPU backend table           (ops.c)
//   4. models        model.h: the Backend table, CLIP, VAE, UNet written once on it; the tensor list
//                    they need; the planned activation arena                                        (model.c)
//   5. scheduler + pipeline                                                                         (model.c)
//   6. CLI           `vdp convert|info|generate|sim|bench`                                         (vdp.c)
// Around them: the torch-compatible RNG (rng.c), image/video files (image.c), timestep stages on a
// ring (ring.h, ring.c), the CUDA backend (kernels.h, kernels.cu).
//
// Layout conventions: tensors are row-major, NCHW like PyTorch. SVD packs frames into the batch axis:
// a video batch [B, F, C, H, W] is handled as [(B F), C, H, W], row = b*F + f.
#ifndef VDP_H
#define VDP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VDP_VERSION "0.1.0"
#define VDP_MAX_LEVELS 8

// ---------------------------------------------------------------------------------------------------
// 1. Configuration
// ---------------------------------------------------------------------------------------------------
// The X-macro lists every configuration field once; the .vdpw writer/reader, `vdp info` and the
// config.json importer are generated from it.  X(type, name, count, json_component, json_key)
//   type: I = int, F = float (stored as text with full precision); count > 1 = array (n used entries
//   are given by the *_levels field of the same component).
// The list names every configuration field once; the .vdpw writer/reader, `vdp info` and the
// config.json importer are generated from it.
//   XI(name, component, key)  int       XF(name, component, key)  float
//   XIA(name, n, ...)         int[n]    XFA(name, n, ...)         float[n]
// Per-level arrays hold unet_levels / vae_levels used entries.
#define VDP_CONFIG_FIELDS(XI, XF, XIA, XFA)                                                       \
  /* UNetSpatioTemporalConditionModel (unet/config.json) */                                       \
  XI(unet_in_channels, "unet", "in_channels")                                                     \
  XI(unet_out_channels, "unet", "out_channels")                                                   \
  XI(unet_levels, "unet", "len(block_out_channels)")                                              \
  XIA(unet_block_out, VDP_MAX_LEVELS, "unet", "block_out_channels")                               \
  XIA(unet_down_attn, VDP_MAX_LEVELS, "unet", "down_block_types (1 = CrossAttn...)")              \
  XIA(unet_up_attn, VDP_MAX_LEVELS, "unet", "up_block_types (1 = CrossAttn...)")                  \
  XIA(unet_heads, VDP_MAX_LEVELS, "unet", "num_attention_heads (per level)")                      \
  XIA(unet_transformer_layers, VDP_MAX_LEVELS, "unet", "transformer_layers_per_block")            \
  XIA(unet_cross_dim, VDP_MAX_LEVELS, "unet", "cross_attention_dim (per level)")                  \
  XI(unet_layers_per_block, "unet", "layers_per_block")                                           \
  XI(unet_addition_time_embed_dim, "unet", "addition_time_embed_dim")                             \
  XI(unet_proj_class_in_dim, "unet", "projection_class_embeddings_input_dim")                     \
  XI(unet_num_frames, "unet", "num_frames")                                                       \
  XI(unet_sample_size, "unet", "sample_size")                                                     \
  /* AutoencoderKLTemporalDecoder (vae/config.json) */                                            \
  XI(vae_in_channels, "vae", "in_channels")                                                       \
  XI(vae_out_channels, "vae", "out_channels")                                                     \
  XI(vae_latent_channels, "vae", "latent_channels")                                               \
  XI(vae_levels, "vae", "len(block_out_channels)")                                                \
  XIA(vae_block_out, VDP_MAX_LEVELS, "vae", "block_out_channels")                                 \
  XI(vae_layers_per_block, "vae", "layers_per_block")                                             \
  XI(vae_norm_groups, "vae", "norm_num_groups (32 when absent)")                                  \
  XF(vae_scaling_factor, "vae", "scaling_factor")                                                 \
  XI(vae_force_upcast, "vae", "force_upcast")                                                     \
  /* CLIPVisionModelWithProjection (image_encoder/config.json) */                                 \
  XI(clip_hidden, "image_encoder", "hidden_size")                                                 \
  XI(clip_intermediate, "image_encoder", "intermediate_size")                                     \
  XI(clip_layers, "image_encoder", "num_hidden_layers")                                           \
  XI(clip_heads, "image_encoder", "num_attention_heads")                                          \
  XI(clip_patch, "image_encoder", "patch_size")                                                   \
  XI(clip_image_size, "image_encoder", "image_size")                                              \
  XI(clip_channels, "image_encoder", "num_channels")                                              \
  XI(clip_projection_dim, "image_encoder", "projection_dim")                                      \
  XI(clip_act, "image_encoder", "hidden_act (0 = gelu, 1 = quick_gelu)")                          \
  XF(clip_eps, "image_encoder", "layer_norm_eps")                                                 \
  /* CLIPImageProcessor (feature_extractor/preprocessor_config.json) */                           \
  XFA(clip_mean, 3, "feature_extractor", "image_mean")                                            \
  XFA(clip_std, 3, "feature_extractor", "image_std")                                              \
  /* EulerDiscreteScheduler (scheduler/scheduler_config.json) */                                  \
  XF(sched_sigma_min, "scheduler", "sigma_min")                                                   \
  XF(sched_sigma_max, "scheduler", "sigma_max")                                                   \
  XI(sched_num_train_timesteps, "scheduler", "num_train_timesteps")                               \
  XI(sched_v_prediction, "scheduler", "prediction_type (1 = v_prediction, 0 = epsilon)")          \
  XI(sched_karras, "scheduler", "use_karras_sigmas")                                              \
  XI(sched_continuous, "scheduler", "timestep_type (1 = continuous)")                             \
  XI(sched_leading, "scheduler", "timestep_spacing (1 = leading: init sigma = sqrt(max^2+1); 0 = linspace/trailing: max)") \
  /* The sampler generate uses by default (vdp convert --sampler; optional in a file, absent = 0) */ \
  XI(sched_sampler, "vdp", "sampler (0 = euler: the scheduler above; 1 = animatelcm: AnimateLCM-SVD's)")

typedef struct {
#define VDP_DECL_I(name, comp, key) int name;
#define VDP_DECL_F(name, comp, key) float name;
#define VDP_DECL_IA(name, n, comp, key) int name[n];
#define VDP_DECL_FA(name, n, comp, key) float name[n];
  VDP_CONFIG_FIELDS(VDP_DECL_I, VDP_DECL_F, VDP_DECL_IA, VDP_DECL_FA)
#undef VDP_DECL_I
#undef VDP_DECL_F
#undef VDP_DECL_IA
#undef VDP_DECL_FA
} VdpConfig;

// Samplers: VdpConfig.sched_sampler (what a file records), GenParams.sampler, `--sampler NAME`.
//   euler       diffusers' EulerDiscreteScheduler as SVD configures it (the scheduler_* fields above)
//   animatelcm  AnimateLCM-SVD-xt's consistency sampler (../shared/animatelcm.md): 40-point Karras schedule,
//               few steps, fresh noise z at every step from the one seeded stream
enum { VDP_SAMPLER_EULER = 0, VDP_SAMPLER_ANIMATELCM = 1, VDP_N_SAMPLERS = 2 };
const char *sampler_name(int sampler);  // "euler", "animatelcm" (model.c)
int sampler_from_name(const char *name);  // -1 for an unknown name

// Checks the configuration for values the models cannot run (e.g. channels not divisible by the
// GroupNorm groups, heads not dividing channels). Returns 0 or -1 with a message in err.
int config_validate(const VdpConfig *c, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------------
// Errors and small utilities (vdp.c)
// ---------------------------------------------------------------------------------------------------
// Fatal errors print "vdp: error: ..." on stderr and exit(1). Parsers never call these: they return
// -1 and fill an error buffer, so the fuzzers and tests can drive them.
void vdp_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *vdp_malloc(size_t n, const char *what);  // dies with a message naming `what` on failure
void *vdp_calloc(size_t n, size_t size, const char *what);
double vdp_now(void);                          // monotonic seconds
// Usage errors (a bad flag, a missing argument, flags that contradict each other) print the same way
// and exit with status 2; every other failure exits 1 (README "Exit status").
void vdp_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
// A number as flags take it: [+-]digits, and with allow_fraction [.digits][e[+-]digits]; no leading
// spaces, hex, inf or nan (which strtol/strtod alone would accept).
int vdp_is_decimal(const char *s, int allow_fraction);
// A whole decimal number in [lo, hi] -> *out and 0; otherwise -1 (the callers name the flag).
int vdp_parse_long(const char *s, long lo, long hi, long *out);
int vdp_parse_double(const char *s, double lo, double hi, double *out);
// Refuses (usage error, exit 2) any flag given twice in argv[1..argc), except those in `repeatable`.
// `valued` lists the flags that take one value (skipped, so a value is never taken for a flag). Every
// subcommand calls it before parsing, so a new flag gets the rule without a line of its own.
void vdp_flags_once(const char *cmd, int argc, char **argv, const char *const *valued, const char *const *repeatable);

// Output files (util.c). One rule for every file vdp writes: the bytes go to a fresh temporary created
// exclusively beside the target (DIR/.NAME.XXXXXXXX.tmp: never a fixed name, never through a symlink),
// are fsynced, and the temporary is renamed onto the target only when the target is absent, or is a
// writable regular file and `replace` is set. Devices, FIFOs, directories and symlinks are never
// replaced. A failure (an exit or a SIGINT/SIGTERM/SIGHUP included, once out_install_cleanup ran)
// removes exactly the temporaries this process created.
typedef struct {
  char path[4096], tmp[4096];  // the target and its temporary
  FILE *fp;                    // open on the temporary between out_begin and out_close
  int slot;                    // in the list of live temporaries, -1 when none
  int replace;                 // an existing writable regular file at path may be replaced
} VdpOut;
void out_install_cleanup(void);  // atexit + signal handlers removing live temporaries; SIGXFSZ ignored
void out_cleanup(void);          // removes the live temporaries now (before an _exit)
void out_watch_child(int pid);   // a child process writing a temporary (0: none): killed and reaped first
// The policy of the library writers (npy_save_f32, image_save_png, png_sequence_save, video_save_ffmpeg,
// vdpw_convert): replace an existing regular file (1, the default) or refuse (0). The CLI sets it from
// --overwrite before any work starts.
void out_set_replace(int replace);
int out_replace(void);
// Everything that can be known before writing: the target is absent or (with replace) a writable
// regular file, and a file can be created in its folder. -1 with a message naming the path.
int out_check(const char *path, int replace, char *err, size_t errlen);
int target_check(const char *path, int replace, char *err, size_t errlen);  // out_check without the folder probe
// Checks the target (as out_check, without the probe), creates the temporary, o->fp open on it.
int out_begin(VdpOut *o, const char *path, int replace, char *err, size_t errlen);
int out_close(VdpOut *o, char *err, size_t errlen);   // flush, fsync and close the temporary (kept)
int out_rename(VdpOut *o, char *err, size_t errlen);  // checks the target again; the temporary takes its name
int out_commit(VdpOut *o, char *err, size_t errlen);  // close + rename; on failure, abort
void out_abort(VdpOut *o);                            // closes and removes the temporary
int out_write_file(const char *path, const void *data, size_t n, int replace, char *err, size_t errlen);
const char *file_kind(unsigned mode);                 // "a directory", "a FIFO (named pipe)", ... for messages
// Refuses (-1, naming both) an output that exists and is the same file (device + inode: hard links and
// other spellings too) as one of the n inputs the run reads; NULL entries are skipped.
int out_not_input(const char *out, const char *const *inputs, int n, char *err, size_t errlen);
int name_has_control(const char *s);
// Memory this process may still use (bytes; SIZE_MAX when nothing says): the least of MemAvailable, the
// room under the cgroup limit (v2 memory.max / v1 memory.limit_in_bytes, each level up to the root, page
// cache not counted as used), RLIMIT_AS less the address space mapped, RLIMIT_DATA less the data in use.
// `what` names the limit that binds, for messages.
typedef struct {
  size_t bytes;
  char what[768];
} VdpMemAvail;
void vdp_mem_avail(VdpMemAvail *a);
void vdp_mem_avail_cgroup(VdpMemAvail *a, const char *proc_cgroup, const char *fs_root);  // the cgroup part alone  // a byte below 0x20 or 0x7f: refused in output names
// Files and folders this run created that only a successful run keeps (a --dump folder): removed, newest
// first, at exit and on SIGINT/SIGTERM/SIGHUP unless out_created_keep() was called.
void out_created(const char *path, int is_dir);
void out_created_keep(void);

// ---------------------------------------------------------------------------------------------------
// 2. Weights (weights.c) — see weights/FORMAT.md
// ---------------------------------------------------------------------------------------------------
enum { VDP_F32 = 0, VDP_F16 = 1, VDP_BF16 = 2 };
#define VDP_MAX_DIMS 6

typedef struct {
  char name[160];                  // diffusers name, prefixed by component: "unet.conv_in.weight"
  int dtype;                       // VDP_F32 / VDP_F16 / VDP_BF16
  int ndim;
  int64_t shape[VDP_MAX_DIMS];
  uint64_t offset;                 // bytes from the start of the file
  uint64_t nbytes;
  const void *data;                // into the mapping once opened
} VdpTensor;

typedef struct {
  VdpConfig cfg;
  int n_tensors;
  VdpTensor *tensors;              // sorted by name (binary search in vdpw_find)
  const uint8_t *map;              // whole file, mmapped read-only
  size_t map_size;
  char path[512];
} VdpFile;

// Expected tensors of a configuration: one list, derived from the model structure (model.c).
typedef struct {
  char name[160];
  int ndim;
  int64_t shape[VDP_MAX_DIMS];
} VdpTensorSpec;
typedef struct {
  VdpTensorSpec *specs;
  int n, cap;
} VdpSpecList;
// Fills `out` with every tensor the models need for `cfg`, names prefixed "unet.", "vae.", "image_encoder.".
int model_expected_tensors(const VdpConfig *cfg, VdpSpecList *out, char *err, size_t errlen);
void speclist_free(VdpSpecList *l);

int vdpw_open(const char *path, VdpFile *f, char *err, size_t errlen);          // mmap + validate
int vdpw_parse(const uint8_t *buf, size_t len, VdpFile *f, char *err, size_t errlen);  // in-memory
void vdpw_close(VdpFile *f);
const VdpTensor *vdpw_find(const VdpFile *f, const char *name);
// Reads the diffusers config.json files of a pipeline folder into cfg (weights.c).
int config_from_diffusers(const char *dir, VdpConfig *cfg, char *err, size_t errlen);
// Subcommands (argv[0] is the subcommand name); return the process exit status.
int cmd_convert(int argc, char **argv);   // weights.c
int cmd_info(int argc, char **argv);      // weights.c
int cmd_generate(int argc, char **argv);  // vdp.c
int cmd_sim(int argc, char **argv);       // ring.c

// ---------------------------------------------------------------------------------------------------
// 2b. JSON and safetensors readers (safetensors.c) — used by weights.c, the tests and the fuzzers
// ---------------------------------------------------------------------------------------------------
// Parsers of untrusted bytes: every error returns -1 with one message in (err, errlen); none exits.

// Helpers shared by safetensors.c and weights.c.
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));  // message -> err, returns -1
void err_prefix(char *err, size_t errlen, const char *prefix);  // err = "PREFIX: " + err (adds a file name)
uint64_t rd_u64(const uint8_t *p);                              // little-endian u64 at any alignment
int mul_checked(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out);  // *out = a*b, or -1 when > limit
void fmt_dims(char *buf, size_t n, int ndim, const int64_t *shape);      // "[2,3,4]" for messages
// Opens without blocking (a FIFO or device never hangs), then fstat: the fd of a regular file (blocking
// again) and its size, or -1 with "PATH: is a directory, not a regular file" and the like (util.c).
int open_regular(const char *path, uint64_t *size, char *err, size_t errlen);
int pread_full(int fd, void *dst, size_t n, uint64_t off);      // pread looping over short reads; -1 on error/EOF

// Strict JSON (valid UTF-8 only; duplicate keys, \u0000 and text after the value refused; depth, node
// count and number length limited) as a DOM in two arrays: nodes and a pool of decoded, NUL-terminated
// strings. Node 0 is the root; children of an array/object form a linked list through `next`; object
// members carry their key.
enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct {
  uint8_t type;         // J_*
  uint8_t is_int;       // number written without fraction/exponent, |value| <= 2^53 (exact in a double)
  int32_t next, child;  // sibling / first child, -1 = none
  int32_t count;        // number of children
  uint32_t key;         // pool offset of the member key (object members), UINT32_MAX otherwise
  uint32_t str;         // pool offset of a string value
  double num;
} JNode;
typedef struct {
  JNode *nodes;
  int n, cap;
  char *pool;
  size_t pool_len, pool_cap;
  const unsigned char *s;  // parser state: the text, its length, the current byte
  size_t len, pos;
  char *err;
  size_t errlen;
} Json;
int json_parse(Json *j, const char *text, size_t len, char *err, size_t errlen);  // root (0) or -1
void json_free(Json *j);                            // also after a failed json_parse
int jget(const Json *j, int obj, const char *key);  // member `key` of object `obj`, or -1
const char *jstr(const Json *j, int node);          // the text of a J_STR node
const char *jtype_name(int type);                   // "a number", "an object", ... for messages

// safetensors (svd-spec §7.3): u64 LE header length N, N bytes of JSON, then the data buffer.
#define ST_MAX_NAME 159  // longest tensor name (VdpTensor.name holds 160 bytes with the NUL)
typedef struct {
  char name[ST_MAX_NAME + 1];
  int dtype;           // VDP_F32 / VDP_F16 / VDP_BF16, or -1: a known dtype vdp does not convert
  char dtype_str[12];  // as written in the file
  int ndim;
  int64_t shape[VDP_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end;  // absolute byte offsets in the file, [begin, end)
} StTensor;
typedef struct StHeader {
  int n;
  StTensor *t;  // sorted by name
  uint64_t data_start, file_size;
} StHeader;
typedef struct {
  StHeader h;
  int fd;  // the data is read with pread_full at StTensor.begin
  char path[1024];
} StFile;
// Opens a file and validates its header (names, dtypes, shapes, offsets inside the file, no overlaps).
int st_open(const char *path, StFile *f, char *err, size_t errlen);
void st_close(StFile *f);
int name_key_cmp(const void *key, const void *elem);  // bsearch over tables sorted by a leading name
const StTensor *st_find(const StHeader *h, const char *name);  // binary search, NULL when absent
// The header of a file held in buf (at least its first 8 + N bytes; the file is file_size bytes long).
int st_parse_mem(const uint8_t *buf, size_t len, uint64_t file_size, StHeader *h, char *err, size_t errlen);
void st_header_free(StHeader *h);
// Test/fuzzing entry point: parses a whole file held in memory and touches every tensor's first and
// last byte (so the sanitizers see out-of-range offsets).
int st_parse_buffer(const uint8_t *buf, size_t len, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------------
// 2c. Single-file SGM checkpoints (sgm.c): svd.safetensors / svd_xt.safetensors as ComfyUI and Stability's
// generative-models keep them, read as the diffusers tensors `vdp convert` writes
// ---------------------------------------------------------------------------------------------------
typedef struct {
  char name[160];              // the diffusers name, "image_encoder.vision_model.encoder.layers.0.self_attn.q_proj.weight"
  char sgm[ST_MAX_NAME + 1];   // the SGM tensor it comes from, "conditioner.embedders.0.open_clip.model.visual.transformer..."
  int op;                      // how (sgm.c: same, 1x1 conv -> linear, a third of a fused in_proj, transposed)
  StTensor view;               // dtype, the diffusers shape, numel and the file bytes it reads ([begin, end))
  uint8_t *transposed;         // sgm_read's copy of a transposed tensor between chunks (NULL otherwise)
  int transposed_fd;           // the file it was read from
} SgmTensor;
typedef struct {
  VdpConfig cfg;               // inferred from the tensor shapes and the published models' facts
  int n;                       // one SgmTensor per tensor the models need, sorted by name
  SgmTensor *t;
  int n_ignored;               // tensors of the file no model uses (text tower, training encoder, ...)
} SgmMap;
// Reads an SGM checkpoint's header: refuses what is not an SVD image-to-video checkpoint (saying what it
// looks like), infers the configuration (printed to `log` with where each value came from, when log is
// not NULL), maps every tensor the models need and checks its name, shape and dtype; an unknown tensor
// inside the mapped modules is an error, the rest is counted as ignored. num_frames > 0 overrides the
// default (25 when the file name holds "xt" as a word: sgm_name_says_xt, else 14). Returns 0, or -1 with a message.
int sgm_map(const StHeader *h, const char *path, int num_frames, SgmMap *m, FILE *log, char *err, size_t errlen);
// The UNet alone (`vdp convert --unet FILE` with model.diffusion_model.* names): cfg's UNet tensors mapped as
// sgm_map maps them; anything else in the file is an error. m->cfg = *cfg.
int sgm_map_unet(const StHeader *h, const char *path, const VdpConfig *cfg, SgmMap *m, char *err, size_t errlen);
#define SGM_UNET_PREFIX "model.diffusion_model."
const SgmTensor *sgm_find(const SgmMap *m, const char *name);  // by diffusers name, NULL when absent
void sgm_map_free(SgmMap *m);
// Elements [e0, e0+n) of a mapped tensor in its source dtype, in the diffusers layout, from the file fd.
// A transposed tensor is read whole once and kept until its last chunk (or sgm_map_free).
int sgm_read(int fd, const SgmTensor *t, uint64_t e0, size_t n, void *dst);
// The frame default's rule: 1 when the file name holds "xt" as a word (svd_xt, AnimateLCM-SVD-xt).
int sgm_name_says_xt(const char *base);
// Fuzzing entry point: parses a whole file held in memory and maps it (touching every view's bytes).
int sgm_parse_buffer(const uint8_t *buf, size_t len, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------------
// 3. CPU operators (ops.c). fp32, row-major, multithreaded with OpenMP. Every output is fully written.
// ---------------------------------------------------------------------------------------------------
// y[M,N] = x[M,K] · w[N,K]ᵀ + b[N]  (PyTorch Linear layout; b may be NULL)
void op_linear(float *y, const float *x, const float *w, const float *b, int M, int K, int N);
// 2-D convolution, NCHW. x [n,cin,h,w], w [cout,cin,kh,kw], b [cout] or NULL, zero padding
// (pad_top, pad_left, pad_bottom, pad_right), y [n,cout,ho,wo], ho = (h+pt+pb-kh)/stride+1.
void op_conv2d(float *y, const float *x, const float *w, const float *b, int n, int cin, int h, int wd,
               int cout, int kh, int kw, int stride, int pt, int pl, int pb, int pr);
// Temporal convolution, kernel (3,1,1), zero padding of one frame: x [(b f), cin, hw],
// w [cout, cin, 3], y [(b f), cout, hw]; out[f] = b + Σ_k w[k]·in[f+k-1].
void op_conv_temporal(float *y, const float *x, const float *w, const float *b, int nb, int nf, int cin,
                      int hw, int cout);
// GroupNorm over x [(nb nf), c, hw]: statistics per (video, group) pooled over the nf frames
// (nf = 1: per image, as a spatial GroupNorm), optional fused SiLU. In-place allowed (y == x).
void op_groupnorm(float *y, const float *x, const float *gamma, const float *beta, int nb, int nf, int c,
                  int hw, int groups, float eps, int silu);
// LayerNorm over the last axis: x [M, C]. In-place allowed.
void op_layernorm(float *y, const float *x, const float *gamma, const float *beta, int M, int C, float eps);
// Multi-head attention, softmax(q kᵀ · scale) v, queries processed in blocks (no Lq×Lk matrix).
// Sequence s, position i, head h, dim d lives at  base + s*seq_stride + i*row_stride + h*hd + d.
void op_attention(float *o, int64_t o_seq, int64_t o_row, const float *q, int64_t q_seq, int64_t q_row,
                  const float *k, int64_t k_seq, int64_t k_row, const float *v, int64_t v_seq, int64_t v_row,
                  int nseq, int lq, int lk, int heads, int hd, float scale);
// y[M,H] = x[:, :H] · gelu(x[:, H:2H])  (GEGLU: first half value, second half gate, exact GELU)
void op_geglu(float *y, const float *x, int M, int H);
void op_silu(float *y, const float *x, int64_t n);        // in-place allowed
void op_gelu(float *y, const float *x, int64_t n);        // exact erf GELU
void op_quick_gelu(float *y, const float *x, int64_t n);  // x·sigmoid(1.702x)
void op_add(float *y, const float *a, const float *b, int64_t n);          // y = a + b
// y[r, c, :] += v[r, c] for x viewed [rows, C, inner]  (bias/embedding broadcast)
void op_add_bcast(float *y, const float *v, int rows, int C, int64_t inner);
// y = alpha·a + (1-alpha)·b
void op_blend(float *y, const float *a, const float *b, float alpha, int64_t n);
// Sinusoidal embedding [cos | sin] (flip_sin_to_cos, shift 0): y [n, dim], freq_k = exp(-ln(1e4) k/(dim/2))
void op_timestep_embedding(float *y, const float *t, int n, int dim);
// x [n, c, h, w] -> y [n, c, ho, wo], nearest neighbour (PyTorch 'nearest': src = floor(dst*in/out))
void op_upsample_nearest(float *y, const float *x, int n, int c, int h, int w, int ho, int wo);
// [A, B, C, D] -> [A, C, B, D]; e.g. (b f) c hw -> (b f) hw c  with D = 1
void op_transpose_0213(float *y, const float *x, int A, int B, int C, int64_t D);
double op_kernel_peak_gflops(double seconds);  // the GEMM micro-kernel alone, all threads, data in L1

// ---------------------------------------------------------------------------------------------------
// RNG (rng.c): torch.Generator("cpu").manual_seed(s) + torch.randn, bit for bit (../shared/torch-rng.md)
// ---------------------------------------------------------------------------------------------------
typedef struct {
  uint32_t mt[624];
  int next;                 // index of the next word; 624 = regenerate
  int has_cached_normal;    // the double Box–Muller cache used by the N < 16 path
  double cached_normal;
} TorchGenerator;
void torch_manual_seed(TorchGenerator *g, uint64_t seed);
void torch_randn_f32(TorchGenerator *g, float *out, int64_t n);    // torch.randn(n) float32
void torch_randn_f16(TorchGenerator *g, uint16_t *out, int64_t n); // torch.randn(n, dtype=float16), binary16 bits

// ---------------------------------------------------------------------------------------------------
// Images and arrays (image.c)
// ---------------------------------------------------------------------------------------------------
typedef struct {
  int w, h;          // pixels
  uint8_t *rgb;      // [h, w, 3]
} VdpImage;
// Image limits: each side at most IMG_MAX_SIDE; at most image_set_max_pixels() pixels (default
// IMG_DEFAULT_MAX_PIXELS, Pillow's DecompressionBombError threshold), checked from the header before
// any pixel is decoded.
#define IMG_MAX_SIDE 16384
#define IMG_DEFAULT_MAX_PIXELS 178956970ull
void image_set_max_pixels(uint64_t n);
int image_load(const char *path, VdpImage *img, char *err, size_t errlen);   // PNG or JPEG -> RGB8
// Writers follow the output rule of util.c (temporary + rename, policy out_replace()).
int image_save_png(const char *path, const uint8_t *rgb, int w, int h, char *err, size_t errlen);
// frames [F, h, w, 3] as STEM_000.png, STEM_001.png, ...: all frames or none.
int png_sequence_save(const char *stem, const uint8_t *frames, int F, int w, int h, char *err, size_t errlen);
void png_sequence_name(char *dst, size_t n, const char *stem, int frame);  // STEM_%03d.png
void image_free(VdpImage *img);
// Pillow's Image.resize((w, h), LANCZOS) on an RGB8 image, bit for bit.
void image_resize_lanczos(const VdpImage *src, VdpImage *dst, int w, int h);
// diffusers' _resize_with_antialiasing on x [c, h, w] fp32: gaussian blur (reflect pad), then
// bicubic (A = -0.75, align_corners) to [c, ho, wo].
void resize_antialias(float *y, const float *x, int c, int h, int w, int ho, int wo);
// The same on an RGB8 image [h, w, 3] read as 2·(v/255) - 1 (CLIP's input), row by row, without a float
// copy of the image; bit-identical to resize_antialias on that copy.
void resize_antialias_rgb8(float *y, const uint8_t *rgb, int h, int w, int ho, int wo);
// The same, computed by blurring every pixel (slow on large images): the reference the tests compare
// resize_antialias with, bit for bit.
void resize_antialias_full(float *y, const float *x, int c, int h, int w, int ho, int wo);
// .npy files (little-endian float32, C order)
int npy_save_f32(const char *path, const float *x, const int64_t *shape, int ndim, char *err, size_t errlen);
// Loads a float32 (or float16, converted) .npy; *data malloc'd. Returns -1 with a message on error.
int npy_load_f32(const char *path, float **data, int64_t *shape, int *ndim, char *err, size_t errlen);

// Writes frames [F, H, W, 3] uint8 as .gif or .mp4 by piping raw RGB into ffmpeg; a clear error
// when ffmpeg is not on PATH.
int video_save_ffmpeg(const char *path, const uint8_t *frames, int F, int w, int h, int fps, char *err,
                      size_t errlen);
// The up-front part: a .gif or .mp4 name, a frame rate GIF can hold (<= 50), ffmpeg on PATH.
int video_check(const char *path, int fps, char *err, size_t errlen);

// fp16 <-> fp32 (IEEE binary16, round to nearest even)
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t h);

#endif
