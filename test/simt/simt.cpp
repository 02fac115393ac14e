// simt.cpp — the host SIMT emulator's runtime: runs kernels.cu (compiled by g++ with simt.h) on the CPU.
//
// Execution model. A launch runs its blocks one after another (SIMT_BLOCKS order) on the launching host
// thread. A block's threads are fibers (a hand-written x86-64 stack switch, ~10 ns; swapcontext would make a
// system call per switch) on stacks with a guard page below each. A fiber runs until it must wait — at
// __syncthreads or a warp collective — and the scheduler then picks the next runnable fiber by the SIMT_SCHED
// policy:
//   rr (default)  round-robin by thread index        rev     the reverse order
//   random[:S]    a seeded random pick (S = seed)     warp    one warp at a time: the current warp runs
//                                                             until all its lanes wait at a block barrier
// Run-until-wait makes a missing __syncthreads visible (a thread runs ahead into the next phase); the warp
// schedule also exposes write-after-read hazards that lock-step order hides.
//
// Collectives are warp barriers: each lane deposits its operands, the last lane of the mask to arrive
// computes every lane's result. Shuffles (idx / xor / up / down, with width), ballot / any / all, __syncwarp,
// ldmatrix .x1/.x2/.x4 (.trans) and mma.m16n8k16 f16 -> f32 follow the PTX ISA's fragment layouts (fp32
// accumulation in a fixed k order: the tensor core's own order differs, so results agree to fp32 rounding).
// cp.async (16 bytes, src-size zero fill) fills its destination with 0xFF at issue and copies only at the
// issuing thread's cp.async.wait_group that retires its group: reading too early reads NaN.
//
// Poison: cudaMalloc memory, dynamic shared memory and static __shared__ variables (at every block start)
// are filled with 0xFF bytes (NaN as fp16 and fp32), so a value nobody wrote fails the value checks.
//
// Errors (message with the kernel, its launch site, block, thread and the device code's file:line; the
// process exits with status 1): deadlock (no runnable thread; every waiter listed), divergent barriers
// (threads at different __syncthreads, or exited while others wait), a warp collective with a wrong or
// divergent mask, a shuffle from a non-participating lane, misaligned or non-shared ldmatrix / cp.async
// addresses, a cp.async source in shared memory, dynamic shared memory over 48 KiB without a prior
// cudaFuncSetAttribute (or over the device limit), bad launch dimensions (these two are launch errors
// returned by cudaGetLastError, as on a GPU), fiber stack overflow (SIGSEGV on a guard page), accesses out
// of bounds of a cudaMalloc allocation (guard zones: see "device-memory guard zones"; copies and memsets too).
//
// The CUDA runtime subset the backend uses is reimplemented here ("memory" is host memory, streams and
// events are synchronous except behind emulated NCCL operations), with stream capture and graphs as CUDA
// defines them (the section "Stream capture and graphs"). SIMT_DEVICES=N (default 1) emulated
// devices: the current device is per host thread, every cudaMalloc block is tagged with its device, and a
// kernel or copy that reaches another device's memory without peer access is an error (section "Emulated
// devices" below says what is and is not detected). NCCL is emulated in simt_nccl.cpp. Environment:
//   SIMT_SCHED=rr|rev|random[:seed]|warp   SIMT_STACK_KB=64   SIMT_SMEM_OPTIN_KB=227 (the device limit)
//   SIMT_BLOCKS=fwd|rev|random[:seed] (the order of a grid's blocks)   SIMT_GUARD=launch|block|off
//   SIMT_PROFILE=1: time per kernel, memory counters (profile.cpp), per-step launches and copies, totals at exit
//   SIMT_DEVICES=1   SIMT_NCCL_TIMEOUT=60 (simt_nccl.cpp)
//
// ThreadSanitizer build (clang++ -fsanitize=thread): one TSan fiber per emulated thread, switched without
// synchronisation, so that only block start / end, __syncthreads and __syncwarp order memory accesses
// between the threads of a block: an intra-block race is reported even when the schedule hides it.
#include "simt.h"
#include "profile.h"  // SIMT_PROFILE counters (issue #18; hooks marked "prof::")
#include "simt_rt.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>


// SIMT_TSAN: the kernels are built with -fsanitize=thread. The runtime itself is compiled without it (its
// scheduler state is touched from every fiber and would be reported), with -DSIMT_TSAN for the fiber calls.
#if defined(SIMT_TSAN)
#elif defined(__SANITIZE_THREAD__)
#define SIMT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIMT_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif

#ifdef SIMT_TSAN
extern "C" {
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
}
#define TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#define TSAN_RELEASE(p) __tsan_release((void *)(p))
#else
#define TSAN_ACQUIRE(p) ((void)0)
#define TSAN_RELEASE(p) ((void)0)
#endif

// The bounds of the static __shared__ section (shm_mark.cpp, linked before and after kernels.o).
extern __thread char simt_shm_begin, simt_shm_end;

// x86-64 System V context switch: saves the callee-saved registers on the current stack, stores the stack
// pointer in *save and continues on the stack `to`. MXCSR and the x87 control word are not switched (ldmxcsr
// and fldcw serialise the pipeline): no emulated thread changes the rounding mode.
extern "C" void simt_swap(void **save, void *to);
asm(R"(
  .pushsection .text
  .globl simt_swap
  .type simt_swap, @function
simt_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_swap, .-simt_swap
  .popsection
)");

namespace simt {
enum { RUNNABLE, AT_BARRIER, IN_COLLECTIVE, DONE };
enum { C_SHFL, C_VOTE, C_LDSM, C_MMA };
constexpr int kMaxCopies = 64;  // cp.async copies in flight per thread

struct Copy {
  void *dst;
  const void *src;
  int bytes;
  unsigned group;
  const char *file;
  int line;
};

struct Fiber {
  uint3 tid;  // first member: simt.h's FiberView
  int linear, warp, lane;
  void *sp;
  char *guard, *stack;  // guard page, then the usable stack
  size_t stack_size;
  const char *wfile;  // where it waits
  int wline;
  // collective operands and results
  uint64_t v;
  int arg;
  const void *addr;
  uint32_t in[6];
  float acc[4];
  uint32_t out[4];
  uint64_t res;
  // cp.async
  Copy *q;  // kMaxCopies entries
  int nq;
  unsigned committed;
#ifdef SIMT_TSAN
  void *tsan;
#endif
};

struct Warp {
  unsigned present;  // lanes that exist in the block
  unsigned arrived, mask;
  unsigned exited;  // lanes that have returned from the kernel
  int kind, mode, width;
  const char *file;
  int line;
  unsigned gen;
  char sync[2];  // TSan: __syncwarp ordering objects (alternating generations)
};

struct Block {
  uint3 bid;  // first members: simt.h's BlockView
  dim3 bdim, gdim;
  int n, nwarps, done, at_barrier, cur;
  uint8_t st[1024];  // each thread's state (RUNNABLE ...): one byte each, for the scheduler's scans
  Fiber **fv;        // the host thread's fibers (fv[i] runs thread i)
  unsigned bar_gen;
  Fiber *f;
  Warp warps[32];
  const LaunchCfg *cfg;
  void (*body)(void *);
  void *ctx;
  char bar_sync[2], start_sync, end_sync;  // TSan ordering objects
};
#define ST(f) (simt_cur_block->st[(f)->linear])
static_assert(offsetof(Fiber, tid) == 0 && offsetof(Block, bid) == 0, "simt.h's views");

// Per host thread: the fibers and their stacks (kept from launch to launch), the scheduler's context.
struct Host {
  std::vector<Fiber *> fibers;
  void *sched_sp;
  Block block;
#ifdef SIMT_TSAN
  void *tsan;
#endif
};
}  // namespace simt

__thread simt::Fiber *simt_cur_fiber;
__thread simt::Block *simt_cur_block;

namespace simt {
static __thread Host *t_host;
static __thread cudaError_t t_last_error;
static __thread int t_device;

// ----- configuration -----------------------------------------------------------------------------------
enum { S_RR, S_REV, S_RANDOM, S_WARP };
static int g_sched = S_RR;
static uint64_t g_seed = 1;
static size_t g_stack = 64 * 1024;
static int g_smem_optin = 227 * 1024;
static float g_h2f[65536];  // fp16 bits -> float (the host __half2float is a slow software conversion)
static std::once_flag g_init_once;
static int g_profile;  // SIMT_PROFILE=1: time per kernel, printed at exit

static double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
struct Prof {
  long long launches, threads;
  double s;
};
static std::mutex g_prof_mu;
static std::unordered_map<std::string, Prof> *g_prof;
static void profile_add(const char *name, long long threads, double s) {
  std::lock_guard<std::mutex> lk(g_prof_mu);
  Prof &p = (*g_prof)[name];
  p.launches++, p.threads += threads, p.s += s;
}
struct Counters;
static void profile_totals();  // the exiting thread's launches and copies (section "Stream capture and graphs")
static void profile_print() {
  profile_totals();
  std::lock_guard<std::mutex> lk(g_prof_mu);
  std::vector<std::pair<std::string, Prof>> v(g_prof->begin(), g_prof->end());
  std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) { return a.second.s > b.second.s; });
  for (auto &e : v)
    fprintf(stderr, "simt: profile %-24s %8.3f s %7lld launches %12lld threads\n", e.first.c_str(), e.second.s,
            e.second.launches, e.second.threads);
}

static float half_bits_to_float(uint16_t h) {
  const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
  uint32_t u;
  if (e == 31) u = s | 0x7F800000u | (m << 13);
  else if (e) u = s | ((e + 112) << 23) | (m << 13);
  else if (!m) u = s;
  else {  // subnormal: m · 2^-24
    float f = (float)m * (1.0f / 16777216.0f);
    memcpy(&u, &f, 4);
    u |= s;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void segv_handler(int sig, siginfo_t *si, void *uc);
// The calling thread's alternate signal stack (the SIGSEGV handler cannot run on an overflowed fiber stack).
// Kept when the thread has one already (a sanitizer's, which it unmaps itself at the thread's exit).
static void ensure_altstack() {
  stack_t old;
  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE)) return;
  stack_t ss;
  ss.ss_size = 64 * 1024;
  ss.ss_sp = malloc(ss.ss_size);  // kept for the thread's life
  ss.ss_flags = 0;
  if (ss.ss_sp) sigaltstack(&ss, NULL);
}
static void guard_init();                             // the guard zones and block order (their section is
static void guard_segv(const void *addr, void *uc);  // before the launches)

