// conv2d: forward against a naive 7-loop reference and backward by finite differences over every
// combination of stride, padding, dilation, groups (incl. depthwise), bias and odd/even sizes;
// the direct depthwise and 1x1 paths against im2col; thread-count determinism; bad inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "core/autograd.h"
#include "core/cpu/conv_depthwise_lanes.h"
#include "core/cpu/conv_direct.h"
#include "core/cpu/simd.h"
#include "core/cpu/conv_kernels.h"
#include "core/cpu/conv_util.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "tests/conv_operands.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

// y[n,o,i,j] = b[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n, g(o)*Cg + c, i*s - p + kh*d, j*s - p + kw*d],
// in double whatever the inputs' dtype.
std::vector<double> naive_conv(const Tensor& x, const Tensor& w, const Tensor& b,
                               const Conv2dOptions& o, Shape& out_shape) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3);
  const int64_t Og = O / o.groups;
  const int64_t OH = (H + 2 * o.padding[0] - o.dilation[0] * (KH - 1) - 1) / o.stride[0] + 1;
  const int64_t OW = (W + 2 * o.padding[1] - o.dilation[1] * (KW - 1) - 1) / o.stride[1] + 1;
  out_shape = {N, O, OH, OW};
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(O, 0.0);
  std::vector<double> y((size_t)(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double s = bv[oc];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = i * o.stride[0] - o.padding[0] + kh * o.dilation[0];
                const int64_t iw = j * o.stride[1] - o.padding[1] + kw * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t ci = (oc / Og) * Cg + c;
                s += wv[((oc * Cg + c) * KH + kh) * KW + kw] * xv[((n * C + ci) * H + ih) * W + iw];
              }
          y[((n * O + oc) * OH + i) * OW + j] = s;
        }
  return y;
}

// Largest |a - r| / (1 + |r|) between a tensor and a reference.
double max_rel_diff(const Tensor& a, const std::vector<double>& r) {
  auto av = a.to_vector<double>();
  REQUIRE(av.size() == r.size());
  double m = 0;
  for (size_t i = 0; i < r.size(); ++i) m = std::max(m, std::fabs(av[i] - r[i]) / (1 + std::fabs(r[i])));
  return m;
}

struct Combo {
  int64_t stride, pad, dil, groups;  // groups == 0 stands for depthwise (groups = C)
  bool bias, odd;
  std::string str() const {
    return "stride " + std::to_string(stride) + " pad " + std::to_string(pad) + " dil " +
           std::to_string(dil) + " groups " + (groups ? std::to_string(groups) : "C") +
           (bias ? " bias" : " no-bias") + (odd ? " odd" : " even");
  }
};

std::vector<Combo> all_combos() {
  std::vector<Combo> r;
  for (int64_t s : {1, 2})
    for (int64_t p : {0, 1, 2})
      for (int64_t d : {1, 2})
        for (int64_t g : {1, 2, 0})
          for (bool b : {true, false})
            for (bool odd : {true, false}) r.push_back({s, p, d, g, b, odd});
  return r;
}

// Small inputs for one combination: N=2, C=4; O=6 (groups 1, 2) or 4 (depthwise);
// odd: 5x7 image, 3x3 kernel; even: 6x4 image, 3x2 kernel.
struct Case {
  Tensor x, w, b;
  Conv2dOptions o;
};
Case make_case(const Combo& k, uint64_t seed, DType dt = DType::f64) {
  const int64_t C = 4, groups = k.groups ? k.groups : C, O = k.groups ? 6 : C;
  const int64_t H = k.odd ? 5 : 6, W = k.odd ? 7 : 4, KH = 3, KW = k.odd ? 3 : 2;
  Case c;
  c.x = rand_tensor({2, C, H, W}, seed, -1, 1, dt);
  c.w = rand_tensor({O, C / groups, KH, KW}, seed + 1, -1, 1, dt);
  if (k.bias) c.b = rand_tensor({O}, seed + 2, -1, 1, dt);
  c.o.stride[0] = c.o.stride[1] = k.stride;
  c.o.padding[0] = c.o.padding[1] = k.pad;
  c.o.dilation[0] = c.o.dilation[1] = k.dil;
  c.o.groups = groups;
  return c;
}

void check_forward(const Case& c, double tol) {
  Shape shp;
  auto ref = naive_conv(c.x, c.w, c.b, c.o, shp);
  Tensor y = conv2d(c.x, c.w, c.b, c.o);
  REQUIRE(y.shape() == shp);
  CHECK(max_rel_diff(y, ref) < tol);
}

