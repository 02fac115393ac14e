// kernels.cu — the CUDA backend: fp16 storage, fp32 accumulation, tensor cores (mma.sync m16n8k16,
// ldmatrix, cp.async: sm_80 and newer). The C-callable API is kernels.h; its operators mirror vdp.h §3.
//
// Contents
//   1. errors, device info, streams, arena, copies
//   2. PTX helpers (ldmatrix, mma, cp.async)
//   3. implicit-GEMM convolution / linear kernel (one kernel for conv 3x3 s1/s2, 1x1, temporal (3,1,1),
//      and Linear incl. the GEGLU / SiLU / GELU epilogues)
//   4. flash attention (head_dim 64, tensor cores) and the warp-per-query attention (any head_dim)
//   5. GroupNorm(+SiLU), LayerNorm
//   6. elementwise: activations, add, broadcast add, blend, GEGLU, embeddings, upsample, transpose,
//      CFG + Euler step, conversions
//   7. the Backend table (model.h): the model graph of model.c on these kernels
#include "kernels.h"
extern "C" {
#include "model.h"
}

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

// ===================================================================================================
// 1. Errors, device info, streams, arena
// ===================================================================================================
static void die(const char *fmt, const char *a, const char *b, int line, const char *c) {
  fprintf(stderr, "vdp: error: ");
  fprintf(stderr, fmt, a, b, line, c);
  fputc('\n', stderr);
  exit(1);
}

extern "C" void vdp_cuda_check_(int err, const char *expr, const char *file, int line) {
  if (err != (int)cudaSuccess)
    die("CUDA: %s failed at %s:%d: %s", expr, file, line, cudaGetErrorString((cudaError_t)err));
}
#define CK(expr) vdp_cuda_check_((int)(expr), #expr, __FILE__, __LINE__)

// Kernel launches: VDP_LAUNCH(k, grid, block, smem, stream)(args) is k<<<grid, block, smem, stream>>>(args).
// The host SIMT emulator (test/simt/simt.h) defines it as a call into its runtime: g++ cannot parse <<<>>>.
#ifndef VDP_LAUNCH
#define VDP_LAUNCH(k, g, b, smem, stream) k<<<g, b, smem, stream>>>
#endif

// ----- per-thread and per-device state ----------------------------------------------------------------
// Several host threads may drive the backend at once, each on its own GPU (the stage ring: one thread per
// stage, cudaSetDevice(stage) before anything else). What a thread queues work with is thread_local and
// created lazily on the thread's first op, for the device that is current then: the stream, the scratch
// workspace and the host-transfer staging buffer. What belongs to a device (its
// shared-memory limit, the kernels' dynamic shared-memory attributes) is cached per device. Allocation
// bookkeeping (section 7) is global and locked. A thread stays on one device while it holds its state:
// vdp_cuda_thread_release() frees it (and must come before the thread switches devices or exits).
static constexpr int kMaxDevices = 64;

// Plain data, zero-initialised, no constructor or destructor: reaching it is one TLS load.
struct ThreadState {
  bool ready;            // created on this thread (dev, own stream)
  int dev;               // the device that was current at creation
  cudaStream_t own;      // created here; destroyed by vdp_cuda_thread_release
  cudaStream_t stream;   // where this thread's ops go: own, or the one given to vdp_cuda_set_stream
  void *ws;              // scratch (cudaMalloc, not in the mem_peak bookkeeping), ws_size bytes
  size_t ws_size;
  float *stage;          // section 7's host <-> device staging buffer (be_mem_alloc)
  bool capturing;        // between graph_begin and graph_end (section 7): nothing may synchronize
};
static thread_local ThreadState t_ts;

static void ts_create() {
  ThreadState &t = t_ts;
  int dev = 0, major = 0, minor = 0;
  CK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) {
    fprintf(stderr, "vdp: error: CUDA backend: device %d (this build handles devices 0..%d)\n", dev, kMaxDevices - 1);
    exit(1);
  }
  // backend_cuda() checked the device current at its first call; a stage thread may be on another one.
  CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  if (major < 8) {
    fprintf(stderr, "vdp: error: CUDA device %d is sm_%d%d; vdp's kernels need sm_80 or newer\n", dev, major, minor);
    exit(1);
  }
  // A blocking stream: like the legacy default stream 0 it used to be, it is ordered with respect to
  // work on stream 0 (cudaMemcpy, cudaMemset, events of callers), but two threads no longer share it.
  CK(cudaStreamCreate(&t.own));
  t.dev = dev;
  t.stream = t.own;
  t.ready = true;
}
static inline ThreadState &ts() {
  if (__builtin_expect(!t_ts.ready, 0)) ts_create();
  return t_ts;
}
static inline cudaStream_t cur_stream() { return ts().stream; }

// The calling thread must still be on the device its state was created for (rare paths only: the
// per-op paths do not pay for a cudaGetDevice).
static void ts_check_device(const ThreadState &t, const char *what) {
  int cur = -1;
  CK(cudaGetDevice(&cur));
  if (cur != t.dev) {
    fprintf(stderr,
            "vdp: error: CUDA backend: %s on device %d, but this thread's backend state is on device %d "
            "(call vdp_cuda_thread_release() before switching devices)\n",
            what, cur, t.dev);
    exit(1);
  }
}

// VDP_CUDA_SYNC=1: synchronize after every op. Read once (a thread-safe function-local static).
static int sync_each() {
  static const int v = [] {
    const char *s = getenv("VDP_CUDA_SYNC");
    return (s && s[0] == '1') ? 1 : 0;
  }();
  return v;
}

extern "C" void vdp_cuda_check_op(const char *what, const char *file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    int cur = -1;
    cudaGetDevice(&cur);
    if (t_ts.ready && cur != t_ts.dev)  // the likely cause: this thread's stream is on another device
      fprintf(stderr, "vdp: note: this thread is on device %d but its CUDA backend state (stream) is on device %d\n",
              cur, t_ts.dev);
    die("CUDA: kernel launch of %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
  }
  if (sync_each() && !t_ts.capturing) {  // a capturing stream cannot be synchronized
    e = cudaStreamSynchronize(cur_stream());
    if (e != cudaSuccess) die("CUDA: kernel %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
  }
}
#define OPCHECK(name) vdp_cuda_check_op(name, __FILE__, __LINE__)

static void fail_shape(const char *op, const char *why) {
  fprintf(stderr, "vdp: error: CUDA %s: unsupported arguments: %s\n", op, why);
  exit(1);
}

extern "C" int vdp_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

extern "C" int vdp_nccl_version(void) {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return -1;
  return v;
}

extern "C" void vdp_cuda_print_info(FILE *f) {
  int n = vdp_cuda_device_count(), drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  int nv = vdp_nccl_version();
  fprintf(f, "CUDA: %d device(s), driver %d.%d, runtime %d.%d, NCCL %d.%d.%d\n", n, drv / 1000, (drv % 1000) / 10,
          rt / 1000, (rt % 1000) / 10, nv / 10000, (nv / 100) % 100, nv % 100);
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    fprintf(f, "  GPU %d: %s, sm_%d%d, %.1f GiB, %d SMs, L2 %d MiB, smem/block opt-in %zu KiB\n", i, p.name,
            p.major, p.minor, p.totalGlobalMem / 1073741824.0, p.multiProcessorCount, p.l2CacheSize >> 20,
            p.sharedMemPerBlockOptin >> 10);
  }
}

extern "C" void vdp_cuda_set_stream(void *stream) {
  ThreadState &t = ts();
  t.stream = stream ? (cudaStream_t)stream : t.own;
}

extern "C" void vdp_cuda_sync(const char *what) {
  cudaError_t e = cudaStreamSynchronize(cur_stream());
  if (e != cudaSuccess) {
    fprintf(stderr, "vdp: error: CUDA: %s failed: %s\n", what, cudaGetErrorString(e));
    exit(1);
  }
}

extern "C" int vdp_arena_init(VdpArena *a, size_t bytes, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e != cudaSuccess) {
    cudaGetLastError();
    snprintf(err, errlen, "cannot allocate a %.2f GiB device arena: %s", bytes / 1073741824.0, cudaGetErrorString(e));
    return -1;
  }
  a->base = (char *)p;
  a->cap = bytes;
  return 0;
}

extern "C" void *vdp_arena_alloc(VdpArena *a, size_t bytes, const char *what) {
  size_t off = (a->used + 255) & ~(size_t)255;
  if (off > a->cap || bytes > a->cap - off) {
    fprintf(stderr, "vdp: error: device arena full allocating %zu bytes for %s (%zu of %zu used)\n", bytes, what,
            a->used, a->cap);
    exit(1);
  }
  a->used = off + bytes;
  if (a->used > a->peak) a->peak = a->used;
  return a->base + off;
}
extern "C" size_t vdp_arena_mark(const VdpArena *a) { return a->used; }
extern "C" void vdp_arena_release(VdpArena *a, size_t mark) {
  if (mark <= a->used) a->used = mark;
}
// cudaFree on the device that holds p (the calling thread may be on another one); errors are returned.
static cudaError_t free_on_device(void *p, int dev) {
  int cur = -1;
  cudaError_t e = cudaGetDevice(&cur);
  if (e != cudaSuccess) return e;
  if (dev < 0 || dev == cur) return cudaFree(p);
  if ((e = cudaSetDevice(dev)) != cudaSuccess) return e;
  e = cudaFree(p);
  cudaError_t r = cudaSetDevice(cur);
  return e != cudaSuccess ? e : r;
}
// The device of a device pointer (-1 when unknown: then the current device frees it).
static int device_of(const void *p) {
  cudaPointerAttributes at;
  if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return at.type == cudaMemoryTypeDevice ? at.device : -1;
}

extern "C" void vdp_arena_destroy(VdpArena *a) {
  if (a->base) free_on_device(a->base, device_of(a->base));  // any thread may destroy it
  memset(a, 0, sizeof *a);
}
extern "C" void vdp_cuda_upload(void *dst, const void *src, size_t bytes) {
  cudaStream_t s = cur_stream();
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  CK(cudaStreamSynchronize(s));
}
extern "C" void vdp_cuda_download(void *dst, const void *src, size_t bytes) {
  cudaStream_t s = cur_stream();
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
}

// Internal scratch (GroupNorm partial statistics, cross-attention projections), one per thread: grown on
// demand. Growing frees the old buffer after a device synchronisation, so ops already queued that use it
// are finished.
static void *workspace(size_t bytes) {
  ThreadState &t = ts();
  if (bytes > t.ws_size) {
    ts_check_device(t, "growing the scratch workspace");
    if (t.ws) {
      CK(cudaDeviceSynchronize());
      CK(cudaFree(t.ws));
      t.ws = NULL, t.ws_size = 0;
    }
    size_t sz = std::max(bytes, (size_t)1 << 20);
    CK(cudaMalloc(&t.ws, sz));
    t.ws_size = sz;
  }
  return t.ws;
}

// Per-device caches. Several threads may fill an entry at once: they store the same value.
static std::atomic<int> g_smem_optin[kMaxDevices];  // 0 = not asked yet
static int max_smem_optin() {
  const int dev = ts().dev;
  int v = g_smem_optin[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    CK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    g_smem_optin[dev].store(v, std::memory_order_relaxed);
  }
  return v;
}

// A kernel's dynamic shared-memory limit (cudaFuncAttributeMaxDynamicSharedMemorySize) is set per device,
// raised only when a launch needs more than what is set. The fast path is one atomic load; raising is
// locked so that two threads on one device cannot lower it (set 120 KiB, then a late 100 KiB).
struct SmemAttr {
  std::atomic<size_t> set[kMaxDevices];  // bytes set on each device, 0 = never
};
static std::mutex g_attr_mu;
template <typename Kernel>
static void ensure_smem(SmemAttr &a, Kernel *fn, size_t smem) {
  const int dev = ts().dev;
  if (a.set[dev].load(std::memory_order_acquire) >= smem) return;
  std::lock_guard<std::mutex> lk(g_attr_mu);
  if (a.set[dev].load(std::memory_order_relaxed) >= smem) return;
  CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  a.set[dev].store(smem, std::memory_order_release);
}

static inline unsigned grid1d(int64_t n, int threads, int64_t cap = 1 << 20) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return (unsigned)std::min(b, cap);
}

