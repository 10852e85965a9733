// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A number is a pure function of
// (seed, stream, index): stream separates uses (weight init of one tensor, dropout of one step,
// stochastic rounding of one node), index is the element. So results do not depend on the thread
// count or on the order in which elements are visited, and a resumed run continues exactly.
#pragma once
#include <array>
#include <cstdint>

namespace lowbit {

// One Philox block: 4 x 32 random bits for a 128-bit counter and a 64-bit key.
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// The index-th 32-bit number of (seed, stream).
uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
// Uniform in [0, 1): float from 24 random bits, double from 53.
float rng_uniform_f(uint64_t seed, uint64_t stream, uint64_t index);
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
// Standard normal by Box-Muller from two uniforms of the same (seed, stream) at 2*index, 2*index+1.
double rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

// Sequential convenience over the same function: the n-th call returns element n of the stream.
// Its whole state is (seed, stream, counter), which a checkpoint stores.
struct Rng {
  uint64_t seed = 0, stream = 0, counter = 0;
  Rng() = default;
  Rng(uint64_t seed_, uint64_t stream_) : seed(seed_), stream(stream_) {}
  uint32_t next_u32() { return rng_u32(seed, stream, counter++); }
  double uniform() { return rng_uniform(seed, stream, counter++); }
  double normal() { return rng_normal(seed, stream, counter++); }
  // Uniform integer in [0, n) without modulo bias (rejection).
  uint64_t below(uint64_t n);
};

// Stream ids derived from names, so every use gets its own stream without a central table.
uint64_t stream_id(const char* name, uint64_t a = 0, uint64_t b = 0);

}  // namespace lowbit