GradcheckResult check_grads(const Case& c) {
  const Conv2dOptions o = c.o;
  if (c.b.defined())
    return gradcheck([o](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], o); },
                     {c.x, c.w, c.b});
  return gradcheck([o](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), o); },
                   {c.x, c.w});
}

}  // namespace

TEST_CASE("conv2d: forward matches the naive reference over all combinations (f64 and f32)") {
  uint64_t seed = 100;
  for (const Combo& k : all_combos()) {
    INFO(k.str());
    check_forward(make_case(k, seed), 1e-12);
    check_forward(make_case(k, seed, DType::f32), 1e-5);
    seed += 3;
  }
}

TEST_CASE("conv2d: gradients for x, weight, bias by finite differences over all combinations") {
  uint64_t seed = 900;
  for (const Combo& k : all_combos()) {
    INFO(k.str());
    CHECK_GRADCHECK(check_grads(make_case(k, seed)));
    seed += 3;
  }
}

TEST_CASE("conv2d: asymmetric options, 1x1 kernels and depthwise with channel multiplier 2") {
  Conv2dOptions a;
  a.stride[0] = 1, a.stride[1] = 2, a.padding[0] = 2, a.padding[1] = 0;
  a.dilation[0] = 1, a.dilation[1] = 2, a.groups = 2;
  Conv2dOptions pw;  // 1x1, stride 1, no padding: the path that skips im2col
  pw.groups = 2;
  Conv2dOptions dm;  // depthwise, O = 2C
  dm.groups = 3, dm.padding[0] = dm.padding[1] = 1, dm.stride[0] = 2;
  struct {
    Conv2dOptions o;
    Shape x, w;
  } cases[] = {{a, {2, 4, 6, 7}, {6, 2, 3, 2}}, {pw, {3, 4, 5, 3}, {6, 2, 1, 1}},
               {dm, {2, 3, 5, 6}, {6, 1, 3, 3}}};
  uint64_t seed = 7;
  for (auto& cs : cases) {
    INFO("x ", shape_str(cs.x), " w ", shape_str(cs.w));
    Case c{rand_tensor(cs.x, seed), rand_tensor(cs.w, seed + 1), rand_tensor({cs.w[0]}, seed + 2), cs.o};
    check_forward(c, 1e-12);
    CHECK_GRADCHECK(check_grads(c));
    seed += 3;
  }
}

