// selftest.cu — the SIMT emulator's own tests (test/t_simt_selftest.sh). Compiled like kernels.cu (g++ with
// simt.h force-included), never by nvcc.
//   simt_selftest semantics    the collectives against scalar references written from the PTX ISA / CUDA
//                              guide: shuffles (idx / xor / up / down, width 8), ballot / any / all,
//                              ldmatrix x1 / x2 / x4 (.trans), mma m16n8k16, cp.async with zero fill and
//                              its group accounting, poisoned static shared memory; stream capture and graphs
//                              (recorded not run, arguments copied at the launch, replays, CUDA's error codes
//                              for what a capture forbids); "ok - ..." lines
//   simt_selftest ERROR-CASE   a kernel with one planted error (deadlock, divergent-barrier, exit-at-barrier,
//                              ldmatrix-misaligned, ldmatrix-global, cp-async-misaligned, shfl-mask,
//                              smem-over-48k, stack-overflow): the emulator must stop it with exit status 1 and
//                              a "simt: error" message naming this file and line (checked by the script)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thread>
#include <vector>

static int g_fail = 0;
static void check(bool ok, const char *name, const char *detail) {
  printf("%s - simt_selftest %s %s\n", ok ? "ok" : "FAIL", name, detail);
  if (!ok) g_fail++;
}
static uint16_t hbits(float f) {
  __half h = __float2half(f);
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}
static float hval(uint16_t u) {
  __half_raw r;
  r.x = u;
  return __half2float(__half(r));
}

// ----- semantics ------------------------------------------------------------------------------------------
__global__ void shfl_kernel(int *out) {
  const int l = threadIdx.x;
  out[0 * 32 + l] = __shfl_sync(0xffffffffu, l * 10, (l + 3) & 31);
  out[1 * 32 + l] = __shfl_xor_sync(0xffffffffu, l * 10, 5);
  out[2 * 32 + l] = __shfl_up_sync(0xffffffffu, l * 10, 3, 8);
  out[3 * 32 + l] = __shfl_down_sync(0xffffffffu, l * 10, 2, 8);
  out[4 * 32 + l] = (int)__ballot_sync(0xffffffffu, l % 3 == 0);
  out[5 * 32 + l] = __any_sync(0xffffffffu, l == 7) + 2 * __all_sync(0xffffffffu, l < 32);
  if (l < 16) out[6 * 32 + l] = __shfl_xor_sync(0x0000ffffu, l, 1);
  else out[6 * 32 + l] = -1;
}

// every lane of ldmatrix .x4 (and .trans) and of mma m16n8k16 against the PTX fragment layouts
__global__ void ldsm_mma_kernel(const uint16_t *a, const uint16_t *b, uint32_t *regs, float *d) {
  __shared__ __align__(16) uint16_t sa[16 * 16], sb[16 * 16];
  const int l = threadIdx.x;
  for (int i = l; i < 256; i += 32) sa[i] = a[i], sb[i] = b[i];
  __syncwarp();
  uint32_t r[4], t[4], x1[1], x2[2];
  // matrix i = rows 8*(i&1).., cols 8*(i>>1): lane l supplies row (l & 7) of matrix (l >> 3)
  const int mi = l >> 3, row = (mi & 1) * 8 + (l & 7), col = (mi >> 1) * 8;
  simt::ldmatrix(r, sa + row * 16 + col, 4, false, __FILE__, __LINE__);
  simt::ldmatrix(t, sb + row * 16 + col, 4, true, __FILE__, __LINE__);
  simt::ldmatrix(x1, sa + (l & 7) * 16, 1, false, __FILE__, __LINE__);
  simt::ldmatrix(x2, sa + (l & 15) * 16, 2, true, __FILE__, __LINE__);
  for (int i = 0; i < 4; i++) regs[l * 11 + i] = r[i], regs[l * 11 + 4 + i] = t[i];
  regs[l * 11 + 8] = x1[0], regs[l * 11 + 9] = x2[0], regs[l * 11 + 10] = x2[1];
  // A = sa (16x16 row-major) in the A fragment: exactly what ldmatrix x4 of the 4 quadrants gives (r);
  // B (k x n, 16x8) = the first 8 columns of sb, as the col-major fragment = .trans of sb's 2 left quadrants
  float acc[4] = {1.f, 2.f, 3.f, 4.f};
  simt::mma_m16n8k16(acc, r, t[0], t[1], __FILE__, __LINE__);
  for (int i = 0; i < 4; i++) d[l * 4 + i] = acc[i];
}

