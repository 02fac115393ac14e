// simt_rt.h — what the SIMT emulator's runtime files share (simt.cpp: devices, memory, launches;
// simt_nccl.cpp: emulated NCCL and the stream work it leaves pending). Not seen by kernels.cu.
#ifndef VDP_SIMT_RT_H
#define VDP_SIMT_RT_H
#include <cuda_runtime.h>
#include <stddef.h>

namespace simt {
// ----- emulated devices (simt.cpp) -----
int device_count();                  // SIMT_DEVICES (default 1)
int current_device();                // this host thread's cudaSetDevice
int stream_device(cudaStream_t s);   // the device a stream was created on (0: the current device)
int devmem_device(const void *p);    // the device whose cudaMalloc block holds p, or -1 (not device memory)
// An error (exit 1) when a copy on stream s (0: the current device) touches another device's memory without
// peer access. n = 0 checks nothing.
void devmem_check_copy(const char *what, const void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                       cudaStream_t s);

// ----- streams with emulated NCCL operations pending on them (simt_nccl.cpp) -----
// Streams are synchronous except behind an ncclSend/ncclRecv that has not completed: until it does, the
// stream's later copies wait in order (stream_defer_copy) and stream_ready is false.
bool stream_defer_copy(cudaStream_t s, void *dst, const void *src, size_t n);
bool stream_ready(cudaStream_t s);   // nothing pending (runs the deferred copies that became possible)
void stream_drain(cudaStream_t s);   // waits until nothing is pending (ops fail rather than wait forever)
void stream_drain_device(int dev);   // every stream of the device
void stream_forget(cudaStream_t s);  // the stream is destroyed
}  // namespace simt
#endif
