// The engine: recording, accumulation, no_grad, hooks, graph dump, broadcasting, reductions.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

TEST_CASE("autograd: gradient accumulates over two uses and two passes") {
  Tensor x = Tensor::from_vector<double>({3}, {1, 2, 3}).set_requires_grad(true);
  Tensor y = sum(add(mul(x, x), x));  // d/dx = 2x + 1
  backward(y);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
  Tensor y2 = sum(x);
  backward(y2);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 6, 8});
}

// The engine adds a second gradient in place only into a tensor nothing else holds (autograd.cpp,
// sole_owner); every other case gets a fresh sum, and the values are the same either way.
TEST_CASE("autograd: a second gradient is added in place only where nothing else holds the first") {
  const Tensor c = Tensor::from_vector<double>({3}, {1, 2, 3}), d = Tensor::from_vector<double>({3}, {10, 20, 30});
  SUBCASE("a leaf's gradient that only the leaf holds is summed in place") {
    Tensor x = Tensor::zeros({3}, DType::f64).set_requires_grad(true);
    backward(sum(mul(x, c)));
    const double* before = x.grad().data<double>();
    backward(sum(mul(x, d)));
    CHECK(x.grad().data<double>() == before);
    CHECK(x.grad().to_vector<double>() == std::vector<double>{11, 22, 33});
  }
  SUBCASE("a leaf's gradient the user holds is left as it was") {
    Tensor x = Tensor::zeros({3}, DType::f64).set_requires_grad(true);
    backward(sum(mul(x, c)));
    const Tensor held = x.grad();
    backward(sum(mul(x, d)));
    CHECK(held.to_vector<double>() == std::vector<double>{1, 2, 3});
    CHECK(x.grad().to_vector<double>() == std::vector<double>{11, 22, 33});
  }
  SUBCASE("a gradient whose storage a hook kept (a detached view) is left as it was") {
    Tensor x = Tensor::ones({3}, DType::f64).set_requires_grad(true);
    Tensor h = mul_scalar(x, 2.0);
    Tensor p = mul(h, c), q = mul(h, d);
    std::vector<Tensor> kept;
    auto keep = [&](const Node&, const Tensor&, const std::vector<Tensor>& gin) { kept.push_back(gin[0].detach()); };
    p.node()->grad_hooks.push_back(keep);
    q.node()->grad_hooks.push_back(keep);
    backward(sum(add(p, q)));
    REQUIRE(kept.size() == 2);
    std::vector<std::vector<double>> got{kept[0].to_vector<double>(), kept[1].to_vector<double>()};
    std::sort(got.begin(), got.end());
    CHECK(got[0] == std::vector<double>{1, 2, 3});
    CHECK(got[1] == std::vector<double>{10, 20, 30});
    CHECK(x.grad().to_vector<double>() == std::vector<double>{22, 44, 66});
  }
  SUBCASE("one tensor handed to both inputs (add(h, h)) is summed into a fresh tensor") {
    Tensor x = Tensor::from_vector<double>({3}, {1, 2, 3}).set_requires_grad(true);
    Tensor h = mul(x, c);
    backward(sum(add(h, h)));
    CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  }
}

// pending_grad (autograd.h): a backward may add into the gradient already pending for an input.
TEST_CASE("autograd: pending_grad hands over a pending gradient only where it may be added into") {
  Tensor x = Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6}).set_requires_grad(true);
  Tensor h = relu(x);  // x > 0: h's gradient reaches x unchanged, and h has a node
  bool seen = false, ran = false;
  auto in_place = [&](bool hook) {
    seen = ran = false;
    // `adder` runs second (created first): it adds 2 into what `first` left pending, if allowed.
    Tensor a = record(Tensor::zeros({2, 3}, DType::f64), "adder", {h}, {"x"},
                      [&](const Node& n, const Tensor& g) {
                        ran = true;
                        Tensor acc = pending_grad(n, 0);
                        seen = acc.defined();
                        if (!seen) return std::vector<Tensor>{mul(g, Tensor::full({2, 3}, 2.0, DType::f64))};
                        add_into(acc, mul(g, Tensor::full({2, 3}, 2.0, DType::f64)));
                        return std::vector<Tensor>{acc};
                      });
    if (hook) a.node()->grad_hooks.push_back([](const Node&, const Tensor&, const std::vector<Tensor>&) {});
    Tensor b = record(Tensor::zeros({2, 3}, DType::f64), "first", {h}, {"x"},
                      [](const Node&, const Tensor& g) {
                        // A fresh tensor: g itself is add's gradient for `adder` too (held twice).
                        return std::vector<Tensor>{mul(g, Tensor::full({2, 3}, 1.0, DType::f64))};
                      });
    if (x.grad().defined()) x.grad().fill(0);
    backward(sum(add(a, b)));
    CHECK(ran);
    // 1 from `first` plus 2 from `adder`, either way: added once, never twice or lost.
    CHECK(x.grad().to_vector<double>() == std::vector<double>(6, 3.0));
  };
  SUBCASE("taken when the engine holds the only reference") {
    in_place(false);
    CHECK(seen);
  }
  SUBCASE("not taken with a grad hook on the node (it must see the node's own gradient)") {
    in_place(true);
    CHECK_FALSE(seen);
  }
  SUBCASE("not outside a backward (nor for a leaf input, whose gradient is never pending)") {
    Tensor a = record(Tensor::zeros({2, 3}, DType::f64), "adder", {x}, {"x"},
                      [&](const Node& n, const Tensor& g) {
                        seen = pending_grad(n, 0).defined();
                        return std::vector<Tensor>{g};
                      });
    backward(sum(add(a, mul(x, x))));
    CHECK_FALSE(seen);
    CHECK_FALSE(pending_grad(*a.node(), 0).defined());
  }
}