__global__ void cp_async_kernel(const uint8_t *g, uint8_t *out) {
  extern __shared__ __align__(16) uint8_t dyn[];
  const int l = threadIdx.x;
  simt::cp_async(dyn + 16 * l, g + 16 * l, l % 17, __FILE__, __LINE__);  // l % 17 bytes, the rest zeros
  simt::cp_async_commit(__FILE__, __LINE__);
  simt::cp_async(dyn + 1024 + 16 * l, g + 16 * l, 16, __FILE__, __LINE__);
  simt::cp_async_commit(__FILE__, __LINE__);
  simt::cp_async_wait(1, __FILE__, __LINE__);  // the first group has landed, the second not yet
  for (int i = 0; i < 16; i++) out[16 * l + i] = dyn[16 * l + i], out[1024 + 16 * l + i] = dyn[1024 + 16 * l + i];
  simt::cp_async_wait(0, __FILE__, __LINE__);
  for (int i = 0; i < 16; i++) out[2048 + 16 * l + i] = dyn[1024 + 16 * l + i];
}

__global__ void static_poison_kernel(float *out) {
  __shared__ float s[64];
  if (threadIdx.x == 0 && blockIdx.x == 0) s[0] = 1.0f;  // block 1 must not see block 0's value
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
  if (threadIdx.x == 1) out[2 + blockIdx.x] = s[1];
}

// ----- stream capture and graphs (CUDA's rules: cuda_runtime_api.h, driver_types.h) ------------------------
struct Add {
  int k;
};
__global__ void add_kernel(int *out, Add a, const int *in) { out[threadIdx.x] += a.k + in[threadIdx.x]; }

// A capture on s in which `forbidden` runs: it must fail with `want`, and the capture must end invalidated.
template <class F>
static void forbidden_case(const char *name, cudaStream_t s, cudaError_t want, F forbidden) {
  cudaGraph_t g = (cudaGraph_t)1;
  bool ok = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  const cudaError_t got = forbidden();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(s, &st);
  const cudaError_t end = cudaStreamEndCapture(s, &g);
  cudaGetLastError();
  ok = ok && got == want && st == cudaStreamCaptureStatusInvalidated && end == cudaErrorStreamCaptureInvalidated && !g;
  char detail[200];
  snprintf(detail, sizeof detail, "(%s, then cudaStreamEndCapture: %s)", cudaGetErrorName(got), cudaGetErrorName(end));
  check(ok, name, detail);
}

