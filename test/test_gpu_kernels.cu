// test_gpu_kernels.cu — every CUDA kernel (kernels.h) against its CPU twin (ops.c, vdp.h §3).
//
// Inputs are random fp16 values (never zero); the CPU reference runs in fp32 on exactly the same fp16
// values (converted), so the only differences are the GPU's fp16 outputs / fp16 P matrix and the order of
// fp32 accumulation. Random noise alone hides whole classes of bugs (every warp, split and frame of a
// reduction sees the same statistics; the variance dwarfs eps; a stray key's weight is tiny), so the norms
// and attention also run on structured inputs ("struct" / "negative" checks, see "structured data").
// Every GPU output buffer is poisoned with NaN before the op, so an element the kernel does not write fails
// the check, and so is its slack past the end, which must still be poison after the op. Error = max|gpu − ref| / max|ref| over the checked elements, with one
// bound per output precision (TOL_F16, TOL_F32 below). For the full-size SVD shapes the CPU reference is
// computed on a subset (some images / frames / columns / rows / queries) of the full GPU run.
//
// Usage: test_gpu_kernels [--small] [--only a,b,...] [--bench]
//   --small   only the small shapes (tiny models, odd sizes): used under compute-sanitizer
//   --only    run the checks whose name contains one of the comma-separated words
//   --bench   no checks: time the kernels at the full SVD shapes ("bench NAME ms=... ..." lines)
// Output: "ok - NAME err=..." / "FAIL - NAME ...", then "N passed, N failed"; exit status 1 on failure.
extern "C" {
#include "vdp.h"
}
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "kernels.h"

static const double TOL_F16 = 1e-2;  // fp16 outputs (rounding 2^-11 relative + fp32 accumulation order)
static const double TOL_F32 = 1e-5;  // fp32 outputs (sampler latents)

static int g_pass = 0, g_fail = 0, g_small = 0, g_bench = 0;
static std::vector<std::string> g_only;

static uint64_t g_rng;
// A check runs when --only names a word of it; its random inputs are then seeded from its name, so that
// a check sees the same values (and measures the same error) whichever checks run before it.
static bool selected(const char *name) {
  bool on = g_only.empty();
  for (auto &w : g_only) on = on || strstr(name, w.c_str());
  if (on) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    g_rng = h;
  }
  return on;
}

// ----- random data -----------------------------------------------------------------------------------
static float urand() {  // uniform in [-1, -0.02] ∪ [0.02, 1]: never zero
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  float u = (float)((g_rng >> 40) & 0xFFFFFF) / 16777216.0f;  // [0,1)
  float m = 0.02f + 0.98f * u;
  return (g_rng >> 39) & 1 ? m : -m;
}

// ----- structured data ---------------------------------------------------------------------------------
// A reduction over random noise cannot tell its parts apart: every warp, split and frame has mean ~0 and
// variance ~1/3, so dropping one of them, or one value, moves the result by less than the tolerance; eps
// (1e-5, 1e-6) vanishes beside that variance. Structured inputs give each part its own statistics:
//   ramp         a ramp from -1 to 1 across the whole reduced extent (frames, channels, pixels, in memory
//                order) plus an offset per channel: each warp, split and frame covers a different range
//   flat         near-constant: 0.01 + a ramp of amplitude sqrt(3·eps), a variance of exactly eps, so an
//                eps in the wrong place changes the result by ~40%
//   noise        the random values of the other checks
// The reduced extents of one tensor cycle through the three kinds.
enum { S_RAMP, S_FLAT, S_NOISE };
static float structured(int kind, long long i, long long len, int ch, float eps) {
  const float ramp = len > 1 ? 2.0f * (float)i / (float)(len - 1) - 1.0f : 0.0f;  // -1 .. 1
  switch (kind) {
    case S_RAMP: return ramp + 0.25f * (float)((ch * 7) % 5 - 2);
    case S_FLAT: return 0.01f + sqrtf(3.0f * eps) * ramp;
    default: return urand();
  }
}

// A tensor kept on both sides: fp16 bits on the device, the same values as fp32 on the host.
struct T {
  size_t n = 0;
  std::vector<float> h;  // host fp32 copy (the fp16 values)
  void *d = nullptr;     // device fp16
};
static T make(size_t n, float scale) {
  T t;
  t.n = n;
  t.h.resize(n);
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; i++) {
    bits[i] = float_to_half(urand() * scale);
    t.h[i] = half_to_float(bits[i]);
  }
  CUDA_CHECK(cudaMalloc(&t.d, n * 2 + 16));
  CUDA_CHECK(cudaMemset((char *)t.d + n * 2, 0xFF, 16));  // the slack: see fetch()
  vdp_cuda_upload(t.d, bits.data(), n * 2);
  return t;
}
static T make_out(size_t n) {  // device output poisoned with fp16 NaN (0xFFFF)
  T t;
  t.n = n;
  CUDA_CHECK(cudaMalloc(&t.d, n * 2 + 16));
  CUDA_CHECK(cudaMemset(t.d, 0xFF, n * 2 + 16));
  return t;
}
// Every device tensor has 16 bytes of slack past its n values. An output's slack is poisoned with the rest
// and must still be poison after the op: a write past the end fails the check (the emulator's guard zones
// catch what lands beyond the allocation).
static bool g_tail_bad = false;
static void fetch(T &t) {
  std::vector<uint16_t> bits(t.n + 8);
  vdp_cuda_download(bits.data(), t.d, t.n * 2 + 16);
  t.h.resize(t.n);
  for (size_t i = 0; i < t.n; i++) t.h[i] = half_to_float(bits[i]);
  for (size_t i = t.n; i < t.n + 8; i++)
    if (bits[i] != 0xFFFF) g_tail_bad = true;
}
// Rounds t.h to fp16 and uploads it (inputs whose values a test has set on the host).
static void upload(T &t) {
  std::vector<uint16_t> bits(t.n);
  for (size_t i = 0; i < t.n; i++) {
    bits[i] = float_to_half(t.h[i]);
    t.h[i] = half_to_float(bits[i]);
  }
  vdp_cuda_upload(t.d, bits.data(), t.n * 2);
}
static void drop(T &t) {
  if (t.d) cudaFree(t.d);
  t.d = nullptr;
  t.h.clear();
  t.h.shrink_to_fit();
}

