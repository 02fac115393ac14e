// ops.c — the CPU reference operators of vdp: fp32, row-major (NCHW), multithreaded with OpenMP.
//
// Reading order:
//   1. GEMM core        packing, micro-kernels (portable C, and AVX2 / AVX-512 chosen at run time),
//                       the parallel driver; attention drives the macro-kernel itself, per thread
//   2. linear / conv    op_linear, op_conv2d, op_conv_temporal: one implicit GEMM over all frames
//   3. attention        blocked softmax(q kᵀ) v, never an Lq×Lk matrix
//   4. normalisation    op_groupnorm (frame-pooled), op_layernorm
//   5. element-wise     activations, adds, embeddings, resampling, transposes
//   6. the CPU backend  these operators behind the model graph's Backend table (model.h)
//
// Every matrix product goes through one routine:  C[m,n] (+)= Σ_k A(m,k)·B(n,k). A is read through a
// (row stride, column stride) view or is pre-packed (conv weights); B through a view, as a convolution's
// input gathered panel by panel (implicit im2col), or pre-packed (Linear weights); C may be split into
// images (a conv's frames). That covers x·wᵀ (Linear), w·im2col (conv, all frames at once), q·kᵀ and p·v
// (attention). The CPU backend packs every Linear and conv weight once, at load, in the layout the
// micro-kernel reads; op_linear / op_conv* (the plain-weight API the tests check) pack per call.
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VDP_X86 1
#include <immintrin.h>
#else
#define VDP_X86 0
#endif

static int thread_count(void) {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// 64-byte aligned scratch (packed panels are read with full-width vector loads).
static float *alloc_f32(size_t n, const char *what) {
  uint8_t *raw = vdp_malloc(n * sizeof(float) + 64 + sizeof(void *), what);
  uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
  ((void **)p)[-1] = raw;
  return (float *)p;
}
static void free_f32(float *p) {
  if (p) free(((void **)p)[-1]);
}

// ===================================================================================================
// 1. GEMM core
// ===================================================================================================
// Packed formats (BLIS style). For a k-block of kc columns:
//   A panel: MR rows,  element (i, k) at Ap[k*MR + i]   (panels of one block are consecutive)
//   B panel: NR cols,  element (j, k) at Bp[k*NR + j]
// Rows/columns past the matrix edge are packed as zeros, so the micro-kernel never branches.
// A micro-kernel computes one MR×NR tile of C over kc and either stores it (accum = 0) or adds it. It
// reads A element (i, k) at Ap[k*as + i] and B element (j, k) at Bp[k*bs + j]: as = MR, bs = NR for
// panels packed per call; PACK_MR, PACK_NR for the pre-packed weights, whose panels are a multiple of
// every kernel's MR and NR.
typedef void (*KernFn)(int kc, const float *Ap, int64_t as, const float *Bp, int64_t bs, float *C, int64_t ldc,
                       int accum);
typedef struct {
  const char *name;
  int mr, nr;
  KernFn fn;
} Kern;

// Portable kernel, 4×8 tile. With GCC/Clang it is written with generic vector types (no intrinsics:
// the compiler lowers them to SSE2, NEON, ...): 8 four-float accumulators fit the 16 registers of
// SSE2. Other compilers get plain loops.
#define GEN_MR 4
#define GEN_NR 8
#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));
static void kern_generic(int kc, const float *Ap, int64_t as, const float *Bp, int64_t bs, float *C, int64_t ldc,
                         int accum) {
  v4f c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
  for (int k = 0; k < kc; k++) {
    v4f b0, b1;
    memcpy(&b0, Bp, sizeof b0);
    memcpy(&b1, Bp + 4, sizeof b1);
    v4f a0 = {Ap[0], Ap[0], Ap[0], Ap[0]}, a1 = {Ap[1], Ap[1], Ap[1], Ap[1]};
    v4f a2 = {Ap[2], Ap[2], Ap[2], Ap[2]}, a3 = {Ap[3], Ap[3], Ap[3], Ap[3]};
    c00 += a0 * b0, c01 += a0 * b1, c10 += a1 * b0, c11 += a1 * b1;
    c20 += a2 * b0, c21 += a2 * b1, c30 += a3 * b0, c31 += a3 * b1;
    Ap += as;
    Bp += bs;
  }
  v4f out[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
  for (int i = 0; i < 4; i++) {
    float *ci = C + i * ldc;
    for (int h = 0; h < 2; h++) {
      v4f v = out[2 * i + h];
      if (accum) {
        v4f t;
        memcpy(&t, ci + 4 * h, sizeof t);
        v += t;
      }
      memcpy(ci + 4 * h, &v, sizeof v);
    }
  }
}
#else
static void kern_generic(int kc, const float *Ap, int64_t as, const float *Bp, int64_t bs, float *C, int64_t ldc,
                         int accum) {
  float acc[GEN_MR][GEN_NR] = {{0}};
  for (int k = 0; k < kc; k++)
    for (int i = 0; i < GEN_MR; i++)
      for (int j = 0; j < GEN_NR; j++) acc[i][j] += Ap[k * as + i] * Bp[k * bs + j];
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) C[i * ldc + j] = (accum ? C[i * ldc + j] : 0.0f) + acc[i][j];
}
#endif

#if VDP_X86
// The accumulators are named variables, not an array: GCC 12 otherwise keeps a stack copy of the
// array and stores to it on every k step.
#define FMA_ROW2(set1, fmadd, i, c0, c1) \
  {                                      \
    a = set1(Ap[i]);                     \
    c0 = fmadd(a, b0, c0);               \
    c1 = fmadd(a, b1, c1);               \
  }
#define STORE_ROW2(W, loadu, storeu, add, i, c0, c1) \
  {                                                  \
    float *ci = C + (i) * ldc;                       \
    if (accum) {                                     \
      c0 = add(c0, loadu(ci));                       \
      c1 = add(c1, loadu(ci + W));                   \
    }                                                \
    storeu(ci, c0);                                  \
    storeu(ci + W, c1);                              \
  }

// AVX2 + FMA: 6×16 tile = 12 ymm accumulators, 2 B vectors, 1 broadcast (of 16 registers).
__attribute__((target("avx2,fma"))) static void kern_avx2(int kc, const float *Ap, int64_t as, const float *Bp,
                                                          int64_t bs, float *C, int64_t ldc, int accum) {
  __m256 z = _mm256_setzero_ps(), a;
  __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
         c51 = z;
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 0, c00, c01)
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 1, c10, c11)
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 2, c20, c21)
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 3, c30, c31)
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 4, c40, c41)
    FMA_ROW2(_mm256_set1_ps, _mm256_fmadd_ps, 5, c50, c51)
    Ap += as;
    Bp += bs;
  }
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 0, c00, c01)
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 1, c10, c11)
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 2, c20, c21)
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 3, c30, c31)
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 4, c40, c41)
  STORE_ROW2(8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 5, c50, c51)
}

// AVX-512: 12×32 tile = 24 zmm accumulators, 2 B vectors, 1 broadcast (of 32 registers).
__attribute__((target("avx512f"))) static void kern_avx512(int kc, const float *Ap, int64_t as, const float *Bp,
                                                           int64_t bs, float *C, int64_t ldc, int accum) {
  __m512 z = _mm512_setzero_ps(), a;
  __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
         c51 = z, c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z, ca0 = z, ca1 = z,
         cb0 = z, cb1 = z;
  for (int k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 0, c00, c01)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 1, c10, c11)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 2, c20, c21)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 3, c30, c31)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 4, c40, c41)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 5, c50, c51)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 6, c60, c61)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 7, c70, c71)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 8, c80, c81)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 9, c90, c91)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 10, ca0, ca1)
    FMA_ROW2(_mm512_set1_ps, _mm512_fmadd_ps, 11, cb0, cb1)
    Ap += as;
    Bp += bs;
  }
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 0, c00, c01)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 1, c10, c11)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 2, c20, c21)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 3, c30, c31)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 4, c40, c41)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 5, c50, c51)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 6, c60, c61)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 7, c70, c71)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 8, c80, c81)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 9, c90, c91)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 10, ca0, ca1)
  STORE_ROW2(16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, 11, cb0, cb1)
}
#endif