static void init() {
  std::call_once(g_init_once, [] {
    const char *s = getenv("SIMT_SCHED");
    if (s && *s) {
      if (!strcmp(s, "rr")) g_sched = S_RR;
      else if (!strcmp(s, "rev")) g_sched = S_REV;
      else if (!strcmp(s, "warp")) g_sched = S_WARP;
      else if (!strncmp(s, "random", 6)) {
        g_sched = S_RANDOM;
        if (s[6] == ':') g_seed = strtoull(s + 7, NULL, 10) | 1;
      } else {
        fprintf(stderr, "simt: error: SIMT_SCHED=%s: expected rr, rev, random[:seed] or warp\n", s);
        exit(2);
      }
    }
    const char *pr = getenv("SIMT_PROFILE");
    if (pr && pr[0] == '1') {
      g_profile = 1;
      g_prof = new std::unordered_map<std::string, Prof>();
      atexit(profile_print);
      prof::init();
    }
    guard_init();
    const char *k = getenv("SIMT_STACK_KB");
    if (k && atoi(k) >= 4) g_stack = (size_t)atoi(k) * 1024;
    const char *o = getenv("SIMT_SMEM_OPTIN_KB");
    if (o && atoi(o) > 0) g_smem_optin = atoi(o) * 1024;
    if (g_smem_optin > (int)kMaxDynamicShared) g_smem_optin = (int)kMaxDynamicShared;
    for (int i = 0; i < 65536; i++) g_h2f[i] = half_bits_to_float((uint16_t)i);
    // fiber stack overflows land on a guard page: report them by name (on an alternate signal stack, which
    // every host thread that runs kernels gets in host())
    ensure_altstack();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
  });
}

// ----- errors ----------------------------------------------------------------------------------------
static void where(FILE *f) {
  Block *b = simt_cur_block;
  Fiber *t = simt_cur_fiber;
  if (!b || !b->cfg) return;
  fprintf(f, "simt:   in kernel %s launched at %s:%d, grid (%u,%u,%u) block (%u,%u,%u) smem %zu", b->cfg->name,
          b->cfg->file, b->cfg->line, b->gdim.x, b->gdim.y, b->gdim.z, b->bdim.x, b->bdim.y, b->bdim.z, b->cfg->smem);
  fprintf(f, "; blockIdx (%u,%u,%u)", b->bid.x, b->bid.y, b->bid.z);
  if (t) fprintf(f, " threadIdx (%u,%u,%u) (warp %d lane %d)", t->tid.x, t->tid.y, t->tid.z, t->warp, t->lane);
  fputc('\n', f);
}