// ----- comparison ----------------------------------------------------------------------------------
// Compares gpu[gi(i)] with ref[i] for i < n. Returns the normalised max error (NaN if anything is NaN/inf).
struct Cmp {
  double maxdiff = 0, maxref = 0;
  bool bad = false;
  size_t bad_at = 0;
  void add(double g, double r, size_t i) {
    if (!isfinite(g) || !isfinite(r)) {
      if (!bad) bad_at = i;
      bad = true;
      return;
    }
    maxdiff = fmax(maxdiff, fabs(g - r));
    maxref = fmax(maxref, fabs(r));
  }
  double err() const { return bad ? NAN : maxdiff / fmax(maxref, 1e-30); }
};
static void report(const char *name, const Cmp &c, double tol, const char *what = "") {
  double e = c.err();
  if (g_tail_bad) {  // set by fetch(): an output's 16 bytes of slack were written
    printf("FAIL - %s wrote past the end of an output tensor (its 16 bytes of slack changed) %s\n", name, what);
    g_tail_bad = false;
    g_fail++;
  } else if (e <= tol) {
    printf("ok - %s err=%.2e max|ref|=%.3g %s\n", name, e, c.maxref, what);
    g_pass++;
  } else {
    if (c.bad)
      printf("FAIL - %s non-finite or unwritten output at checked element %zu (expected finite) %s\n", name, c.bad_at,
             what);
    else
      printf("FAIL - %s err=%.3e > tol %.1e (max|diff|=%.3g, max|ref|=%.3g) %s\n", name, e, tol, c.maxdiff, c.maxref,
             what);
    g_fail++;
  }
  fflush(stdout);
}
static void sync_check(const char *name) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    printf("FAIL - %s CUDA error %s\n", name, cudaGetErrorString(e));
    g_fail++;
    printf("%d passed, %d failed\n", g_pass, g_fail);
    exit(1);  // the context is unusable after a device fault
  }
}

// ----- timing --------------------------------------------------------------------------------------
template <class F>
static double time_ms(F f, int iters = 10) {
  f();
  f();  // warm-up (also configures shared-memory attributes)
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < iters; i++) f();
  cudaEventRecord(b);
  CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

// ===================================================================================================
// Convolutions
// ===================================================================================================
// conv2d; checks images in `imgs` (all if empty). chan_add / res exercised when flags set.
static void t_conv2d(const char *name, int n, int cin, int h, int w, int cout, int k, int stride, int pt, int pl,
                     int pb, int pr, bool cadd, bool res, std::vector<int> imgs = {}) {
  if (!selected(name)) return;
  const int ho = (h + pt + pb - k) / stride + 1, wo = (w + pl + pr - k) / stride + 1;
  T x = make((size_t)n * cin * h * w, 1.0f);
  T wt = make((size_t)cout * cin * k * k, 1.0f / sqrtf((float)cin * k * k));
  T b = make(cout, 0.5f);
  T ca = cadd ? make((size_t)n * cout, 0.5f) : T();
  T r = res ? make((size_t)n * cout * ho * wo, 1.0f) : T();
  T y = make_out((size_t)n * cout * ho * wo);
  void *wp;
  CUDA_CHECK(cudaMalloc(&wp, vdpc_conv_weight_elems(cout, cin, k, k) * 2));
  vdpc_conv_prepare_weight(wp, wt.d, cout, cin, k, k);
  vdpc_conv2d(y.d, x.d, wp, b.d, n, cin, h, w, cout, k, k, stride, pt, pl, pb, pr, cadd ? ca.d : NULL,
              res ? r.d : NULL);
  sync_check(name);
  fetch(y);
  if (imgs.empty())
    for (int i = 0; i < n; i++) imgs.push_back(i);
  const size_t osz = (size_t)cout * ho * wo;
  std::vector<float> ref(osz);
  Cmp c;
  for (int im : imgs) {
    op_conv2d(ref.data(), x.h.data() + (size_t)im * cin * h * w, wt.h.data(), b.h.data(), 1, cin, h, w, cout, k, k,
              stride, pt, pl, pb, pr);
    for (size_t i = 0; i < osz; i++) {
      double v = ref[i];
      if (cadd) v += ca.h[(size_t)im * cout + i / ((size_t)ho * wo)];
      if (res) v += r.h[im * osz + i];
      c.add(y.h[im * osz + i], v, i);
    }
  }
  char what[96];
  snprintf(what, sizeof what, "(%zu of %d images checked)", imgs.size(), n);
  report(name, c, TOL_F16, what);
  cudaFree(wp);
  drop(x), drop(wt), drop(b), drop(ca), drop(r), drop(y);
}

// temporal conv; the CPU reference runs on a gathered subset of `ncols` pixel columns (the op is
// pointwise over pixels, so the gathered result equals the gathered full result).
static void t_temporal(const char *name, int nb, int nf, int cin, int hw, int cout, bool cadd, bool res,
                       int ncols = 0) {
  if (!selected(name)) return;
  T x = make((size_t)nb * nf * cin * hw, 1.0f);
  T wt = make((size_t)cout * cin * 3, 1.0f / sqrtf(3.0f * cin));
  T b = make(cout, 0.5f);
  T ca = cadd ? make((size_t)nb * nf * cout, 0.5f) : T();
  T r = res ? make((size_t)nb * nf * cout * hw, 1.0f) : T();
  T y = make_out((size_t)nb * nf * cout * hw);
  void *wp;
  CUDA_CHECK(cudaMalloc(&wp, vdpc_conv_weight_elems(cout, cin, 3, 1) * 2));
  vdpc_conv_prepare_weight(wp, wt.d, cout, cin, 3, 1);
  vdpc_conv_temporal(y.d, x.d, wp, b.d, nb, nf, cin, hw, cout, cadd ? ca.d : NULL, res ? r.d : NULL);
  sync_check(name);
  fetch(y);
  std::vector<int> cols;
  if (ncols <= 0 || ncols >= hw) {
    for (int i = 0; i < hw; i++) cols.push_back(i);
  } else {
    for (int i = 0; i < ncols; i++) cols.push_back((int)((long long)i * (hw - 1) / (ncols - 1)));
  }
  const int nc = (int)cols.size(), rows = nb * nf;
  std::vector<float> xs((size_t)rows * cin * nc), ys((size_t)rows * cout * nc);
  for (int rr = 0; rr < rows; rr++)
    for (int ci = 0; ci < cin; ci++)
      for (int j = 0; j < nc; j++) xs[((size_t)rr * cin + ci) * nc + j] = x.h[((size_t)rr * cin + ci) * hw + cols[j]];
  op_conv_temporal(ys.data(), xs.data(), wt.h.data(), b.h.data(), nb, nf, cin, nc, cout);
  Cmp c;
  for (int rr = 0; rr < rows; rr++)
    for (int co = 0; co < cout; co++)
      for (int j = 0; j < nc; j++) {
        const size_t gi = ((size_t)rr * cout + co) * hw + cols[j];
        double v = ys[((size_t)rr * cout + co) * nc + j];
        if (cadd) v += ca.h[(size_t)rr * cout + co];
        if (res) v += r.h[gi];
        c.add(y.h[gi], v, gi);
      }
  char what[96];
  snprintf(what, sizeof what, "(%d of %d pixel columns checked)", nc, hw);
  report(name, c, TOL_F16, what);
  cudaFree(wp);
  drop(x), drop(wt), drop(b), drop(ca), drop(r), drop(y);
}

