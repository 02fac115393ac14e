// profile.cpp — SIMT_PROFILE=1: what a kernel asks of the memory system, counted exactly from the addresses
// its lanes use, per kernel and launch configuration (name, grid, block, dynamic shared memory).
//
// A request is what one warp instruction asks for: the lanes of one warp executing the same static memory
// instruction for the k-th time (an instruction = a call site's file:line for ldmatrix / cp.async, the
// instrumented load's or store's return address for plain C++ accesses). ldmatrix and mma are whole-warp
// collectives in the emulator, so their requests are complete at once; per-lane accesses are gathered per
// (warp, instruction, k) and evaluated at the block's end.
//
// Shared memory (CUDA C++ Programming Guide, "Shared Memory" of the compute capabilities 5.x and later, which
// sm_80 / sm_86 / sm_89 / sm_90 follow: 32 banks, successive 32-bit words in successive banks, any number of
// lanes reading one word is a broadcast, not a conflict; Nsight Compute's "wavefront" = one pass of the
// shared-memory pipeline, its l1tex__data_pipe_lsu_wavefronts_mem_shared metrics). The model used here:
//   * an access of W bytes per lane is served in phases of 128 bytes of lane data: W <= 4: the whole warp at
//     once; W = 8: two half-warps; W = 16: four quarter-warps (the 64- and 128-bit rules the guide gives for
//     its 3.x devices, which the later hardware keeps for wide accesses);
//   * wavefronts of a phase = the largest number of distinct 32-bit words any one bank must deliver;
//   * ldmatrix .xN: each 8x8 matrix (8 row addresses of 16 bytes, lanes 8i..8i+7) is one phase;
//   * cp.async destinations: the 16-byte stores of one warp instruction, quarter-warp phases;
//   * ideal = ceil(distinct words requested / 32) (at least 1): what a conflict-free layout needs.
//   wavefronts / ideal > 1 = bank conflicts ("2-way" = 2).
// Global memory (Nsight Compute: "sectors" = the 32-byte aligned segments an L1/L2 request touches,
// l1tex__t_sectors_pipe_lsu_mem_global_op_ld): sectors per request = the distinct 32-byte segments of the
// lanes' bytes; ideal = ceil(distinct bytes / 32). cp.async sources count as global loads (src-size bytes).
// Also counted: cp.async bytes, mma.sync instructions (per warp), __syncthreads (per block).
//
// Plain loads and stores (ld/st.shared, ld/st.global in the real kernels) are seen only in the profiling build
// (`make simt-prof`), whose kernels are compiled with g++'s -fsanitize=thread instrumentation but linked with
// prof_hooks.cpp instead of the TSan runtime: every load/store calls __tsan_readN / __tsan_writeN(addr), and
// the hook's return address names the instruction. g++ at -O2 may merge or split accesses differently from
// nvcc (e.g. a 16-byte struct copy as one or two accesses): the figures for plain accesses describe the host
// compiler's code, which keeps the source's access widths in the kernels checked here (uint4, __half2, float).
//
// SIMT_PROFILE_SAMPLE=N: run only N blocks of each launch, evenly spaced (the others are skipped: the launch's
// results are then wrong on purpose), and scale the counters by blocks / N — for full-size shapes.
// SIMT_PROFILE_OUT=FILE: also write the counters as tab-separated lines (tools/gpu_model.sh reads them).
#include "profile.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace simt {
namespace prof {
enum Kind { SH_LD, SH_ST, LDSM, CP_DST, GL_LD, GL_ST, CP_SRC, NKIND };
static const char *const kKindName[NKIND] = {"ld.shared", "st.shared", "ldmatrix", "cp.async.dst",
                                             "ld.global", "st.global", "cp.async.src"};
static bool is_shared_kind(int k) { return k <= CP_DST; }

struct Count {
  double req = 0, got = 0, ideal = 0;  // requests, wavefronts (shared) or sectors (global), the ideal
  void add(const Count &o, double s) { req += o.req * s, got += o.got * s, ideal += o.ideal * s; }
};
struct Stats {
  Count k[NKIND];
  double cp_bytes = 0, mma = 0, barriers = 0, blocks_run = 0, blocks = 0, launches = 0, seconds = 0;
  void add(const Stats &o, double s) {
    for (int i = 0; i < NKIND; i++) k[i].add(o.k[i], s);
    cp_bytes += o.cp_bytes * s, mma += o.mma * s, barriers += o.barriers * s;
    blocks_run += o.blocks_run, blocks += o.blocks, launches += o.launches, seconds += o.seconds;
  }
};
// one static instruction of one kernel (for the list of the worst)
struct Site {
  std::string kernel;
  int kind;
  const char *file;
  int line;
  const void *pc;
};
struct SiteKey {
  const char *kernel;  // the LaunchCfg's name: a string literal
  const void *id;
  int line, kind;
  bool operator<(const SiteKey &o) const {
    return std::tie(kernel, id, line, kind) < std::tie(o.kernel, o.id, o.line, o.kind);
  }
};

struct Lane {
  uint64_t addr;
  int bytes;
  int lane;
};
struct Req {
  int kind;
  std::vector<Lane> lanes;
};
struct ReqKey {
  const void *id;
  int line, kind, warp;
  uint32_t k;
  bool operator==(const ReqKey &o) const {
    return id == o.id && line == o.line && kind == o.kind && warp == o.warp && k == o.k;
  }
};
struct ReqHash {
  size_t operator()(const ReqKey &r) const {
    uint64_t h = (uint64_t)(uintptr_t)r.id * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)r.line << 32 | (uint64_t)r.kind << 24 | (uint64_t)r.warp << 12) + r.k * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h ^ (h >> 29));
  }
};
struct KHash {
  size_t operator()(const std::pair<const void *, int> &p) const {
    return (size_t)((uintptr_t)p.first * 31 + (unsigned)p.second);
  }
};

