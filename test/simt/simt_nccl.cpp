// simt_nccl.cpp — emulated NCCL for the SIMT emulator: the calls vdp's stage ring uses (point-to-point
// send/recv in groups, non-blocking communicators, abort, finalize), with the checks real NCCL does not make.
//
// Rendezvous. ncclGetUniqueId creates a private folder (mkdtemp, mode 0700, under $TMPDIR or /tmp) and the id
// names it. Every rank — a thread of this process or another process on this machine — listens on a Unix
// socket <folder>/r<rank>.sock and connects to every other rank's; a rank sends on the connection it opened
// and receives on the one its peer opened. No network is used. A communicator is ready when it is connected
// both ways to every peer; ncclCommInitRankConfig blocks until then, or with config->blocking = 0 returns
// ncclInProgress at once and ncclCommGetAsyncError says ncclInProgress until it is ready, as NCCL does.
//
// Matching. The k-th ncclSend from rank a to rank b meets the k-th ncclRecv that b posts for a (NCCL's
// order rule); the count and the type must agree, otherwise both ranks fail with a message naming both
// operations (real NCCL would hang or corrupt memory). A send completes when the receiver has matched it
// (rendezvous: stricter than NCCL's eager small messages, so an order that only works with eager buffering
// shows up as a deadlock here). Buffers must be device memory of the communicator's device, streams the
// device's. ncclGroupStart/End collect the operations of a group and post them together.
//
// Streams. An ncclSend/ncclRecv is pending on its stream until it completes: later copies on that stream
// are deferred behind it, cudaStreamQuery says cudaErrorNotReady, kernel launches and synchronizations
// wait (see simt_rt.h). This is what lets a caller poll ncclCommGetAsyncError and cudaStreamQuery.
//
// Faults. A peer that goes away without finalizing (exit, SIGKILL, ncclCommAbort) closes its sockets:
// the survivors' pending operations with it fail and ncclCommGetAsyncError returns ncclRemoteError at once,
// naming the peer; ncclCommAbort fails this rank's pending operations. A deadlock — every rank of the
// communicator has operations pending and none completed for SIMT_NCCL_TIMEOUT seconds (default 60) — fails
// them with ncclSystemError and a message listing what every rank waits for (each rank publishes its
// oldest pending operation in a shared-memory file <folder>/state).
//
// Not emulated: collectives, bandwidth and latency (the bytes go through a socket), NVLink / InfiniBand
// topology and NCCL's own bugs and timeouts. See README "Multi-GPU under the emulator".
#include <cuda_runtime.h>
#include <errno.h>
#include <fcntl.h>
#include <nccl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "simt_rt.h"

namespace {
constexpr char kIdMagic[] = "simt-nccl-id:";
constexpr uint32_t kMsgMagic = 0x4c43434eu;  // "NCCL"
enum { M_HELLO = 1, M_DATA, M_ACK, M_NACK, M_BYE, M_ABORT };
enum { OP_SEND, OP_RECV };
enum { OP_PENDING, OP_DONE, OP_FAILED };

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
double timeout_s() {
  static const double t = [] {
    const char *s = getenv("SIMT_NCCL_TIMEOUT");
    double v = s && *s ? atof(s) : 60;
    return v > 0 ? v : 60;
  }();
  return t;
}
size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}
const char *type_name(int t) {
  static const char *n[] = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64",
                            "bfloat16", "fp8e4m3", "fp8e5m2"};
  return t >= 0 && t < 12 ? n[t] : "invalid type";
}

struct MsgHdr {
  uint32_t magic, kind;
  int32_t from, nranks;
  uint64_t seq, count;
  int32_t type, pad;
  uint64_t bytes;  // payload bytes following the header
};

struct Op {
  int kind, peer;
  uint64_t seq;  // k: the k-th send to / recv from this peer
  void *buf;
  size_t count, bytes;
  ncclDataType_t type;
  cudaStream_t stream;
  std::atomic<int> state{OP_PENDING};
  double posted;
};
using OpP = std::shared_ptr<Op>;

struct Unexpected {  // a send that arrived before its receive was posted
  uint64_t seq, count;
  int type;
  std::vector<char> data;
};