static const Kern KERN_GENERIC = {"generic", GEN_MR, GEN_NR, kern_generic};
#if VDP_X86
static const Kern KERN_AVX2 = {"avx2", 6, 16, kern_avx2};
static const Kern KERN_AVX512 = {"avx512", 12, 32, kern_avx512};
#endif

// The best kernel this CPU runs. VDP_ISA=generic|avx2|avx512 forces a (supported) lower one, which is
// how the tests exercise every kernel on one machine. Read per call: a GEMM costs far more than getenv.
static const Kern *pick_kernel(void) {
  const char *force = getenv("VDP_ISA");
  if (force && !strcmp(force, "generic")) return &KERN_GENERIC;
#if VDP_X86
  int has512 = __builtin_cpu_supports("avx512f");
  int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (force && !strcmp(force, "avx2")) return has2 ? &KERN_AVX2 : &KERN_GENERIC;
  if (has512) return &KERN_AVX512;
  if (has2) return &KERN_AVX2;
#endif
  return &KERN_GENERIC;
}

// Block sizes: a KC×NR B panel stays in L1 while the MC×KC A block (L2) streams past it; the packed
// B block lives in L2/L3. MC is rounded to a multiple of MR.
#define GEMM_KC 256
#define GEMM_MC 120
// Rows per panel of a pre-packed A operand (convolution weights) and columns per panel of a pre-packed
// B operand (Linear weights): multiples of every kernel's MR (4, 6, 12) and NR (8, 16, 32), so one
// packed copy serves whichever kernel runs.
#define PACK_MR 12
#define PACK_NR 32

// Strided matrix view: element (r, c) at p[r*rs + c*cs].
typedef struct {
  const float *p;
  int64_t rs, cs;
} View;

// Packs rows [r0, r0+mr) × columns [k0, k0+kc) of the view into consecutive MR-row panels.
// (For B the "rows" are the n index and MR is NR.) Rows past `rows` are zero-filled.
static void pack_panels(float *dst, View v, int r0, int nrows_total, int mr_block, int k0, int kc, int MR) {
  for (int p0 = 0; p0 < mr_block; p0 += MR) {
    float *d = dst + (int64_t)p0 * kc;
    int valid = nrows_total - (r0 + p0);
    if (valid > MR) valid = MR;
    if (valid < 0) valid = 0;
    if (valid == 0) {  // a panel entirely past the edge
      memset(d, 0, (size_t)kc * MR * sizeof(float));
      continue;
    }
    const float *src = v.p + (int64_t)(r0 + p0) * v.rs + (int64_t)k0 * v.cs;
    if (v.rs == 1 && valid == MR) {
      // rows adjacent in memory: each k is one contiguous run of MR values
      for (int k = 0; k < kc; k++) {
        const float *s = src + (int64_t)k * v.cs;
        float *dk = d + (int64_t)k * MR;
        for (int i = 0; i < MR; i++) dk[i] = s[i];
      }
    } else {
      // general strides (e.g. rows contiguous along k): gather MR values per k, write contiguously
      for (int k = 0; k < kc; k++) {
        float *dk = d + (int64_t)k * MR;
        const float *s = src + (int64_t)k * v.cs;
        for (int i = 0; i < valid; i++) dk[i] = s[(int64_t)i * v.rs];
        for (int i = valid; i < MR; i++) dk[i] = 0.0f;
      }
    }
  }
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------------------------------------------
// Convolutions as GEMMs: C[cout, n·P] = W[cout, K] · im2col(x)[K, n·P], all images (frames) in one product.
// W is pre-packed once (the CPU backend's WEIGHT_CONV layout, or once per op_conv* call); the columns of
// im2col are never materialised: the GEMM gathers each B panel straight from the input (pack_conv_panel).
// ---------------------------------------------------------------------------------------------------
// Packed weights, K = cin·kh·kw in (ci, ky, kx) order, or 3·cin in (tap, ci) order for the temporal conv:
// k blocks of GEMM_KC; the block starting at k0 (kc wide) holds rp = round_up(cout, PACK_MR) rows as
// PACK_MR-row panels:  W(o, k) at  rp·k0 + (o / PACK_MR)·PACK_MR·kc + (k − k0)·PACK_MR + o % PACK_MR.
// Rows past cout are zero.
static int64_t packed_weight_elems(int cout, int K) { return (int64_t)round_up(cout, PACK_MR) * K; }

// w: [cout, cin, kh, kw] (temporal = 0), or the temporal conv's [cout, cin, 3] (temporal = 1, kh·kw = 3)
static void pack_conv_weights(float *dst, const float *w, int cout, int cin, int khkw, int temporal) {
  int K = cin * khkw, rp = round_up(cout, PACK_MR);
  for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
    int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
    float *blk = dst + (int64_t)rp * k0;
    for (int o = 0; o < rp; o++) {
      float *d = blk + (int64_t)(o / PACK_MR) * PACK_MR * kc + o % PACK_MR;
      for (int k = k0; k < k0 + kc; k++) {
        // temporal: k = tap·cin + ci reads w[o, ci, tap]
        int64_t src = temporal ? ((int64_t)o * cin + k % cin) * 3 + k / cin : (int64_t)o * K + k;
        d[(int64_t)(k - k0) * PACK_MR] = o < cout ? w[src] : 0.0f;
      }
    }
  }
}

// Packed Linear weights w [N, K] (the B operand of x·wᵀ): k blocks of GEMM_KC; the block starting at k0
// (kc wide) holds rp = round_up(N, PACK_NR) columns as PACK_NR-column panels:
//   w(n, k) at  rp·k0 + (n / PACK_NR)·PACK_NR·kc + (k − k0)·PACK_NR + n % PACK_NR;  columns past N zero.
static int64_t packed_linear_elems(int N, int K) { return (int64_t)round_up(N, PACK_NR) * K; }
static void pack_linear_weights(float *dst, const float *w, int N, int K) {
  int rp = round_up(N, PACK_NR);
  for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
    int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
    pack_panels(dst + (int64_t)rp * k0, (View){w, K, 1}, 0, N, rp, k0, kc, PACK_NR);
  }
}

// The B operand of a convolution: column j = (image j / P, output pixel j % P), P = ho·wo; row k as in
// the packed weights. A temporal conv is the 1×1 geometry over hw pixels with rows (tap, ci) that read
// frame f + tap − 1 of the same video (zero outside it). A 1×1 stride-1 conv without padding is given
// the geometry of one row of h·w pixels, so its runs span whole images.
typedef struct {
  const float *x;  // [n, cin, h, w]
  int cin, h, w, kh, kw, stride, pt, pl, ho, wo;
  int nf;  // temporal: frames per video (n = videos·nf), else 0
} ConvSrc;

