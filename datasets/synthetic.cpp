// A built-in learnable 10-class task on 32x32 RGB: one shape (circle, square, triangle, X, bars,
// ring, stripes, checker, plus...) at a random position, size, small rotation and colour over a
// noisy gradient background, with a small distractor dot and pixel noise. Sample i is a pure
// function of (seed, split, i) through the counter-based RNG, so generation runs in parallel.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "datasets/dataset.h"

namespace lowbit {
namespace {

const char* kNames[10] = {"circle", "square", "triangle", "x-cross", "horizontal-bars",
                          "vertical-bars", "ring", "diagonal-stripes", "checker", "plus"};

// Is the point (u, v), in the shape's own frame scaled to [-1, 1]^2, inside shape `k`?
// phase shifts the stripes of the textured classes so that no fixed pixel gives the class away.
bool inside(int k, double u, double v, double phase, double period) {
  const bool box = std::fabs(u) <= 1 && std::fabs(v) <= 1;
  auto stripe = [&](double t) { return std::fmod(t / period + phase + 100.0, 1.0) < 0.5; };
  switch (k) {
    case 0: return u * u + v * v <= 1;
    case 1: return std::fabs(u) <= 0.85 && std::fabs(v) <= 0.85;
    case 2: return v <= 0.8 && std::fabs(u) <= (v + 1.0) * 0.5;  // apex up, base at v = 0.8
    case 3: return box && (std::fabs(u - v) <= 0.3 || std::fabs(u + v) <= 0.3);
    case 4: return box && stripe(v);
    case 5: return box && stripe(u);
    case 6: { double r2 = u * u + v * v; return r2 <= 1 && r2 >= 0.36; }
    case 7: return box && stripe((u + v) * 0.7071);
    case 8: return box && (stripe(u) != stripe(v));
    case 9: return box && (std::fabs(u) <= 0.3 || std::fabs(v) <= 0.3);
  }
  return false;
}

void render(uint8_t* img, int label, uint64_t seed, uint64_t stream, uint64_t noise_stream) {
  Rng r(seed, stream);
  double bg[3], grad[3], fg[3], dot[3];
  for (int c = 0; c < 3; ++c) bg[c] = 30 + 195 * r.uniform();
  for (int c = 0; c < 3; ++c) grad[c] = (r.uniform() - 0.5) * 80;
  const double gang = 6.283185307179586 * r.uniform();
  // Shape colour: uniform, but with a mean channel difference to the background of at least 45
  // (rejection, bounded), so the shape is visible yet its colour carries no class information.
  for (int tries = 0;; ++tries) {
    double diff = 0;
    for (int c = 0; c < 3; ++c) {
      fg[c] = 255 * r.uniform();
      diff += std::fabs(fg[c] - bg[c]) / 3;
    }
    if (diff >= 45 || tries == 32) break;
  }
  for (int c = 0; c < 3; ++c) dot[c] = 255 * r.uniform();
  const double size = 6 + 7 * r.uniform();  // half-extent in pixels
  const double cx = size - 2 + (36 - 2 * size) * r.uniform(), cy = size - 2 + (36 - 2 * size) * r.uniform();
  const double ang = (r.uniform() - 0.5) * 0.6;  // +-17 degrees: X and + stay 45 degrees apart
  const double cs = std::cos(ang), sn = std::sin(ang);
  const double phase = r.uniform(), period = 0.5 + 0.25 * r.uniform();
  const bool has_dot = r.uniform() < 0.6;
  const double dx = 32 * r.uniform(), dy = 32 * r.uniform(), dr = 1.2 + 1.6 * r.uniform();
  const double gc = std::cos(gang), gs = std::sin(gang);
  // One 32-bit noise word per pixel (a byte per channel), four per Philox block.
  uint32_t noise_words[1024];
  for (uint32_t blk = 0; blk < 256; ++blk) {
    auto v = philox4x32({blk, 0u, (uint32_t)noise_stream, (uint32_t)(noise_stream >> 32)},
                        {(uint32_t)seed, (uint32_t)(seed >> 32)});
    for (int j = 0; j < 4; ++j) noise_words[blk * 4 + j] = v[j];
  }
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      int hits = 0;  // 2x2 supersampling for soft edges
      for (int sy = 0; sy < 2; ++sy)
        for (int sx = 0; sx < 2; ++sx) {
          const double px = x + 0.25 + 0.5 * sx - cx, py = y + 0.25 + 0.5 * sy - cy;
          hits += inside(label, (px * cs + py * sn) / size, (-px * sn + py * cs) / size, phase, period);
        }
      const double a = hits / 4.0;
      const double t = ((x - 15.5) * gc + (y - 15.5) * gs) / 16.0;
      const bool in_dot = has_dot && (x + 0.5 - dx) * (x + 0.5 - dx) + (y + 0.5 - dy) * (y + 0.5 - dy) <= dr * dr;
      const uint32_t noise = noise_words[y * 32 + x];
      for (int c = 0; c < 3; ++c) {
        double v = (bg[c] + grad[c] * t) * (1 - a) + fg[c] * a;
        if (in_dot) v = dot[c];
        v += ((double)((noise >> (8 * c)) & 255u) - 127.5) * (24.0 / 127.5);  // uniform +-24
        img[(y * 32 + x) * 3 + c] = (uint8_t)std::lround(std::clamp(v, 0.0, 255.0));
      }
    }
}

}  // namespace

Dataset make_synthetic_set(uint64_t seed, int64_t n, const char* split) {
  LB_CHECK(n >= 0, "synthetic: negative sample count ", n);
  Dataset d;
  d.images = Tensor::empty({n, 32, 32, 3}, DType::u8);
  d.labels = Tensor::empty({n}, DType::i64);
  d.num_classes = 10;
  d.class_names.assign(kNames, kNames + 10);
  d.source = str_cat("synthetic (seed ", seed, ", ", split, ")");
  uint8_t* img = d.images.data<uint8_t>();
  int64_t* lab = d.labels.data<int64_t>();
  const std::string shape_name = std::string("synthetic/") + split;
  const std::string noise_name = std::string("synthetic-noise/") + split;
  parallel_for(n, 40000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      lab[i] = i % 10;  // balanced; the loader shuffles
      render(img + i * 3072, (int)(i % 10), seed, stream_id(shape_name.c_str(), (uint64_t)i),
             stream_id(noise_name.c_str(), (uint64_t)i));
    }
  });
  return d;
}

DataSplit make_synthetic(const DataOptions& opt) {
  auto count = [](int64_t n, int64_t limit) { return limit > 0 ? std::min(n, limit) : n; };
  DataSplit s;
  s.layout = "synthetic";
  s.train = make_synthetic_set(opt.seed, count(opt.synthetic_train, opt.limit_train), "train");
  s.test = make_synthetic_set(opt.seed, count(opt.synthetic_test, opt.limit_test), "test");
  return s;
}

}  // namespace lowbit
