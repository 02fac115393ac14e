// simt.h — the host SIMT emulator's device-side view, force-included when kernels.cu is compiled as host
// C++ (g++ -x c++ -include test/simt/simt.h kernels.cu; clang++ for the TSan variant). With simt.cpp it
// runs the real kernels on the CPU: each thread block's threads are fibers on the launching host thread,
// block barriers and warp collectives are scheduling points, tensor-core and cp.async instructions are
// computed from their PTX definitions. What it emulates and checks: test/simt/simt.cpp's header comment.
//
// Only the CUDA headers are needed (types, __half host arithmetic): no nvcc, no libcudart, no driver.
// Required flags: -ffp-contract=off (no FMA contraction, so __fmul_rn & co. and the bit-exact sampler
// step stay exact) and -fno-strict-aliasing (the kernels type-pun __half <-> uint32_t / uint4).
#ifndef VDP_SIMT_H
#define VDP_SIMT_H
#ifndef __cplusplus
#error "simt.h is for C++ (kernels.cu compiled as host code)"
#endif
#if !__has_include(<cuda_runtime.h>) || !__has_include(<cuda_fp16.h>)
#error "simt: the CUDA headers (cuda_runtime.h, cuda_fp16.h) were not found: the SIMT emulator needs a CUDA Toolkit's include directory (set CUDA_HOME; nvcc itself is not needed)"
#endif

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define VDP_SIMT 1

// ----- CUDA keywords on the host -------------------------------------------------------------------------
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
// Shared memory lives in the launching host thread's TLS (a block's fibers all run on that thread).
// Static __shared__ variables are block-scope thread_locals: compiled with -fdata-sections, each is its own
// section .tbss._ZZ<function>E<name>, which test/simt/shm.ld gathers between the markers simt_shm_begin and
// simt_shm_end (test/simt/shm_mark.cpp; ld -r), so that the runtime can poison them at every block start.
// `extern __shared__` (dynamic) arrays: definitions generated from kernels.cu by the Makefile
// (SIMT_DYNAMIC_SHARED below), each as large as the largest opt-in limit.
#define __shared__ thread_local

namespace simt {
constexpr size_t kMaxDynamicShared = 227 * 1024;  // sm_90's opt-in limit per block

struct Fiber;
struct Block;
}  // namespace simt
extern __thread simt::Fiber *simt_cur_fiber;  // the emulated thread now running on this host thread
extern __thread simt::Block *simt_cur_block;

namespace simt {
// The parts of the runtime's per-thread / per-block state that the kernels read directly.
struct FiberView {
  uint3 tid;
};
struct BlockView {
  uint3 bid;
  dim3 bdim, gdim;
};
// (not instrumented by ThreadSanitizer: the runtime writes these before each block, ordered by the launch)
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIMT_NO_TSAN __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef SIMT_NO_TSAN
#define SIMT_NO_TSAN
#endif
SIMT_NO_TSAN inline const uint3 &thread_idx() { return reinterpret_cast<const FiberView *>(simt_cur_fiber)->tid; }
SIMT_NO_TSAN inline const BlockView &block_view() { return *reinterpret_cast<const BlockView *>(simt_cur_block); }

void register_dynamic_shared(void *(*addr)(), const char *name);
struct DynamicSharedReg {
  DynamicSharedReg(void *(*addr)(), const char *name) { register_dynamic_shared(addr, name); }
};

// ----- scheduling points (each takes the caller's file:line for its error messages) ----------------------
void syncthreads(const char *file, int line);
uint64_t shfl(uint64_t v, int mode, int arg, int width, unsigned mask, const char *file, int line);
unsigned vote(int pred, int mode, unsigned mask, const char *file, int line);
void ldmatrix(uint32_t *r, const void *p, int nmat, bool trans, const char *file, int line);
void mma_m16n8k16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const char *file, int line);
void cp_async(void *smem, const void *gmem, int src_bytes, const char *file, int line);
void cp_async_commit(const char *file, int line);
void cp_async_wait(int n, const char *file, int line);
enum { SHFL_IDX, SHFL_XOR, SHFL_UP, SHFL_DOWN };
enum { VOTE_BALLOT, VOTE_ANY, VOTE_ALL, VOTE_SYNC };

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  uint64_t u = 0;
  memcpy(&u, &v, sizeof v);
  return u;
}
template <class T>
inline T from_bits(uint64_t u) {
  T v;
  memcpy(&v, &u, sizeof v);
  return v;
}