static int graphs() {
  cudaStream_t s, nb;
  cudaStreamCreate(&s);
  cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking);
  int *out, *in, host_in[32];
  cudaMalloc((void **)&out, 32 * sizeof(int)), cudaMalloc((void **)&in, 32 * sizeof(int));
  for (int i = 0; i < 32; i++) out[i] = 0, host_in[i] = 0;
  Add a = {5};
  cudaGraph_t g = NULL;
  cudaGraphExec_t x = NULL;
  bool ok = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess;
  cudaMemcpyAsync(in, host_in, sizeof host_in, cudaMemcpyHostToDevice, s);  // read when the node runs
  VDP_LAUNCH(add_kernel, 1, 32, 0, s)(out, a, in);                          // a copied now
  a.k = 1000;
  for (int i = 0; i < 32; i++) host_in[i] = i;
  bool none_ran = true;
  for (int i = 0; i < 32; i++) none_ran &= out[i] == 0;
  ok = ok && cudaStreamEndCapture(s, &g) == cudaSuccess && g && cudaGraphInstantiate(&x, g, 0) == cudaSuccess;
  ok = ok && cudaGraphDestroy(g) == cudaSuccess;  // the executable graph holds its own copy
  ok = ok && cudaGraphLaunch(x, s) == cudaSuccess && cudaGraphLaunch(x, s) == cudaSuccess;
  bool replayed = true;
  for (int i = 0; i < 32; i++) replayed &= out[i] == 2 * (5 + i);
  cudaGraphExecDestroy(x);
  check(ok && none_ran && replayed, "graph_capture_replay",
        "(nothing runs while capturing; a kernel argument is copied at the launch, a host copy reads at replay; two "
        "launches replay twice)");

  forbidden_case("graph_forbids_sync_memcpy", s, cudaErrorStreamCaptureImplicit,
                 [&] { return cudaMemcpy(in, host_in, 4, cudaMemcpyHostToDevice); });
  forbidden_case("graph_forbids_stream_sync", s, cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamSynchronize(s); });
  forbidden_case("graph_forbids_device_sync", s, cudaErrorStreamCaptureUnsupported, [&] { return cudaDeviceSynchronize(); });
  forbidden_case("graph_forbids_malloc", s, cudaErrorStreamCaptureUnsupported, [&] {
    void *p = NULL;
    return cudaMalloc(&p, 16);
  });
  forbidden_case("graph_forbids_legacy_launch", s, cudaErrorStreamCaptureImplicit, [&] {
    VDP_LAUNCH(add_kernel, 1, 32, 0, 0)(out, a, in);
    return cudaGetLastError();
  });
  {  // a non-blocking stream does not synchronize with the legacy stream: cudaMemcpy may run beside its capture
    bool b = cudaStreamBeginCapture(nb, cudaStreamCaptureModeRelaxed) == cudaSuccess;
    b = b && cudaMemcpy(in, host_in, 4, cudaMemcpyHostToDevice) == cudaSuccess;
    b = b && cudaStreamEndCapture(nb, &g) == cudaSuccess && g && cudaGraphDestroy(g) == cudaSuccess;
    check(b, "graph_nonblocking_allows_legacy_copy", "(relaxed capture on a cudaStreamNonBlocking stream)");
  }
  {  // ThreadLocal: another thread may allocate; Global: it may not
    cudaError_t other[2];
    for (int mode = 0; mode < 2; mode++) {
      cudaStreamBeginCapture(s, mode ? cudaStreamCaptureModeGlobal : cudaStreamCaptureModeThreadLocal);
      std::thread t([&] {
        void *p = NULL;
        other[mode] = cudaMalloc(&p, 16);
        if (p && other[mode] == cudaSuccess) cudaFree(p);
      });
      t.join();
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
    }
    char d[160];
    snprintf(d, sizeof d, "(another thread's cudaMalloc: %s under ThreadLocal, %s under Global)", cudaGetErrorName(other[0]),
             cudaGetErrorName(other[1]));
    check(other[0] == cudaSuccess && other[1] == cudaErrorStreamCaptureUnsupported, "graph_capture_modes", d);
  }
  {
    cudaStreamCaptureStatus st;
    const cudaError_t legacy = cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal);
    const cudaError_t unmatched = cudaStreamEndCapture(s, &g);
    cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    const cudaError_t twice = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    cudaStreamIsCapturing(s, &st);
    cudaStreamEndCapture(s, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    char d[200];
    snprintf(d, sizeof d, "(capture of stream 0: %s; end without a capture: %s; a second begin: %s)",
             cudaGetErrorName(legacy), cudaGetErrorName(unmatched), cudaGetErrorName(twice));
    check(legacy == cudaErrorStreamCaptureUnsupported && unmatched == cudaErrorIllegalState &&
              twice == cudaErrorIllegalState && st == cudaStreamCaptureStatusActive,
          "graph_capture_misuse", d);
  }
  cudaFree(out), cudaFree(in);
  cudaStreamDestroy(s), cudaStreamDestroy(nb);
  return g_fail ? 1 : 0;
}

