// ring.h — timestep stages on a fixed ring (pipeline parallelism over denoising steps).
//
// The n denoising steps are split into S contiguous blocks, one per stage (sizes differ by at most
// one: the first n % S stages run one step more). Every stage holds the whole model. Stage 0 encodes
// a video (conditioning + initial latent), runs its block and hands the latent on; stage s runs
// its block and hands on; the last stage's result returns over the ring's closing edge to stage 0,
// which finishes (decodes, writes) it. Several videos are in flight at once: at "tick" t stage s
// works on video t - s, so K videos over S stages take K + S - 1 ticks instead of K·S.
//
// The ring knows nothing about SVD: it drives a RingDenoiser. The step callback always gets the
// global step index, so the result of a video cannot depend on S (as long as `step` itself is
// deterministic).
//
// Transports: RING_CPU (one thread per stage, in-process bounded channels; what CI tests) and
// RING_NCCL (compiled with VDP_CUDA: one GPU per stage, ncclSend/ncclRecv on a dedicated stream;
// one process driving all stages, or one stage per process with rank/world/nccl_id_file). Only
// the exchange/abort primitives differ; the schedule, the checks and the fault handling are shared.
//
// Faults: a failing callback, a stage that exits, a stage that stops responding or a transport error
// makes ring_run return -1 with a message naming the stage and the cause; every wait is bounded by
// the liveness timeout (no state change anywhere for timeout_s seconds), so it never hangs. A single
// step must therefore take less than timeout_s. In the multi-process NCCL mode only the local stage
// is seen, so timeout_s must also exceed the longest wait for a peer (about s × one stage's block for
// stage s while the pipeline fills).
//
// NCCL notes: the callbacks of stage s run with the stage's GPU current (make_stage_ctx can load its
// model copy there); with latent_alloc the latents are device memory sent GPU to GPU, the header and
// conditioning host buffers (pinned) staged through device buffers (without it, the latents too). Multi-GPU runs cannot be tested on one GPU (NCCL rejects two ranks
// on one device); S = 1 on one GPU sends to itself. CI runs them on emulated GPUs and an emulated NCCL
// (SIMT_DEVICES, test/simt/simt_nccl.cpp; test/t_simt_multi.sh, test/t_simt_ring.sh).
#ifndef VDP_RING_H
#define VDP_RING_H

#include <stddef.h>

#include "vdp.h"

typedef struct {
  size_t latent_floats;  // fp32 latent per video (what travels between all stages)
  size_t cond_bytes;     // conditioning per video, produced by encode; travels once along the ring
  int n_steps;           // global denoising steps, indices 0 .. n_steps-1

  // Called on each stage's own thread (before anything else of that stage) and at its exit.
  // The context is private to the stage (e.g. its model copy / device). May be NULL.
  void *(*make_stage_ctx)(void *user, int stage, char *err, size_t errlen);
  void (*free_stage_ctx)(void *stage_ctx);
  // Stage 0: fill cond [cond_bytes] and latent [latent_floats] of video `video`.
  int (*encode)(void *stage_ctx, int video, void *cond, float *latent, char *err, size_t errlen);
  // Any stage: one denoising step, global index `step`, in place on latent.
  int (*step)(void *stage_ctx, int video, int step, const void *cond, float *latent, char *err,
              size_t errlen);
  // Stage 0, after the closing edge: the final latent of video `video` (decode, write, ...).
  int (*finish)(void *stage_ctx, int video, const void *cond, const float *latent, char *err,
                size_t errlen);
  void *user;
  // Optional: the stage's latent buffers (two per stage, latent_floats each), allocated on the stage's
  // thread after make_stage_ctx and freed before free_stage_ctx; the latents then travel apart from the
  // messages. GPU stages (NCCL transport) give device memory: encode, step and finish work on it in place
  // and ncclSend / ncclRecv move it GPU to GPU, with no host staging (only the header and the conditioning
  // are staged); its device work must be complete when a stage's block ends (the step callback of the
  // block's last step synchronises). The CPU transport copies it as host memory. NULL: host latents
  // inside the messages.
  void *(*latent_alloc)(void *stage_ctx, size_t bytes);
  void (*latent_free)(void *stage_ctx, void *p);
} RingDenoiser;

