// Training progress: a bar redrawn in place on a terminal (epoch, step, loss, accuracy, images/s,
// ETA), nothing when stderr is not a terminal (the per-epoch lines on stdout remain).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace lowbit {

class Progress {
 public:
  explicit Progress(bool enabled) : on_(enabled && isatty(2)) {}
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss, double acc,
              double img_per_s, double elapsed) {
    if (!on_ || (elapsed - last_ < 0.25 && step != steps)) return;
    last_ = elapsed;
    const int width = 24;
    int filled = steps ? (int)(width * step / steps) : width;
    char bar[width + 1];
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double eta = step ? elapsed / (double)step * (double)(steps - step) : 0;
    std::fprintf(stderr, "\r  epoch %lld/%lld [%s] %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s  ETA %dm%02ds ",
                 (long long)epoch, (long long)epochs, bar, (long long)step, (long long)steps, loss,
                 100 * acc, img_per_s, (int)eta / 60, (int)eta % 60);
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
    last_ = -1;
  }

 private:
  bool on_;
  bool drawn_ = false;
  double last_ = -1;
};

}  // namespace lowbit