// Gathers columns [j0, j0+NR) (zeros past N) × rows [k0, k0+kc) into one B panel: element (j, k) at
// dst[(k − k0)·NR + j − j0]. The panel's columns split into runs of consecutive pixels of one output
// row; for each row k a run is one contiguous (stride 1) or strided read of the input, with the
// padding written as zeros.
static void pack_conv_panel(float *dst, const ConvSrc *s, int64_t j0, int64_t N, int k0, int kc, int NR) {
  struct {
    int d, len, oy, ox;
    int64_t img;
  } run[32];  // NR <= 32
  int nrun = 0, P = s->ho * s->wo, valid = N - j0 < NR ? (int)(N - j0) : NR;
  for (int64_t j = j0; j < j0 + valid;) {
    int64_t img = j / P;
    int p = (int)(j % P), oy = p / s->wo, ox = p % s->wo;
    int len = s->wo - ox;
    if (len > j0 + valid - j) len = (int)(j0 + valid - j);
    run[nrun].d = (int)(j - j0), run[nrun].len = len, run[nrun].oy = oy, run[nrun].ox = ox, run[nrun].img = img;
    nrun++;
    j += len;
  }
  const int64_t hw = (int64_t)s->h * s->w, khw = s->kh * s->kw;
  for (int k = k0; k < k0 + kc; k++) {
    float *dk = dst + (int64_t)(k - k0) * NR;
    for (int i = valid; i < NR; i++) dk[i] = 0.0f;
    if (s->nf) {  // temporal: row k = (tap, ci); runs stay inside one frame
      int tap = k / s->cin, ci = k % s->cin;
      for (int r = 0; r < nrun; r++) {
        float *d = dk + run[r].d;
        int f = (int)(run[r].img % s->nf) + tap - 1;
        if (f < 0 || f >= s->nf) {
          for (int i = 0; i < run[r].len; i++) d[i] = 0.0f;
          continue;
        }
        const float *src = s->x + ((run[r].img + tap - 1) * s->cin + ci) * hw + run[r].ox;
        for (int i = 0; i < run[r].len; i++) d[i] = src[i];
      }
      continue;
    }
    int ci = (int)(k / khw), ky = (int)(k / s->kw % s->kh), kx = (int)(k % s->kw);
    int off = kx - s->pl;  // ix = ox·stride + off
    for (int r = 0; r < nrun; r++) {
      float *d = dk + run[r].d - run[r].ox;  // indexed by ox
      int ox0 = run[r].ox, ox1 = run[r].ox + run[r].len;
      int iy = run[r].oy * s->stride - s->pt + ky;
      if (iy < 0 || iy >= s->h) {
        for (int ox = ox0; ox < ox1; ox++) d[ox] = 0.0f;
        continue;
      }
      const float *xr = s->x + (run[r].img * s->cin + ci) * hw + (int64_t)iy * s->w;
      // ox in [lo, hi) reads inside the row (0 <= ox·stride + off < w); the rest is padding
      int lo = off >= 0 ? 0 : (-off + s->stride - 1) / s->stride;
      int hi = s->w - off <= 0 ? 0 : (s->w - off + s->stride - 1) / s->stride;
      if (lo < ox0) lo = ox0;
      if (hi > ox1) hi = ox1;
      if (hi < lo) hi = lo;
      for (int ox = ox0; ox < lo; ox++) d[ox] = 0.0f;
      if (s->stride == 1)
        for (int ox = lo; ox < hi; ox++) d[ox] = xr[ox + off];
      else
        for (int ox = lo; ox < hi; ox++) d[ox] = xr[ox * s->stride + off];
      for (int ox = hi; ox < ox1; ox++) d[ox] = 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The GEMM driver
// ---------------------------------------------------------------------------------------------------
// Operands. A: a strided view packed per tile, or pre-packed PACK_MR-row panels (packed_weight_elems).
// B: a strided view or a convolution's input, gathered per panel into a block shared by the threads;
// or pre-packed PACK_NR-column panels (packed_linear_elems). C: column n is pixel n % cols of
// image n / cols,  C(m, n) at p + (n / cols)·img + m·ld + n % cols  (a plain matrix: cols = N).
typedef struct {
  View v;
  const float *packed;  // non-NULL: pre-packed, v unused
} ASrc;
typedef struct {
  View v;
  const ConvSrc *conv;  // non-NULL: implicit im2col, v unused
  const float *packed;  // non-NULL: pre-packed, v and conv unused
} BSrc;
typedef struct {
  float *p;
  int64_t ld, cols, img;
} Out;
static Out out_plain(float *p, int64_t ld) { return (Out){p, ld, INT64_MAX, 0}; }
static inline int64_t out_off(Out c, int64_t m, int64_t n) { return (n / c.cols) * c.img + m * c.ld + n % c.cols; }

// What C holds before the products accumulate into it (each term optional; all NULL: nothing, the
// first k block stores):  C(m, n) = (bias_m[m] + bias_n[n] + chan[image(n)·M + m]) + res(m, n),
// res addressed like C. res may be C itself.
typedef struct {
  const float *bias_m, *bias_n, *chan, *res;
} Init;

// C[mc, nc] (+)= Ap[mc, kc] · Bp[nc, kc]ᵀ from packed operands (as, bs: their panel widths; the B
// columns start at column bj0 of the packed block), C plain with row stride ldc. Edge tiles go through a
// local tile.
static void macro_kernel(const Kern *kn, int mc, int nc, int kc, const float *Ap, int64_t as, const float *Bp,
                         int64_t bs, int64_t bj0, float *C, int64_t ldc, int accum) {
  const int MR = kn->mr, NR = kn->nr;
  float tile[12 * 32] __attribute__((aligned(64)));
  for (int j = 0; j < nc; j += NR) {
    int nr = nc - j < NR ? nc - j : NR;
    const float *b = Bp + (bj0 + j) / bs * bs * kc + (bj0 + j) % bs;
    for (int i = 0; i < mc; i += MR) {
      int mr = mc - i < MR ? mc - i : MR;
      const float *a = Ap + (i / as) * as * kc + i % as;
      float *c = C + (int64_t)i * ldc + j;
      if (mr == MR && nr == NR) {
        kn->fn(kc, a, as, b, bs, c, ldc, accum);
        continue;
      }
      kn->fn(kc, a, as, b, bs, tile, NR, 0);
      for (int ii = 0; ii < mr; ii++) {
        float *ci = c + (int64_t)ii * ldc;
        const float *t = tile + ii * NR;
        if (accum)
          for (int jj = 0; jj < nr; jj++) ci[jj] += t[jj];
        else
          for (int jj = 0; jj < nr; jj++) ci[jj] = t[jj];
      }
    }
  }
}

// Writes C's starting values (Init); returns whether it wrote any.
static int init_c(int M, int64_t N, Out C, Init in) {
  if (!in.bias_m && !in.bias_n && !in.chan && !in.res) return 0;
  int64_t nimg = C.cols >= N ? 1 : N / C.cols, cols = C.cols >= N ? N : C.cols;  // N = nimg·cols for images
#pragma omp parallel for schedule(static) collapse(2) if ((int64_t)M * N > 65536)
  for (int64_t i = 0; i < nimg; i++)
    for (int m = 0; m < M; m++) {
      int64_t off = i * C.img + (int64_t)m * C.ld;
      float *c = C.p + off;
      const float *r = in.res ? in.res + off : NULL;
      float bm = (in.bias_m ? in.bias_m[m] : 0.0f) + (in.chan ? in.chan[i * M + m] : 0.0f);
      const float *bn = in.bias_n ? in.bias_n + i * cols : NULL;
      for (int64_t n = 0; n < cols; n++) {
        float v = bn ? bm + bn[n] : bm;
        c[n] = r ? v + r[n] : v;
      }
    }
  return 1;
}

// The general product, parallel over (M block, N sub-block) tiles:  C = Init + Σ_k A(m,k)·B(n,k).
static void gemm(int M, int64_t N, int K, ASrc A, BSrc B, Out C, Init in) {
  if (M <= 0 || N <= 0) return;
  const Kern *kn = pick_kernel();
  const int MR = kn->mr, NR = kn->nr;
  const int MC = GEMM_MC / MR * MR;  // a multiple of PACK_MR too: tiles start on a packed panel
  int prefilled = init_c(M, N, C, in);
  if (K <= 0) {
    if (!prefilled)
      for (int m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) C.p[out_off(C, m, n)] = 0.0f;
    return;
  }
  // N block: B is packed for all of K at once (at most ~16 MiB), so that the threads meet only twice
  // per block. A barrier per k block would let a thread whose core is shared with another process
  // stall the other at every step.
  int64_t nc_max = ((int64_t)16 << 20) / ((int64_t)K * (int64_t)sizeof(float)) / NR * NR;
  if (nc_max < NR) nc_max = NR;
  if (B.packed) nc_max = N;  // nothing to pack: one block
  const int NC = round_up((int)(N < nc_max ? N : nc_max), NR);
  const int nkb = (K + GEMM_KC - 1) / GEMM_KC, rpA = round_up(M, PACK_MR);
  float *Bp = B.packed ? NULL : alloc_f32((size_t)NC * K, "gemm packed B");
  const int rpB = round_up((int)(B.packed ? N : 0), PACK_NR);
  double flops = 2.0 * M * (double)N * K;
#pragma omp parallel if (flops > 2e6)
  {
    // A from a view: this thread's copy of the MC-row block ic, packed for all of K (k block pc at
    // Ap + MC·pc); consecutive tiles share ic, so each block is packed about once per thread.
    float *Ap = A.packed ? NULL : alloc_f32((size_t)MC * K, "gemm packed A");
    int nth = thread_count(), packed_ic = -1;
    // Each tile's product over all of K is accumulated in a staging tile and added to C once. Its rows
    // are padded by one cache line: C's rows are often a multiple of 4 KiB apart (a 32×32 image, 1280 or
    // 5120 features), which would put all MR rows of a micro-tile in one L1 set; tiles that straddle two
    // images (the 4×4 and 2×2 latents) are scattered once instead of at every k block.
    const int SLD = round_up(256, NR) + 16;
    float *stage = alloc_f32((size_t)MC * SLD, "gemm staging tile");
    for (int64_t jc = 0; jc < N; jc += NC) {
      int nc = N - jc < NC ? (int)(N - jc) : NC;
      int npanels = (nc + NR - 1) / NR, rp = npanels * NR;
      // packed B of this block: k block k0 at Bp + rp·k0, its NR-column panels consecutive
#pragma omp for schedule(dynamic, 4)
      for (int p = 0; p < (B.packed ? 0 : npanels * nkb); p++) {
        int k0 = p / npanels * GEMM_KC, pn = p % npanels;
        int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        float *dst = Bp + (int64_t)rp * k0 + (int64_t)pn * NR * kc;
        if (B.conv)
          pack_conv_panel(dst, B.conv, jc + pn * NR, N, k0, kc, NR);
        else
          pack_panels(dst, B.v, (int)jc + pn * NR, (int)N, NR, k0, kc, NR);
      }
      // implicit barrier: the B block is complete.
      // Tiles of C (MC rows × NS columns), each computed over all of K by one thread; handed out
      // dynamically. NS: as wide as possible while leaving a few tiles per thread.
      int n_ic = (M + MC - 1) / MC;
      int NS = round_up(256, NR);
      while (NS > NR && (int64_t)n_ic * ((nc + NS - 1) / NS) < 4 * nth) NS = round_up(NS / 2, NR);
      int n_js = (nc + NS - 1) / NS;
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < n_ic * n_js; t++) {
        int ic = t / n_js, js = t % n_js;
        int m0 = ic * MC, mc = M - m0 < MC ? M - m0 : MC;
        int n0 = js * NS, ns = nc - n0 < NS ? nc - n0 : NS;
        for (int pc = 0; pc < K; pc += GEMM_KC) {
          int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
          const float *a = Ap + (int64_t)MC * pc;
          int64_t as = MR;
          if (A.packed) {
            a = A.packed + (int64_t)rpA * pc + (int64_t)m0 * kc, as = PACK_MR;
          } else if (packed_ic != ic) {
            for (int k0 = 0; k0 < K; k0 += GEMM_KC)
              pack_panels(Ap + (int64_t)MC * k0, A.v, m0, M, round_up(mc, MR), k0, K - k0 < GEMM_KC ? K - k0 : GEMM_KC, MR);
            packed_ic = ic;
          }
          if (B.packed)  // jc = 0: one block
            macro_kernel(kn, mc, ns, kc, a, as, B.packed + (int64_t)rpB * pc, PACK_NR, n0, stage, SLD, pc > 0);
          else
            macro_kernel(kn, mc, ns, kc, a, as, Bp + (int64_t)rp * pc, NR, n0, stage, SLD, pc > 0);
        }
        for (int m = 0; m < mc; m++) {  // C (+)= stage, in runs that stay inside one image
          const float *sr = stage + (int64_t)m * SLD;
          for (int j = 0; j < ns;) {
            int64_t n = jc + n0 + j;
            int run = (int)(C.cols - n % C.cols < ns - j ? C.cols - n % C.cols : ns - j);
            float *c = C.p + out_off(C, m0 + m, n);
            if (prefilled)
              for (int q = 0; q < run; q++) c[q] += sr[j + q];
            else
              for (int q = 0; q < run; q++) c[q] = sr[j + q];
            j += run;
          }
        }
      }
      // implicit barrier: Bp is repacked for the next block
    }
    free_f32(Ap), free_f32(stage);
  }
  free_f32(Bp);
}

// The attainable peak of this machine's micro-kernel: every thread runs it over one kc = GEMM_KC panel
// pair that stays in L1, storing into a private tile, for about `seconds`. The yardstick that the
// benchmark's GFLOP/s are read against (the GEMM can approach it, never pass it).
double op_kernel_peak_gflops(double seconds) {
  const Kern *kn = pick_kernel();
  double total_flop = 0, t0 = vdp_now(), t1 = t0;
#pragma omp parallel reduction(+ : total_flop)
  {
    float *Ap = alloc_f32((size_t)kn->mr * GEMM_KC, "peak A"), *Bp = alloc_f32((size_t)kn->nr * GEMM_KC, "peak B");
    float *C = alloc_f32((size_t)kn->mr * kn->nr, "peak C");
    for (int i = 0; i < kn->mr * GEMM_KC; i++) Ap[i] = 1e-3f * (float)(i % 7);
    for (int i = 0; i < kn->nr * GEMM_KC; i++) Bp[i] = 1e-3f * (float)(i % 5);
    int64_t calls = 0;
    do {
      for (int r = 0; r < 1000; r++) kn->fn(GEMM_KC, Ap, kn->mr, Bp, kn->nr, C, kn->nr, r > 0);
      calls += 1000;
    } while (vdp_now() - t0 < seconds);
    total_flop += 2.0 * kn->mr * kn->nr * GEMM_KC * (double)calls;
    free_f32(Ap), free_f32(Bp), free_f32(C);
  }
  t1 = vdp_now();
  return total_flop / (t1 - t0) / 1e9;
}

// ===================================================================================================
// 2. Linear and convolutions
// ===================================================================================================
// Results are bit-identical whatever the thread count and whatever the other rows (images) of the batch:
// every output element is summed in the same order wherever its tile falls (k blocks of GEMM_KC in
// order, each from zero, into the staging tile; then added to its starting value once). They do depend
// on the micro-kernel (FMA or not).
void op_linear(float *y, const float *x, const float *w, const float *b, int M, int K, int N) {
  ASrc A = {.v = {x, K, 1}};
  BSrc B = {.v = {w, K, 1}};
  gemm(M, N, K, A, B, out_plain(y, N), (Init){.bias_n = b});
}

// y[M, N] = (x · wᵀ + b) + res from packed weights (pack_linear_weights); res may be y, never x.
static void linear_packed(float *y, const float *x, const float *wp, const float *b, const float *res, int M, int K,
                          int N) {
  ASrc A = {.v = {x, K, 1}};
  BSrc B = {.packed = wp};
  gemm(M, N, K, A, B, out_plain(y, N), (Init){.bias_n = b, .res = res});
}

// The convolution from packed weights (pack_conv_weights): y[n, cout, ho, wo] = Init + W · im2col(x),
// Init: bias [cout], chan_add [n, cout] (per image and channel), res [n, cout, ho, wo] (may be y).
static void conv2d_packed(float *y, const float *x, const float *wp, const float *b, int n, int cin, int h, int wd,
                          int cout, int kh, int kw, int stride, int pt, int pl, int pb, int pr, const float *chan_add,
                          const float *res) {
  int ho = (h + pt + pb - kh) / stride + 1, wo = (wd + pl + pr - kw) / stride + 1;
  if (ho <= 0 || wo <= 0 || n <= 0) return;
  int64_t P = (int64_t)ho * wo;
  ConvSrc s = {x, cin, h, wd, kh, kw, stride, pt, pl, ho, wo, 0};
  if (kh == 1 && kw == 1 && stride == 1 && pt == 0 && pl == 0 && pb == 0 && pr == 0)
    s.h = 1, s.w = s.wo = (int)P, s.ho = 1;  // h w -> (h w): one row per image
  ASrc A = {.packed = wp};
  BSrc B = {.conv = &s};
  Out C = {y, P, P, (int64_t)cout * P};
  gemm(cout, n * P, cin * kh * kw, A, B, C, (Init){.bias_m = b, .chan = chan_add, .res = res});
}

// The temporal conv (kernel (3,1,1), padding 1 over frames) from packed weights: out[b, f] = Init +
// Σ_tap W[:, tap, :] · x[b, f + tap − 1], every frame of every video in one product.
static void conv_temporal_packed(float *y, const float *x, const float *wp, const float *b, int nb, int nf, int cin,
                                 int hw, int cout, const float *chan_add, const float *res) {
  if (nb <= 0 || nf <= 0 || hw <= 0) return;
  ConvSrc s = {x, cin, 1, hw, 1, 1, 1, 0, 0, 1, hw, nf};
  ASrc A = {.packed = wp};
  BSrc B = {.conv = &s};
  Out C = {y, hw, hw, (int64_t)cout * hw};
  gemm(cout, (int64_t)nb * nf * hw, 3 * cin, A, B, C, (Init){.bias_m = b, .chan = chan_add, .res = res});
}

void op_conv2d(float *y, const float *x, const float *w, const float *b, int n, int cin, int h, int wd,
               int cout, int kh, int kw, int stride, int pt, int pl, int pb, int pr) {
  float *wp = alloc_f32((size_t)packed_weight_elems(cout, cin * kh * kw), "conv2d packed weights");
  pack_conv_weights(wp, w, cout, cin, kh * kw, 0);
  conv2d_packed(y, x, wp, b, n, cin, h, wd, cout, kh, kw, stride, pt, pl, pb, pr, NULL, NULL);
  free_f32(wp);
}

void op_conv_temporal(float *y, const float *x, const float *w, const float *b, int nb, int nf, int cin,
                      int hw, int cout) {
  float *wp = alloc_f32((size_t)packed_weight_elems(cout, 3 * cin), "conv_temporal packed weights");
  pack_conv_weights(wp, w, cout, cin, 3, 1);
  conv_temporal_packed(y, x, wp, b, nb, nf, cin, hw, cout, NULL, NULL);
  free_f32(wp);
}

// ===================================================================================================
// 3. Attention
// ===================================================================================================
// GCC only if-converts the clamps and max reductions below (and so vectorises those loops) when it
// may assume comparisons do not trap; the computed values are the same either way.
#if defined(__GNUC__) && !defined(__clang__)
#define VDP_SIMD_MATH __attribute__((always_inline, optimize("no-trapping-math")))
#elif defined(__clang__)
#define VDP_SIMD_MATH __attribute__((always_inline))
#else
#define VDP_SIMD_MATH
#endif

// exp(x) for x <= 0, written so the compiler vectorises it (libm's expf is a scalar call): Cody–Waite
// reduction x = n·ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r (Cephes' coefficients, about
// 1 ulp), and 2^n built in the exponent bits. Inputs below -87 give e^-87 (≈1.6e-38) instead of ~0,
// irrelevant next to the row maximum's 1.
static inline VDP_SIMD_MATH float exp_nonpos(float x) {
  const float LOG2E = 1.44269504088896341f, MAGIC = 12582912.0f;  // 1.5·2^23: round to nearest integer
  const float C1 = 0.693359375f, C2 = -2.12194440e-4f;
  x = x < -87.0f ? -87.0f : x;
  float fn = (x * LOG2E + MAGIC) - MAGIC;
  float r = x - fn * C1;
  r = r - fn * C2;
  float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  int32_t e = ((int32_t)fn + 127) << 23;
  float sc;
  memcpy(&sc, &e, sizeof sc);
  return p * sc;
}

// Softmax numerators of a transposed score block: st[j*ld + i] (key j, query i < nq) becomes
// exp(scale·st − max_j) and sum[i] = Σ_j of it. Queries are the contiguous axis, so every loop runs
// down whole rows of st and vectorises with each query in its own lane (a fixed order for the sums).
static inline VDP_SIMD_MATH void softmax_cols_impl(float *st, int64_t ld, int lk, int nq, float scale,
                                                   float *mx, float *sum) {
  for (int i = 0; i < nq; i++) mx[i] = -INFINITY, sum[i] = 0.0f;
  for (int j = 0; j < lk; j++) {
    const float *r = st + j * ld;
    for (int i = 0; i < nq; i++) {
      float v = r[i] * scale;
      mx[i] = v > mx[i] ? v : mx[i];
    }
  }
  for (int j = 0; j < lk; j++) {
    float *r = st + j * ld;
    for (int i = 0; i < nq; i++) {
      float e = exp_nonpos(r[i] * scale - mx[i]);
      r[i] = e;
      sum[i] += e;
    }
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#define VDP_NOTRAP __attribute__((optimize("no-trapping-math")))
#else
#define VDP_NOTRAP
#endif
typedef void (*SoftmaxFn)(float *, int64_t, int, int, float, float *, float *);
static VDP_NOTRAP void softmax_cols_generic(float *st, int64_t ld, int lk, int nq, float scale, float *mx,
                                            float *sum) {
  softmax_cols_impl(st, ld, lk, nq, scale, mx, sum);
}
#if VDP_X86
// The same code compiled for wider vectors. There is no FMA contraction under -std=c11, so every
// version gives bit-identical results.
__attribute__((target("avx2"))) static VDP_NOTRAP void softmax_cols_avx2(float *st, int64_t ld, int lk, int nq,
                                                                         float scale, float *mx, float *sum) {
  softmax_cols_impl(st, ld, lk, nq, scale, mx, sum);
}
__attribute__((target("avx512f"))) static VDP_NOTRAP void softmax_cols_avx512(float *st, int64_t ld, int lk,
                                                                              int nq, float scale, float *mx,
                                                                              float *sum) {
  softmax_cols_impl(st, ld, lk, nq, scale, mx, sum);
}
#endif

// Packs all of a [rows, K] view into MR-row panels for the serial GEMMs: k blocks of GEMM_KC, the
// block starting at column k0 at offset round_up(rows, MR)·k0.
static void pack_full(float *dst, View v, int rows, int K, int MR) {
  int rp = round_up(rows, MR);
  for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
    int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
    pack_panels(dst + (int64_t)rp * k0, v, 0, rows, rp, k0, kc, MR);
  }
}

// Attention, per (sequence, head, block of QB queries):
//   Sᵀ[lk, QB] = K · Q_blkᵀ          K pre-packed as the A operand (once per sequence and head)
//   Sᵀ ← exp(scale·Sᵀ − max), column sums        (softmax_cols)
//   O[QB, hd]  = P · V  with P = (Sᵀ)ᵀ           V pre-packed as the B operand; P packs by memcpy
//   O ← O / sum
// Working on Sᵀ keeps the queries contiguous: the softmax vectorises across queries and the P
// panels are straight copies. Scratch per thread: lk×QB scores, never lq×lk.
void op_attention(float *o, int64_t o_seq, int64_t o_row, const float *q, int64_t q_seq, int64_t q_row,
                  const float *k, int64_t k_seq, int64_t k_row, const float *v, int64_t v_seq, int64_t v_row,
                  int nseq, int lq, int lk, int heads, int hd, float scale) {
  if (nseq <= 0 || lq <= 0 || heads <= 0 || hd <= 0) return;
  if (lk <= 0) {  // softmax over nothing: define the output as zero
    for (int s = 0; s < nseq; s++)
      for (int i = 0; i < lq; i++) memset(o + s * o_seq + i * o_row, 0, (size_t)heads * hd * sizeof(float));
    return;
  }
  const Kern *kn = pick_kernel();
  const int MR = kn->mr, NR = kn->nr;
  SoftmaxFn softmax_cols = softmax_cols_generic;
#if VDP_X86
  if (__builtin_cpu_supports("avx512f"))
    softmax_cols = softmax_cols_avx512;
  else if (__builtin_cpu_supports("avx2"))
    softmax_cols = softmax_cols_avx2;
#endif
  // Query block: 64 (a multiple of NR, as it is the N side of the first product), fewer if lq is small.
  int QB = round_up(64, NR);
  if (QB > round_up(lq, NR)) QB = round_up(lq, NR);
  int nqb = (lq + QB - 1) / QB;
  int64_t items = (int64_t)nseq * heads * nqb;
  double flops = 4.0 * nseq * heads * (double)lq * lk * hd;
  // chunks of about 1 MFLOP, so that tiny sequences (temporal attention: 14 frames) are not
  // scheduled one by one
  double item_flops = 4.0 * QB * (double)lk * hd;
  int64_t chunk = item_flops >= 1e6 ? 1 : (int64_t)(1e6 / item_flops);
  const int LB = 240;  // rows of Sᵀ per macro-kernel call: a 240×hd slice of packed K stays in L2
#pragma omp parallel if (flops > 1e6 && items > 1)
  {
    float *Kp = alloc_f32((size_t)round_up(lk, MR) * hd, "attention packed K");
    float *Vp = alloc_f32((size_t)round_up(hd, NR) * lk, "attention packed V");
    float *St = alloc_f32((size_t)lk * QB, "attention scores");
    float *Qp = alloc_f32((size_t)QB * hd, "attention packed Q");
    float *Pp = alloc_f32((size_t)round_up(QB, MR) * GEMM_KC, "attention packed P");
    float *mx = alloc_f32((size_t)QB, "attention row max"), *sum = alloc_f32((size_t)QB, "attention row sums");
    // Work items in (sequence, head, query block) order: consecutive items share (sequence, head), so
    // K and V are packed about once per (sequence, head) per thread.
    int64_t packed_sh = -1;
#pragma omp for schedule(dynamic, chunk)
    for (int64_t it = 0; it < items; it++) {
      int64_t sh = it / nqb;
      int qb = (int)(it % nqb), s = (int)(sh / heads), h = (int)(sh % heads);
      if (sh != packed_sh) {
        pack_full(Kp, (View){k + s * k_seq + (int64_t)h * hd, k_row, 1}, lk, hd, MR);  // (key j, dim d)
        pack_full(Vp, (View){v + s * v_seq + (int64_t)h * hd, 1, v_row}, hd, lk, NR);  // (dim d, key j)
        packed_sh = sh;
      }
      int q0 = qb * QB, nq = lq - q0 < QB ? lq - q0 : QB;
      // Sᵀ[lk, nq] = K · Q_blkᵀ
      pack_full(Qp, (View){q + s * q_seq + (int64_t)q0 * q_row + (int64_t)h * hd, q_row, 1}, nq, hd, NR);
      int rpK = round_up(lk, MR), rpQ = round_up(nq, NR);
      for (int k0 = 0; k0 < hd; k0 += GEMM_KC) {
        int kc = hd - k0 < GEMM_KC ? hd - k0 : GEMM_KC;
        for (int j0 = 0; j0 < lk; j0 += LB)
          macro_kernel(kn, lk - j0 < LB ? lk - j0 : LB, nq, kc, Kp + (int64_t)rpK * k0 + (int64_t)j0 * kc, MR,
                       Qp + (int64_t)rpQ * k0, NR, 0, St + (int64_t)j0 * QB, QB, k0 > 0);
      }
      softmax_cols(St, QB, lk, nq, scale, mx, sum);
      // O[nq, hd] = P · V, P(i, j) = Sᵀ[j, i]
      float *Ob = o + s * o_seq + (int64_t)q0 * o_row + (int64_t)h * hd;
      View Pv = {St, 1, QB};
      int rpV = round_up(hd, NR);
      for (int k0 = 0; k0 < lk; k0 += GEMM_KC) {
        int kc = lk - k0 < GEMM_KC ? lk - k0 : GEMM_KC;
        pack_panels(Pp, Pv, 0, nq, round_up(nq, MR), k0, kc, MR);
        macro_kernel(kn, nq, hd, kc, Pp, MR, Vp + (int64_t)rpV * k0, NR, 0, Ob, o_row, k0 > 0);
      }
      for (int i = 0; i < nq; i++) {
        float inv = 1.0f / sum[i];
        float *orow = Ob + (int64_t)i * o_row;
        for (int d = 0; d < hd; d++) orow[d] *= inv;
      }
    }
    free_f32(Kp), free_f32(Vp), free_f32(St), free_f32(Qp), free_f32(Pp), free_f32(mx), free_f32(sum);
  }
}

// ===================================================================================================
// 4. Normalisation
// ===================================================================================================
// Mean and variance (biased, as PyTorch's norms) of the union of `nslab` runs of `len` floats spaced
// `stride` apart. Sums in double: exact enough that fp32 inputs give the fp32-rounded true statistics.
static void stats_slabs(const float *x, int nslab, int64_t stride, int64_t len, double *mean, double *var) {
  double acc[8] = {0};
  for (int s = 0; s < nslab; s++) {
    const float *p = x + s * stride;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
      for (int l = 0; l < 8; l++) acc[l] += p[i + l];
    for (; i < len; i++) acc[i & 7] += p[i];
  }
  double n = (double)nslab * len, sum = 0;
  for (int l = 0; l < 8; l++) sum += acc[l];
  double mu = sum / n;
  // second pass around the mean: no cancellation
  for (int l = 0; l < 8; l++) acc[l] = 0;
  for (int s = 0; s < nslab; s++) {
    const float *p = x + s * stride;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
      for (int l = 0; l < 8; l++) {
        double d = p[i + l] - mu;
        acc[l] += d * d;
      }
    for (; i < len; i++) {
      double d = p[i] - mu;
      acc[i & 7] += d * d;
    }
  }
  double ss = 0;
  for (int l = 0; l < 8; l++) ss += acc[l];
  *mean = mu;
  *var = ss / n;
}

// v·sigmoid(v) through exp_nonpos (vectorises; libm's expf is a scalar call): with e = e^(−|v|) <= 1,
// sigmoid(|v|) = 1 / (1 + e) and sigmoid(−|v|) = e / (1 + e), so the exponential never overflows.
static inline VDP_SIMD_MATH float silu1(float v) {
  float e = exp_nonpos(-fabsf(v)), s = 1.0f / (1.0f + e);
  return v * (v >= 0.0f ? s : e * s);
}

VDP_NOTRAP void op_groupnorm(float *y, const float *x, const float *gamma, const float *beta, int nb, int nf, int c,
                  int hw, int groups, float eps, int silu) {
  if (groups <= 0 || c % groups) vdp_die("op_groupnorm: %d channels not divisible by %d groups", c, groups);
  int cpg = c / groups;
  int64_t slab = (int64_t)c * hw;  // one frame
  int64_t glen = (int64_t)cpg * hw;  // one group within one frame (contiguous)
  int64_t work = (int64_t)nb * nf * slab;
#pragma omp parallel for schedule(static) collapse(2) if (work > 32768)
  for (int b = 0; b < nb; b++)
    for (int g = 0; g < groups; g++) {
      const float *xg = x + (int64_t)b * nf * slab + (int64_t)g * glen;
      double mean, var;
      stats_slabs(xg, nf, slab, glen, &mean, &var);
      // y = ((x − mean_hi) − mean_lo)·(rstd·γ) + β. The mean is split into two floats so that the
      // centring stays exact when |mean| >> std (PyTorch's x·s + (β − mean·s) loses digits there).
      float rstd = (float)(1.0 / sqrt(var + (double)eps)), mh = (float)mean, ml = (float)(mean - mh);
      for (int cc = 0; cc < cpg; cc++) {
        int ch = g * cpg + cc;
        float sc = rstd * (gamma ? gamma[ch] : 1.0f), be = beta ? beta[ch] : 0.0f;
        for (int f = 0; f < nf; f++) {
          int64_t off = ((int64_t)b * nf + f) * slab + (int64_t)ch * hw;
          const float *xp = x + off;
          float *yp = y + off;
          for (int64_t i = 0; i < hw; i++) yp[i] = ((xp[i] - mh) - ml) * sc + be;
          if (silu)
            for (int64_t i = 0; i < hw; i++) yp[i] = silu1(yp[i]);
        }
      }
    }
}

void op_layernorm(float *y, const float *x, const float *gamma, const float *beta, int M, int C, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)M * C > 32768)
  for (int m = 0; m < M; m++) {
    const float *xr = x + (int64_t)m * C;
    float *yr = y + (int64_t)m * C;
    double mean, var;
    stats_slabs(xr, 1, 0, C, &mean, &var);
    float rstd = (float)(1.0 / sqrt(var + (double)eps)), mh = (float)mean, ml = (float)(mean - mh);
    for (int i = 0; i < C; i++)  // mean as hi + lo floats: see op_groupnorm
      yr[i] = ((xr[i] - mh) - ml) * rstd * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
  }
}

// ===================================================================================================
// 5. Element-wise and data movement
// ===================================================================================================
#define PAR_N(n) if ((n) > 32768)

// erf for the exact GELU, written to vectorise (libm's erff is a scalar call): Abramowitz & Stegun 7.1.26,
// erf(|x|) = 1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·e^(−x²), t = 1 / (1 + p·|x|); absolute error
// about 2e-7 in float (test_ops checks GELU and GEGLU against double-precision erf).
static inline VDP_SIMD_MATH float erf_vec(float x) {
  float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
  float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  float r = 1.0f - poly * exp_nonpos(-ax * ax);
  return x < 0.0f ? -r : r;
}
static inline VDP_SIMD_MATH float gelu1(float g) { return 0.5f * g * (1.0f + erf_vec(g * 0.70710678118654752440f)); }

VDP_NOTRAP void op_geglu(float *y, const float *x, int M, int H) {
#pragma omp parallel for schedule(static) PAR_N((int64_t)M * H)
  for (int m = 0; m < M; m++) {
    const float *xr = x + (int64_t)m * 2 * H;
    float *yr = y + (int64_t)m * H;
    for (int j = 0; j < H; j++) yr[j] = xr[j] * gelu1(xr[H + j]);
  }
}

VDP_NOTRAP void op_silu(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR_N(n)
  for (int64_t i = 0; i < n; i++) y[i] = silu1(x[i]);
}

VDP_NOTRAP void op_gelu(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR_N(n)
  for (int64_t i = 0; i < n; i++) y[i] = gelu1(x[i]);
}

void op_quick_gelu(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR_N(n)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    y[i] = v * (1.0f / (1.0f + expf(-(1.702f * v))));
  }
}

