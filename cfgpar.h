// cfgpar.h — classifier-free guidance on two GPUs (--cfg-parallel).
//
// With guidance, every step runs the UNet on a batch of two: the unconditional and the conditional half.
// CFG-parallel gives each half its own GPU (two host threads of one process on GPUs 0 and 1, or one half
// per process with rank/world 2): both encode the video (deterministic: the same bytes on both), then at
// every step each runs the UNet on its half alone (batch 1), the two exchange their v-predictions over
// NCCL (one latent-sized tensor each way) and both apply the same guidance + Euler update, so their
// latents stay identical; half 0 decodes and writes. Because every kernel's result for a sample does not
// depend on the batch it shares (test/batch_invariance.c checks it), the output is byte-identical to the
// one-GPU run. One video's UNet step becomes one half-batch step plus the exchange.
//
// Faults: an error on either half (a failed callback, an NCCL error, a peer that exits or is killed) stops
// both with a message naming the half and the cause; every wait is bounded by timeout_s.
#ifndef VDP_CFGPAR_H
#define VDP_CFGPAR_H

#include <stddef.h>

// Exchanges this half's v-prediction for the other's: sends `bytes` at mine, receives as many into theirs
// (device memory of this half's GPU, on the stream the backend uses on this thread, so after the UNet and
// before the update), and waits for it. 0, or -1 with a message.
typedef struct CfgExchange CfgExchange;
int cfg_exchange(CfgExchange *x, const void *mine, void *theirs, size_t bytes, char *err, size_t errlen);

typedef struct {
  size_t latent_floats, cond_bytes;
  int n_steps;
  // On each half's thread, with its GPU current and the backend's stream set to the exchange stream: the
// half's context (its model copy), and its release.
  void *(*make_ctx)(void *user, int half, char *err, size_t errlen);
  void (*free_ctx)(void *ctx);
  int (*encode)(void *ctx, int video, void *cond, float *latent, char *err, size_t errlen);
  // One step of this half: the UNet on its half, cfg_exchange, guidance + update on latent in place.
  int (*step)(void *ctx, int video, int step, const void *cond, float *latent, int half, CfgExchange *x, char *err,
              size_t errlen);
  int (*finish)(void *ctx, int video, const void *cond, const float *latent, char *err, size_t errlen);  // half 0
  // Optional: the half's latent in its backend's memory (encode, steps and finish work on it in place);
  // NULL: a host buffer of latent_floats.
  float *(*latent_of)(void *ctx);
  void *user;
} CfgJob;

typedef struct {
  double timeout_s;           // bound on every wait for the other half
  int rank, world, device;    // world 0: both halves here (GPUs 0, 1); world 2: half `rank` on GPU `device`
  const char *nccl_id_file;   // world 2: where rank 0 writes the NCCL id
} CfgOptions;

int cfgpar_gpus_visible(void);  // CUDA devices (0 without CUDA)
// Runs n_videos videos. 0, or -1 with the first error in err. *stuck: a half did not stop (the caller
// should exit without freeing what `user` uses).
int cfgpar_run(const CfgJob *j, int n_videos, const CfgOptions *o, int *stuck, char *err, size_t errlen);

#endif