// ===================================================================================================
// 2. PTX helpers. All need sm_80+ (ldmatrix sm_75, cp.async and m16n8k16 sm_80).
// ===================================================================================================
#ifndef VDP_SIMT
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 4 8x8 b16 matrices; lane l supplies the address of row (l & 7) of matrix (l >> 3). Rows: 16 bytes, aligned.
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// D(16x8 f32) += A(16x16 f16, row) · B(16x8 f16, col)
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 16-byte async copy global -> shared; src_bytes < 16 zero-fills the rest (0 = write zeros, read nothing).
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes));
}
// "memory" clobbers: the compiler must not move ordinary shared-memory accesses across a commit / wait
// (every consumer also sits behind a __syncthreads, which is a compiler barrier too; this is belt and braces).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#else
// Host SIMT emulator (test/simt): the same instructions computed from their PTX definitions, with the
// caller's file:line for the emulator's checks (alignment, shared-memory addresses, group counts).
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p, SIMT_WHERE) {
  simt::ldmatrix(r, p, 4, false, SIMT_AT);
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p, SIMT_WHERE) {
  simt::ldmatrix(r, p, 4, true, SIMT_AT);
}
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, SIMT_WHERE) {
  simt::mma_m16n8k16(d, a, b0, b1, SIMT_AT);
}
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes, SIMT_WHERE) {
  simt::cp_async(smem, gmem, src_bytes, SIMT_AT);
}
__device__ __forceinline__ void cp_async_commit(SIMT_WHERE) { simt::cp_async_commit(SIMT_AT); }
template <int N>
__device__ __forceinline__ void cp_async_wait(SIMT_WHERE) {
  simt::cp_async_wait(N, SIMT_AT);
}
#endif
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&h);
}
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float apply_act(float v, int act) {
  switch (act) {
    case VDPC_ACT_SILU: return silu_f(v);
    case VDPC_ACT_GELU: return gelu_erf(v);
    case VDPC_ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    default: return v;
  }
}

// ===================================================================================================
// 3. Implicit-GEMM convolution / linear
// ===================================================================================================
// Algorithm: out[co, pixel] = Σ_tap Σ_ci Wt[tap][co][ci] · in[ci, pixel·stride + tap_offset], i.e. a GEMM
// with M = output channels (A = weights, tap-major), N = output pixels, K = taps × input channels.
// Tiling: a block (256 threads, 8 warps as 2 (M) × 4 (N), warp tile 64×32, mma m16n8k16) computes
// BM = 128 channels × BN = 128 pixels, the pixels being a TH × TW rectangle of one image (TH·TW <= 128,
// chosen per shape on the host). The K loop walks chunks of CK = 32 input channels; for each chunk the
// input "halo" (the HP × WP input rectangle the tile reads, zero outside the image) is stored in shared
// memory pixel-major [pixel][channel] so that every tap (ky, kx) is just a shift of the ldmatrix row
// addresses — one halo load serves all KH·KW taps. Steps are (chunk, tap) pairs: the weight tile of
// step s+2 is in flight (cp.async, 3 stages) while step s computes; the next chunk's halo is read into
// registers (one 256-pixel round per tap) during the current chunk's taps and stored into the second
// halo buffer after the step's MMAs. Epilogue: the fp32 tile goes through shared memory, then
// y = act(acc + bias + chan_add) + res is written with coalesced stores (pixel-contiguous for convs,
// channel-contiguous for linear layers).
// Linear layers use the same kernel with one tap, images = 1, H = 1, W = tokens: the "halo" is then
// simply 128 token rows of x [tokens][K] (16-byte loads when K % 8 == 0). GEGLU: a block covers 64
// output features and loads the 64 matching value rows and 64 gate rows as its 128 A rows.
// Edges: out-of-range channels/pixels load zeros (cp.async zero-fill / guarded loads) and are not stored.
namespace ig {
constexpr int BM = 128, BN = 128, CK = 32, CKP = CK + 8, NT = 256, AST = 3, SCP = BN + 1;
}

struct IgParams {
  const __half *x, *w, *bias, *chan_add, *res;
  __half *y;
  int nimg, cin, H, W;           // input: images, channels, rows, columns
  long long sN, sC, sY, sX;      // input strides (elements)
  int cout;                      // output channels (GEGLU: output features = half the weight rows)
  int HO, WO;
  long long oN, oC, oY, oX;      // output (and res) strides
  long long caN, caY;            // chan_add element [img, oy, co] at img*caN + oy*caY + co
  int KH, KW, stride, pt, pl;
  int ldw;                       // weight row length (>= cin)
  int a_vec, b_vec;              // 16-byte load paths allowed for weights / input
  int TH, TW, HP, WP, NPH, R;    // output tile, input halo, halo rounds of 256 pixels (R <= KH*KW)
  int tiles_x, tiles_y;
  int act, geglu;
};

__global__ void __launch_bounds__(256) igemm_kernel(const IgParams p) {
  using namespace ig;
  extern __shared__ __align__(16) unsigned char smem[];
  __half *sA = reinterpret_cast<__half *>(smem);  // [AST][BM][CKP]
  __half *sB = sA + AST * BM * CKP;                // [2][NPH][CKP]
  float *sC = reinterpret_cast<float *>(smem);     // epilogue: [BM][SCP], reuses everything
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;

  int bx = blockIdx.x;
  const int txi = bx % p.tiles_x;
  bx /= p.tiles_x;
  const int tyi = bx % p.tiles_y;
  const int img = bx / p.tiles_y;
  const int oy0 = tyi * p.TH, ox0 = txi * p.TW;
  const int mt = blockIdx.y;
  const int taps = p.KH * p.KW;
  const int nchunks = (p.cin + CK - 1) / CK;
  const int S = nchunks * taps;
  const long long Mphys = p.geglu ? 2LL * p.cout : (long long)p.cout;

  // --- weight (A) loader: 512 pieces of 16 bytes per step, 2 per thread: row v = piece / 4, col = 8·(piece % 4)
  int arow[2];
  bool aok[2];
#pragma unroll
  for (int q = 0; q < 2; q++) {
    int v = (tid + NT * q) >> 2;
    if (p.geglu) {
      int o = mt * 64 + (v & 63);
      aok[q] = o < p.cout;
      arow[q] = v < 64 ? o : p.cout + o;
    } else {
      int o = mt * BM + v;
      aok[q] = o < p.cout;
      arow[q] = o;
    }
  }
  auto load_A = [&](int s, int stage) {
    const int c = s / taps, t = s - c * taps, ci0 = c * CK;
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const int piece = tid + NT * q, v = piece >> 2, col = (piece & 3) * 8, ci = ci0 + col;
      __half *dst = sA + (stage * BM + v) * CKP + col;
      const __half *src = p.w + ((long long)t * Mphys + arow[q]) * p.ldw + ci;
      if (p.a_vec) {
        const bool ok = aok[q] && ci < p.ldw;
        cp_async16(dst, ok ? (const void *)src : (const void *)p.w, ok ? 16 : 0);
      } else {
        __align__(16) __half tmp[8];
#pragma unroll
        for (int e = 0; e < 8; e++) tmp[e] = (aok[q] && ci + e < p.cin) ? src[e] : __float2half(0.f);
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(tmp);
      }
    }
  };

  // --- input halo (B) loader: round r covers halo pixels r*256 + tid; a thread reads the 32 channels of
  // its pixel (coalesced across threads along the image row) into 16 registers, later stored as 4 × 16 B.
  uint32_t breg[16];
  auto load_halo = [&](int r, int chunk) {
    const int ph = r * NT + tid;
    const int ci0 = chunk * CK;
#pragma unroll
    for (int e = 0; e < 16; e++) breg[e] = 0;
    if (ph >= p.NPH) return;
    const int hy = ph / p.WP, hx = ph - hy * p.WP;
    const int iy = oy0 * p.stride - p.pt + hy, ix = ox0 * p.stride - p.pl + hx;
    if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) return;
    const __half *src = p.x + (long long)img * p.sN + (long long)iy * p.sY + (long long)ix * p.sX;
    if (p.b_vec) {  // channels contiguous (sC == 1), cin % 8 == 0, 16-byte aligned
#pragma unroll
      for (int j = 0; j < 4; j++) {
        if (ci0 + 8 * j < p.cin) {
          uint4 u = __ldg(reinterpret_cast<const uint4 *>(src + ci0 + 8 * j));
          breg[4 * j] = u.x;
          breg[4 * j + 1] = u.y;
          breg[4 * j + 2] = u.z;
          breg[4 * j + 3] = u.w;
        }
      }
    } else {
      const unsigned short *s16 = reinterpret_cast<const unsigned short *>(src);
#pragma unroll
      for (int e = 0; e < 32; e += 2) {
        const int ci = ci0 + e;
        uint32_t lo = ci < p.cin ? __ldg(s16 + (long long)ci * p.sC) : 0u;
        uint32_t hi = ci + 1 < p.cin ? __ldg(s16 + (long long)(ci + 1) * p.sC) : 0u;
        breg[e >> 1] = lo | (hi << 16);
      }
    }
  };
  auto store_halo = [&](int r, int buf) {
    const int ph = r * NT + tid;
    if (ph >= p.NPH) return;
    uint4 *dst = reinterpret_cast<uint4 *>(sB + ((long long)buf * p.NPH + ph) * CKP);
#pragma unroll
    for (int j = 0; j < 4; j++) dst[j] = make_uint4(breg[4 * j], breg[4 * j + 1], breg[4 * j + 2], breg[4 * j + 3]);
  };

  // --- per-lane ldmatrix row bases (fixed over the K loop)
  // B: n8-tile pairs j = 0,1 of this warp's 32 pixels; lane supplies pixel n = (lane&7) + 8·(lane>>4).
  int hb[2];
#pragma unroll
  for (int j = 0; j < 2; j++) {
    const int n = wn * 32 + j * 16 + (lane & 7) + ((lane >> 4) << 3);
    if (n < p.TH * p.TW) {
      const int ty = n / p.TW, tx = n - ty * p.TW;
      hb[j] = ty * p.stride * p.WP + tx * p.stride;
    } else {
      hb[j] = 0;  // a valid smem row; the result column is never stored
    }
  }
  const int bcol = ((lane >> 3) & 1) * 8;
  const int arow_l = wm * 64 + (lane & 15), acol = (lane >> 4) * 8;

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

  // --- prologue: weights of steps 0, 1 in flight; halo of chunk 0 stored synchronously
  load_A(0, 0);
  cp_async_commit();
  if (S > 1) load_A(1, 1);
  cp_async_commit();
  for (int r = 0; r < p.R; r++) {
    load_halo(r, 0);
    store_halo(r, 0);
  }

  for (int s = 0; s < S; s++) {
    const int c = s / taps, t = s - c * taps;
    cp_async_wait<1>();  // this thread's copies for step s have landed
    __syncthreads();     // ... everyone's, and the halo of chunk c is stored; stage (s+2)%3 is free
    if (s + 2 < S) load_A(s + 2, (s + 2) % AST);
    cp_async_commit();
    const bool pf = (c + 1 < nchunks) && (t < p.R);
    if (pf) load_halo(t, c + 1);

    const __half *a_s = sA + (s % AST) * BM * CKP;
    const __half *b_s = sB + (long long)(c & 1) * p.NPH * CKP;
    const int ky = t / p.KW, kx = t - ky * p.KW;
    const int toff = ky * p.WP + kx;
#pragma unroll
    for (int kk = 0; kk < CK / 16; kk++) {
      uint32_t af[4][4], bf[2][4];
#pragma unroll
      for (int i = 0; i < 4; i++) ldsm_x4(af[i], a_s + (arow_l + i * 16) * CKP + kk * 16 + acol);
#pragma unroll
      for (int j = 0; j < 2; j++) ldsm_x4(bf[j], b_s + (hb[j] + toff) * CKP + kk * 16 + bcol);
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mma16816(acc[i][j], af[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
    }
    if (pf) store_halo(t, (c + 1) & 1);
  }

  // --- epilogue through shared memory
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int m = wm * 64 + i * 16 + (lane >> 2), n = wn * 32 + j * 8 + (lane & 3) * 2;
      sC[m * SCP + n] = acc[i][j][0];
      sC[m * SCP + n + 1] = acc[i][j][1];
      sC[(m + 8) * SCP + n] = acc[i][j][2];
      sC[(m + 8) * SCP + n + 1] = acc[i][j][3];
    }
  __syncthreads();
  const int Mt = p.geglu ? 64 : BM;
  const int npix = p.TH * p.TW;
  for (int e = tid; e < Mt * BN; e += NT) {
    int m, n;
    if (p.oX == 1) {
      n = e % BN;
      m = e / BN;
    } else {
      m = e % Mt;
      n = e / Mt;
    }
    if (n >= npix) continue;
    const int ty = n / p.TW, tx = n - ty * p.TW;
    const int oy = oy0 + ty, ox = ox0 + tx;
    const int co = mt * Mt + m;
    if (oy >= p.HO || ox >= p.WO || co >= p.cout) continue;
    float v = sC[m * SCP + n];
    if (p.bias) v += __half2float(p.bias[co]);
    if (p.geglu) {
      float g = sC[(m + 64) * SCP + n];
      if (p.bias) g += __half2float(p.bias[p.cout + co]);
      v *= gelu_erf(g);
    }
    if (p.chan_add) v += __half2float(p.chan_add[(long long)img * p.caN + (long long)oy * p.caY + co]);
    v = apply_act(v, p.act);
    const long long off = (long long)img * p.oN + (long long)co * p.oC + (long long)oy * p.oY + (long long)ox * p.oX;
    if (p.res) v += __half2float(p.res[off]);
    p.y[off] = __float2half_rn(v);
  }
}

