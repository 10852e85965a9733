// Philox4x32-10: ten rounds of two 32x32->64 multiplies and xors with a Weyl-sequence key.
#include "core/rng.h"

#include <cmath>

namespace lowbit {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = (uint64_t)M0 * c[0];
    uint64_t p1 = (uint64_t)M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  // One block gives four numbers: block index = index / 4.
  uint64_t block = index >> 2;
  std::array<uint32_t, 4> ctr = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                                 (uint32_t)(stream >> 32)};
  std::array<uint32_t, 2> key = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return philox4x32(ctr, key)[index & 3];
}

float rng_uniform_f(uint64_t seed, uint64_t stream, uint64_t index) {
  return (float)(rng_u32(seed, stream, index) >> 8) * (1.0f / 16777216.0f);
}

double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t hi = rng_u32(seed, stream, 2 * index) >> 5;      // 27 bits
  uint64_t lo = rng_u32(seed, stream, 2 * index + 1) >> 6;  // 26 bits
  return (double)((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

double rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  double u1 = rng_uniform(seed, stream, 2 * index);
  double u2 = rng_uniform(seed, stream, 2 * index + 1);
  if (u1 < 1e-300) u1 = 1e-300;  // log(0) guard
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

uint64_t Rng::below(uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = (uint64_t)UINT32_MAX + 1 - (((uint64_t)UINT32_MAX + 1) % n);
  for (;;) {
    uint64_t v = next_u32();
    if (n > UINT32_MAX) v = (v << 32) | next_u32();
    if (n > UINT32_MAX || v < limit) return v % n;
  }
}

uint64_t stream_id(const char* name, uint64_t a, uint64_t b) {
  // FNV-1a over the name, then mixed with a and b (splitmix64 finaliser).
  uint64_t h = 1469598103934665603ull;
  for (const char* p = name; *p; ++p) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(h ^ mix(a + 0x9E3779B97F4A7C15ull) ^ mix(b * 0xD6E8FEB86659FD93ull + 1));
}

}  // namespace lowbit