[[noreturn]] __attribute__((format(printf, 3, 4))) static void fail(const char *file, int line, const char *fmt, ...) {
  fflush(stdout);
  fprintf(stderr, "simt: error: ");
  if (file) fprintf(stderr, "%s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  where(stderr);
  fflush(stderr);
  _exit(1);
}

static void segv_handler(int sig, siginfo_t *si, void *uc) {
  Host *h = t_host;
  const char *a = (const char *)si->si_addr;
  if (h)
    for (Fiber *f : h->fibers)
      if (a >= f->guard && a < f->stack) {
        char msg[512];
        Block *b = simt_cur_block;
        int n = snprintf(msg, sizeof msg,
                         "simt: error: fiber stack overflow (%zu KiB stack; set SIMT_STACK_KB) in kernel %s launched "
                         "at %s:%d, blockIdx (%u,%u,%u) threadIdx (%u,%u,%u)\n",
                         f->stack_size >> 10, b && b->cfg ? b->cfg->name : "?", b && b->cfg ? b->cfg->file : "?",
                         b && b->cfg ? b->cfg->line : 0, b ? b->bid.x : 0, b ? b->bid.y : 0, b ? b->bid.z : 0,
                         f->tid.x, f->tid.y, f->tid.z);
        if (write(2, msg, (size_t)n) < 0) {}
        _exit(1);
      }
  guard_segv(a, uc);  // a cudaMalloc allocation's guard page: reported there (does not return)
  signal(sig, SIG_DFL);  // not ours: the default action (a core / the sanitizer's report)
  raise(sig);
}

// ----- fibers and the scheduler ---------------------------------------------------------------------------
static Host *host() {
  if (!t_host) {
    t_host = new Host();  // kept for the thread's life (its TLS shared memory is what the fibers use)
    ensure_altstack();    // every thread that runs kernels (stage threads, CFG-parallel halves) reports overflows
#ifdef SIMT_TSAN
    t_host->tsan = __tsan_get_current_fiber();
#endif
  }
  return t_host;
}

static Fiber *new_fiber() {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *m = (char *)mmap(NULL, g_stack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    fprintf(stderr, "simt: error: cannot map a %zu KiB fiber stack: %s\n", g_stack >> 10, strerror(errno));
    exit(1);
  }
  if (mprotect(m, page, PROT_NONE)) {
    fprintf(stderr, "simt: error: mprotect of a fiber guard page: %s\n", strerror(errno));
    exit(1);
  }
  Fiber *f = (Fiber *)calloc(1, sizeof(Fiber));
  f->q = (Copy *)calloc(kMaxCopies, sizeof(Copy));
  f->guard = m;
  f->stack = m + page;
  f->stack_size = g_stack;
#ifdef SIMT_TSAN
  f->tsan = __tsan_create_fiber(0);
#endif
  return f;
}

static int pick(Block *b);

// The calling fiber waits (or has finished): continue the next runnable fiber of the policy directly, or
// the scheduler when there is none (it then releases a barrier, ends the block or reports a deadlock).
static inline void switch_to_scheduler(Fiber *f) {
  Block *b = simt_cur_block;
  const int j = pick(b);
  if (j >= 0) {
    Fiber *g = b->fv[j];
    b->cur = j;
    simt_cur_fiber = g;
#ifdef SIMT_TSAN
    __tsan_switch_to_fiber(g->tsan, 1 /* no synchronisation */);
#endif
    simt_swap(&f->sp, g->sp);
    return;
  }
#ifdef SIMT_TSAN
  __tsan_switch_to_fiber(t_host->tsan, 1);
#endif
  simt_swap(&f->sp, t_host->sched_sp);
}

[[noreturn]] static void fiber_main() {
  Block *b = simt_cur_block;
  Fiber *f = simt_cur_fiber;
  TSAN_ACQUIRE(&b->start_sync);
  b->body(b->ctx);
  f = simt_cur_fiber;
  TSAN_RELEASE(&b->end_sync);
  ST(f) = DONE;
  b->done++;
  Warp &w = b->warps[f->warp];
  w.exited |= 1u << f->lane;
  if (w.arrived && (w.mask >> f->lane & 1))
    fail(w.file, w.line, "lane %d exited while lanes 0x%08x wait for it in this warp collective (mask 0x%08x)", f->lane,
         w.arrived, w.mask);
  switch_to_scheduler(f);
  __builtin_unreachable();
}

static void fiber_reset(Fiber *f) {
  uint64_t *top = (uint64_t *)(((uintptr_t)(f->stack + f->stack_size)) & ~(uintptr_t)15);
  top[-1] = 0;                         // fiber_main's (never used) return address
  top[-2] = (uint64_t)&fiber_main;     // simt_swap returns here
  for (int i = 3; i <= 8; i++) top[-i] = 0;  // rbp rbx r12 r13 r14 r15
  f->sp = &top[-8];
  ST(f) = RUNNABLE;
  f->nq = 0;
  f->committed = 0;
}

static __thread uint64_t t_seed;  // the random schedule's state, per host thread (seeded from SIMT_SCHED)
static uint64_t rng_next() {
  uint64_t x = t_seed ? t_seed : g_seed;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return t_seed = x;
}

static inline int pick(Block *b) {
  const int n = b->n;
  const uint8_t *st = b->st;
  switch (g_sched) {
    case S_RR:
      for (int k = 1; k <= n; k++) {
        int j = b->cur + k;
        if (j >= n) j -= n;
        if (st[j] == RUNNABLE) return j;
      }
      return -1;
    case S_REV:
      for (int k = 1; k <= n; k++) {
        int j = b->cur - k;
        if (j < 0) j += n;
        if (st[j] == RUNNABLE) return j;
      }
      return -1;
    case S_RANDOM: {
      const int s = (int)(rng_next() % (uint64_t)n);
      for (int k = 0; k < n; k++) {
        int j = s + k;
        if (j >= n) j -= n;
        if (st[j] == RUNNABLE) return j;
      }
      return -1;
    }
    default: {  // S_WARP: stay in the current warp while any of its lanes can run
      const int w0 = (b->cur >> 5) << 5, wn = std::min(32, n - w0);
      for (int k = 1; k <= wn; k++) {
        const int j = w0 + (b->cur - w0 + k) % wn;
        if (st[j] == RUNNABLE) return j;
      }
      for (int k = 1; k <= n; k++) {
        int j = w0 + wn - 1 + k;
        j %= n;
        if (st[j] == RUNNABLE) return j;
      }
      return -1;
    }
  }
}

[[noreturn]] static void deadlock(Block *b) {
  fflush(stdout);
  fprintf(stderr, "simt: error: deadlock: no thread can run (%d of %d threads exited); the waiting threads:\n", b->done,
          b->n);
  // one line per distinct wait site, with the first thread there and the count
  for (int i = 0; i < b->n; i++) {
    Fiber *f = t_host->fibers[i];
    if (ST(f) == DONE) continue;
    bool seen = false;
    for (int j = 0; j < i && !seen; j++) {
      Fiber *g = t_host->fibers[j];
      seen = ST(g) == ST(f) && g->wline == f->wline && g->wfile == f->wfile;
    }
    if (seen) continue;
    int cnt = 0;
    for (int j = i; j < b->n; j++) {
      Fiber *g = t_host->fibers[j];
      cnt += ST(g) == ST(f) && g->wline == f->wline && g->wfile == f->wfile;
    }
    fprintf(stderr, "simt:   %d thread(s) from threadIdx (%u,%u,%u) wait at %s:%d (%s)\n", cnt, f->tid.x, f->tid.y,
            f->tid.z, f->wfile, f->wline, ST(f) == AT_BARRIER ? "__syncthreads" : "warp collective");
  }
  simt_cur_fiber = NULL;
  where(stderr);
  fflush(stderr);
  _exit(1);
}

// All live threads wait at a barrier: release them (or report the divergence).
static bool release_barrier(Block *b) {
  if (b->at_barrier == 0 || b->at_barrier != b->n - b->done) return false;
  Fiber *first = NULL;
  for (int i = 0; i < b->n; i++) {
    Fiber *f = t_host->fibers[i];
    if (ST(f) != AT_BARRIER) continue;
    if (!first) first = f;
    else if (f->wline != first->wline || strcmp(f->wfile, first->wfile)) {
      simt_cur_fiber = f;
      fail(f->wfile, f->wline,
           "divergent __syncthreads: this thread waits here, threadIdx (%u,%u,%u) waits at %s:%d", first->tid.x,
           first->tid.y, first->tid.z, first->wfile, first->wline);
    }
  }
  if (b->done) {
    simt_cur_fiber = first;
    fail(first->wfile, first->wline, "divergent __syncthreads: %d thread(s) of the block exited while %d wait here",
         b->done, b->at_barrier);
  }
  for (int i = 0; i < b->n; i++)
    if (ST(t_host->fibers[i]) == AT_BARRIER) ST(t_host->fibers[i]) = RUNNABLE;
  b->at_barrier = 0;
  b->bar_gen++;
  return true;
}

void poison_dynamic_shared(size_t bytes);

static void run_block(Block *b) {
  Host *h = t_host;
  for (int i = 0; i < b->n; i++) fiber_reset(h->fibers[i]);
  b->done = b->at_barrier = 0;
  b->cur = g_sched == S_REV ? 0 : b->n - 1;
  for (int w = 0; w < b->nwarps; w++) {
    Warp &wp = b->warps[w];
    const int lanes = std::min(32, b->n - 32 * w);
    wp.present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
    wp.arrived = 0;
    wp.exited = 0;
  }
  // poison: static __shared__ variables and the dynamic shared memory of this launch
  char *s0 = &simt_shm_begin + 1, *s1 = &simt_shm_end;
  if (s1 > s0) memset(s0, 0xFF, (size_t)(s1 - s0));
  poison_dynamic_shared(b->cfg->smem);
  TSAN_RELEASE(&b->start_sync);
  for (;;) {
    const int i = pick(b);
    if (i < 0) {
      if (b->done == b->n) break;
      if (release_barrier(b)) continue;
      deadlock(b);
    }
    Fiber *f = h->fibers[i];
    b->cur = i;
    simt_cur_fiber = f;
#ifdef SIMT_TSAN
    __tsan_switch_to_fiber(f->tsan, 1);
#endif
    simt_swap(&h->sched_sp, f->sp);
  }
  simt_cur_fiber = NULL;
  TSAN_ACQUIRE(&b->end_sync);
}

// ----- dynamic shared memory ------------------------------------------------------------------------------
struct DynShared {
  void *(*addr)();
  const char *name;
};
static std::vector<DynShared> &dyn_list() {
  static std::vector<DynShared> *v = new std::vector<DynShared>();  // leaked on purpose (static init order)
  return *v;
}
void register_dynamic_shared(void *(*addr)(), const char *name) { dyn_list().push_back({addr, name}); }
void poison_dynamic_shared(size_t bytes) {
  for (auto &d : dyn_list()) memset(d.addr(), 0xFF, bytes);
}
static bool is_shared(const void *p, size_t n) {
  const char *c = (const char *)p;
  if (c >= &simt_shm_begin && c + n <= &simt_shm_end) return true;
  for (auto &d : dyn_list()) {
    const char *a = (const char *)d.addr();
    if (c >= a && c + n <= a + simt_cur_block->cfg->smem) return true;
  }
  return false;
}

// ----- device-memory guard zones and the block order --------------------------------------------------------
// Guard zones (SIMT_GUARD=launch, the default | block | off). Every cudaMalloc allocation is a mapping of
// its own:  [PROT_NONE page][front slack][the `size` bytes returned][tail slack][PROT_NONE page]
// The returned pointer is 256-byte aligned, as cudaMalloc's, and its 256-byte-rounded end is the end of a
// page. So an access past the rounded end (or past the front slack) faults at once, and the SIGSEGV
// handler names the kernel, launch site, blockIdx, threadIdx and the faulting instruction's file:line
// (addr2line on the executable's debug info). The slacks — the bytes up to the next 256 (a GPU does not
// fault there either; compute-sanitizer reports them) and the rest of the front page — hold a byte
// pattern that is verified after every kernel launch (after every block with SIMT_GUARD=block, which
// then names the block), before every copy or memset into device memory (its range must lie inside one
// allocation) and at cudaFree. Any change is an error: the run stops with status 1.
//
// The block order (SIMT_BLOCKS=fwd, the default | rev | random[:seed]): blocks run one after another, so
// a block that overwrites a neighbour's output is hidden when the neighbour runs later and rewrites it.
// rev runs the grid backwards; random runs it in an affine permutation (a·k + c) mod n (gcd(a, n) = 1)
// drawn per launch from the seed.
enum { GUARD_OFF, GUARD_LAUNCH, GUARD_BLOCK };
enum { BLOCKS_FWD, BLOCKS_REV, BLOCKS_RANDOM };
static int g_guard_mode = GUARD_LAUNCH;
static int g_block_order = BLOCKS_FWD;
static uint64_t g_block_seed = 1;

struct GuardAlloc {
  char *map;         // the whole mapping (guard pages included)
  size_t map_len;
  char *user;        // what cudaMalloc returned
  size_t size;       // bytes requested
  size_t usable;     // size rounded up to 256
  const void *site;  // cudaMalloc's caller
};
static std::mutex g_guard_mu;
static std::map<uintptr_t, GuardAlloc> *g_guard;  // by user address (leaked on purpose: used from handlers)
static std::vector<uint8_t> *g_guard_pat;        // the slack pattern, one page long
static size_t g_page;

static void guard_init() {  // from init()
  const char *m = getenv("SIMT_GUARD");
  if (m && *m) {
    if (!strcmp(m, "off")) g_guard_mode = GUARD_OFF;
    else if (!strcmp(m, "launch")) g_guard_mode = GUARD_LAUNCH;
    else if (!strcmp(m, "block")) g_guard_mode = GUARD_BLOCK;
    else {
      fprintf(stderr, "simt: error: SIMT_GUARD=%s: expected launch, block or off\n", m);
      exit(2);
    }
  }
  const char *o = getenv("SIMT_BLOCKS");
  if (o && *o) {
    if (!strcmp(o, "fwd")) g_block_order = BLOCKS_FWD;
    else if (!strcmp(o, "rev")) g_block_order = BLOCKS_REV;
    else if (!strncmp(o, "random", 6) && (o[6] == 0 || o[6] == ':')) {
      g_block_order = BLOCKS_RANDOM;
      if (o[6] == ':') g_block_seed = strtoull(o + 7, NULL, 10) | 1;
    } else {
      fprintf(stderr, "simt: error: SIMT_BLOCKS=%s: expected fwd, rev or random[:seed]\n", o);
      exit(2);
    }
  }
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  g_guard = new std::map<uintptr_t, GuardAlloc>();
  g_guard_pat = new std::vector<uint8_t>(g_page);
  for (size_t i = 0; i < g_page; i++) (*g_guard_pat)[i] = (uint8_t)(0xA5u ^ (unsigned)(i * 0x3Bu));
}

// "file:line (function)" of a code address, from addr2line on the module's debug info, each inlined frame
// on its own line after `prefix`; the bare address when that fails.
static void symbolize(const void *pc, const char *prefix) {
  Dl_info di, self;
  uintptr_t off = (uintptr_t)pc;
  const char *file = NULL;
  if (dladdr(pc, &di) && di.dli_fbase) {
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)di.dli_fbase;
    if (eh->e_type == ET_DYN) off -= (uintptr_t)di.dli_fbase;
    file = di.dli_fname;
    if (dladdr((const void *)&symbolize, &self) && self.dli_fbase == di.dli_fbase) {  // the executable
      static char exe[4096];
      const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
      if (n > 0) exe[n] = 0, file = exe;
    }
  }
  fflush(stderr);
  int fd[2];
  bool done = false;
  if (file && pipe(fd) == 0) {
    char hex[32];
    snprintf(hex, sizeof hex, "0x%lx", (unsigned long)off);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(fd[1], 1);
      dup2(fd[1], 2);
      close(fd[0]);
      execlp("addr2line", "addr2line", "-C", "-f", "-i", "-p", "-e", file, hex, (char *)NULL);
      _exit(127);
    }
    close(fd[1]);
    if (pid > 0) {
      FILE *in = fdopen(fd[0], "r");
      char line[512];
      while (in && fgets(line, sizeof line, in)) {
        if (strstr(line, "??")) continue;  // no debug information
        const char *l = line + strspn(line, " ");
        if (!strncmp(l, "(inlined by) ", 13)) fprintf(stderr, "simt:       inlined in %s", l + 13);
        else fprintf(stderr, "%s%s", prefix, l);
        done = true;
      }
      if (in) fclose(in);
      int st;
      waitpid(pid, &st, 0);
    } else {
      close(fd[0]);
    }
  }
  if (!done) fprintf(stderr, "%s%p (%s+0x%lx; no file:line: addr2line or debug info missing)\n", prefix, pc,
                     file ? file : "?", (unsigned long)off);
}

// the allocation whose mapping holds p (caller holds g_guard_mu, or is about to exit)
static const GuardAlloc *guard_find(const void *p) {
  if (!g_guard || g_guard->empty()) return NULL;
  const uintptr_t a = (uintptr_t)p;
  auto it = g_guard->upper_bound(a);  // the first allocation above p: p may be in its front guard / slack
  if (it != g_guard->end() && a >= (uintptr_t)it->second.map) return &it->second;
  if (it == g_guard->begin()) return NULL;
  --it;
  const GuardAlloc &g = it->second;
  return a < (uintptr_t)g.map + g.map_len ? &g : NULL;
}