static size_t ig_smem(int nph) {
  using namespace ig;
  size_t pipe = (size_t)AST * BM * CKP * 2 + (size_t)2 * nph * CKP * 2;
  size_t epi = (size_t)BM * SCP * 4;
  return std::max(pipe, epi);
}

// Chooses TH × TW (TH·TW <= 128) minimising blocks × (128 + halo/4) under the smem and round limits.
static void ig_choose_tile(IgParams &p) {
  const int taps = p.KH * p.KW, limit = max_smem_optin();
  double best = 1e300;
  int cand[32][2], nc = 0;
  for (int tw = 128; tw >= 1; tw /= 2) {  // full tiles, then half tiles for small-smem GPUs (stride 2)
    cand[nc][0] = 128 / tw;
    cand[nc][1] = tw;
    nc++;
  }
  for (int tw = 64; tw >= 4; tw /= 2) {
    cand[nc][0] = 64 / tw;
    cand[nc][1] = tw;
    nc++;
  }
  if (p.HO < 128) {  // a tile as tall as the image (e.g. all frames of a temporal conv)
    cand[nc][0] = p.HO;
    cand[nc][1] = 128 / p.HO;
    nc++;
  }
  if (p.WO < 128) {
    cand[nc][0] = 128 / p.WO;
    cand[nc][1] = p.WO;
    nc++;
  }
  for (int i = 0; i < nc; i++) {
    const int th = cand[i][0], tw = cand[i][1];
    const int hp = (th - 1) * p.stride + p.KH, wp = (tw - 1) * p.stride + p.KW, nph = hp * wp;
    const int r = (nph + ig::NT - 1) / ig::NT;
    if (r > taps || (int)ig_smem(nph) > limit) continue;
    const double tiles = (double)((p.HO + th - 1) / th) * ((p.WO + tw - 1) / tw) * p.nimg;
    const double cost = tiles * (128.0 + 0.25 * nph);
    if (cost < best) {
      best = cost;
      p.TH = th;
      p.TW = tw;
      p.HP = hp;
      p.WP = wp;
      p.NPH = nph;
      p.R = r;
    }
  }
  if (best == 1e300) fail_shape("conv", "no tile fits the shared memory");
}

static void ig_launch(IgParams &p, const char *name) {
  p.tiles_x = (p.WO + p.TW - 1) / p.TW;
  p.tiles_y = (p.HO + p.TH - 1) / p.TH;
  const long long bx = (long long)p.tiles_x * p.tiles_y * p.nimg;
  const int Mt = p.geglu ? 64 : ig::BM;
  const long long by = (p.cout + Mt - 1) / Mt;
  if (bx > 2147483647LL || by > 65535) fail_shape(name, "grid too large");
  const size_t smem = ig_smem(p.NPH);
  static SmemAttr attr;
  ensure_smem(attr, igemm_kernel, smem);
  VDP_LAUNCH(igemm_kernel, dim3((unsigned)bx, (unsigned)by), ig::NT, smem, cur_stream())(p);
  OPCHECK(name);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" void vdpc_linear(void *y, const void *x, const void *w, const void *b, int M, int K, int N, int act,
                            const void *res) {
  if (M <= 0 || N <= 0 || K <= 0) fail_shape("linear", "M, K, N must be positive");
  IgParams p;
  memset(&p, 0, sizeof p);
  p.x = (const __half *)x;
  p.w = (const __half *)w;
  p.bias = (const __half *)b;
  p.res = (const __half *)res;
  p.y = (__half *)y;
  p.nimg = 1;
  p.cin = K;
  p.H = 1;
  p.W = M;
  p.sN = 0;
  p.sC = 1;
  p.sY = 0;
  p.sX = K;
  p.cout = N;
  p.HO = 1;
  p.WO = M;
  p.oN = 0;
  p.oC = 1;
  p.oY = 0;
  p.oX = N;
  p.KH = p.KW = p.stride = 1;
  p.ldw = K;
  p.a_vec = (K % 8 == 0) && aligned16(w);
  p.b_vec = (K % 8 == 0) && aligned16(x);
  p.TH = 1;
  p.TW = 128;
  p.HP = 1;
  p.WP = 128;
  p.NPH = 128;
  p.R = 1;
  p.geglu = act == VDPC_ACT_GEGLU;
  p.act = p.geglu ? VDPC_ACT_NONE : act;
  ig_launch(p, "linear");
}

extern "C" int64_t vdpc_conv_weight_elems(int cout, int cin, int kh, int kw) {
  return (int64_t)kh * kw * cout * ((cin + 7) / 8 * 8);
}

// w [cout][cin][kh][kw] -> wt [kh*kw][cout][cin8] (zero padded): one thread per destination element.
__global__ void prep_weight_kernel(__half *wt, const __half *w, int cout, int cin, int taps, int cin8) {
  const long long n = (long long)taps * cout * cin8;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const int ci = (int)(i % cin8);
    const long long r = i / cin8;
    const int co = (int)(r % cout), t = (int)(r / cout);
    wt[i] = ci < cin ? w[((long long)co * cin + ci) * taps + t] : __float2half(0.f);
  }
}
extern "C" void vdpc_conv_prepare_weight(void *wt, const void *w, int cout, int cin, int kh, int kw) {
  const int64_t n = vdpc_conv_weight_elems(cout, cin, kh, kw);
  VDP_LAUNCH(prep_weight_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)wt, (const __half *)w, cout, cin, kh * kw,
                                                               (cin + 7) / 8 * 8);
  OPCHECK("conv_prepare_weight");
}

extern "C" void vdpc_conv2d(void *y, const void *x, const void *wt, const void *b, int n, int cin, int h, int w,
                            int cout, int kh, int kw, int stride, int pt, int pl, int pb, int pr,
                            const void *chan_add, const void *res) {
  const int ho = (h + pt + pb - kh) / stride + 1, wo = (w + pl + pr - kw) / stride + 1;
  if (n <= 0 || cin <= 0 || cout <= 0 || ho <= 0 || wo <= 0 || stride < 1 || stride > 2 || kh < 1 || kw < 1)
    fail_shape("conv2d", "bad sizes (stride must be 1 or 2)");
  IgParams p;
  memset(&p, 0, sizeof p);
  p.x = (const __half *)x;
  p.w = (const __half *)wt;
  p.bias = (const __half *)b;
  p.chan_add = (const __half *)chan_add;
  p.res = (const __half *)res;
  p.y = (__half *)y;
  p.nimg = n;
  p.cin = cin;
  p.H = h;
  p.W = w;
  p.sN = (long long)cin * h * w;
  p.sC = (long long)h * w;
  p.sY = w;
  p.sX = 1;
  p.cout = cout;
  p.HO = ho;
  p.WO = wo;
  p.oN = (long long)cout * ho * wo;
  p.oC = (long long)ho * wo;
  p.oY = wo;
  p.oX = 1;
  p.caN = cout;
  p.caY = 0;
  p.KH = kh;
  p.KW = kw;
  p.stride = stride;
  p.pt = pt;
  p.pl = pl;
  p.ldw = (cin + 7) / 8 * 8;
  p.a_vec = aligned16(wt);
  p.b_vec = 0;
  ig_choose_tile(p);
  ig_launch(p, "conv2d");
}

extern "C" void vdpc_conv_temporal(void *y, const void *x, const void *wt, const void *b, int nb, int nf, int cin,
                                   int hw, int cout, const void *chan_add, const void *res) {
  if (nb <= 0 || nf <= 0 || cin <= 0 || hw <= 0 || cout <= 0) fail_shape("conv_temporal", "bad sizes");
  // A video is an "image" whose rows are frames (row stride = one frame) and columns are pixels.
  IgParams p;
  memset(&p, 0, sizeof p);
  p.x = (const __half *)x;
  p.w = (const __half *)wt;
  p.bias = (const __half *)b;
  p.chan_add = (const __half *)chan_add;
  p.res = (const __half *)res;
  p.y = (__half *)y;
  p.nimg = nb;
  p.cin = cin;
  p.H = nf;
  p.W = hw;
  p.sN = (long long)nf * cin * hw;
  p.sC = hw;
  p.sY = (long long)cin * hw;
  p.sX = 1;
  p.cout = cout;
  p.HO = nf;
  p.WO = hw;
  p.oN = (long long)nf * cout * hw;
  p.oC = hw;
  p.oY = (long long)cout * hw;
  p.oX = 1;
  p.caN = (long long)nf * cout;
  p.caY = cout;
  p.KH = 3;
  p.KW = 1;
  p.stride = 1;
  p.pt = 1;
  p.pl = 0;
  p.ldw = (cin + 7) / 8 * 8;
  p.a_vec = aligned16(wt);
  p.b_vec = 0;
  ig_choose_tile(p);
  ig_launch(p, "conv_temporal");
}

// ===================================================================================================
// 4. Attention
// ===================================================================================================
struct AttnParams {
  __half *o;
  const __half *q, *k, *v;
  long long o_seq, o_row, q_seq, q_row, k_seq, k_row, v_seq, v_row;
  int nseq, lq, lk, heads, hd;
  float scale;
};

