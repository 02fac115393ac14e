// multi_selftest.cu — the emulated devices (SIMT_DEVICES) and the emulated NCCL (simt_nccl.cpp) tested one
// semantic at a time; compiled like selftest.cu (g++ with simt.h) and run by test/t_simt_multi.sh.
//   multi_selftest semantics            every semantic below; one "ok - " / "FAIL - " line each; exit 0 = all ok
//   multi_selftest CASE                 a planted error the emulator must report ("simt: error", exit 1):
//     cross-device-kernel  cross-device-copy
//   multi_selftest deadlock             two ranks that both only receive: with SIMT_NCCL_TIMEOUT=1 both must fail
//                                       with a deadlock report naming both waits (exit 0 when they do)
// Needs SIMT_DEVICES >= 4 (the script sets it).
#include <errno.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

static int g_fails;
#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (cond) {                                           \
      printf("ok - multi_selftest ");                     \
    } else {                                              \
      printf("FAIL - multi_selftest ");                   \
      g_fails++;                                          \
    }                                                     \
    printf(__VA_ARGS__);                                  \
    printf("\n");                                         \
    fflush(stdout);                                       \
  } while (0)

static double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__global__ void scale_kernel(float *y, const float *x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = 2 * x[i];
}
struct Params {  // a pointer inside a parameter struct
  int n;
  const float *x;
  float *y;
};
__global__ void scale_struct_kernel(const Params p) {
  int i = threadIdx.x;
  if (i < p.n) p.y[i] = 2 * p.x[i];
}

// Polls ncclCommGetAsyncError until it is not ncclInProgress (or 10 s).
static ncclResult_t wait_comm(ncclComm_t c) {
  ncclResult_t r = ncclInProgress;
  for (double t0 = now_s(); now_s() - t0 < 10; usleep(200)) {
    ncclCommGetAsyncError(c, &r);
    if (r != ncclInProgress) break;
  }
  return r;
}
// Polls the communicator and the stream until the stream is done, an error, or 10 s.
static ncclResult_t wait_stream(ncclComm_t c, cudaStream_t s) {
  for (double t0 = now_s(); now_s() - t0 < 10; usleep(200)) {
    ncclResult_t r;
    ncclCommGetAsyncError(c, &r);
    if (r != ncclSuccess && r != ncclInProgress) return r;
    if (cudaStreamQuery(s) == cudaSuccess) return ncclSuccess;
  }
  return ncclSystemError;
}

// ----- devices -----
static void devices() {
  int n = 0;
  cudaGetDeviceCount(&n);
  CHECK(n == 4, "cudaGetDeviceCount = %d with SIMT_DEVICES=4", n);
  int seen = -1;
  cudaSetDevice(2);
  std::thread([&] { cudaGetDevice(&seen); }).join();
  int mine = -1;
  cudaGetDevice(&mine);
  CHECK(mine == 2 && seen == 0, "the current device is per host thread (this thread 2: %d, a new thread 0: %d)", mine,
        seen);
  CHECK(cudaSetDevice(4) == cudaErrorInvalidDevice, "cudaSetDevice(4) of 4 devices: invalid device");
  cudaGetLastError();
  cudaDeviceProp p0, p3;
  cudaGetDeviceProperties(&p0, 0), cudaGetDeviceProperties(&p3, 3);
  CHECK(strcmp(p0.name, p3.name) != 0 && p3.pciBusID == 3, "properties per device ('%s', '%s')", p0.name, p3.name);
  float *a = NULL;
  cudaMalloc((void **)&a, 64);
  cudaPointerAttributes at;
  cudaPointerGetAttributes(&at, a + 3);
  CHECK(at.type == cudaMemoryTypeDevice && at.device == 2, "cudaMalloc memory is tagged with its device (%d)",
        at.device);
  cudaFree(a);
  // peer access: device 0's kernel may then read device 1's memory
  float *x1 = NULL, *y0 = NULL;
  cudaSetDevice(1);
  cudaMalloc((void **)&x1, 32 * sizeof(float));
  float h[32];
  for (int i = 0; i < 32; i++) h[i] = (float)i;
  cudaMemcpy(x1, h, sizeof h, cudaMemcpyHostToDevice);
  cudaSetDevice(0);
  cudaMalloc((void **)&y0, 32 * sizeof(float));
  int can = 0;
  cudaDeviceCanAccessPeer(&can, 0, 1);
  cudaError_t e = cudaDeviceEnablePeerAccess(1, 0);
  VDP_LAUNCH(scale_kernel, 1, 32, 0, 0)(y0, x1, 32);
  cudaMemcpy(h, y0, sizeof h, cudaMemcpyDeviceToHost);
  CHECK(can == 1 && e == cudaSuccess && h[31] == 62.0f,
        "with cudaDeviceEnablePeerAccess a kernel on device 0 reads device 1's memory (y[31] = %g)", h[31]);
  cudaDeviceDisablePeerAccess(1);
  cudaFree(y0);
  cudaSetDevice(1);
  cudaFree(x1);
  cudaSetDevice(0);
}