// ===================================================================================================
// Linear (+ epilogues)
// ===================================================================================================
static void host_act(std::vector<float> &v, int act) {
  if (act == VDPC_ACT_SILU) op_silu(v.data(), v.data(), (int64_t)v.size());
  if (act == VDPC_ACT_GELU) op_gelu(v.data(), v.data(), (int64_t)v.size());
  if (act == VDPC_ACT_QUICK_GELU) op_quick_gelu(v.data(), v.data(), (int64_t)v.size());
}
// Checks rows [0, nchk) and [M − nchk, M) (all rows when nchk <= 0).
static void t_linear(const char *name, int M, int K, int N, int act, bool bias, bool res, int nchk = 0) {
  if (!selected(name)) return;
  const int Nw = act == VDPC_ACT_GEGLU ? 2 * N : N;
  T x = make((size_t)M * K, 1.0f);
  T w = make((size_t)Nw * K, 1.0f / sqrtf((float)K));
  T b = bias ? make(Nw, 0.5f) : T();
  T r = res ? make((size_t)M * N, 1.0f) : T();
  T y = make_out((size_t)M * N);
  vdpc_linear(y.d, x.d, w.d, bias ? b.d : NULL, M, K, N, act, res ? r.d : NULL);
  sync_check(name);
  fetch(y);
  std::vector<std::pair<int, int>> ranges;
  if (nchk <= 0 || 2 * nchk >= M)
    ranges.push_back({0, M});
  else
    ranges = {{0, nchk}, {M - nchk, nchk}};
  Cmp c;
  int checked = 0;
  for (auto &rg : ranges) {
    const int r0 = rg.first, nr = rg.second;
    std::vector<float> t((size_t)nr * Nw), out((size_t)nr * N);
    op_linear(t.data(), x.h.data() + (size_t)r0 * K, w.h.data(), bias ? b.h.data() : NULL, nr, K, Nw);
    if (act == VDPC_ACT_GEGLU) {
      op_geglu(out.data(), t.data(), nr, N);
    } else {
      host_act(t, act);
      out = t;
    }
    for (int i = 0; i < nr; i++)
      for (int j = 0; j < N; j++) {
        const size_t gi = (size_t)(r0 + i) * N + j;
        double v = out[(size_t)i * N + j];
        if (res) v += r.h[gi];
        c.add(y.h[gi], v, gi);
      }
    checked += nr;
  }
  char what[96];
  snprintf(what, sizeof what, "(%d of %d rows checked)", checked, M);
  report(name, c, TOL_F16, what);
  drop(x), drop(w), drop(b), drop(r), drop(y);
}

// ===================================================================================================
// Attention
// ===================================================================================================
// q, k, v packed in one [nseq, L, 3·C] buffer (C = heads·hd) as a fused QKV projection would produce
// (row stride 3C), output [nseq, lq, C]. lq != lk uses separate buffers. Checks the sequences in `seqs`
// (all if empty) and queries [0, nq) and [lq − nq, lq) (all if nq <= 0).
// negative = false: random q (times qscale: a sharper softmax for large qscale), k, v.
// negative = true: every score strongly negative — k = a·(0.5..1), q = −qscale·a·(0.5..1) for one ±1
// vector a per head, so q·k·scale ≈ −qscale·0.56·sqrt(hd) for every key, with a small spread. A key that
// should not count (the zero-filled tail of a key tile, score 0) then takes nearly all the weight instead
// of a tiny share; v stays random.
static void t_attention(const char *name, int nseq, int lq, int lk, int heads, int hd, float qscale,
                        std::vector<int> seqs = {}, int nq = 0, bool negative = false) {
  if (!selected(name)) return;
  const int C = heads * hd;
  const float scale = 1.0f / sqrtf((float)hd);
  T q, k, v;
  int64_t q_seq, q_row, k_seq, k_row;
  if (lq == lk) {  // packed QKV
    q = make((size_t)nseq * lq * 3 * C, 1.0f);  // k and v are column views of this buffer
    q_seq = k_seq = (int64_t)lq * 3 * C;
    q_row = k_row = 3 * C;
  } else {
    q = make((size_t)nseq * lq * C, 1.0f);
    T kv = make((size_t)nseq * lk * 2 * C, 1.0f);
    k = kv;
    q_seq = (int64_t)lq * C;
    q_row = C;
    k_seq = (int64_t)lk * 2 * C;
    k_row = 2 * C;
  }
  // the host copies set here are re-uploaded (rounded to fp16); part: 0 q, 1 k, 2 v
  auto sign = [](int h, int d) { return ((d * 37 + h * 11) % 3) ? 1.0f : -1.0f; };
  auto set = [&](float &e, int part, int col) {
    const int h = col / hd, d = col % hd;
    if (!negative) {
      if (part == 0) e *= qscale;
    } else if (part == 0) {
      e = -qscale * sign(h, d) * (0.75f + 0.25f * urand());
    } else if (part == 1) {
      e = sign(h, d) * (0.75f + 0.25f * urand());
    }
  };
  if (lq == lk) {
    for (size_t i = 0; i < q.h.size(); i++) {
      const int col = (int)(i % (3 * C));
      set(q.h[i], col / C, col % C);
    }
  } else {
    for (size_t i = 0; i < q.h.size(); i++) set(q.h[i], 0, (int)(i % C));
    if (negative) {
      for (size_t i = 0; i < k.h.size(); i++) {
        const int col = (int)(i % (2 * C));
        set(k.h[i], 1 + col / C, col % C);
      }
      upload(k);
    }
  }
  upload(q);
  const float *qh, *kh, *vh;
  const char *qd, *kd, *vd;
  if (lq == lk) {
    qh = q.h.data();
    kh = q.h.data() + C;
    vh = q.h.data() + 2 * C;
    qd = (const char *)q.d;
    kd = qd + 2 * C;
    vd = qd + 4 * C;
  } else {
    qh = q.h.data();
    kh = k.h.data();
    vh = k.h.data() + C;
    qd = (const char *)q.d;
    kd = (const char *)k.d;
    vd = kd + 2 * C;
  }
  T o = make_out((size_t)nseq * lq * C);
  vdpc_attention(o.d, (int64_t)lq * C, C, qd, q_seq, q_row, kd, k_seq, k_row, vd, k_seq, k_row, nseq, lq, lk, heads,
                 hd, scale);
  sync_check(name);
  fetch(o);
  if (seqs.empty())
    for (int s = 0; s < nseq; s++) seqs.push_back(s);
  std::vector<std::pair<int, int>> qr;
  if (nq <= 0 || 2 * nq >= lq)
    qr.push_back({0, lq});
  else
    qr = {{0, nq}, {lq - nq, nq}};
  Cmp c;
  for (int s : seqs)
    for (auto &rg : qr) {
      std::vector<float> ref((size_t)rg.second * C);
      op_attention(ref.data(), 0, C, qh + s * q_seq + (int64_t)rg.first * q_row, 0, q_row, kh + s * k_seq, 0, k_row,
                   vh + s * k_seq, 0, k_row, 1, rg.second, lk, heads, hd, scale);
      for (int i = 0; i < rg.second; i++)
        for (int j = 0; j < C; j++) {
          const size_t gi = ((size_t)s * lq + rg.first + i) * C + j;
          c.add(o.h[gi], ref[(size_t)i * C + j], gi);
        }
    }
  char what[128];
  snprintf(what, sizeof what, "(%zu of %d sequences, %d of %d queries checked)", seqs.size(), nseq,
           (nq <= 0 || 2 * nq >= lq) ? lq : 2 * nq, lq);
  report(name, c, TOL_F16, what);
  drop(q), drop(k), drop(o);
}