// Flash attention (FlashAttention-2 style), head_dim 64. Block: 8 warps, 128 queries (16 per warp) of one
// (sequence, head). Q fragments live in registers; K and V tiles of 64 keys are double-buffered in shared
// memory with cp.async. Per tile: S = Q·Kᵀ (mma, K rows via ldmatrix), online softmax in fp32 on the
// accumulator fragments (row max / sum over the 4 lanes of a quad), P rounded to fp16 and reused directly
// as the A operand of O += P·V (V via ldmatrix.trans). No Lq×Lk matrix exists anywhere. Tails: query rows
// beyond lq load zeros and are not stored; keys beyond lk load zeros and get score −inf.
namespace fa {
constexpr int HD = 64, BQ = 128, BKV = 64, P = HD + 8;  // 8 warps × 16 query rows
}
__global__ void __launch_bounds__(256) flash_attn_kernel(const AttnParams p) {
  using namespace fa;
  extern __shared__ __align__(16) unsigned char smem[];
  __half *sQ = reinterpret_cast<__half *>(smem);  // [BQ][P]
  __half *sK = sQ + BQ * P;                        // [2][BKV][P]
  __half *sV = sK + 2 * BKV * P;                   // [2][BKV][P]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qblocks = (p.lq + BQ - 1) / BQ;
  int bx = blockIdx.x;
  const int qb = bx % qblocks;
  bx /= qblocks;
  const int h = bx % p.heads, sq = bx / p.heads;
  const int q0 = qb * BQ;
  const __half *qg = p.q + sq * p.q_seq + h * HD;
  const __half *kg = p.k + sq * p.k_seq + h * HD;
  const __half *vg = p.v + sq * p.v_seq + h * HD;

  // Q tile: 128 rows × 8 pieces of 16 B = 1024 pieces, 4 per thread
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int piece = tid + 256 * i, r = piece >> 3, c = (piece & 7) * 8;
    const bool ok = q0 + r < p.lq;
    cp_async16(sQ + r * P + c, ok ? (const void *)(qg + (long long)(q0 + r) * p.q_row + c) : (const void *)p.q,
               ok ? 16 : 0);
  }
  auto load_kv = [&](int tile, int buf) {
    const int k0 = tile * BKV;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int piece = tid + 256 * i, r = piece >> 3, c = (piece & 7) * 8;
      const bool ok = k0 + r < p.lk;
      cp_async16(sK + (buf * BKV + r) * P + c, ok ? (const void *)(kg + (long long)(k0 + r) * p.k_row + c) : (const void *)p.k,
                 ok ? 16 : 0);
      cp_async16(sV + (buf * BKV + r) * P + c, ok ? (const void *)(vg + (long long)(k0 + r) * p.v_row + c) : (const void *)p.v,
                 ok ? 16 : 0);
    }
  };
  const int ntiles = (p.lk + BKV - 1) / BKV;
  load_kv(0, 0);
  cp_async_commit();  // group 0: Q + tile 0

  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) o[i][e] = 0.f;
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
  const float sl2 = p.scale * 1.4426950408889634f;  // softmax in base 2

  for (int j = 0; j < ntiles; j++) {
    const int buf = j & 1;
    cp_async_wait<0>();
    __syncthreads();  // tile j (and Q) visible; everyone is done with tile j-1's buffer
    if (j + 1 < ntiles) load_kv(j + 1, buf ^ 1);
    cp_async_commit();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; kk++) ldsm_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * P + kk * 16 + (lane >> 4) * 8);
    }
    // S = Q Kᵀ: 16 × 64 per warp = 8 n8-tiles
    float s[BKV / 8][4];
#pragma unroll
    for (int i = 0; i < BKV / 8; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) s[i][e] = 0.f;
    const __half *kb = sK + buf * BKV * P;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
      for (int np = 0; np < BKV / 16; np++) {
        uint32_t b[4];
        ldsm_x4(b, kb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * P + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816(s[2 * np], qf[kk], b[0], b[1]);
        mma16816(s[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }
    // online softmax; this lane holds rows r0 = lane/4 (e = 0,1) and r0 + 8 (e = 2,3)
    const int kbase = j * BKV + (lane & 3) * 2;
    float mx[2] = {mrow[0], mrow[1]};
#pragma unroll
    for (int i = 0; i < BKV / 8; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = kbase + i * 8 + (e & 1);
        s[i][e] = key < p.lk ? s[i][e] * sl2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[i][e]);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = exp2f(mrow[r] - mx[r]);  // mrow = -inf on the first tile: exp2(-inf) = 0, o and l are 0 anyway
      mrow[r] = mx[r];
    }
    float ls[2] = {0.f, 0.f};
#pragma unroll
    for (int i = 0; i < BKV / 8; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[i][e] = exp2f(s[i][e] - mx[e >> 1]);
        ls[e >> 1] += s[i][e];
      }
#pragma unroll
    for (int r = 0; r < 2; r++) lrow[r] = lrow[r] * corr[r] + ls[r];  // per-lane partial; reduced at the end
#pragma unroll
    for (int i = 0; i < HD / 8; i++) {
      o[i][0] *= corr[0];
      o[i][1] *= corr[0];
      o[i][2] *= corr[1];
      o[i][3] *= corr[1];
    }
    // O += P V
    const __half *vb = sV + buf * BKV * P;
#pragma unroll
    for (int kk = 0; kk < BKV / 16; kk++) {
      uint32_t a[4];
      a[0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t b[4];
        ldsm_x4_t(b, vb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * P + dp * 16 + (lane >> 4) * 8);
        mma16816(o[2 * dp], a, b[0], b[1]);
        mma16816(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }
  // final normalisation: the row sum is spread over the 4 lanes of the quad
#pragma unroll
  for (int r = 0; r < 2; r++) {
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
  }
  const int r0 = q0 + warp * 16 + (lane >> 2);
  __half *og = p.o + sq * p.o_seq + h * HD;
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    const int row = r0 + rr * 8;
    if (row >= p.lq) continue;
    const float inv = 1.0f / lrow[rr];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) {
      const int d = i * 8 + (lane & 3) * 2;
      *reinterpret_cast<__half2 *>(og + (long long)row * p.o_row + d) =
          __floats2half2_rn(o[i][rr * 2] * inv, o[i][rr * 2 + 1] * inv);
    }
  }
}

// Warp-per-query attention (any head_dim <= 512, fp32 math; the path for temporal attention over F <= 32
// frames, the tiny models' head dims 4 / 8, CLIP's 80 and the VAE's 512). Block: 4 warps × 4 queries of
// one (sequence, head) = 16 queries; keys in chunks of KC (K and V converted to fp32 in shared memory,
// K rows padded by one float so that lane j reading key j is conflict-free). Per chunk: lane j computes
// score j, the warp takes the chunk max / sum with shuffles (online softmax), then each lane accumulates
// the output dims d = lane + 32 i with the probabilities broadcast by shuffles.
namespace aw {
constexpr int NW = 4, QPW = 4, MAXD = 16;  // MAXD · 32 = 512 = largest head_dim
}
__global__ void __launch_bounds__(128) attn_warp_kernel(const AttnParams p, int KC) {
  using namespace aw;
  extern __shared__ float fsm[];
  const int hd = p.hd, kp = hd + 1;
  float *sK = fsm;                  // [KC][hd+1]
  float *sV = sK + KC * kp;         // [KC][hd]
  float *sQ = sV + KC * hd;         // [NW*QPW][hd]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qpb = NW * QPW, qblocks = (p.lq + qpb - 1) / qpb;
  long long bx = blockIdx.x;
  const int qb = (int)(bx % qblocks);
  bx /= qblocks;
  const int h = (int)(bx % p.heads), sq = (int)(bx / p.heads);
  const int q0 = qb * qpb;
  const __half *qg = p.q + sq * p.q_seq + (long long)h * hd;
  const __half *kg = p.k + sq * p.k_seq + (long long)h * hd;
  const __half *vg = p.v + sq * p.v_seq + (long long)h * hd;
  for (int i = tid; i < qpb * hd; i += blockDim.x) {
    const int r = i / hd, d = i - r * hd;
    sQ[i] = q0 + r < p.lq ? __half2float(qg[(long long)(q0 + r) * p.q_row + d]) * p.scale : 0.f;
  }
  float m[QPW], l[QPW], o[QPW][MAXD];
#pragma unroll
  for (int a = 0; a < QPW; a++) {
    m[a] = -INFINITY;
    l[a] = 0.f;
#pragma unroll
    for (int i = 0; i < MAXD; i++) o[a][i] = 0.f;
  }
  for (int k0 = 0; k0 < p.lk; k0 += KC) {
    const int kc = min(KC, p.lk - k0);
    __syncthreads();  // previous chunk consumed (and sQ written on the first pass)
    for (int i = tid; i < kc * hd; i += blockDim.x) {
      const int r = i / hd, d = i - r * hd;
      sK[r * kp + d] = __half2float(kg[(long long)(k0 + r) * p.k_row + d]);
      sV[r * hd + d] = __half2float(vg[(long long)(k0 + r) * p.v_row + d]);
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < QPW; a++) {
      const float *qv = sQ + (warp * QPW + a) * hd;
      float sc = -INFINITY;
      if (lane < kc) {
        sc = 0.f;
        const float *kr = sK + lane * kp;
        for (int d = 0; d < hd; d++) sc += qv[d] * kr[d];
      }
      float mx = sc;
#pragma unroll
      for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float mnew = fmaxf(m[a], mx);
      const float corr = expf(m[a] - mnew);  // m = -inf on the first chunk -> 0
      const float pj = lane < kc ? expf(sc - mnew) : 0.f;
      float ps = pj;
#pragma unroll
      for (int off = 16; off; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
      l[a] = l[a] * corr + ps;
      m[a] = mnew;
#pragma unroll
      for (int i = 0; i < MAXD; i++) o[a][i] *= corr;
      for (int jj = 0; jj < kc; jj++) {
        const float pb = __shfl_sync(0xffffffffu, pj, jj);
        const float *vr = sV + jj * hd;
#pragma unroll
        for (int i = 0; i < MAXD; i++) {
          const int d = lane + 32 * i;
          if (d < hd) o[a][i] += pb * vr[d];
        }
      }
    }
  }
#pragma unroll
  for (int a = 0; a < QPW; a++) {
    const int row = q0 + warp * QPW + a;
    if (row >= p.lq) continue;
    __half *og = p.o + sq * p.o_seq + (long long)row * p.o_row + (long long)h * hd;
    const float inv = 1.0f / l[a];
#pragma unroll
    for (int i = 0; i < MAXD; i++) {
      const int d = lane + 32 * i;
      if (d < hd) og[d] = __float2half_rn(o[a][i] * inv);
    }
  }
}

extern "C" void vdpc_attention(void *o, int64_t o_seq, int64_t o_row, const void *q, int64_t q_seq, int64_t q_row,
                               const void *k, int64_t k_seq, int64_t k_row, const void *v, int64_t v_seq,
                               int64_t v_row, int nseq, int lq, int lk, int heads, int hd, float scale) {
  if (nseq <= 0 || lq <= 0 || lk <= 0 || heads <= 0 || hd <= 0) fail_shape("attention", "sizes must be positive");
  if (hd > 32 * aw::MAXD) fail_shape("attention", "head_dim > 512");
  AttnParams p;
  p.o = (__half *)o;
  p.q = (const __half *)q;
  p.k = (const __half *)k;
  p.v = (const __half *)v;
  p.o_seq = o_seq;
  p.o_row = o_row;
  p.q_seq = q_seq;
  p.q_row = q_row;
  p.k_seq = k_seq;
  p.k_row = k_row;
  p.v_seq = v_seq;
  p.v_row = v_row;
  p.nseq = nseq;
  p.lq = lq;
  p.lk = lk;
  p.heads = heads;
  p.hd = hd;
  p.scale = scale;
  const bool strides8 = o_seq % 8 == 0 && o_row % 8 == 0 && q_seq % 8 == 0 && q_row % 8 == 0 && k_seq % 8 == 0 &&
                        k_row % 8 == 0 && v_seq % 8 == 0 && v_row % 8 == 0;
  const bool tc = hd == fa::HD && lk > 32 && strides8 && aligned16(o) && aligned16(q) && aligned16(k) && aligned16(v);
  if (tc) {
    const long long blocks = (long long)((lq + fa::BQ - 1) / fa::BQ) * heads * nseq;
    if (blocks > 2147483647LL) fail_shape("attention", "grid too large");
    const size_t smem = (size_t)(fa::BQ + 4 * fa::BKV) * fa::P * 2;
    static SmemAttr attr;  // smem is a constant: set once per device
    ensure_smem(attr, flash_attn_kernel, smem);
    VDP_LAUNCH(flash_attn_kernel, (unsigned)blocks, 256, smem, cur_stream())(p);
    OPCHECK("attention (flash, head_dim 64)");
  } else {
    const int KC = std::max(1, std::min(32, 6144 / hd));
    const size_t smem = ((size_t)KC * (hd + 1) + (size_t)KC * hd + (size_t)aw::NW * aw::QPW * hd) * 4;
    static SmemAttr attr;
    if (smem > 48 * 1024) ensure_smem(attr, attn_warp_kernel, smem);
    const int qpb = aw::NW * aw::QPW;
    const long long blocks = (long long)((lq + qpb - 1) / qpb) * heads * nseq;
    if (blocks > 2147483647LL) fail_shape("attention", "grid too large");
    VDP_LAUNCH(attn_warp_kernel, (unsigned)blocks, 128, smem, cur_stream())(p, KC);
    OPCHECK("attention (warp per query)");
  }
}

// Broadcast of one row per context to rows_per_ctx rows, plus residual: y[r, c] = res[r, c] + o[r / rpc, c].
__global__ void bcast_rows_kernel(__half *y, const __half *res, const __half *o, long long rows, int C, long long rpc) {
  const long long n = rows * C;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / C;
    const int c = (int)(i - r * C);
    float v = __half2float(o[(r / rpc) * C + c]);
    if (res) v += __half2float(res[i]);
    y[i] = __float2half_rn(v);
  }
}
extern "C" void vdpc_cross_attn_1key(void *y, const void *res, const void *ctx, const void *wv, const void *wo,
                                     const void *bo, int nctx, int ctx_dim, int C, int64_t rows_per_ctx) {
  if (nctx <= 0 || ctx_dim <= 0 || C <= 0 || rows_per_ctx <= 0) fail_shape("cross_attn_1key", "bad sizes");
  // Two small GEMMs on the nctx context rows, then a broadcast: 256-byte aligned halves of the workspace.
  const size_t half_bytes = ((size_t)nctx * C * 2 + 255) & ~(size_t)255;
  char *ws = (char *)workspace(2 * half_bytes);
  __half *vv = (__half *)ws, *oo = (__half *)(ws + half_bytes);
  vdpc_linear(vv, ctx, wv, NULL, nctx, ctx_dim, C, VDPC_ACT_NONE, NULL);
  vdpc_linear(oo, vv, wo, bo, nctx, C, C, VDPC_ACT_NONE, NULL);
  const long long rows = (long long)nctx * rows_per_ctx;
  VDP_LAUNCH(bcast_rows_kernel, grid1d(rows * C, 256), 256, 0, cur_stream())((__half *)y, (const __half *)res, oo, rows, C,
                                                                      rows_per_ctx);
  OPCHECK("cross_attn_1key");
}

// ===================================================================================================
// 5. Normalisation
// ===================================================================================================
// Chan's parallel combination of (count, mean, M2) statistics — numerically stable for millions of values.
struct Stat {
  float n, mean, m2;
};
__device__ __forceinline__ Stat stat_combine(Stat a, Stat b) {
  const float n = a.n + b.n;
  if (n == 0.f) return a;
  const float d = b.mean - a.mean, fb = b.n / n;
  Stat r;
  r.n = n;
  r.mean = a.mean + d * fb;
  r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
  return r;
}
__device__ __forceinline__ Stat stat_shfl(Stat s, int off) {
  Stat o;
  o.n = __shfl_xor_sync(0xffffffffu, s.n, off);
  o.mean = __shfl_xor_sync(0xffffffffu, s.mean, off);
  o.m2 = __shfl_xor_sync(0xffffffffu, s.m2, off);
  return o;
}
// Block-wide combine (blockDim.x = 256); the result is valid in every thread.
__device__ Stat block_stat(Stat s) {
  __shared__ Stat part[8];
  __shared__ Stat total;
#pragma unroll
  for (int off = 16; off; off >>= 1) s = stat_combine(s, stat_shfl(s, off));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) part[warp] = s;
  __syncthreads();
  if (warp == 0) {
    Stat t = lane < (int)(blockDim.x >> 5) ? part[lane] : Stat{0.f, 0.f, 0.f};
#pragma unroll
    for (int off = 16; off; off >>= 1) t = stat_combine(t, stat_shfl(t, off));
    if (lane == 0) total = t;
  }
  __syncthreads();
  return total;
}
// Statistics of 8 values folded into s (one division per 8 values).
__device__ __forceinline__ void stat_add8(Stat &s, const float v[8], int cnt) {
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) sum += i < cnt ? v[i] : 0.f;
  const float mean = sum / cnt;
  float m2 = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) m2 += i < cnt ? (v[i] - mean) * (v[i] - mean) : 0.f;
  s = stat_combine(s, Stat{(float)cnt, mean, m2});
}
__device__ __forceinline__ void h8_to_f(const uint4 &u, float f[8]) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __half22float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

