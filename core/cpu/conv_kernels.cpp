// General conv2d kernels: float32 convolutions go to Winograd F(4x4, 3x3) or F(2x2, 3x3)
// (conv_winograd.h: 3x3 stride 1, forward and data gradient; F(3x3, 2x2) for the weight
// gradient) or the direct kernels of conv_direct.h where those are
// faster (conv_direct_preferred; small 1x1 ones regrouped, conv_1x1_packed.cpp);
// everything else runs im2col + GEMM (the GEMM on a
// (C/groups*KH*KW, OH*OW) column matrix per group), col2im for the data gradient. The batch is
// cut into fixed chunks (conv_util.h) that run in parallel with single-threaded GEMMs inside, so
// OpenMP and OpenBLAS never oversubscribe the cores. Outputs under 16x16 put several images side
// by side in one column matrix (images_per_gemm). The weight gradient sums per chunk and adds the
// chunks in order, except at those small outputs, where one GEMM per block of images
// accumulates straight into dw (weight_grad_batched).
#include "core/cpu/conv_kernels.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "core/cpu/blas.h"
#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_util.h"
#include "core/cpu/conv_winograd.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t span = d * (k - 1) + 1;
  const int64_t num = in + 2 * p - span;
  if (num < 0 || s <= 0) return 0;  // C++ division truncates toward zero: handle num < 0 here
  return num / s + 1;
}

namespace {

// One image: col (C*KH*KW, OH*OW) from x (C, H, W), zero where the window leaves the image; rows
// ld apart (ld = OH*OW, or wider when several images sit side by side in one column matrix).
// Channels [c0, c1) only when given (the rows of those channels).
template <class T>
void im2col(T* col, const T* x, const ConvGeom& g, int64_t ld, int64_t c0 = 0, int64_t c1 = -1) {
  for (int64_t c = c0; c < (c1 < 0 ? g.C : c1); ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* row = col + ((c * g.KH + kh) * g.KW + kw) * ld;
        const int64_t off_w = kw * g.dw - g.pw;
        int64_t lo, hi;
        conv_valid_range(off_w, g.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* r = row + oh * g.OW;
          const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.OW, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W + off_w;
          std::fill(r, r + lo, T(0));
          if (g.sw == 1)  // the common case: a contiguous copy the compiler turns into vector moves
            std::copy(xr + lo, xr + hi, r + lo);
          else
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw];
          std::fill(r + hi, r + g.OW, T(0));
        }
      }
}

// The adjoint of im2col: dx (C, H, W) += scatter of dcol (C*KH*KW, OH*OW), rows ld apart.
// Serial per image, so the order of the additions is fixed.
template <class T>
void col2im_add(T* dx, const T* dcol, const ConvGeom& g, int64_t ld) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const T* row = dcol + ((c * g.KH + kh) * g.KW + kw) * ld;
        const int64_t off_w = kw * g.dw - g.pw;
        int64_t lo, hi;
        conv_valid_range(off_w, g.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.OW;
          T* xr = dx + (c * g.H + ih) * g.W + off_w;
          if (g.sw == 1)  // contiguous: vectorises
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow] += r[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += r[ow];
        }
      }
}

