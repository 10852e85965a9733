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
  // What large blocks hold, in use and cached, never exceeds the most ever in use at once.
  auto within_peak = [] { return host_large_in_use_bytes() + host_cached_bytes() <= host_peak_large_bytes(); };
  const size_t big = kLargeBlock + 12345;
  void* a = host_alloc(big);
  REQUIRE(a != nullptr);
  CHECK((uintptr_t)a % 64 == 0);
  std::memset(a, 1, big);  // the whole block is usable
  const size_t cached0 = host_cached_bytes();
  host_free(a, big);
  CHECK(host_cached_bytes() > cached0);
  CHECK(within_peak());
  void* b = host_alloc(big);  // the same size: the cached block
  CHECK(b == a);
  void* s = host_alloc(big - 1000);  // a little smaller, and nothing cached fits: a new block
  CHECK(s != b);
  host_free(s, big - 1000);
  void* t = host_alloc(big - 2000);  // now the block just freed fits (wasting under an eighth)
  CHECK(t == s);
  host_free(t, big - 2000);
  host_free(b, big);
  CHECK(within_peak());
  // A block twice the size would waste half of itself: not taken.
  void* e = host_alloc(4 * kLargeBlock);
  host_free(e, 4 * kLargeBlock);
  void* h = host_alloc(2 * kLargeBlock);
  CHECK(h != e);
  CHECK(within_peak());
  host_free(h, 2 * kLargeBlock);
  // A request larger than everything cached gives cached blocks back rather than lift the total
  // above the peak.
  void* d = host_alloc(8 * kLargeBlock);
  CHECK(within_peak());
  host_free(d, 8 * kLargeBlock);
  CHECK(within_peak());
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

TEST_CASE("host memory: a tensor on a reused large block starts from zeros() when asked") {
  const int64_t n = (int64_t)(kLargeBlock / sizeof(float)) + 7;
  const float* old = nullptr;
  {
    Tensor t = Tensor::empty({n});
    std::memset(t.data<float>(), 0xff, (size_t)n * sizeof(float));
    old = t.data<float>();
  }
  Tensor z = Tensor::zeros({n});  // the block just freed, garbage in it: it must read as zeros
  const float* p = z.data<float>();
  if (kCached) CHECK(p == old);  // tensors go through the cache (without it malloc decides)
  bool all_zero = true;
  for (int64_t i = 0; i < n; i += 4097) all_zero = all_zero && p[i] == 0.0f;
  CHECK(all_zero);
  CHECK(p[n - 1] == 0.0f);
}
