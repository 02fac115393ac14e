// shm_mark.cpp — the two bounds of the static __shared__ variables. simt.h makes each static __shared__
// variable of kernels.cu a block-scope thread_local; compiled with -fdata-sections, each one is a section
// .tbss._ZZ<function>E<name> (the Itanium mangling of a function-local entity). test/simt/shm.ld, in a
// relocatable link (ld -r), puts them all between this file's two markers (compiled with -DSIMT_MARK_BEGIN
// and -DSIMT_MARK_END): the runtime poisons [&simt_shm_begin + 1, &simt_shm_end) at every block start.
#if defined(SIMT_MARK_BEGIN)
__thread char simt_shm_begin __attribute__((section(".tbss.simt_shm_begin"), aligned(16)));
#elif defined(SIMT_MARK_END)
__thread char simt_shm_end __attribute__((section(".tbss.simt_shm_end"), aligned(16)));
#else
#error "compile with -DSIMT_MARK_BEGIN or -DSIMT_MARK_END"
#endif