// A 1x1, stride-1, unpadded convolution reads x as its own column matrix: no im2col needed.
bool is_pointwise(const ConvGeom& g) {
  return g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

int64_t macs_per_image(const ConvGeom& g) {
  return g.O * (g.C / g.groups) * g.KH * g.KW * g.OH * g.OW;
}

// Images per GEMM. A small output (ResNet-18's 4x4 stage: 16 columns an image) makes per-image
// GEMMs so thin that OpenBLAS spends its time packing the whole weight matrix again for every
// image; images side by side in one column matrix (at least 256 columns) pack it once a batch.
int64_t images_per_gemm(const ConvGeom& g) {
  const int64_t ohw = std::max<int64_t>(1, g.OH * g.OW);
  return ohw >= 256 ? 1 : (256 + ohw - 1) / ohw;
}

// weight_grad_batched's block matrices live in two per-thread workspaces that grow to the largest
// size asked and are kept (the calling thread's; ops run on one thread at a time). Allocated and
// freed per call, a 19 MB column matrix came back from malloc as fresh pages on every call, and
// faulting them in cost several times the im2col that filled them; put through host_alloc's cache
// instead it crowded out the activations' blocks (batch norm's and the optimizer's times about
// doubled; both variants measured and dropped, docs/perf.md). The cost: the largest block
// matrices stay resident (about 46 MB for ResNet-18 at batch 128).
template <class T>
T* workspace(int slot, int64_t n) {
  struct Block {
    void* p = nullptr;
    size_t bytes = 0;
    ~Block() { std::free(p); }
  };
  thread_local Block blocks[2];
  Block& b = blocks[slot];
  const size_t want = (size_t)std::max<int64_t>(1, n) * sizeof(T);
  if (want > b.bytes) {
    std::free(b.p);
    b.p = nullptr, b.bytes = 0;
    const size_t rounded = (want + 4095) / 4096 * 4096;
    b.p = std::aligned_alloc(4096, rounded);
    LB_CHECK(b.p != nullptr, "conv2d: out of memory allocating a ", rounded, "-byte workspace");
    b.bytes = rounded;
  }
  return static_cast<T*>(b.p);
}

// Images [n, n + m) side by side (image i at column i*OH*OW), rows ld apart; in parallel over the
// channels (rows), each walking the images in order. Inside a chunk of conv_for_image_chunks
// (already a parallel region) OpenMP's default of one active level runs them on the calling thread.

// col (C*KH*KW, ld) by im2col.
template <class T>
void im2col_block(T* col, const T* x, const ConvGeom& g, int64_t n, int64_t m, int64_t ld) {
  const int64_t ohw = g.OH * g.OW, chw = g.C * g.H * g.W;
  parallel_for(g.C, m * g.KH * g.KW * ohw, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t i = 0; i < m; ++i) im2col(col + i * ohw, x + (n + i) * chw, g, ld, c, c + 1);
  });
}

// dyb (O, ld): the dy of the images.
template <class T>
void gather_block(T* dyb, const T* dy, const ConvGeom& g, int64_t n, int64_t m, int64_t ld) {
  const int64_t ohw = g.OH * g.OW;
  parallel_for(g.O, m * ohw, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t i = 0; i < m; ++i) {
        const T* src = dy + ((n + i) * g.O + o) * ohw;
        std::copy(src, src + ohw, dyb + o * ld + i * ohw);
      }
  });
}

// Images per block: the column matrix stays under conv_wgrad_block_bytes() (ResNet-18's 4x4
// stage at batch 128 needs 38 MB: one block).
template <class T>
int64_t block_images(const ConvGeom& g) {
  const int64_t per_image = std::max<int64_t>(1, g.C * g.KH * g.KW * g.OH * g.OW * (int64_t)sizeof(T));
  return std::max<int64_t>(1, std::min<int64_t>(g.N, conv_wgrad_block_bytes() / per_image));
}

// Outputs under 16x16: per-chunk partial sums would be whole copies of the weight gradient (at
// ResNet-18's 4x4 stage 9.4 MB per chunk, eight chunks, added serially: 4x the GEMMs' own time).
// Instead blocks of images, in order, each one GEMM into dw, threaded by OpenBLAS itself (no
// chunks run beside it).
template <class T>
void weight_grad_batched(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  const int64_t ohw = g.OH * g.OW, og = g.O / g.groups, kg = g.C / g.groups * g.KH * g.KW;
  const int64_t nb = block_images<T>(g);
  if (g.N == 0) return std::fill(dw, dw + g.O * kg, T(0));
  T* col = workspace<T>(0, g.C * g.KH * g.KW * nb * ohw);  // the larger one always in slot 0
  T* dyb = workspace<T>(1, g.O * nb * ohw);
  for (int64_t n = 0; n < g.N; n += nb) {  // blocks in order: the same bits every run
    const int64_t m = std::min(nb, g.N - n), ld = m * ohw;
    gather_block(dyb, dy, g, n, m, ld);
    im2col_block(col, x, g, n, m, ld);
    for (int64_t gr = 0; gr < g.groups; ++gr)
      gemm(false, true, og, kg, ld, T(1), dyb + gr * og * ld, ld, col + gr * kg * ld, ld,
           n == 0 ? T(0) : T(1), dw + gr * og * kg, kg);
  }
}

}  // namespace

int64_t& conv_wgrad_block_bytes() {
  static int64_t bytes = int64_t(64) << 20;
  return bytes;
}

