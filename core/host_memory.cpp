// See host_memory.h. What the large blocks hold (in use + cached) never exceeds the most ever in
// use at once, the peak a process without the cache would reach: a miss first gives cached blocks
// back. A training loop, which asks for the same sizes every step, reuses its blocks and stops
// mapping new ones after the first step. Large blocks are also advised as transparent huge pages
// (first touch faults in 2 MB at a time where the kernel allows it).
#include "core/host_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr size_t kHuge = size_t(2) << 20;

size_t rounded(size_t bytes) { return (bytes + kHuge - 1) / kHuge * kHuge; }

struct LargeCache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // block size -> block
  std::unordered_map<void*, size_t> sizes;   // block in use -> its size (may exceed the request)
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
  const size_t want = rounded(bytes);
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  // The smallest cached block that fits and wastes at most an eighth of itself.
  auto it = c.free_blocks.lower_bound(want);
  if (it != c.free_blocks.end() && it->first - want <= it->first / 8) {
    void* p = it->second;
    const size_t size = it->first;
    c.free_blocks.erase(it);
    c.cached -= size;
    c.in_use += size;
    c.sizes[p] = size;
    return p;
  }
  // A miss maps a new block. First the cache gives back its largest blocks while keeping them
  // would lift what is mapped (in use + cached) above the most ever in use: so large blocks never
  // hold more memory than a process without the cache would at its peak.
  while (!c.free_blocks.empty() &&
         c.in_use + c.cached + want > std::max(c.peak_in_use, c.in_use + want)) {
    auto last = std::prev(c.free_blocks.end());
    std::free(last->second);
    c.cached -= last->first;
    c.free_blocks.erase(last);
  }
  void* p = map_large(want);
  if (!p) {  // give the rest of the cache back and try once more
    c.release_all();
    p = map_large(want);
  }
  LB_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes");
  c.in_use += want;
  c.peak_in_use = std::max(c.peak_in_use, c.in_use);
  c.sizes[p] = want;
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  if (bytes < kLargeBlock || !kCacheLarge) {
    std::free(p);
    return;
  }
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.sizes.find(p);
  LB_CHECK(it != c.sizes.end(), "host_free: ", p, " is not a large block of host_alloc");
  const size_t size = it->second;
  c.sizes.erase(it);
  c.in_use -= size;
  c.free_blocks.emplace(size, p);
  c.cached += size;
}

size_t host_cached_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

size_t host_large_in_use_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.in_use;
}

size_t host_peak_large_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.peak_in_use;
}

}  // namespace lowbit