static int semantics() {
  int *out;
  cudaMalloc((void **)&out, 7 * 32 * sizeof(int));
  VDP_LAUNCH(shfl_kernel, 1, 32, 0, 0)(out);
  bool ok = true;
  unsigned ballot = 0;
  for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
  for (int l = 0; l < 32; l++) {
    ok &= out[l] == ((l + 3) & 31) * 10;
    ok &= out[32 + l] == (l ^ 5) * 10;
    ok &= out[64 + l] == ((l & 7) >= 3 ? l - 3 : l) * 10;
    ok &= out[96 + l] == ((l & 7) + 2 < 8 ? l + 2 : l) * 10;
    ok &= (unsigned)out[128 + l] == ballot;
    ok &= out[160 + l] == 3;
    ok &= out[192 + l] == (l < 16 ? (l ^ 1) : -1);
  }
  check(ok, "shuffles_votes", "(idx, xor, up / down with width 8, ballot, any, all, a 16-lane mask)");
  cudaFree(out);

  uint16_t *a, *b;
  uint32_t *regs;
  float *d;
  cudaMalloc((void **)&a, 512), cudaMalloc((void **)&b, 512), cudaMalloc((void **)&regs, 32 * 11 * 4);
  cudaMalloc((void **)&d, 32 * 4 * 4);
  float A[16][16], B[16][16];
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      A[i][j] = hval(hbits((float)((i * 7 + j * 3) % 11 - 5) * 0.25f));
      B[i][j] = hval(hbits((float)((i * 5 + j * 2) % 13 - 6) * 0.125f));
      a[i * 16 + j] = hbits(A[i][j]), b[i * 16 + j] = hbits(B[i][j]);
    }
  VDP_LAUNCH(ldsm_mma_kernel, 1, 32, 0, 0)(a, b, regs, d);
  bool ldsm = true, mma = true;
  for (int l = 0; l < 32; l++) {
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; i++) {  // matrix i = quadrant (rows 8(i&1).., cols 8(i>>1)..)
      const int r0 = (i & 1) * 8, c0 = (i >> 1) * 8;
      const uint32_t want = a[(r0 + g) * 16 + c0 + 2 * t] | (uint32_t)a[(r0 + g) * 16 + c0 + 2 * t + 1] << 16;
      const uint32_t want_t = b[(r0 + 2 * t) * 16 + c0 + g] | (uint32_t)b[(r0 + 2 * t + 1) * 16 + c0 + g] << 16;
      ldsm &= regs[l * 11 + i] == want && regs[l * 11 + 4 + i] == want_t;
    }
    ldsm &= regs[l * 11 + 8] == (a[g * 16 + 2 * t] | (uint32_t)a[g * 16 + 2 * t + 1] << 16);
    for (int i = 0; i < 2; i++)  // .x2.trans: matrix i = rows 8i.., cols 0..7
      ldsm &= regs[l * 11 + 9 + i] == (a[(8 * i + 2 * t) * 16 + g] | (uint32_t)a[(8 * i + 2 * t + 1) * 16 + g] << 16);
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int e = 0; e < 4; e++) {
      float s = (float)(e + 1);
      for (int k = 0; k < 16; k++) s += A[rows[e]][k] * B[k][cols[e]];
      mma &= d[l * 4 + e] == s;  // exact: small multiples of 1/32, fp32 sums
    }
  }
  check(ldsm, "ldmatrix", "(x1, x2.trans, x4, x4.trans: every lane's registers)");
  check(mma, "mma_m16n8k16", "(every lane's D fragment = C + A·B)");

  uint8_t *g, *o;
  cudaMalloc((void **)&g, 512), cudaMalloc((void **)&o, 3072);
  for (int i = 0; i < 512; i++) g[i] = (uint8_t)(i * 13 + 1);
  VDP_LAUNCH(cp_async_kernel, 1, 32, 2048, 0)(g, o);
  bool cp = true;
  for (int l = 0; l < 32; l++)
    for (int i = 0; i < 16; i++) {
      cp &= o[16 * l + i] == (i < l % 17 ? g[16 * l + i] : 0);  // landed, zero-filled
      cp &= o[1024 + 16 * l + i] == 0xFF;                        // not yet: the poison
      cp &= o[2048 + 16 * l + i] == g[16 * l + i];
    }
  check(cp, "cp_async", "(zero fill, poison until the retiring wait_group, group counting)");

  float *f;
  cudaMalloc((void **)&f, 4 * sizeof(float));
  VDP_LAUNCH(static_poison_kernel, 2, 32, 0, 0)(f);
  check(f[0] == 1.0f && f[1] != f[1] && f[2] != f[2] && f[3] != f[3], "static_shared_poison",
        "(a static __shared__ value does not survive into the next block: NaN)");
  return graphs() || g_fail ? 1 : 0;
}