// A lane's plain accesses waiting to be merged: g++ splits a struct copy (uint4, float2, __half2) into
// narrower accesses where nvcc emits one vector ld/st (.v2 / .v4). Accesses of one lane, of one kind, by
// instructions less than 4 KiB of code apart, in one aligned 16-byte chunk (in any order) that together
// cover exactly one aligned block of 4, 8 or 16 bytes count as one access of that width (named by the first
// instruction); anything else counts as it came.
struct Part {
  const void *pc;
  uint64_t addr;
  int bytes, kind;
};
struct Pending {
  Part p[8];
  int n = 0;
  uint64_t chunk = 0;  // the 16-byte aligned chunk the parts fall in
  uint32_t mask = 0;   // its bytes covered so far (parts may come in any order)
};

// the launch now running on this host thread
struct Launch {
  const LaunchCfg *cfg = nullptr;
  int nthreads = 0;
  long long sampled_every = 1;
  Stats st;
  std::map<SiteKey, Count> sites;
  std::vector<std::unordered_map<std::pair<const void *, int>, uint32_t, KHash>> kcount;  // per thread
  std::unordered_map<ReqKey, Req, ReqHash> reqs;
  std::vector<Pending> pend;  // per thread
  std::vector<std::pair<uintptr_t, uintptr_t>> dev;  // device allocations, sorted
};
static thread_local Launch *t_launch;

static std::mutex g_mu;
static std::map<std::string, Stats> *g_stats;  // "name grid block smem" -> counters
static std::map<SiteKey, Count> *g_sites;
static long long g_sample;  // SIMT_PROFILE_SAMPLE

// The operator behind the launches (kernels.cu's VDP_MODEL_NOTE): its FLOPs and DRAM bytes go with the first
// launch after the note, its name with every launch until the next note.
struct Note {
  const char *op = nullptr;
  double flops = 0, bytes = 0;
  bool fresh = false;
};
static thread_local Note t_note;
// SIMT_PROFILE_OUT: every launch in order (one "#launch" line each), for tools/gpu_model.sh
struct LaunchRec {
  std::string op, key;
  double flops, bytes;
  Stats st;
};
static std::vector<LaunchRec> *g_log;