struct Peer {
  int out_fd = -1, in_fd = -1;     // out: we connected (we send DATA, read ACK); in: they did
  uint64_t sends = 0, recvs = 0;   // operations posted so far (the next seq)
  std::deque<OpP> sends_waiting;   // sent, not yet acknowledged
  std::deque<OpP> recvs_posted;    // posted, not yet matched
  std::deque<Unexpected> unexpected;
  bool gone = false, bye = false;  // closed / finalized
  std::string gone_why;
  std::mutex wmu;                  // one writer at a time on out_fd
};

// One slot per rank in <folder>/state: what a rank waits for, for the deadlock report.
struct Slot {
  std::atomic<int64_t> pending;       // operations pending
  std::atomic<int64_t> progress_ns;   // last post or completion (CLOCK_MONOTONIC, machine-wide)
  std::atomic<int32_t> pid, dev;
  char what[200];                     // its oldest pending operation
};
// <folder>/state: a header, then one Slot per rank.
struct alignas(64) Shared {
  std::atomic<int32_t> deadlock;      // set by the rank that found a deadlock (after deadlock_msg)
  char deadlock_msg[2048];
};
}  // namespace

struct ncclComm {
  int rank, nranks, dev;
  bool blocking;
  std::string dir;
  int listen_fd = -1, wake[2] = {-1, -1};
  std::vector<std::unique_ptr<Peer>> peers;
  std::mutex mu;                      // everything below and the peers' queues
  std::condition_variable cv;
  ncclResult_t async = ncclInProgress;
  bool ready = false, stop = false, finalizing = false;
  std::string last_error;
  std::thread progress;
  Shared *shared = nullptr;           // the mapping of <folder>/state
  Slot *slots = nullptr;              // shared + 1
  size_t slots_bytes = 0;
  double init_start;
  std::vector<OpP> pending;           // every pending operation (for the deadlock report and abort)
};

