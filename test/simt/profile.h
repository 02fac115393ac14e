// profile.h — SIMT_PROFILE=1: memory-system counters of the emulated kernels (test/simt/profile.cpp has the
// rules and their sources). The runtime (simt.cpp) calls these hooks only while profiling is on; the plain
// C++ loads and stores of the kernels reach access() only in the profiling build (make simt-prof: the kernels
// compiled with -fsanitize=thread instrumentation, the hooks of prof_hooks.cpp instead of the TSan runtime).
#ifndef VDP_SIMT_PROFILE_H
#define VDP_SIMT_PROFILE_H
#include "simt.h"

namespace simt {
// provided by simt.cpp for the counters: is [p, p+n) shared memory of the running block / device memory?
bool prof_is_shared(const void *p, size_t n);
void prof_device_ranges(void (*add)(uintptr_t begin, uintptr_t end));

namespace prof {
void init();                                          // reads SIMT_PROFILE_SAMPLE, registers the report
void launch_begin(const LaunchCfg &c, int nthreads);  // before the first block
bool run_block(long long index, long long total);     // SIMT_PROFILE_SAMPLE=N: false for blocks not sampled
void block_end();                                     // a block's requests are complete: evaluate them
void launch_end(double seconds);
// whole-warp instructions (the last lane to arrive calls with every lane's operand)
void ldmatrix(int warp, const char *file, int line, int nmat, const void *const *row_addr);
void mma(int warp);
// per-lane instructions
void cp_async(const char *file, int line, const void *smem, const void *gmem, int src_bytes);
void barrier();                                                  // __syncthreads, counted once per block
void access(const void *pc, const void *addr, int bytes, bool write);  // instrumented plain load / store
// the totals so far of one kernel (every launch configuration) for one kind ("ld.shared", "st.shared",
// "ldmatrix", "cp.async.dst", "ld.global", "st.global", "cp.async.src"): requests, wavefronts or sectors, ideal;
// false if the kind is unknown (the counters' own test, test/simt/prof_selftest.cu)
bool totals(const char *kernel, const char *kind, double *req, double *got, double *ideal);
}  // namespace prof
}  // namespace simt
#endif