// GroupNorm, pass 1. Grid (splits, groups, rows = nb·nf); block 256. Each block reduces `chunk` consecutive
// elements of the contiguous slab x[row, g·cpg : (g+1)·cpg, :] (cpg·hw elements) to (n, mean, M2), with
// 16-byte loads when hw % 8 == 0; writes one Stat per block.
__global__ void __launch_bounds__(256) gn_stats_kernel(Stat *part, const __half *x, int c, int hw, int groups,
                                                       long long chunk, int vec) {
  const int split = blockIdx.x, g = blockIdx.y, row = blockIdx.z, cpg = c / groups;
  const long long slab = (long long)cpg * hw;
  const long long b0 = (long long)split * chunk, b1 = min(slab, b0 + chunk);
  const __half *xs = x + ((long long)row * c + (long long)g * cpg) * hw;
  Stat s = {0.f, 0.f, 0.f};
  if (vec) {
    for (long long i = b0 + 8LL * threadIdx.x; i < b1; i += 8LL * blockDim.x) {
      float f[8];
      h8_to_f(__ldg(reinterpret_cast<const uint4 *>(xs + i)), f);
      stat_add8(s, f, 8);  // chunk and slab are multiples of 8 on this path
    }
  } else {
    for (long long i = b0 + 8LL * threadIdx.x; i < b1; i += 8LL * blockDim.x) {
      float f[8];
      const int cnt = (int)min(8LL, b1 - i);
#pragma unroll
      for (int e = 0; e < 8; e++) f[e] = e < cnt ? __half2float(xs[i + e]) : 0.f;
      stat_add8(s, f, cnt);
    }
  }
  s = block_stat(s);
  if (threadIdx.x == 0) part[((long long)row * groups + g) * gridDim.x + split] = s;
}

// GroupNorm, pass 2: same grid. Combines the nf·splits partial statistics of its (video, group), then
// y = (x − mean)·rstd·γ[c] + β[c] (SiLU optional) over the same chunk the stats block read.
__global__ void __launch_bounds__(256) gn_apply_kernel(__half *y, const __half *x, const Stat *part, const __half *gamma,
                                                       const __half *beta, int nf, int c, int hw, int groups,
                                                       long long chunk, float eps, int silu, int vec) {
  const int split = blockIdx.x, g = blockIdx.y, row = blockIdx.z, cpg = c / groups, splits = gridDim.x;
  const int video = row / nf;
  __shared__ float sh_mean, sh_rstd;
  if (threadIdx.x < 32) {
    Stat s = {0.f, 0.f, 0.f};
    const int np = nf * splits;
    for (int i = threadIdx.x; i < np; i += 32) {
      const int f = i / splits, sp = i - f * splits;
      s = stat_combine(s, part[(((long long)video * nf + f) * groups + g) * splits + sp]);
    }
#pragma unroll
    for (int off = 16; off; off >>= 1) s = stat_combine(s, stat_shfl(s, off));
    if (threadIdx.x == 0) {
      sh_mean = s.mean;
      sh_rstd = 1.0f / sqrtf(s.m2 / s.n + eps);  // biased variance, as PyTorch
    }
  }
  __syncthreads();
  const float mean = sh_mean, rstd = sh_rstd;
  const long long slab = (long long)cpg * hw;
  const long long b0 = (long long)split * chunk, b1 = min(slab, b0 + chunk);
  const long long base = ((long long)row * c + (long long)g * cpg) * hw;
  if (vec) {
    for (long long i = b0 + 8LL * threadIdx.x; i < b1; i += 8LL * blockDim.x) {
      const int ch = g * cpg + (int)(i / hw);  // hw % 8 == 0: the 8 values share a channel
      const float a = (gamma ? __half2float(gamma[ch]) : 1.0f) * rstd;
      const float bb = (beta ? __half2float(beta[ch]) : 0.0f) - mean * a;
      float f[8];
      // a plain load, not __ldg: y may be x (in-place GroupNorm), and the read-only (non-coherent) path
      // is only defined for data that no thread writes during the kernel
      h8_to_f(*reinterpret_cast<const uint4 *>(x + base + i), f);
      uint4 u;
      uint32_t *w = reinterpret_cast<uint32_t *>(&u);
#pragma unroll
      for (int e = 0; e < 8; e += 2) {
        float v0 = f[e] * a + bb, v1 = f[e + 1] * a + bb;
        if (silu) {
          v0 = silu_f(v0);
          v1 = silu_f(v1);
        }
        w[e >> 1] = pack_half2(v0, v1);
      }
      *reinterpret_cast<uint4 *>(y + base + i) = u;
    }
  } else {
    for (long long i = b0 + threadIdx.x; i < b1; i += blockDim.x) {
      const int ch = g * cpg + (int)(i / hw);
      const float a = (gamma ? __half2float(gamma[ch]) : 1.0f) * rstd;
      const float bb = (beta ? __half2float(beta[ch]) : 0.0f) - mean * a;
      float v = __half2float(x[base + i]) * a + bb;
      if (silu) v = silu_f(v);
      y[base + i] = __float2half_rn(v);
    }
  }
}

extern "C" void vdpc_groupnorm(void *y, const void *x, const void *gamma, const void *beta, int nb, int nf, int c,
                               int hw, int groups, float eps, int silu) {
  if (nb <= 0 || nf <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups) fail_shape("groupnorm", "bad sizes");
  const long long rows = (long long)nb * nf;
  if (rows > 65535 || groups > 65535) fail_shape("groupnorm", "more than 65535 rows or groups");
  const long long slab = (long long)(c / groups) * hw;
  int splits = (int)std::min<long long>(1024, std::max<long long>(1, slab / 16384));
  long long chunk = (slab + splits - 1) / splits;
  chunk = (chunk + 7) / 8 * 8;
  splits = (int)((slab + chunk - 1) / chunk);
  const int vec = hw % 8 == 0 && aligned16(x) && aligned16(y);
  Stat *part = (Stat *)workspace(sizeof(Stat) * rows * groups * splits);
  dim3 grid(splits, groups, (unsigned)rows);
  VDP_LAUNCH(gn_stats_kernel, grid, 256, 0, cur_stream())(part, (const __half *)x, c, hw, groups, chunk, vec);
  OPCHECK("groupnorm stats");
  VDP_LAUNCH(gn_apply_kernel, grid, 256, 0, cur_stream())((__half *)y, (const __half *)x, part, (const __half *)gamma,
                                                  (const __half *)beta, nf, c, hw, groups, chunk, eps, silu, vec);
  OPCHECK("groupnorm apply");
}

// gamma / beta may be NULL (scale 1, shift 0), as in the CPU table
__device__ __forceinline__ float ln_g(const __half *g, int i) { return g ? __half2float(g[i]) : 1.0f; }
__device__ __forceinline__ float ln_b(const __half *b, int i) { return b ? __half2float(b[i]) : 0.0f; }