TEST_CASE("autograd: split's pieces build one gradient, the values of placing each and adding") {
  for (const DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor x = rand_tensor({3, 6, 2, 2}, 91, 0.5, 1.0, dt).set_requires_grad(true);
    Tensor wa = rand_tensor({3, 4, 2, 2}, 92, -1, 1, dt), wb = rand_tensor({3, 4, 2, 2}, 93, -1, 1, dt);
    // Overlapping pieces [0, 4) and [2, 6): channels 2 and 3 receive both.
    Tensor h = relu(x);
    backward(add(sum(mul(slice(h, 1, 0, 4), wa)), sum(mul(slice(h, 1, 2, 4), wb))));
    const std::vector<double> a = wa.to_vector<double>(), b = wb.to_vector<double>();
    const std::vector<double> gx = x.grad().to_vector<double>();
    int64_t bad = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t c = 0; c < 6; ++c)
        for (int64_t k = 0; k < 4; ++k) {
          const double va = c < 4 ? a[(size_t)((n * 4 + c) * 4 + k)] : 0.0;
          const double vb = c >= 2 ? b[(size_t)((n * 4 + c - 2) * 4 + k)] : 0.0;
          // The sum in the tensor's own precision, as the engine would have formed it.
          const double want = dt == DType::f32 ? (double)((float)va + (float)vb) : va + vb;
          bad += gx[(size_t)((n * 6 + c) * 4 + k)] != want;
        }
    CHECK(bad == 0);
  }
}

TEST_CASE("autograd: no_grad records nothing") {
  Tensor x = Tensor::ones({2}, DType::f64).set_requires_grad(true);
  NoGradGuard ng;
  Tensor y = mul(x, x);
  CHECK_FALSE(y.requires_grad());
  CHECK(y.node() == nullptr);
}

TEST_CASE("autograd: backward on a non-scalar without gradient is an error") {
  Tensor x = Tensor::ones({2}, DType::f64).set_requires_grad(true);
  Tensor y = mul(x, x);
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("gradient must be given"), Error);
}

TEST_CASE("autograd: hooks see a node's gradients and the graph dumps as DOT") {
  Tensor w = Tensor::from_vector<double>({2}, {1, -2}).set_requires_grad(true).set_name("w");
  Tensor x = Tensor::from_vector<double>({2}, {3, 4});
  Tensor prod = name_node(mul(w, x), "layer/mul");
  Tensor loss = sum(prod);
  std::vector<double> seen;
  prod.node()->grad_hooks.push_back([&](const Node& n, const Tensor& gout, const std::vector<Tensor>& gin) {
    CHECK(n.name == "layer/mul");
    seen = gin[0].to_vector<double>();
  });
  auto nodes = graph_nodes(loss);
  REQUIRE(nodes.size() == 2);
  CHECK(nodes[0]->kind == "mul");
  CHECK(nodes[1]->kind == "sum");
  std::ostringstream dot;
  write_dot(loss, dot);
  CHECK(dot.str().find("layer/mul") != std::string::npos);
  CHECK(dot.str().find("digraph") != std::string::npos);
  backward(loss);
  CHECK(seen == std::vector<double>{3, 4});
}

