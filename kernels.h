// kernels.h — the CUDA backend (kernels.cu): vdp.h section 3's operator list on device pointers.
//
// Precision: activations, weights, biases and norm parameters are fp16 (IEEE binary16) device buffers,
// passed as `void *` so that C code needs no CUDA header; every kernel accumulates in fp32, GroupNorm /
// LayerNorm statistics and softmax are fp32, and the latents of the sampler (vdpc_cfg_euler) are fp32.
// Layouts are those of vdp.h (row-major, NCHW, frames packed into the batch: row = b*F + f).
// Every op launches asynchronously on the calling thread's stream (see "threads" below) and writes
// every element of its output. In-place (y == x / y == res) is allowed where vdp.h allows it.
// Errors (bad launch, unsupported shape) are fatal: a message naming the op and the file/line, exit(1).
//
// Threads: several host threads may use the backend at once, each driving its own GPU (cudaSetDevice on
// the thread before its first op). Each thread has its own state, created by its first op for the device
// current then: a stream (a blocking stream: ordered with work on the legacy default stream 0, like
// stream 0 itself was), a scratch workspace, a host-transfer staging buffer and a timestep buffer.
// Per-device caches (shared-memory limits, kernel attributes) and the allocation bookkeeping are shared
// and locked. A thread keeps one device while it holds its state; vdp_cuda_thread_release() frees the
// state and must be called before the thread switches devices, and before it ends (nothing frees it at
// thread exit: a thread that ends without it leaks its stream and buffers until the process ends).
// Two threads on one device also work (own streams, own buffers). Device memory from the Backend's
// mem_alloc may be freed by any thread (it is freed on the device that holds it).
#ifndef VDP_KERNELS_H
#define VDP_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----- errors, device, streams -----------------------------------------------------------------------
// CUDA_CHECK(expr): expr returns a cudaError_t (include cuda_runtime_api.h to use it from C); on failure
// prints "vdp: error: CUDA: <expr> failed at file:line: <reason>" and exits.
void vdp_cuda_check_(int err, const char *expr, const char *file, int line);
#define CUDA_CHECK(expr) vdp_cuda_check_((int)(expr), #expr, __FILE__, __LINE__)
// Checks for a pending launch/async error after the op `what` (with VDP_CUDA_SYNC=1 in the
// environment every op also synchronizes, so an asynchronous fault is attributed to the right op).
void vdp_cuda_check_op(const char *what, const char *file, int line);

int vdp_cuda_device_count(void);      // 0 when there is no driver or no device (never dies)
void vdp_cuda_print_info(FILE *f);    // one line per device (name, sm, memory, SMs) + CUDA/NCCL versions
int vdp_nccl_version(void);           // ncclGetVersion (e.g. 22703 for 2.27.3); -1 on failure
// The calling thread's stream from now on: a cudaStream_t of the thread's device, which must outlive its
// use (until vdp_cuda_set_stream(NULL) or vdp_cuda_thread_release); NULL = the thread's own stream.
void vdp_cuda_set_stream(void *stream);
void vdp_cuda_sync(const char *what);     // cudaStreamSynchronize(this thread's stream) + check
// Frees the calling thread's state (waits for its queued work; frees its workspace, staging and timestep
// buffers; destroys its own stream). Call it after the thread's last op, or before it switches devices;
// a no-op on a thread that never used the backend. Never fails (errors of the clean-up are ignored).
void vdp_cuda_thread_release(void);
size_t vdp_cuda_mem_peak_device(int dev);  // peak bytes the Backend's mem_alloc held on device dev

// ----- memory -------------------------------------------------------------------------------------
// Arena: one cudaMalloc, bump allocation (256-byte aligned), release back to a mark. One thread at a time
// uses an arena; vdp_arena_destroy may run on any thread (it frees on the arena's device).
typedef struct {
  char *base;
  size_t cap, used, peak;
} VdpArena;
int vdp_arena_init(VdpArena *a, size_t bytes, char *err, size_t errlen);  // -1 + message if no memory
void *vdp_arena_alloc(VdpArena *a, size_t bytes, const char *what);        // dies naming `what` if full
size_t vdp_arena_mark(const VdpArena *a);
void vdp_arena_release(VdpArena *a, size_t mark);
void vdp_arena_destroy(VdpArena *a);
void vdp_cuda_upload(void *dst, const void *src, size_t bytes);    // host -> device (synchronous)
void vdp_cuda_download(void *dst, const void *src, size_t bytes);  // device -> host (synchronous)
void vdpc_f32_to_f16(void *y, const float *x, int64_t n);          // device -> device conversions
void vdpc_f16_to_f32(float *y, const void *x, int64_t n);

// ----- operators (device pointers; h = fp16 buffer) --------------------------------------------------
enum { VDPC_ACT_NONE = 0, VDPC_ACT_SILU = 1, VDPC_ACT_GELU = 2, VDPC_ACT_QUICK_GELU = 3, VDPC_ACT_GEGLU = 4 };

// y[M,N] = act(x[M,K] · w[N,K]ᵀ + b[N]) + res[M,N]   (b, res may be NULL; res may equal y).
// act = VDPC_ACT_GEGLU: w is [2N,K], b [2N] (rows [0,N) value, [N,2N) gate) and
// y = (x·w_vᵀ + b_v) · gelu(x·w_gᵀ + b_g)  — the GEGLU projection fused in one GEMM.
void vdpc_linear(void *y, const void *x, const void *w, const void *b, int M, int K, int N, int act,
                 const void *res);