TEST_CASE("conv2d: direct depthwise kernels agree with im2col + gemm") {
  // Every stride runs on phase planes; the data gradient gathers at stride 1 with padding up to
  // d*(k-1) and scatters otherwise (strides, and the padding 3 > 2 of the last geometry).
  // float32 with one filter per channel runs on the channels-in-lanes kernels where the build has
  // them (conv_depthwise_lanes.h), checked against float64 and, bit for bit, against the plane
  // kernels; 37 channels make two full blocks of 16 and a partial one, 16 columns a row that is
  // transposed straight into place.
  struct S {
    int64_t sh, sw, ph, pw, kh;
  };
  struct Size {
    int64_t C, H, W;
  };
  for (const Size& sz : {Size{5, 9, 8}, Size{37, 6, 16}})
  for (int64_t m : {1, 2})
    for (const S& st : {S{2, 1, 1, 2, 3}, S{1, 1, 1, 2, 3}, S{2, 2, 1, 1, 3}, S{3, 2, 2, 1, 3},
                        S{2, 2, 0, 0, 2}, S{1, 1, 3, 2, 3}, S{2, 3, 1, 1, 3}}) {
      const int64_t sh = st.sh;
      ConvGeom g;
      g.N = 3, g.C = sz.C, g.H = sz.H, g.W = sz.W, g.O = sz.C * m, g.KH = st.kh, g.KW = 3;
      g.groups = sz.C;
      g.sh = st.sh, g.sw = st.sw, g.ph = st.ph, g.pw = st.pw, g.dh = 1, g.dw = 2;
      g.OH = conv_out_size(g.H, g.KH, g.sh, g.ph, g.dh);
      g.OW = conv_out_size(g.W, g.KW, g.sw, g.pw, g.dw);
      REQUIRE(conv_is_depthwise(g));
      auto x = rand_tensor({g.N, g.C, g.H, g.W}, 1).to_vector<double>();
      auto w = rand_tensor({g.O, 1, g.KH, g.KW}, 2).to_vector<double>();
      auto b = rand_tensor({g.O}, 3).to_vector<double>();
      auto dy = rand_tensor({g.N, g.O, g.OH, g.OW}, 4).to_vector<double>();
      const size_t ny = dy.size();
      std::vector<double> y1(ny), y2(ny), dx1(x.size()), dx2(x.size()), dw1(w.size()), dw2(w.size());
      conv2d_forward_cpu(y1.data(), x.data(), w.data(), b.data(), g);
      depthwise_conv2d_forward_cpu(y2.data(), x.data(), w.data(), b.data(), g);
      conv2d_backward_data_cpu(dx1.data(), dy.data(), w.data(), g);
      depthwise_conv2d_backward_data_cpu(dx2.data(), dy.data(), w.data(), g);
      conv2d_backward_weight_cpu(dw1.data(), dy.data(), x.data(), g);
      depthwise_conv2d_backward_weight_cpu(dw2.data(), dy.data(), x.data(), g);
      auto close = [](const std::vector<double>& a, const std::vector<double>& r) {
        double d = 0;
        for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - r[i]));
        return d;
      };
      INFO(g.C, " channels ", g.H, "x", g.W, " multiplier ", m, " stride ", sh, "x", st.sw,
           " padding ", st.ph, "x", st.pw);
      CHECK(close(y1, y2) < 1e-12);
      CHECK(close(dx1, dx2) < 1e-12);
      CHECK(close(dw1, dw2) < 1e-12);
      // float32 (its own instantiation of the kernels) against the float64 reference
      auto to_f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
      auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
      const auto xf = to_f(x), wf = to_f(w), bf = to_f(b), dyf = to_f(dy);
      std::vector<float> yf(ny), dxf(x.size()), dwf(w.size());
      depthwise_conv2d_forward_cpu(yf.data(), xf.data(), wf.data(), bf.data(), g);
      depthwise_conv2d_backward_data_cpu(dxf.data(), dyf.data(), wf.data(), g);
      depthwise_conv2d_backward_weight_cpu(dwf.data(), dyf.data(), xf.data(), g);
      CHECK(close(to_d(yf), y1) < 1e-5);
      CHECK(close(to_d(dxf), dx1) < 1e-5);
      CHECK(close(to_d(dwf), dw1) < 1e-4);
      // one filter per channel, in AVX-512 builds only
#if LB_SIMD == 512
      CHECK(dw_lanes_supported(g) == (m == 1));
#else
      CHECK_FALSE(dw_lanes_supported(g));
#endif
      if (!dw_lanes_preferred(g)) continue;
      // The plane kernels: the same sums in the same order for the forward and data gradient,
      // but with fused multiply-adds (one rounding per tap, where the plane kernels round twice);
      // the weight gradient sums in another order.
      std::vector<float> yp(ny), dxp(x.size()), dwp(w.size());
      dw_lanes_off() = true;
      depthwise_conv2d_forward_cpu(yp.data(), xf.data(), wf.data(), bf.data(), g);
      depthwise_conv2d_backward_data_cpu(dxp.data(), dyf.data(), wf.data(), g);
      depthwise_conv2d_backward_weight_cpu(dwp.data(), dyf.data(), xf.data(), g);
      dw_lanes_off() = false;
      CHECK(close(to_d(yp), to_d(yf)) < 2e-6);
      CHECK(close(to_d(dxp), to_d(dxf)) < 2e-6);
      CHECK(close(to_d(dwp), to_d(dwf)) < 1e-5);
    }
}