void op_add(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) PAR_N(n)
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void op_add_bcast(float *y, const float *v, int rows, int C, int64_t inner) {
#pragma omp parallel for schedule(static) collapse(2) PAR_N((int64_t)rows * C * inner)
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < C; c++) {
      float add = v[(int64_t)r * C + c];
      float *p = y + ((int64_t)r * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) p[i] += add;
    }
}

void op_blend(float *y, const float *a, const float *b, float alpha, int64_t n) {
  float beta = 1.0f - alpha;
#pragma omp parallel for schedule(static) PAR_N(n)
  for (int64_t i = 0; i < n; i++) y[i] = alpha * a[i] + beta * b[i];
}

void op_timestep_embedding(float *y, const float *t, int n, int dim) {
  // diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0) in float32:
  //   exponent = (-ln(10000) · arange(half)) / half;  freq = exp(exponent);  e = t · freq
  //   y = [cos e | sin e]  (+ a zero column when dim is odd)
  int half = dim / 2;
  const float neg_log = -9.210340371976184f;  // -math.log(10000), rounded to float as torch does
  for (int i = 0; i < n; i++) {
    float *yr = y + (int64_t)i * dim;
    for (int kk = 0; kk < half; kk++) {
      float ex = (neg_log * (float)kk) / (float)half;
      float e = t[i] * expf(ex);
      yr[kk] = cosf(e);
      yr[half + kk] = sinf(e);
    }
    if (dim & 1) yr[dim - 1] = 0.0f;
  }
}

