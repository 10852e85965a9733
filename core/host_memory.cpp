// See host_memory.h. The cache keeps at most as many free bytes as the most ever in use at once
// in large blocks, so a process's large blocks never hold more than twice its peak; a training
// loop, which asks for the same sizes every step, reuses its blocks and stops mapping new ones
// after the first step. Large blocks are also advised as transparent huge pages (first touch
// faults in 2 MB at a time where the kernel allows it).
#include "core/host_memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr size_t kHuge = size_t(2) << 20;

size_t rounded(size_t bytes) { return (bytes + kHuge - 1) / kHuge * kHuge; }

struct LargeCache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  size_t cached = 0, in_use = 0, peak_in_use = 0;

  void release_all() {
    for (auto& [size, p] : free_blocks) std::free(p);
    free_blocks.clear();
    cached = 0;
  }
};

LargeCache& cache() {
  static LargeCache* c = new LargeCache;  // never destroyed: tensors may be freed at exit
  return *c;
}

void* map_large(size_t size) {
  void* p = std::aligned_alloc(kHuge, size);
  if (p) madvise(p, size, MADV_HUGEPAGE);  // advice only: ignored where huge pages are off
  return p;
}

}  // namespace

// Under AddressSanitizer every block goes straight to malloc and free, so that a use after free of
// a large tensor is still caught (a cached block would be handed out again unpoisoned).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheLarge = false;
#else
constexpr bool kCacheLarge = true;
#endif

void* host_alloc(size_t bytes) {
  if (bytes < kLargeBlock || !kCacheLarge) {
    const size_t n = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, n ? n : 64);  // at least one byte: empty tensors have a pointer
    LB_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes");
    return p;
  }
  const size_t size = rounded(bytes);
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  void* p = nullptr;
  auto it = c.free_blocks.find(size);
  if (it != c.free_blocks.end()) {
    p = it->second;
    c.free_blocks.erase(it);
    c.cached -= size;
  } else {
    p = map_large(size);
    if (!p) {  // give the cached blocks back and try once more
      c.release_all();
      p = map_large(size);
    }
    LB_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes");
  }
  c.in_use += size;
  if (c.in_use > c.peak_in_use) c.peak_in_use = c.in_use;
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  if (bytes < kLargeBlock || !kCacheLarge) {
    std::free(p);
    return;
  }
  const size_t size = rounded(bytes);
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.in_use -= size;
  if (c.cached + size > c.peak_in_use) {
    std::free(p);
    return;
  }
  c.free_blocks.emplace(size, p);
  c.cached += size;
}

size_t host_cached_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

}  // namespace lowbit

namespace lowbit {

size_t host_peak_large_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.peak_in_use;
}

}  // namespace lowbit