static void describe(const GuardAlloc &g) {
  fprintf(stderr, "simt:   the allocation: %zu bytes at %p, cudaMalloc called from\n", g.size, (void *)g.user);
  symbolize((const char *)g.site - 1, "simt:     ");
}

// first changed slack byte: its address, or NULL
static const char *guard_damage(const GuardAlloc &g) {
  const uint8_t *pat = g_guard_pat->data();
  const char *front = g.map + g_page;
  const size_t nf = (size_t)(g.user - front), nt = g.usable - g.size;
  const char *tail = g.user + g.size;
  if (memcmp(front, pat, nf))
    for (size_t i = 0; i < nf; i++)
      if ((uint8_t)front[i] != pat[i]) return front + i;
  if (memcmp(tail, pat, nt))
    for (size_t i = 0; i < nt; i++)
      if ((uint8_t)tail[i] != pat[i]) return tail + i;
  return NULL;
}

[[noreturn]] static void guard_fail_damage(const GuardAlloc &g, const char *at, const char *when, const void *caller) {
  fflush(stdout);
  const long long d = at >= g.user + g.size ? (long long)(at - (g.user + g.size)) : (long long)(g.user - at);
  fprintf(stderr,
          "simt: error: out-of-bounds write: byte %p, %lld byte(s) %s the %zu-byte cudaMalloc allocation at %p, "
          "changed (found %s)\n", (const void *)at, d, at >= g.user ? "past the end of" : "before",
          g.size, (void *)g.user, when);
  if (caller) {
    fprintf(stderr, "simt:   called from\n");
    symbolize((const char *)caller - 1, "simt:     ");
  }
  describe(g);
  fflush(stderr);
  _exit(1);
}

// every live allocation's slack, after a launch or a block
static void guard_check_all(const LaunchCfg &c, const uint3 *block) {
  std::lock_guard<std::mutex> lk(g_guard_mu);
  for (auto &kv : *g_guard) {
    const char *at = guard_damage(kv.second);
    if (!at) continue;
    char when[400];
    if (block)
      snprintf(when, sizeof when,
               "after block (%u,%u,%u) of kernel %s launched at %s:%d, grid (%u,%u,%u) block (%u,%u,%u)", block->x,
               block->y, block->z, c.name, c.file, c.line, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y,
               c.block.z);
    else
      snprintf(when, sizeof when, "after kernel %s launched at %s:%d, grid (%u,%u,%u) block (%u,%u,%u); "
               "SIMT_GUARD=block names the block", c.name, c.file, c.line, c.grid.x, c.grid.y, c.grid.z, c.block.x,
               c.block.y, c.block.z);
    guard_fail_damage(kv.second, at, when, NULL);
  }
}

// A copy or memset touching [p, p + n): if p is device memory, the range must lie inside its allocation.
static void guard_check_range(const void *p, size_t n, const char *what, const void *caller) {
  if (!n || g_guard_mode == GUARD_OFF) return;
  std::lock_guard<std::mutex> lk(g_guard_mu);
  const GuardAlloc *g = guard_find(p);
  if (!g) return;
  const char *a = (const char *)p;
  const char *dmg = guard_damage(*g);
  if (dmg) guard_fail_damage(*g, dmg, what, caller);
  if (a >= g->user && n <= g->size && a - g->user <= (ptrdiff_t)(g->size - n)) return;
  fflush(stdout);
  if (a < g->user)
    fprintf(stderr, "simt: error: %s: the %zu-byte range at %p starts %td byte(s) before the %zu-byte cudaMalloc "
            "allocation at %p\n", what, n, p, g->user - a, g->size, (void *)g->user);
  else
    fprintf(stderr, "simt: error: %s: the %zu-byte range at %p (offset %td) runs %lld byte(s) past the end of the "
            "%zu-byte cudaMalloc allocation at %p\n", what, n, p, a - g->user,
            (long long)((a - g->user) + (ptrdiff_t)n - (ptrdiff_t)g->size), g->size, (void *)g->user);
  fprintf(stderr, "simt:   %s called from\n", what);
  symbolize((const char *)caller - 1, "simt:     ");
  describe(*g);
  fflush(stderr);
  _exit(1);
}

// From the SIGSEGV handler: a fault in an allocation's guard page is reported (and the process ends).
static void guard_segv(const void *addr, void *ucv) {
  const GuardAlloc *g = guard_find(addr);  // no lock: the process ends here either way
  if (!g) return;
  const char *a = (const char *)addr;
  const ucontext_t *uc = (const ucontext_t *)ucv;
  const void *pc = (const void *)uc->uc_mcontext.gregs[REG_RIP];
  const bool write = uc->uc_mcontext.gregs[REG_ERR] & 2;
  fflush(stdout);
  if (a >= g->user)
    fprintf(stderr, "simt: error: out-of-bounds %s at %p, %td byte(s) past the end of the %zu-byte cudaMalloc "
            "allocation at %p (offset %td)\n", write ? "write" : "read", addr, a - (g->user + g->size), g->size,
            (void *)g->user, a - g->user);
  else
    fprintf(stderr,
            "simt: error: out-of-bounds %s at %p, %td byte(s) before the %zu-byte cudaMalloc allocation at %p\n",
            write ? "write" : "read", addr, g->user - a, g->size, (void *)g->user);
  where(stderr);
  if (!simt_cur_block || !simt_cur_block->cfg) fprintf(stderr, "simt:   in host code (not in a kernel)\n");
  symbolize(pc, "simt:   at ");
  describe(*g);
  fflush(stderr);
  _exit(1);
}

static void *guard_alloc(size_t size, const void *site) {
  const size_t usable = ((size ? size : 1) + 255) / 256 * 256;
  const size_t data = (usable + g_page - 1) / g_page * g_page;
  char *m = (char *)mmap(NULL, data + 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  if (mprotect(m, g_page, PROT_NONE) || mprotect(m + g_page + data, g_page, PROT_NONE)) {
    munmap(m, data + 2 * g_page);
    return NULL;
  }
  GuardAlloc g{m, data + 2 * g_page, m + g_page + data - usable, size, usable, site};
  memcpy(m + g_page, g_guard_pat->data(), (size_t)(g.user - (m + g_page)));
  memset(g.user, 0xFF, size);  // poison: never-written device memory reads as NaN
  memcpy(g.user + size, g_guard_pat->data(), usable - size);
  std::lock_guard<std::mutex> lk(g_guard_mu);
  (*g_guard)[(uintptr_t)g.user] = g;
  return g.user;
}

// false when p is not a guarded allocation (SIMT_GUARD=off, or not from cudaMalloc)
static bool guard_free(void *p, const void *caller) {
  std::lock_guard<std::mutex> lk(g_guard_mu);
  auto it = g_guard->find((uintptr_t)p);
  if (it == g_guard->end()) return false;
  const char *dmg = guard_damage(it->second);
  if (dmg) guard_fail_damage(it->second, dmg, "at its cudaFree", caller);
  munmap(it->second.map, it->second.map_len);
  g_guard->erase(it);
  return true;
}

// The k-th block to run of a grid of n.
struct BlockOrder {
  unsigned long long n, a, c;
  unsigned long long at(unsigned long long k) const {
    if (g_block_order == BLOCKS_FWD) return k;
    if (g_block_order == BLOCKS_REV) return n - 1 - k;
    return (unsigned long long)(((unsigned __int128)a * k + c) % n);
  }
};
static __thread uint64_t t_block_rng;
static BlockOrder block_order(unsigned long long n) {
  BlockOrder o{n, 1, 0};
  if (g_block_order != BLOCKS_RANDOM || n < 2) return o;
  uint64_t &x = t_block_rng;
  if (!x) x = g_block_seed;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  o.a = 1 + next() % (n - 1);
  while (std::gcd(o.a, n) != 1) o.a = o.a % (n - 1) + 1;
  o.c = next() % n;
  return o;
}

// ----- launches --------------------------------------------------------------------------------------------
static std::mutex g_attr_mu;
// cudaFuncAttributeMaxDynamicSharedMemorySize per (kernel, device): CUDA keeps it per device context, and
// stage threads set it for their own device with the sizes their own launches need
static std::map<std::pair<const void *, int>, int> g_max_dyn;

static cudaError_t launch_error(const LaunchCfg &c, cudaError_t e, const char *why) {
  fprintf(stderr, "simt: launch of %s at %s:%d rejected: %s\n", c.name, c.file, c.line, why);
  t_last_error = e;
  return e;
}

// Stream capture (section "Stream capture and graphs" below): a launch on a capturing stream is recorded.
static bool capture_launch(const LaunchCfg &c, void (*body)(void *), void *ctx, void *(*clone)(const void *),
                           void (*drop)(void *));
static void run_grid(const LaunchCfg &c, void (*body)(void *), void *ctx);
struct Counters {  // SIMT_PROFILE's per-step counts (this host thread's)
  long long launches, graph_launches, graph_kernels, h2d, h2d_bytes, d2h, d2h_bytes;
};
static __thread Counters t_cnt;

void launch(const LaunchCfg &c, void (*body)(void *), void *ctx, void *(*clone)(const void *), void (*drop)(void *)) {
  init();
  const dim3 g = c.grid, bd = c.block;
  const long long nthreads = (long long)bd.x * bd.y * bd.z;
  if (nthreads < 1 || nthreads > 1024 || bd.x > 1024 || bd.y > 1024 || bd.z > 64) {
    launch_error(c, cudaErrorInvalidConfiguration, "block dimensions out of range");
    return;
  }
  if (g.x < 1 || g.y < 1 || g.z < 1 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    launch_error(c, cudaErrorInvalidConfiguration, "grid dimensions out of range");
    return;
  }
  if (c.smem > 48 * 1024) {
    int allowed = 0;
    {
      std::lock_guard<std::mutex> lk(g_attr_mu);
      auto it = g_max_dyn.find({c.fn, t_device});
      if (it != g_max_dyn.end()) allowed = it->second;
    }
    if ((long long)c.smem > allowed) {
      char why[200];
      snprintf(why, sizeof why,
               "%zu bytes of dynamic shared memory, over 48 KiB without cudaFuncSetAttribute(MaxDynamicSharedMemorySize "
               ">= %zu) (set: %d)",
               c.smem, c.smem, allowed);
      launch_error(c, cudaErrorInvalidValue, why);
      return;
    }
  }
  if (c.stream && stream_device(c.stream) != t_device) {
    char why[160];
    snprintf(why, sizeof why, "its stream belongs to device %d, the current device is %d", stream_device(c.stream),
             t_device);
    launch_error(c, cudaErrorInvalidResourceHandle, why);
    return;
  }
  if (capture_launch(c, body, ctx, clone, drop)) return;  // recorded (or refused), not run
  stream_drain(c.stream);  // after the emulated NCCL operations queued before it
  t_cnt.launches++;
  run_grid(c, body, ctx);
}

// Runs every block of a launch whose configuration was checked (a launch, or a graph's kernel node).
static void run_grid(const LaunchCfg &c, void (*body)(void *), void *ctx) {
  const dim3 g = c.grid, bd = c.block;
  const long long nthreads = (long long)bd.x * bd.y * bd.z;
  Host *h = host();
  while ((long long)h->fibers.size() < nthreads) h->fibers.push_back(new_fiber());
  Block *b = &h->block;
  *b = Block();
  b->bdim = bd;
  b->gdim = g;
  b->n = (int)nthreads;
  b->nwarps = (b->n + 31) / 32;
  b->cfg = &c;
  b->body = body;
  b->ctx = ctx;
  b->fv = h->fibers.data();
  for (int i = 0; i < b->n; i++) {
    Fiber *f = h->fibers[i];
    f->linear = i;
    f->warp = i >> 5;
    f->lane = i & 31;
    f->tid = make_uint3(i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y));
  }
  Block *saved_block = simt_cur_block;
  simt_cur_block = b;
  const double t0 = g_profile ? now_s() : 0;
  if (g_profile) prof::launch_begin(c, (int)nthreads);
  const unsigned long long gxy = (unsigned long long)g.x * g.y;
  const BlockOrder order = block_order(gxy * g.z);  // SIMT_BLOCKS
  for (unsigned long long k = 0; k < order.n; k++) {
    const unsigned long long i = order.at(k);
    if (g_profile && !prof::run_block((long long)i, (long long)order.n)) continue;  // SIMT_PROFILE_SAMPLE
    b->bid = make_uint3((unsigned)(i % g.x), (unsigned)(i / g.x % g.y), (unsigned)(i / gxy));
    run_block(b);
    if (g_profile) prof::block_end();
    if (g_guard_mode == GUARD_BLOCK) guard_check_all(c, &b->bid);
  }
  simt_cur_block = saved_block;
  if (g_guard_mode == GUARD_LAUNCH) guard_check_all(c, NULL);
  if (g_profile) prof::launch_end(now_s() - t0);
  if (g_profile) profile_add(c.name, (long long)g.x * g.y * g.z * nthreads, now_s() - t0);
}

