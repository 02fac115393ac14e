// test_ring.c — the stage ring (ring.c) on the CPU transport: the output does not depend on the
// number of stages (bit for bit, against a plain sequential loop), step blocks, fault handling
// (errors, exits, hangs, stuck user code: a clean error naming the stage within the timeout, never a
// hang), the throughput gain with several videos in flight, and the NCCL id file exchange.
#include "ring.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, name, ...)                 \
  do {                                         \
    if (cond) {                                \
      printf("ok - %s ", name);                \
    } else {                                   \
      printf("FAIL - %s ", name);              \
      failures++;                              \
    }                                          \
    printf(__VA_ARGS__);                       \
    printf("\n");                              \
    fflush(stdout);                            \
  } while (0)

static void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

// ---------------------------------------------------------------------------------------------------
// A test denoiser. Its step mixes the latent with the conditioning (a wrong or stale conditioning
// changes the result), checks that the steps of each video come in order 0, 1, ..., n-1 exactly
// once, and records which stage ran each step.
// ---------------------------------------------------------------------------------------------------
#define MAXV 8
#define MAXSTEPS 64
#define NCOND 10  // floats of conditioning

typedef struct {
  size_t n;                           // latent floats
  int n_steps, K;
  atomic_int next_step[MAXV];         // next step each video expects
  int stage_of[MAXV][MAXSTEPS];       // which stage ran step k of video v
  float *result[MAXV];                // final latents (finish)
  int order_errors;
  // faults driven from the denoiser itself
  int fail_stage, fail_step;          // step returns an error
  int fail_encode_video, fail_finish_video, fail_ctx_stage;
  int stuck_stage, stuck_step;        // step sleeps stuck_ms without looking at the ring
  double stuck_ms, step_ms;
  atomic_int ctx_made, ctx_freed, ctx_wrong_thread;
} TD;

typedef struct {
  TD *td;
  int stage;
  pthread_t owner;
} TDCtx;

static void td_init(TD *td, size_t n, int n_steps, int K) {
  memset(td, 0, sizeof *td);
  td->n = n;
  td->n_steps = n_steps;
  td->K = K;
  td->fail_stage = td->fail_step = td->fail_encode_video = td->fail_finish_video = td->fail_ctx_stage = -1;
  td->stuck_stage = td->stuck_step = -1;
  for (int v = 0; v < K; v++) td->result[v] = calloc(n, sizeof(float));
}
static void td_free(TD *td) {
  for (int v = 0; v < td->K; v++) free(td->result[v]);
}

static void *td_make(void *user, int stage, char *err, size_t errlen) {
  TD *td = user;
  if (stage == td->fail_ctx_stage) {
    snprintf(err, errlen, "cannot load the model copy (test)");
    return NULL;
  }
  TDCtx *c = malloc(sizeof *c);
  c->td = td;
  c->stage = stage;
  c->owner = pthread_self();
  atomic_fetch_add(&td->ctx_made, 1);
  return c;
}
static void td_free_ctx(void *p) {
  TDCtx *c = p;
  atomic_fetch_add(&c->td->ctx_freed, 1);
  if (!pthread_equal(c->owner, pthread_self())) atomic_fetch_add(&c->td->ctx_wrong_thread, 1);
  free(c);
}

static int td_encode_into(TD *td, int video, float *cond, float *latent) {
  for (int j = 0; j < NCOND; j++) cond[j] = 0.5f + 0.1f * (float)video + 0.01f * (float)j;
  uint32_t x = 2463534242u + 7919u * (uint32_t)video;
  for (size_t i = 0; i < td->n; i++) {  // xorshift32: any deterministic start will do
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    latent[i] = (float)(x >> 8) * (1.0f / 16777216.0f) - 0.5f;
  }
  return 0;
}
static void td_step_math(const TD *td, int step, const float *cond, float *latent) {
  for (size_t i = 0; i < td->n; i++)
    latent[i] = latent[i] * (0.97f + 0.01f * cond[i % NCOND]) + 1e-3f * sinf(0.37f * (float)step + 0.011f * (float)i);
}