// Single-key cross-attention: the CPU reference does the full attention (to_q, to_k, softmax over one
// key, to_v, to_out) so the test also checks the shortcut's exactness argument.
static void t_cross(const char *name, int nctx, int ctx_dim, int C, int rows_per_ctx, int heads, bool res,
                    int nchk = 0) {
  if (!selected(name)) return;
  const int hd = C / heads;
  const long long rows = (long long)nctx * rows_per_ctx;
  T x = make((size_t)rows * C, 1.0f);  // the queries' hidden states (unused by the GPU shortcut)
  T ctx = make((size_t)nctx * ctx_dim, 1.0f);
  T wq = make((size_t)C * C, 1.0f / sqrtf((float)C));
  T wk = make((size_t)C * ctx_dim, 1.0f / sqrtf((float)ctx_dim));
  T wv = make((size_t)C * ctx_dim, 1.0f / sqrtf((float)ctx_dim));
  T wo = make((size_t)C * C, 1.0f / sqrtf((float)C));
  T bo = make(C, 0.5f);
  T r = res ? make((size_t)rows * C, 1.0f) : T();
  T y = make_out((size_t)rows * C);
  vdpc_cross_attn_1key(y.d, res ? r.d : NULL, ctx.d, wv.d, wo.d, bo.d, nctx, ctx_dim, C, rows_per_ctx);
  sync_check(name);
  fetch(y);
  const int nr = (nchk <= 0 || nchk > rows_per_ctx) ? rows_per_ctx : nchk;
  Cmp c;
  for (int g = 0; g < nctx; g++) {
    std::vector<float> q((size_t)nr * C), kk(C), vv(C), a((size_t)nr * C), out((size_t)nr * C);
    op_linear(q.data(), x.h.data() + (size_t)g * rows_per_ctx * C, wq.h.data(), NULL, nr, C, C);
    op_linear(kk.data(), ctx.h.data() + (size_t)g * ctx_dim, wk.h.data(), NULL, 1, ctx_dim, C);
    op_linear(vv.data(), ctx.h.data() + (size_t)g * ctx_dim, wv.h.data(), NULL, 1, ctx_dim, C);
    op_attention(a.data(), 0, C, q.data(), 0, C, kk.data(), 0, C, vv.data(), 0, C, 1, nr, 1, heads, hd,
                 1.0f / sqrtf((float)hd));
    op_linear(out.data(), a.data(), wo.h.data(), bo.h.data(), nr, C, C);
    for (int i = 0; i < nr; i++)
      for (int j = 0; j < C; j++) {
        const size_t gi = ((size_t)g * rows_per_ctx + i) * C + j;
        double v = out[(size_t)i * C + j];
        if (res) v += r.h[gi];
        c.add(y.h[gi], v, gi);
      }
  }
  // every other row must at least be written (finite): the poison is NaN
  for (long long i = 0; i < rows * C; i++)
    if (!isfinite(y.h[i])) {
      if (!c.bad) c.bad_at = (size_t)i;
      c.bad = true;
    }
  char what[96];
  snprintf(what, sizeof what, "(%d of %d rows per context checked)", nr, rows_per_ctx);
  report(name, c, TOL_F16, what);
  drop(x), drop(ctx), drop(wq), drop(wk), drop(wv), drop(wo), drop(bo), drop(r), drop(y);
}

// ===================================================================================================
// Norms
// ===================================================================================================
// With structured inputs, γ in [0.5, 1] and β in ±0.1: a random γ near 0 or a large β would hide the
// normalised values (the error is relative to max|ref|).
static void gamma_beta_for_structure(T &gamma, T &beta) {
  for (auto &v : gamma.h) v = 0.5f + 0.5f * fabsf(v);
  for (auto &v : beta.h) v *= 0.2f;
  upload(gamma);
  upload(beta);
}

// offset: added to every value (a large mean relative to the spread: catches E[x²] − E[x]² cancellation).
// structure: the reduced extent of each (video, group) — nf frames × c/groups channels × hw pixels — is
// ramp, flat or noise in turn (see "structured data").
static void t_groupnorm(const char *name, int nb, int nf, int c, int hw, int groups, float eps, int silu,
                        float offset, bool structure = false) {
  if (!selected(name)) return;
  T x = make((size_t)nb * nf * c * hw, 1.0f);
  if (structure) {
    const int cpg = c / groups;
    const long long len = (long long)nf * cpg * hw;
    for (int b = 0; b < nb; b++)
      for (int g = 0; g < groups; g++)
        for (int f = 0; f < nf; f++)
          for (int cc = 0; cc < cpg; cc++)
            for (int px = 0; px < hw; px++) {
              const long long e = ((long long)f * cpg + cc) * hw + px;  // position in the reduced extent
              x.h[(((size_t)b * nf + f) * c + g * cpg + cc) * hw + px] =
                  structured((b * groups + g) % 3, e, len, g * cpg + cc, eps);
            }
  }
  if (offset != 0.f)
    for (auto &v : x.h) v += offset;
  if (structure || offset != 0.f) upload(x);
  T gm = make(c, 1.0f), bt = make(c, 0.5f);
  if (structure) gamma_beta_for_structure(gm, bt);
  T y = make_out(x.n);
  vdpc_groupnorm(y.d, x.d, gm.d, bt.d, nb, nf, c, hw, groups, eps, silu);
  sync_check(name);
  fetch(y);
  std::vector<float> ref(x.n);
  op_groupnorm(ref.data(), x.h.data(), gm.h.data(), bt.h.data(), nb, nf, c, hw, groups, eps, silu);
  Cmp cm;
  for (size_t i = 0; i < x.n; i++) cm.add(y.h[i], ref[i], i);
  report(name, cm, TOL_F16);
  drop(x), drop(gm), drop(bt), drop(y);
}

// offset and structure as for t_groupnorm; the reduced extent is one row of C values.
static void t_layernorm(const char *name, int M, int C, float offset, bool structure = false) {
  if (!selected(name)) return;
  T x = make((size_t)M * C, 1.0f);
  if (structure)
    for (int m = 0; m < M; m++)
      for (int i = 0; i < C; i++) x.h[(size_t)m * C + i] = structured(m % 3, i, C, i, 1e-5f);
  if (offset != 0.f)
    for (auto &v : x.h) v += offset;
  if (structure || offset != 0.f) upload(x);
  T gm = make(C, 1.0f), bt = make(C, 0.5f);
  if (structure) gamma_beta_for_structure(gm, bt);
  T y = make_out(x.n);
  vdpc_layernorm(y.d, x.d, gm.d, bt.d, M, C, 1e-5f);
  sync_check(name);
  fetch(y);
  std::vector<float> ref(x.n);
  op_layernorm(ref.data(), x.h.data(), gm.h.data(), bt.h.data(), M, C, 1e-5f);
  Cmp cm;
  for (size_t i = 0; i < x.n; i++) cm.add(y.h[i], ref[i], i);
  report(name, cm, TOL_F16);
  drop(x), drop(gm), drop(bt), drop(y);
}