// ----- block barrier and warp collectives ------------------------------------------------------------------
void syncthreads(const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  Block *b = simt_cur_block;
  if (g_profile) prof::barrier();
  const unsigned gen = b->bar_gen;
  (void)gen;
  TSAN_RELEASE(&b->bar_sync[gen & 1]);
  ST(f) = AT_BARRIER;
  f->wfile = file;
  f->wline = line;
  b->at_barrier++;
  switch_to_scheduler(f);
  TSAN_ACQUIRE(&b->bar_sync[gen & 1]);
}

static void compute(Block *b, Warp &w);

// Deposit-and-wait; the last lane of the mask computes every lane's results (Fiber::out / res).
static void collective(Fiber *f, int kind, int mode, int width, unsigned mask, const char *file, int line) {
  Block *b = simt_cur_block;
  Warp &w = b->warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(mask & bit)) fail(file, line, "warp collective with mask 0x%08x called by lane %d, which is not in it", mask, f->lane);
  if (mask & ~w.present)
    fail(file, line, "warp collective with mask 0x%08x names lanes that do not exist (warp has 0x%08x)", mask, w.present);
  if (w.arrived == 0) {
    w.kind = kind, w.mode = mode, w.width = width, w.mask = mask, w.file = file, w.line = line;
  } else if (w.kind != kind || w.mode != mode || w.width != width || w.mask != mask || w.line != line ||
             (w.file != file && strcmp(w.file, file))) {
    fail(file, line, "divergent warp collective: lane %d is here (mask 0x%08x) while lanes 0x%08x wait at %s:%d (mask 0x%08x)",
         f->lane, mask, w.arrived, w.file, w.line, w.mask);
  }
  w.arrived |= bit;
  if (__builtin_expect(w.arrived != mask, 1)) {
    if (w.exited & mask)
      fail(file, line, "warp collective (mask 0x%08x) waits for lane %d, which has exited", mask,
           __builtin_ctz(w.exited & mask));
    ST(f) = IN_COLLECTIVE;
    f->wfile = file;
    f->wline = line;
    switch_to_scheduler(f);
    return;
  }
  compute(b, w);
  Fiber *const *lanes = &b->fv[f->warp * 32];
  for (unsigned m = mask; m; m &= m - 1) {
    Fiber *g = lanes[__builtin_ctz(m)];
    if (g != f) ST(g) = RUNNABLE;
  }
  w.arrived = 0;
  w.gen++;
}

static inline uint32_t ld32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void compute(Block *b, Warp &w) {
  Fiber *const *L = &b->fv[(size_t)(&w - b->warps) * 32];
  switch (w.kind) {
    case C_SHFL: {
      const int width = w.width;
      for (unsigned m = w.mask; m; m &= m - 1) {
        const int l = __builtin_ctz(m), a = L[l]->arg, base = l & ~(width - 1);
        int src = l;
        switch (w.mode) {
          case SHFL_IDX: src = base + (a & (width - 1)); break;
          case SHFL_XOR: src = (l ^ a) & 31; if (src >= base + width) src = l; break;
          case SHFL_UP: src = (l - base) >= a ? l - a : l; break;
          case SHFL_DOWN: src = (l - base) + a < width ? l + a : l; break;
        }
        if (!(w.mask >> src & 1))
          fail(w.file, w.line, "shuffle: lane %d reads lane %d, which is not in the mask 0x%08x", l, src, w.mask);
        L[l]->res = L[src]->v;
      }
      break;
    }
    case C_VOTE: {
      unsigned ballot = 0;
      for (unsigned m = w.mask; m; m &= m - 1) {
        const int l = __builtin_ctz(m);
        if (L[l]->v) ballot |= 1u << l;
      }
      for (unsigned m = w.mask; m; m &= m - 1) {
        Fiber *f = L[__builtin_ctz(m)];
        f->res = w.mode == VOTE_BALLOT ? ballot : w.mode == VOTE_ANY ? ballot != 0 : w.mode == VOTE_ALL ? ballot == w.mask : 0;
      }
      break;
    }
    case C_LDSM: {
      const int nmat = w.mode & 7;
      const bool trans = w.mode & 8;
      for (int l = 0; l < 8 * nmat; l++) {
        const char *p = (const char *)L[l]->addr;
        if ((uintptr_t)p & 15)
          fail(w.file, w.line, "ldmatrix: lane %d's row address %p is not 16-byte aligned", l, (const void *)p);
        if (!is_shared(p, 16))
          fail(w.file, w.line, "ldmatrix: lane %d's row address %p is not in shared memory", l, (const void *)p);
      }
      if (g_profile) {
        const void *rows[32];
        for (int l = 0; l < 8 * nmat; l++) rows[l] = L[l]->addr;
        prof::ldmatrix((int)(&w - b->warps), w.file, w.line, nmat, rows);
      }
      for (int l = 0; l < 32; l++) {
        const int r = l >> 2, c = 2 * (l & 3);
        for (int i = 0; i < nmat; i++) {
          uint16_t lo, hi;
          if (!trans) {  // row r of matrix i, elements c and c+1
            const char *row = (const char *)L[8 * i + r]->addr;
            memcpy(&lo, row + 2 * c, 2);
            memcpy(&hi, row + 2 * c + 2, 2);
          } else {  // column r of matrix i, rows c and c+1
            memcpy(&lo, (const char *)L[8 * i + c]->addr + 2 * r, 2);
            memcpy(&hi, (const char *)L[8 * i + c + 1]->addr + 2 * r, 2);
          }
          L[l]->out[i] = lo | (uint32_t)hi << 16;
        }
      }
      break;
    }
    case C_MMA: {
      // A 16x16 row-major, B 16x8 (k x n), C/D 16x8, from the PTX fragment layouts (g = lane/4, t = lane%4)
      if (g_profile) prof::mma((int)(&w - b->warps));
      float A[16][16], B[16][8], D[16][8];
      for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const uint32_t *a = L[l]->in;
        const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
        for (int i = 0; i < 4; i++) {
          A[rows[i]][cols[i]] = g_h2f[a[i] & 0xFFFF];
          A[rows[i]][cols[i] + 1] = g_h2f[a[i] >> 16];
        }
        B[2 * t][g] = g_h2f[a[4] & 0xFFFF];
        B[2 * t + 1][g] = g_h2f[a[4] >> 16];
        B[2 * t + 8][g] = g_h2f[a[5] & 0xFFFF];
        B[2 * t + 9][g] = g_h2f[a[5] >> 16];
        D[g][2 * t] = L[l]->acc[0];
        D[g][2 * t + 1] = L[l]->acc[1];
        D[g + 8][2 * t] = L[l]->acc[2];
        D[g + 8][2 * t + 1] = L[l]->acc[3];
      }
      for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
          float s = D[m][n];
          for (int k = 0; k < 16; k++) s += A[m][k] * B[k][n];
          D[m][n] = s;
        }
      for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        float *o = reinterpret_cast<float *>(L[l]->out);
        o[0] = D[g][2 * t];
        o[1] = D[g][2 * t + 1];
        o[2] = D[g + 8][2 * t];
        o[3] = D[g + 8][2 * t + 1];
      }
      break;
    }
  }
}

