// ring.c — timestep stages on a fixed ring (see ring.h): the schedule and fault handling shared by
// all transports, the CPU transport (threads + bounded channels), the NCCL transport (VDP_CUDA), and
// `vdp sim`, the weight-free check of the whole mechanism.
//
// Schedule. Stage s owns global steps [first[s], first[s+1]). Time is cut into ticks; at tick t
// stage s works on video c = t - s (if 0 <= c < K) and then does one exchange: it sends video c to
// stage s+1 (mod S) and receives video t - p from its predecessor p = s-1 (mod S). Every message sent
// at tick t is received at tick t, so each tick is a "ring shift" in which every edge carries at most
// one message; with the send and the receive of a stage fused (CPU: bounded channel; NCCL: one
// ncclGroupStart/End) this cannot deadlock even when sends are rendezvous. Stage 0 encodes video t
// before its block and, after the exchange, finishes the video that came back over the closing edge.
// K videos take K + S - 1 ticks, hence the throughput gain S·K/(K+S-1) over one stage.
//
// Messages: a 64-byte header (video, next step, sender, sizes, send time), the fp32 latent, then the
// conditioning (forward edges only: stage 0 keeps the conditioning of its in-flight videos, so the
// closing edge carries header + latent). When the denoiser allocates the latents (latent_alloc, NCCL
// transport: GPU stages), they stay in its memory and travel as a second message of their own.
//
// Faults: one error (the first) is kept; it sets the shared abort flag and wakes every waiter. Every
// wait is bounded by a liveness deadline: last_progress + timeout, where last_progress is the last
// state change of any stage of this process. When it passes, the stage that is busy (in a step,
// encode, finish or set-up) for the longest time is blamed; if none is (a remote peer), the waiter
// names the peer it waits for. ring_run's own thread is a watchdog for the case where no stage waits.
#include "ring.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef VDP_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#endif

#define RING_MAGIC 0x52504456u  // "VDPR"
#define RING_HDR 64             // header bytes; keeps the latent and the conditioning 64-byte aligned
#define CHAN_CAP 2              // CPU channel slots: one more than the schedule needs, for jitter
#define RING_MAX_STAGES 1024

typedef struct {
  uint32_t magic;
  int32_t video;          // video id
  int32_t step;           // next global step to run (n_steps: all done)
  int32_t from_stage;     // sender
  uint64_t latent_floats, cond_bytes;
  double t_send;          // sender's monotonic clock when the transfer began (handoff overhead)
} MsgHeader;
_Static_assert(sizeof(MsgHeader) <= RING_HDR, "message header must fit in RING_HDR bytes");

// What a stage is doing; the busy ones (SETUP, ENCODE, STEP, FINISH) can be blamed for a timeout.
enum { ST_INIT, ST_SETUP, ST_CONNECT, ST_READY, ST_ENCODE, ST_STEP, ST_FINISH, ST_XCHG, ST_DONE, ST_EXITED };
// Results of waits and stage bodies. RW_ERROR: failed, message in err. The others carry no message.
enum { RW_OK = 0, RW_ERROR = -1, RW_ABORTED = -2, RW_TIMEOUT_SEND = -3, RW_TIMEOUT_RECV = -4, RW_TIMEOUT = -5,
       RW_EXITED = 1 };

typedef struct {
  int state, video, step;
  double since;
} StageState;

// CPU channel from stage s to stage s+1: single producer, single consumer; the counters only grow.
typedef struct {
  uint64_t written, read;
  size_t bytes[CHAN_CAP];
  uint8_t *slot[CHAN_CAP];
} Chan;

typedef struct Ring Ring;

// What differs between transports. Every function except setup/destroy runs on the stage's thread.
typedef struct {
  const char *name;
  int (*setup)(Ring *r, char *err, size_t errlen);            // ring_run's thread, before the stages
  int (*open)(Ring *r, int s, char *err, size_t errlen);       // RW_OK, RW_ERROR or a wait result
  void (*close)(Ring *r, int s, int failed);                   // failed: abort instead of shutting down
  void *(*alloc)(Ring *r, int s, size_t bytes);                // message buffers (NCCL: pinned)
  void (*release)(Ring *r, int s, void *p);
  // Sends sbuf (NULL: nothing) to stage s+1 and receives rbuf (NULL: nothing) from stage s-1, mod S,
  // as one operation. *t_recv = when the receive could begin (handoff overhead). With lat_apart, the
  // latents slat / rlat (lat_bytes each, the denoiser's memory) travel with the messages.
  int (*exchange)(Ring *r, int s, const void *sbuf, size_t sbytes, const void *slat, void *rbuf, size_t rbytes,
                  void *rlat, double *t_recv, char *err, size_t errlen);
  void (*destroy)(Ring *r);
} Transport;

typedef struct {
  Ring *r;
  int s;
  pthread_t th;
  int started;
} StageArg;

struct Ring {
  RingDenoiser d;
  RingOptions opt;
  int S, K, first_local, n_local;
  int *first;                      // [S+1] first global step of each stage's block
  size_t fwd_bytes, close_bytes;   // message sizes: with / without the conditioning
  size_t cond_off;                 // offset of the conditioning in a forward message
  size_t lat_bytes;                // the latent's bytes
  int lat_apart;                   // the latents live apart from the messages, in the denoiser's memory
                                   // (latent_alloc; NCCL: device memory, sent GPU to GPU)
  const Transport *tr;
  void *priv;                      // transport state
  Chan *chan;                      // CPU transport: [S], chan[s] carries s -> (s+1) % S
  StageArg *args;                  // [S]

  pthread_mutex_t mu;              // guards everything below
  pthread_cond_t cv;               // any change a waiter may care about (CLOCK_MONOTONIC)
  atomic_int aborted;              // also read without the lock, between steps and while polling
  char err[1024];                  // the first error
  double abort_time, last_progress;
  StageState *st;                  // [S]
  int ready, exited;               // local stages past set-up / whose thread returned
  int *thread_exited;              // [S]
  double t_start, t_end, setup_max;
  long handoffs;
  double handoff_sum, handoff_max;
  double *latency;                 // [K]
  atomic_int refs;                 // ring_run + each running stage thread; the last one frees
};

// ---------------------------------------------------------------------------------------------------
// Shared state helpers
// ---------------------------------------------------------------------------------------------------
static void lock(Ring *r) { pthread_mutex_lock(&r->mu); }
static void unlock(Ring *r) { pthread_mutex_unlock(&r->mu); }

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static struct timespec to_timespec(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  return ts;
}

