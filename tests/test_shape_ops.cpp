// Shape ops: reshape/flatten views, slice, concat, split, channel_shuffle. Forward against index
// arithmetic done by hand, backward by finite differences, errors naming the op.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
// Values 0, 1, 2, ... so that every element says where it came from.
Tensor iota(const Shape& s) {
  Tensor t = Tensor::empty(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = (double)i;
  return t;
}
}  // namespace

TEST_CASE("reshape: a view of the same storage, -1 inferred, gradient reshaped back") {
  Tensor x = iota({2, 3, 4});
  Tensor y = reshape(x, {4, -1});
  CHECK(y.shape() == Shape{4, 6});
  CHECK(y.raw() == x.raw());  // no copy
  CHECK(y.to_vector<double>() == x.to_vector<double>());
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return reshape(in[0], {3, 8}); },
                            {rand_tensor({2, 3, 4}, 1)}));
  CHECK_THROWS_WITH_AS(reshape(x, {5, 5}), doctest::Contains("reshape"), Error);
  CHECK_THROWS_WITH_AS(reshape(x, {5, -1}), doctest::Contains("(2, 3, 4)"), Error);
}

TEST_CASE("flatten: (N, C, H, W) -> (N, C*H*W), any start axis") {
  Tensor x = iota({2, 3, 4, 5});
  CHECK(flatten(x).shape() == Shape{2, 60});
  CHECK(flatten(x, 2).shape() == Shape{2, 3, 20});
  CHECK(flatten(x, 0).shape() == Shape{120});
  CHECK(flatten(x, -1).shape() == Shape{2, 3, 4, 5});
  CHECK(flatten(x).raw() == x.raw());
  Tensor a = rand_tensor({2, 3, 2}, 2).set_requires_grad(true);
  Tensor f = flatten(a);
  REQUIRE(f.node() != nullptr);
  CHECK(f.node()->kind == "flatten");
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return flatten(in[0]); },
                            {rand_tensor({2, 3, 2}, 3)}));
  CHECK_THROWS_WITH_AS(flatten(x, 4), doctest::Contains("flatten"), Error);
}

TEST_CASE("slice: copies a range along any axis; backward places the gradient") {
  Tensor x = iota({2, 5, 3});
  Tensor y = slice(x, 1, 1, 3);
  REQUIRE(y.shape() == Shape{2, 3, 3});
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 3; ++c)
        CHECK(y.data<double>()[(a * 3 + b) * 3 + c] == (double)((a * 5 + b + 1) * 3 + c));
  CHECK(slice(x, -1, 2, 1).to_vector<double>() ==
        std::vector<double>{2, 5, 8, 11, 14, 17, 20, 23, 26, 29});
  CHECK(slice(x, 0, 1, 0).numel() == 0);
  // Gradient: ones inside the slice, zeros outside.
  Tensor xs = rand_tensor({2, 5, 3}, 4).set_requires_grad(true);
  backward(sum(slice(xs, 1, 1, 3)));
  auto g = xs.grad().to_vector<double>();
  for (int64_t i = 0; i < 30; ++i) {
    int64_t b = (i / 3) % 5;
    CHECK(g[i] == (b >= 1 && b < 4 ? 1.0 : 0.0));
  }
  for (int64_t axis = 0; axis < 3; ++axis)
    CHECK_GRADCHECK(gradcheck(
        [axis](const std::vector<Tensor>& in) { return slice(in[0], axis, 1, 1); },
        {rand_tensor({2, 5, 3}, 5)}));
  CHECK_THROWS_WITH_AS(slice(x, 1, 3, 3), doctest::Contains("slice"), Error);
  CHECK_THROWS_WITH_AS(slice(x, 1, 3, 3), doctest::Contains("(2, 5, 3)"), Error);
  CHECK_THROWS_WITH_AS(slice(x, 3, 0, 1), doctest::Contains("slice: axis 3"), Error);
  CHECK_THROWS_WITH_AS(slice(x, 1, -1, 1), doctest::Contains("slice"), Error);
}