// ===================================================================================================
// Elementwise
// ===================================================================================================
static void t_elementwise(const char *tag, int64_t n, int rows, int C, int64_t inner) {
  char name[96];
  const int acts[3] = {VDPC_ACT_SILU, VDPC_ACT_GELU, VDPC_ACT_QUICK_GELU};
  const char *an[3] = {"silu", "gelu", "quick_gelu"};
  for (int a = 0; a < 3; a++) {
    snprintf(name, sizeof name, "%s_%s", an[a], tag);
    if (!selected(name)) continue;
    T x = make(n, 4.0f), y = make_out(n);
    vdpc_act(y.d, x.d, n, acts[a]);
    sync_check(name);
    fetch(y);
    std::vector<float> ref = x.h;
    host_act(ref, acts[a]);
    Cmp c;
    for (int64_t i = 0; i < n; i++) c.add(y.h[i], ref[i], i);
    report(name, c, TOL_F16);
    drop(x), drop(y);
  }
  snprintf(name, sizeof name, "add_blend_%s", tag);
  if (selected(name)) {
    T a = make(n, 1.0f), b = make(n, 1.0f), y = make_out(n), z = make_out(n);
    vdpc_add(y.d, a.d, b.d, n);
    vdpc_blend(z.d, a.d, b.d, 0.3f, n);
    sync_check(name);
    fetch(y);
    fetch(z);
    std::vector<float> r1(n), r2(n);
    op_add(r1.data(), a.h.data(), b.h.data(), n);
    op_blend(r2.data(), a.h.data(), b.h.data(), 0.3f, n);
    Cmp c;
    for (int64_t i = 0; i < n; i++) c.add(y.h[i], r1[i], i), c.add(z.h[i], r2[i], i);
    report(name, c, TOL_F16);
    drop(a), drop(b), drop(y), drop(z);
  }
  snprintf(name, sizeof name, "add_bcast_%s", tag);
  if (selected(name)) {
    const int64_t m = (int64_t)rows * C * inner;
    T y = make(m, 1.0f), v = make((size_t)rows * C, 1.0f);
    std::vector<float> ref = y.h;
    vdpc_add_bcast(y.d, v.d, rows, C, inner);
    sync_check(name);
    fetch(y);
    op_add_bcast(ref.data(), v.h.data(), rows, C, inner);
    Cmp c;
    for (int64_t i = 0; i < m; i++) c.add(y.h[i], ref[i], i);
    report(name, c, TOL_F16);
    drop(y), drop(v);
  }
  snprintf(name, sizeof name, "geglu_%s", tag);
  if (selected(name)) {
    T x = make((size_t)rows * 2 * C, 3.0f), y = make_out((size_t)rows * C);
    vdpc_geglu(y.d, x.d, rows, C);
    sync_check(name);
    fetch(y);
    std::vector<float> ref((size_t)rows * C);
    op_geglu(ref.data(), x.h.data(), rows, C);
    Cmp c;
    for (size_t i = 0; i < ref.size(); i++) c.add(y.h[i], ref[i], i);
    report(name, c, TOL_F16);
    drop(x), drop(y);
  }
  snprintf(name, sizeof name, "transpose_0213_%s", tag);
  if (selected(name)) {
    Cmp c;
    for (int64_t D : {(int64_t)1, (int64_t)3}) {
      const int64_t m = (int64_t)rows * C * inner * D;
      if (D > 1 && m > 10000000) continue;  // the generic path is covered by the small shapes
      T x = make(m, 1.0f), y = make_out(m);
      vdpc_transpose_0213(y.d, x.d, rows, C, (int)inner, D);
      sync_check(name);
      fetch(y);
      std::vector<float> ref(m);
      op_transpose_0213(ref.data(), x.h.data(), rows, C, (int)inner, D);
      for (int64_t i = 0; i < m; i++) c.add(y.h[i], ref[i], i);
      drop(x), drop(y);
    }
    report(name, c, TOL_F16, "(D = 1 tiled and D = 3 generic)");
  }
}

static void t_upsample(const char *name, int n, int c, int h, int w, int ho, int wo) {
  if (!selected(name)) return;
  T x = make((size_t)n * c * h * w, 1.0f), y = make_out((size_t)n * c * ho * wo);
  vdpc_upsample_nearest(y.d, x.d, n, c, h, w, ho, wo);
  sync_check(name);
  fetch(y);
  std::vector<float> ref(y.n);
  op_upsample_nearest(ref.data(), x.h.data(), n, c, h, w, ho, wo);
  Cmp cm;
  for (size_t i = 0; i < y.n; i++) cm.add(y.h[i], ref[i], i);
  report(name, cm, TOL_F16);
  drop(x), drop(y);
}

static void t_temb(const char *name, int n, int dim) {
  if (!selected(name)) return;
  std::vector<float> t(n);
  for (int i = 0; i < n; i++) t[i] = i % 3 == 0 ? (float)i : 1.6377f * urand();  // frame indices and timesteps
  float *td;
  CUDA_CHECK(cudaMalloc(&td, n * 4));
  vdp_cuda_upload(td, t.data(), n * 4);
  T y = make_out((size_t)n * dim);
  vdpc_timestep_embedding(y.d, td, n, dim);
  sync_check(name);
  fetch(y);
  std::vector<float> ref((size_t)n * dim);
  op_timestep_embedding(ref.data(), t.data(), n, dim);
  Cmp c;
  for (size_t i = 0; i < ref.size(); i++) c.add(y.h[i], ref[i], i);
  report(name, c, TOL_F16);
  cudaFree(td);
  drop(y);
}

// CFG + Euler: reference written here (no CPU op in vdp.h), following shared/svd-spec.md §1.9-1.10, §9.4.
static float r16(float v) { return half_to_float(float_to_half(v)); }
static void t_cfg_euler(const char *name, int B, int F, int64_t chw, float sigma, float sigma_next, int round) {
  if (!selected(name)) return;
  const int64_t n = (int64_t)B * F * chw;
  T v = make(2 * n, 1.0f);
  std::vector<float> x(n), g(F);
  for (int64_t i = 0; i < n; i++) x[i] = urand() * sigma;
  for (int f = 0; f < F; f++) g[f] = r16(1.0f + 2.0f * (F > 1 ? (float)f / (F - 1) : 0.f));
  float *xd;
  CUDA_CHECK(cudaMalloc(&xd, n * 4));
  vdp_cuda_upload(xd, x.data(), n * 4);
  vdpc_cfg_euler(xd, v.d, g.data(), B, F, chw, sigma, sigma_next, round);
  sync_check(name);
  std::vector<float> got(n);
  vdp_cuda_download(got.data(), xd, n * 4);
  const float c_out = -sigma / sqrtf(sigma * sigma + 1.0f), c_skip = 1.0f / (sigma * sigma + 1.0f);
  Cmp c;
  for (int64_t i = 0; i < n; i++) {
    const int f = (int)((i / chw) % F);
    const float vu = v.h[i], vc = v.h[n + i];
    const float vv = r16(vu + r16(g[f] * r16(vc - vu)));
    const float x0 = r16(vv * c_out) + x[i] * c_skip;
    const float d = (x[i] - x0) / sigma;
    float xn = x[i] + d * (sigma_next - sigma);
    if (round) xn = r16(xn);
    c.add(got[i], xn, i);
  }
  report(name, c, TOL_F32);
  cudaFree(xd);
  drop(v);
}

