// A tiny RGB canvas for `lowbit plot`: lines, rectangles and text (stb_easy_font's bitmap
// glyphs), saved as PNG with stb_image_write. Enough for training curves; no dependencies beyond
// Debian's libstb-dev.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

struct Rgb {
  uint8_t r, g, b;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  void pixel(int x, int y, Rgb c);
  void rect(int x0, int y0, int x1, int y1, Rgb c);  // filled, inclusive
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 2);
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1);
  int text_width(const std::string& s, int scale = 1) const;
  void save_png(const std::string& path) const;  // atomic: temp file then rename
  int width() const { return w_; }
  int height() const { return h_; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// One panel of curves: series of (x, y) points drawn into a box with axes, ticks and a legend.
struct Series {
  std::string label;
  std::vector<double> x, y;
  Rgb color;
};
void draw_panel(Canvas& c, int x0, int y0, int w, int h, const std::string& title,
                const std::string& xlabel, const std::vector<Series>& series);

}  // namespace lowbit