TEST_CASE("broadcasting ops: forward values and finite-difference gradients") {
  Tensor a = rand_tensor({2, 3, 4}, 1);
  Tensor b = rand_tensor({3, 1}, 2, 0.5, 1.5);
  Tensor y = add(a, b);
  CHECK(y.shape() == Shape{2, 3, 4});
  CHECK(y.data<double>()[5] == doctest::Approx(a.data<double>()[5] + b.data<double>()[1]));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, b}));
  CHECK_THROWS_WITH_AS(add(rand_tensor({2, 3}, 1), rand_tensor({4}, 2)),
                       doctest::Contains("cannot be broadcast"), Error);
  CHECK_THROWS_WITH_AS(add(rand_tensor({2}, 1), rand_tensor({2}, 2, 0, 1, DType::f32)),
                       doctest::Contains("dtype mismatch"), Error);
}

TEST_CASE("reductions: sum and mean over axes") {
  Tensor x = Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(sum(x).item<double>() == 21);
  CHECK(sum(x, {0}).to_vector<double>() == std::vector<double>{5, 7, 9});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  CHECK(mean(x, {-1}).to_vector<double>() == std::vector<double>{2, 5});
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("axis 2 out of range"), Error);
  Tensor r = rand_tensor({2, 3, 4}, 5);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}); }, {r}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return mean(in[0], {1}, true); }, {r}));
}

TEST_CASE("activations: relu and relu6 forward and gradient away from kinks") {
  Tensor x = Tensor::from_vector<double>({5}, {-1, 0.5, 3, 6.5, 7});
  CHECK(relu(x).to_vector<double>() == std::vector<double>{0, 0.5, 3, 6.5, 7});
  CHECK(relu6(x).to_vector<double>() == std::vector<double>{0, 0.5, 3, 6, 6});
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return relu6(in[0]); }, {x}));
}

TEST_CASE("activations: add_relu is relu(add) bit for bit, one node, gradient to both inputs") {
  for (const DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor a0 = rand_tensor({3, 4, 5, 6}, 81, -1, 1, dt), b0 = rand_tensor({3, 4, 5, 6}, 82, -1, 1, dt);
    Tensor g = rand_tensor({3, 4, 5, 6}, 83, -1, 1, dt);
    auto run = [&](bool fused, std::vector<Tensor>& out) {
      Tensor a = a0.clone().set_requires_grad(true), b = b0.clone().set_requires_grad(true);
      Tensor y = fused ? add_relu(a, b) : relu(add(a, b));
      if (fused) CHECK(y.node()->kind == "add+relu");
      backward(y, g);
      out = {y, a.grad(), b.grad()};
    };
    std::vector<Tensor> f, c;
    run(true, f);
    run(false, c);
    for (size_t i = 0; i < f.size(); ++i) {
      CAPTURE(i);
      CHECK(f[i].to_vector<double>() == c[i].to_vector<double>());
    }
    auto yv = f[0].to_vector<double>();
    CHECK(std::count(yv.begin(), yv.end(), 0.0) > 0);  // the mask is not trivial
  }
  // Only the input that wants a gradient gets one.
  Tensor a = rand_tensor({4}, 84).set_requires_grad(true), b = rand_tensor({4}, 85);
  backward(sum(add_relu(a, b)));
  CHECK(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return add_relu(in[0], in[1]); },
                            {rand_tensor({2, 3}, 86), rand_tensor({2, 3}, 87)}));
  CHECK_THROWS_WITH_AS(add_relu(rand_tensor({2, 3}, 1), rand_tensor({3}, 2)),
                       doctest::Contains("add+relu: a and b must have the same shape"), Error);
  CHECK_THROWS_WITH_AS(add_relu(rand_tensor({2}, 1), rand_tensor({2}, 2, -1, 1, DType::f32)),
                       doctest::Contains("add+relu: a is float64, b is float32"), Error);
}

TEST_CASE("dropout: same mask for the same key, expectation preserved") {
  Tensor x = Tensor::ones({10000}, DType::f64);
  Tensor a = dropout(x, 0.3, true, 7, 1), b = dropout(x, 0.3, true, 7, 1), c = dropout(x, 0.3, true, 7, 2);
  CHECK(a.to_vector<double>() == b.to_vector<double>());
  CHECK(a.to_vector<double>() != c.to_vector<double>());
  CHECK(sum(a).item<double>() / 10000 == doctest::Approx(1.0).epsilon(0.03));
  CHECK(dropout(x, 0.3, false, 7, 1).same(x));
}
