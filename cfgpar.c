// cfgpar.c — classifier-free guidance on two GPUs (see cfgpar.h): the two halves' threads or processes,
// their NCCL communicator and the per-step exchange of v-predictions.
#include "cfgpar.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "vdp.h"

#ifdef VDP_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels.h"

typedef struct Cfg Cfg;
struct CfgExchange {
  Cfg *c;
  int half, dev;
  ncclComm_t comm;
  cudaStream_t stream;  // the backend's stream on this half's thread: the UNet, the exchange, the update
};
struct Cfg {
  const CfgJob *j;
  CfgOptions o;
  int K;
  ncclUniqueId id;
  atomic_int aborted, finished[2];
  pthread_mutex_t mu;
  char err[1024];
  CfgExchange x[2];
};

static const char *half_name(int h) { return h ? "half 1 (conditional)" : "half 0 (unconditional)"; }
static void nap(void) {
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}
// The first error wins; it stops the other half at its next exchange.
static void cfg_fail(Cfg *c, int h, const char *msg) {
  pthread_mutex_lock(&c->mu);
  if (!c->err[0]) snprintf(c->err, sizeof c->err, "cfg-parallel %s: %s", half_name(h), msg);
  pthread_mutex_unlock(&c->mu);
  atomic_store(&c->aborted, 1);
}

// Polls the communicator (and the stream) until done, an error, the other half's failure or the timeout.
static int x_poll(CfgExchange *x, int with_stream, const char *what, char *err, size_t errlen) {
  const double deadline = vdp_now() + x->c->o.timeout_s;
  for (unsigned it = 0;; it++) {
    if (atomic_load(&x->c->aborted)) {
      snprintf(err, errlen, "stopped: the other half failed");
      return -2;
    }
    ncclResult_t as = ncclSuccess, qr = ncclCommGetAsyncError(x->comm, &as);
    if (qr != ncclSuccess) as = qr;
    if (as != ncclSuccess && as != ncclInProgress) {
      snprintf(err, errlen, "NCCL error while %s: %s (%s)", what, ncclGetErrorString(as), ncclGetLastError(x->comm));
      return -1;
    }
    if (as == ncclSuccess) {
      if (!with_stream) return 0;
      cudaError_t q = cudaStreamQuery(x->stream);
      if (q == cudaSuccess) return 0;
      if (q != cudaErrorNotReady) {
        snprintf(err, errlen, "CUDA error while %s: %s", what, cudaGetErrorString(q));
        return -1;
      }
    }
    if (it % 64 == 63 && vdp_now() > deadline) {
      snprintf(err, errlen, "timed out after %g s while %s (the other half stopped responding)", x->c->o.timeout_s, what);
      return -1;
    }
    nap();
  }
}

int cfg_exchange(CfgExchange *x, const void *mine, void *theirs, size_t bytes, char *err, size_t errlen) {
  const int peer = 1 - x->half;
  ncclResult_t nr = ncclGroupStart();  // both directions at once: neither half waits for the other's receive
  if (nr == ncclSuccess) nr = ncclSend(mine, bytes, ncclUint8, peer, x->comm, x->stream);
  if (nr == ncclSuccess) nr = ncclRecv(theirs, bytes, ncclUint8, peer, x->comm, x->stream);
  ncclResult_t ne = ncclGroupEnd();
  if (nr == ncclSuccess) nr = ne;
  if (nr != ncclSuccess && nr != ncclInProgress) {
    snprintf(err, errlen, "exchanging the v-prediction: %s (%s)", ncclGetErrorString(nr), ncclGetLastError(x->comm));
    return -1;
  }
  // Waiting here (a host sync per step) bounds every wait by the timeout and notices a failed peer.
  return x_poll(x, 1, "exchanging the v-predictions", err, errlen);
}

