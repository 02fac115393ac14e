// prof_hooks.cpp — the profiling build's stand-in for the ThreadSanitizer runtime (make simt-prof). The
// kernels are compiled with g++ -fsanitize=thread, which puts a call __tsan_readN / __tsan_writeN(addr)
// before every load and store; linked with these definitions instead of libtsan, each call hands the access
// to the SIMT_PROFILE counters (profile.cpp), the return address naming the static instruction. Outside an
// emulated thread (host code of kernels.cu) the hooks return at once. Atomics of the host code are
// performed for real (sequentially consistent, whatever the order asked).
#include "profile.h"

#define SIMT_RW(N)                                                                                          \
  extern "C" void __tsan_read##N(void *a) {                                                                 \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, false);                      \
  }                                                                                                         \
  extern "C" void __tsan_write##N(void *a) {                                                                \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, true);                       \
  }                                                                                                         \
  extern "C" void __tsan_unaligned_read##N(void *a) {                                                       \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, false);                      \
  }                                                                                                         \
  extern "C" void __tsan_unaligned_write##N(void *a) {                                                      \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, true);                       \
  }                                                                                                         \
  extern "C" void __tsan_volatile_read##N(void *a) {                                                        \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, false);                      \
  }                                                                                                         \
  extern "C" void __tsan_volatile_write##N(void *a) {                                                       \
    if (simt_cur_fiber) simt::prof::access(__builtin_return_address(0), a, N, true);                       \
  }
SIMT_RW(1)
SIMT_RW(2)
SIMT_RW(4)
SIMT_RW(8)
SIMT_RW(16)
extern "C" void __tsan_read_range(void *a, unsigned long n) {
  if (simt_cur_fiber && n <= 16) simt::prof::access(__builtin_return_address(0), a, (int)n, false);
}
extern "C" void __tsan_write_range(void *a, unsigned long n) {
  if (simt_cur_fiber && n <= 16) simt::prof::access(__builtin_return_address(0), a, (int)n, true);
}
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_init() {}
extern "C" void __tsan_vptr_update(void **, void *) {}
extern "C" void __tsan_vptr_read(void **) {}

#define SIMT_ATOMIC(B, T)                                                                                   \
  extern "C" T __tsan_atomic##B##_load(const volatile T *a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  extern "C" void __tsan_atomic##B##_store(volatile T *a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  extern "C" T __tsan_atomic##B##_exchange(volatile T *a, T v, int) {                                       \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                     \
  }                                                                                                         \
  extern "C" T __tsan_atomic##B##_fetch_add(volatile T *a, T v, int) {                                      \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                         \
  extern "C" T __tsan_atomic##B##_fetch_sub(volatile T *a, T v, int) {                                      \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                         \
  extern "C" int __tsan_atomic##B##_compare_exchange_strong(volatile T *a, T *c, T v, int, int) {           \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
  }                                                                                                         \
  extern "C" int __tsan_atomic##B##_compare_exchange_weak(volatile T *a, T *c, T v, int, int) {             \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                  \
  }
SIMT_ATOMIC(8, unsigned char)
SIMT_ATOMIC(16, unsigned short)
SIMT_ATOMIC(32, unsigned int)
SIMT_ATOMIC(64, unsigned long long)
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) {}