uint64_t shfl(uint64_t v, int mode, int arg, int width, unsigned mask, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail(file, line, "shuffle width %d (must be a power of two <= 32)", width);
  f->v = v;
  f->arg = arg;
  collective(f, C_SHFL, mode, width, mask, file, line);
  return simt_cur_fiber->res;
}

unsigned vote(int pred, int mode, unsigned mask, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  Block *b = simt_cur_block;
  f->v = pred != 0;
  Warp &w = b->warps[f->warp];
  const unsigned gen = w.gen;
  (void)gen;
  if (mode == VOTE_SYNC) TSAN_RELEASE(&w.sync[gen & 1]);
  collective(f, C_VOTE, mode, 32, mask, file, line);
  if (mode == VOTE_SYNC) TSAN_ACQUIRE(&w.sync[gen & 1]);
  return (unsigned)simt_cur_fiber->res;
}

void ldmatrix(uint32_t *r, const void *p, int nmat, bool trans, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  if (nmat != 1 && nmat != 2 && nmat != 4) fail(file, line, "ldmatrix .x%d", nmat);
  f->addr = p;
  collective(f, C_LDSM, nmat | (trans ? 8 : 0), 32, 0xffffffffu, file, line);
  f = simt_cur_fiber;
  for (int i = 0; i < nmat; i++) r[i] = f->out[i];
}

void mma_m16n8k16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  for (int i = 0; i < 4; i++) f->in[i] = a[i], f->acc[i] = d[i];
  f->in[4] = b0;
  f->in[5] = b1;
  collective(f, C_MMA, 0, 32, 0xffffffffu, file, line);
  f = simt_cur_fiber;
  memcpy(d, f->out, 16);
}

// ----- cp.async ---------------------------------------------------------------------------------------------
void cp_async(void *smem, const void *gmem, int src_bytes, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  if ((uintptr_t)smem & 15) fail(file, line, "cp.async: shared destination %p is not 16-byte aligned", smem);
  if (!is_shared(smem, 16)) fail(file, line, "cp.async: destination %p is not in shared memory", smem);
  if (src_bytes < 0 || src_bytes > 16) fail(file, line, "cp.async: src-size %d (must be 0..16)", src_bytes);
  if ((uintptr_t)gmem & 15) fail(file, line, "cp.async: global source %p is not 16-byte aligned", gmem);
  if (src_bytes && is_shared(gmem, 1)) fail(file, line, "cp.async: source %p is in shared memory (must be global)", gmem);
  if (f->nq == kMaxCopies) fail(file, line, "cp.async: more than %d copies in flight in one thread", kMaxCopies);
  memset(smem, 0xFF, 16);  // until the wait that retires this copy, the destination reads as NaN
  if (g_profile) prof::cp_async(file, line, smem, gmem, src_bytes);
  f->q[f->nq++] = Copy{smem, gmem, src_bytes, f->committed, file, line};
}

void cp_async_commit(const char *file, int line) { simt_cur_fiber->committed++; }

void cp_async_wait(int n, const char *file, int line) {
  Fiber *f = simt_cur_fiber;
  // groups 0 .. committed-1 exist; all but the newest n must be complete
  const long long limit = (long long)f->committed - n;
  int k = 0;
  for (int i = 0; i < f->nq; i++) {
    Copy &c = f->q[i];
    if ((long long)c.group < limit) {
      if (c.bytes) memcpy(c.dst, c.src, (size_t)c.bytes);
      if (c.bytes < 16) memset((char *)c.dst + c.bytes, 0, (size_t)(16 - c.bytes));
    } else {
      f->q[k++] = c;
    }
  }
  f->nq = k;
}
}  // namespace simt

// =============================================================================================================
// Emulated devices (SIMT_DEVICES=N, default 1; at most kMaxDevices)
// Each host thread has a current device (cudaSetDevice; 0 at start, as in CUDA). Every cudaMalloc block is
// tagged with the device current at allocation. Detected, as an error naming the kernel and its launch site
// (or the copy call), the devices and the block: a kernel launched on device d whose parameters hold a
// pointer into another device's block — every 8-byte word of the parameter block is checked, so pointers
// inside parameter structs count too — and a copy or memset (stream of device d, or the current device)
// whose source or destination lies in another device's block, unless cudaDeviceEnablePeerAccess gave d
// access; a launch on another device's stream (a launch error, as on a GPU). Not detected: pointers a kernel
// computes from integers or loads from device memory (pointer tables), and the block/thread that would fault
// (the check runs once per launch, before any thread). Copies are checked more strictly than CUDA, whose
// unified addressing would stage a cross-device copy through the host: in vdp every device's buffers belong
// to the thread and stream of that device, so such a copy is a bug here.
// =============================================================================================================
namespace simt {
constexpr int kMaxDevices = 16;
struct DevBlock {
  size_t size;
  int dev;
};
static std::mutex g_dev_mu;
static std::map<uintptr_t, DevBlock> g_devmem;   // live cudaMalloc blocks by start address
static bool g_peer[kMaxDevices][kMaxDevices];     // [d][p]: device d may access device p's memory

int device_count() {
  static const int n = [] {
    const char *s = getenv("SIMT_DEVICES");
    if (!s || !*s) return 1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > kMaxDevices) {
      fprintf(stderr, "simt: error: SIMT_DEVICES=%s: expected a number of emulated devices from 1 to %d\n", s,
              kMaxDevices);
      exit(2);
    }
    return (int)v;
  }();
  return n;
}
int current_device() { return t_device; }

static void devmem_add(void *p, size_t n, int dev) {
  std::lock_guard<std::mutex> lk(g_dev_mu);
  g_devmem[(uintptr_t)p] = DevBlock{n ? n : 1, dev};
}
static void devmem_remove(void *p) {
  std::lock_guard<std::mutex> lk(g_dev_mu);
  g_devmem.erase((uintptr_t)p);
}
// The block holding address a (caller holds g_dev_mu), or end().
static std::map<uintptr_t, DevBlock>::const_iterator devmem_find(uintptr_t a) {
  auto it = g_devmem.upper_bound(a);
  if (it == g_devmem.begin()) return g_devmem.end();
  --it;
  return a - it->first < it->second.size ? it : g_devmem.end();
}
int devmem_device(const void *p) {
  std::lock_guard<std::mutex> lk(g_dev_mu);
  auto it = devmem_find((uintptr_t)p);
  return it == g_devmem.end() ? -1 : it->second.dev;
}
static bool peer_ok(int dev, int owner) {
  std::lock_guard<std::mutex> lk(g_dev_mu);
  return dev == owner || g_peer[dev][owner];
}

void devmem_check_copy(const char *what, const void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                       cudaStream_t s) {
  if (!n || device_count() == 1) return;
  const int dev = s ? stream_device(s) : t_device;
  const void *ends[2] = {dst, src};
  for (int i = 0; i < 2; i++) {
    if (!ends[i]) continue;
    int owner = devmem_device(ends[i]);
    if (owner < 0) owner = devmem_device((const char *)ends[i] + n - 1);
    if (owner >= 0 && !peer_ok(dev, owner))
      fail(NULL, 0,
           "%s of %zu bytes on device %d%s: its %s %p is device %d's memory and device %d has no peer access to it "
           "(cudaDeviceEnablePeerAccess); set the device that owns the memory, or copy through a buffer of device %d",
           what, n, dev, s ? " (the stream's device)" : "", i ? "source" : "destination", ends[i], owner, dev, dev);
  }
}

// Called by simt.h's Launcher before the launch: the parameter block, word by word.
void check_launch_args(const LaunchCfg &c, const void *params, size_t n) {
  if (device_count() == 1) return;
  const int dev = c.stream ? stream_device(c.stream) : t_device;
  if (dev != t_device) return;  // launch() rejects it (another device's stream)
  for (size_t o = 0; o + sizeof(uintptr_t) <= n; o += sizeof(uintptr_t)) {
    uintptr_t w;
    memcpy(&w, (const char *)params + o, sizeof w);
    if (w < 4096) continue;
    int owner = -1;
    size_t size = 0;
    uintptr_t base = 0;
    {
      std::lock_guard<std::mutex> lk(g_dev_mu);
      auto it = devmem_find(w);
      if (it == g_devmem.end() || it->second.dev == dev || g_peer[dev][it->second.dev]) continue;
      owner = it->second.dev, size = it->second.size, base = it->first;
    }
    fail(NULL, 0,
         "kernel %s launched at %s:%d on device %d: the parameter word at byte %zu is %p, inside device %d's cudaMalloc "
         "block %p (%zu bytes), and device %d has no peer access to device %d: on a GPU the kernel would fault or "
         "corrupt memory (not detected: which block and thread would touch it first)",
         c.name, c.file, c.line, dev, o, (void *)w, owner, (void *)base, size, dev, owner);
  }
}
}  // namespace simt

// =============================================================================================================
// The CUDA runtime subset (cuda_runtime_api.h signatures): one device, host memory, synchronous streams
// =============================================================================================================
using namespace simt;
namespace {
std::mutex g_mem_mu;
std::unordered_map<const void *, size_t> g_mem;  // live cudaMalloc blocks
struct SimtStream {
  int dev;
  unsigned flags;  // cudaStreamNonBlocking: not synchronized with the legacy stream
};
struct SimtEvent {
  double t;
};
double now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}
}  // namespace
int simt::stream_device(cudaStream_t s) { return s ? reinterpret_cast<SimtStream *>(s)->dev : t_device; }