static void planted_kernel(bool in_struct) {
  float *x1 = NULL, *y0 = NULL;
  cudaSetDevice(1);
  cudaMalloc((void **)&x1, 32 * sizeof(float));
  cudaSetDevice(0);
  cudaMalloc((void **)&y0, 32 * sizeof(float));
  if (in_struct) {
    Params p{32, x1 + 4, y0};
    VDP_LAUNCH(scale_struct_kernel, 1, 32, 0, 0)(p);  // planted: cross-device-kernel
  }
}
static void planted_copy() {
  float *x1 = NULL, *y0 = NULL;
  cudaSetDevice(1);
  cudaMalloc((void **)&x1, 32 * sizeof(float));
  cudaSetDevice(0);
  cudaMalloc((void **)&y0, 32 * sizeof(float));
  cudaStream_t s;
  cudaStreamCreate(&s);
  cudaMemcpyAsync(y0, x1, 32 * sizeof(float), cudaMemcpyDeviceToDevice, s);  // planted: cross-device-copy
}

// ----- NCCL, in one process (one thread per rank, rank r on device r) -----
struct Rank {
  ncclComm_t comm = NULL;
  cudaStream_t stream = NULL;
  float *sbuf = NULL, *rbuf = NULL;
  ncclResult_t init_first = ncclSuccess, ready = ncclSuccess;
};
static const int kN = 1000;