static void t_convert(const char *name, int64_t n) {
  if (!selected(name)) return;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; i++) x[i] = urand() * 100.0f;
  float *xd, *zd;
  CUDA_CHECK(cudaMalloc(&xd, n * 4));
  CUDA_CHECK(cudaMalloc(&zd, n * 4));
  CUDA_CHECK(cudaMemset(zd, 0xFF, n * 4));
  vdp_cuda_upload(xd, x.data(), n * 4);
  T y = make_out(n);
  vdpc_f32_to_f16(y.d, xd, n);
  vdpc_f16_to_f32(zd, y.d, n);
  sync_check(name);
  std::vector<float> z(n);
  vdp_cuda_download(z.data(), zd, n * 4);
  Cmp c;
  for (int64_t i = 0; i < n; i++) c.add(z[i], r16(x[i]), i);  // exact: both round to nearest even
  report(name, c, TOL_F32);
  cudaFree(xd), cudaFree(zd);
  drop(y);
}

// ===================================================================================================
// Benchmarks (full SVD shapes, H100 targets in test/gpu.sh)
// ===================================================================================================
static void bench() {
  vdp_cuda_print_info(stdout);
  // copy yardstick: 1 GiB device-to-device
  {
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CUDA_CHECK(cudaMalloc(&a, bytes));
    CUDA_CHECK(cudaMalloc(&b, bytes));
    CUDA_CHECK(cudaMemset(a, 0, bytes));
    double ms = time_ms([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice); });
    printf("bench d2d_copy_1GiB ms=%.3f gbs=%.1f\n", ms, 2.0 * bytes / ms / 1e6);
    cudaFree(a), cudaFree(b);
  }
  // 3x3 conv 320 -> 320 at 72x128, 28 frames (one CFG batch of 14 frames)
  {
    const int n = 28, c = 320, h = 72, w = 128;
    T x = make((size_t)n * c * h * w, 1.0f), wt = make((size_t)c * c * 9, 0.05f), b = make(c, 0.1f);
    T y = make_out((size_t)n * c * h * w);
    void *wp;
    CUDA_CHECK(cudaMalloc(&wp, vdpc_conv_weight_elems(c, c, 3, 3) * 2));
    vdpc_conv_prepare_weight(wp, wt.d, c, c, 3, 3);
    double ms = time_ms([&] { vdpc_conv2d(y.d, x.d, wp, b.d, n, c, h, w, c, 3, 3, 1, 1, 1, 1, 1, NULL, NULL); });
    printf("bench conv3x3_c320_72x128_n28 ms=%.3f tflops=%.1f\n", ms, 2.0 * c * c * 9 * h * w * n / ms / 1e9);
    ms = time_ms([&] { vdpc_conv2d(y.d, x.d, wp, b.d, n, c, h, w, c, 3, 3, 2, 1, 1, 1, 1, NULL, NULL); });
    printf("bench conv3x3s2_c320_72x128_n28 ms=%.3f tflops=%.1f\n", ms, 2.0 * c * c * 9 * (h / 2) * (w / 2) * n / ms / 1e9);
    cudaFree(wp);
    CUDA_CHECK(cudaMalloc(&wp, vdpc_conv_weight_elems(c, c, 3, 1) * 2));
    vdpc_conv_prepare_weight(wp, wt.d, c, c, 3, 1);
    ms = time_ms([&] { vdpc_conv_temporal(y.d, x.d, wp, b.d, 2, 14, c, h * w, c, NULL, NULL); });
    printf("bench conv_temporal_c320_72x128_2x14 ms=%.3f tflops=%.1f\n", ms, 2.0 * c * c * 3 * h * w * n / ms / 1e9);
    cudaFree(wp);
    // GroupNorm + SiLU on the same tensor: per frame and across 14 frames
    T gm = make(c, 1.0f), bt = make(c, 0.5f);
    const double bytes = 2.0 * x.n * 2;  // read + write once: the copy-equivalent traffic
    ms = time_ms([&] { vdpc_groupnorm(y.d, x.d, gm.d, bt.d, n, 1, c, h * w, 32, 1e-6f, 1); });
    printf("bench groupnorm_silu_c320_72x128_n28 ms=%.3f gbs=%.1f\n", ms, bytes / ms / 1e6);
    ms = time_ms([&] { vdpc_groupnorm(y.d, x.d, gm.d, bt.d, 2, 14, c, h * w, 32, 1e-6f, 1); });
    printf("bench groupnorm_silu_temporal_c320_72x128_2x14 ms=%.3f gbs=%.1f\n", ms, bytes / ms / 1e6);
    // LayerNorm over tokens [n·hw, 320]
    ms = time_ms([&] { vdpc_layernorm(y.d, x.d, gm.d, bt.d, n * h * w, c, 1e-5f); });
    printf("bench layernorm_258048x320 ms=%.3f gbs=%.1f\n", ms, bytes / ms / 1e6);
    drop(x), drop(wt), drop(b), drop(y), drop(gm), drop(bt);
  }
  // linear layers at level 0: tokens = 28·9216
  {
    const int M = 28 * 9216, C = 320;
    T x = make((size_t)M * 4 * C, 1.0f), w = make((size_t)8 * C * 4 * C, 0.02f), b = make(8 * C, 0.1f);
    T y = make_out((size_t)M * 4 * C);
    double ms = time_ms([&] { vdpc_linear(y.d, x.d, w.d, b.d, M, C, C, VDPC_ACT_NONE, NULL); });
    printf("bench linear_%dx320x320 ms=%.3f tflops=%.1f\n", M, ms, 2.0 * M * C * C / ms / 1e9);
    ms = time_ms([&] { vdpc_linear(y.d, x.d, w.d, b.d, M, C, 4 * C, VDPC_ACT_GEGLU, NULL); });
    printf("bench linear_geglu_%dx320x2560 ms=%.3f tflops=%.1f\n", M, ms, 2.0 * M * C * 8 * C / ms / 1e9);
    ms = time_ms([&] { vdpc_linear(y.d, x.d, w.d, b.d, M, 4 * C, C, VDPC_ACT_NONE, NULL); });
    printf("bench linear_%dx1280x320 ms=%.3f tflops=%.1f\n", M, ms, 2.0 * M * 4 * C * C / ms / 1e9);
    drop(x), drop(w), drop(b), drop(y);
  }
  // attention: spatial 9216 tokens × 28 frames × 5 heads × 64; temporal 14 frames × (2·9216) sequences
  {
    const int L = 9216, nseq = 28, heads = 5, hd = 64, C = heads * hd;
    T qkv = make((size_t)nseq * L * 3 * C, 1.0f), o = make_out((size_t)nseq * L * C);
    const char *q = (const char *)qkv.d;
    double ms = time_ms(
        [&] {
          vdpc_attention(o.d, (int64_t)L * C, C, q, (int64_t)L * 3 * C, 3 * C, q + 2 * C, (int64_t)L * 3 * C, 3 * C,
                         q + 4 * C, (int64_t)L * 3 * C, 3 * C, nseq, L, L, heads, hd, 0.125f);
        },
        5);
    printf("bench flash_attn_%dx%d_h5_d64 ms=%.3f tflops=%.1f\n", nseq, L, ms, 4.0 * nseq * heads * L * (double)L * hd / ms / 1e9);
    const int F = 14, ns = 2 * L;
    ms = time_ms([&] {
      vdpc_attention(o.d, (int64_t)F * C, C, q, (int64_t)F * 3 * C, 3 * C, q + 2 * C, (int64_t)F * 3 * C, 3 * C,
                     q + 4 * C, (int64_t)F * 3 * C, 3 * C, ns, F, F, heads, hd, 0.125f);
    });
    printf("bench temporal_attn_%dx%d_h5_d64 ms=%.3f gbs=%.1f\n", ns, F, ms, 4.0 * ns * F * C * 2 / ms / 1e6);
    drop(qkv), drop(o);
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--small")) g_small = 1;
    else if (!strcmp(argv[i], "--bench")) g_bench = 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
      std::string s = argv[++i];
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) g_only.push_back(s.substr(p, q - p));
        p = q + 1;
      }
    } else {
      fprintf(stderr, "usage: %s [--small] [--only a,b] [--bench]\n", argv[0]);
      return 2;
    }
  }
  if (vdp_cuda_device_count() == 0) {
    printf("FAIL - cuda_device no CUDA device found\n0 passed, 1 failed\n");
    return 1;
  }
  if (g_bench) {
    bench();
    return 0;
  }
  // ---- device info / NCCL link
  {
    int v = vdp_nccl_version();
    if (v > 0) printf("ok - nccl_version %d\n", v), g_pass++;
    else printf("FAIL - nccl_version ncclGetVersion failed\n"), g_fail++;
  }

  // ---- small shapes: tiny models and odd sizes
  t_conv2d("conv3x3_tiny_conv_in_n4_c8_16x16_to32", 4, 8, 16, 16, 32, 3, 1, 1, 1, 1, 1, false, false);
  t_conv2d("conv3x3_odd_n3_c13_7x9_to19_cadd_res", 3, 13, 7, 9, 19, 3, 1, 1, 1, 1, 1, true, true);
  t_conv2d("conv3x3_n2_c64_8x8_to64_res", 2, 64, 8, 8, 64, 3, 1, 1, 1, 1, 1, false, true);
  t_conv2d("conv3x3s2_odd_n2_c32_11x13_to70", 2, 32, 11, 13, 70, 3, 2, 1, 1, 1, 1, false, false);
  t_conv2d("conv3x3s2_vae_asym_pad_n1_c3_17x17_to32", 1, 3, 17, 17, 32, 3, 2, 0, 0, 1, 1, false, false);
  t_conv2d("conv1x1_odd_n2_c40_5x5_to24_res", 2, 40, 5, 5, 24, 1, 1, 0, 0, 0, 0, false, true);
  t_conv2d("conv3x3_vae_latent_n3_c4_9x11_to130", 3, 4, 9, 11, 130, 3, 1, 1, 1, 1, 1, false, false);
  t_conv2d("conv3x3_wide_n1_c40_3x300_to40", 1, 40, 3, 300, 40, 3, 1, 1, 1, 1, 1, false, false);
  for (int nf : {1, 2, 5, 25}) {
    char nm[80];
    snprintf(nm, sizeof nm, "conv_temporal_tiny_nb2_f%d_c32_16x16", nf);
    t_temporal(nm, 2, nf, 32, 256, 32, true, true);
  }
  t_temporal("conv_temporal_odd_nb1_f25_c24_hw63_to40", 1, 25, 24, 63, 40, false, false);
  t_temporal("conv_temporal_odd_nb3_f5_c12_hw10_to7", 3, 5, 12, 10, 7, true, false);
  t_linear("linear_tiny_temb_2x32x128_silu", 2, 32, 128, VDPC_ACT_SILU, true, false);
  t_linear("linear_odd_37x37x19", 37, 37, 19, VDPC_ACT_NONE, true, false);
  t_linear("linear_odd_130x72x96_res", 130, 72, 96, VDPC_ACT_NONE, false, true);
  t_linear("linear_geglu_odd_100x64x40", 100, 64, 40, VDPC_ACT_GEGLU, true, false);
  t_linear("linear_geglu_tiny_512x32x128_res", 512, 32, 128, VDPC_ACT_GEGLU, true, true);
  t_linear("linear_gelu_clip_tiny_1025x32x37", 1025, 32, 37, VDPC_ACT_GELU, true, false);
  t_linear("linear_quick_gelu_1025x37x32", 1025, 37, 32, VDPC_ACT_QUICK_GELU, true, false);
  t_attention("attn_tiny_hd4_4x256_h8", 4, 256, 256, 8, 4, 1.0f);
  t_attention("attn_tiny_hd8_4x64_h8", 4, 64, 64, 8, 8, 1.0f);
  t_attention("attn_flash_hd64_odd_2x200x77_h3", 2, 200, 77, 3, 64, 2.0f);
  t_attention("attn_flash_hd64_2x1024_h2", 2, 1024, 1024, 2, 64, 2.0f);
  t_attention("attn_flash_hd64_1x1x33_h1", 1, 1, 33, 1, 64, 4.0f);
  t_attention("attn_flash_hd64_1x300x300_h5_sharp", 1, 300, 300, 5, 64, 8.0f);
  t_attention("attn_clip_hd80_1x257_h2", 1, 257, 257, 2, 80, 1.0f);
  t_attention("attn_vae_hd512_1x40_h1", 1, 40, 40, 1, 512, 1.0f);
  t_attention("attn_generic_hd40_2x70x33_h2", 2, 70, 33, 2, 40, 1.0f);
  for (int F : {1, 2, 5, 25}) {
    char nm[80];
    snprintf(nm, sizeof nm, "attn_temporal_f%d_seq100_h5_hd64", F);
    t_attention(nm, 100, F, F, 5, 64, 2.0f);
    snprintf(nm, sizeof nm, "attn_temporal_f%d_seq64_h8_hd4", F);
    t_attention(nm, 64, F, F, 8, 4, 1.0f);
  }
  t_cross("cross_attn_1key_tiny_2x256_c32_ctx32_h8", 2, 32, 32, 256, 8, true);
  t_cross("cross_attn_1key_odd_3x50_c40_ctx24_h5", 3, 24, 40, 50, 5, false);
  t_groupnorm("groupnorm_silu_tiny_nb2_f2_c32_16x16", 2, 2, 32, 256, 32, 1e-6f, 1, 0.f);
  t_groupnorm("groupnorm_silu_temporal_tiny_nb2_f5_c64_hw63", 2, 5, 64, 63, 32, 1e-6f, 1, 0.f);
  t_groupnorm("groupnorm_odd_nb3_f1_c24_hw7_g4_offset", 3, 1, 24, 7, 4, 1e-5f, 0, 30.f);
  t_groupnorm("groupnorm_silu_f25_c32_hw16", 1, 25, 32, 16, 32, 1e-6f, 1, 0.f);
  t_layernorm("layernorm_tiny_17x32", 17, 32, 0.f);
  t_layernorm("layernorm_odd_5x37_offset", 5, 37, 20.f);
  t_layernorm("layernorm_clip_tiny_1025x32", 1025, 32, 0.f);
  t_layernorm("layernorm_1280_33x1280", 33, 1280, 0.f);
  t_elementwise("small", 1001, 6, 37, 53);
  t_upsample("upsample_x2_tiny_n2_c5_8x8", 2, 5, 8, 8, 16, 16);
  t_upsample("upsample_odd_n1_c3_9x7_to_13x20", 1, 3, 9, 7, 13, 20);
  t_temb("timestep_embedding_n7_d32", 7, 32);
  t_temb("timestep_embedding_odd_n5_d33", 5, 33);
  t_cfg_euler("cfg_euler_tiny_b1_f2_4x16x16", 1, 2, 4 * 256, 700.0f, 545.729248f, 1);
  t_cfg_euler("cfg_euler_b2_f5_last_step_fp32", 2, 5, 3 * 37, 0.002f, 0.0f, 0);
  t_convert("convert_f32_f16_1001", 1001);

  // ---- structured inputs (see "structured data"): each sized so that the part a bug would drop or
  // misweigh exists. GroupNorm statistics blocks are 8 warps over 2048-value windows of a frame's group
  // slab (all 8 warps busy from 1793 values on), with one split per 16384 values (up to 1024).
  t_groupnorm("groupnorm_struct_nb2_f1_c16_hw256_g2", 2, 1, 16, 256, 2, 1e-6f, 0, 0.f, true);
  t_groupnorm("groupnorm_struct_odd_nb2_f3_c12_hw345_g2", 2, 3, 12, 345, 2, 1e-5f, 0, 0.f, true);
  t_groupnorm("groupnorm_struct_silu_2splits_nb2_f2_c8_hw4096_g1", 2, 2, 8, 4096, 1, 1e-6f, 1, 0.f, true);
  t_groupnorm("groupnorm_struct_3splits_odd_nb1_f1_c8_hw6151_g1", 1, 1, 8, 6151, 1, 1e-5f, 0, 0.f, true);
  t_groupnorm("groupnorm_struct_small_groups_nb3_f1_c8_hw2_g4", 3, 1, 8, 2, 4, 1e-6f, 0, 0.f, true);
  t_layernorm("layernorm_struct_12x1280", 12, 1280, 0.f, true);
  t_layernorm("layernorm_struct_odd_9x37", 9, 37, 0.f, true);
  t_layernorm("layernorm_struct_c3_6x3", 6, 3, 0.f, true);
  t_layernorm("layernorm_struct_c8_6x8", 6, 8, 0.f, true);
  // strongly negative scores over 33 to 97 keys: key tiles of 64 with tails of 33 and 1 keys (flash),
  // chunks of 32 with a tail of 1 (warp per query); lq = 130 ends inside a block of 128 queries
  t_attention("attn_flash_negative_hd64_3x33_h2", 3, 33, 33, 2, 64, 2.0f, {}, 0, true);
  t_attention("attn_flash_negative_hd64_2x65_h2", 2, 65, 65, 2, 64, 2.0f, {}, 0, true);
  t_attention("attn_flash_negative_hd64_2x130x97_h1", 2, 130, 97, 1, 64, 2.0f, {}, 0, true);
  t_attention("attn_warp_negative_hd40_3x33_h2", 3, 33, 33, 2, 40, 2.5f, {}, 0, true);
  t_attention("attn_warp_negative_hd40_2x20x65_h1", 2, 20, 65, 1, 40, 2.5f, {}, 0, true);

  // ---- full SVD shapes (576x1024 -> latent 72x128, 14 frames); references on subsets
  if (!g_small) {
    const int F = 14, H = 72, W = 128, HW = H * W;
    t_conv2d("conv3x3_svd_c320_72x128_n14", F, 320, H, W, 320, 3, 1, 1, 1, 1, 1, true, true, {0, F - 1});
    t_conv2d("conv3x3s2_svd_downsample_c320_72x128_n14", F, 320, H, W, 320, 3, 2, 1, 1, 1, 1, false, false, {0, F - 1});
    t_conv2d("conv1x1_svd_shortcut_c320_to640_36x64_n14", F, 320, 36, 64, 640, 1, 1, 0, 0, 0, 0, false, true, {0, F - 1});
    t_conv2d("conv3x3_svd_conv_in_c8_72x128_n28", 2 * F, 8, H, W, 320, 3, 1, 1, 1, 1, 1, false, false, {0, 27});
    t_conv2d("conv3x3_svd_conv_out_c320_to4_72x128_n14", F, 320, H, W, 4, 3, 1, 1, 1, 1, 1, false, false, {0, F - 1});
    t_conv2d("conv3x3_svd_l3_c2560_to1280_9x16_n14", F, 2560, 9, 16, 1280, 3, 1, 1, 1, 1, 1, true, false, {F - 1});
    t_temporal("conv_temporal_svd_c320_72x128_f14", 1, F, 320, HW, 320, true, true, 256);
    t_linear("linear_svd_proj_in_129024x320x320_res", F * HW, 320, 320, VDPC_ACT_NONE, true, true, 512);
    t_linear("linear_geglu_svd_129024x320x1280", F * HW, 320, 1280, VDPC_ACT_GEGLU, true, false, 256);
    t_linear("linear_svd_ff_out_129024x1280x320", F * HW, 1280, 320, VDPC_ACT_NONE, true, true, 256);
    t_attention("attn_flash_svd_14x9216_h5_d64", F, HW, HW, 5, 64, 2.0f, {0, F - 1}, 64);
    t_attention("attn_temporal_svd_9216x14_h5_d64", HW, F, F, 5, 64, 2.0f, {0, 1, HW / 2, HW - 1});
    t_cross("cross_attn_1key_svd_14x9216_c320_ctx1024_h5", F, 1024, 320, HW, 5, true, 64);
    t_groupnorm("groupnorm_silu_svd_c320_72x128_n14", F, 1, 320, HW, 32, 1e-6f, 1, 0.f);
    t_groupnorm("groupnorm_silu_temporal_svd_c320_72x128_f14", 1, F, 320, HW, 32, 1e-6f, 1, 0.f);
    t_layernorm("layernorm_svd_129024x320", F * HW, 320, 0.f);
    t_upsample("upsample_x2_svd_c1280_9x16_n14", F, 1280, 9, 16, 18, 32);
    t_temb("timestep_embedding_svd_frames_n14_d320", F, 320);
    t_cfg_euler("cfg_euler_svd_b1_f14_4x72x128", 1, F, 4 * HW, 34.536739f, 23.467512f, 0);
    t_elementwise("svd", (int64_t)F * 320 * HW, F, 320, HW);
  }
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