// PyTorch's nearest source index (UpSampleKernel nearest_idx): identity and exact ×2 are special-cased,
// otherwise floor(dst · (float)in/out) clamped to in-1.
static int nearest_src(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  float scale = (float)in / (float)out;
  int s = (int)floorf((float)dst * scale);
  return s < in - 1 ? s : in - 1;
}

void op_upsample_nearest(float *y, const float *x, int n, int c, int h, int w, int ho, int wo) {
  int *sx = vdp_malloc((size_t)wo * sizeof(int), "upsample index");
  for (int j = 0; j < wo; j++) sx[j] = nearest_src(j, w, wo);
  int64_t planes = (int64_t)n * c;
#pragma omp parallel for schedule(static) PAR_N(planes * ho * wo)
  for (int64_t p = 0; p < planes; p++)
    for (int i = 0; i < ho; i++) {
      const float *xr = x + (p * h + nearest_src(i, h, ho)) * w;
      float *yr = y + (p * ho + i) * wo;
      for (int j = 0; j < wo; j++) yr[j] = xr[sx[j]];
    }
  free(sx);
}

void op_transpose_0213(float *y, const float *x, int A, int B, int C, int64_t D) {
  // y[a, c, b, :] = x[a, b, c, :]; tiles of 32×32 (b, c) keep both sides' cache lines in use when D is small
  const int T = 32;
  int nbt = (B + T - 1) / T, nct = (C + T - 1) / T;
#pragma omp parallel for schedule(static) collapse(3) PAR_N((int64_t)A * B * C * D)
  for (int a = 0; a < A; a++)
    for (int bt = 0; bt < nbt; bt++)
      for (int ct = 0; ct < nct; ct++) {
        int b1 = (bt + 1) * T < B ? (bt + 1) * T : B, c1 = (ct + 1) * T < C ? (ct + 1) * T : C;
        for (int b = bt * T; b < b1; b++)
          for (int c = ct * T; c < c1; c++) {
            const float *src = x + (((int64_t)a * B + b) * C + c) * D;
            float *dst = y + (((int64_t)a * C + c) * B + b) * D;
            if (D == 1)
              *dst = *src;
            else
              memcpy(dst, src, (size_t)D * sizeof(float));
          }
      }
}