template <class T>
void conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                        const ConvEpilogue<T>* ep) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_preferred(g)) return conv2d_forward_winograd(y, x, w, b, g, ep);
    if (conv_direct_preferred(g)) return conv2d_forward_direct(y, x, w, b, g, 0, ep);
    if (conv_1x1_packed_preferred(g)) return conv1x1_packed_forward(y, x, w, b, g, ep);
  }
  const int64_t ohw = g.OH * g.OW, cg = g.C / g.groups, og = g.O / g.groups;
  const int64_t kg = cg * g.KH * g.KW;  // GEMM inner size per group
  const bool pw1 = is_pointwise(g);
  conv_for_image_chunks(g.N, macs_per_image(g), [&](int64_t, int64_t n0, int64_t n1) {
    const int64_t nb = std::min(images_per_gemm(g), n1 - n0);
    if (nb > 1) {  // several images per GEMM: columns side by side, then copied out with the bias
      const int64_t ld = nb * ohw;
      std::vector<T> buf((size_t)(g.C * g.KH * g.KW * ld)), out((size_t)(g.O * ld));
      for (int64_t n = n0; n < n1; n += nb) {
        const int64_t m = std::min(nb, n1 - n);
        im2col_block(buf.data(), x, g, n, m, ld);
        for (int64_t gr = 0; gr < g.groups; ++gr)
          gemm(false, false, og, m * ohw, kg, T(1), w + gr * og * kg, kg, buf.data() + gr * kg * ld, ld,
               T(0), out.data() + gr * og * ld, ld);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t o = 0; o < g.O; ++o) {
            const T bias = b ? b[o] : T(0);
            const T* src = out.data() + o * ld + i * ohw;
            T* dst = y + ((n + i) * g.O + o) * ohw;
            for (int64_t p = 0; p < ohw; ++p) dst[p] = src[p] + bias;
            conv_epilogue_plane(dst, ohw, ep, n + i, o, g.O);
          }
      }
      return;
    }
    std::vector<T> buf(pw1 ? 0 : (size_t)(g.C * g.KH * g.KW * ohw));
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x + n * g.C * g.H * g.W;
      T* yn = y + n * g.O * ohw;
      const T* col = xn;
      if (!pw1) {
        im2col(buf.data(), xn, g, ohw);
        col = buf.data();
      }
      // The bias is written first and the GEMM accumulates onto it (beta = 1).
      for (int64_t o = 0; o < g.O; ++o) std::fill(yn + o * ohw, yn + (o + 1) * ohw, b ? b[o] : T(0));
      for (int64_t gr = 0; gr < g.groups; ++gr)
        gemm(false, false, og, ohw, kg, T(1), w + gr * og * kg, kg, col + gr * kg * ohw, ohw, T(1),
             yn + gr * og * ohw, ohw);
      for (int64_t o = 0; ep && o < g.O; ++o) conv_epilogue_plane(yn + o * ohw, ohw, ep, n, o, g.O);
    }
  });
}

template <class T>
void conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_data_preferred(g)) return conv2d_backward_data_winograd(dx, dy, w, g);
    if (conv_direct_data_preferred(g)) return conv2d_backward_data_direct(dx, dy, w, g);
    if (conv_phase_data_preferred(g)) return conv2d_backward_data_phases(dx, dy, w, g);
    if (conv_1x1_packed_grad_preferred(g)) return conv1x1_packed_backward_data(dx, dy, w, g);
  }
  const int64_t ohw = g.OH * g.OW, cg = g.C / g.groups, og = g.O / g.groups;
  const int64_t kg = cg * g.KH * g.KW, chw = g.C * g.H * g.W;
  const bool pw1 = is_pointwise(g);
  conv_for_image_chunks(g.N, macs_per_image(g), [&](int64_t, int64_t n0, int64_t n1) {
    const int64_t nb = std::min(images_per_gemm(g), n1 - n0);
    if (nb > 1) {  // several images per GEMM: their dy side by side, one column gradient
      const int64_t ld = nb * ohw;
      std::vector<T> dyb((size_t)(g.O * ld)), dcol((size_t)(g.C * g.KH * g.KW * ld));
      for (int64_t n = n0; n < n1; n += nb) {
        const int64_t m = std::min(nb, n1 - n);
        gather_block(dyb.data(), dy, g, n, m, ld);
        for (int64_t gr = 0; gr < g.groups; ++gr)
          gemm(true, false, kg, m * ohw, og, T(1), w + gr * og * kg, kg, dyb.data() + gr * og * ld, ld,
               T(0), dcol.data() + gr * kg * ld, ld);
        for (int64_t i = 0; i < m; ++i) {
          T* dxn = dx + (n + i) * chw;
          std::fill(dxn, dxn + chw, T(0));
          col2im_add(dxn, dcol.data() + i * ohw, g, ld);
        }
      }
      return;
    }
    std::vector<T> buf(pw1 ? 0 : (size_t)(g.C * g.KH * g.KW * ohw));
    for (int64_t n = n0; n < n1; ++n) {
      const T* dyn = dy + n * g.O * ohw;
      T* dxn = dx + n * chw;
      // Pointwise: the column gradient is the image gradient itself (beta = 0 overwrites it).
      T* dcol = pw1 ? dxn : buf.data();
      for (int64_t gr = 0; gr < g.groups; ++gr)
        gemm(true, false, kg, ohw, og, T(1), w + gr * og * kg, kg, dyn + gr * og * ohw, ohw, T(0),
             dcol + gr * kg * ohw, ohw);
      if (!pw1) {
        std::fill(dxn, dxn + chw, T(0));
        col2im_add(dxn, dcol, g, ohw);
      }
    }
  });
}