static void timedwait_until(Ring *r, double t) {
  struct timespec ts = to_timespec(t);
  pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

// r->mu held. Keeps the first error only; wakes every waiter.
static void fail_locked(Ring *r, const char *msg) {
  if (!atomic_load(&r->aborted)) {
    snprintf(r->err, sizeof r->err, "%s", msg);
    r->abort_time = vdp_now();
    atomic_store(&r->aborted, 1);
  }
  pthread_cond_broadcast(&r->cv);
}

static void set_state(Ring *r, int s, int state, int video, int step) {
  double now = vdp_now();
  lock(r);
  r->st[s] = (StageState){state, video, step, now};
  r->last_progress = now;
  unlock(r);
}

static int is_busy(int state) {
  return state == ST_SETUP || state == ST_ENCODE || state == ST_STEP || state == ST_FINISH;
}

static void describe(const StageState *st, char *buf, size_t n) {
  switch (st->state) {
    case ST_SETUP: snprintf(buf, n, "while setting up"); break;
    case ST_ENCODE: snprintf(buf, n, "while encoding video %d", st->video); break;
    case ST_STEP: snprintf(buf, n, "in step %d of video %d", st->step, st->video); break;
    case ST_FINISH: snprintf(buf, n, "while finishing video %d", st->video); break;
    case ST_XCHG: snprintf(buf, n, "while exchanging video %d", st->video); break;
    default: snprintf(buf, n, "before finishing its work"); break;
  }
}

// r->mu held: the liveness deadline passed. Blames the local stage busy for longest; otherwise the
// detecting stage (detector >= 0) reports what it was waiting for.
static void blame_timeout_locked(Ring *r, int detector, const char *waiting) {
  if (atomic_load(&r->aborted)) return;
  double now = vdp_now();
  int culprit = -1;
  for (int s = r->first_local; s < r->first_local + r->n_local; s++)
    if (is_busy(r->st[s].state) && (culprit < 0 || r->st[s].since < r->st[culprit].since)) culprit = s;
  char msg[1024], what[128];
  if (culprit >= 0) {
    describe(&r->st[culprit], what, sizeof what);
    snprintf(msg, sizeof msg, "stage %d stopped responding: no progress for %.1f s %s (timeout %g s)", culprit,
             now - r->st[culprit].since, what, r->opt.timeout_s);
  } else if (detector >= 0) {
    snprintf(msg, sizeof msg, "stage %d: timed out after %.1f s %s (timeout %g s)", detector,
             now - r->last_progress, waiting ? waiting : "waiting", r->opt.timeout_s);
  } else {
    snprintf(msg, sizeof msg, "ring stalled: no stage made progress for %.1f s (timeout %g s)",
             now - r->last_progress, r->opt.timeout_s);
  }
  fail_locked(r, msg);
}

// r->mu held. Waits for a broadcast or the liveness deadline. RW_OK: re-check the condition.
static int wait_locked(Ring *r) {
  if (atomic_load(&r->aborted)) return RW_ABORTED;
  double deadline = r->last_progress + r->opt.timeout_s;
  if (vdp_now() >= deadline) return RW_TIMEOUT;
  timedwait_until(r, deadline);
  return atomic_load(&r->aborted) ? RW_ABORTED : RW_OK;
}

// ---------------------------------------------------------------------------------------------------
// The CPU transport: bounded channels under the ring's mutex; copies happen outside the lock (one
// producer and one consumer per channel, published by the counters).
// ---------------------------------------------------------------------------------------------------
static int cpu_setup(Ring *r, char *err, size_t errlen) {
  r->chan = calloc((size_t)r->S, sizeof(Chan));
  if (!r->chan) { snprintf(err, errlen, "ring: out of memory for %d channels", r->S); return -1; }
  for (int s = 0; s < r->S; s++) {
    size_t bytes = ((s + 1) % r->S == 0 ? r->close_bytes : r->fwd_bytes) + (r->lat_apart ? r->lat_bytes : 0);
    for (int i = 0; i < CHAN_CAP; i++) {
      r->chan[s].slot[i] = malloc(bytes);
      if (!r->chan[s].slot[i]) {
        snprintf(err, errlen, "ring: out of memory for a %zu-byte channel slot", bytes);
        return -1;
      }
    }
  }
  return 0;
}
static int cpu_open(Ring *r, int s, char *err, size_t errlen) { return RW_OK; }
static void cpu_close(Ring *r, int s, int failed) {}
static void *cpu_alloc(Ring *r, int s, size_t bytes) { return malloc(bytes ? bytes : 1); }
static void cpu_release(Ring *r, int s, void *p) { free(p); }

static int cpu_exchange(Ring *r, int s, const void *sbuf, size_t sbytes, const void *slat, void *rbuf, size_t rbytes,
                        void *rlat, double *t_recv, char *err, size_t errlen) {
  // with lat_apart a slot holds the message, then the latent (both host memory here)
  if (sbuf) {
    Chan *ch = &r->chan[s];
    lock(r);
    while (ch->written - ch->read >= CHAN_CAP) {
      int rc = wait_locked(r);
      if (rc) { unlock(r); return rc == RW_TIMEOUT ? RW_TIMEOUT_SEND : rc; }
    }
    size_t i = (size_t)(ch->written % CHAN_CAP);
    unlock(r);
    double t0 = vdp_now();
    memcpy(ch->slot[i], sbuf, sbytes);
    if (slat) memcpy(ch->slot[i] + sbytes, slat, r->lat_bytes);
    ((MsgHeader *)ch->slot[i])->t_send = t0;  // the transfer, not the wait for a free slot
    ch->bytes[i] = sbytes + (slat ? r->lat_bytes : 0);
    lock(r);
    ch->written++;
    r->last_progress = vdp_now();
    pthread_cond_broadcast(&r->cv);
    unlock(r);
  }
  if (rbuf) {
    int p = (s + r->S - 1) % r->S;
    Chan *ch = &r->chan[p];
    *t_recv = vdp_now();
    lock(r);
    while (ch->written == ch->read) {
      int rc = wait_locked(r);
      if (rc) { unlock(r); return rc == RW_TIMEOUT ? RW_TIMEOUT_RECV : rc; }
    }
    size_t i = (size_t)(ch->read % CHAN_CAP), got = ch->bytes[i], want = rbytes + (rlat ? r->lat_bytes : 0);
    unlock(r);
    if (got != want) {
      snprintf(err, errlen, "stage %d: received a %zu-byte message from stage %d, expected %zu bytes", s, got, p,
               want);
      return RW_ERROR;
    }
    memcpy(rbuf, ch->slot[i], rbytes);
    if (rlat) memcpy(rlat, ch->slot[i] + rbytes, r->lat_bytes);
    lock(r);
    ch->read++;
    r->last_progress = vdp_now();
    pthread_cond_broadcast(&r->cv);
    unlock(r);
  }
  return RW_OK;
}

static void cpu_destroy(Ring *r) {
  if (!r->chan) return;
  for (int s = 0; s < r->S; s++)
    for (int i = 0; i < CHAN_CAP; i++) free(r->chan[s].slot[i]);
  free(r->chan);
  r->chan = NULL;
}

static const Transport cpu_transport = {"cpu", cpu_setup, cpu_open, cpu_close, cpu_alloc,
                                        cpu_release, cpu_exchange, cpu_destroy};

// ---------------------------------------------------------------------------------------------------
// NCCL unique id file (multi-process mode). Plain file I/O, compiled everywhere so CI tests it.
// ---------------------------------------------------------------------------------------------------
int ring_write_id_file(const char *path, const void *id, size_t n, char *err, size_t errlen) {
  // The output rule of util.c (an exclusive temporary renamed over the name): readers see the whole id or
  // no file at all. An earlier run's id file is replaced; a device, FIFO, directory or link is not.
  char e[1024];
  if (out_write_file(path, id, n, 1, e, sizeof e)) {
    snprintf(err, errlen, "cannot write the NCCL id file: %s", e);
    return -1;
  }
  return 0;
}

int ring_read_id_file(const char *path, void *id, size_t n, double timeout_s, char *err, size_t errlen) {
  double deadline = vdp_now() + timeout_s;
  for (;;) {
    struct stat st;
    if (lstat(path, &st) == 0) {  // there: it must be a regular file (a FIFO would block a plain open)
      uint64_t size;
      int fd = open_regular(path, &size, err, errlen);
      if (fd < 0) return -1;
      int ok = size == n && pread_full(fd, id, n, 0) == 0;
      close(fd);
      if (ok) return 0;
      snprintf(err, errlen, "NCCL id file %s holds %llu bytes, expected %zu", path, (unsigned long long)size, n);
      return -1;  // rename makes a partial file impossible: this is someone else's file
    }
    if (vdp_now() >= deadline) {
      snprintf(err, errlen, "timed out after %g s waiting for the NCCL id file %s (written by rank 0)", timeout_s,
               path);
      return -1;
    }
    sleep_s(0.02);
  }
}

// ---------------------------------------------------------------------------------------------------
// The NCCL transport: one GPU per stage, non-blocking communicators, a dedicated stream for the
// exchanges, host staging through pinned buffers; every wait polls against the liveness deadline
// and the abort flag, and a failed stage aborts its communicator.
// ---------------------------------------------------------------------------------------------------
#ifdef VDP_CUDA
typedef struct {
  int dev;
  ncclComm_t comm;
  cudaStream_t stream;
  void *dsend, *drecv;  // device staging of the messages, fwd_bytes each (with lat_apart: header and
                        // conditioning only; the latents are device memory already)
} NcclStage;

typedef struct {
  ncclUniqueId id;
  int ndev;
  NcclStage *st;  // [S]
} NcclPriv;

// For polling transports: past the liveness deadline?
static int past_deadline(Ring *r) {
  lock(r);
  double deadline = r->last_progress + r->opt.timeout_s;
  unlock(r);
  return vdp_now() >= deadline;
}

static int nccl_setup(Ring *r, char *err, size_t errlen) {
  NcclPriv *pv = calloc(1, sizeof *pv);
  if (pv) pv->st = calloc((size_t)r->S, sizeof(NcclStage));
  r->priv = pv;
  if (!pv || !pv->st) { snprintf(err, errlen, "ring: out of memory"); return -1; }
  cudaError_t ce = cudaGetDeviceCount(&pv->ndev);
  if (ce != cudaSuccess || pv->ndev < 1) {
    snprintf(err, errlen, "NCCL transport: no CUDA device (%s)", ce != cudaSuccess ? cudaGetErrorString(ce) : "0 found");
    return -1;
  }
  if (r->opt.world == 0 && pv->ndev < r->S) {
    snprintf(err, errlen,
             "NCCL transport: %d stages need %d GPUs, %d visible (one stage per GPU: NCCL rejects two ranks "
             "on one GPU)", r->S, r->S, pv->ndev);
    return -1;
  }
  ncclResult_t nr = ncclSuccess;
  if (r->opt.world == 0 || r->opt.rank == 0) nr = ncclGetUniqueId(&pv->id);
  if (nr != ncclSuccess) { snprintf(err, errlen, "ncclGetUniqueId: %s", ncclGetErrorString(nr)); return -1; }
  if (r->opt.world > 0) {
    char e[512];
    int rc = r->opt.rank == 0
                 ? ring_write_id_file(r->opt.nccl_id_file, &pv->id, sizeof pv->id, e, sizeof e)
                 : ring_read_id_file(r->opt.nccl_id_file, &pv->id, sizeof pv->id, r->opt.timeout_s, e, sizeof e);
    if (rc) { snprintf(err, errlen, "stage %d: %s", r->opt.rank, e); return -1; }
  }
  return 0;
}

// Polls the communicator (and the stream when with_stream) until done, an error, the abort flag or
// the liveness deadline.
static int nccl_poll(Ring *r, int s, NcclStage *ns, int with_stream, const char *what, char *err, size_t errlen) {
  for (unsigned it = 0;; it++) {
    if (atomic_load(&r->aborted)) return RW_ABORTED;
    ncclResult_t as = ncclSuccess, qr = ncclCommGetAsyncError(ns->comm, &as);
    if (qr != ncclSuccess) as = qr;
    if (as != ncclSuccess && as != ncclInProgress) {
      snprintf(err, errlen, "stage %d: NCCL error while %s: %s (%s)", s, what, ncclGetErrorString(as),
               ncclGetLastError(ns->comm));
      return RW_ERROR;
    }
    if (as == ncclSuccess) {
      if (!with_stream) return RW_OK;
      cudaError_t q = cudaStreamQuery(ns->stream);
      if (q == cudaSuccess) return RW_OK;
      if (q != cudaErrorNotReady) {
        snprintf(err, errlen, "stage %d: CUDA error while %s: %s", s, what, cudaGetErrorString(q));
        return RW_ERROR;
      }
    }
    if (it % 64 == 63 && past_deadline(r)) return RW_TIMEOUT;
    sleep_s(20e-6);
  }
}

#define CU_TRY(call, what)                                                                             \
  do {                                                                                                 \
    cudaError_t e_ = (call);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      snprintf(err, errlen, "stage %d: %s: %s", s, what, cudaGetErrorString(e_));                      \
      return RW_ERROR;                                                                                  \
    }                                                                                                  \
  } while (0)