// One half: its GPU, its model copy, its end of the communicator, every video.
static void run_half(Cfg *c, int h) {
  const CfgJob *j = c->j;
  CfgExchange *x = &c->x[h];
  char e[1024];
  void *ctx = NULL;
  float *latent = NULL;
  void *cond = NULL;
  int ok = 0;
  x->c = c, x->half = h;
  x->dev = c->o.world ? (c->o.device >= 0 ? c->o.device : c->o.rank % cfgpar_gpus_visible()) : h;
  cudaError_t ce = cudaSetDevice(x->dev);
  if (ce != cudaSuccess) {
    snprintf(e, sizeof e, "cudaSetDevice(%d): %s", x->dev, cudaGetErrorString(ce));
    goto done;
  }
  if ((ce = cudaStreamCreate(&x->stream)) != cudaSuccess) {
    snprintf(e, sizeof e, "GPU %d: creating the stream: %s", x->dev, cudaGetErrorString(ce));
    goto done;
  }
  vdp_cuda_set_stream(x->stream);  // everything of this half in one stream order, the exchanges included
  if (!(ctx = j->make_ctx(j->user, h, e, sizeof e))) goto done;
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;  // polled: bounded by the timeout and stopped by the other half's failure
  ncclResult_t nr = ncclCommInitRankConfig(&x->comm, 2, c->id, h, &cfg);
  if (nr != ncclSuccess && nr != ncclInProgress) {
    snprintf(e, sizeof e, "ncclCommInitRankConfig (GPU %d): %s", x->dev, ncclGetErrorString(nr));
    goto done;
  }
  if (x_poll(x, 0, "joining the NCCL communicator", e, sizeof e)) goto done;
  if (c->o.world && h == 0 && c->o.nccl_id_file) unlink(c->o.nccl_id_file);  // both joined: no longer needed
  cond = malloc(j->cond_bytes ? j->cond_bytes : 1);
  latent = j->latent_of ? j->latent_of(ctx) : malloc(j->latent_floats * sizeof(float));
  if (!cond || !latent) {
    snprintf(e, sizeof e, "out of memory");
    goto done;
  }
  for (int v = 0; v < c->K; v++) {
    if (atomic_load(&c->aborted)) goto done;
    if (j->encode(ctx, v, cond, latent, e, sizeof e)) goto done;
    for (int i = 0; i < j->n_steps; i++)
      if (j->step(ctx, v, i, cond, latent, h, x, e, sizeof e)) goto done;
    if (h == 0 && j->finish(ctx, v, cond, latent, e, sizeof e)) goto done;
  }
  ok = 1;
done:
  if (!ok && !atomic_load(&c->aborted)) cfg_fail(c, h, e);
  if (x->comm) {
    ncclResult_t fr = ok ? ncclCommFinalize(x->comm) : ncclInternalError;
    int clean = (fr == ncclSuccess || fr == ncclInProgress) && x_poll(x, 0, "finalizing", e, sizeof e) == 0;
    if (clean) ncclCommDestroy(x->comm);
    else ncclCommAbort(x->comm);  // the peer's pending exchange fails at once
    x->comm = NULL;
  }
  free(cond);
  if (!j->latent_of) free(latent);
  if (ctx) j->free_ctx(ctx);
  vdp_cuda_thread_release();  // this thread's backend state (a no-op if free_ctx released it) uses x->stream
  if (x->stream) cudaStreamDestroy(x->stream);
  atomic_store(&c->finished[h], 1);
}

static void *half_thread(void *arg) {
  Cfg *c = (Cfg *)((void **)arg)[0];
  int h = (int)(size_t)((void **)arg)[1];
  run_half(c, h);
  return NULL;
}

int cfgpar_gpus_visible(void) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

int cfgpar_run(const CfgJob *j, int n_videos, const CfgOptions *o, int *stuck, char *err, size_t errlen) {
  Cfg *c = calloc(1, sizeof *c);
  *stuck = 0;
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  c->j = j, c->o = *o, c->K = n_videos;
  pthread_mutex_init(&c->mu, NULL);
  char e[512];
  ncclResult_t nr = ncclSuccess;
  if (!o->world || o->rank == 0) nr = ncclGetUniqueId(&c->id);
  if (nr != ncclSuccess) {
    snprintf(err, errlen, "ncclGetUniqueId: %s", ncclGetErrorString(nr));
    free(c);
    return -1;
  }
  if (o->world) {
    int rc = o->rank == 0 ? ring_write_id_file(o->nccl_id_file, &c->id, sizeof c->id, e, sizeof e)
                          : ring_read_id_file(o->nccl_id_file, &c->id, sizeof c->id, o->timeout_s, e, sizeof e);
    if (rc) {
      snprintf(err, errlen, "cfg-parallel %s: %s", half_name(o->rank), e);
      free(c);
      return -1;
    }
    run_half(c, o->rank);
    if (o->rank == 0) unlink(o->nccl_id_file);  // also when the other half never joined
  } else {
    pthread_t th[2];
    void *args[2][2] = {{c, (void *)0}, {c, (void *)1}};
    int started[2] = {0, 0};
    for (int h = 0; h < 2; h++) started[h] = pthread_create(&th[h], NULL, half_thread, args[h]) == 0;
    if (!started[0] || !started[1]) cfg_fail(c, started[0] ? 1 : 0, "cannot start its thread");
    // Once one half failed, the other gets timeout_s to notice (it does at its next exchange) and stop.
    double t_abort = 0;
    for (;;) {
      int f0 = !started[0] || atomic_load(&c->finished[0]), f1 = !started[1] || atomic_load(&c->finished[1]);
      if (f0 && f1) break;
      if (atomic_load(&c->aborted) && !t_abort) t_abort = vdp_now();
      if (t_abort && vdp_now() > t_abort + o->timeout_s + 1) {
        *stuck = 1;
        break;
      }
      struct timespec ts = {0, 5000000};
      nanosleep(&ts, NULL);
    }
    for (int h = 0; h < 2; h++)
      if (started[h]) {
        if (atomic_load(&c->finished[h])) pthread_join(th[h], NULL);
        else pthread_detach(th[h]);
      }
  }
  int rc = c->err[0] ? -1 : 0;
  if (rc) snprintf(err, errlen, "%s", c->err);
  if (!*stuck) free(c);  // a stuck half still uses it
  return rc;
}

#else  // no CUDA: nothing to run on
int cfg_exchange(CfgExchange *x, const void *mine, void *theirs, size_t bytes, char *err, size_t errlen) {
  snprintf(err, errlen, "cfg-parallel needs CUDA");
  return -1;
}
int cfgpar_gpus_visible(void) { return 0; }
int cfgpar_run(const CfgJob *j, int n_videos, const CfgOptions *o, int *stuck, char *err, size_t errlen) {
  *stuck = 0;
  snprintf(err, errlen, "--cfg-parallel: this vdp was built without CUDA/NCCL");
  return -1;
}
#endif
