// Canvas drawing and PNG output (see plot_canvas.h).
#include "tools/plot_canvas.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"

#define STB_IMAGE_WRITE_STATIC  // private copy of the functions: no clash with other users
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace lowbit {

Canvas::Canvas(int width, int height, Rgb bg) : w_(width), h_(height), px_((size_t)width * height * 3) {
  for (size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = bg.r;
    px_[i + 1] = bg.g;
    px_[i + 2] = bg.b;
  }
}

void Canvas::pixel(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[((size_t)y * w_ + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, y0); y <= std::min(h_ - 1, y1); ++y)
    for (int x = std::max(0, x0); x <= std::min(w_ - 1, x1); ++x) pixel(x, y, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, int t) {
  // Stamps a t x t square along the segment at unit steps: simple and thick enough to read.
  double len = std::max(std::fabs(x1 - x0), std::fabs(y1 - y0));
  int n = std::max(1, (int)std::ceil(len));
  for (int i = 0; i <= n; ++i) {
    double x = x0 + (x1 - x0) * i / n, y = y0 + (y1 - y0) * i / n;
    int xi = (int)std::lround(x) - t / 2, yi = (int)std::lround(y) - t / 2;
    rect(xi, yi, xi + t - 1, yi + t - 1, c);
  }
}

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale) {
  static char buf[60000];
  std::string str = s;
  int quads = stb_easy_font_print(0, 0, str.data(), nullptr, buf, sizeof(buf));
  // Each quad: 4 vertices of (float x, y, z, uint8 rgba[4]) = 16 bytes; glyph quads are axis-aligned.
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buf + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buf + q * 64 + 32);
    rect(x + (int)(v0[0] * scale), y + (int)(v0[1] * scale), x + (int)(v2[0] * scale) - 1,
         y + (int)(v2[1] * scale) - 1, c);
  }
}

int Canvas::text_width(const std::string& s, int scale) const {
  std::string str = s;
  return stb_easy_font_width(str.data()) * scale;
}

void Canvas::save_png(const std::string& path) const {
  std::string tmp = path + ".tmp";
  LB_CHECK(stbi_write_png(tmp.c_str(), w_, h_, 3, px_.data(), w_ * 3) != 0, "plot: cannot write '",
           tmp, "'");
  LB_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "plot: cannot rename '", tmp, "' to '",
           path, "'");
}

namespace {
// Enough decimals that ticks `step` apart print differently.
std::string fmt_tick(double v, double step) {
  char b[32];
  double a = std::fabs(v);
  if (a != 0 && (a < 1e-4 || a >= 1e6)) {
    std::snprintf(b, sizeof b, "%.2e", v);
  } else {
    int dec = step > 0 ? std::max(0, (int)std::ceil(-std::log10(step)) + 1) : 2;
    std::snprintf(b, sizeof b, "%.*f", std::min(dec, 6), v);
  }
  return b;
}
}  // namespace

void draw_panel(Canvas& c, int x0, int y0, int w, int h, const std::string& title,
                const std::string& xlabel, const std::vector<Series>& series) {
  const Rgb axis{60, 60, 60}, grid{225, 225, 225};
  const int left = 56, right = 12, top = 28, bottom = 36;
  const int px0 = x0 + left, px1 = x0 + w - right, py0 = y0 + top, py1 = y0 + h - bottom;
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  if (xmin > xmax) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad;
  ymax += pad;
  auto X = [&](double v) { return px0 + (v - xmin) / (xmax - xmin) * (px1 - px0); };
  auto Y = [&](double v) { return py1 - (v - ymin) / (ymax - ymin) * (py1 - py0); };
  for (int k = 0; k <= 4; ++k) {
    double yv = ymin + (ymax - ymin) * k / 4;
    int yy = (int)std::lround(Y(yv));
    c.rect(px0, yy, px1, yy, grid);
    std::string t = fmt_tick(yv, (ymax - ymin) / 4);
    c.text(px0 - 6 - c.text_width(t), yy - 4, t, axis);
    double xv = xmin + (xmax - xmin) * k / 4;
    int xx = (int)std::lround(X(xv));
    c.rect(xx, py0, xx, py1, grid);
    std::string tx = fmt_tick(xv, (xmax - xmin) / 4);
    c.text(xx - c.text_width(tx) / 2, py1 + 6, tx, axis);
  }
  c.rect(px0, py0, px0, py1, axis);
  c.rect(px0, py1, px1, py1, axis);
  c.text(x0 + (w - c.text_width(title, 2)) / 2, y0 + 4, title, axis, 2);
  c.text(px0 + (px1 - px0 - c.text_width(xlabel)) / 2, py1 + 20, xlabel, axis);
  int ly = py0 + 6;
  for (const Series& s : series) {
    for (size_t i = 1; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i - 1]) && std::isfinite(s.y[i]))
        c.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), s.color);
    if (s.x.size() == 1) c.rect((int)X(s.x[0]) - 2, (int)Y(s.y[0]) - 2, (int)X(s.x[0]) + 2, (int)Y(s.y[0]) + 2, s.color);
    c.rect(px1 - 110, ly + 2, px1 - 96, ly + 4, s.color);
    c.text(px1 - 90, ly - 1, s.label, axis);
    ly += 14;
  }
}

}  // namespace lowbit