// ----- the rules ------------------------------------------------------------------------------------------
// wavefronts and ideal of one shared-memory request
static void shared_cost(const std::vector<Lane> &v, bool ldsm, double *got, double *ideal) {
  int width = 0;
  for (const Lane &l : v) width = std::max(width, l.bytes);
  const int per_phase = ldsm ? 8 : width <= 4 ? 32 : width <= 8 ? 16 : 8;
  std::vector<uint64_t> all;
  double wf = 0;
  for (int ph = 0; ph < 32 / per_phase; ph++) {
    std::vector<uint64_t> words;  // distinct words of this phase
    for (const Lane &l : v)
      if (l.lane / per_phase == ph)
        for (uint64_t w = l.addr / 4; w <= (l.addr + l.bytes - 1) / 4; w++) words.push_back(w);
    if (words.empty()) continue;
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    int bank[32] = {0}, worst = 0;
    for (uint64_t w : words) worst = std::max(worst, ++bank[w & 31]);
    wf += worst;
    all.insert(all.end(), words.begin(), words.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  *got = wf;
  // ldmatrix: one wavefront per 8x8 matrix at best; otherwise the distinct words in units of 32 banks
  *ideal = ldsm ? (double)(v.size() / 8) : std::max<double>(1, (double)((all.size() + 31) / 32));
}
// sectors and ideal of one global-memory request
static void global_cost(const std::vector<Lane> &v, double *got, double *ideal) {
  std::vector<std::pair<uint64_t, uint64_t>> iv;  // byte intervals [a, b)
  for (const Lane &l : v)
    if (l.bytes > 0) iv.push_back({l.addr, l.addr + (uint64_t)l.bytes});
  if (iv.empty()) {
    *got = *ideal = 0;
    return;
  }
  std::sort(iv.begin(), iv.end());
  uint64_t bytes = 0, cur_a = iv[0].first, cur_b = iv[0].second;
  std::vector<uint64_t> sec;
  auto flush = [&](uint64_t a, uint64_t b) {  // a merged interval [a, b)
    bytes += b - a;
    for (uint64_t x = a / 32; x <= (b - 1) / 32; x++) sec.push_back(x);
  };
  for (size_t i = 1; i < iv.size(); i++) {
    if (iv[i].first <= cur_b) cur_b = std::max(cur_b, iv[i].second);
    else {
      flush(cur_a, cur_b);
      cur_a = iv[i].first, cur_b = iv[i].second;
    }
  }
  flush(cur_a, cur_b);
  std::sort(sec.begin(), sec.end());
  const double sectors = (double)(std::unique(sec.begin(), sec.end()) - sec.begin());
  *got = sectors;
  *ideal = (double)((bytes + 31) / 32);
}

static void record(Launch *L, int kind, const void *id, int line, const std::vector<Lane> &v) {
  double got, ideal;
  if (is_shared_kind(kind)) shared_cost(v, kind == LDSM, &got, &ideal);
  else global_cost(v, &got, &ideal);
  Count &c = L->st.k[kind];
  c.req += 1, c.got += got, c.ideal += ideal;
  Count &s = L->sites[SiteKey{L->cfg->name, id, line, kind}];
  s.req += 1, s.got += got, s.ideal += ideal;
}

// ----- hooks ----------------------------------------------------------------------------------------------
static void report();
void init() {
  const char *s = getenv("SIMT_PROFILE_SAMPLE");
  g_sample = s ? atoll(s) : 0;
  g_stats = new std::map<std::string, Stats>();
  g_sites = new std::map<SiteKey, Count>();
  const char *out = getenv("SIMT_PROFILE_OUT");
  if (out && *out) g_log = new std::vector<LaunchRec>();
  atexit(report);
}

void launch_begin(const LaunchCfg &c, int nthreads) {
  Launch *L = new Launch();
  L->cfg = &c;
  L->nthreads = nthreads;
  L->kcount.resize((size_t)nthreads);
  L->pend.resize((size_t)nthreads);
  t_launch = L;
  prof_device_ranges([](uintptr_t a, uintptr_t b) { t_launch->dev.push_back({a, b}); });
  std::sort(L->dev.begin(), L->dev.end());
}

bool run_block(long long index, long long total) {
  if (g_sample <= 0 || total <= g_sample) return true;
  // blocks floor(j · total / N), j = 0..N-1
  const long long j = (index * g_sample + total - 1) / total;  // the smallest j with j·total/N >= index
  return j < g_sample && j * total / g_sample == index;
}

static void flush(Launch *L, int th);
void block_end() {
  Launch *L = t_launch;
  if (!L) return;
  for (int th = 0; th < L->nthreads; th++) flush(L, th);
  for (auto &e : L->reqs) record(L, e.second.kind, e.first.id, e.first.line, e.second.lanes);
  L->reqs.clear();
  for (auto &m : L->kcount) m.clear();
  L->st.blocks_run += 1;
}

void launch_end(double seconds) {
  Launch *L = t_launch;
  if (!L) return;
  t_launch = nullptr;
  const LaunchCfg &c = *L->cfg;
  const double blocks = (double)c.grid.x * c.grid.y * c.grid.z;
  const double scale = L->st.blocks_run > 0 ? blocks / L->st.blocks_run : 0;
  char key[512];
  snprintf(key, sizeof key, "%s\tgrid=%u,%u,%u\tblock=%u,%u,%u\tsmem=%zu", c.name, c.grid.x, c.grid.y, c.grid.z,
           c.block.x, c.block.y, c.block.z, c.smem);
  Stats one = L->st;
  one.blocks = blocks;
  one.launches = 1;
  one.seconds = seconds;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    (*g_stats)[key].add(one, scale);
    for (auto &e : L->sites) (*g_sites)[e.first].add(e.second, scale);
    if (g_log) {
      Note &n = t_note;
      LaunchRec r{n.op ? n.op : "-", key, n.fresh ? n.flops : 0, n.fresh ? n.bytes : 0, Stats()};
      r.st.add(one, scale);
      n.fresh = false;
      g_log->push_back(std::move(r));
    }
  }
  delete L;
}

static inline int linear_thread() {
  const uint3 &t = thread_idx();
  const BlockView &b = block_view();
  return (int)(t.x + b.bdim.x * (t.y + b.bdim.y * t.z));
}

static void lane_access_th(Launch *L, int th, int kind, const void *id, int line, uint64_t addr, int bytes) {
  const uint32_t k = L->kcount[(size_t)th][{id, line * 8 + kind}]++;
  Req &r = L->reqs[ReqKey{id, line, kind, th >> 5, k}];
  r.kind = kind;
  r.lanes.push_back(Lane{addr, bytes, th & 31});
}
static void flush(Launch *L, int th) {
  Pending &q = L->pend[(size_t)th];
  if (q.n == 0) return;
  // one access if the parts cover exactly one aligned block of 4, 8 or 16 bytes
  int lo = __builtin_ctz(q.mask), b = __builtin_popcount(q.mask);
  const bool block = q.n > 1 && (b == 4 || b == 8 || b == 16) && lo % b == 0 && q.mask == (((1u << b) - 1) << lo);
  if (block) lane_access_th(L, th, q.p[0].kind, q.p[0].pc, 0, q.chunk + (uint64_t)lo, b);
  else
    for (int i = 0; i < q.n; i++) lane_access_th(L, th, q.p[i].kind, q.p[i].pc, 0, q.p[i].addr, q.p[i].bytes);
  q.n = 0, q.mask = 0;
}
static void plain_access(Launch *L, int kind, const void *pc, uint64_t addr, int bytes) {
  const int th = linear_thread();
  Pending &q = L->pend[(size_t)th];
  const uint64_t chunk = addr & ~(uint64_t)15;
  const bool fits = bytes < 16 && (addr & 15) + (uint64_t)bytes <= 16;
  const uint32_t m = fits ? ((1u << bytes) - 1) << (addr & 15) : 0;
  if (q.n > 0) {
    const Part &last = q.p[q.n - 1];
    const intptr_t dpc = (const char *)pc - (const char *)last.pc;
    const bool joins = fits && last.kind == kind && chunk == q.chunk && !(q.mask & m) && q.n < 8 && dpc > -4096 && dpc < 4096;
    if (!joins) flush(L, th);
  }
  if (!fits) {  // nothing to merge: as it comes
    lane_access_th(L, th, kind, pc, 0, addr, bytes);
    return;
  }
  q.chunk = chunk;
  q.mask |= m;
  q.p[q.n++] = Part{pc, addr, bytes, kind};
  if (q.mask == 0xFFFFu) flush(L, th);
}

static void lane_access(int kind, const void *id, int line, const void *addr, int bytes) {
  Launch *L = t_launch;
  if (!L) return;
  const int th = linear_thread();
  const uint32_t k = L->kcount[(size_t)th][{id, line * 8 + kind}]++;
  Req &r = L->reqs[ReqKey{id, line, kind, th >> 5, k}];
  r.kind = kind;
  r.lanes.push_back(Lane{(uint64_t)(uintptr_t)addr, bytes, th & 31});
}

void ldmatrix(int warp, const char *file, int line, int nmat, const void *const *row_addr) {
  Launch *L = t_launch;
  if (!L) return;
  std::vector<Lane> v;
  for (int l = 0; l < 8 * nmat; l++) v.push_back(Lane{(uint64_t)(uintptr_t)row_addr[l], 16, l});
  record(L, LDSM, file, line, v);
}

void mma(int warp) {
  if (t_launch) t_launch->st.mma += 1;
}

void cp_async(const char *file, int line, const void *smem, const void *gmem, int src_bytes) {
  Launch *L = t_launch;
  if (!L) return;
  lane_access(CP_DST, file, line, smem, 16);
  lane_access(CP_SRC, file, line, gmem, src_bytes);
  L->st.cp_bytes += src_bytes;
}

void barrier() {
  if (t_launch && linear_thread() == 0) t_launch->st.barriers += 1;
}

void access(const void *pc, const void *addr, int bytes, bool write) {
  Launch *L = t_launch;
  if (!L) return;
  int kind;
  if (prof_is_shared(addr, (size_t)bytes)) kind = write ? SH_ST : SH_LD;
  else {
    const uintptr_t a = (uintptr_t)addr;
    auto it = std::upper_bound(L->dev.begin(), L->dev.end(), std::make_pair(a, ~(uintptr_t)0));
    if (it == L->dev.begin() || a >= std::prev(it)->second) return;  // a local, a parameter, host memory
    kind = write ? GL_ST : GL_LD;
  }
  plain_access(L, kind, pc, (uint64_t)(uintptr_t)addr, bytes);
}

}  // namespace prof
void prof_note(const char *op, double flops, double bytes) {
  prof::t_note.op = op, prof::t_note.flops = flops, prof::t_note.bytes = bytes, prof::t_note.fresh = true;
}
namespace prof {

bool totals(const char *kernel, const char *kind, double *req, double *got, double *ideal) {
  int k = -1;
  for (int i = 0; i < NKIND; i++)
    if (!strcmp(kind, kKindName[i])) k = i;
  if (k < 0 || !g_stats) return false;
  std::lock_guard<std::mutex> lk(g_mu);
  *req = *got = *ideal = 0;
  const size_t n = strlen(kernel);
  for (auto &e : *g_stats)
    if (!e.first.compare(0, n, kernel) && e.first[n] == '\t')
      *req += e.second.k[k].req, *got += e.second.k[k].got, *ideal += e.second.k[k].ideal;
  return true;
}

// ----- the report -----------------------------------------------------------------------------------------
// file:line of an instrumented access (addr2line on this executable), for the list of the worst sites
static std::string pc_line(const void *pc) {
  Dl_info di;
  if (!dladdr(pc, &di) || !di.dli_fname) return "?";
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "addr2line -i -e '%s' 0x%lx 2>/dev/null", di.dli_fname,
           (unsigned long)((uintptr_t)pc - (uintptr_t)di.dli_fbase - 1));
  FILE *p = popen(cmd, "r");
  if (!p) return "?";
  char buf[512] = "?";
  std::string last = "?";
  while (fgets(buf, sizeof buf, p)) {  // -i: the innermost frame first, the kernel's line last
    buf[strcspn(buf, "\n")] = 0;
    const char *slash = strrchr(buf, '/');
    last = slash ? slash + 1 : buf;
  }
  pclose(p);
  return last;
}