// ---------------------------------------------------------------------------------------------------
// 6. The CPU backend: tensors are host fp32 arrays. Convolutions fuse their epilogues (starting values of
//    the GEMM); the other ops apply them as separate steps.
// ---------------------------------------------------------------------------------------------------
// Weights are stored packed once, at load, in the layout the GEMM reads: WEIGHT_CONV ([cout, cin, kh, kw],
// or the temporal [cout, cin, 3, 1, 1]) as pack_conv_weights, WEIGHT_LINEAR ([N, K]) as
// pack_linear_weights; the rest as given. Every tensor is a whole number of 64-byte lines, so that in the
// 64-byte aligned pool (cpu_mem_alloc) each one starts on a line.
static int64_t cpu_weight_elems(int kind, int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  if (kind == WEIGHT_CONV) n = packed_weight_elems((int)shape[0], (int)(n / shape[0]));
  if (kind == WEIGHT_LINEAR) n = packed_linear_elems((int)shape[0], (int)shape[1]);
  return (n + 15) / 16 * 16;
}
static void cpu_weight_store(void *dst, const float *src, int kind, int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  if (kind == WEIGHT_CONV)
    pack_conv_weights(dst, src, (int)shape[0], (int)shape[1], (int)(shape[2] * shape[3]), ndim == 5);
  else if (kind == WEIGHT_LINEAR)
    pack_linear_weights(dst, src, (int)shape[0], (int)shape[1]);
  else
    memcpy(dst, src, (size_t)n * sizeof(float));
}
// Refuses what cannot fit in physical memory up front: with overcommit, malloc would succeed and the
// process would be killed later, mid-run, when the pages are touched.
static void *cpu_mem_alloc(size_t bytes, const char *what) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  if (pages > 0 && psize > 0 && bytes > (size_t)pages * (size_t)psize)
    vdp_die("%s needs %.1f GiB but this machine has %.1f GiB of memory%s", what, bytes / 1073741824.0,
            (double)pages * psize / 1073741824.0,
            strcmp(what, "activation arena") ? "" : " (try fewer frames, a smaller size or --decode-chunk-size)");
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 1)) vdp_die("out of memory allocating %zu bytes for %s", bytes, what);
  return p;
}
static void cpu_mem_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, int64_t n) { memmove(dst, src, (size_t)n * sizeof(float)); }
static void cpu_to_device(void *dst, const float *src, int64_t n) { cpu_copy(dst, src, n); }
static void cpu_to_host(float *dst, const void *src, int64_t n) { cpu_copy(dst, src, n); }
static void cpu_sync(void) {}