// ----- planted errors (each must stop the run with a message naming the line) -------------------------------
__global__ void deadlock_kernel() {  // warp 1's lower half waits for its upper half, which waits at the barrier
  if (threadIdx.x >= 32 && threadIdx.x < 48) __shfl_sync(0xffffffffu, 1, 0);  // planted: deadlock
  else __syncthreads();
}
__global__ void divergent_barrier_kernel() {
  if (threadIdx.x & 32) __syncthreads();  // planted: divergent-barrier
  else __syncthreads();
}
__global__ void exit_at_barrier_kernel() {
  if (threadIdx.x >= 32) return;
  __syncthreads();  // planted: exit-at-barrier
}
__global__ void ldmatrix_misaligned_kernel() {
  __shared__ __align__(16) uint16_t s[16 * 32];
  uint32_t r[4];
  simt::ldmatrix(r, s + threadIdx.x * 8 + 1, 4, false, __FILE__, __LINE__);  // planted: ldmatrix-misaligned
}
__global__ void ldmatrix_global_kernel(const uint16_t *g) {
  uint32_t r[4];
  simt::ldmatrix(r, g + threadIdx.x * 8, 4, false, __FILE__, __LINE__);  // planted: ldmatrix-global
}
__global__ void cp_async_misaligned_kernel(const uint8_t *g) {
  extern __shared__ __align__(16) uint8_t dyn[];
  simt::cp_async(dyn + 16 * threadIdx.x, g + 8, 16, __FILE__, __LINE__);  // planted: cp-async-misaligned
}
__global__ void shfl_mask_kernel() {
  __shfl_sync(0x0000ffffu, 1, 0);  // planted: shfl-mask (lanes 16..31 are not in the mask)
}
__global__ void big_smem_kernel() {
  extern __shared__ __align__(16) uint8_t dyn[];
  dyn[threadIdx.x] = 0;
}
__global__ void __attribute__((noinline)) deep(int n, volatile char *sink) {
  volatile char buf[4096];
  buf[0] = (char)n;
  if (n > 0) deep(n - 1, buf);
  if (sink) sink[0] = buf[0];
}
__global__ void stack_overflow_kernel() { deep(1 << 20, nullptr); }

// device-memory guard zones: p is a 1000-byte allocation (250 floats; 256-byte rounded end at 1024)
__global__ void guard_write_kernel(float *p) {
  if (blockIdx.x == 1 && threadIdx.x == 5) p[256 + threadIdx.x] = 1.0f;  // planted: guard-write
}
__global__ void guard_read_kernel(const float *p, float *out) {
  if (blockIdx.x == 1 && threadIdx.x == 5) out[0] = p[300];  // planted: guard-read
}
__global__ void guard_slack_kernel(float *p) {  // writes inside the 256-byte rounding (no fault on a GPU)
  if (blockIdx.x == 2 && threadIdx.x == 3) p[250] = 1.0f;
}
__global__ void guard_before_kernel(float *p) {
  if (blockIdx.x == 0 && threadIdx.x == 7) p[-1] = 1.0f;
}
// The block order: thread 0 of each block appends its linear block index (blocks run one at a time).
__global__ void block_order_kernel(int *order, int *count) {
  if (threadIdx.x == 0) order[(*count)++] = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}