static int nccl_open(Ring *r, int s, char *err, size_t errlen) {
  NcclPriv *pv = r->priv;
  NcclStage *ns = &pv->st[s];
  ns->dev = r->opt.world == 0 ? s : (r->opt.device >= 0 ? r->opt.device : r->opt.rank % pv->ndev);
  CU_TRY(cudaSetDevice(ns->dev), "cudaSetDevice");
  CU_TRY(cudaStreamCreateWithFlags(&ns->stream, cudaStreamNonBlocking), "creating the communication stream");
  CU_TRY(cudaMalloc(&ns->dsend, r->fwd_bytes), "allocating the send buffer");
  CU_TRY(cudaMalloc(&ns->drecv, r->fwd_bytes), "allocating the receive buffer");
  // ncclCommInitAll cannot take a config, so each stage's thread joins with ncclCommInitRankConfig
  // (what InitAll does inside) to get a non-blocking communicator we can poll and abort.
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclResult_t nr = ncclCommInitRankConfig(&ns->comm, r->S, pv->id, s, &cfg);
  if (nr != ncclSuccess && nr != ncclInProgress) {
    snprintf(err, errlen, "stage %d: ncclCommInitRankConfig (GPU %d): %s", s, ns->dev, ncclGetErrorString(nr));
    if (ns->comm) { ncclCommAbort(ns->comm); ns->comm = NULL; }
    return RW_ERROR;
  }
  set_state(r, s, ST_CONNECT, -1, -1);  // waiting for the peers, not busy
  int rc = nccl_poll(r, s, ns, 0, "joining the NCCL communicator", err, errlen);
  // every rank has read the id once all joined: rank 0 removes the file (a later run cannot read a stale one)
  if (rc == RW_OK && r->opt.world > 0 && r->opt.rank == 0) unlink(r->opt.nccl_id_file);
  return rc;
}

static int nccl_exchange(Ring *r, int s, const void *sbuf, size_t sbytes, const void *slat, void *rbuf, size_t rbytes,
                         void *rlat, double *t_recv, char *err, size_t errlen) {
  NcclStage *ns = &((NcclPriv *)r->priv)->st[s];
  const int to = (s + 1) % r->S, from = (s + r->S - 1) % r->S;
  if (sbuf) CU_TRY(cudaMemcpyAsync(ns->dsend, sbuf, sbytes, cudaMemcpyHostToDevice, ns->stream), "staging a send");
  *t_recv = vdp_now();
  // The sends and the receives in one group: they progress together, so the ring cannot deadlock. With
  // lat_apart the latent is a second message from device memory, matched in order by the peer's second
  // receive (NCCL matches the point-to-point operations between two ranks in their issue order); the
  // step callbacks finished their device work on it before this (the last step of a block synchronises).
  ncclResult_t nr = ncclGroupStart();
  if (nr == ncclSuccess && sbuf) nr = ncclSend(ns->dsend, sbytes, ncclUint8, to, ns->comm, ns->stream);
  if (nr == ncclSuccess && sbuf && slat) nr = ncclSend(slat, r->lat_bytes, ncclUint8, to, ns->comm, ns->stream);
  if (nr == ncclSuccess && rbuf) nr = ncclRecv(ns->drecv, rbytes, ncclUint8, from, ns->comm, ns->stream);
  if (nr == ncclSuccess && rbuf && rlat) nr = ncclRecv(rlat, r->lat_bytes, ncclUint8, from, ns->comm, ns->stream);
  ncclResult_t ne = ncclGroupEnd();
  if (nr == ncclSuccess) nr = ne;
  if (nr != ncclSuccess && nr != ncclInProgress) {
    snprintf(err, errlen, "stage %d: ncclSend/ncclRecv: %s (%s)", s, ncclGetErrorString(nr), ncclGetLastError(ns->comm));
    return RW_ERROR;
  }
  int rc = nccl_poll(r, s, ns, 0, "enqueueing the exchange", err, errlen);  // non-blocking: enqueue first
  if (rc) return rc;
  if (rbuf) CU_TRY(cudaMemcpyAsync(rbuf, ns->drecv, rbytes, cudaMemcpyDeviceToHost, ns->stream), "copying a receive");
  // the stream done: the received latent is complete before a step (on the compute stream) reads it
  return nccl_poll(r, s, ns, 1, "exchanging", err, errlen);
}

