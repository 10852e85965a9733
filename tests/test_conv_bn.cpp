// The fused inference op conv2d_bn_act (core/ops_conv_bn.cpp) and Conv2d::forward_bn_act: the
// values must be the separate ops' (conv2d, batch_norm2d in eval mode with its fused activation,
// add / add_relu / relu6) bit for bit, on every kernel path the epilogue is threaded through
// (direct tiles with and without phases and groups, im2col with several images per GEMM and per
// image, the pointwise GEMM, depthwise on the grid and the general loop; float32 and float64;
// 1 and 2 threads); and whole models in no-grad evaluation must give the bits of the recorded,
// unfused evaluation. Plus the errors.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "core/autograd.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "layers/layers.h"
#include "models/models.h"
#include "quant/quantize_model.h"

using namespace lowbit;

namespace {

Tensor rand_tensor(const Shape& s, DType dt, uint64_t stream, double lo = -1, double hi = 1) {
  Tensor t = Tensor::empty(s, dt);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = lo + (hi - lo) * rng_uniform(11, stream, (uint64_t)i);
    if (dt == DType::f32)
      t.data<float>()[i] = (float)v;
    else
      t.data<double>()[i] = v;
  }
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Sets the thread count for a scope and restores the previous one.
struct Threads {
  explicit Threads(int n) : prev(num_threads()) { set_num_threads(n); }
  ~Threads() { set_num_threads(prev); }
  int prev;
};

struct Case {
  const char* name;
  int64_t n, c, h, w, o, k, stride, pad, groups;
};

// The separate ops, as Conv2d::forward_bn_act composes them when it does not fuse.
Tensor composed(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o,
                const Tensor& g, const Tensor& be, const Tensor& rm, const Tensor& rv,
                const Tensor& res, FusedAct act) {
  Tensor t = batch_norm2d(conv2d(x, w, b, o), g, be, rm, rv, false, 0.1, 1e-5,
                          res.defined() ? FusedAct::none : act);
  if (!res.defined()) return t;
  if (act == FusedAct::relu) return add_relu(t, res);
  Tensor s = add(t, res);
  return act == FusedAct::relu6 ? relu6(s) : s;
}

}  // namespace

TEST_CASE("conv2d_bn_act equals conv2d, batch_norm2d (eval) and the residual ops bit for bit") {
  const Case cases[] = {
      {"direct 16->16 3x3", 3, 16, 12, 12, 16, 3, 1, 1, 1},
      {"direct stride 2 (phases)", 3, 8, 16, 16, 16, 3, 2, 1, 1},
      {"direct 1x1 stride 2", 2, 8, 16, 16, 16, 1, 2, 0, 1},
      {"direct groups 2", 2, 8, 10, 10, 12, 3, 1, 1, 2},
      {"im2col, images side by side (4x4)", 5, 16, 4, 4, 24, 3, 1, 1, 1},
      {"pointwise 1x1 at 4x4", 3, 16, 4, 4, 8, 1, 1, 0, 1},
      {"depthwise on the grid", 2, 8, 9, 9, 8, 3, 1, 1, 8},
      {"depthwise stride 2", 2, 8, 9, 9, 16, 3, 2, 1, 8},
  };
  const FusedAct acts[] = {FusedAct::none, FusedAct::relu, FusedAct::relu6};
  NoGradGuard ng;
  for (DType dt : {DType::f32, DType::f64})
    for (const Case& cs : cases)
      for (int threads : {1, 2}) {
        Threads tc(threads);
        Conv2dOptions o;
        o.stride[0] = o.stride[1] = cs.stride;
        o.padding[0] = o.padding[1] = cs.pad;
        o.groups = cs.groups;
        const uint64_t s0 = 100 * (uint64_t)(&cs - cases);
        Tensor x = rand_tensor({cs.n, cs.c, cs.h, cs.w}, dt, s0 + 1, -3, 3);
        Tensor w = rand_tensor({cs.o, cs.c / cs.groups, cs.k, cs.k}, dt, s0 + 2);
        Tensor b = rand_tensor({cs.o}, dt, s0 + 3);
        Tensor g = rand_tensor({cs.o}, dt, s0 + 4, 0.5, 2);
        Tensor be = rand_tensor({cs.o}, dt, s0 + 5);
        Tensor rm = rand_tensor({cs.o}, dt, s0 + 6);
        Tensor rv = rand_tensor({cs.o}, dt, s0 + 7, 0.1, 3);
        const Tensor y0 = conv2d(x, w, Tensor(), o);
        Tensor res = rand_tensor(y0.shape(), dt, s0 + 8, -2, 2);
        for (FusedAct act : acts)
          for (bool with_bias : {false, true})
            for (bool with_res : {false, true}) {
              CAPTURE(cs.name);
              CAPTURE(dtype_name(dt));
              CAPTURE(threads);
              CAPTURE(fused_act_name(act));
              CAPTURE(with_bias);
              CAPTURE(with_res);
              const Tensor bb = with_bias ? b : Tensor(), rr = with_res ? res : Tensor();
              const Tensor want = composed(x, w, bb, o, g, be, rm, rv, rr, act);
              const Tensor got = conv2d_bn_act(x, w, bb, o, g, be, rm, rv, 1e-5, rr, act);
              CHECK(same_bits(got, want));
            }
        // Affine off (no BN weight and bias) takes the same path with scale 1/sqrt(var+eps).
        CHECK(same_bits(conv2d_bn_act(x, w, Tensor(), o, Tensor(), Tensor(), rm, rv, 1e-5, res,
                                      FusedAct::relu),
                        composed(x, w, Tensor(), o, Tensor(), Tensor(), rm, rv, res,
                                 FusedAct::relu)));
      }
}