// LayerNorm: one warp per row of C values (8 rows per block). Pass 1 mean, pass 2 Σ(x − mean)² (no
// cancellation), pass 3 write; passes 2 and 3 re-read the row from L1/L2. 16-byte loads when C % 8 == 0.
__global__ void __launch_bounds__(256) layernorm_kernel(__half *y, const __half *x, const __half *gamma,
                                                        const __half *beta, int M, int C, float eps, int vec) {
  const int lane = threadIdx.x & 31;
  const long long row = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
  if (row >= M) return;
  const __half *xr = x + row * C;
  __half *yr = y + row * C;
  float sum = 0.f;
  if (vec) {
    for (int i = lane * 8; i < C; i += 256) {
      float f[8];
      h8_to_f(*reinterpret_cast<const uint4 *>(xr + i), f);
#pragma unroll
      for (int e = 0; e < 8; e++) sum += f[e];
    }
  } else {
    for (int i = lane; i < C; i += 32) sum += __half2float(xr[i]);
  }
#pragma unroll
  for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  const float mean = sum / C;
  float ss = 0.f;
  if (vec) {
    for (int i = lane * 8; i < C; i += 256) {
      float f[8];
      h8_to_f(*reinterpret_cast<const uint4 *>(xr + i), f);
#pragma unroll
      for (int e = 0; e < 8; e++) ss += (f[e] - mean) * (f[e] - mean);
    }
  } else {
    for (int i = lane; i < C; i += 32) {
      const float d = __half2float(xr[i]) - mean;
      ss += d * d;
    }
  }
#pragma unroll
  for (int off = 16; off; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  const float rstd = 1.0f / sqrtf(ss / C + eps);
  // Pass 3 writes y; with y == x each element is read and then written by the same lane.
  if (vec) {
    for (int i = lane * 8; i < C; i += 256) {
      float f[8];
      h8_to_f(*reinterpret_cast<const uint4 *>(xr + i), f);
      uint4 u;
      uint32_t *w = reinterpret_cast<uint32_t *>(&u);
#pragma unroll
      for (int e = 0; e < 8; e += 2) {
        const float v0 = (f[e] - mean) * rstd * ln_g(gamma, i + e) + ln_b(beta, i + e);
        const float v1 = (f[e + 1] - mean) * rstd * ln_g(gamma, i + e + 1) + ln_b(beta, i + e + 1);
        w[e >> 1] = pack_half2(v0, v1);
      }
      *reinterpret_cast<uint4 *>(yr + i) = u;
    }
  } else {
    for (int i = lane; i < C; i += 32)
      yr[i] = __float2half_rn((__half2float(xr[i]) - mean) * rstd * ln_g(gamma, i) + ln_b(beta, i));
  }
}
extern "C" void vdpc_layernorm(void *y, const void *x, const void *gamma, const void *beta, int M, int C, float eps) {
  if (M <= 0 || C <= 0) fail_shape("layernorm", "bad sizes");
  const int vec = C % 8 == 0 && aligned16(x) && aligned16(y);
  VDP_LAUNCH(layernorm_kernel, (unsigned)((M + 7) / 8), 256, 0, cur_stream())(
      (__half *)y, (const __half *)x, (const __half *)gamma, (const __half *)beta, M, C, eps, vec);
  OPCHECK("layernorm");
}

// ===================================================================================================
// 6. Elementwise kernels (grid-stride loops, one element per thread step; fp32 math, fp16 storage)
// ===================================================================================================
#define GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__global__ void act_kernel(__half *y, const __half *x, long long n, int act) {
  GRID_STRIDE(i, n) y[i] = __float2half_rn(apply_act(__half2float(x[i]), act));
}
extern "C" void vdpc_act(void *y, const void *x, int64_t n, int act) {
  if (n <= 0) return;
  VDP_LAUNCH(act_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)y, (const __half *)x, n, act);
  OPCHECK("act");
}
__global__ void add_kernel(__half *y, const __half *a, const __half *b, long long n) {
  GRID_STRIDE(i, n) y[i] = __float2half_rn(__half2float(a[i]) + __half2float(b[i]));
}
extern "C" void vdpc_add(void *y, const void *a, const void *b, int64_t n) {
  if (n <= 0) return;
  VDP_LAUNCH(add_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)y, (const __half *)a, (const __half *)b, n);
  OPCHECK("add");
}
__global__ void add_bcast_kernel(__half *y, const __half *v, long long rc, long long inner) {
  GRID_STRIDE(i, rc * inner) y[i] = __float2half_rn(__half2float(y[i]) + __half2float(v[i / inner]));
}
extern "C" void vdpc_add_bcast(void *y, const void *v, int rows, int C, int64_t inner) {
  const long long rc = (long long)rows * C;
  if (rc <= 0 || inner <= 0) return;
  VDP_LAUNCH(add_bcast_kernel, grid1d(rc * inner, 256), 256, 0, cur_stream())((__half *)y, (const __half *)v, rc, inner);
  OPCHECK("add_bcast");
}
__global__ void blend_kernel(__half *y, const __half *a, const __half *b, float alpha, long long n) {
  GRID_STRIDE(i, n) y[i] = __float2half_rn(alpha * __half2float(a[i]) + (1.0f - alpha) * __half2float(b[i]));
}
extern "C" void vdpc_blend(void *y, const void *a, const void *b, float alpha, int64_t n) {
  if (n <= 0) return;
  VDP_LAUNCH(blend_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)y, (const __half *)a, (const __half *)b, alpha, n);
  OPCHECK("blend");
}
__global__ void geglu_kernel(__half *y, const __half *x, long long M, int H) {
  GRID_STRIDE(i, M * H) {
    const long long r = i / H;
    const int c = (int)(i - r * H);
    const float v = __half2float(x[r * 2 * H + c]), g = __half2float(x[r * 2 * H + H + c]);
    y[i] = __float2half_rn(v * gelu_erf(g));
  }
}
extern "C" void vdpc_geglu(void *y, const void *x, int M, int H) {
  if (M <= 0 || H <= 0) return;
  VDP_LAUNCH(geglu_kernel, grid1d((long long)M * H, 256), 256, 0, cur_stream())((__half *)y, (const __half *)x, M, H);
  OPCHECK("geglu");
}
// [cos(t·f_k) | sin(t·f_k)], f_k = exp(−ln(10000)·k/half), fp32 with accurate cosf/sinf. The value of row
// r: t[row0 + r] with row0 = *step · stride read on the device (the step loop's table), or r itself when t
// is NULL (frame positions). One thread per output element.
__global__ void temb_kernel(__half *y, const float *t, const int *step, int stride, int n, int dim) {
  const int half = dim / 2;
  const long long row0 = t && step ? (long long)*step * stride : 0;
  GRID_STRIDE(i, (long long)n * dim) {
    const int r = (int)(i / dim), j = (int)(i - (long long)r * dim);
    float v = 0.f;  // odd dim: the last column is zero padding
    if (j < 2 * half) {
      const int k = j < half ? j : j - half;
      const float f = expf((-9.210340371976184f * (float)k) / (float)half);  // -ln(1e4) as a float, like torch
      const float a = (t ? t[row0 + r] : (float)r) * f;
      v = j < half ? cosf(a) : sinf(a);
    }
    y[i] = __float2half_rn(v);
  }
}
extern "C" void vdpc_timestep_embedding_at(void *y, const float *t, const int *step, int stride, int n, int dim) {
  if (n <= 0 || dim <= 0) return;
  VDP_LAUNCH(temb_kernel, grid1d((long long)n * dim, 256), 256, 0, cur_stream())((__half *)y, t, step, stride, n, dim);
  OPCHECK("timestep_embedding");
}
extern "C" void vdpc_timestep_embedding(void *y, const float *t, int n, int dim) {
  vdpc_timestep_embedding_at(y, t, NULL, 0, n, dim);
}
// PyTorch's nearest source index: identity and exact ×2 special-cased, else floor(dst·(float)in/out) clamped.
__device__ __forceinline__ int nearest_src(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const int s = (int)floorf((float)dst * ((float)in / (float)out));
  return s < in - 1 ? s : in - 1;
}
__global__ void upsample_kernel(__half *y, const __half *x, long long nc, int h, int w, int ho, int wo) {
  GRID_STRIDE(i, nc * ho * wo) {
    const int ox = (int)(i % wo);
    const long long t = i / wo;
    const int oy = (int)(t % ho);
    const long long plane = t / ho;
    const int sy = nearest_src(oy, h, ho), sx = nearest_src(ox, w, wo);
    y[i] = x[(plane * h + sy) * w + sx];
  }
}
extern "C" void vdpc_upsample_nearest(void *y, const void *x, int n, int c, int h, int w, int ho, int wo) {
  const long long nc = (long long)n * c;
  if (nc <= 0 || ho <= 0 || wo <= 0) return;
  VDP_LAUNCH(upsample_kernel, grid1d(nc * ho * wo, 256), 256, 0, cur_stream())((__half *)y, (const __half *)x, nc, h, w, ho,
                                                                       wo);
  OPCHECK("upsample_nearest");
}
// [A, B, C, D] -> [A, C, B, D]. D == 1: 32×32 tiles through shared memory (coalesced on both sides),
// grid (C tiles, B tiles, A); otherwise one element per thread (rows of D stay contiguous).
__global__ void transpose_tile_kernel(__half *y, const __half *x, int B, int C) {
  __shared__ __half tile[32][33];
  const int a = blockIdx.z, b0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  const __half *xa = x + (long long)a * B * C;
  __half *ya = y + (long long)a * B * C;
  for (int r = threadIdx.y; r < 32; r += 8) {
    const int b = b0 + r, c = c0 + threadIdx.x;
    if (b < B && c < C) tile[r][threadIdx.x] = xa[(long long)b * C + c];
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += 8) {
    const int c = c0 + r, b = b0 + threadIdx.x;
    if (b < B && c < C) ya[(long long)c * B + b] = tile[threadIdx.x][r];
  }
}
__global__ void transpose_gen_kernel(__half *y, const __half *x, long long A, int B, int C, long long D) {
  GRID_STRIDE(i, A * B * C * D) {
    const long long d = i % D;
    long long t = i / D;
    const int b = (int)(t % B);
    t /= B;
    const int c = (int)(t % C);
    const long long a = t / C;
    y[i] = x[((a * B + b) * C + c) * D + d];  // y index i = ((a·C + c)·B + b)·D + d
  }
}
extern "C" void vdpc_transpose_0213(void *y, const void *x, int A, int B, int C, int64_t D) {
  if (A <= 0 || B <= 0 || C <= 0 || D <= 0) return;
  if (D == 1 && A <= 65535 && (B + 31) / 32 <= 65535) {
    VDP_LAUNCH(transpose_tile_kernel, dim3((C + 31) / 32, (B + 31) / 32, A), dim3(32, 8), 0, cur_stream())(
        (__half *)y, (const __half *)x, B, C);
  } else {
    VDP_LAUNCH(transpose_gen_kernel, grid1d((long long)A * B * C * D, 256), 256, 0, cur_stream())(
        (__half *)y, (const __half *)x, A, B, C, D);
  }
  OPCHECK("transpose_0213");
}

// CFG + Euler step (see kernels.h). fp16 rounding points of diffusers' fp16 pipeline: vc − vu, g·(…),
// vu + …, and v·c_out are each rounded to fp16; the rest is fp32.
struct GuidanceTable {
  float g[64];
};
__device__ __forceinline__ float r16(float v) { return __half2float(__float2half_rn(v)); }
__global__ void cfg_euler_kernel(float *x, const __half *vout, GuidanceTable gt, int B, int F, long long chw, float sigma,
                                 float sigma_next, float c_out, float c_skip, int round_f16) {
  const long long per_video = (long long)F * chw, n = (long long)B * per_video;
  GRID_STRIDE(i, n) {
    const long long b = i / per_video, r = i - b * per_video;
    const int f = (int)(r / chw);
    const float vu = __half2float(vout[i]), vc = __half2float(vout[n + i]);
    const float v = r16(__fadd_rn(vu, r16(__fmul_rn(gt.g[f], r16(__fsub_rn(vc, vu))))));
    const float xs = x[i];
    // explicit roundings (no FMA contraction): the same fp32 operations as the host reference, so that
    // round_f16 cannot flip an fp16 rounding against it
    const float x0 = __fadd_rn(r16(__fmul_rn(v, c_out)), __fmul_rn(xs, c_skip));
    const float d = __fdiv_rn(__fsub_rn(xs, x0), sigma);
    float xn = __fadd_rn(xs, __fmul_rn(d, __fsub_rn(sigma_next, sigma)));
    if (round_f16) xn = r16(xn);
    x[i] = xn;
  }
}
extern "C" void vdpc_cfg_euler(float *x, const void *vout, const float *g, int B, int F, int64_t chw, float sigma,
                               float sigma_next, int round_f16) {
  if (B <= 0 || F <= 0 || chw <= 0) return;
  if (F > 64) fail_shape("cfg_euler", "more than 64 frames");
  GuidanceTable gt;
  for (int f = 0; f < 64; f++) gt.g[f] = f < F ? g[f] : 0.f;
  const float c_out = -sigma / sqrtf(sigma * sigma + 1.0f), c_skip = 1.0f / (sigma * sigma + 1.0f);
  VDP_LAUNCH(cfg_euler_kernel, grid1d((long long)B * F * chw, 256), 256, 0, cur_stream())(
      x, (const __half *)vout, gt, B, F, chw, sigma, sigma_next, c_out, c_skip, round_f16);
  OPCHECK("cfg_euler");
}