static void *nccl_alloc(Ring *r, int s, size_t bytes) {
  void *p = NULL;
  return cudaMallocHost(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}
static void nccl_release(Ring *r, int s, void *p) { if (p) cudaFreeHost(p); }

static void nccl_close(Ring *r, int s, int failed) {
  NcclStage *ns = &((NcclPriv *)r->priv)->st[s];
  cudaSetDevice(ns->dev);
  if (ns->comm) {
    int clean = 0;
    if (!failed) {  // flush, then destroy
      ncclResult_t fr = ncclCommFinalize(ns->comm);
      char e[256];
      clean = (fr == ncclSuccess || fr == ncclInProgress) && nccl_poll(r, s, ns, 0, "finalizing", e, sizeof e) == RW_OK;
    }
    if (clean) ncclCommDestroy(ns->comm);
    else ncclCommAbort(ns->comm);  // also stops kernels still waiting for a dead peer
    ns->comm = NULL;
  }
  if (ns->stream) cudaStreamDestroy(ns->stream);
  cudaFree(ns->dsend);
  cudaFree(ns->drecv);
  ns->stream = NULL;
  ns->dsend = ns->drecv = NULL;
}

static void nccl_destroy(Ring *r) {
  NcclPriv *pv = r->priv;
  if (r->opt.world > 0 && r->opt.rank == 0 && r->opt.nccl_id_file) unlink(r->opt.nccl_id_file);  // failed runs too
  if (pv) free(pv->st);
  free(pv);
  r->priv = NULL;
}

static const Transport nccl_transport = {"nccl", nccl_setup, nccl_open, nccl_close, nccl_alloc,
                                         nccl_release, nccl_exchange, nccl_destroy};
#endif  // VDP_CUDA

// ---------------------------------------------------------------------------------------------------
// The stages
// ---------------------------------------------------------------------------------------------------
int ring_stage_first(int n_steps, int stages, int s) {
  int q = n_steps / stages, rem = n_steps % stages;
  return s * q + (s < rem ? s : rem);  // the first n % S blocks are one step longer
}

void ring_options_default(RingOptions *o) {
  memset(o, 0, sizeof *o);
  o->transport = RING_CPU;
  o->timeout_s = 60;
  o->device = -1;
  o->fault_stage = o->fault_video = o->fault_step = -1;
}

typedef struct {
  void *ctx;
  int own_ctx, opened;
  uint8_t *a, *b;    // message buffers (see stage_body)
  float *la, *lb;    // their latents: inside them (la = a + RING_HDR), or apart (latent_alloc)
  uint8_t *table;    // stage 0: conditioning of the in-flight videos, [S][cond_bytes]
  double *t_begin;   // stage 0: encode start of each video, [K]
} StageRes;

// Turns a failed wait into the ring's error (timeouts are blamed here) and a stage result.
static int wait_failed(Ring *r, int s, int rc, const char *waiting) {
  if (rc == RW_TIMEOUT || rc == RW_TIMEOUT_SEND || rc == RW_TIMEOUT_RECV) {
    lock(r);
    blame_timeout_locked(r, s, waiting);
    unlock(r);
    return RW_ABORTED;
  }
  return rc;
}

static int stage_body(Ring *r, int s, StageRes *res, char *err, size_t errlen) {
  const RingDenoiser *d = &r->d;
  const int S = r->S, K = r->K, n = d->n_steps;
  const int next = (s + 1) % S, prev = (s + S - 1) % S;
  const size_t out_bytes = next == 0 ? r->close_bytes : r->fwd_bytes;
  const size_t in_bytes = s == 0 ? r->close_bytes : r->fwd_bytes;
  char cerr[512] = "", what[160];
  double t0 = vdp_now();

  set_state(r, s, ST_SETUP, -1, -1);
  int rc = r->tr->open(r, s, err, errlen);
  res->opened = 1;  // close even a half-open transport
  if (rc) return wait_failed(r, s, rc, "waiting for the other stages to join the communicator");
  set_state(r, s, ST_SETUP, -1, -1);
  if (d->make_stage_ctx) {
    res->ctx = d->make_stage_ctx(d->user, s, cerr, sizeof cerr);
    if (!res->ctx) {
      snprintf(err, errlen, "stage %d: set-up failed: %s", s, cerr[0] ? cerr : "make_stage_ctx returned NULL");
      return RW_ERROR;
    }
    res->own_ctx = 1;
  } else {
    res->ctx = d->user;
  }
  // Stage 0: a = the outgoing message it encodes and steps, b = the closing-edge message.
  // Stage s > 0: a = the video being stepped, b = the one being received; swapped every tick.
  res->a = r->tr->alloc(r, s, r->fwd_bytes);
  res->b = r->tr->alloc(r, s, in_bytes);
  if (r->lat_apart) {
    res->la = d->latent_alloc(res->ctx, r->lat_bytes);
    res->lb = d->latent_alloc(res->ctx, r->lat_bytes);
    if (!res->la || !res->lb) {
      snprintf(err, errlen, "stage %d: allocating the latents (%zu bytes each) failed", s, r->lat_bytes);
      return RW_ERROR;
    }
  } else {
    if (res->a) res->la = (float *)(res->a + RING_HDR);
    if (res->b) res->lb = (float *)(res->b + RING_HDR);
  }
  if (s == 0) {
    res->table = malloc((size_t)S * d->cond_bytes + 1);
    res->t_begin = calloc((size_t)K, sizeof(double));
  }
  if (!res->a || !res->b || (s == 0 && (!res->table || !res->t_begin))) {
    snprintf(err, errlen, "stage %d: out of memory for message buffers (%zu bytes each)", s, r->fwd_bytes);
    return RW_ERROR;
  }
  memset(res->a, 0, RING_HDR);

  // Start barrier: the clock for throughput starts when every local stage is ready.
  lock(r);
  r->st[s] = (StageState){ST_READY, -1, -1, vdp_now()};
  r->last_progress = r->st[s].since;
  if (r->st[s].since - t0 > r->setup_max) r->setup_max = r->st[s].since - t0;
  if (++r->ready == r->n_local) {
    r->t_start = vdp_now();
    pthread_cond_broadcast(&r->cv);
  }
  while (r->ready < r->n_local) {
    rc = wait_locked(r);
    if (rc == RW_TIMEOUT) blame_timeout_locked(r, s, "waiting for the other stages to set up");
    if (rc) { unlock(r); return RW_ABORTED; }
  }
  unlock(r);

  uint8_t *cur = res->a, *other = res->b;
  float *cur_lat = res->la, *other_lat = res->lb;
  for (int t = 0; t <= K + S - 2; t++) {
    const int c = t - s, rv = t - prev;  // the video this stage steps / receives at tick t
    const int have_c = c >= 0 && c < K, have_r = rv >= 0 && rv < K;
    if (have_c) {
      float *lat = cur_lat;
      const void *cond = cur + r->cond_off;
      double tb = vdp_now();
      if (s == 0) {
        uint8_t *cslot = res->table + (size_t)(c % S) * d->cond_bytes;  // held video c - S: finished
        res->t_begin[c] = tb;
        set_state(r, 0, ST_ENCODE, c, -1);
        if (d->encode(res->ctx, c, cslot, lat, cerr, sizeof cerr)) {
          snprintf(err, errlen, "stage 0: encoding video %d failed: %s", c, cerr);
          return RW_ERROR;
        }
        if (next != 0) memcpy(cur + r->cond_off, cslot, d->cond_bytes);
        cond = cslot;
      }
      for (int k = r->first[s]; k < r->first[s + 1]; k++) {
        if (atomic_load(&r->aborted)) return RW_ABORTED;
        set_state(r, s, ST_STEP, c, k);
        if (s == r->opt.fault_stage && c == r->opt.fault_video && k == r->opt.fault_step) {
          if (r->opt.fault_kind == RING_FAULT_ERROR) {
            snprintf(err, errlen, "stage %d: step %d of video %d failed: injected fault", s, k, c);
            return RW_ERROR;
          }
          if (r->opt.fault_kind == RING_FAULT_EXIT) return RW_EXITED;
          if (r->opt.fault_kind == RING_FAULT_HANG) {  // stop responding until the ring gives up
            lock(r);
            while (!atomic_load(&r->aborted)) timedwait_until(r, vdp_now() + 1.0);
            unlock(r);
            return RW_ABORTED;
          }
        }
        if (d->step(res->ctx, c, k, cond, lat, cerr, sizeof cerr)) {
          snprintf(err, errlen, "stage %d: step %d of video %d failed: %s", s, k, c, cerr);
          return RW_ERROR;
        }
      }
      if (r->opt.verbose)
        fprintf(stderr, "ring: stage %d: video %d steps %d..%d in %.3f s\n", s, c, r->first[s], r->first[s + 1] - 1,
                vdp_now() - tb);
      MsgHeader h = {RING_MAGIC, c, r->first[s + 1], s, d->latent_floats, d->cond_bytes, vdp_now()};
      memcpy(cur, &h, sizeof h);
    }
    if (!have_c && !have_r) continue;

    set_state(r, s, ST_XCHG, have_r ? rv : c, -1);
    double t_recv = vdp_now();
    rc = r->tr->exchange(r, s, have_c ? cur : NULL, out_bytes, r->lat_apart && have_c ? cur_lat : NULL,
                         have_r ? other : NULL, in_bytes, r->lat_apart && have_r ? other_lat : NULL, &t_recv, err, errlen);
    if (rc) {
      if (rc == RW_TIMEOUT_SEND) snprintf(what, sizeof what, "waiting to send video %d to stage %d", c, next);
      else if (rc == RW_TIMEOUT_RECV) snprintf(what, sizeof what, "waiting to receive video %d from stage %d", rv, prev);
      else snprintf(what, sizeof what, "waiting to exchange videos with stages %d and %d", prev, next);
      return wait_failed(r, s, rc, what);
    }
    if (!have_r) continue;

    MsgHeader h;
    memcpy(&h, other, sizeof h);
    const int want_step = s == 0 ? n : r->first[s];
    if (h.magic != RING_MAGIC || h.video != rv || h.step != want_step || h.from_stage != prev ||
        h.latent_floats != d->latent_floats || h.cond_bytes != d->cond_bytes) {
      snprintf(err, errlen,
               "stage %d: bad message from stage %d: magic %08x, video %d at step %d from stage %d; expected video "
               "%d at step %d", s, prev, h.magic, h.video, h.step, h.from_stage, rv, want_step);
      return RW_ERROR;
    }
    double now = vdp_now(), dt = now - (h.t_send > t_recv ? h.t_send : t_recv);
    lock(r);
    r->handoffs++;
    r->handoff_sum += dt > 0 ? dt : 0;
    if (dt > r->handoff_max) r->handoff_max = dt;
    unlock(r);
    if (s == 0) {
      set_state(r, 0, ST_FINISH, rv, -1);
      if (d->finish && d->finish(res->ctx, rv, res->table + (size_t)(rv % S) * d->cond_bytes,
                                 other_lat, cerr, sizeof cerr)) {
        snprintf(err, errlen, "stage 0: finishing video %d failed: %s", rv, cerr);
        return RW_ERROR;
      }
      now = vdp_now();
      lock(r);
      r->latency[rv] = now - res->t_begin[rv];
      unlock(r);
      if (r->opt.verbose) fprintf(stderr, "ring: video %d finished, latency %.3f s\n", rv, now - res->t_begin[rv]);
    } else {
      uint8_t *tmp = cur;
      cur = other;
      other = tmp;
      float *tl = cur_lat;
      cur_lat = other_lat;
      other_lat = tl;
    }
  }
  lock(r);
  if (vdp_now() > r->t_end) r->t_end = vdp_now();
  unlock(r);
  return RW_OK;
}

static void ring_free(Ring *r) {
  if (r->tr && r->tr->destroy) r->tr->destroy(r);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r->first);
  free(r->st);
  free(r->thread_exited);
  free(r->latency);
  free(r->args);
  free(r);
}