TEST_CASE("concat: along every axis, against index arithmetic, with gradients") {
  Tensor a = iota({2, 3, 2});
  Tensor b = add_scalar(iota({2, 1, 2}), 100);
  Tensor y = concat({a, b}, 1);
  REQUIRE(y.shape() == Shape{2, 4, 2});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t k = 0; k < 2; ++k) {
        double want = j < 3 ? (double)((i * 3 + j) * 2 + k) : 100.0 + (double)(i * 2 + k);
        CHECK(y.data<double>()[(i * 4 + j) * 2 + k] == want);
      }
  Tensor c0 = concat({iota({1, 2}), add_scalar(iota({2, 2}), 10)}, 0);
  CHECK(c0.to_vector<double>() == std::vector<double>{0, 1, 10, 11, 12, 13});
  Tensor c_last = concat({iota({2, 1}), add_scalar(iota({2, 2}), 10)}, -1);
  CHECK(c_last.to_vector<double>() == std::vector<double>{0, 10, 11, 1, 12, 13});
  // Integer tensors concatenate too (labels), no gradient involved.
  Tensor l = concat({Tensor::from_vector<int64_t>({2}, {1, 2}), Tensor::from_vector<int64_t>({1}, {7})}, 0);
  CHECK(l.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 7});
  for (int64_t axis = 0; axis < 3; ++axis) {
    Shape sb = {2, 3, 2};
    sb[axis] = 1;
    CHECK_GRADCHECK(gradcheck(
        [axis](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[2]}, axis); },
        {rand_tensor({2, 3, 2}, 6), rand_tensor(sb, 7), rand_tensor({2, 3, 2}, 8)}));
  }
  // Only the input that wants a gradient gets one.
  Tensor p = rand_tensor({2, 2}, 9).set_requires_grad(true), q = rand_tensor({2, 2}, 10);
  backward(sum(concat({q, p}, 0)));
  CHECK(p.grad().defined());
  CHECK_FALSE(q.grad().defined());

  CHECK_THROWS_WITH_AS(concat({}, 0), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(concat({iota({2, 3}), iota({3, 3})}, 1), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(concat({iota({2, 3}), iota({3, 3})}, 1), doctest::Contains("(3, 3)"), Error);
  CHECK_THROWS_WITH_AS(concat({iota({2, 3}), iota({2, 3, 1})}, 0), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(concat({iota({2, 3}), iota({2, 3}).to(DType::f32)}, 0),
                       doctest::Contains("float32"), Error);
  CHECK_THROWS_WITH_AS(concat({iota({2, 3})}, 2), doctest::Contains("concat: axis 2"), Error);
}

TEST_CASE("split: pieces along an axis, each its own node, gradients flow to each") {
  Tensor x = iota({2, 6});
  auto parts = split(x, {1, 3, 2}, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].to_vector<double>() == std::vector<double>{0, 6});
  CHECK(parts[1].to_vector<double>() == std::vector<double>{1, 2, 3, 7, 8, 9});
  CHECK(parts[2].to_vector<double>() == std::vector<double>{4, 5, 10, 11});
  Tensor xr = rand_tensor({2, 6}, 11).set_requires_grad(true);
  auto pr = split(xr, {2, 4}, 1);
  REQUIRE(pr[0].node() != nullptr);
  REQUIRE(pr[1].node() != nullptr);
  CHECK(pr[0].node() != pr[1].node());
  CHECK(pr[0].node()->kind == "slice");
  // A different op on each piece: the gradients of all pieces must reach x in the right places.
  Fn f = [](const std::vector<Tensor>& in) {
    auto p = split(in[0], {1, 3, 2}, 1);
    return concat({mul_scalar(p[0], 3.0), square(p[1]), p[2]}, 1);
  };
  CHECK_GRADCHECK(gradcheck(f, {rand_tensor({2, 6}, 12)}));
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& in) {
        auto p = split(in[0], {1, 1}, 0);
        return mul(p[0], p[1]);
      },
      {rand_tensor({2, 3}, 13)}));
  CHECK_THROWS_WITH_AS(split(x, {2, 2}, 1), doctest::Contains("split"), Error);
  CHECK_THROWS_WITH_AS(split(x, {2, 2}, 1), doctest::Contains("(2, 6)"), Error);
  CHECK_THROWS_WITH_AS(split(x, {7, -1}, 1), doctest::Contains("split: negative"), Error);
}