TEST_CASE("conv2d_bn_act rejects bad input with the reason") {
  NoGradGuard ng;
  Conv2dOptions o;
  o.padding[0] = o.padding[1] = 1;
  Tensor x = rand_tensor({2, 4, 6, 6}, DType::f32, 1), w = rand_tensor({8, 4, 3, 3}, DType::f32, 2);
  Tensor c8 = rand_tensor({8}, DType::f32, 3, 0.5, 1), c5 = rand_tensor({5}, DType::f32, 4);
  Tensor res = rand_tensor({2, 8, 6, 6}, DType::f32, 5);
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c5, c8, c8, c8, 1e-5, res, FusedAct::relu),
                    doctest::Contains("bn_weight has shape (5,), expected (8,)"));
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c8, c8, c8, Tensor(), 1e-5, res,
                                  FusedAct::relu),
                    doctest::Contains("needs the batch norm's running_mean and running_var"));
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c8, c8, c8, c8, 1e-5,
                                  rand_tensor({2, 8, 3, 3}, DType::f32, 6), FusedAct::relu),
                    doctest::Contains("residual has shape (2, 8, 3, 3)"));
  CHECK_THROWS_WITH(conv2d_bn_act(x, rand_tensor({8, 3, 3, 3}, DType::f32, 7), Tensor(), o, c8, c8,
                                  c8, c8, 1e-5, res, FusedAct::relu),
                    doctest::Contains("conv2d: weight"));
  CHECK_THROWS_WITH(conv2d_bn_act(Tensor(), w, Tensor(), o, c8, c8, c8, c8, 1e-5, res,
                                  FusedAct::relu),
                    doctest::Contains("conv2d_bn_act"));
  Tensor neg = rand_tensor({8}, DType::f32, 8, -2, -1);
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c8, c8, c8, neg, 1e-5, res, FusedAct::relu),
                    doctest::Contains("variance + eps"));
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c8, c8, rand_tensor({8}, DType::f64, 9), c8,
                                  1e-5, res, FusedAct::relu),
                    doctest::Contains("running_mean is float64, x is float32"));
}

TEST_CASE("conv2d_bn_act refuses inputs that require grad while grad mode is on") {
  Conv2dOptions o;
  Tensor x = rand_tensor({1, 2, 4, 4}, DType::f32, 1), w = rand_tensor({3, 2, 1, 1}, DType::f32, 2);
  Tensor c3 = rand_tensor({3}, DType::f32, 3, 0.5, 1);
  w.set_requires_grad(true);
  CHECK_THROWS_WITH(conv2d_bn_act(x, w, Tensor(), o, c3, c3, c3, c3, 1e-5, Tensor(), FusedAct::relu),
                    doctest::Contains("inference only"));
  NoGradGuard ng;  // the same call without grad mode: fine
  CHECK(conv2d_bn_act(x, w, Tensor(), o, c3, c3, c3, c3, 1e-5, Tensor(), FusedAct::relu).shape() ==
        Shape{1, 3, 4, 4});
}

namespace {

// Running statistics and affine parameters away from their init, so every batch norm acts.
void randomize_batch_norms(Module& m, uint64_t seed) {
  uint64_t stream = 0;
  for (auto& [name, t] : m.state_dict()) {
    if (t.dtype() != DType::f32 || t.dim() != 1) continue;
    const bool var = name.size() > 11 && name.compare(name.size() - 11, 11, "running_var") == 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = rng_uniform(seed, stream, (uint64_t)i);
      t.data<float>()[i] = var ? (float)(0.2 + 2 * u) : (float)(0.4 * u - 0.2);
    }
    ++stream;
  }
}

}  // namespace

TEST_CASE("models evaluate to the same bits fused (no grad) and unfused (grad on)") {
  QuantConfig lsq;
  lsq.wq = "lsq:4", lsq.aq = "lsq:4", lsq.first_last = "8";
  struct M {
    std::string name;
    bool quantized;
  };
  for (const M& mm : {M{"resnet20", false}, M{"resnet20b", false}, M{"resnet20", true},
                      M{"resnet18", false}, M{"mobilenetv2", false}, M{"shufflenetv2", false},
                      M{"wrn-10-2", false}, M{"smallcnn", false}}) {
    CAPTURE(mm.name);
    CAPTURE(mm.quantized);
    ModelPtr m = make_model(mm.name, 10, 3);
    randomize_batch_norms(*m, 5);
    Tensor x = rand_tensor({2, 3, 32, 32}, DType::f32, 77, -2, 2);
    if (mm.quantized) {
      quantize_model(*m, lsq);
      NoGradGuard ng;
      m->train();
      (*m)(x);  // the quantizers' data-dependent init
    }
    m->eval();
    Tensor unfused = (*m)(x);  // grad on: parameters require grad, so the separate ops run
    REQUIRE(unfused.requires_grad());
    NoGradGuard ng;
    Tensor fused = (*m)(x);
    CHECK(same_bits(fused, unfused.detach()));
  }
}