static void rank_init(Rank &k, int r, int n, ncclUniqueId id, int blocking) {
  cudaSetDevice(r);
  cudaStreamCreateWithFlags(&k.stream, cudaStreamNonBlocking);
  cudaMalloc((void **)&k.sbuf, 2 * kN * sizeof(float));
  cudaMalloc((void **)&k.rbuf, 2 * kN * sizeof(float));
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = blocking;
  k.init_first = ncclCommInitRankConfig(&k.comm, n, id, r, &cfg);
  k.ready = k.init_first == ncclInProgress ? wait_comm(k.comm) : k.init_first;
}
static void rank_free(Rank &k, bool destroy) {
  if (k.comm) {
    if (destroy) {
      ncclCommFinalize(k.comm);
      wait_comm(k.comm);
      ncclCommDestroy(k.comm);
    } else {
      ncclCommAbort(k.comm);
    }
  }
  cudaStreamDestroy(k.stream);
  cudaFree(k.sbuf), cudaFree(k.rbuf);
}
static std::string dir_of(const ncclUniqueId &id) {
  const char *p = strchr(id.internal, '/');
  return p ? p : "";
}
static bool exists(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// A ring shift over n ranks: rank r sends [r*1000 + i] to r+1 and receives from r-1, twice in a row (the
// second message must arrive second).
static void nccl_ring(int n, int blocking) {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  std::vector<Rank> k(n);
  std::vector<int> ok(n, 0);
  std::vector<std::thread> th;
  for (int r = 0; r < n; r++)
    th.emplace_back([&, r] {
      rank_init(k[r], r, n, id, blocking);
      if (k[r].ready != ncclSuccess) return;
      std::vector<float> h(2 * kN);
      for (int i = 0; i < 2 * kN; i++) h[i] = (float)(r * 100000 + i);
      cudaMemcpy(k[r].sbuf, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
      for (int m = 0; m < 2; m++) {
        ncclGroupStart();
        ncclSend(k[r].sbuf + m * kN, kN, ncclFloat32, (r + 1) % n, k[r].comm, k[r].stream);
        ncclRecv(k[r].rbuf + m * kN, kN, ncclFloat32, (r + n - 1) % n, k[r].comm, k[r].stream);
        ncclGroupEnd();
      }
      if (wait_stream(k[r].comm, k[r].stream) != ncclSuccess) return;
      cudaMemcpy(h.data(), k[r].rbuf, h.size() * sizeof(float), cudaMemcpyDeviceToHost);
      const int p = (r + n - 1) % n;
      ok[r] = 1;
      for (int i = 0; i < 2 * kN; i++) ok[r] &= h[i] == (float)(p * 100000 + i);
    });
  for (auto &t : th) t.join();
  bool all = true, first_ok = true;
  for (int r = 0; r < n; r++) {
    all = all && ok[r];
    first_ok = first_ok && (blocking ? k[r].init_first == ncclSuccess : k[r].init_first == ncclInProgress);
  }
  CHECK(first_ok, "%s ncclCommInitRankConfig returns %s", blocking ? "blocking" : "non-blocking",
        blocking ? "ncclSuccess" : "ncclInProgress, then ncclCommGetAsyncError turns ncclSuccess");
  CHECK(all, "%d ranks (threads, devices 0..%d): grouped send/recv ring shift, two messages in order, values exact",
        n, n - 1);
  for (int r = 0; r < n; r++) {
    std::thread([&] { cudaSetDevice(r), rank_free(k[r], true); }).join();
  }
  CHECK(!exists(dir_of(id)), "finalize + destroy remove the rendezvous folder %s", dir_of(id).c_str());
}

// Stream order: a copy queued behind a pending receive waits for it; cudaStreamQuery says not ready.
static void nccl_stream_order() {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  Rank k[2];
  std::thread t1([&] { rank_init(k[1], 1, 2, id, 0); });
  rank_init(k[0], 0, 2, id, 0);
  t1.join();
  float h = -1, one = 1;
  ncclRecv(k[0].rbuf, 1, ncclFloat32, 1, k[0].comm, k[0].stream);
  cudaMemcpyAsync(&h, k[0].rbuf, sizeof h, cudaMemcpyDeviceToHost, k[0].stream);
  usleep(20000);
  const cudaError_t q = cudaStreamQuery(k[0].stream);
  const float before = h;
  std::thread([&] {
    cudaSetDevice(1);
    cudaMemcpy(k[1].sbuf, &one, sizeof one, cudaMemcpyHostToDevice);
    ncclSend(k[1].sbuf, 1, ncclFloat32, 0, k[1].comm, k[1].stream);
    wait_stream(k[1].comm, k[1].stream);
  }).join();
  ncclResult_t r = wait_stream(k[0].comm, k[0].stream);
  CHECK(q == cudaErrorNotReady && before == -1 && r == ncclSuccess && h == 1,
        "a copy behind a pending ncclRecv waits for it (query %s, value %g before, %g after)", cudaGetErrorName(q),
        before, h);
  std::thread([&] { cudaSetDevice(1), rank_free(k[1], true); }).join();
  rank_free(k[0], true);
}

// A planted mismatch: rank 0 sends 4 floats, rank 1 receives 5; both must fail naming both operations.
static void nccl_mismatch() {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  Rank k[2];
  ncclResult_t res[2];
  std::string msg[2];
  std::vector<std::thread> th;
  for (int r = 0; r < 2; r++)
    th.emplace_back([&, r] {
      rank_init(k[r], r, 2, id, 0);
      if (r == 0) ncclSend(k[r].sbuf, 4, ncclFloat32, 1, k[r].comm, k[r].stream);  // planted: mismatched send
      else ncclRecv(k[r].rbuf, 5, ncclFloat32, 0, k[r].comm, k[r].stream);
      res[r] = wait_stream(k[r].comm, k[r].stream);
      msg[r] = ncclGetLastError(k[r].comm);
    });
  for (auto &t : th) t.join();
  for (int r = 0; r < 2; r++)
    CHECK(res[r] == ncclInvalidUsage && msg[r].find("rank 0") != std::string::npos &&
              msg[r].find("rank 1") != std::string::npos && msg[r].find("count 4") != std::string::npos &&
              msg[r].find("count 5") != std::string::npos,
          "planted mismatched send (4 floats into a 5-float receive): rank %d fails: %s", r, msg[r].c_str());
  for (int r = 0; r < 2; r++) std::thread([&] { cudaSetDevice(r), rank_free(k[r], false); }).join();
  CHECK(!exists(dir_of(id)), "abort after an error removes the rendezvous folder");
}

// Abort: rank 1 aborts while rank 0 waits to receive from it; rank 0's wait ends with an error naming rank 1.
static void nccl_abort() {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  Rank k[2];
  std::thread t1([&] { rank_init(k[1], 1, 2, id, 1); });
  rank_init(k[0], 0, 2, id, 1);
  t1.join();
  ncclRecv(k[0].rbuf, 8, ncclFloat32, 1, k[0].comm, k[0].stream);
  double t0 = now_s();
  std::thread([&] { usleep(100000), cudaSetDevice(1), ncclCommAbort(k[1].comm), k[1].comm = NULL; }).join();
  ncclResult_t r = wait_stream(k[0].comm, k[0].stream);
  const double dt = now_s() - t0;
  std::string m = ncclGetLastError(k[0].comm);
  CHECK(r == ncclRemoteError && m.find("rank 1 aborted") != std::string::npos && dt < 2,
        "ncclCommAbort on rank 1 unblocks rank 0's ncclRecv in %.2f s: %s", dt, m.c_str());
  std::thread([&] { cudaSetDevice(1), rank_free(k[1], false); }).join();
  rank_free(k[0], false);
}

// Usage checks: a host buffer, another device's buffer, a peer out of range.
static void nccl_usage() {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  Rank k;
  rank_init(k, 0, 1, id, 1);
  float host[4];
  ncclResult_t a = ncclSend(host, 4, ncclFloat32, 0, k.comm, k.stream);
  std::string ma = ncclGetLastError(k.comm);
  ncclResult_t b = ncclSend(k.sbuf, 4, ncclFloat32, 1, k.comm, k.stream);
  CHECK(a == ncclInvalidArgument && ma.find("device memory") != std::string::npos && b == ncclInvalidArgument,
        "ncclSend refuses host memory (%s) and a peer outside the communicator", ma.c_str());
  // self send/recv (one rank: what a one-stage ring does)
  float v = 7, w = 0;
  cudaMemcpy(k.sbuf, &v, 4, cudaMemcpyHostToDevice);
  ncclGroupStart();
  ncclSend(k.sbuf, 1, ncclFloat32, 0, k.comm, k.stream);
  ncclRecv(k.rbuf, 1, ncclFloat32, 0, k.comm, k.stream);
  ncclGroupEnd();
  ncclResult_t r = wait_stream(k.comm, k.stream);
  cudaMemcpy(&w, k.rbuf, 4, cudaMemcpyDeviceToHost);
  CHECK(r == ncclSuccess && w == 7, "one rank sends to itself (%g)", w);
  rank_free(k, true);
}

// Two processes (fork), blocking init, one exchange each way; then a process killed while its peer waits.
static void nccl_processes() {
  for (int kill_one = 0; kill_one < 2; kill_one++) {
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    int pipefd[2];
    if (pipe(pipefd)) return;
    pid_t pid[2];
    for (int r = 0; r < 2; r++) {
      pid[r] = fork();
      if (pid[r] == 0) {
        Rank k;
        rank_init(k, r, 2, id, 1);
        if (k.ready != ncclSuccess) _exit(3);
        if (kill_one && r == 1) pause();  // to be killed
        float v = (float)(10 + r), w = 0;
        cudaMemcpy(k.sbuf, &v, 4, cudaMemcpyHostToDevice);
        ncclGroupStart();
        ncclSend(k.sbuf, 1, ncclFloat32, 1 - r, k.comm, k.stream);
        ncclRecv(k.rbuf, 1, ncclFloat32, 1 - r, k.comm, k.stream);
        ncclGroupEnd();
        ncclResult_t res = wait_stream(k.comm, k.stream);
        if (kill_one) {
          std::string m = ncclGetLastError(k.comm);
          if (write(pipefd[1], m.c_str(), m.size()) < 0) {}
          rank_free(k, false);  // abort: also removes the killed rank's socket and the folder
          _exit(res == ncclRemoteError ? 0 : 4);
        }
        cudaMemcpy(&w, k.rbuf, 4, cudaMemcpyDeviceToHost);
        rank_free(k, true);
        _exit(res == ncclSuccess && w == (float)(11 - r) ? 0 : 5);
      }
    }
    close(pipefd[1]);
    int st[2] = {0, 0};
    if (kill_one) {
      usleep(300000);
      kill(pid[1], SIGKILL);
    }
    waitpid(pid[0], &st[0], 0), waitpid(pid[1], &st[1], 0);
    char m[600] = {0};
    if (read(pipefd[0], m, sizeof m - 1) < 0) {}
    close(pipefd[0]);
    if (!kill_one)
      CHECK(WIFEXITED(st[0]) && !WEXITSTATUS(st[0]) && WIFEXITED(st[1]) && !WEXITSTATUS(st[1]) && !exists(dir_of(id)),
            "two processes: blocking init, exchange, finalize, folder removed (status %d, %d)", st[0], st[1]);
    else
      CHECK(WIFEXITED(st[0]) && !WEXITSTATUS(st[0]) && strstr(m, "rank 1 closed its connection") && !exists(dir_of(id)),
            "a rank killed with SIGKILL fails its peer's exchange: %s; folder removed", m);
  }
}

// Both ranks only receive: a deadlock, reported after SIMT_NCCL_TIMEOUT naming both waits.
static int nccl_deadlock() {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  Rank k[2];
  ncclResult_t res[2];
  std::string msg[2];
  double dt[2];
  std::vector<std::thread> th;
  for (int r = 0; r < 2; r++)
    th.emplace_back([&, r] {
      rank_init(k[r], r, 2, id, 0);
      double t0 = now_s();
      ncclRecv(k[r].rbuf, 3, ncclFloat32, 1 - r, k[r].comm, k[r].stream);
      res[r] = wait_stream(k[r].comm, k[r].stream);
      dt[r] = now_s() - t0;
      msg[r] = ncclGetLastError(k[r].comm);
    });
  for (auto &t : th) t.join();
  for (int r = 0; r < 2; r++)
    CHECK(res[r] == ncclSystemError && msg[r].find("deadlock") != std::string::npos &&
              msg[r].find("ncclRecv #0 from rank 1 (count 3, float32) on rank 0") != std::string::npos &&
              msg[r].find("ncclRecv #0 from rank 0 (count 3, float32) on rank 1") != std::string::npos,
          "deadlock reported to rank %d after %.1f s: %s", r, dt[r], msg[r].c_str());
  for (int r = 0; r < 2; r++) std::thread([&] { cudaSetDevice(r), rank_free(k[r], false); }).join();
  return g_fails ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "semantics";
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(mode, "semantics")) {
    devices();
    nccl_ring(3, 0);
    nccl_ring(2, 1);
    nccl_stream_order();
    nccl_usage();
    nccl_mismatch();
    nccl_abort();
    nccl_processes();
    return g_fails ? 1 : 0;
  }
  if (!strcmp(mode, "deadlock")) return nccl_deadlock();
  if (!strcmp(mode, "cross-device-kernel")) planted_kernel(true);
  else if (!strcmp(mode, "cross-device-copy")) planted_copy();
  else {
    fprintf(stderr, "usage: multi_selftest semantics|deadlock|cross-device-kernel|cross-device-copy\n");
    return 2;
  }
  return 0;  // not reported: the script sees status 0
}