static int td_encode(void *ctx, int video, void *cond, float *latent, char *err, size_t errlen) {
  TDCtx *c = ctx;
  if (video == c->td->fail_encode_video) { snprintf(err, errlen, "cannot read the image (test)"); return -1; }
  float cf[NCOND];
  td_encode_into(c->td, video, cf, latent);
  memcpy(cond, cf, sizeof cf);
  return 0;
}
static int td_step(void *ctx, int video, int step, const void *cond, float *latent, char *err, size_t errlen) {
  TDCtx *c = ctx;
  TD *td = c->td;
  if (c->stage == td->fail_stage && step == td->fail_step) {
    snprintf(err, errlen, "UNet blew up (test)");
    return -1;
  }
  if (c->stage == td->stuck_stage && step == td->stuck_step) sleep_ms(td->stuck_ms);  // deaf to the ring
  if (td->step_ms > 0) sleep_ms(td->step_ms);
  int want = atomic_load(&td->next_step[video]);
  if (want != step) td->order_errors++;
  atomic_store(&td->next_step[video], step + 1);
  if (step < MAXSTEPS) td->stage_of[video][step] = c->stage;
  float cf[NCOND];
  memcpy(cf, cond, sizeof cf);  // the ring only promises byte alignment of the blob
  td_step_math(td, step, cf, latent);
  return 0;
}
static int td_finish(void *ctx, int video, const void *cond, const float *latent, char *err, size_t errlen) {
  TDCtx *c = ctx;
  if (video == c->td->fail_finish_video) { snprintf(err, errlen, "cannot write the video (test)"); return -1; }
  memcpy(c->td->result[video], latent, c->td->n * sizeof(float));
  return 0;
}

static RingDenoiser td_denoiser(TD *td) {
  RingDenoiser d = {td->n, NCOND * sizeof(float), td->n_steps, td_make, td_free_ctx, td_encode, td_step, td_finish, td, NULL, NULL};
  return d;
}

// The run without stages: encode, every step in order, per video.
static float *reference(TD *td, int video) {
  float *lat = malloc(td->n * sizeof(float)), cond[NCOND];
  td_encode_into(td, video, cond, lat);
  for (int k = 0; k < td->n_steps; k++) td_step_math(td, k, cond, lat);
  return lat;
}

// ---------------------------------------------------------------------------------------------------
static void test_blocks(void) {
  int bad = 0, cases = 0;
  for (int n = 1; n <= 40; n++)
    for (int S = 1; S <= n; S++) {
      cases++;
      int lo = n, hi = 0;
      if (ring_stage_first(n, S, 0) != 0 || ring_stage_first(n, S, S) != n) bad++;
      for (int s = 0; s < S; s++) {
        int len = ring_stage_first(n, S, s + 1) - ring_stage_first(n, S, s);
        if (len < lo) lo = len;
        if (len > hi) hi = len;
      }
      if (lo < 1 || hi - lo > 1) bad++;
    }
  CHECK(bad == 0, "step blocks contiguous, cover all steps, sizes differ by at most one", "(%d (n, S) cases, %d bad)",
        cases, bad);
}

