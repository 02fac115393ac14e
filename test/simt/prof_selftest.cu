// prof_selftest.cu — the SIMT_PROFILE counters (test/simt/profile.cpp) on hand-made access patterns whose
// cost follows from the rules by hand (test/t_simt_profile.sh). Built only in the profiling build
// (make simt-prof: plain loads and stores instrumented). One warp per kernel; each pattern is one request
// (or a known number of them), and the expected wavefronts / sectors are written beside it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test/simt/profile.h"

static int g_fail = 0;
// after the kernel's launch: its totals for one kind must be (requests, wavefronts or sectors, ideal)
static void expect(const char *kernel, const char *kind, double req, double got, double ideal, const char *why) {
  double r = -1, g = -1, i = -1;
  const bool ok = simt::prof::totals(kernel, kind, &r, &g, &i) && r == req && g == got && i == ideal;
  printf("%s - simt_profile %s %s: %.0f requests, %.0f wavefronts/sectors, ideal %.0f (expected %.0f, %.0f, %.0f: %s)\n",
         ok ? "ok" : "FAIL", kernel, kind, r, g, i, req, got, ideal, why);
  if (!ok) g_fail++;
}

// ----- shared memory, 4-byte words: 32 banks ------------------------------------------------------------
__global__ void sh_conflict_free(float *out) {
  __shared__ float s[32 * 33];
  const int l = threadIdx.x;
  s[l] = (float)l;  // st.shared: lane l -> bank l: 1 wavefront
  __syncwarp();
  out[l] = s[(l + 1) & 31];  // ld.shared: a permutation of the banks: 1 wavefront
}
__global__ void sh_two_way(float *out) {
  __shared__ float s[32 * 33];
  const int l = threadIdx.x;
  s[2 * l] = (float)l;  // word 2l -> bank 2l mod 32: lanes l and l+16 share a bank: 2 wavefronts
  __syncwarp();
  out[l] = s[2 * l];
}
__global__ void sh_32_way(float *out) {
  __shared__ float s[32 * 33];
  const int l = threadIdx.x;
  s[32 * l] = (float)l;  // every lane in bank 0, distinct words: 32 wavefronts
  __syncwarp();
  out[l] = s[32 * l];
}
__global__ void sh_padded(float *out) {
  __shared__ float s[32 * 33];
  const int l = threadIdx.x;
  s[33 * l] = (float)l;  // a column of a [32][33] tile: word 33l -> bank l: 1 wavefront
  __syncwarp();
  out[l] = s[33 * l];
}
__global__ void sh_broadcast(float *out) {
  __shared__ float s[32 * 33];
  const int l = threadIdx.x;
  if (l == 0) s[5] = 1.f;  // one lane: 1 wavefront
  __syncwarp();
  out[l] = s[5];  // every lane reads one word: a broadcast, 1 wavefront
}
// 16 bytes per lane: four quarter-warp phases of 8 lanes
__global__ void sh_vec16(uint4 *out) {
  __shared__ __align__(16) uint4 s[64];
  const int l = threadIdx.x;
  s[l] = make_uint4(l, l, l, l);  // contiguous: 4 wavefronts, ideal 4
  __syncwarp();
  out[l] = s[2 * (l & 31) & 63];  // stride 32 bytes: 8 lanes over 256 bytes = two rows per bank group: 8 wavefronts
}

// ----- ldmatrix: each 8x8 matrix (8 rows of 16 bytes) is one phase ---------------------------------------
__global__ void ldsm_pitch64(uint32_t *out) {
  __shared__ __align__(16) uint16_t s[16 * 80];
  const int l = threadIdx.x;
  for (int i = l; i < 16 * 80; i += 32) s[i] = (uint16_t)i;
  __syncwarp();
  uint32_t r[4];
  // rows of 64 bytes (32 halves, unpadded): rows r and r+2 are 128 bytes apart, same banks: 4-way per matrix
  simt::ldmatrix(r, s + (l & 15) * 32 + (l >> 4) * 8, 4, false, __FILE__, __LINE__);
  out[l] = r[0] ^ r[3];
}
__global__ void ldsm_pitch80(uint32_t *out) {
  __shared__ __align__(16) uint16_t s[16 * 80];
  const int l = threadIdx.x;
  for (int i = l; i < 16 * 80; i += 32) s[i] = (uint16_t)i;
  __syncwarp();
  uint32_t r[4];
  // rows of 80 bytes (32 halves + 8 padding): 8 rows cover the 32 banks once: 1 wavefront per matrix
  simt::ldmatrix(r, s + (l & 15) * 40 + (l >> 4) * 8, 4, false, __FILE__, __LINE__);
  out[l] = r[0] ^ r[3];
}

