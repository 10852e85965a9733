// Host memory for tensor storage. Small blocks come from malloc (init_process keeps glibc from
// returning them to the kernel); blocks of kLargeBlock bytes and more, which glibc always maps
// and unmaps one by one, are cached here instead: freed into a list by size and handed out again
// to the next request that fits them (wasting at most an eighth of the block). Without the cache
// every large activation and gradient of a training step (ResNet-18's first stage at batch 128:
// 33.5 MB each; MobileNetV2's expanded layers: 50-75 MB) was page-faulted in afresh every step:
// in a `perf record` of MobileNetV2's training about a third of the samples were the kernel
// clearing and mapping pages.
#pragma once
#include <cstddef>

namespace lowbit {

constexpr size_t kLargeBlock = size_t(32) << 20;  // glibc's largest mmap threshold

// 64-byte aligned; never null (throws when out of memory, after releasing the cache).
void* host_alloc(size_t bytes);
void host_free(void* p, size_t bytes);  // bytes: as passed to host_alloc
// Bytes held in the cache, free for reuse, and the most ever in use at once in large blocks (for
// tests and diagnostics); in use + cached never exceeds the peak.
size_t host_cached_bytes();
size_t host_large_in_use_bytes();
size_t host_peak_large_bytes();

}  // namespace lowbit
