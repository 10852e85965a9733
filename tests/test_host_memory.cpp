// The host block cache (core/host_memory.h): large blocks are reused, never more cached than the
// peak in use, small blocks bypass it, and tensors on top of it keep their contents.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>

#include "core/host_memory.h"
#include "core/tensor.h"

using namespace lowbit;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCached = false;  // host_memory.cpp bypasses the cache under ASan
#else
constexpr bool kCached = true;
#endif

TEST_CASE("host memory: a freed large block is handed out again; the cache stays under the peak" *
          doctest::skip(!kCached)) {
  const size_t big = kLargeBlock + 12345;
  const size_t before = host_cached_bytes();
  void* a = host_alloc(big);
  REQUIRE(a != nullptr);
  CHECK((uintptr_t)a % 64 == 0);
  std::memset(a, 1, big);  // the whole block is usable
  host_free(a, big);
  CHECK(host_cached_bytes() > before);
  void* b = host_alloc(big);  // the same rounded size: the cached block
  CHECK(b == a);
  CHECK(host_cached_bytes() == before);
  // Two blocks in use at once make the peak two blocks; freeing both caches both.
  void* c = host_alloc(big);
  CHECK(c != b);
  host_free(b, big);
  host_free(c, big);
  CHECK(host_cached_bytes() >= before + 2 * kLargeBlock);
  // A different size cannot take them: it maps its own block. Whatever is freed, the cache never
  // holds more than the peak in use.
  const size_t cached = host_cached_bytes();
  void* d = host_alloc(3 * kLargeBlock);
  CHECK(host_cached_bytes() == cached);
  host_free(d, 3 * kLargeBlock);
  CHECK(host_cached_bytes() <= host_peak_large_bytes());
}

TEST_CASE("host memory: small blocks bypass the cache") {
  const size_t before = host_cached_bytes();
  void* p = host_alloc(1000);
  REQUIRE(p != nullptr);
  CHECK((uintptr_t)p % 64 == 0);
  host_free(p, 1000);
  CHECK(host_cached_bytes() == before);
  void* z = host_alloc(0);  // an empty tensor still gets a pointer
  CHECK(z != nullptr);
  host_free(z, 0);
}

TEST_CASE("host memory: tensors in reused large blocks start from zeros() when asked") {
  const int64_t n = (int64_t)(kLargeBlock / sizeof(float)) + 7;
  {
    Tensor t = Tensor::empty({n});
    std::memset(t.data<float>(), 0xff, (size_t)n * sizeof(float));
  }
  Tensor z = Tensor::zeros({n});  // very likely the block just freed: it must read as zeros
  const float* p = z.data<float>();
  bool all_zero = true;
  for (int64_t i = 0; i < n; i += 4097) all_zero = all_zero && p[i] == 0.0f;
  CHECK(all_zero);
  CHECK(p[n - 1] == 0.0f);
}