enum { RING_CPU = 0, RING_NCCL = 1 };
// Fault injection (tests, `vdp sim --inject-fault`): at stage fault_stage, instead of running
// global step fault_step of video fault_video: ERROR fails with "injected fault", HANG stops
// responding (blocks until the ring is aborted), EXIT makes the stage's thread return silently.
enum { RING_FAULT_NONE = 0, RING_FAULT_ERROR, RING_FAULT_HANG, RING_FAULT_EXIT };

typedef struct {
  int transport;         // RING_CPU or RING_NCCL
  double timeout_s;      // liveness bound: a wait fails when nothing progressed for this long
  int verbose;           // progress lines on stderr
  // NCCL only. world = 0: this process runs all stages, stage s on GPU s. world > 0: this process
  // runs stage `rank` of `world` (= stages) on GPU `device` (-1: rank % visible GPUs); rank 0
  // writes the NCCL unique id to nccl_id_file (PATH.tmp + rename), the others wait for it.
  int rank, world, device;
  const char *nccl_id_file;
  int fault_kind, fault_stage, fault_video, fault_step;
} RingOptions;

typedef struct {
  double setup_s;         // stage contexts + transport set-up (slowest stage)
  double run_s;           // from the start barrier to the last video finished (stage 0's view)
  double throughput;      // videos / run_s (0 on ranks other than 0)
  double *latency_s;      // caller-provided [n_videos] or NULL: encode start -> finish end
  long handoffs;          // messages received by the stages of this process
  double handoff_mean_s;  // transfer time of one handoff, excluding time spent waiting for the peer
  double handoff_max_s;
  int stuck_threads;      // > 0: stage threads that did not stop after an abort were left running;
                          // the caller should exit the process without freeing what `user` uses
} RingStats;

void ring_options_default(RingOptions *o);  // CPU transport, 60 s timeout, no fault
// First global step of stage s's block (stage_first(S) = n_steps).
int ring_stage_first(int n_steps, int stages, int s);
// Runs n_videos videos through `stages` stages. Returns 0, or -1 with the first error in err.
// Requires 1 <= stages <= n_steps (every stage runs at least one step) and n_videos >= 1.
int ring_run(const RingDenoiser *d, int stages, int n_videos, const RingOptions *opt, RingStats *stats,
             char *err, size_t errlen);

// The NCCL unique id exchange of the multi-process mode (plain files, so CI can test it):
// write = PATH.tmp, fsync, rename (readers never see a partial file); read = poll for PATH until it
// holds n bytes or timeout_s passes. Return 0 or -1 with a message.
int ring_write_id_file(const char *path, const void *id, size_t n, char *err, size_t errlen);
int ring_read_id_file(const char *path, void *id, size_t n, double timeout_s, char *err, size_t errlen);

// Launchers: the rank, world size and local rank a multi-process launcher gives each process, read from
// the environment of torchrun (RANK, WORLD_SIZE, LOCAL_RANK), Slurm (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID), Open MPI (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK) or MPICH/PMI (PMI_RANK, PMI_SIZE,
// MPI_LOCALRANKID). Every source present must agree. Returns 1 (found: *le filled; local_rank -1 when the
// source has none), 0 (none, or a world of one process: run as without a launcher) or -1 (a usage error in
// err: sources that disagree, a rank without a size, a value that is not a number, rank >= world).
typedef struct {
  int rank, world, local_rank;
  char source[160];  // e.g. "Slurm (SLURM_PROCID=1 SLURM_NTASKS=2 SLURM_LOCALID=0)"
} RingLaunch;
int ring_launch_env(RingLaunch *le, char *err, size_t errlen);

#endif