// =============================================================================================================
// Stream capture and graphs (cudaStreamBeginCapture .. cudaStreamEndCapture, cudaGraphInstantiate,
// cudaGraphLaunch), as CUDA defines them:
//   - while a stream captures, its kernel launches, copies and sets are recorded as nodes, not run; a kernel
//     node holds a copy of the arguments made at the launch (later changes to the caller's variables do not
//     reach it; device memory is read when the node runs); copy nodes read their source when they run;
//   - cudaGraphInstantiate copies the nodes; cudaGraphLaunch runs them in order on the calling thread
//     (streams are synchronous here: one stream per graph, no forks, so the order is the capture order);
//   - forbidden while capturing, failing with CUDA's codes and invalidating the capture (its
//     cudaStreamEndCapture then returns cudaErrorStreamCaptureInvalidated and no graph):
//       synchronizing or querying the capturing stream, cudaDeviceSynchronize, cudaMalloc / cudaFree /
//       cudaMallocHost, cudaEventSynchronize (the "unsafe" calls: this thread's non-relaxed captures, and
//       every thread's under cudaStreamCaptureModeGlobal) -> cudaErrorStreamCaptureUnsupported;
//       the legacy stream (cudaMemcpy, cudaMemset, stream 0) while a blocking stream of the device captures
//       -> cudaErrorStreamCaptureImplicit; an op on an invalidated capture -> ...Invalidated;
//       cudaStreamEndCapture of a ThreadLocal / Global capture on another thread -> ...WrongThread.
//   SIMT_PROFILE=1 also prints, for every step the backend marks (profile_step): kernel launches, graph
//   launches (and the kernels they ran), host->device and device->host copies and bytes.
// What it cannot show: launch latency, the CPU time a graph launch saves, or overlap (everything here is
// synchronous); it shows what is captured, that replays compute the same values, and every copy and sync.
// =============================================================================================================
namespace simt {
struct Node {
  enum { KERNEL, COPY, SET } kind;
  LaunchCfg cfg;  // KERNEL
  void (*body)(void *);
  void *ctx;
  void *(*clone)(const void *);
  void (*drop)(void *);
  void *dst;  // COPY / SET: height rows of width bytes
  const void *src;
  size_t width, height, dpitch, spitch;
  int value;
  cudaMemcpyKind ckind;
  const void *caller;  // COPY / SET: the return address of the runtime call (guard-zone reports)
};
struct Graph {
  std::vector<Node> nodes;
  ~Graph() {
    for (Node &n : nodes)
      if (n.kind == Node::KERNEL) n.drop(n.ctx);
  }
};
struct Capture {
  SimtStream *s;
  int mode;
  bool invalid;
  pthread_t owner;
  Graph *g;
};
static std::mutex g_cap_mu;
static std::vector<Capture> g_caps;  // the open capture sequences of the process
static int g_global_caps;            // of those, the ones in cudaStreamCaptureModeGlobal
static __thread int t_strict_caps;   // this thread's open non-relaxed captures

static Capture *find_cap(const void *s) {  // g_cap_mu held
  for (Capture &c : g_caps)
    if (c.s == s) return &c;
  return NULL;
}
}  // namespace simt

namespace {
bool capture_of(cudaStream_t s) {
  if (!s) return false;
  std::lock_guard<std::mutex> lk(g_cap_mu);
  return find_cap(s) != NULL;
}
// An op the capture forbids on its stream: the capture is invalidated, the op fails with e.
cudaError_t capture_fail(cudaStream_t s, const char *what, cudaError_t e) {
  std::lock_guard<std::mutex> lk(g_cap_mu);
  if (Capture *c = find_cap(s)) c->invalid = true;
  fprintf(stderr, "simt: %s while capturing: %s (the capture is invalidated)\n", what, cudaGetErrorName(e));
  return e;
}
cudaError_t capture_refuse(const char *what, cudaError_t e) {
  fprintf(stderr, "simt: %s: %s\n", what, cudaGetErrorName(e));
  return e;
}
// "Potentially unsafe" calls (cudaThreadExchangeStreamCaptureMode): refused while this thread has a
// non-relaxed capture open, or any thread a Global one; this thread's captures are invalidated.
cudaError_t unsafe_call_check(const char *what) {
  std::lock_guard<std::mutex> lk(g_cap_mu);
  if (!t_strict_caps && !g_global_caps) return cudaSuccess;
  for (Capture &c : g_caps)  // the caller's own captures (another thread's Global capture only refuses the call)
    if (pthread_equal(c.owner, pthread_self())) c.invalid = true;
  fprintf(stderr, "simt: %s while a stream capture is open: cudaErrorStreamCaptureUnsupported (the capture is invalidated)\n",
          what);
  return cudaErrorStreamCaptureUnsupported;
}
// The legacy stream synchronizes with every blocking stream of its device: not while one captures.
cudaError_t legacy_stream_check(const char *what) {
  std::lock_guard<std::mutex> lk(g_cap_mu);
  bool hit = false;
  for (Capture &c : g_caps)
    if (c.s->dev == t_device && !(c.s->flags & cudaStreamNonBlocking)) c.invalid = true, hit = true;
  if (!hit) return cudaSuccess;
  fprintf(stderr, "simt: %s (the legacy stream) while a blocking stream captures: cudaErrorStreamCaptureImplicit "
          "(the capture is invalidated)\n", what);
  return cudaErrorStreamCaptureImplicit;
}

void count_copy(cudaMemcpyKind k, size_t bytes) {
  if (k == cudaMemcpyHostToDevice) t_cnt.h2d++, t_cnt.h2d_bytes += (long long)bytes;
  if (k == cudaMemcpyDeviceToHost) t_cnt.d2h++, t_cnt.d2h_bytes += (long long)bytes;
}
void run_node(const Node &n) {
  if (n.kind == Node::KERNEL) {
    t_cnt.graph_kernels++;
    run_grid(n.cfg, n.body, n.ctx);
    return;
  }
  // copies and sets into or out of device memory must stay inside one allocation (also when replayed)
  if (n.width && n.height) {
    bool set = n.kind == Node::SET;
    guard_check_range(n.dst, (n.height - 1) * n.dpitch + n.width, set ? "cudaMemset" : "cudaMemcpy destination", n.caller);
    if (!set) guard_check_range(n.src, (n.height - 1) * n.spitch + n.width, "cudaMemcpy source", n.caller);
  }
  for (size_t r = 0; r < n.height; r++) {
    char *d = (char *)n.dst + r * n.dpitch;
    if (n.kind == Node::SET) memset(d, n.value, n.width);
    else memmove(d, (const char *)n.src + r * n.spitch, n.width);
  }
  if (n.kind == Node::COPY) count_copy(n.ckind, n.width * n.height);
}
// A copy or set on stream s: recorded when s captures, refused on an invalidated capture, else run now.
cudaError_t stream_op(int kind, cudaStream_t s, void *dst, const void *src, size_t width, size_t height, size_t dpitch,
                      size_t spitch, int value, cudaMemcpyKind ckind, const void *caller) {
  Node n{};
  n.kind = (decltype(n.kind))kind, n.dst = dst, n.src = src, n.width = width, n.height = height;
  n.dpitch = dpitch, n.spitch = spitch, n.value = value, n.ckind = ckind, n.caller = caller;
  if (!s) {
    if (cudaError_t e = legacy_stream_check(kind == Node::SET ? "a memset on stream 0" : "a copy on stream 0")) return set_error(e);
  } else {
    std::lock_guard<std::mutex> lk(g_cap_mu);
    if (Capture *c = find_cap(s)) {
      if (c->invalid) return set_error(cudaErrorStreamCaptureInvalidated);
      c->g->nodes.push_back(n);
      return cudaSuccess;
    }
  }
  // emulated devices: the copy's ends must be this device's memory (or a peer's); a stream with an emulated NCCL
  // operation pending runs its later copies when that completes
  simt::devmem_check_copy(kind == Node::SET ? "cudaMemset" : "cudaMemcpy", dst, kind == Node::SET ? NULL : src,
                          height ? (height - 1) * dpitch + width : 0, ckind, s);
  if (kind == Node::COPY && height == 1 && width && simt::stream_defer_copy(s, dst, src, width)) return cudaSuccess;
  simt::stream_drain(s);
  if (width && height) run_node(n);
  return cudaSuccess;
}
}  // namespace

namespace simt {
static bool capture_launch(const LaunchCfg &c, void (*body)(void *), void *ctx, void *(*clone)(const void *),
                           void (*drop)(void *)) {
  if (!c.stream) {
    if (cudaError_t e = legacy_stream_check(c.name)) {
      t_last_error = e;
      return true;
    }
    return false;
  }
  std::lock_guard<std::mutex> lk(g_cap_mu);
  Capture *cap = find_cap(c.stream);
  if (!cap) return false;
  if (cap->invalid) {
    t_last_error = cudaErrorStreamCaptureInvalidated;
    return true;
  }
  Node n{};
  n.kind = Node::KERNEL, n.cfg = c, n.body = body, n.ctx = clone(ctx), n.clone = clone, n.drop = drop;
  cap->g->nodes.push_back(n);
  return true;
}

static void profile_totals() {
  const Counters &b = t_cnt;
  fprintf(stderr,
          "simt: profile totals (this thread): %lld kernel launches, %lld graph launches (%lld kernels), H2D %lld copies "
          "%lld bytes, D2H %lld copies %lld bytes\n",
          b.launches, b.graph_launches, b.graph_kernels, b.h2d, b.h2d_bytes, b.d2h, b.d2h_bytes);
}

// SIMT_PROFILE=1: one line per step the backend marks (pipeline_step's profiling marker).
static __thread Counters t_step_start;
void profile_step(int step, int end) {
  init();
  if (!g_profile) return;
  if (!end) {
    t_step_start = t_cnt;
    return;
  }
  const Counters &a = t_step_start, &b = t_cnt;
  fprintf(stderr,
          "simt: profile step %d: %lld kernel launches, %lld graph launches (%lld kernels), H2D %lld copies %lld bytes, "
          "D2H %lld copies %lld bytes\n",
          step, b.launches - a.launches, b.graph_launches - a.graph_launches, b.graph_kernels - a.graph_kernels,
          b.h2d - a.h2d, b.h2d_bytes - a.h2d_bytes, b.d2h - a.d2h, b.d2h_bytes - a.d2h_bytes);
}
}  // namespace simt