static void test_identity(void) {
  const int steps_list[2] = {7, 12};
  const int S_lists[2][6] = {{1, 2, 3, 4, 5, 7}, {1, 2, 3, 4, 5, 12}};
  const int K_list[2] = {1, 3};
  for (int si = 0; si < 2; si++)
    for (int ki = 0; ki < 2; ki++)
      for (int j = 0; j < 6; j++) {
        const int n_steps = steps_list[si], K = K_list[ki], S = S_lists[si][j];
        static TD td;
        td_init(&td, 257, n_steps, K);  // odd size: the conditioning offset must still work
        RingDenoiser d = td_denoiser(&td);
        RingOptions opt;
        ring_options_default(&opt);
        opt.timeout_s = 10;
        RingStats st;
        double lat[MAXV];
        st.latency_s = lat;
        char err[1024] = "";
        int rc = ring_run(&d, S, K, &opt, &st, err, sizeof err);
        int same = rc == 0, blocks_ok = 1, lat_ok = 1;
        for (int v = 0; v < K && rc == 0; v++) {
          float *ref = reference(&td, v);
          if (memcmp(ref, td.result[v], td.n * sizeof(float)) != 0) same = 0;
          free(ref);
          for (int k = 0; k < n_steps; k++) {
            int s = td.stage_of[v][k];
            if (k < ring_stage_first(n_steps, S, s) || k >= ring_stage_first(n_steps, S, s + 1)) blocks_ok = 0;
          }
          if (!(lat[v] > 0)) lat_ok = 0;
          if (atomic_load(&td.next_step[v]) != n_steps) td.order_errors++;
        }
        char name[128];
        snprintf(name, sizeof name, "bit-identical to the sequential run: %d steps, S=%d, K=%d", n_steps, S, K);
        CHECK(same && td.order_errors == 0 && blocks_ok && lat_ok && st.handoffs == (long)K * S &&
                  atomic_load(&td.ctx_made) == S && atomic_load(&td.ctx_freed) == S &&
                  atomic_load(&td.ctx_wrong_thread) == 0,
              name, "(rc %d%s%s, order errors %d, blocks %s, handoffs %ld (want %d), contexts %d/%d made/freed, %s)", rc,
              rc ? ": " : "", rc ? err : "", td.order_errors, blocks_ok ? "ok" : "WRONG", st.handoffs, K * S,
              atomic_load(&td.ctx_made), atomic_load(&td.ctx_freed), lat_ok ? "latencies > 0" : "BAD LATENCIES");
        td_free(&td);
      }
}

// Latents apart from the messages (latent_alloc: how GPU stages keep theirs in device memory), here on the
// CPU transport: the same bytes as inside them; two buffers per stage, each freed once.
static atomic_int g_lat_allocs, g_lat_frees;
static void *td_lat_alloc(void *ctx, size_t bytes) {
  atomic_fetch_add(&g_lat_allocs, 1);
  return malloc(bytes);
}
static void td_lat_free(void *ctx, void *p) {
  atomic_fetch_add(&g_lat_frees, 1);
  free(p);
}
static void test_latents_apart(void) {
  const int S_list[4] = {1, 2, 3, 5};
  for (int j = 0; j < 4; j++) {
    const int S = S_list[j], K = 3, n_steps = 7;
    static TD td;
    td_init(&td, 257, n_steps, K);
    RingDenoiser d = td_denoiser(&td);
    d.latent_alloc = td_lat_alloc, d.latent_free = td_lat_free;
    atomic_store(&g_lat_allocs, 0), atomic_store(&g_lat_frees, 0);
    RingOptions opt;
    ring_options_default(&opt);
    opt.timeout_s = 10;
    char err[1024] = "";
    int rc = ring_run(&d, S, K, &opt, NULL, err, sizeof err), same = rc == 0;
    for (int v = 0; v < K && rc == 0; v++) {
      float *ref = reference(&td, v);
      if (memcmp(ref, td.result[v], td.n * sizeof(float)) != 0) same = 0;
      free(ref);
    }
    char name[128];
    snprintf(name, sizeof name, "latents apart (latent_alloc): bit-identical to the sequential run, S=%d, K=%d", S, K);
    CHECK(same && td.order_errors == 0 && atomic_load(&g_lat_allocs) == 2 * S && atomic_load(&g_lat_frees) == 2 * S,
          name, "(rc %d%s%s, order errors %d, %d latents allocated, %d freed, want %d)", rc, rc ? ": " : "", rc ? err : "",
          td.order_errors, atomic_load(&g_lat_allocs), atomic_load(&g_lat_frees), 2 * S);
    td_free(&td);
  }
}

