// batch_invariance.c — does a sample's result depend on the batch it shares? CFG-parallel (--cfg-parallel)
// runs the unconditional and the conditional half of guidance on two GPUs with batch 1 each, and must give
// the bytes of the one-GPU run with batch 2. For each backend (the CUDA backend — under the SIMT emulator,
// the real kernels.cu — and the CPU reference): unet_forward with B = 2 against two B = 1 passes on the
// halves, which covers every kernel the UNet runs (implicit-GEMM convolutions and linear layers, GEGLU,
// group and layer norms, spatial / temporal / one-key cross attention, timestep embedding, the elementwise
// ops), on an even shape, an odd one and one wider than a 128-pixel GEMM tile. Results must be bit-identical.
// (The VAE decoder is not a batch: its temporal layers mix the frames of a chunk, as in diffusers.)
// Usage: batch_invariance MODEL.vdpw [cpu|cuda]...   Output: one "ok - " / "FAIL - " line per check.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "vdp.h"

static int n_fail;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) {  // uniform in [-1, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *rand_buf(size_t n, float scale) {
  float *p = vdp_malloc(n * sizeof(float), "test buffer");
  for (size_t i = 0; i < n; i++) p[i] = scale * urand();
  return p;
}
// Bit-identical? Prints the first difference and the largest one otherwise.
static int same_bits(const char *what, const float *a, const float *b, size_t n) {
  if (!memcmp(a, b, n * sizeof(float))) return 1;
  size_t first = 0;
  double dmax = 0;
  while (first < n && !memcmp(&a[first], &b[first], sizeof(float))) first++;
  for (size_t i = 0; i < n; i++) dmax = fmax(dmax, fabs((double)a[i] - b[i]));
  printf("# %s: first difference at %zu of %zu (%.9g vs %.9g), largest %.3g\n", what, first, n, a[first], b[first], dmax);
  return 0;
}

static void unet_case(const Models *m, const char *be, int F, int h, int w) {
  const int cin = m->cfg.unet_in_channels, cout = m->cfg.unet_out_channels, D = m->cfg.unet_cross_dim[0];
  const size_t in1 = (size_t)F * cin * h * w, out1 = (size_t)F * cout * h * w;
  // batch 2 = [unconditional | conditional], as the pipeline builds it: the halves differ in the context,
  // the image-latent channels and nothing else
  float *x = rand_buf(2 * in1, 1.0f), *ctx = rand_buf(2 * (size_t)D, 0.5f), ids[6] = {6, 127, 0.02f, 6, 127, 0.02f};
  for (size_t i = 0; i < in1; i++) x[i] = x[in1 + i];  // the same noisy latent in both halves
  for (int f = 0; f < F; f++)                           // unconditional image latents: zeros
    memset(x + ((size_t)f * cin + cin / 2) * h * w, 0, (size_t)(cin / 2) * h * w * sizeof(float));
  memset(ctx, 0, (size_t)D * sizeof(float));           // unconditional context: zeros
  float *y2 = vdp_malloc(2 * out1 * sizeof(float), "y2"), *y1 = vdp_malloc(2 * out1 * sizeof(float), "y1");
  const float t = 0.7f;
  unet_forward(m, x, 2, F, h, w, t, ctx, ids, y2);
  unet_forward(m, x, 1, F, h, w, t, ctx, ids, y1);
  unet_forward(m, x + in1, 1, F, h, w, t, ctx + D, ids + 3, y1 + out1);
  char what[160];
  snprintf(what, sizeof what, "%s unet_forward F=%d %dx%d", be, F, h, w);
  int ok0 = same_bits(what, y2, y1, out1), ok1 = same_bits(what, y2 + out1, y1 + out1, out1);
  if (!memcmp(y2, y2 + out1, out1 * sizeof(float))) {  // else the check could not tell the halves apart
    printf("FAIL - batch_invariance %s: the unconditional and conditional outputs are equal\n", what);
    n_fail++;
  }
  printf("%s - batch_invariance %s: B=2 halves %s the B=1 passes (uncond %s, cond %s)\n", ok0 && ok1 ? "ok" : "FAIL", what,
         ok0 && ok1 ? "bit-identical to" : "differ from", ok0 ? "same" : "differs", ok1 ? "same" : "differs");
  n_fail += !(ok0 && ok1);
  free(x), free(ctx), free(y2), free(y1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: batch_invariance MODEL.vdpw [cpu|cuda]...\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  VdpFile f;
  char err[1024];
  if (vdpw_open(argv[1], &f, err, sizeof err)) {
    printf("FAIL - batch_invariance: %s\n", err);
    return 1;
  }
  for (int a = 2; a < (argc > 2 ? argc : 4); a++) {
    const char *name = argc > 2 ? argv[a] : a == 2 ? "cuda" : "cpu";
    const Backend *be = !strcmp(name, "cpu") ? &backend_cpu : backend_cuda();
    if (!be) {
      printf("FAIL - batch_invariance: no %s backend\n", name);
      n_fail++;
      continue;
    }
    Models *m = vdp_calloc(1, sizeof *m, "models");
    if (models_load(&f, be, m, WANT_ALL, err, sizeof err)) {
      printf("FAIL - batch_invariance: loading %s on %s: %s\n", argv[1], name, err);
      n_fail++;
      free(m);
      continue;
    }
    unet_case(m, name, 2, 4, 4);
    unet_case(m, name, 3, 3, 5);
    unet_case(m, name, 1, 12, 12);  // 144 pixels per image: more than one 128-pixel GEMM tile
    models_thread_release(m);
    models_free(m);
    free(m);
  }
  vdpw_close(&f);
  return n_fail ? 1 : 0;
}