static void cpu_act(void *y, const void *x, int64_t n, int act) {
  switch (act) {
    case ACT_SILU: op_silu(y, x, n); break;
    case ACT_GELU: op_gelu(y, x, n); break;
    case ACT_QUICK_GELU: op_quick_gelu(y, x, n); break;
    default: if (y != x) cpu_copy(y, x, n);
  }
}

// y = act(x·wᵀ + b) + res with w packed (WEIGHT_LINEAR); GEGLU: w [2N, K] -> value · gelu(gate). res may
// be y. Without an activation the residual is the GEMM's starting value.
static void cpu_linear(void *y, const void *x, const void *w, const void *b, int M, int K, int N, int act,
                       const void *res) {
  if (act == ACT_NONE && y != x) {
    linear_packed(y, x, w, b, res, M, K, N);
    return;
  }
  int wide = act == ACT_GEGLU ? 2 * N : N;
  float *t = (act == ACT_GEGLU || res) ? vdp_malloc((size_t)M * wide * sizeof(float), "linear scratch") : y;
  linear_packed(t, x, w, b, NULL, M, K, wide);
  float *r = t;  // act(x·wᵀ + b) [M, N], before the residual
  if (act == ACT_GEGLU) {
    // Never in place: op_geglu's threads write row m over input row m/2, which another thread may still
    // have to read. With a residual (which may be y) the result goes to its own buffer.
    r = res ? vdp_malloc((size_t)M * N * sizeof(float), "linear scratch") : y;
    op_geglu(r, t, M, N);
  } else {
    cpu_act(t, t, (int64_t)M * N, act);
  }
  if (res) op_add(y, r, res, (int64_t)M * N);
  if (r != y && r != t) free(r);
  if (t != y) free(t);
}