static void test_bad_args(void) {
  static TD td;
  td_init(&td, 16, 7, 1);
  RingDenoiser d = td_denoiser(&td);
  RingOptions opt;
  ring_options_default(&opt);
  char err[1024] = "";
  int rc = ring_run(&d, 8, 1, &opt, NULL, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "8 stages exceed the 7 denoising steps"), "S > steps is an error",
        "(rc %d, '%s')", rc, err);
  err[0] = 0;
  rc = ring_run(&d, 2, 0, &opt, NULL, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "videos"), "zero videos is an error", "(rc %d, '%s')", rc, err);
  opt.fault_kind = RING_FAULT_ERROR;
  opt.fault_stage = 1;
  opt.fault_video = 0;
  opt.fault_step = 0;  // stage 1 of 2 runs steps 4..6
  err[0] = 0;
  rc = ring_run(&d, 2, 1, &opt, NULL, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "cannot happen"), "a fault that cannot fire is rejected", "(rc %d, '%s')", rc, err);
#ifndef VDP_CUDA
  ring_options_default(&opt);
  opt.transport = RING_NCCL;
  err[0] = 0;
  rc = ring_run(&d, 1, 1, &opt, NULL, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "NCCL"), "NCCL transport without CUDA is a clear error", "(rc %d, '%s')", rc, err);
#endif
  td_free(&td);
}

// One fault case: S stages, K videos, n steps; expects rc -1, an error naming `stage` and containing
// `cause`, within max_s seconds, every stage context freed on its own thread (unless stuck).
typedef struct {
  const char *name;
  int S, K, n_steps;
  double timeout;
  int fault_kind, fault_stage, fault_video, fault_step;  // ring-injected
  int fail_stage, fail_step, fail_encode_video, fail_finish_video, fail_ctx_stage;  // denoiser-side
  int stuck_stage, stuck_step;
  double stuck_ms;
  const char *want_stage, *want_cause;
  double min_s, max_s;
  int want_stuck;
} FaultCase;

static void run_fault(const FaultCase *fc) {
  static TD tds[16];
  static int used;
  TD *td = &tds[used++ % 16];  // static: a stuck thread may still use it after ring_run returns
  td_init(td, 1000, fc->n_steps, fc->K);
  td->fail_stage = fc->fail_stage;
  td->fail_step = fc->fail_step;
  td->fail_encode_video = fc->fail_encode_video;
  td->fail_finish_video = fc->fail_finish_video;
  td->fail_ctx_stage = fc->fail_ctx_stage;
  td->stuck_stage = fc->stuck_stage;
  td->stuck_step = fc->stuck_step;
  td->stuck_ms = fc->stuck_ms;
  td->step_ms = 2;
  RingDenoiser d = td_denoiser(td);
  RingOptions opt;
  ring_options_default(&opt);
  opt.timeout_s = fc->timeout;
  opt.fault_kind = fc->fault_kind;
  opt.fault_stage = fc->fault_stage;
  opt.fault_video = fc->fault_video;
  opt.fault_step = fc->fault_step;
  RingStats st;
  st.latency_s = NULL;
  char err[1024] = "";
  double t0 = vdp_now();
  int rc = ring_run(&d, fc->S, fc->K, &opt, &st, err, sizeof err);
  double dt = vdp_now() - t0;
  int freed_ok = fc->want_stuck || (atomic_load(&td->ctx_freed) == atomic_load(&td->ctx_made) &&
                                    atomic_load(&td->ctx_wrong_thread) == 0);
  CHECK(rc == -1 && strstr(err, fc->want_stage) && strstr(err, fc->want_cause) && dt >= fc->min_s && dt < fc->max_s &&
            freed_ok && st.stuck_threads == fc->want_stuck,
        fc->name, "(rc %d in %.2f s, want %.1f..%.1f s; stuck threads %d; contexts %d/%d; error: %s)", rc, dt, fc->min_s,
        fc->max_s, st.stuck_threads, atomic_load(&td->ctx_made), atomic_load(&td->ctx_freed), err);
  if (!fc->want_stuck) td_free(td);
}