static void ring_unref(Ring *r) {
  if (atomic_fetch_sub(&r->refs, 1) == 1) ring_free(r);
}

static void *stage_main(void *p) {
  StageArg *a = p;
  Ring *r = a->r;
  const int s = a->s;
  char err[1024] = "";
  StageRes res = {0};
  int rc = stage_body(r, s, &res, err, sizeof err);
  // Report first, so the others wake now rather than after this stage's clean-up.
  lock(r);
  if (rc == RW_ERROR) {
    fail_locked(r, err[0] ? err : "stage failed without a message");
  } else if (rc == RW_EXITED) {
    char what[128], msg[256];
    describe(&r->st[s], what, sizeof what);
    snprintf(msg, sizeof msg, "stage %d exited unexpectedly %s", s, what);
    fail_locked(r, msg);
  }
  int failed = rc != RW_OK || atomic_load(&r->aborted);
  unlock(r);
  // Transport first (an aborted communicator stops kernels that still use the buffers), then the rest.
  if (res.opened) r->tr->close(r, s, failed);
  if (r->lat_apart && r->d.latent_free) {  // before the stage context whose memory they are
    if (res.la) r->d.latent_free(res.ctx, res.la);
    if (res.lb) r->d.latent_free(res.ctx, res.lb);
  }
  if (res.own_ctx && r->d.free_stage_ctx) r->d.free_stage_ctx(res.ctx);
  if (res.a) r->tr->release(r, s, res.a);
  if (res.b) r->tr->release(r, s, res.b);
  free(res.table);
  free(res.t_begin);
  lock(r);
  r->st[s] = (StageState){rc == RW_OK ? ST_DONE : ST_EXITED, -1, -1, vdp_now()};
  r->thread_exited[s] = 1;
  r->exited++;
  pthread_cond_broadcast(&r->cv);
  unlock(r);
  ring_unref(r);
  return NULL;
}