namespace {
thread_local std::string t_last_error_copy;
thread_local int t_group_depth;
thread_local std::vector<std::pair<ncclComm_t, OpP>> t_group;
std::mutex g_global_err_mu;
std::string g_global_err;

void set_global_error(const char *fmt, ...) {
  char b[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lk(g_global_err_mu);
  g_global_err = b;
}

// Records the first error of the communicator (caller holds c->mu).
void comm_fail(ncclComm_t c, ncclResult_t r, const std::string &msg) {
  if (c->async == ncclSuccess || c->async == ncclInProgress) {
    c->async = r;
    c->last_error = msg;
    fprintf(stderr, "simt: nccl rank %d: %s\n", c->rank, msg.c_str());
  }
  c->cv.notify_all();
}
std::string op_str(const Op &o, int rank) {
  char b[200];
  snprintf(b, sizeof b, "%s #%llu %s rank %d (count %zu, %s) on rank %d", o.kind == OP_SEND ? "ncclSend" : "ncclRecv",
           (unsigned long long)o.seq, o.kind == OP_SEND ? "to" : "from", o.peer, o.count, type_name(o.type), rank);
  return b;
}
void op_finish(ncclComm_t c, const OpP &o, int state) {  // caller holds c->mu
  o->state.store(state);
  for (size_t i = 0; i < c->pending.size(); i++)
    if (c->pending[i] == o) {
      c->pending.erase(c->pending.begin() + (long)i);
      break;
    }
  if (c->slots) c->slots[c->rank].progress_ns.store((int64_t)(now_s() * 1e9));
  c->cv.notify_all();
}
void publish(ncclComm_t c) {  // caller holds c->mu
  if (!c->slots) return;
  Slot &s = c->slots[c->rank];
  s.pending.store((int64_t)c->pending.size());
  if (!c->pending.empty()) snprintf(s.what, sizeof s.what, "%s", op_str(*c->pending.front(), c->rank).c_str());
}

bool write_all(int fd, const void *p, size_t n) {
  const char *b = (const char *)p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w, n -= (size_t)w;
  }
  return true;
}
bool read_all(int fd, void *p, size_t n) {
  char *b = (char *)p;
  while (n) {
    ssize_t r = recv(fd, b, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r, n -= (size_t)r;
  }
  return true;
}
bool send_msg(int fd, int kind, int from, int nranks, uint64_t seq, uint64_t count, int type, const void *data,
              size_t bytes) {
  MsgHdr h{kMsgMagic, (uint32_t)kind, from, nranks, seq, count, type, 0, bytes};
  return write_all(fd, &h, sizeof h) && (!bytes || write_all(fd, data, bytes));
}
std::string sock_path(ncclComm_t c, int r) { return c->dir + "/r" + std::to_string(r) + ".sock"; }

// A peer is gone (its connection closed, or it said ABORT): our pending operations with it fail; an error
// unless it had finalized and nothing was pending with it.
void peer_gone(ncclComm_t c, int p, const char *why) {  // caller holds c->mu
  Peer &pe = *c->peers[p];
  if (pe.gone) return;
  pe.gone = true;
  pe.gone_why = why;
  if (c->stop) return;  // we are the ones leaving
  std::string waiting;
  for (auto &o : pe.sends_waiting) waiting += "; waiting: " + op_str(*o, c->rank), op_finish(c, o, OP_FAILED);
  for (auto &o : pe.recvs_posted) waiting += "; waiting: " + op_str(*o, c->rank), op_finish(c, o, OP_FAILED);
  pe.sends_waiting.clear(), pe.recvs_posted.clear();
  if (pe.bye && waiting.empty()) return;
  char b[300];
  snprintf(b, sizeof b, "rank %d %s", p,
           pe.bye ? "finalized its communicator with operations still pending here" : why);
  comm_fail(c, ncclRemoteError, b + waiting);
  publish(c);
}

// Matches the arrived send (seq, count, type, data) from peer p with the receive r. Caller holds c->mu.
void match(ncclComm_t c, int p, const OpP &r, uint64_t seq, uint64_t count, int type, const void *data) {
  Peer &pe = *c->peers[p];
  if (count != r->count || type != (int)r->type || seq != r->seq) {
    char b[400];
    snprintf(b, sizeof b,
             "mismatched send/recv: ncclSend #%llu from rank %d to rank %d has count %llu, %s; the matching "
             "ncclRecv #%llu on rank %d from rank %d has count %zu, %s (real NCCL would hang or corrupt memory)",
             (unsigned long long)seq, p, c->rank, (unsigned long long)count, type_name(type),
             (unsigned long long)r->seq, c->rank, p, r->count, type_name(r->type));
    op_finish(c, r, OP_FAILED);
    comm_fail(c, ncclInvalidUsage, b);
    if (p == c->rank) {  // self: the send fails too
      if (!pe.sends_waiting.empty()) op_finish(c, pe.sends_waiting.front(), OP_FAILED), pe.sends_waiting.pop_front();
    } else {
      send_msg(pe.in_fd, M_NACK, c->rank, c->nranks, seq, r->count, r->type, NULL, 0);
    }
    return;
  }
  if (r->bytes) memcpy(r->buf, data, r->bytes);
  op_finish(c, r, OP_DONE);
  if (p == c->rank) {
    if (!pe.sends_waiting.empty()) op_finish(c, pe.sends_waiting.front(), OP_DONE), pe.sends_waiting.pop_front();
  } else {
    send_msg(pe.in_fd, M_ACK, c->rank, c->nranks, seq, count, type, NULL, 0);
  }
}
// A send from p arrived (over the socket, or from ourselves). Caller holds c->mu.
void deliver(ncclComm_t c, int p, uint64_t seq, uint64_t count, int type, const void *data, size_t bytes) {
  Peer &pe = *c->peers[p];
  if (!pe.recvs_posted.empty()) {
    OpP r = pe.recvs_posted.front();
    pe.recvs_posted.pop_front();
    match(c, p, r, seq, count, type, data);
  } else {
    Unexpected u{seq, count, type, std::vector<char>((const char *)data, (const char *)data + bytes)};
    pe.unexpected.push_back(std::move(u));
  }
  publish(c);
}

// Reads one message from peer p's fd (in or out). Caller does not hold c->mu.
void on_readable(ncclComm_t c, int p, int fd) {
  MsgHdr h;
  bool ok = read_all(fd, &h, sizeof h) && h.magic == kMsgMagic;
  std::vector<char> data;
  if (ok && h.bytes) {
    data.resize(h.bytes);
    ok = read_all(fd, data.data(), h.bytes);
  }
  std::lock_guard<std::mutex> lk(c->mu);
  Peer &pe = *c->peers[p];
  if (!ok) {  // a peer that leaves closes both connections; the one it sends on carries its BYE / ABORT
    const bool in = fd == pe.in_fd;
    if (in) pe.in_fd = -1;
    else pe.out_fd = -1;
    close(fd);
    if (in) peer_gone(c, p, "closed its connection (its process exited or was killed)");
    return;
  }
  switch (h.kind) {
    case M_DATA: deliver(c, p, h.seq, h.count, h.type, data.data(), data.size()); break;
    case M_ACK:
    case M_NACK:
      if (!pe.sends_waiting.empty()) {
        OpP s = pe.sends_waiting.front();
        pe.sends_waiting.pop_front();
        if (h.kind == M_ACK) {
          op_finish(c, s, OP_DONE);
        } else {
          char b[400];
          snprintf(b, sizeof b,
                   "mismatched send/recv: ncclSend #%llu from rank %d to rank %d has count %zu, %s; the matching "
                   "ncclRecv #%llu on rank %d from rank %d has count %llu, %s (real NCCL would hang or corrupt memory)",
                   (unsigned long long)s->seq, c->rank, p, s->count, type_name(s->type), (unsigned long long)h.seq, p,
                   c->rank, (unsigned long long)h.count, type_name(h.type));
          op_finish(c, s, OP_FAILED);
          comm_fail(c, ncclInvalidUsage, b);
        }
      }
      publish(c);
      break;
    case M_BYE: pe.bye = true; break;
    case M_ABORT: peer_gone(c, p, "aborted its communicator"); break;
    default: break;
  }
}

// Connection set-up: the missing outgoing connections, incoming ones and their hellos. Returns true when
// connected both ways to every peer.
bool try_connect(ncclComm_t c) {
  bool all = true;
  for (int p = 0; p < c->nranks; p++) {
    if (p == c->rank) continue;
    Peer &pe = *c->peers[p];
    if (pe.in_fd < 0) all = false;
    if (pe.out_fd >= 0) continue;
    all = false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path(c, p).c_str());
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send_msg(fd, M_HELLO, c->rank, c->nranks, 0, 0, 0, NULL, 0)) {
      pe.out_fd = fd;
    } else if (fd >= 0) {
      close(fd);
    }
  }
  return all;
}
void accept_one(ncclComm_t c) {
  int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  MsgHdr h;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!read_all(fd, &h, sizeof h) || h.magic != kMsgMagic || h.kind != M_HELLO) {
    close(fd);
    return;
  }
  tv.tv_sec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::lock_guard<std::mutex> lk(c->mu);
  if (h.nranks != c->nranks || h.from < 0 || h.from >= c->nranks || h.from == c->rank ||
      c->peers[h.from]->in_fd >= 0) {
    char b[200];
    snprintf(b, sizeof b, "ncclCommInitRankConfig: rank %d joined with nranks %d, rank %d with nranks %d (or a rank "
             "joined twice)", h.from, h.nranks, c->rank, c->nranks);
    comm_fail(c, ncclInvalidUsage, b);
    close(fd);
    return;
  }
  c->peers[h.from]->in_fd = fd;
}