// The denoising step (model.h's step_input / step_update, CPU twins in ops.c). Every per-step scalar is
// read from the step table at the device-side counter's row, so a captured graph replays any step. The
// arithmetic is the host loop's, operation for operation (explicit _rn, no contraction): given the same
// UNet output the latent is bit-identical to the fp32 host update. One thread per element.
// xin [B, F, 2·chw] (fp16) = x[f] / c_in | img[b]
__global__ void step_input_kernel(__half *xin, const float *x, const __half *img, const float *sched, const int *step,
                                  int F, long long chw, long long n) {
  const float c_in = sched[(long long)*step * SCH_COLS + SCH_C_IN];
  GRID_STRIDE(i, n) {
    const long long r = i / (2 * chw), j = i - r * 2 * chw;  // r = b·F + f
    const int b = (int)(r / F), f = (int)(r - (long long)b * F);
    xin[i] = j < chw ? __float2half_rn(__fdiv_rn(x[f * chw + j], c_in)) : img[b * chw + (j - chw)];
  }
}
// v [B, F, chw] (fp16; B = 2: uncond first) -> guided v -> Euler on the v-prediction, x [F, chw] fp32 in place
__global__ void step_update_kernel(float *x, const __half *v, const float *sched, const float *g, const int *step,
                                   int B, long long chw, long long n) {
  const float *row = sched + (long long)*step * SCH_COLS;
  const float sigma = row[SCH_SIGMA], c_out = row[SCH_C_OUT], c_skip_div = row[SCH_C_SKIP_DIV], dt = row[SCH_DT];
  GRID_STRIDE(j, n) {
    float vp = __half2float(v[j]);
    if (B == 2) {
      const float vu = vp, vc = __half2float(v[n + j]);
      vp = __fadd_rn(vu, __fmul_rn(g[j / chw], __fsub_rn(vc, vu)));
    }
    const float xs = x[j], x0 = __fadd_rn(__fmul_rn(vp, c_out), __fdiv_rn(xs, c_skip_div));
    const float d = __fdiv_rn(__fsub_rn(xs, x0), sigma);
    x[j] = __fadd_rn(xs, __fmul_rn(d, dt));
  }
}
// The step counter moves on after every thread of the step has read it (its own launch, one thread).
__global__ void step_advance_kernel(int *step) { *step += 1; }

extern "C" void vdpc_step_input(void *xin, const float *x, const void *img, const float *sched, const int *step, int B,
                                int F, int64_t chw) {
  const long long n = (long long)B * F * 2 * chw;
  if (n <= 0) return;
  VDP_LAUNCH(step_input_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)xin, x, (const __half *)img, sched, step,
                                                                      F, chw, n);
  OPCHECK("step_input");
}
extern "C" void vdpc_step_update(float *x, const void *v, const float *sched, const float *g, int *step, int B, int F,
                                 int64_t chw) {
  const long long n = (long long)F * chw;
  if (n <= 0) return;
  if (B != 1 && B != 2) fail_shape("step_update", "batch must be 1 or 2 (classifier-free guidance halves)");
  VDP_LAUNCH(step_update_kernel, grid1d(n, 256), 256, 0, cur_stream())(x, (const __half *)v, sched, g, step, B, chw, n);
  OPCHECK("step_update");
  VDP_LAUNCH(step_advance_kernel, 1, 1, 0, cur_stream())(step);
  OPCHECK("step_advance");
}

__global__ void f32_to_f16_kernel(__half *y, const float *x, long long n) { GRID_STRIDE(i, n) y[i] = __float2half_rn(x[i]); }
__global__ void f16_to_f32_kernel(float *y, const __half *x, long long n) { GRID_STRIDE(i, n) y[i] = __half2float(x[i]); }
extern "C" void vdpc_f32_to_f16(void *y, const float *x, int64_t n) {
  if (n <= 0) return;
  VDP_LAUNCH(f32_to_f16_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)y, x, n);
  OPCHECK("f32_to_f16");
}
extern "C" void vdpc_f16_to_f32(float *y, const void *x, int64_t n) {
  if (n <= 0) return;
  VDP_LAUNCH(f16_to_f32_kernel, grid1d(n, 256), 256, 0, cur_stream())(y, (const __half *)x, n);
  OPCHECK("f16_to_f32");
}

// ===================================================================================================
// 7. The Backend table (model.h): model.c's graph on the kernels above
// ===================================================================================================
// Tensors are fp16 device buffers (elem_size 2); every op has the semantics of the CPU table in ops.c
// section 6, including its aliasing (res == y in linear / cross-attention, in-place norms, act, add,
// blend, add_rows). Host <-> device traffic happens only for weights (once, at load), the inputs and
// outputs of the host-array forward passes, and the step loop's state before and after the loop: the
// step itself (step_input, the UNet, step_update) reads everything from device memory.
// Threads: several host threads may use the table at once, each on its own device (section 1: each
// thread's ops go to its own stream, with its own scratch, staging and timestep buffers). mem_alloc'd
// memory may be freed by any thread (it is freed on the device that holds it); the bookkeeping is locked.
static_assert((int)ACT_NONE == (int)VDPC_ACT_NONE && (int)ACT_SILU == (int)VDPC_ACT_SILU &&
                  (int)ACT_GELU == (int)VDPC_ACT_GELU && (int)ACT_QUICK_GELU == (int)VDPC_ACT_QUICK_GELU &&
                  (int)ACT_GEGLU == (int)VDPC_ACT_GEGLU,
              "model.h ACT_* must equal kernels.h VDPC_ACT_*");

// ----- memory: cudaMalloc / cudaFree with a held-bytes high-water mark ---------------------------------
// Bytes held and their peak, over all devices (mem_peak) and per device (vdp_cuda_mem_peak_device).
struct MemRec {
  size_t bytes;
  int dev;  // the device it was allocated on: where be_mem_free frees it, whichever thread calls
};
static std::mutex g_mem_mu;
static std::unordered_map<void *, MemRec> g_mem_size;  // live allocation -> size, device
static size_t g_mem_held = 0, g_mem_peak = 0;
static size_t g_dev_held[kMaxDevices], g_dev_peak[kMaxDevices];

static void *be_mem_alloc(size_t bytes, const char *what) {
  int dev = 0;  // cudaMalloc allocates on the calling thread's current device
  CK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) {
    fprintf(stderr, "vdp: error: CUDA backend: device %d (this build handles devices 0..%d)\n", dev, kMaxDevices - 1);
    exit(1);
  }
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it before asking for the free memory
    size_t fr = 0, tot = 0, held = 0;
    cudaMemGetInfo(&fr, &tot);
    {
      std::lock_guard<std::mutex> lk(g_mem_mu);
      held = g_dev_held[dev];
    }
    fprintf(stderr,
            "vdp: error: CUDA: cannot allocate %.1f MiB for %s on device %d: %s (the GPU has %.1f MiB free of %.1f "
            "MiB; vdp holds %.1f MiB there)\n",
            bytes / 1048576.0, what, dev, cudaGetErrorString(e), fr / 1048576.0, tot / 1048576.0, held / 1048576.0);
    exit(1);
  }
  std::lock_guard<std::mutex> lk(g_mem_mu);
  g_mem_size[p] = MemRec{bytes, dev};
  g_mem_held += bytes;
  g_mem_peak = std::max(g_mem_peak, g_mem_held);
  g_dev_held[dev] += bytes;
  g_dev_peak[dev] = std::max(g_dev_peak[dev], g_dev_held[dev]);
  return p;
}

// Takes p out of the bookkeeping: its device, or -1 when be_mem_alloc did not allocate it.
static int mem_untrack(void *p) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  auto it = g_mem_size.find(p);
  if (it == g_mem_size.end()) return -1;
  const int dev = it->second.dev;
  g_mem_held -= it->second.bytes;
  g_dev_held[dev] -= it->second.bytes;
  g_mem_size.erase(it);
  return dev;
}

static void be_mem_free(void *p) {
  if (!p) return;
  const int dev = mem_untrack(p);
  if (dev < 0) {
    fprintf(stderr, "vdp: error: CUDA backend: freeing %p, which it did not allocate (internal error)\n", p);
    exit(1);
  }
  CK(free_on_device(p, dev));  // synchronizes that device: no queued op still uses p
}

static size_t be_mem_peak(void) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  return g_mem_peak;
}

extern "C" size_t vdp_cuda_mem_peak_device(int dev) {
  if (dev < 0 || dev >= kMaxDevices) return 0;
  std::lock_guard<std::mutex> lk(g_mem_mu);
  return g_dev_peak[dev];
}

// ----- host fp32 <-> device fp16 through one small fp32 staging buffer per thread -----------------------
// The conversion runs on the device (__float2half_rn: round to nearest even), in rounds of STAGE floats.
// Copies from pageable host memory return once the host data has been read, so the caller may reuse
// its buffer at once; a later round reuses the staging buffer only after the stream has consumed it.
static const int64_t STAGE = (int64_t)1 << 22;  // floats per round (16 MiB)
static float *stage_buf() {
  ThreadState &t = ts();
  if (!t.stage) {
    ts_check_device(t, "allocating the host transfer staging buffer");
    t.stage = (float *)be_mem_alloc((size_t)STAGE * sizeof(float), "host transfer staging buffer");
  }
  return t.stage;
}

static void upload_f16(void *dst, const float *src, int64_t n) {
  float *st = stage_buf();
  const cudaStream_t s = cur_stream();
  for (int64_t o = 0; o < n; o += STAGE) {
    const int64_t k = std::min(STAGE, n - o);
    CK(cudaMemcpyAsync(st, src + o, (size_t)k * sizeof(float), cudaMemcpyHostToDevice, s));
    vdpc_f32_to_f16((__half *)dst + o, st, k);
  }
}

static void be_to_device(void *dst, const float *src, int64_t n) {
  if (n <= 0) return;
  upload_f16(dst, src, n);
  // Synchronous, like the CPU backend's memcpy: the caller's buffer (possibly pinned, e.g. the stage
  // ring's) may change as soon as this returns. Inputs are uploaded once per forward pass.
  vdp_cuda_sync("uploading a forward pass input");
}

static void be_to_host(float *dst, const void *src, int64_t n) {
  if (n <= 0) return;
  float *st = stage_buf();
  const cudaStream_t s = cur_stream();
  for (int64_t o = 0; o < n; o += STAGE) {
    const int64_t k = std::min(STAGE, n - o);
    vdpc_f16_to_f32(st, (const __half *)src + o, k);
    CK(cudaMemcpyAsync(dst + o, st, (size_t)k * sizeof(float), cudaMemcpyDeviceToHost, s));
  }
  vdp_cuda_sync("downloading a forward pass output");
}

// ----- weights -----------------------------------------------------------------------------------------
// WEIGHT_CONV: the tap-major layout of vdpc_conv_prepare_weight, from [cout, cin, kh, kw] or the temporal
// conv's [cout, cin, 3, 1, 1] (= kh 3, kw 1). Every tensor's size is rounded up to 128 elements so that
// each one starts 256-byte aligned in its component's allocation (the 16-byte load paths need it).
static void conv_dims(int ndim, const int64_t *shape, int *cout, int *cin, int *kh, int *kw) {
  if (ndim != 4 && ndim != 5) {
    fprintf(stderr, "vdp: error: CUDA backend: a convolution weight has %d dimensions (expected 4 or 5)\n", ndim);
    exit(1);
  }
  *cout = (int)shape[0], *cin = (int)shape[1], *kh = (int)shape[2];
  *kw = (int)(ndim == 4 ? shape[3] : shape[3] * shape[4]);
}

static int64_t be_weight_elems(int kind, int ndim, const int64_t *shape) {
  int64_t n = 1;
  if (kind == WEIGHT_CONV) {
    int cout, cin, kh, kw;
    conv_dims(ndim, shape, &cout, &cin, &kh, &kw);
    n = vdpc_conv_weight_elems(cout, cin, kh, kw);
  } else {
    for (int i = 0; i < ndim; i++) n *= shape[i];
  }
  return (n + 127) / 128 * 128;
}

static void be_weight_store(void *dst, const float *src, int kind, int ndim, const int64_t *shape) {
  if (kind == WEIGHT_CONV) {
    int cout, cin, kh, kw;
    conv_dims(ndim, shape, &cout, &cin, &kh, &kw);
    const int64_t n = (int64_t)cout * cin * kh * kw;
    void *tmp = be_mem_alloc((size_t)n * sizeof(__half), "a convolution weight being re-laid-out");
    upload_f16(tmp, src, n);
    vdpc_conv_prepare_weight(dst, tmp, cout, cin, kh, kw);
    vdp_cuda_sync("storing a convolution weight");
    be_mem_free(tmp);
  } else {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    upload_f16(dst, src, n);
    vdp_cuda_sync("storing a weight");  // the caller frees src next; errors are attributed here
  }
}