int ring_run(const RingDenoiser *d, int stages, int n_videos, const RingOptions *opt_in, RingStats *stats, char *err,
             size_t errlen) {
  RingOptions opt;
  if (opt_in) opt = *opt_in;
  else ring_options_default(&opt);
  if (!d || !d->encode || !d->step) { snprintf(err, errlen, "ring: the denoiser needs encode and step"); return -1; }
  if (d->n_steps < 1) { snprintf(err, errlen, "ring: %d denoising steps (need >= 1)", d->n_steps); return -1; }
  if (stages < 1 || stages > RING_MAX_STAGES) {
    snprintf(err, errlen, "ring: %d stages (need 1..%d)", stages, RING_MAX_STAGES);
    return -1;
  }
  if (stages > d->n_steps) {
    snprintf(err, errlen, "ring: %d stages exceed the %d denoising steps: every stage needs at least one step",
             stages, d->n_steps);
    return -1;
  }
  if (n_videos < 1) { snprintf(err, errlen, "ring: %d videos (need >= 1)", n_videos); return -1; }
  if (d->latent_floats < 1 || d->latent_floats > ((size_t)1 << 40) || d->cond_bytes > ((size_t)1 << 40)) {
    snprintf(err, errlen, "ring: latent of %zu floats / conditioning of %zu bytes out of range", d->latent_floats,
             d->cond_bytes);
    return -1;
  }
  if (!(opt.timeout_s > 0)) { snprintf(err, errlen, "ring: timeout %g s (need > 0)", opt.timeout_s); return -1; }
  if (opt.fault_kind != RING_FAULT_NONE) {  // a fault that cannot fire would make a test pass vacuously
    int fs = opt.fault_stage, a = fs >= 0 && fs < stages ? ring_stage_first(d->n_steps, stages, fs) : 0,
        b = fs >= 0 && fs < stages ? ring_stage_first(d->n_steps, stages, fs + 1) : 0;
    if (fs < 0 || fs >= stages || opt.fault_video < 0 || opt.fault_video >= n_videos || opt.fault_step < a ||
        opt.fault_step >= b) {
      snprintf(err, errlen, "ring: injected fault at stage %d, video %d, step %d cannot happen (%d stages, %d videos; "
               "that stage runs steps %d..%d)", fs, opt.fault_video, opt.fault_step, stages, n_videos, a, b - 1);
      return -1;
    }
  }
  const Transport *tr = NULL;
  if (opt.transport == RING_CPU) tr = &cpu_transport;
#ifdef VDP_CUDA
  if (opt.transport == RING_NCCL) tr = &nccl_transport;
#endif
  if (!tr) {
    snprintf(err, errlen, opt.transport == RING_NCCL ? "ring: this build has no NCCL transport (built without CUDA)"
                                                      : "ring: unknown transport %d", opt.transport);
    return -1;
  }
  if (opt.world > 0) {
    if (opt.transport != RING_NCCL || opt.world != stages || opt.rank < 0 || opt.rank >= opt.world ||
        !opt.nccl_id_file) {
      snprintf(err, errlen, "ring: multi-process mode needs the NCCL transport, world = stages (%d vs %d), "
               "0 <= rank < world (rank %d) and an id file", opt.world, stages, opt.rank);
      return -1;
    }
  }

  Ring *r = calloc(1, sizeof *r);
  if (!r) { snprintf(err, errlen, "ring: out of memory"); return -1; }
  r->d = *d;
  r->opt = opt;
  r->S = stages;
  r->K = n_videos;
  r->first_local = opt.world > 0 ? opt.rank : 0;
  r->n_local = opt.world > 0 ? 1 : stages;
  r->tr = tr;
  size_t lat_bytes = d->latent_floats * sizeof(float);
  r->lat_bytes = lat_bytes;
  r->lat_apart = d->latent_alloc != NULL;
  if (r->lat_apart) {  // messages: header | conditioning; the latent travels apart, from the denoiser's memory
    r->close_bytes = RING_HDR;
    r->cond_off = RING_HDR;
  } else {             // messages: header | latent | conditioning
    r->close_bytes = RING_HDR + lat_bytes;
    r->cond_off = RING_HDR + (lat_bytes + 63) / 64 * 64;
  }
  r->fwd_bytes = r->cond_off + d->cond_bytes;
  r->first = calloc((size_t)stages + 1, sizeof(int));
  r->st = calloc((size_t)stages, sizeof(StageState));
  r->thread_exited = calloc((size_t)stages, sizeof(int));
  r->latency = calloc((size_t)n_videos, sizeof(double));
  r->args = calloc((size_t)stages, sizeof(StageArg));
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);  // deadlines use vdp_now()'s clock
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&r->mu, NULL);
  atomic_init(&r->aborted, 0);
  atomic_init(&r->refs, 1);
  if (!r->first || !r->st || !r->thread_exited || !r->latency || !r->args) {
    snprintf(err, errlen, "ring: out of memory");
    ring_free(r);
    return -1;
  }
  for (int s = 0; s <= stages; s++) r->first[s] = ring_stage_first(d->n_steps, stages, s);
  if (tr->setup(r, err, errlen)) {
    ring_free(r);
    return -1;
  }

  // Stage threads. Each holds a reference: a stage stuck in user code may outlive this call.
  r->last_progress = vdp_now();
  double t_begin = vdp_now();
  for (int s = r->first_local; s < r->first_local + r->n_local; s++) {
    StageArg *a = &r->args[s];
    a->r = r;
    a->s = s;
    atomic_fetch_add(&r->refs, 1);
    if (pthread_create(&a->th, NULL, stage_main, a) != 0) {
      atomic_fetch_sub(&r->refs, 1);
      lock(r);
      r->exited++;  // never ran
      r->thread_exited[s] = 1;
      fail_locked(r, "ring: cannot create a stage thread");
      unlock(r);
    } else {
      a->started = 1;
    }
  }

  // Watchdog: the liveness deadline for when no stage is waiting (e.g. S = 1 stuck in a step),
  // then a short grace for the stages to stop after an abort.
  const double grace = opt.timeout_s < 1.0 ? opt.timeout_s : 1.0;
  lock(r);
  while (r->exited < r->n_local) {
    if (atomic_load(&r->aborted)) {
      double until = r->abort_time + grace;
      if (vdp_now() >= until) break;
      timedwait_until(r, until);
    } else {
      double deadline = r->last_progress + opt.timeout_s;
      if (vdp_now() >= deadline) blame_timeout_locked(r, -1, NULL);
      else timedwait_until(r, deadline);
    }
  }
  int failed = atomic_load(&r->aborted);
  if (failed) snprintf(err, errlen, "%s", r->err);
  int stuck = 0;
  for (int s = r->first_local; s < r->first_local + r->n_local; s++)
    if (r->args[s].started && !r->thread_exited[s]) stuck++;
  if (stats) {
    double *lat_out = stats->latency_s;
    memset(stats, 0, sizeof *stats);
    stats->latency_s = lat_out;
    stats->setup_s = r->setup_max;
    stats->run_s = r->t_end > r->t_start ? r->t_end - r->t_start : 0;
    if (r->t_start == 0) stats->setup_s = vdp_now() - t_begin;
    if (!failed && r->first_local == 0 && stats->run_s > 0) stats->throughput = n_videos / stats->run_s;
    if (lat_out) memcpy(lat_out, r->latency, (size_t)n_videos * sizeof(double));
    stats->handoffs = r->handoffs;
    stats->handoff_mean_s = r->handoffs ? r->handoff_sum / r->handoffs : 0;
    stats->handoff_max_s = r->handoff_max;
    stats->stuck_threads = stuck;
  }
  if (stuck && failed) {
    size_t len = strlen(err);
    if (len + 1 < errlen)
      snprintf(err + len, errlen - len, " [%d stage thread%s still busy in user code, left running]", stuck,
               stuck > 1 ? "s" : "");
  }
  unlock(r);
  for (int s = r->first_local; s < r->first_local + r->n_local; s++) {
    if (!r->args[s].started) continue;
    lock(r);
    int done = r->thread_exited[s];
    unlock(r);
    if (done) pthread_join(r->args[s].th, NULL);  // it has published its exit: returns at once
    else pthread_detach(r->args[s].th);
  }
  ring_unref(r);
  return failed ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------------
// `vdp sim`: identity plus small deterministic noise through the same ring
// ---------------------------------------------------------------------------------------------------
// splitmix64 finaliser: a well-mixed 64-bit hash.
static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Approximately standard normal, a pure function of (key, i): Irwin–Hall sum of four 32-bit uniforms
// (variance 1/3, scaled by sqrt 3). Integer and exactly-rounded double arithmetic only, so the same on
// every machine and every thread.
static float sim_noise(uint64_t key, uint64_t i) {
  uint64_t a = mix64(key ^ mix64(i)), b = mix64(a);
  double u = (double)(a & 0xffffffffu) + (double)(a >> 32) + (double)(b & 0xffffffffu) + (double)(b >> 32);
  return (float)((u * (1.0 / 4294967296.0) - 2.0) * 1.7320508075688772);
}

static uint64_t sim_key(uint64_t video_seed, int step) { return mix64(mix64(video_seed) ^ (uint64_t)(int64_t)(step + 2)); }

typedef struct {
  uint64_t seed;  // of this video
  int32_t video;
  uint32_t magic;
} SimCond;

typedef struct {
  uint64_t seed;
  size_t n;
  double step_ms;
  int K;
  double *norm;       // [K], filled by finish
  uint64_t *checksum; // [K]
  int done;
} Sim;

static int sim_encode(void *ctx, int video, void *cond, float *latent, char *err, size_t errlen) {
  Sim *sim = ctx;
  SimCond c = {sim->seed + (uint64_t)video, video, RING_MAGIC};
  memcpy(cond, &c, sizeof c);
  uint64_t key = sim_key(c.seed, -1);
  for (size_t i = 0; i < sim->n; i++) latent[i] = sim_noise(key, i);
  return 0;
}