// The deadlock check: every rank has pending operations and none progressed for the timeout.
void check_deadlock(ncclComm_t c) {  // caller holds c->mu
  if (!c->slots || c->pending.empty()) return;
  std::string m;
  if (c->shared->deadlock.load()) {  // another rank found it
    m = c->shared->deadlock_msg;
  } else {
    const double now = now_s();
    double newest = 0;
    for (int r = 0; r < c->nranks; r++) {
      Slot &s = c->slots[r];
      if (s.pending.load() <= 0 || c->peers[r]->gone) return;
      newest = std::max(newest, s.progress_ns.load() * 1e-9);
    }
    if (now - newest < timeout_s()) return;
    m = "deadlock: every rank has waited " + std::to_string((int)(now - newest)) +
        " s (SIMT_NCCL_TIMEOUT) without progress:";
    for (int r = 0; r < c->nranks; r++) m += std::string(" [rank ") + std::to_string(r) + ": " + c->slots[r].what + "]";
    snprintf(c->shared->deadlock_msg, sizeof c->shared->deadlock_msg, "%s", m.c_str());
    c->shared->deadlock.store(1);
  }
  std::vector<OpP> v = c->pending;
  for (auto &o : v) op_finish(c, o, OP_FAILED);
  for (auto &pe : c->peers) pe->sends_waiting.clear(), pe->recvs_posted.clear();
  comm_fail(c, ncclSystemError, m);
  publish(c);
}