static void be_copy(void *dst, const void *src, int64_t n) {
  if (n <= 0 || dst == src) return;
  const size_t bytes = (size_t)n * sizeof(__half);
  const char *d = (const char *)dst, *s = (const char *)src;
  const cudaStream_t st = cur_stream();
  if (d < s + bytes && s < d + bytes) {  // overlapping (memmove semantics): through the workspace
    void *ws = workspace(bytes);
    CK(cudaMemcpyAsync(ws, src, bytes, cudaMemcpyDeviceToDevice, st));
    CK(cudaMemcpyAsync(dst, ws, bytes, cudaMemcpyDeviceToDevice, st));
  } else {
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
  }
}

static void be_sync(void) { vdp_cuda_sync("CUDA backend sync"); }

// ----- operators without a one-to-one kernel ---------------------------------------------------------
// Direct convolution on the tap-major weights, for what the implicit GEMM does not take: stride > 2 or
// kernels larger than 3x3 (CLIP's patch embedding, 14x14 stride 14 — one small call per image).
// One thread per output element, fp32 accumulation; y = conv + b + chan_add[n, co] + res.
__global__ void conv_direct_kernel(__half *y, const __half *x, const __half *wt, const __half *b, int n, int cin,
                                   int h, int w, int cout, int kh, int kw, int stride, int pt, int pl, int ho, int wo,
                                   int cin8, const __half *chan_add, const __half *res) {
  const long long plane = (long long)h * w;
  GRID_STRIDE(i, (long long)n * cout * ho * wo) {
    const int ox = (int)(i % wo);
    long long t = i / wo;
    const int oy = (int)(t % ho);
    t /= ho;
    const int co = (int)(t % cout), img = (int)(t / cout);
    float acc = 0.f;
    for (int ky = 0; ky < kh; ky++) {
      const int iy = oy * stride - pt + ky;
      if (iy < 0 || iy >= h) continue;
      for (int kx = 0; kx < kw; kx++) {
        const int ix = ox * stride - pl + kx;
        if (ix < 0 || ix >= w) continue;
        const __half *wr = wt + ((long long)(ky * kw + kx) * cout + co) * cin8;
        const __half *xp = x + (long long)img * cin * plane + (long long)iy * w + ix;
        for (int ci = 0; ci < cin; ci++) acc += __half2float(wr[ci]) * __half2float(xp[ci * plane]);
      }
    }
    if (b) acc += __half2float(b[co]);
    if (chan_add) acc += __half2float(chan_add[(long long)img * cout + co]);
    if (res) acc += __half2float(res[i]);
    y[i] = __float2half_rn(acc);
  }
}

static void be_conv2d(void *y, const void *x, const void *w, const void *b, int n, int cin, int h, int wd, int cout,
                      int kh, int kw, int stride, int pt, int pl, int pb, int pr, const void *chan_add,
                      const void *res) {
  if (stride >= 1 && stride <= 2 && kh <= 3 && kw <= 3) {
    vdpc_conv2d(y, x, w, b, n, cin, h, wd, cout, kh, kw, stride, pt, pl, pb, pr, chan_add, res);
    return;
  }
  const int ho = (h + pt + pb - kh) / stride + 1, wo = (wd + pl + pr - kw) / stride + 1;
  if (n <= 0 || cin <= 0 || cout <= 0 || ho <= 0 || wo <= 0 || stride < 1) fail_shape("conv2d (direct)", "bad sizes");
  const long long total = (long long)n * cout * ho * wo;
  VDP_LAUNCH(conv_direct_kernel, grid1d(total, 256), 256, 0, cur_stream())(
      (__half *)y, (const __half *)x, (const __half *)w, (const __half *)b, n, cin, h, wd, cout, kh, kw, stride, pt, pl,
      ho, wo, (cin + 7) / 8 * 8, (const __half *)chan_add, (const __half *)res);
  OPCHECK("conv2d (direct)");
}

static void be_act(void *y, const void *x, int64_t n, int act) {
  if (act == ACT_NONE) {  // the CPU table's default: a copy
    if (y != x) be_copy(y, x, n);
    return;
  }
  if (act == ACT_GEGLU) fail_shape("act", "GEGLU is a linear epilogue, not an elementwise activation");
  vdpc_act(y, x, n, act);
}

// y[g, i, :] += v[g, :] for g < groups, i < group (rows of C values)
__global__ void add_rows_kernel(__half *y, const __half *v, long long group, int C, long long n) {
  GRID_STRIDE(i, n) {
    const long long r = i / C;
    const int c = (int)(i - r * C);
    y[i] = __float2half_rn(__half2float(y[i]) + __half2float(v[(r / group) * C + c]));
  }
}
static void be_add_rows(void *y, const void *v, int groups, int64_t group, int C) {
  const long long n = (long long)groups * group * C;
  if (n <= 0) return;
  VDP_LAUNCH(add_rows_kernel, grid1d(n, 256), 256, 0, cur_stream())((__half *)y, (const __half *)v, group, C, n);
  OPCHECK("add_rows");
}

// y[r] = a[r] | b[r]: two strided copies (rows of na and nb elements into rows of na + nb)
static void be_concat_rows(void *y, const void *a, int64_t na, const void *b, int64_t nb, int rows) {
  if (rows <= 0) return;
  const size_t e = sizeof(__half), pitch = (size_t)(na + nb) * e;
  const cudaStream_t s = cur_stream();
  if (na > 0) CK(cudaMemcpy2DAsync(y, pitch, a, (size_t)na * e, (size_t)na * e, rows, cudaMemcpyDeviceToDevice, s));
  if (nb > 0)
    CK(cudaMemcpy2DAsync((char *)y + (size_t)na * e, pitch, b, (size_t)nb * e, (size_t)nb * e, rows,
                         cudaMemcpyDeviceToDevice, s));
}

// t in device memory (fp32): no host value, so a step's embedding can be captured and replayed
static void be_timestep_embedding(void *y, const float *t, const int *step, int stride, int n, int dim) {
  vdpc_timestep_embedding_at(y, t, step, stride, n, dim);
}

// raw bytes, synchronous like be_to_device (never inside the step loop: tables, counters, the latent at
// the ends of the loop)
static void be_upload_bytes(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cur_stream()));
  vdp_cuda_sync("uploading to the device");
}
static void be_download_bytes(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cur_stream()));
  vdp_cuda_sync("downloading from the device");
}

// ----- the denoising step and its CUDA graph ---------------------------------------------------------
// The StepTables pointers are device addresses fixed for the job: they are the only step arguments, so
// the captured launches are valid for every step.
static void be_step_input(void *xin, const float *x, const void *img, const StepTables *t, int B, int F, int64_t chw) {
  vdpc_step_input(xin, x, img, t->sched, t->step, B, F, chw);
}
static void be_step_update(float *x, const void *v, const StepTables *t, int B, int F, int64_t chw) {
  if (t->sampler != SAMPLER_EULER_V) fail_shape("step_update", "unknown sampler");
  vdpc_step_update(x, v, t->sched, t->guidance, t->step, B, F, chw);
}

// Capture mode ThreadLocal: a stage thread capturing its step must not stop the other stage threads from
// allocating or synchronizing (Global would), while this thread's own forbidden calls still fail.
static void be_graph_begin(void) {
  ThreadState &t = ts();
  if (t.capturing) fail_shape("graph_begin", "a capture is already open on this thread");
  CK(cudaStreamBeginCapture(t.stream, cudaStreamCaptureModeThreadLocal));
  t.capturing = true;
}
static void *be_graph_end(void) {
  ThreadState &t = ts();
  cudaGraph_t g = NULL;
  cudaGraphExec_t exec = NULL;
  t.capturing = false;
  CK(cudaStreamEndCapture(t.stream, &g));
  CK(cudaGraphInstantiate(&exec, g, 0));
  CK(cudaGraphDestroy(g));
  return (void *)exec;
}
static void be_graph_launch(void *exec) {
  CK(cudaGraphLaunch((cudaGraphExec_t)exec, cur_stream()));
  if (sync_each()) vdp_cuda_sync("a step graph");
}
static void be_graph_free(void *exec) {
  if (exec) CK(cudaGraphExecDestroy((cudaGraphExec_t)exec));
}

#ifdef VDP_SIMT
namespace simt { void profile_step(int step, int end); }  // the emulator's per-step counters (simt.cpp)
static void be_step_mark(int step, int end) { simt::profile_step(step, end); }
#endif

// ----- releasing a thread's state -------------------------------------------------------------------
// Frees what the calling thread created (section 1): waits for its queued work, frees its scratch,
// staging and timestep buffers, destroys its stream. Clean-up after a failure must not die: errors are
// cleared and ignored (a device with a sticky error cannot be used any more anyway). The next op on
// this thread creates fresh state for the device current then.
extern "C" void vdp_cuda_thread_release(void) {
  ThreadState &t = t_ts;
  if (!t.ready) return;  // nothing was created on this thread (a CPU thread, or released already)
  int cur = -1;
  const bool switched = cudaGetDevice(&cur) == cudaSuccess && cur != t.dev && cudaSetDevice(t.dev) == cudaSuccess;
  cudaStreamSynchronize(t.stream);  // a stream given to vdp_cuda_set_stream must still exist here
  if (t.stream != t.own) cudaStreamSynchronize(t.own);
  if (t.ws) cudaFree(t.ws);
  // the mem_alloc'd buffers leave the bookkeeping, without dying if their cudaFree fails
  if (t.stage) free_on_device(t.stage, mem_untrack(t.stage));
  if (t.own) cudaStreamDestroy(t.own);
  cudaGetLastError();
  if (switched) cudaSetDevice(cur);
  memset(&t, 0, sizeof t);
}

// ----- the table -----------------------------------------------------------------------------------
static Backend g_cuda_backend;
static bool g_cuda_ok = false;
static std::once_flag g_cuda_once;

static void backend_cuda_init() {
  if (vdp_cuda_device_count() == 0) return;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (major < 8) {  // mma m16n8k16, cp.async: the kernels need sm_80 or newer
    fprintf(stderr, "vdp: CUDA device %d is sm_%d%d; vdp's kernels need sm_80 or newer\n", dev, major, minor);
    return;
  }
  Backend &b = g_cuda_backend;
  memset(&b, 0, sizeof b);
  b.name = "cuda";
  b.elem_size = sizeof(__half);
  b.ff_chunk_rows = (int64_t)1 << 16;  // large GEMMs; the arena is planned, so this only bounds the hidden
  b.weight_elems = be_weight_elems;
  b.weight_store = be_weight_store;
  b.mem_alloc = be_mem_alloc;
  b.mem_free = be_mem_free;
  b.to_device = be_to_device;
  b.to_host = be_to_host;
  b.copy = be_copy;
  b.sync = be_sync;
  b.mem_peak = be_mem_peak;
  // the kernels whose signature and semantics are the table's own
  b.linear = vdpc_linear;
  b.conv2d = be_conv2d;
  b.conv_temporal = vdpc_conv_temporal;
  b.groupnorm = vdpc_groupnorm;
  b.layernorm = vdpc_layernorm;
  b.attention = vdpc_attention;
  b.cross_attn_1key = vdpc_cross_attn_1key;
  b.act = be_act;
  b.add = vdpc_add;
  b.add_bcast = vdpc_add_bcast;
  b.add_rows = be_add_rows;
  b.concat_rows = be_concat_rows;
  b.blend = vdpc_blend;
  b.timestep_embedding = be_timestep_embedding;
  b.upsample_nearest = vdpc_upsample_nearest;
  b.transpose_0213 = vdpc_transpose_0213;
  b.upload_bytes = be_upload_bytes;
  b.download_bytes = be_download_bytes;
  b.step_input = be_step_input;
  b.step_update = be_step_update;
  b.graph_begin = be_graph_begin;
  b.graph_end = be_graph_end;
  b.graph_launch = be_graph_launch;
  b.graph_free = be_graph_free;
#ifdef VDP_SIMT
  b.step_mark = be_step_mark;
#endif
  g_cuda_ok = true;
}

extern "C" const Backend *backend_cuda(void) {
  std::call_once(g_cuda_once, backend_cuda_init);
  return g_cuda_ok ? &g_cuda_backend : NULL;
}