// A fault case with nothing injected yet: S stages, K videos, 12 steps.
static FaultCase fault_case(const char *name, int S, int K, double timeout, const char *want_stage,
                            const char *want_cause, double min_s, double max_s) {
  FaultCase fc = {name, S, K, 12, timeout, RING_FAULT_NONE, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0,
                  want_stage, want_cause, min_s, max_s, 0};
  return fc;
}

static void test_faults(void) {
  // 12 steps over S = 3: stage 0 runs steps 0..3, stage 1 4..7, stage 2 8..11. Timeout 5 s: the
  // error cases must end within timeout + 1 s (they end at once: the abort wakes every stage).
  FaultCase fc = fault_case("step error at stage 1 -> clean error naming stage 1", 3, 3, 5, "stage 1",
                            "step 6 of video 0 failed: UNet blew up", 0, 6);
  fc.fail_stage = 1, fc.fail_step = 6;
  run_fault(&fc);

  fc = fault_case("injected error at stage 2, video 1", 3, 3, 5, "stage 2", "injected fault", 0, 6);
  fc.fault_kind = RING_FAULT_ERROR, fc.fault_stage = 2, fc.fault_video = 1, fc.fault_step = 9;
  run_fault(&fc);

  fc = fault_case("stage 1 exits -> error naming stage 1", 3, 3, 5, "stage 1", "exited unexpectedly", 0, 6);
  fc.fault_kind = RING_FAULT_EXIT, fc.fault_stage = 1, fc.fault_video = 2, fc.fault_step = 5;
  run_fault(&fc);

  fc = fault_case("encode failure at stage 0", 3, 3, 5, "stage 0", "encoding video 2 failed: cannot read the image", 0, 6);
  fc.fail_encode_video = 2;
  run_fault(&fc);

  fc = fault_case("finish failure at stage 0", 3, 3, 5, "stage 0", "finishing video 1 failed", 0, 6);
  fc.fail_finish_video = 1;
  run_fault(&fc);

  fc = fault_case("set-up failure at stage 2", 4, 2, 5, "stage 2", "set-up failed: cannot load", 0, 6);
  fc.fail_ctx_stage = 2;
  run_fault(&fc);

  // Hangs: detected when nothing progressed for the timeout.
  fc = fault_case("stage 1 stops responding -> timeout naming stage 1", 3, 3, 2, "stage 1", "stopped responding", 1.9, 3);
  fc.fault_kind = RING_FAULT_HANG, fc.fault_stage = 1, fc.fault_video = 0, fc.fault_step = 5;
  run_fault(&fc);

  fc = fault_case("S=1 stops responding -> watchdog timeout naming stage 0", 1, 1, 1.5, "stage 0", "stopped responding",
                  1.4, 2.5);
  fc.fault_kind = RING_FAULT_HANG, fc.fault_stage = 0, fc.fault_video = 0, fc.fault_step = 3;
  run_fault(&fc);
}

// User code that ignores the ring (a step stuck for 6 s): ring_run still returns within timeout +
// 1 s grace, names the stage, and reports the thread it had to leave running.
static void test_stuck_user_code(void) {
  FaultCase fc = fault_case("stage 1 stuck in user code -> error within timeout + grace, thread left running", 3, 2,
                            1.5, "stage 1", "stopped responding", 1.4, 2.9);
  fc.stuck_stage = 1, fc.stuck_step = 5, fc.stuck_ms = 6000, fc.want_stuck = 1;
  run_fault(&fc);
}