void progress_loop(ncclComm_t c) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c->mu);
      if (c->stop) return;
      if (!c->ready && c->async == ncclInProgress) {
        lk.unlock();
        bool all = try_connect(c);
        lk.lock();
        if (all && c->async == ncclInProgress) {
          // NCCL refuses two ranks on one GPU (emulated devices of different processes are the same GPUs)
          for (int p = 0; p < c->nranks; p++)
            if (p != c->rank && c->slots[p].dev.load() == c->dev)
              comm_fail(c, ncclInvalidUsage,
                        "ncclCommInitRankConfig: ranks " + std::to_string(std::min(p, c->rank)) + " and " +
                            std::to_string(std::max(p, c->rank)) + " are both on device " + std::to_string(c->dev) +
                            " (NCCL rejects two ranks on one GPU; give each rank its own device)");
          if (c->async == ncclInProgress) c->ready = true, c->async = ncclSuccess;
          c->cv.notify_all();
        } else if (!all && now_s() - c->init_start > timeout_s()) {
          std::string missing;
          for (int p = 0; p < c->nranks; p++)
            if (p != c->rank && (c->peers[p]->out_fd < 0 || c->peers[p]->in_fd < 0)) missing += " " + std::to_string(p);
          comm_fail(c, ncclSystemError,
                    "ncclCommInitRankConfig: rank " + std::to_string(c->rank) + ": ranks" + missing + " did not join within " +
                        std::to_string((int)timeout_s()) + " s (SIMT_NCCL_TIMEOUT)");
        }
      }
      check_deadlock(c);
    }
    std::vector<struct pollfd> fds;
    std::vector<int> who;
    fds.push_back({c->wake[0], POLLIN, 0}), who.push_back(-2);
    fds.push_back({c->listen_fd, POLLIN, 0}), who.push_back(-1);
    {
      std::lock_guard<std::mutex> lk(c->mu);
      for (int p = 0; p < c->nranks; p++) {
        if (p == c->rank) continue;
        Peer &pe = *c->peers[p];
        if (pe.in_fd >= 0) fds.push_back({pe.in_fd, POLLIN, 0}), who.push_back(p);
        if (pe.out_fd >= 0) fds.push_back({pe.out_fd, POLLIN, 0}), who.push_back(p);
      }
    }
    int n = poll(fds.data(), fds.size(), c->ready ? 100 : 10);
    if (n <= 0) continue;
    for (size_t i = 0; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      if (who[i] == -2) {
        char b[64];
        if (read(c->wake[0], b, sizeof b) < 0) {}
      } else if (who[i] == -1) {
        accept_one(c);
      } else {
        on_readable(c, who[i], fds[i].fd);
      }
    }
  }
}

// Removes this rank's socket and those of peers that went away; the last one out removes the folder.
void cleanup_files(ncclComm_t c) {
  unlink(sock_path(c, c->rank).c_str());
  for (int p = 0; p < c->nranks; p++)
    if (p != c->rank && c->peers[p]->gone && !c->peers[p]->bye) unlink(sock_path(c, p).c_str());
  bool others = false;
  for (int p = 0; p < c->nranks; p++)
    if (access(sock_path(c, p).c_str(), F_OK) == 0) others = true;
  if (!others) {
    unlink((c->dir + "/state").c_str());
    rmdir(c->dir.c_str());
  }
}

// Stops the progress thread, closes everything, frees the communicator.
void teardown(ncclComm_t c, bool aborting) {
  {
    std::lock_guard<std::mutex> lk(c->mu);
    c->stop = true;
    if (aborting) {
      std::vector<OpP> v = c->pending;
      for (auto &o : v) op_finish(c, o, OP_FAILED);
      if (c->async == ncclSuccess || c->async == ncclInProgress) c->async = ncclInvalidUsage, c->last_error = "aborted";
      publish(c);
    }
  }
  if (c->wake[1] >= 0 && write(c->wake[1], "x", 1) < 0) {}
  if (c->progress.joinable()) c->progress.join();
  for (int p = 0; p < c->nranks; p++) {
    Peer &pe = *c->peers[p];
    if (pe.out_fd >= 0) {
      send_msg(pe.out_fd, aborting ? M_ABORT : M_BYE, c->rank, c->nranks, 0, 0, 0, NULL, 0);
      close(pe.out_fd);
    }
    if (pe.in_fd >= 0) close(pe.in_fd);
  }
  if (c->listen_fd >= 0) close(c->listen_fd);
  if (c->wake[0] >= 0) close(c->wake[0]), close(c->wake[1]);
  if (c->slots) {
    c->slots[c->rank].pending.store(0);
    munmap(c->shared, c->slots_bytes);
  }
  cleanup_files(c);
  delete c;
}