TEST_CASE("channel_shuffle: the (N, g, C/g, H, W) transpose, its inverse, its gradient") {
  // C = 6, H*W = 2; value = 10*channel + pixel, so the output says which channel went where.
  Tensor x = Tensor::empty({1, 6, 1, 2}, DType::f64);
  for (int64_t c = 0; c < 6; ++c)
    for (int64_t p = 0; p < 2; ++p) x.data<double>()[c * 2 + p] = 10.0 * c + p;
  auto order = [](const Tensor& y) {
    std::vector<int64_t> ch;
    for (int64_t c = 0; c < 6; ++c) ch.push_back((int64_t)(y.data<double>()[c * 2] / 10));
    return ch;
  };
  CHECK(order(channel_shuffle(x, 2)) == std::vector<int64_t>{0, 3, 1, 4, 2, 5});
  CHECK(order(channel_shuffle(x, 3)) == std::vector<int64_t>{0, 2, 4, 1, 3, 5});
  CHECK(order(channel_shuffle(x, 1)) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(channel_shuffle(x, 2).data<double>()[3] == 31.0);  // pixels move with their channel
  // Against the index formula on a batch: y[n, j*g + i] = x[n, i*(C/g) + j].
  Tensor xb = rand_tensor({3, 8, 2, 3}, 14);
  Tensor yb = channel_shuffle(xb, 4);
  bool ok = true;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t p = 0; p < 6; ++p)
          ok = ok && yb.data<double>()[(n * 8 + j * 4 + i) * 6 + p] ==
                         xb.data<double>()[(n * 8 + i * 2 + j) * 6 + p];
  CHECK(ok);
  CHECK(channel_shuffle(channel_shuffle(xb, 4), 2).to_vector<double>() == xb.to_vector<double>());
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return channel_shuffle(in[0], 3); },
                            {rand_tensor({2, 6, 2, 2}, 15)}));
  CHECK_THROWS_WITH_AS(channel_shuffle(xb, 3), doctest::Contains("channel_shuffle"), Error);
  CHECK_THROWS_WITH_AS(channel_shuffle(xb, 3), doctest::Contains("(3, 8, 2, 3)"), Error);
  CHECK_THROWS_WITH_AS(channel_shuffle(xb, 0), doctest::Contains("channel_shuffle"), Error);
  CHECK_THROWS_WITH_AS(channel_shuffle(iota({8, 2}), 2), doctest::Contains("channel_shuffle"), Error);
}

TEST_CASE("concat_shuffle: channel_shuffle(concat(a, b), 2) in one node, values and gradients") {
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    Tensor a = rand_tensor({3, 5, 2, 3}, 21).to(dt), b = rand_tensor({3, 5, 2, 3}, 22).to(dt);
    a.set_requires_grad(true), b.set_requires_grad(true);
    Tensor w = rand_tensor({3, 10, 2, 3}, 23).to(dt);  // weights a random upstream gradient
    Tensor fused = concat_shuffle(a, b);
    Tensor composed = channel_shuffle(concat({a, b}, 1), 2);
    CHECK(fused.shape() == Shape{3, 10, 2, 3});
    CHECK(fused.node()->kind == "concat+shuffle");
    CHECK(fused.to_vector<double>() == composed.to_vector<double>());
    backward(sum(mul(fused, w)));
    const auto ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
    a.zero_grad(), b.zero_grad();
    backward(sum(mul(composed, w)));
    CHECK(a.grad().to_vector<double>() == ga);
    CHECK(b.grad().to_vector<double>() == gb);
  }
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return concat_shuffle(in[0], in[1]); },
                            {rand_tensor({2, 3, 2, 2}, 24), rand_tensor({2, 3, 2, 2}, 25)}));
  Tensor a = rand_tensor({2, 3, 2, 2}, 26);
  CHECK_THROWS_WITH_AS(concat_shuffle(a, rand_tensor({2, 4, 2, 2}, 27)),
                       doctest::Contains("concat+shuffle: a and b must have the same shape"), Error);
  CHECK_THROWS_WITH_AS(concat_shuffle(a, a.to(DType::f32)),
                       doctest::Contains("concat+shuffle: a is float64, b is float32"), Error);
  CHECK_THROWS_WITH_AS(concat_shuffle(iota({4, 2}), iota({4, 2})), doctest::Contains("4-d"), Error);
}