extern "C" {
cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
  init();
  if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread)
    return set_error(capture_refuse("cudaStreamBeginCapture on the legacy / per-thread default stream",
                                    cudaErrorStreamCaptureUnsupported));
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return set_error(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lk(g_cap_mu);
  if (find_cap(s)) return set_error(cudaErrorIllegalState);  // already capturing
  g_caps.push_back(Capture{reinterpret_cast<SimtStream *>(s), (int)mode, false, pthread_self(), new Graph()});
  if (mode == cudaStreamCaptureModeGlobal) g_global_caps++;
  if (mode != cudaStreamCaptureModeRelaxed) t_strict_caps++;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  std::lock_guard<std::mutex> lk(g_cap_mu);
  Capture *c = find_cap(s);
  if (!c) return set_error(cudaErrorIllegalState);  // not capturing
  if (c->mode != cudaStreamCaptureModeRelaxed && !pthread_equal(c->owner, pthread_self()))
    return set_error(cudaErrorStreamCaptureWrongThread);
  Capture cap = *c;
  g_caps.erase(g_caps.begin() + (c - g_caps.data()));
  if (cap.mode == cudaStreamCaptureModeGlobal) g_global_caps--;
  if (cap.mode != cudaStreamCaptureModeRelaxed) t_strict_caps--;
  if (cap.invalid) {
    delete cap.g;
    *graph = NULL;
    return set_error(cudaErrorStreamCaptureInvalidated);
  }
  *graph = reinterpret_cast<cudaGraph_t>(cap.g);
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status) {
  std::lock_guard<std::mutex> lk(g_cap_mu);
  Capture *c = find_cap(s);
  *status = !c ? cudaStreamCaptureStatusNone : c->invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
  if (!exec || !graph) return set_error(cudaErrorInvalidValue);
  Graph *g = reinterpret_cast<Graph *>(graph), *x = new Graph();
  x->nodes = g->nodes;  // the executable graph owns its own copies of the arguments
  for (Node &n : x->nodes)
    if (n.kind == Node::KERNEL) n.ctx = n.clone(n.ctx);
  *exec = reinterpret_cast<cudaGraphExec_t>(x);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return set_error(cudaErrorInvalidValue);
  if (capture_of(s))  // a child-graph node: not emulated
    return set_error(capture_fail(s, "cudaGraphLaunch into a capturing stream (not emulated)", cudaErrorNotSupported));
  if (!s)
    if (cudaError_t e = legacy_stream_check("cudaGraphLaunch on stream 0")) return set_error(e);
  t_cnt.graph_launches++;
  for (const Node &n : reinterpret_cast<Graph *>(exec)->nodes) run_node(n);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<Graph *>(exec);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<Graph *>(graph);
  return cudaSuccess;
}
}  // extern "C"

extern "C" {
cudaError_t cudaGetDeviceCount(int *count) {
  init();
  *count = device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
  *device = t_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last_error; }
const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorPeerAccessAlreadyEnabled: return "cudaErrorPeerAccessAlreadyEnabled";
    case cudaErrorPeerAccessNotEnabled: return "cudaErrorPeerAccessNotEnabled";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    default: return "cudaErrorUnknown";
  }
}
const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotSupported: return "operation not supported (SIMT emulator)";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorPeerAccessAlreadyEnabled: return "peer access is already enabled";
    case cudaErrorPeerAccessNotEnabled: return "peer access has not been enabled";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error (SIMT emulator)";
  }
}

static void fill_props(cudaDeviceProp *p, int device) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "vdp SIMT emulator (host CPU) #%d", device);
  p->pciBusID = device;  // each emulated device its own "slot"
  p->unifiedAddressing = 1;
  p->major = 9;
  p->minor = 0;
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  p->totalGlobalMem = (size_t)pages * (size_t)psz;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = (size_t)g_smem_optin;
  p->sharedMemPerMultiprocessor = (size_t)g_smem_optin + 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->multiProcessorCount = 1;
  p->l2CacheSize = 0;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
  init();
  if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
  fill_props(prop, device);
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  init();
  if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = g_smem_optin; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrMultiProcessorCount: *value = 1; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    default: return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
  init();
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  if (value < 0 || value > g_smem_optin) {
    fprintf(stderr, "simt: cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): over the device limit %d\n", value,
            g_smem_optin);
    return set_error(cudaErrorInvalidValue);
  }
  std::lock_guard<std::mutex> lk(g_attr_mu);
  g_max_dyn[{func, t_device}] = value;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t size) {
  init();
  if (cudaError_t e = unsafe_call_check("cudaMalloc")) return set_error(e);
  void *m = NULL;
  if (g_guard_mode != GUARD_OFF) {  // guard zones (see their section)
    if (!(m = guard_alloc(size, __builtin_return_address(0)))) return set_error(cudaErrorMemoryAllocation);
  } else {
    if (posix_memalign(&m, 256, size ? size : 1)) return set_error(cudaErrorMemoryAllocation);
    memset(m, 0xFF, size);  // poison: never-written device memory reads as NaN
  }
  {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    g_mem[m] = size;
  }
  devmem_add(m, size, t_device);  // emulated devices: the block belongs to the current device
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = unsafe_call_check("cudaFree")) return set_error(e);
  {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    auto it = g_mem.find(p);
    if (it == g_mem.end()) {
      fprintf(stderr, "simt: cudaFree(%p): not a live cudaMalloc pointer\n", p);
      return set_error(cudaErrorInvalidValue);
    }
    g_mem.erase(it);
  }
  devmem_remove(p);
  if (!guard_free(p, __builtin_return_address(0))) free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t size) {
  if (cudaError_t e = unsafe_call_check("cudaMallocHost")) return set_error(e);
  *p = malloc(size ? size : 1);
  return *p ? cudaSuccess : set_error(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void *p) {
  free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *total) {
  long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  *total = (size_t)pages * (size_t)psz;
  *fr = (size_t)avail * (size_t)psz;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *ptr) {
  memset(a, 0, sizeof *a);
  std::lock_guard<std::mutex> lk(g_mem_mu);
  for (auto &kv : g_mem)
    if ((const char *)ptr >= (const char *)kv.first && (const char *)ptr < (const char *)kv.first + (kv.second ? kv.second : 1)) {
      a->type = cudaMemoryTypeDevice;
      a->device = devmem_device(ptr);
      a->devicePointer = const_cast<void *>(ptr);
      return cudaSuccess;
    }
  a->type = cudaMemoryTypeUnregistered;
  return cudaSuccess;
}
// Copies and sets run at once (streams are synchronous), unless their stream is capturing: then they are
// recorded as graph nodes (stream_op). The synchronous forms use the legacy stream (legacy_stream_check).
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
  return stream_op(Node::COPY, NULL, dst, src, n, 1, n, n, 0, kind, __builtin_return_address(0));
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  return stream_op(Node::COPY, s, dst, src, n, 1, n, n, 0, kind, __builtin_return_address(0));
}
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s) {
  if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidValue);
  return stream_op(Node::COPY, s, dst, src, width, height, dpitch, spitch, 0, kind, __builtin_return_address(0));
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
  return stream_op(Node::SET, NULL, p, NULL, n, 1, n, n, v, cudaMemcpyDefault, __builtin_return_address(0));
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  return stream_op(Node::SET, s, p, NULL, n, 1, n, n, v, cudaMemcpyDefault, __builtin_return_address(0));
}
cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = unsafe_call_check("cudaDeviceSynchronize")) return set_error(e);
  stream_drain_device(t_device);  // the emulated NCCL operations pending on this device's streams
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) {
  *s = reinterpret_cast<cudaStream_t>(new SimtStream{t_device, cudaStreamDefault});
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  *s = reinterpret_cast<cudaStream_t>(new SimtStream{t_device, flags});
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (capture_of(s)) return set_error(capture_refuse("cudaStreamDestroy of a capturing stream", cudaErrorStreamCaptureUnsupported));
  stream_drain(s);
  stream_forget(s);
  delete reinterpret_cast<SimtStream *>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (capture_of(s)) return set_error(capture_fail(s, "cudaStreamSynchronize of the capturing stream", cudaErrorStreamCaptureUnsupported));
  if (!s) return set_error(legacy_stream_check("cudaStreamSynchronize(0)"));
  stream_drain(s);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (capture_of(s)) return set_error(capture_fail(s, "cudaStreamQuery of the capturing stream", cudaErrorStreamCaptureUnsupported));
  if (!stream_ready(s)) return cudaErrorNotReady;  // an emulated NCCL operation is pending on it
  return cudaSuccess;
}
cudaError_t cudaDeviceCanAccessPeer(int *can, int device, int peer) {
  if (device < 0 || device >= device_count() || peer < 0 || peer >= device_count())
    return set_error(cudaErrorInvalidDevice);
  *can = device != peer;
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int flags) {
  if (peer < 0 || peer >= device_count() || peer == t_device) return set_error(cudaErrorInvalidDevice);
  std::lock_guard<std::mutex> lk(g_dev_mu);
  if (g_peer[t_device][peer]) return set_error(cudaErrorPeerAccessAlreadyEnabled);
  g_peer[t_device][peer] = true;
  return cudaSuccess;
}
cudaError_t cudaDeviceDisablePeerAccess(int peer) {
  if (peer < 0 || peer >= device_count()) return set_error(cudaErrorInvalidDevice);
  std::lock_guard<std::mutex> lk(g_dev_mu);
  if (!g_peer[t_device][peer]) return set_error(cudaErrorPeerAccessNotEnabled);
  g_peer[t_device][peer] = false;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = reinterpret_cast<cudaEvent_t>(new SimtEvent{0});
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<SimtEvent *>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (capture_of(s))  // an event node: not emulated (the backend records no event inside a captured step)
    return set_error(capture_fail(s, "cudaEventRecord on a capturing stream (not emulated)", cudaErrorNotSupported));
  stream_drain(s);
  reinterpret_cast<SimtEvent *>(e)->t = now_ms();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (cudaError_t r = unsafe_call_check("cudaEventSynchronize")) return set_error(r);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = (float)(reinterpret_cast<SimtEvent *>(b)->t - reinterpret_cast<SimtEvent *>(a)->t);
  return cudaSuccess;
}

// NCCL: emulated in simt_nccl.cpp.
}  // extern "C"

// =============================================================================================================
// SIMT_PROFILE counters (issue #18): what test/simt/profile.cpp needs from the runtime
// =============================================================================================================
namespace simt {
bool prof_is_shared(const void *p, size_t n) { return is_shared(p, n); }
void prof_device_ranges(void (*add)(uintptr_t begin, uintptr_t end)) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  for (auto &e : g_mem) add((uintptr_t)e.first, (uintptr_t)e.first + e.second);
}
}  // namespace simt