ncclResult_t post(ncclComm_t c, const OpP &o);

// ----- the streams' pending work (simt_rt.h) -----
struct StreamWork {
  OpP op;                   // an NCCL operation, or
  void *dst = nullptr;      // a deferred copy
  const void *src = nullptr;
  size_t n = 0;
};
std::mutex g_stream_mu;
std::map<cudaStream_t, std::deque<StreamWork>> g_streams;

bool stream_ready_locked(cudaStream_t s) {
  auto it = g_streams.find(s);
  if (it == g_streams.end()) return true;
  auto &q = it->second;
  while (!q.empty()) {
    StreamWork &w = q.front();
    if (w.op) {
      if (w.op->state.load() == OP_PENDING) return false;
    } else if (w.n) {
      memmove(w.dst, w.src, w.n);
    }
    q.pop_front();
  }
  g_streams.erase(it);
  return true;
}
}  // namespace

namespace simt {
bool stream_defer_copy(cudaStream_t s, void *dst, const void *src, size_t n) {
  std::lock_guard<std::mutex> lk(g_stream_mu);
  if (stream_ready_locked(s)) return false;
  StreamWork w;
  w.dst = dst, w.src = src, w.n = n;
  g_streams[s].push_back(w);
  return true;
}
bool stream_ready(cudaStream_t s) {
  std::lock_guard<std::mutex> lk(g_stream_mu);
  return stream_ready_locked(s);
}
void stream_drain(cudaStream_t s) {
  for (int i = 0; !stream_ready(s); i++) usleep(i < 100 ? 20 : 200);
}
void stream_drain_device(int dev) {
  for (;;) {
    std::vector<cudaStream_t> v;
    {
      std::lock_guard<std::mutex> lk(g_stream_mu);
      for (auto &kv : g_streams)
        if (stream_device(kv.first) == dev) v.push_back(kv.first);
    }
    if (v.empty()) return;
    for (cudaStream_t s : v) stream_drain(s);
  }
}
void stream_forget(cudaStream_t s) {
  std::lock_guard<std::mutex> lk(g_stream_mu);
  g_streams.erase(s);
}
}  // namespace simt

namespace {
ncclResult_t post(ncclComm_t c, const OpP &o) {
  std::unique_lock<std::mutex> lk(c->mu);
  if (c->async != ncclSuccess) {
    if (c->async == ncclInProgress) {
      c->last_error = "ncclSend/ncclRecv before the communicator is ready (ncclCommGetAsyncError says ncclInProgress)";
      return ncclInvalidUsage;
    }
    return c->async;
  }
  Peer &pe = *c->peers[o->peer];
  o->posted = now_s();
  c->pending.push_back(o);
  if (c->slots) c->slots[c->rank].progress_ns.store((int64_t)(now_s() * 1e9));
  {
    std::lock_guard<std::mutex> sl(g_stream_mu);
    StreamWork w;
    w.op = o;
    g_streams[o->stream].push_back(w);
  }
  if (o->kind == OP_RECV) {
    o->seq = pe.recvs++;
    if (!pe.unexpected.empty()) {
      Unexpected u = std::move(pe.unexpected.front());
      pe.unexpected.pop_front();
      match(c, o->peer, o, u.seq, u.count, u.type, u.data.data());
    } else if (pe.gone && !pe.bye) {
      op_finish(c, o, OP_FAILED);
    } else {
      pe.recvs_posted.push_back(o);
    }
    publish(c);
    return ncclSuccess;
  }
  o->seq = pe.sends++;
  pe.sends_waiting.push_back(o);
  publish(c);
  if (o->peer == c->rank) {
    deliver(c, c->rank, o->seq, o->count, o->type, o->buf, o->bytes);
    return ncclSuccess;
  }
  int fd = pe.out_fd;
  lk.unlock();
  bool ok;
  {
    std::lock_guard<std::mutex> wl(pe.wmu);
    ok = fd >= 0 && send_msg(fd, M_DATA, c->rank, c->nranks, o->seq, o->count, o->type, o->buf, o->bytes);
  }
  if (!ok) {
    lk.lock();
    peer_gone(c, o->peer, "closed its connection (its process exited or was killed)");
  }
  return ncclSuccess;
}

ncclResult_t make_op(int kind, const void *buf, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                     cudaStream_t s) {
  const char *what = kind == OP_SEND ? "ncclSend" : "ncclRecv";
  if (!c) {
    set_global_error("%s: NULL communicator", what);
    return ncclInvalidArgument;
  }
  auto bad = [&](const char *fmt, auto... a) {
    char b[400];
    snprintf(b, sizeof b, fmt, a...);
    std::lock_guard<std::mutex> lk(c->mu);
    c->last_error = std::string(what) + " on rank " + std::to_string(c->rank) + ": " + b;
    fprintf(stderr, "simt: nccl: %s\n", c->last_error.c_str());
    return ncclInvalidArgument;
  };
  if (peer < 0 || peer >= c->nranks) return bad("peer %d is not a rank of this %d-rank communicator", peer, c->nranks);
  if (type_size(type) == 0) return bad("invalid datatype %d", (int)type);
  const size_t bytes = count * type_size(type);
  if (bytes) {
    int d0 = simt::devmem_device(buf), d1 = simt::devmem_device((const char *)buf + bytes - 1);
    if (d0 < 0 || d1 != d0)
      return bad("buffer %p (%zu bytes) is not (all) device memory: NCCL buffers must be cudaMalloc'd on the "
                 "communicator's device %d", buf, bytes, c->dev);
    if (d0 != c->dev)
      return bad("buffer %p is device %d's memory, the communicator is on device %d", buf, d0, c->dev);
  }
  int sd = simt::stream_device(s);
  if (sd != c->dev) return bad("the stream belongs to device %d, the communicator to device %d", sd, c->dev);
  OpP o = std::make_shared<Op>();
  o->kind = kind, o->peer = peer, o->buf = const_cast<void *>(buf), o->count = count, o->bytes = bytes;
  o->type = type, o->stream = s;
  if (t_group_depth > 0) {
    t_group.emplace_back(c, o);
    return ncclSuccess;
  }
  return post(c, o);
}
}  // namespace