// Throughput with K videos over S stages vs one stage, simulated step cost (sleep: the two cores of
// CI do not limit it).
static double run_timed(int S, int K, int n_steps, double step_ms, double *handoff_ms) {
  static TD td;
  td_init(&td, 4096, n_steps, K);
  td.step_ms = step_ms;
  RingDenoiser d = td_denoiser(&td);
  RingOptions opt;
  ring_options_default(&opt);
  opt.timeout_s = 20;
  RingStats st;
  st.latency_s = NULL;
  char err[1024];
  int rc = ring_run(&d, S, K, &opt, &st, err, sizeof err);
  td_free(&td);
  if (rc) {
    printf("# ring_run failed: %s\n", err);
    return 0;
  }
  *handoff_ms = st.handoff_mean_s * 1e3;
  return st.throughput;
}

static void test_throughput(void) {
  const int S = 3, K = 6, n = 12;
  double h1, h3;
  double t1 = run_timed(1, K, n, 20, &h1), t3 = run_timed(S, K, n, 20, &h3);
  double ideal = (double)S * K / (K + S - 1), ratio = t1 > 0 ? t3 / t1 : 0;
  CHECK(ratio >= 0.9 * ideal, "throughput S=3 K=6 vs one stage >= 0.9 x S*K/(K+S-1)",
        "(1 stage %.3f videos/s, 3 stages %.3f videos/s, ratio %.3f, ideal %.3f, bound %.3f; handoff overhead %.3f / "
        "%.3f ms)", t1, t3, ratio, ideal, 0.9 * ideal, h1, h3);
}

// The NCCL id file exchange (plain files): atomic write, waiting reader, deadline, wrong size.
static const char *g_id_path;
static void *late_writer(void *p) {
  sleep_ms(150);
  char err[256];
  ring_write_id_file(g_id_path, p, 128, err, sizeof err);
  return NULL;
}
static void test_id_file(void) {
  char path[256], err[512] = "";
  snprintf(path, sizeof path, "/tmp/test_ring_id_%d", (int)getpid());
  unsigned char id[128], got[128];
  for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 11);
  remove(path);
  g_id_path = path;
  pthread_t th;
  pthread_create(&th, NULL, late_writer, id);
  double t0 = vdp_now();
  int rc = ring_read_id_file(path, got, sizeof got, 5, err, sizeof err);
  double dt = vdp_now() - t0;
  pthread_join(th, NULL);
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  CHECK(rc == 0 && memcmp(id, got, sizeof id) == 0 && dt >= 0.1 && access(tmp, F_OK) != 0,
        "NCCL id file: reader waits for rank 0's atomic write", "(rc %d after %.2f s, %s)", rc, dt, rc ? err : "same id");
  remove(path);
  t0 = vdp_now();
  rc = ring_read_id_file(path, got, sizeof got, 0.3, err, sizeof err);
  dt = vdp_now() - t0;
  CHECK(rc == -1 && strstr(err, "timed out") && strstr(err, path) && dt >= 0.29 && dt < 1.5,
        "NCCL id file: missing file -> error at the deadline", "(rc %d after %.2f s: %s)", rc, dt, err);
  FILE *f = fopen(path, "wb");
  fwrite(id, 1, 100, f);
  fclose(f);
  rc = ring_read_id_file(path, got, sizeof got, 1, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "expected 128"), "NCCL id file: wrong size rejected", "(rc %d: %s)", rc, err);
  remove(path);
}

int main(void) {
  double t0 = vdp_now();
  test_blocks();
  test_identity();
  test_latents_apart();
  test_bad_args();
  test_id_file();
  test_throughput();
  test_faults();
  test_stuck_user_code();  // last: it leaves a thread sleeping; the process exit ends it
  printf("# test_ring: %.1f s\n", vdp_now() - t0);
  return failures ? 1 : 0;
}