static int sim_step(void *ctx, int video, int step, const void *cond, float *latent, char *err, size_t errlen) {
  Sim *sim = ctx;
  SimCond c;
  memcpy(&c, cond, sizeof c);
  if (c.magic != RING_MAGIC || c.video != video || c.seed != sim->seed + (uint64_t)video) {
    snprintf(err, errlen, "the conditioning of video %d arrived as that of video %d", video, c.video);
    return -1;
  }
  uint64_t key = sim_key(c.seed, step);
  for (size_t i = 0; i < sim->n; i++) latent[i] += 1e-3f * sim_noise(key, i);
  sleep_s(sim->step_ms * 1e-3);  // the simulated cost of a UNet step
  return 0;
}

static int sim_finish(void *ctx, int video, const void *cond, const float *latent, char *err, size_t errlen) {
  Sim *sim = ctx;
  double ss = 0;
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the bytes: equal checksums = bit-identical latents
  const uint8_t *b = (const uint8_t *)latent;
  for (size_t i = 0; i < sim->n; i++) ss += (double)latent[i] * latent[i];
  for (size_t i = 0; i < sim->n * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
  sim->norm[video] = sqrt(ss);
  sim->checksum[video] = h;
  fprintf(stderr, "sim: video %d finished (%d/%d)\n", video, ++sim->done, sim->K);
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Launchers (see ring.h)
// ---------------------------------------------------------------------------------------------------
int ring_launch_env(RingLaunch *le, char *err, size_t errlen) {
  static const struct { const char *name, *rank, *size, *local; } src[] = {
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
      {"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
      {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"MPICH/PMI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
  };
  int found = 0;
  memset(le, 0, sizeof *le);
  for (size_t k = 0; k < sizeof src / sizeof src[0]; k++) {
    const char *r = getenv(src[k].rank), *w = getenv(src[k].size), *l = getenv(src[k].local);
    if (!r && !w) continue;
    if (!r || !w) {
      snprintf(err, errlen, "launcher environment: %s sets %s but not %s", src[k].name, r ? src[k].rank : src[k].size,
               r ? src[k].size : src[k].rank);
      return -1;
    }
    long rank, world, local = -1;
    const char *badv = vdp_parse_long(r, 0, RING_MAX_STAGES - 1, &rank) ? src[k].rank
                       : vdp_parse_long(w, 1, RING_MAX_STAGES, &world) ? src[k].size
                       : l && vdp_parse_long(l, 0, RING_MAX_STAGES - 1, &local) ? src[k].local : NULL;
    if (badv) {
      snprintf(err, errlen, "launcher environment: %s=%s is not a valid %s", badv, getenv(badv),
               badv == src[k].size ? "world size (1 to 1024)" : "rank (0 to 1023)");
      return -1;
    }
    if (rank >= world) {
      snprintf(err, errlen, "launcher environment: %s=%ld is not below %s=%ld", src[k].rank, rank, src[k].size, world);
      return -1;
    }
    if (found && (rank != le->rank || world != le->world || (local >= 0 && le->local_rank >= 0 && local != le->local_rank))) {
      snprintf(err, errlen,
               "launcher environment: %s says rank %ld of %ld%s but %s: set only one launcher's variables, or give "
               "--rank R --world W", src[k].name, rank, world, local >= 0 ? " (and a local rank)" : "", le->source);
      return -1;
    }
    if (!found) {
      le->rank = (int)rank, le->world = (int)world, le->local_rank = (int)local;
      if (l) snprintf(le->source, sizeof le->source, "%s (%s=%s %s=%s %s=%s)", src[k].name, src[k].rank, r,
                      src[k].size, w, src[k].local, l);
      else snprintf(le->source, sizeof le->source, "%s (%s=%s %s=%s)", src[k].name, src[k].rank, r, src[k].size, w);
    } else if (le->local_rank < 0) {
      le->local_rank = (int)local;
    }
    found = 1;
  }
  return found && le->world > 1;
}

static void sim_usage(FILE *f) {
  fprintf(f,
          "usage: vdp sim [--stages S] [--num-inference-steps N] [--latent-shape D1 .. Dn] [--num-videos K]\n"
          "               [--seed s] [--step-ms T] [--timeout SEC] [--transport cpu|nccl]\n"
          "               [--rank R --world W --nccl-id-file PATH [--device G]]\n"
          "               (--transport nccl without --rank/--world: rank, world and GPU (local rank) from\n"
          "               torchrun, Slurm, Open MPI or MPICH/PMI variables when a launcher set them)\n"
          "               [--inject-fault error|hang|exit:STAGE:VIDEO:STEP] [--verbose]\n"
          "Runs an identity-plus-small-deterministic-noise denoiser (no weights) through the stage ring and\n"
          "prints the final latent norm of each video (identical for every S), the per-handoff overhead and\n"
          "the throughput. Defaults: 1 stage, 28 steps, latent 1 8 8 32 32, 1 video, seed 42, 0 ms, 60 s, cpu.\n");
}

int cmd_sim(int argc, char **argv) {
  long S = 1, n_steps = 28, K = 1, rank = 0, world = 0, device = -1, seed = 42;
  int S_given = 0, rank_given = 0, verbose = 0, transport = RING_CPU, ndims = 5;
  long shape[6] = {1, 8, 8, 32, 32, 1};
  double step_ms = 0, timeout = 60;
  const char *id_file = NULL;
  RingOptions opt;
  ring_options_default(&opt);

#define SIM_BAD(...)                        \
  do {                                      \
    fprintf(stderr, "vdp sim: " __VA_ARGS__); \
    fputc('\n', stderr);                    \
    sim_usage(stderr);                      \
    return 2;                               \
  } while (0)
#define SIM_INT(var, lo, hi)                                                              \
  do {                                                                                    \
    if (i + 1 >= argc || vdp_parse_long(argv[i + 1], lo, hi, &var))                           \
      SIM_BAD("%s needs an integer in [%ld, %ld], got '%s'", a, (long)(lo), (long)(hi),   \
              i + 1 < argc ? argv[i + 1] : "(nothing)");                                  \
    i++;                                                                                  \
  } while (0)
#define SIM_NUM(var, lo, hi)                                                              \
  do {                                                                                    \
    if (i + 1 >= argc || vdp_parse_double(argv[i + 1], lo, hi, &var))                         \
      SIM_BAD("%s needs a number in [%g, %g], got '%s'", a, (double)(lo), (double)(hi),   \
              i + 1 < argc ? argv[i + 1] : "(nothing)");                                  \
    i++;                                                                                  \
  } while (0)

  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      sim_usage(stdout);
      return 0;
    }
  vdp_flags_once("sim", argc, argv,
                 (const char *const[]){"--stages", "--num-inference-steps", "--num-videos", "--seed", "--step-ms",
                                       "--timeout", "--rank", "--world", "--device", "--nccl-id-file", "--transport",
                                       "--inject-fault", NULL},
                 NULL);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--stages")) { SIM_INT(S, 1, RING_MAX_STAGES); S_given = 1; }
    else if (!strcmp(a, "--num-inference-steps")) SIM_INT(n_steps, 1, 100000);
    else if (!strcmp(a, "--num-videos")) SIM_INT(K, 1, 100000);
    else if (!strcmp(a, "--seed")) SIM_INT(seed, 0, 0x7fffffffL);
    else if (!strcmp(a, "--step-ms")) SIM_NUM(step_ms, 0, 1e6);
    else if (!strcmp(a, "--timeout")) SIM_NUM(timeout, 0.001, 1e7);
    else if (!strcmp(a, "--rank")) { SIM_INT(rank, 0, RING_MAX_STAGES - 1); rank_given = 1; }
    else if (!strcmp(a, "--world")) SIM_INT(world, 1, RING_MAX_STAGES);
    else if (!strcmp(a, "--device")) SIM_INT(device, 0, 1023);
    else if (!strcmp(a, "--verbose")) verbose = 1;
    else if (!strcmp(a, "--nccl-id-file")) {
      if (i + 1 >= argc || !argv[i + 1][0]) SIM_BAD("--nccl-id-file needs a path");
      id_file = argv[++i];
    } else if (!strcmp(a, "--transport")) {
      const char *v = i + 1 < argc ? argv[++i] : "";
      if (!strcmp(v, "cpu")) transport = RING_CPU;
      else if (!strcmp(v, "nccl")) transport = RING_NCCL;
      else SIM_BAD("--transport must be cpu or nccl, got '%s'", v);
    } else if (!strcmp(a, "--latent-shape")) {
      ndims = 0;
      while (i + 1 < argc && argv[i + 1][0] != '-') {
        if (ndims == 6) SIM_BAD("--latent-shape takes at most 6 dimensions");
        if (vdp_parse_long(argv[i + 1], 1, 1L << 24, &shape[ndims])) SIM_BAD("--latent-shape: bad dimension '%s'", argv[i + 1]);
        ndims++;
        i++;
      }
      if (ndims == 0) SIM_BAD("--latent-shape needs 1 to 6 positive integers");
    } else if (!strcmp(a, "--inject-fault")) {
      if (i + 1 >= argc) SIM_BAD("--inject-fault needs KIND:STAGE:VIDEO:STEP");
      const char *v = argv[++i];
      char kind[16];
      int fs, fv, fk, used = 0;
      if (sscanf(v, "%15[a-z]:%d:%d:%d%n", kind, &fs, &fv, &fk, &used) != 4 || v[used] || fs < 0 || fv < 0 || fk < 0)
        SIM_BAD("--inject-fault: expected KIND:STAGE:VIDEO:STEP (e.g. error:1:0:5), got '%s'", v);
      if (!strcmp(kind, "error")) opt.fault_kind = RING_FAULT_ERROR;
      else if (!strcmp(kind, "hang")) opt.fault_kind = RING_FAULT_HANG;
      else if (!strcmp(kind, "exit")) opt.fault_kind = RING_FAULT_EXIT;
      else SIM_BAD("--inject-fault: kind must be error, hang or exit, got '%s'", kind);
      opt.fault_stage = fs;
      opt.fault_video = fv;
      opt.fault_step = fk;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      sim_usage(stdout);
      return 0;
    } else {
      SIM_BAD("unknown option '%s'", a);
    }
  }
  if (transport == RING_NCCL && !world && !rank_given) {  // a launcher (srun, mpirun, torchrun) may say
    RingLaunch le;
    char e[512];
    int lr = ring_launch_env(&le, e, sizeof e);
    if (lr < 0) SIM_BAD("%s", e);
    if (lr > 0) {
      if (S_given && S != le.world)
        SIM_BAD("--stages %ld but %s starts %d processes (one stage each); unset the launcher's variables to run all "
                "stages in this process", S, le.source, le.world);
      rank = le.rank, world = le.world;
      if (device < 0 && le.local_rank >= 0) device = le.local_rank;
      if (device >= 0) fprintf(stderr, "vdp sim: rank %ld of %ld from %s; GPU %ld (local rank)\n", rank, world, le.source, device);
      else fprintf(stderr, "vdp sim: rank %ld of %ld from %s; GPU rank %% visible GPUs\n", rank, world, le.source);
    }
  }
  if (world > 0) {
    if (transport != RING_NCCL) SIM_BAD("--world needs --transport nccl");
    if (!id_file) SIM_BAD("--world needs --nccl-id-file PATH");
    if (rank >= world) SIM_BAD("--rank %ld is not below --world %ld", rank, world);
    if (S_given && S != world) SIM_BAD("--stages %ld differs from --world %ld (one stage per process)", S, world);
    S = world;
  } else if (id_file || rank) {
    SIM_BAD("--rank and --nccl-id-file need --world");
  }
  if (S > n_steps) SIM_BAD("--stages %ld exceeds the %ld denoising steps: every stage needs at least one step", S, n_steps);
#ifndef VDP_CUDA
  if (transport == RING_NCCL) SIM_BAD("--transport nccl: this vdp was built without CUDA/NCCL");
#endif
  size_t n = 1;
  for (int k = 0; k < ndims; k++) {
    if (n > ((size_t)1 << 28) / (size_t)shape[k]) SIM_BAD("--latent-shape: more than 2^28 elements");
    n *= (size_t)shape[k];
  }
  if (opt.fault_kind) {
    int a = opt.fault_stage < S ? ring_stage_first((int)n_steps, (int)S, opt.fault_stage) : 0;
    int b = opt.fault_stage < S ? ring_stage_first((int)n_steps, (int)S, opt.fault_stage + 1) : 0;
    if (opt.fault_stage >= S || opt.fault_video >= K || opt.fault_step < a || opt.fault_step >= b)
      SIM_BAD("--inject-fault: stage %d, video %d, step %d cannot happen (%ld stages, %ld videos; that stage runs "
              "steps %d..%d)", opt.fault_stage, opt.fault_video, opt.fault_step, S, K, a, b - 1);
  }

  Sim sim = {(uint64_t)seed, n, step_ms, (int)K, calloc((size_t)K, sizeof(double)), calloc((size_t)K, sizeof(uint64_t)), 0};
  double *latency = calloc((size_t)K, sizeof(double));
  if (!sim.norm || !sim.checksum || !latency) {
    fprintf(stderr, "vdp: error: out of memory\n");
    return 1;
  }
  RingDenoiser d = {n, sizeof(SimCond), (int)n_steps, NULL, NULL, sim_encode, sim_step, sim_finish, &sim, NULL, NULL};
  opt.transport = transport;
  opt.timeout_s = timeout;
  opt.verbose = verbose;
  opt.rank = (int)rank;
  opt.world = (int)world;
  opt.device = (int)device;
  opt.nccl_id_file = id_file;

  char shape_s[128] = "";
  for (int k = 0; k < ndims; k++)
    snprintf(shape_s + strlen(shape_s), sizeof shape_s - strlen(shape_s), "%s%ld", k ? "x" : "", shape[k]);
  printf("sim: transport %s, %ld stage%s (steps per stage:", transport == RING_CPU ? "cpu" : "nccl", S, S > 1 ? "s" : "");
  for (long s = 0; s < S; s++)
    printf(" %d", ring_stage_first((int)n_steps, (int)S, (int)s + 1) - ring_stage_first((int)n_steps, (int)S, (int)s));
  printf("), %ld steps, %ld video%s, latent %s (%zu floats), step cost %g ms\n", n_steps, K, K > 1 ? "s" : "", shape_s,
         n, step_ms);
  fflush(stdout);

  RingStats st = {0};
  st.latency_s = latency;
  char err[1024];
  int rc = ring_run(&d, (int)S, (int)K, &opt, &st, err, sizeof err);
  if (rc) {
    fprintf(stderr, "vdp: error: %s\n", err);
    fflush(stdout);
    // A stage stuck in user code may still run: exit without freeing what it uses.
    if (st.stuck_threads) _exit(1);
    free(sim.norm);
    free(sim.checksum);
    free(latency);
    return 1;
  }
  if (world == 0 || rank == 0) {
    double all = 0;
    for (long v = 0; v < K; v++) {
      printf("video %ld seed %lu norm %.6f checksum %016llx latency_s %.4f\n", v, (unsigned long)(seed + v), sim.norm[v],
             (unsigned long long)sim.checksum[v], latency[v]);
      all += sim.norm[v] * sim.norm[v];
    }
    printf("norm_all %.6f\n", sqrt(all));
    printf("throughput_videos_per_s %.4f run_s %.4f setup_s %.4f\n", st.throughput, st.run_s, st.setup_s);
  }
  printf("handoffs %ld overhead_mean_ms %.4f overhead_max_ms %.4f\n", st.handoffs, st.handoff_mean_s * 1e3,
         st.handoff_max_s * 1e3);
  free(sim.norm);
  free(sim.checksum);
  free(latency);
  return 0;
}