// Convolutions read the packed weights of cpu_weight_store; bias, per-channel add and residual are the
// GEMM's starting values (no extra passes over y).
static void cpu_conv2d(void *y, const void *x, const void *w, const void *b, int n, int cin, int h, int wd, int cout,
                       int kh, int kw, int stride, int pt, int pl, int pb, int pr, const void *chan_add,
                       const void *res) {
  conv2d_packed(y, x, w, b, n, cin, h, wd, cout, kh, kw, stride, pt, pl, pb, pr, chan_add, res);
}

static void cpu_conv_temporal(void *y, const void *x, const void *w, const void *b, int nb, int nf, int cin, int hw,
                              int cout, const void *chan_add, const void *res) {
  conv_temporal_packed(y, x, w, b, nb, nf, cin, hw, cout, chan_add, res);
}

static void cpu_groupnorm(void *y, const void *x, const void *g, const void *b, int nb, int nf, int c, int hw,
                          int groups, float eps, int silu) {
  op_groupnorm(y, x, g, b, nb, nf, c, hw, groups, eps, silu);
}
static void cpu_layernorm(void *y, const void *x, const void *g, const void *b, int M, int C, float eps) {
  op_layernorm(y, x, g, b, M, C, eps);
}
static void cpu_attention(void *o, int64_t o_seq, int64_t o_row, const void *q, int64_t q_seq, int64_t q_row,
                          const void *k, int64_t k_seq, int64_t k_row, const void *v, int64_t v_seq, int64_t v_row,
                          int nseq, int lq, int lk, int heads, int hd, float scale) {
  op_attention(o, o_seq, o_row, q, q_seq, q_row, k, k_seq, k_row, v, v_seq, v_row, nseq, lq, lk, heads, hd, scale);
}

// y[r] = res[r] + to_out(to_v(ctx[r / rows_per_ctx])): one vector per context, broadcast over its rows.
static void cpu_cross_attn_1key(void *y, const void *res, const void *ctx, const void *wv, const void *wo,
                                const void *bo, int nctx, int ctx_dim, int C, int64_t rows_per_ctx) {
  float *v = vdp_malloc((size_t)nctx * C * sizeof(float), "cross-attention"), *o = vdp_malloc((size_t)nctx * C * sizeof(float), "cross-attention");
  linear_packed(v, ctx, wv, NULL, NULL, nctx, ctx_dim, C);
  linear_packed(o, v, wo, bo, NULL, nctx, C, C);
  float *yy = y;
  const float *rr = res;
  for (int64_t r = 0; r < (int64_t)nctx * rows_per_ctx; r++) op_add(yy + r * C, rr + r * C, o + (r / rows_per_ctx) * C, C);
  free(v), free(o);
}

static void cpu_add(void *y, const void *a, const void *b, int64_t n) { op_add(y, a, b, n); }
static void cpu_add_bcast(void *y, const void *v, int rows, int C, int64_t inner) { op_add_bcast(y, v, rows, C, inner); }
static void cpu_add_rows(void *y, const void *v, int groups, int64_t group, int C) {
  float *yy = y;
  const float *vv = v;
  for (int64_t r = 0; r < (int64_t)groups * group; r++) op_add(yy + r * C, yy + r * C, vv + (r / group) * C, C);
}
static void cpu_concat_rows(void *y, const void *a, int64_t na, const void *b, int64_t nb, int rows) {
  float *yy = y;
  const float *aa = a, *bb = b;
  for (int r = 0; r < rows; r++) {
    memcpy(yy + r * (na + nb), aa + r * na, (size_t)na * sizeof(float));
    memcpy(yy + r * (na + nb) + na, bb + r * nb, (size_t)nb * sizeof(float));
  }
}
static void cpu_blend(void *y, const void *a, const void *b, float alpha, int64_t n) { op_blend(y, a, b, alpha, n); }
// t read at row *step of a table (the step loop's timestep), or t_r = r (frame positions) when t is NULL
static void cpu_timestep_embedding(void *y, const float *t, const int *step, int stride, int n, int dim) {
  float *idx = NULL;
  if (!t) {
    idx = vdp_malloc((size_t)n * sizeof(float), "embedding positions");
    for (int r = 0; r < n; r++) idx[r] = (float)r;
    t = idx;
  } else if (step) {
    t += (int64_t)*step * stride;
  }
  op_timestep_embedding(y, t, n, dim);
  free(idx);
}
static void cpu_upload_bytes(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

// The denoising step's two ops (model.h), in the float expressions and order of the host loop they
// replace (the goldens and the CPU noise stay bit-exact): xin = x / c_in | image latents, then
// guidance vu + g·(vc − vu), then Euler on the v-prediction:
//   x0 = v·c_out + x / (σ² + 1);  d = (x − x0) / σ;  x += d · (σ_next − σ)
static void cpu_step_input(void *xin, const float *x, const void *img, const StepTables *t, int B, int F, int64_t chw) {
  const float *row = t->sched + (int64_t)*t->step * SCH_COLS, *im = img;
  float c_in = row[SCH_C_IN], *xo = xin;
  for (int b = 0; b < B; b++)
    for (int f = 0; f < F; f++) {
      float *dst = xo + ((int64_t)b * F + f) * 2 * chw;  // b f (2c) h w: latent half | image half
      const float *src = x + (int64_t)f * chw;
      for (int64_t k = 0; k < chw; k++) dst[k] = src[k] / c_in;
      memcpy(dst + chw, im + (int64_t)b * chw, (size_t)chw * sizeof(float));
    }
}
static void cpu_step_update(float *x, const void *v, const StepTables *t, int B, int F, int64_t chw) {
  const float *row = t->sched + (int64_t)*t->step * SCH_COLS, *vv = v;
  float sigma = row[SCH_SIGMA], c_out = row[SCH_C_OUT], c_skip_div = row[SCH_C_SKIP_DIV], dt = row[SCH_DT];
  int64_t n = (int64_t)F * chw;
  const float *vu = vv, *vc = vv + n;  // B = 2: uncond half first
  switch (t->sampler) {
    case SAMPLER_EULER_V:
      for (int64_t j = 0; j < n; j++) {
        float vp = B == 2 ? vu[j] + t->guidance[j / chw] * (vc[j] - vu[j]) : vv[j];
        float xs = x[j], x0 = vp * c_out + xs / c_skip_div;
        float d = (xs - x0) / sigma;
        x[j] = xs + d * dt;
      }
      break;
    default: vdp_die("step_update: unknown sampler %d (internal error)", t->sampler);
  }
  (*t->step)++;
}
static void cpu_upsample_nearest(void *y, const void *x, int n, int c, int h, int w, int ho, int wo) {
  op_upsample_nearest(y, x, n, c, h, w, ho, wo);
}
static void cpu_transpose_0213(void *y, const void *x, int A, int B, int C, int64_t D) { op_transpose_0213(y, x, A, B, C, D); }

const Backend backend_cpu = {
    .name = "cpu",
    .elem_size = sizeof(float),
    .ff_chunk_rows = 4096,
    .weight_elems = cpu_weight_elems,
    .weight_store = cpu_weight_store,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .linear = cpu_linear,
    .conv2d = cpu_conv2d,
    .conv_temporal = cpu_conv_temporal,
    .groupnorm = cpu_groupnorm,
    .layernorm = cpu_layernorm,
    .attention = cpu_attention,
    .cross_attn_1key = cpu_cross_attn_1key,
    .act = cpu_act,
    .add = cpu_add,
    .add_bcast = cpu_add_bcast,
    .add_rows = cpu_add_rows,
    .concat_rows = cpu_concat_rows,
    .blend = cpu_blend,
    .timestep_embedding = cpu_timestep_embedding,
    .upsample_nearest = cpu_upsample_nearest,
    .transpose_0213 = cpu_transpose_0213,
    .upload_bytes = cpu_upload_bytes,
    .download_bytes = cpu_upload_bytes,
    .step_input = cpu_step_input,
    .step_update = cpu_step_update,
};