// ----- launches --------------------------------------------------------------------------------------------
struct LaunchCfg {
  const void *fn;
  const char *name, *file;
  int line;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
// ctx: the converted arguments; clone / drop copy and free them (a launch on a capturing stream keeps a copy,
// as cudaStreamBeginCapture records the argument values at the launch, and a graph launch replays it)
void launch(const LaunchCfg &c, void (*body)(void *), void *ctx, void *(*clone)(const void *), void (*drop)(void *));
// Emulated devices: an error when a word of the parameters points into another device's memory.
void check_launch_args(const LaunchCfg &c, const void *params, size_t n);

// k<<<g, b, smem, s>>>(args): the arguments are converted to the kernel's parameter types once (as the
// CUDA runtime does); every emulated thread then calls the kernel, i.e. gets its own by-value copy.
template <class F>
struct Launcher;
template <class... P>
struct Launcher<void(P...)> {
  void (*fn)(P...);
  LaunchCfg cfg;
  template <class... A>
  void operator()(A &&...a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    using Args = std::tuple<typename std::decay<P>::type...>;
    struct Ctx {
      void (*fn)(P...);
      Args args;
    } ctx{fn, Args(std::forward<A>(a)...)};
    check_launch_args(cfg, &ctx.args, sizeof ctx.args);
    launch(cfg, [](void *c) { std::apply(static_cast<Ctx *>(c)->fn, static_cast<Ctx *>(c)->args); }, &ctx,
           [](const void *c) -> void * { return new Ctx(*static_cast<const Ctx *>(c)); },
           [](void *c) { delete static_cast<Ctx *>(c); });
  }
};
template <class... P>
Launcher<void(P...)> make_launcher(void (*fn)(P...), dim3 g, dim3 b, size_t smem, cudaStream_t s, const char *name,
                                   const char *file, int line) {
  return Launcher<void(P...)>{fn, LaunchCfg{reinterpret_cast<const void *>(fn), name, file, line, g, b, smem, s}};
}
}  // namespace simt

#define VDP_LAUNCH(k, g, b, smem, stream) \
  simt::make_launcher(k, dim3(g), dim3(b), (size_t)(smem), stream, #k, __FILE__, __LINE__)
// SIMT_PROFILE's model report: the operator behind the next launches (kernels.cu; test/simt/profile.cpp)
namespace simt {
void prof_note(const char *op, double flops, double bytes);
}
#define VDP_MODEL_NOTE(op, flops, bytes) simt::prof_note(op, (double)(flops), (double)(bytes))

// The file:line of a device helper's caller (default arguments are evaluated at the call site).
#define SIMT_WHERE const char *simt_file = __builtin_FILE(), int simt_line = __builtin_LINE()
#define SIMT_AT simt_file, simt_line

#define threadIdx (simt::thread_idx())
#define blockIdx (simt::block_view().bid)
#define blockDim (simt::block_view().bdim)
#define gridDim (simt::block_view().gdim)

// `extern __shared__ T name[];` in kernels.cu needs one definition per name (generated by the Makefile).
#define SIMT_DYNAMIC_SHARED(T, name)                                                                       \
  thread_local __attribute__((aligned(128))) T name[simt::kMaxDynamicShared / sizeof(T)];                  \
  static void *simt_dyn_addr_##name() { return name; }                                                     \
  static simt::DynamicSharedReg simt_dyn_reg_##name(simt_dyn_addr_##name, #name);

// ----- intrinsics -------------------------------------------------------------------------------------------
#define __syncthreads() simt::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu, SIMT_WHERE) { simt::vote(1, simt::VOTE_SYNC, mask, SIMT_AT); }
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, SIMT_WHERE) {
  return simt::from_bits<T>(simt::shfl(simt::to_bits(v), simt::SHFL_IDX, src, width, mask, SIMT_AT));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, SIMT_WHERE) {
  return simt::from_bits<T>(simt::shfl(simt::to_bits(v), simt::SHFL_XOR, lane_mask, width, mask, SIMT_AT));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, SIMT_WHERE) {
  return simt::from_bits<T>(simt::shfl(simt::to_bits(v), simt::SHFL_UP, (int)delta, width, mask, SIMT_AT));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, SIMT_WHERE) {
  return simt::from_bits<T>(simt::shfl(simt::to_bits(v), simt::SHFL_DOWN, (int)delta, width, mask, SIMT_AT));
}
inline unsigned __ballot_sync(unsigned mask, int pred, SIMT_WHERE) { return simt::vote(pred, simt::VOTE_BALLOT, mask, SIMT_AT); }
inline int __any_sync(unsigned mask, int pred, SIMT_WHERE) { return (int)simt::vote(pred, simt::VOTE_ANY, mask, SIMT_AT); }
inline int __all_sync(unsigned mask, int pred, SIMT_WHERE) { return (int)simt::vote(pred, simt::VOTE_ALL, mask, SIMT_AT); }

template <class T>
inline T __ldg(const T *p) { return *p; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline __half hexp(__half x) { return __float2half(expf(__half2float(x))); }
inline __half hsqrt(__half x) { return __float2half(sqrtf(__half2float(x))); }
inline __half hrcp(__half x) { return __float2half(1.0f / __half2float(x)); }
// the device min / max overloads
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// cudaFuncSetAttribute's kernel-pointer overload is declared only under nvcc.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void *>(entry), attr, value);
}
#endif