template <class T>
void conv2d_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_weight_preferred(g)) return conv2d_backward_weight_winograd(dw, dy, x, g);
    if (conv_direct_preferred(g)) return conv2d_backward_weight_direct(dw, dy, x, g);
    if (conv_1x1_packed_grad_preferred(g)) return conv1x1_packed_backward_weight(dw, dy, x, g);
  }
  if (images_per_gemm(g) > 1) return weight_grad_batched(dw, dy, x, g);
  const int64_t ohw = g.OH * g.OW, cg = g.C / g.groups, og = g.O / g.groups;
  const int64_t kg = cg * g.KH * g.KW, wsize = g.O * kg;
  const bool pw1 = is_pointwise(g);
  const int64_t chunks = conv_image_chunks(g.N);
  // Chunk 0 accumulates straight into dw; the others into their own partial buffers.
  std::vector<T> partial((size_t)(chunks > 1 ? (chunks - 1) * wsize : 0));
  conv_for_image_chunks(g.N, macs_per_image(g), [&](int64_t chunk, int64_t n0, int64_t n1) {
    T* acc = chunk == 0 ? dw : partial.data() + (chunk - 1) * wsize;
    if (n0 == n1) std::fill(acc, acc + wsize, T(0));
    std::vector<T> buf(pw1 ? 0 : (size_t)(g.C * g.KH * g.KW * ohw));
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x + n * g.C * g.H * g.W;
      const T* col = xn;
      if (!pw1) {
        im2col(buf.data(), xn, g, ohw);
        col = buf.data();
      }
      const T beta = n == n0 ? T(0) : T(1);
      for (int64_t gr = 0; gr < g.groups; ++gr)
        gemm(false, true, og, kg, ohw, T(1), dy + (n * g.O + gr * og) * ohw, ohw,
             col + gr * kg * ohw, ohw, beta, acc + gr * og * kg, kg);
    }
  });
  for (int64_t c = 1; c < chunks; ++c) {  // fixed order: the same bits for the same thread count
    const T* p = partial.data() + (c - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += p[i];
  }
  if (g.N == 0) std::fill(dw, dw + wsize, T(0));
}

template <class T>
void conv2d_backward_bias_cpu(T* db, const T* dy, const ConvGeom& g) {
  const int64_t ohw = g.OH * g.OW;
  parallel_for(g.O, g.N * ohw, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      double s = 0;  // double: a batch-wide sum of float32 values loses digits otherwise
      for (int64_t n = 0; n < g.N; ++n) {
        const T* p = dy + (n * g.O + o) * ohw;
        T sn = 0;
        for (int64_t i = 0; i < ohw; ++i) sn += p[i];
        s += sn;
      }
      db[o] = (T)s;
    }
  });
}

bool conv2d_backward_data_adds(const ConvGeom& g) {
  return conv_winograd_data_preferred(g) || conv_phase_data_preferred(g);
}

void conv2d_backward_data_add_cpu(float* dx, const float* dy, const float* w, const ConvGeom& g) {
  LB_CHECK(conv2d_backward_data_adds(g), "conv2d_backward_data_add_cpu: no kernel adds into dx for "
           "this layer (", g.C, "->", g.O, ", ", g.KH, "x", g.KW, " stride ", g.sh, ")");
  if (conv_winograd_data_preferred(g))
    return conv2d_backward_data_winograd(dx, dy, w, g, 0, /*accumulate=*/true);
  conv2d_backward_data_phases(dx, dy, w, g, /*accumulate=*/true);
}

#define LB_CONV_INSTANTIATE(T)                                                              \
  template void conv2d_forward_cpu<T>(T*, const T*, const T*, const T*, const ConvGeom&,  \
                                      const ConvEpilogue<T>*);                              \
  template void conv2d_backward_data_cpu<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_backward_weight_cpu<T>(T*, const T*, const T*, const ConvGeom&);   \
  template void conv2d_backward_bias_cpu<T>(T*, const T*, const ConvGeom&);
LB_CONV_INSTANTIATE(float)
LB_CONV_INSTANTIATE(double)

}  // namespace lowbit