static void report() {
  std::lock_guard<std::mutex> lk(g_mu);
  FILE *out = stderr;
  const char *path = getenv("SIMT_PROFILE_OUT");
  FILE *tsv = path && *path ? fopen(path, "w") : nullptr;
  if (path && *path && !tsv) fprintf(stderr, "simt: profile: cannot write %s\n", path);
  fprintf(out, "simt: profile counters per kernel and launch (requests; wavefronts or sectors per request, ideal in "
               "brackets%s)\n", g_sample > 0 ? "; sampled blocks, scaled" : "");
  if (tsv) {
    fprintf(tsv, "kernel\tgrid\tblock\tsmem\tlaunches\tblocks\tblocks_run");
    for (int i = 0; i < NKIND; i++) fprintf(tsv, "\t%s_req\t%s_%s\t%s_ideal", kKindName[i], kKindName[i],
                                            is_shared_kind(i) ? "wavefronts" : "sectors", kKindName[i]);
    fprintf(tsv, "\tcp_async_bytes\tmma\tbarriers\n");
  }
  for (auto &e : *g_stats) {
    const Stats &s = e.second;
    std::string k = e.first;
    for (char &ch : k)
      if (ch == '\t') ch = ' ';
    fprintf(out, "simt: profile %s  launches %.0f blocks %.0f (run %.0f)\n", k.c_str(), s.launches, s.blocks, s.blocks_run);
    std::string line;
    for (int i = 0; i < NKIND; i++) {
      if (s.k[i].req == 0) continue;
      char b[160];
      snprintf(b, sizeof b, "  %s %.0f x %.2f [%.2f]", kKindName[i], s.k[i].req, s.k[i].got / s.k[i].req,
               s.k[i].ideal / s.k[i].req);
      line += b;
    }
    char b[200];
    snprintf(b, sizeof b, "  cp.async %.0f B  mma %.0f  barriers %.0f", s.cp_bytes, s.mma, s.barriers);
    line += b;
    fprintf(out, "simt: profile   %s\n", line.c_str());
    if (tsv) {
      fprintf(tsv, "%s\t%.0f\t%.0f\t%.0f", e.first.c_str(), s.launches, s.blocks, s.blocks_run);
      for (int i = 0; i < NKIND; i++) fprintf(tsv, "\t%.0f\t%.0f\t%.0f", s.k[i].req, s.k[i].got, s.k[i].ideal);
      fprintf(tsv, "\t%.0f\t%.0f\t%.0f\n", s.cp_bytes, s.mma, s.barriers);
    }
  }
  // the sites furthest from ideal (shared: bank conflicts; global: excess sectors), at most 30; the
  // instructions of one source line (unrolled copies) together
  std::map<std::tuple<std::string, int, std::string>, Count> by_line;
  for (auto &e : *g_sites) {
    if (e.second.got <= e.second.ideal * 1.001) continue;
    const SiteKey &sk = e.first;
    std::string where = sk.line ? std::string((const char *)sk.id) + ":" + std::to_string(sk.line) : pc_line(sk.id);
    const size_t slash = where.rfind('/');
    if (slash != std::string::npos) where = where.substr(slash + 1);
    const size_t disc = where.find(" (discriminator");
    if (disc != std::string::npos) where = where.substr(0, disc);
    by_line[{sk.kernel, sk.kind, where}].add(e.second, 1);
  }
  std::vector<std::pair<double, const std::pair<const std::tuple<std::string, int, std::string>, Count> *>> worst;
  for (auto &e : by_line) worst.push_back({e.second.got - e.second.ideal, &e});
  std::sort(worst.begin(), worst.end(), [](const auto &a, const auto &b) { return a.first > b.first; });
  if (!worst.empty()) fprintf(out, "simt: profile sites above the ideal (excess wavefronts / sectors, largest first):\n");
  for (size_t i = 0; i < worst.size() && i < 30; i++) {
    const auto &k = worst[i].second->first;
    const Count &c = worst[i].second->second;
    fprintf(out, "simt: profile   %-22s %-12s %-20s %.0f requests x %.2f [ideal %.2f]\n", std::get<0>(k).c_str(),
            kKindName[std::get<1>(k)], std::get<2>(k).c_str(), c.req, c.got / c.req, c.ideal / c.req);
    if (tsv)
      fprintf(tsv, "#site\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\n", std::get<0>(k).c_str(), kKindName[std::get<1>(k)],
              std::get<2>(k).c_str(), c.req, c.got, c.ideal);
  }
  if (tsv && g_log)
    for (size_t i = 0; i < g_log->size(); i++) {
      const LaunchRec &r = (*g_log)[i];
      const Stats &s = r.st;
      fprintf(tsv, "#launch\t%zu\t%s\t%.6g\t%.6g\t%s\t%.0f\t%.0f", i, r.op.c_str(), r.flops, r.bytes, r.key.c_str(),
              s.blocks, s.blocks_run);
      for (int k = 0; k < NKIND; k++) fprintf(tsv, "\t%.0f\t%.0f\t%.0f", s.k[k].req, s.k[k].got, s.k[k].ideal);
      fprintf(tsv, "\t%.0f\t%.0f\t%.0f\n", s.cp_bytes, s.mma, s.barriers);
    }
  if (tsv) fclose(tsv);
}
}  // namespace prof
}  // namespace simt