// Convolution weights are used in a "tap-major" layout prepared once per weight (device -> device):
// wt[kh*kw][cout][round_up(cin, 8)] (zero padded). vdpc_conv_weight_elems gives its element count.
int64_t vdpc_conv_weight_elems(int cout, int cin, int kh, int kw);
void vdpc_conv_prepare_weight(void *wt, const void *w, int cout, int cin, int kh, int kw);
// 2-D convolution (vdp.h op_conv2d) as an implicit GEMM on tensor cores. x [n,cin,h,w] -> y [n,cout,ho,wo].
// chan_add [n,cout] (e.g. the time-embedding projection) and res [n,cout,ho,wo] may be NULL:
// y = conv + b + chan_add[n,co] + res.
void vdpc_conv2d(void *y, const void *x, const void *wt, const void *b, int n, int cin, int h, int w,
                 int cout, int kh, int kw, int stride, int pt, int pl, int pb, int pr, const void *chan_add,
                 const void *res);
// Temporal (3,1,1) convolution (vdp.h op_conv_temporal): x [(nb nf), cin, hw], wt prepared with kh=3, kw=1
// from w [cout,cin,3]; chan_add [(nb nf), cout] and res [(nb nf), cout, hw] may be NULL.
void vdpc_conv_temporal(void *y, const void *x, const void *wt, const void *b, int nb, int nf, int cin,
                        int hw, int cout, const void *chan_add, const void *res);

// GroupNorm (+ SiLU) over x [(nb nf), c, hw], statistics per (video, group) pooled over the nf frames.
void vdpc_groupnorm(void *y, const void *x, const void *gamma, const void *beta, int nb, int nf, int c,
                    int hw, int groups, float eps, int silu);
void vdpc_layernorm(void *y, const void *x, const void *gamma, const void *beta, int M, int C, float eps);

// Multi-head attention, same addressing as op_attention (strides in elements). Flash attention on tensor
// cores for head_dim 64 (16-byte aligned rows), a warp-per-query online-softmax kernel otherwise
// (any head_dim <= 512; also the path for short sequences such as temporal attention over F frames).
void vdpc_attention(void *o, int64_t o_seq, int64_t o_row, const void *q, int64_t q_seq, int64_t q_row,
                    const void *k, int64_t k_seq, int64_t k_row, const void *v, int64_t v_seq, int64_t v_row,
                    int nseq, int lq, int lk, int heads, int hd, float scale);
// Cross-attention to a single key (softmax over one key is exactly 1): for every row r,
// y[r,:] = res[r,:] + (to_out(to_v(ctx[r / rows_per_ctx])))  with ctx [nctx, ctx_dim], wv [C, ctx_dim]
// (no bias), wo [C, C], bo [C]. res may be NULL or equal y. Q and K projections are skipped.
void vdpc_cross_attn_1key(void *y, const void *res, const void *ctx, const void *wv, const void *wo,
                          const void *bo, int nctx, int ctx_dim, int C, int64_t rows_per_ctx);

void vdpc_geglu(void *y, const void *x, int M, int H);           // y[M,H] = x[:, :H] · gelu(x[:, H:])
void vdpc_act(void *y, const void *x, int64_t n, int act);       // SILU / GELU / QUICK_GELU, in-place ok
void vdpc_add(void *y, const void *a, const void *b, int64_t n);
void vdpc_add_bcast(void *y, const void *v, int rows, int C, int64_t inner);   // y[r,c,:] += v[r,c]
void vdpc_blend(void *y, const void *a, const void *b, float alpha, int64_t n);  // alpha·a + (1-alpha)·b
// Sinusoidal embedding [cos | sin] of fp32 scalars t (device) -> y [n, dim] fp16.
void vdpc_timestep_embedding(void *y, const float *t, int n, int dim);
// ... of t[*step · stride + r] (step: a device int; NULL: row 0), or of r itself when t is NULL
void vdpc_timestep_embedding_at(void *y, const float *t, const int *step, int stride, int n, int dim);
// The denoising step (model.h's step_input / step_update): sched [steps, SCH_COLS] and g [F] fp32, step a
// device int counter; step_update also advances it by one (a separate launch after the update).
void vdpc_step_input(void *xin, const float *x, const void *img, const float *sched, const int *step, int B, int F,
                     int64_t chw);
void vdpc_step_update(float *x, const void *v, const float *sched, const float *g, int *step, int B, int F, int64_t chw);
void vdpc_upsample_nearest(void *y, const void *x, int n, int c, int h, int w, int ho, int wo);
void vdpc_transpose_0213(void *y, const void *x, int A, int B, int C, int64_t D);

// Classifier-free guidance fused with the Euler (v-prediction) step, in place on the fp32 latents
// x [B, F, chw]: v = vu + g[f]·(vc − vu) with vout [2B, F, chw] fp16 (rows [0,B) unconditional),
// x0 = v·c_out + x·c_skip, x += (x − x0)/σ · (σ_next − σ). The diffusers rounding points are kept
// (v and v·c_out in fp16); round_f16 = 1 also rounds the new latents to fp16 values (as diffusers stores
// them), 0 keeps full fp32. g: host array of F (<= 64) guidance scales.
void vdpc_cfg_euler(float *x, const void *vout, const float *g, int B, int F, int64_t chw, float sigma,
                    float sigma_next, int round_f16);

#ifdef __cplusplus
}
#endif
#endif