// ----- global memory: 32-byte sectors --------------------------------------------------------------------
__global__ void gl_coalesced(const float *x, float *y) { y[threadIdx.x] = x[threadIdx.x]; }  // 128 B: 4 sectors
__global__ void gl_misaligned(const float *x, float *y) { y[threadIdx.x] = x[threadIdx.x + 1]; }  // 5 sectors
__global__ void gl_strided(const float *x, float *y) { y[threadIdx.x] = x[8 * threadIdx.x]; }  // 32 sectors
__global__ void gl_broadcast(const float *x, float *y) { y[threadIdx.x] = x[3]; }  // 1 sector
__global__ void gl_cp_async(const uint4 *x, uint4 *y) {
  __shared__ __align__(16) uint4 s[32];
  const int l = threadIdx.x;
  simt::cp_async(&s[l], &x[l], 16, __FILE__, __LINE__);  // 512 contiguous bytes: 16 sectors; 4 wavefronts
  simt::cp_async_commit(__FILE__, __LINE__);
  simt::cp_async_wait(0, __FILE__, __LINE__);
  __syncwarp();
  y[l] = s[l];
}

int main() {
  setenv("SIMT_PROFILE", "1", 1);
  unsetenv("SIMT_PROFILE_SAMPLE");
  float *x, *y;
  if (cudaMalloc(&x, 4096) != cudaSuccess || cudaMalloc(&y, 4096) != cudaSuccess) {
    printf("FAIL - simt_profile cudaMalloc\n");
    return 1;
  }
  cudaMemset(x, 0, 4096);
  VDP_LAUNCH(sh_conflict_free, 1, 32, 0, 0)(y);
  VDP_LAUNCH(sh_two_way, 1, 32, 0, 0)(y);
  VDP_LAUNCH(sh_32_way, 1, 32, 0, 0)(y);
  VDP_LAUNCH(sh_padded, 1, 32, 0, 0)(y);
  VDP_LAUNCH(sh_broadcast, 1, 32, 0, 0)(y);
  VDP_LAUNCH(sh_vec16, 1, 32, 0, 0)((uint4 *)y);
  VDP_LAUNCH(ldsm_pitch64, 1, 32, 0, 0)((uint32_t *)y);
  VDP_LAUNCH(ldsm_pitch80, 1, 32, 0, 0)((uint32_t *)y);
  VDP_LAUNCH(gl_coalesced, 1, 32, 0, 0)(x, y);
  VDP_LAUNCH(gl_misaligned, 1, 32, 0, 0)(x, y);
  VDP_LAUNCH(gl_strided, 1, 32, 0, 0)(x, y);
  VDP_LAUNCH(gl_broadcast, 1, 32, 0, 0)(x, y);
  VDP_LAUNCH(gl_cp_async, 1, 32, 0, 0)((const uint4 *)x, (uint4 *)y);

  expect("sh_conflict_free", "st.shared", 1, 1, 1, "lane l in bank l");
  expect("sh_conflict_free", "ld.shared", 1, 1, 1, "a permutation of the banks");
  expect("sh_two_way", "st.shared", 1, 2, 1, "stride 2 words: 2-way");
  expect("sh_two_way", "ld.shared", 1, 2, 1, "stride 2 words: 2-way");
  expect("sh_32_way", "st.shared", 1, 32, 1, "stride 32 words: 32-way");
  expect("sh_padded", "ld.shared", 1, 1, 1, "stride 33 words: conflict-free");
  expect("sh_broadcast", "st.shared", 1, 1, 1, "one lane");
  expect("sh_broadcast", "ld.shared", 1, 1, 1, "one word for all: broadcast");
  expect("sh_vec16", "st.shared", 1, 4, 4, "16 B contiguous: 4 quarter-warp wavefronts");
  expect("sh_vec16", "ld.shared", 1, 8, 4, "16 B at stride 32 B: 2-way in each quarter");
  expect("ldsm_pitch64", "ldmatrix", 1, 16, 4, "x4, 64-byte rows: 4-way per matrix");
  expect("ldsm_pitch80", "ldmatrix", 1, 4, 4, "x4, 80-byte rows: conflict-free");
  expect("gl_coalesced", "ld.global", 1, 4, 4, "128 aligned bytes");
  expect("gl_coalesced", "st.global", 1, 4, 4, "128 aligned bytes");
  expect("gl_misaligned", "ld.global", 1, 5, 4, "128 bytes shifted by 4");
  expect("gl_strided", "ld.global", 1, 32, 4, "stride 32 bytes: a sector per lane");
  expect("gl_broadcast", "ld.global", 1, 1, 1, "one word");
  expect("gl_cp_async", "cp.async.src", 1, 16, 16, "512 contiguous bytes");
  expect("gl_cp_async", "cp.async.dst", 1, 4, 4, "16 B contiguous destinations");
  printf("%d failed\n", g_fail);
  return g_fail ? 1 : 0;
}