static int block_order_check() {  // SIMT_BLOCKS as set: fwd (or unset) 0, 1, ...; rev n-1, ...; random a permutation
  const int n = 5 * 3 * 2;
  int *order, *count;
  cudaMalloc(&order, n * sizeof(int));
  cudaMalloc(&count, sizeof(int));
  cudaMemset(count, 0, sizeof(int));
  VDP_LAUNCH(block_order_kernel, dim3(5, 3, 2), 64, 0, 0)(order, count);
  const char *m = getenv("SIMT_BLOCKS");
  const bool rev = m && !strcmp(m, "rev"), rnd = m && !strncmp(m, "random", 6);
  std::vector<int> seen(n, 0);
  int in_order = 0, reversed = 0, perm = *count == n;
  for (int k = 0; k < n && perm; k++) {
    perm = order[k] >= 0 && order[k] < n && !seen[order[k]]++;
    in_order += order[k] == k;
    reversed += order[k] == n - 1 - k;
  }
  char d[200];
  snprintf(d, sizeof d, "(SIMT_BLOCKS=%s: %d blocks ran, first %d %d %d, %d in place, %d reversed)", m ? m : "",
           *count, order[0], order[1], order[2], in_order, reversed);
  check(perm && (rnd ? in_order < n && reversed < n : rev ? reversed == n : in_order == n), "block_order", d);
  return g_fail ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "semantics";
  if (!strcmp(c, "semantics")) return semantics();
  if (!strcmp(c, "block-order")) return block_order_check();
  void *g;
  cudaMalloc(&g, 4096);
  float *p;
  cudaMalloc(&p, 1000);
  if (!strcmp(c, "guard-write")) VDP_LAUNCH(guard_write_kernel, 3, 32, 0, 0)(p);
  else if (!strcmp(c, "guard-read")) VDP_LAUNCH(guard_read_kernel, 3, 32, 0, 0)(p, (float *)g);
  else if (!strcmp(c, "guard-slack")) VDP_LAUNCH(guard_slack_kernel, 3, 32, 0, 0)(p);  // planted: guard-slack
  else if (!strcmp(c, "guard-before")) VDP_LAUNCH(guard_before_kernel, 3, 32, 0, 0)(p);  // planted: guard-before
  else if (!strcmp(c, "guard-memcpy")) {
    static char host[2000];
    cudaMemcpy((char *)g + 3000, host, sizeof host, cudaMemcpyHostToDevice);  // planted: guard-memcpy
  } else if (!strcmp(c, "guard-free")) {
    ((char *)p)[1001] = 0;  // host code writing into the slack: found at cudaFree
    cudaFree(p);  // planted: guard-free
  }
  else if (!strcmp(c, "deadlock")) VDP_LAUNCH(deadlock_kernel, 1, 64, 0, 0)();
  else if (!strcmp(c, "divergent-barrier")) VDP_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)();
  else if (!strcmp(c, "exit-at-barrier")) VDP_LAUNCH(exit_at_barrier_kernel, 1, 64, 0, 0)();
  else if (!strcmp(c, "ldmatrix-misaligned")) VDP_LAUNCH(ldmatrix_misaligned_kernel, 1, 32, 0, 0)();
  else if (!strcmp(c, "ldmatrix-global")) VDP_LAUNCH(ldmatrix_global_kernel, 1, 32, 0, 0)((const uint16_t *)g);
  else if (!strcmp(c, "cp-async-misaligned")) VDP_LAUNCH(cp_async_misaligned_kernel, 1, 32, 512, 0)((const uint8_t *)g);
  else if (!strcmp(c, "shfl-mask")) VDP_LAUNCH(shfl_mask_kernel, 1, 32, 0, 0)();
  else if (!strcmp(c, "stack-overflow")) VDP_LAUNCH(stack_overflow_kernel, 1, 32, 0, 0)();  // planted: stack-overflow
  else if (!strcmp(c, "smem-over-48k")) {
    VDP_LAUNCH(big_smem_kernel, 1, 32, 64 * 1024, 0)();  // planted: smem-over-48k (no cudaFuncSetAttribute)
    const cudaError_t e = cudaGetLastError();
    fprintf(stderr, "simt: error: %s:%d: launch returned %s\n", __FILE__, __LINE__, cudaGetErrorString(e));
    return e == cudaErrorInvalidValue ? 1 : 0;
  } else {
    fprintf(stderr, "simt_selftest: unknown case %s\n", c);
    return 2;
  }
  printf("the planted error was not reported\n");
  return 0;
}