// =============================================================================================================
// The NCCL API (nccl.h signatures)
// =============================================================================================================
extern "C" {
ncclResult_t ncclGetVersion(int *version) {
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}
const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (simt nccl)";
    case ncclSystemError: return "unhandled system error (simt nccl: deadlock, timeout or socket failure)";
    case ncclInternalError: return "internal error (simt nccl)";
    case ncclInvalidArgument: return "invalid argument (simt nccl)";
    case ncclInvalidUsage: return "invalid usage (simt nccl)";
    case ncclRemoteError: return "remote process exited or there was a network error (simt nccl)";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code (simt nccl)";
  }
}
const char *ncclGetLastError(ncclComm_t comm) {
  if (!comm) {
    std::lock_guard<std::mutex> lk(g_global_err_mu);
    t_last_error_copy = g_global_err;
  } else {
    std::lock_guard<std::mutex> lk(comm->mu);
    t_last_error_copy = comm->last_error;
  }
  return t_last_error_copy.c_str();
}
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  const char *t = getenv("TMPDIR");
  char dir[100];
  snprintf(dir, sizeof dir, "%s/simt-nccl.XXXXXX", t && *t && strlen(t) < 60 ? t : "/tmp");
  if (!mkdtemp(dir)) {
    set_global_error("ncclGetUniqueId: cannot create the rendezvous folder %s: %s", dir, strerror(errno));
    return ncclSystemError;
  }
  snprintf(id->internal, sizeof id->internal, "%s%s", kIdMagic, dir);
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config) {
  *comm = NULL;
  id.internal[sizeof id.internal - 1] = 0;
  if (strncmp(id.internal, kIdMagic, strlen(kIdMagic))) {
    set_global_error("ncclCommInitRankConfig: not an id from ncclGetUniqueId of the SIMT emulator");
    return ncclInvalidArgument;
  }
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    set_global_error("ncclCommInitRankConfig: rank %d of %d ranks", rank, nranks);
    return ncclInvalidArgument;
  }
  ncclComm_t c = new ncclComm();
  c->rank = rank, c->nranks = nranks, c->dev = simt::current_device();
  c->blocking = !config || config->blocking != 0;
  c->dir = id.internal + strlen(kIdMagic);
  c->init_start = now_s();
  for (int p = 0; p < nranks; p++) c->peers.emplace_back(new Peer());
  auto fail = [&](const char *what) {
    set_global_error("ncclCommInitRankConfig: rank %d: %s %s: %s", rank, what, c->dir.c_str(), strerror(errno));
    if (c->listen_fd >= 0) close(c->listen_fd), unlink(sock_path(c, rank).c_str());
    if (c->wake[0] >= 0) close(c->wake[0]), close(c->wake[1]);
    delete c;
    return ncclSystemError;
  };
  // the shared state slots (deadlock report)
  int sfd = open((c->dir + "/state").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  c->slots_bytes = sizeof(Shared) + sizeof(Slot) * (size_t)nranks;
  if (sfd < 0) return fail("cannot open the state file in");
  struct stat st;
  if (fstat(sfd, &st) == 0 && (size_t)st.st_size < c->slots_bytes && ftruncate(sfd, (off_t)c->slots_bytes)) {
    close(sfd);
    return fail("cannot size the state file in");
  }
  void *m = mmap(NULL, c->slots_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  close(sfd);
  if (m == MAP_FAILED) return fail("cannot map the state file in");
  c->shared = (Shared *)m;
  c->slots = (Slot *)(c->shared + 1);
  c->slots[rank].pending.store(0);
  c->slots[rank].progress_ns.store((int64_t)(now_s() * 1e9));
  c->slots[rank].pid.store((int32_t)getpid());
  c->slots[rank].dev.store(c->dev);
  c->slots[rank].what[0] = 0;
  if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK)) return fail("pipe");
  c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path(c, rank).c_str());
  if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&a, sizeof a) || listen(c->listen_fd, nranks + 4)) {
    int e = errno;
    if (c->listen_fd >= 0) close(c->listen_fd);
    c->listen_fd = -1;
    errno = e;
    return fail(e == EADDRINUSE ? "the rank already joined (or a stale socket is left) in" : "cannot listen in");
  }
  c->progress = std::thread(progress_loop, c);
  if (c->blocking) {
    std::unique_lock<std::mutex> lk(c->mu);
    c->cv.wait(lk, [&] { return c->async != ncclInProgress; });
    if (c->async != ncclSuccess) {
      ncclResult_t r = c->async;
      set_global_error("%s", c->last_error.c_str());
      lk.unlock();
      teardown(c, true);
      return r;
    }
    *comm = c;
    return ncclSuccess;
  }
  *comm = c;
  return ncclInProgress;
}
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
  return ncclCommInitRankConfig(comm, nranks, id, rank, NULL);
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *e) {
  if (!comm) return ncclInvalidArgument;
  std::lock_guard<std::mutex> lk(comm->mu);
  *e = comm->async;
  if (*e == ncclSuccess && comm->finalizing && !comm->pending.empty()) *e = ncclInProgress;
  return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
  *count = comm->nranks;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
  *rank = comm->rank;
  return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device) {
  *device = comm->dev;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm) teardown(comm, true);
  return ncclSuccess;
}
// Finalize: the pending operations complete (non-blocking: ncclInProgress until then), then the peers
// are told this rank leaves cleanly (at ncclCommDestroy).
ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  std::unique_lock<std::mutex> lk(comm->mu);
  comm->finalizing = true;
  if (!comm->blocking) return comm->pending.empty() ? ncclSuccess : ncclInProgress;
  comm->cv.wait(lk, [&] { return comm->pending.empty() || (comm->async != ncclSuccess); });
  return comm->async;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  bool failed;
  {
    std::lock_guard<std::mutex> lk(comm->mu);
    failed = comm->async != ncclSuccess || !comm->pending.empty();
  }
  teardown(comm, failed);
  return ncclSuccess;
}
ncclResult_t ncclGroupStart() {
  t_group_depth++;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  if (t_group_depth <= 0) {
    set_global_error("ncclGroupEnd without ncclGroupStart");
    return ncclInvalidUsage;
  }
  if (--t_group_depth > 0) return ncclSuccess;
  std::vector<std::pair<ncclComm_t, OpP>> v;
  v.swap(t_group);
  ncclResult_t r = ncclSuccess;
  for (int pass = 0; pass < 2; pass++)  // the receives first: a send to ourselves then finds its receive
    for (auto &e : v)
      if ((e.second->kind == OP_RECV) == (pass == 0)) {
        ncclResult_t x = post(e.first, e.second);
        if (r == ncclSuccess) r = x;
      }
  return r;
}
ncclResult_t ncclSend(const void *buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t s) {
  return make_op(OP_SEND, buf, count, type, peer, comm, s);
}
ncclResult_t ncclRecv(void *buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t s) {
  return make_op(OP_RECV, buf, count, type, peer, comm, s);
}
}  // extern "C"