TEST_CASE("conv2d: direct float32 kernels agree with float64 im2col + gemm") {
  // Shapes that exercise the kernels' remainders: output channels that split into unequal tile
  // blocks (up to 28 channels a block), taps not a multiple of the gradient tile's 8, grids not a
  // multiple of the vector width, groups, dilation, asymmetric kernels and padding from 0 up to
  // the kernel extent; every forward tile width (1 .. conv_direct_max_tile_nq() position
  // vectors) as well as the one the kernels pick.
  // Plain 1x1 layers whose positions fill whole tiles (8x8, 4x8) run on x and y in place;
  // 35 and 61 output channels leave a remainder after the gradient's 16 x 16 transposes.
  // Stride 2 (phase planes) for the forward and weight gradient; the data gradient of a strided
  // convolution (one group, no dilation) as a convolution per phase of dx
  // (conv2d_backward_data_phases), stored and added into what dx holds. Strides of 2 and 3, odd
  // sizes (phases of unequal size), kernels smaller than the stride (phases no tap reaches) and
  // padding up to the kernel extent.
  struct Geo {
    int64_t N, C, H, W, O, KH, KW, ph, pw, dh, dw, groups, sh, sw;
  } geos[] = {{3, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, {2, 5, 7, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1},
              {2, 6, 8, 5, 9, 3, 2, 0, 1, 1, 1, 1, 1, 1},    {2, 4, 9, 9, 6, 3, 3, 2, 2, 2, 2, 2, 1, 1},
              {1, 3, 5, 6, 13, 1, 3, 0, 2, 1, 1, 1, 1, 1},   {9, 8, 4, 4, 8, 3, 3, 1, 1, 1, 1, 4, 1, 1},
              {2, 2, 10, 3, 3, 5, 1, 4, 0, 1, 1, 1, 1, 1},   {3, 16, 32, 32, 32, 3, 3, 1, 1, 1, 1, 1, 2, 2},
              {2, 5, 9, 8, 7, 3, 3, 1, 2, 1, 2, 1, 2, 1},    {2, 4, 11, 10, 6, 3, 2, 3, 0, 2, 1, 2, 3, 2},
              {2, 6, 7, 7, 5, 1, 1, 0, 0, 1, 1, 1, 2, 2},    {2, 7, 9, 11, 61, 3, 3, 1, 1, 1, 1, 1, 1, 1},
              {2, 9, 6, 10, 20, 1, 1, 0, 0, 1, 1, 1, 1, 1},  {3, 20, 8, 8, 35, 1, 1, 0, 0, 1, 1, 1, 1, 1},
              {2, 8, 4, 8, 12, 1, 1, 0, 0, 1, 1, 2, 1, 1},   {2, 5, 9, 11, 7, 3, 3, 1, 1, 1, 1, 1, 2, 2},
              {2, 4, 10, 9, 6, 3, 3, 0, 0, 1, 1, 1, 3, 3},   {2, 3, 8, 8, 5, 3, 3, 2, 2, 1, 1, 1, 2, 2},
              {2, 4, 12, 12, 6, 5, 5, 2, 2, 1, 1, 1, 2, 2},  {2, 6, 8, 9, 5, 1, 1, 0, 0, 1, 1, 1, 3, 3},
              {2, 5, 9, 8, 7, 3, 2, 1, 0, 1, 1, 1, 2, 1}};
  uint64_t seed = 50;
  for (const Geo& e : geos) {
    ConvGeom g;
    g.N = e.N, g.C = e.C, g.H = e.H, g.W = e.W, g.O = e.O, g.KH = e.KH, g.KW = e.KW;
    g.ph = e.ph, g.pw = e.pw, g.dh = e.dh, g.dw = e.dw, g.groups = e.groups, g.sh = e.sh, g.sw = e.sw;
    g.OH = conv_out_size(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = conv_out_size(g.W, g.KW, g.sw, g.pw, g.dw);
    INFO("C ", g.C, " O ", g.O, " ", g.H, "x", g.W, " k ", g.KH, "x", g.KW, " pad ", g.ph, ",", g.pw,
         " dil ", g.dh, ",", g.dw, " groups ", g.groups, " stride ", g.sh, ",", g.sw);
    REQUIRE(conv_direct_supported(g));
    const bool data = g.sh == 1 && g.sw == 1;
    CHECK(conv_direct_data_supported(g) == data);
    ConvOperands op(g, seed);
    seed += 4;
    conv2d_backward_weight_direct(op.dw.data(), op.dyf.data(), op.xf.data(), g);
    op.reference(g);
    for (int nq = 0; nq <= conv_direct_max_tile_nq(); ++nq) {
      INFO("forward tile of ", nq, " position vectors (0: the kernels' pick)");
      conv2d_forward_direct(op.y.data(), op.xf.data(), op.wf.data(), op.bf.data(), g, nq);
      if (data) conv2d_backward_data_direct(op.dx.data(), op.dyf.data(), op.wf.data(), g, nq);
      CHECK(rel_err(op.y, op.yr) < 1e-5);
      if (data) CHECK(rel_err(op.dx, op.dxr) < 1e-5);
    }
    // dw sums N*OH*OW products (3072 here) in float32: a longer chain than y's or dx's sums.
    CHECK(rel_err(op.dw, op.dwr) < 5e-5);
    const bool phases = g.groups == 1 && g.dh == 1 && g.dw == 1 && !data;
    CHECK(conv_phase_data_supported(g) == phases);
    if (phases) {
      std::fill(op.dx.begin(), op.dx.end(), 7.0f);  // a skipped element would show
      conv2d_backward_data_phases(op.dx.data(), op.dyf.data(), op.wf.data(), g);
      CHECK(rel_err(op.dx, op.dxr) < 1e-5);
      std::vector<float> acc(op.dx.size());
      for (size_t i = 0; i < acc.size(); ++i) acc[i] = op.xf[i] * 0.5f - 0.25f;
      const std::vector<float> held = acc;
      conv2d_backward_data_phases(acc.data(), op.dyf.data(), op.wf.data(), g, true);
      int64_t off = 0;
      for (size_t i = 0; i < acc.size(); ++i) off += acc[i] != held[i] + op.dx[i];
      CHECK(off == 0);
    }
  }
  ConvGeom dwg;  // depthwise has its own kernels; 1x1 unpadded and small outputs need not
  dwg.KH = dwg.KW = 3, dwg.C = dwg.O = dwg.groups = 4, dwg.OH = dwg.OW = 16;
  CHECK_FALSE(conv_direct_supported(dwg));
  ConvGeom pw1;
  pw1.KH = pw1.KW = 1, pw1.C = pw1.O = 4, pw1.groups = 1, pw1.OH = pw1.OW = 16;
  CHECK(conv_direct_supported(pw1));
  CHECK(conv_direct_preferred(pw1) == conv_direct_prefers_1x1());
  ConvGeom k3 = pw1;
  k3.KH = k3.KW = 3, k3.ph = k3.pw = 1;
  CHECK(conv_direct_preferred(k3));
  k3.OH = k3.OW = 4;
  CHECK_FALSE(conv_direct_preferred(k3));
}

TEST_CASE("conv2d: small 1x1 convolutions on regrouped pseudo-images match float64 im2col") {
  // conv_1x1_packed.cpp: outputs under 8x8 regrouped into conv_image_chunks(N) pseudo-images;
  // batches that divide into them and batches that leave zero-padded slots (13 images in 8),
  // one image, groups, and 1 and 2 threads (which change the number of pseudo-images).
  struct Geo {
    int64_t N, C, H, W, O, groups;
  } geos[] = {{16, 24, 4, 4, 20, 1}, {13, 16, 4, 4, 32, 1}, {1, 8, 2, 2, 8, 1},
              {7, 12, 3, 5, 6, 2},   {9, 20, 7, 7, 36, 1}};
  const int saved = num_threads();
  uint64_t seed = 900;
  for (int threads : {1, 2})
    for (const Geo& e : geos) {
      set_num_threads(threads);
      ConvGeom g;
      g.N = e.N, g.C = e.C, g.H = g.OH = e.H, g.W = g.OW = e.W, g.O = e.O, g.KH = g.KW = 1;
      g.groups = e.groups;
      INFO("N ", g.N, " C ", g.C, " O ", g.O, " ", g.H, "x", g.W, " groups ", g.groups,
           " threads ", threads);
      CHECK(conv_1x1_packed_preferred(g) == conv_direct_prefers_1x1());
      CHECK(conv_1x1_packed_grad_preferred(g) == conv_direct_prefers_1x1());
      if (!conv_1x1_packed_grad_preferred(g)) continue;
      ConvOperands op(g, seed);
      seed += 4;
      // float32 takes the packed path, float64 im2col
      conv2d_forward_cpu(op.y.data(), op.xf.data(), op.wf.data(), op.bf.data(), g);
      conv2d_backward_data_cpu(op.dx.data(), op.dyf.data(), op.wf.data(), g);
      conv2d_backward_weight_cpu(op.dw.data(), op.dyf.data(), op.xf.data(), g);
      op.reference(g);
      CHECK(rel_err(op.y, op.yr) < 1e-5);
      CHECK(rel_err(op.dx, op.dxr) < 1e-5);
      CHECK(rel_err(op.dw, op.dwr) < 1e-5);
      // and the same bits a second time
      std::vector<float> dw2(op.wf.size());
      conv2d_backward_weight_cpu(dw2.data(), op.dyf.data(), op.xf.data(), g);
      CHECK(dw2 == op.dw);
    }
  set_num_threads(saved);
  ConvGeom big;  // past 64K weights only the forward regroups
  big.N = 8, big.C = 464, big.O = 1024, big.H = big.W = big.OH = big.OW = 4, big.KH = big.KW = 1;
  CHECK(conv_1x1_packed_preferred(big) == conv_direct_prefers_1x1());
  CHECK_FALSE(conv_1x1_packed_grad_preferred(big));
}

TEST_CASE("conv2d: several images per GEMM (small outputs) match the naive reference and adjoints") {
  // Outputs under 16x16 put several images side by side in one im2col matrix (conv_kernels.cpp);
  // one thread makes one chunk of all 23 images, so the batches are full and a remainder follows.
  // Float64: the forward against the naive loops, the two gradients through the adjoint
  // identities <conv(x, w), dy> = <x, dx(dy, w)> = <w, dw(dy, x)>.
  // The weight gradient there runs blocks of images in order, each one GEMM into dw: with the
  // default budget all 23 images make one block; a budget of one byte makes 23 blocks of one.
  const int saved = num_threads();
  const int64_t saved_block = conv_wgrad_block_bytes();
  for (int64_t block_bytes : {saved_block, int64_t(1)})
  for (int threads : {1, 2})
    for (int64_t groups : {1, 2})
      for (int64_t stride : {1, 2}) {
        set_num_threads(threads);
        conv_wgrad_block_bytes() = block_bytes;
        INFO("threads ", threads, " groups ", groups, " stride ", stride, " block bytes ", block_bytes);
        Conv2dOptions o;
        o.stride[0] = o.stride[1] = stride;
        o.padding[0] = o.padding[1] = 1;
        o.groups = groups;
        const Tensor x = rand_tensor({23, 4, 5, 6}, 70 + groups, -1, 1);
        const Tensor w = rand_tensor({6, 4 / groups, 3, 3}, 71, -1, 1);
        const Tensor b = rand_tensor({6}, 72, -1, 1);
        Shape shp;
        const auto ref = naive_conv(x, w, b, o, shp);
        const Tensor y = conv2d(x, w, b, o);
        REQUIRE(y.shape() == shp);
        CHECK(max_rel_diff(y, ref) < 1e-12);
        ConvGeom g;
        g.N = 23, g.C = 4, g.H = 5, g.W = 6, g.O = 6, g.KH = g.KW = 3, g.groups = groups;
        g.sh = g.sw = stride, g.ph = g.pw = 1;
        g.OH = conv_out_size(5, 3, stride, 1, 1), g.OW = conv_out_size(6, 3, stride, 1, 1);
        const Tensor dy = rand_tensor({23, 6, g.OH, g.OW}, 73, -1, 1);
        std::vector<double> yv((size_t)dy.numel()), dx((size_t)x.numel()), dw((size_t)w.numel());
        conv2d_forward_cpu(yv.data(), x.data<double>(), w.data<double>(), (const double*)nullptr, g);
        conv2d_backward_data_cpu(dx.data(), dy.data<double>(), w.data<double>(), g);
        conv2d_backward_weight_cpu(dw.data(), dy.data<double>(), x.data<double>(), g);
        auto dot = [](const double* a, const double* c, int64_t n) {
          double t = 0;
          for (int64_t i = 0; i < n; ++i) t += a[i] * c[i];
          return t;
        };
        const double ydy = dot(yv.data(), dy.data<double>(), dy.numel());
        CHECK(std::fabs(dot(x.data<double>(), dx.data(), x.numel()) - ydy) < 1e-9 * (1 + std::fabs(ydy)));
        CHECK(std::fabs(dot(w.data<double>(), dw.data(), w.numel()) - ydy) < 1e-9 * (1 + std::fabs(ydy)));
      }
  set_num_threads(saved);
  conv_wgrad_block_bytes() = saved_block;
}

TEST_CASE("conv2d: same thread count gives the same bits; other counts agree to rounding") {
  const int saved = num_threads();
  Tensor x = rand_tensor({5, 8, 12, 12}, 11, -1, 1, DType::f32);
  Tensor w = rand_tensor({8, 8, 3, 3}, 12, -1, 1, DType::f32);
  Tensor b = rand_tensor({8}, 13, -1, 1, DType::f32);
  Tensor gy = rand_tensor({5, 8, 12, 12}, 14, -1, 1, DType::f32);
  Conv2dOptions o;
  o.padding[0] = o.padding[1] = 1;
  auto run = [&](int threads) {
    set_num_threads(threads);
    Tensor xr = x.clone().set_requires_grad(true), wr = w.clone().set_requires_grad(true);
    Tensor br = b.clone().set_requires_grad(true);
    Tensor y = conv2d(xr, wr, br, o);
    backward(y, gy);
    return std::vector<std::vector<float>>{y.to_vector<float>(), xr.grad().to_vector<float>(),
                                           wr.grad().to_vector<float>(), br.grad().to_vector<float>()};
  };
  auto r1 = run(1), r2a = run(2), r2b = run(2), r3 = run(3);
  set_num_threads(saved);
  for (size_t k = 0; k < r1.size(); ++k) {
    INFO("output ", k, " (y, dx, dw, db)");
    CHECK(std::memcmp(r2a[k].data(), r2b[k].data(), r2a[k].size() * sizeof(float)) == 0);
    double d2 = 0, d3 = 0;
    for (size_t i = 0; i < r1[k].size(); ++i) {
      d2 = std::max(d2, (double)std::fabs(r2a[k][i] - r1[k][i]) / (1 + std::fabs(r1[k][i])));
      d3 = std::max(d3, (double)std::fabs(r3[k][i] - r1[k][i]) / (1 + std::fabs(r1[k][i])));
    }
    CHECK(d2 < 1e-5);
    CHECK(d3 < 1e-5);
  }
}

TEST_CASE("conv2d: a residual input's gradient takes the data gradient in its pass, bit for bit") {
  // h feeds a 3x3 convolution and a skip, as a residual block's input does. Without hooks the
  // convolution adds its data gradient into the skip's pending one (conv2d_backward_data_add_cpu,
  // where the layer runs on Winograd or the phases); a grad hook on the conv node keeps the separate tensor and
  // the engine's add (pending_grad). Both give the same bits.
  Conv2dOptions o;
  o.padding[0] = o.padding[1] = 1;
  // F(4x4) at 16x16; at 8x8 the layer's pick; stride 2 at 16x16: the phases (conv_phase_data.cpp).
  for (const auto& [hw, stride] : {std::pair<int64_t, int64_t>{16, 1}, {8, 1}, {16, 2}}) {
    CAPTURE(hw);
    CAPTURE(stride);
    o.stride[0] = o.stride[1] = stride;
    const int64_t ohw = hw / stride;
    const Tensor x0 = rand_tensor({2, 16, hw, hw}, 95, 0.25, 1.0, DType::f32);
    const Tensor w = rand_tensor({16, 16, 3, 3}, 96, -0.3, 0.3, DType::f32);
    const Tensor skip = rand_tensor({2, 16, hw, hw}, 97, -1, 1, DType::f32);
    const Tensor r = rand_tensor({2, 16, ohw, ohw}, 98, -1, 1, DType::f32);
    auto run = [&](bool hook) {
      Tensor x = x0.clone().set_requires_grad(true);
      Tensor h = relu(x);  // x > 0: h's gradient reaches x unchanged, and h has a node
      Tensor y = conv2d(h, w, Tensor(), o);
      if (hook) y.node()->grad_hooks.push_back([](const Node&, const Tensor&, const std::vector<Tensor>&) {});
      backward(add(sum(mul(y, r)), sum(mul(h, skip))));
      return x.grad();
    };
    const Tensor fused = run(false), separate = run(true);
    REQUIRE(fused.nbytes() == separate.nbytes());
    CHECK(std::memcmp(fused.raw(), separate.raw(), fused.nbytes()) == 0);
    const std::vector<double> fv = fused.to_vector<double>(), sv = skip.to_vector<double>();
    double most = 0;  // the convolution's part is there
    for (size_t i = 0; i < fv.size(); ++i) most = std::max(most, std::fabs(fv[i] - sv[i]));
    CHECK(most > 0.1);
  }
}

TEST_CASE("conv2d: records a node with inputs x, weight, bias; no gradient where none is asked") {
  Tensor x = rand_tensor({1, 2, 4, 4}, 1);
  Tensor w = rand_tensor({3, 2, 3, 3}, 2).set_requires_grad(true);
  Tensor y = conv2d(x, w, Tensor(), Conv2dOptions());
  REQUIRE(y.node() != nullptr);
  CHECK(y.node()->kind == "conv2d");
  CHECK(y.node()->input_names == std::vector<std::string>{"x", "weight", "bias"});
  CHECK(y.shape() == Shape{1, 3, 2, 2});
  backward(sum(y));
  CHECK(w.grad().defined());
  CHECK_FALSE(x.grad().defined());
  // dL/dw for L = sum(y) is the sum of x over each window position.
  auto xv = x.to_vector<double>();
  double s = 0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) s += xv[i * 4 + j];  // channel 0, tap (0, 0)
  CHECK(w.grad().to_vector<double>()[0] == doctest::Approx(s).epsilon(1e-12));
}

TEST_CASE("conv2d: bad inputs are errors naming conv2d and the shape") {
  Tensor x = rand_tensor({2, 4, 5, 5}, 1), w = rand_tensor({6, 4, 3, 3}, 2);
  Conv2dOptions o;
  auto throws_with = [](auto f, const char* what) {
    CHECK_THROWS_WITH_AS(f(), doctest::Contains("conv2d"), Error);
    CHECK_THROWS_WITH_AS(f(), doctest::Contains(what), Error);
  };
  throws_with([&] { return conv2d(rand_tensor({4, 5, 5}, 1), w, Tensor(), o); }, "(4, 5, 5)");
  throws_with([&] { return conv2d(x, rand_tensor({6, 4, 3}, 2), Tensor(), o); }, "(6, 4, 3)");
  throws_with([&] { return conv2d(x, rand_tensor({6, 3, 3, 3}, 2), Tensor(), o); }, "(6, 3, 3, 3)");
  Conv2dOptions g3;
  g3.groups = 3;  // 4 channels do not split in 3 groups
  throws_with([&] { return conv2d(x, rand_tensor({6, 1, 3, 3}, 2), Tensor(), g3); }, "(2, 4, 5, 5)");
  Conv2dOptions g4;
  g4.groups = 4;  // 6 output channels do not split in 4 groups
  throws_with([&] { return conv2d(x, rand_tensor({6, 1, 3, 3}, 2), Tensor(), g4); }, "(6, 1, 3, 3)");
  throws_with([&] { return conv2d(x, rand_tensor({6, 4, 7, 3}, 2), Tensor(), o); }, "(6, 4, 7, 3)");
  Conv2dOptions dil;
  dil.dilation[0] = 3;  // effective kernel 7 > 5
  throws_with([&] { return conv2d(x, w, Tensor(), dil); }, "(2, 4, 5, 5)");
  throws_with([&] { return conv2d(x, w, rand_tensor({5}, 3), o); }, "(5,)");
  throws_with([&] { return conv2d(x, rand_tensor({6, 4, 3, 3}, 2, -1, 1, DType::f32), Tensor(), o); },
              "float32");
  throws_with([&] { return conv2d(x, w, rand_tensor({6}, 3, -1, 1, DType::f32), o); }, "(6,)");
  throws_with([&] { return conv2d(x.to(DType::i64), w, Tensor(), o); }, "int64");
  Conv2dOptions s0;
  s0.stride[1] = 0;
  throws_with([&] { return conv2d(x, w, Tensor(), s0); }, "stride");
  Conv2dOptions g0;
  g0.groups = 0;
  throws_with([&] { return conv2d(x, w, Tensor(), g0); }, "groups");
}

TEST_CASE("thread_scratch: aligned, zeroed when the layout changes, kept while it does not") {
  const uint64_t a = scratch_layout({1, 16, 32}), b = scratch_layout({1, 16, 33});
  REQUIRE(a != b);
  REQUIRE(a != 0);
  float* p = thread_scratch(kScratchPackedIn, 100, a);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  for (int i = 0; i < 100; ++i) CHECK(p[i] == 0.0f);
  p[5] = 3.0f;  // an "interior" write
  p = thread_scratch(kScratchPackedIn, 100, a);  // same layout: the caller's data stays
  CHECK(p[5] == 3.0f);
  p = thread_scratch(kScratchPackedIn, 100, b);  // another layout: cleared
  CHECK(p[5] == 0.0f);
  p[7] = 1.0f;
  thread_scratch(kScratchPackedIn, 100);         // a user without a layout...
  p = thread_scratch(kScratchPackedIn, 100, b);  // ...may have written anything: cleared
  CHECK(p[7] == 0.0f);
  p = thread_scratch(kScratchPackedIn, 5000, b);  // grown: cleared, still aligned
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  CHECK(p[4999] == 0.0f);
}
