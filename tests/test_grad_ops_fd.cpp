// Every core op of `lowbit grad --list`, run through the same registry entry the command uses,
// against central finite differences in float64 (the issue's "each one's gradients match finite
// differences"). Inputs are kept away from kinks (relu at 0, pooling ties).
#include <doctest/doctest.h>

#include <map>

#include "core/op_registry.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

struct Case {
  std::string op;
  std::vector<std::pair<std::string, Shape>> inputs;  // float64 inputs, differentiated
  std::map<std::string, std::string> options;
  std::map<std::string, Tensor> fixed = {};  // inputs not differentiated (targets)
};

// Distinct values spaced at least `gap` apart, shuffled, so max pooling has no ties and relu no
// input near 0.
Tensor spaced_tensor(const Shape& s, uint64_t seed) {
  Tensor t = rand_tensor(s, seed, -1, 1);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (p[i] < 0 ? -0.05 : 0.05) + p[i];
  return t;
}

void check_case(const Case& c) {
  CAPTURE(c.op);
  const RegisteredOp& op = find_registered_op(c.op);
  std::vector<Tensor> inputs;
  uint64_t seed = 11;
  for (auto& [name, shape] : c.inputs) inputs.push_back(spaced_tensor(shape, seed++));
  auto f = [&](const std::vector<Tensor>& in) {
    std::map<std::string, Tensor> named = c.fixed;
    for (size_t i = 0; i < in.size(); ++i) named[c.inputs[i].first] = in[i];
    OpOptions opts(c.op, c.options);
    Tensor out = op.run(named, opts);
    opts.check_all_used();
    return out;
  };
  CHECK_GRADCHECK(gradcheck(f, inputs));
}

}  // namespace

TEST_CASE("grad ops: every core op's registry entry matches finite differences") {
  Tensor target = Tensor::from_vector<int64_t>({3}, {2, 0, 1});
  std::vector<Case> cases = {
      {"add", {{"a", {2, 3}}, {"b", {3}}}, {}},
      {"sub", {{"a", {2, 3}}, {"b", {2, 1}}}, {}},
      {"mul", {{"a", {2, 3}}, {"b", {3}}}, {}},
      {"div", {{"a", {2, 3}}, {"b", {2, 3}}}, {}},
      {"sum", {{"x", {2, 3, 2}}}, {{"axes", "0,2"}}},
      {"mean", {{"x", {2, 3, 2}}}, {{"axes", "1"}, {"keepdim", "true"}}},
      {"relu", {{"x", {2, 5}}}, {}},
      {"relu6", {{"x", {2, 5}}}, {}},
      {"matmul", {{"a", {3, 4}}, {"b", {4, 2}}}, {}},
      {"linear", {{"x", {3, 4}}, {"weight", {2, 4}}, {"bias", {2}}}, {}},
      {"conv2d", {{"x", {2, 4, 5, 5}}, {"weight", {6, 2, 3, 3}}, {"bias", {6}}},
       {{"stride", "2,1"}, {"padding", "1"}, {"dilation", "1,2"}, {"groups", "2"}}},
      {"conv2d", {{"x", {1, 3, 5, 5}}, {"weight", {3, 1, 3, 3}}}, {{"padding", "1"}, {"groups", "3"}}},
      {"batchnorm2d", {{"x", {3, 2, 3, 3}}, {"weight", {2}}, {"bias", {2}}}, {{"eps", "1e-5"}}},
      {"maxpool2d", {{"x", {2, 2, 5, 5}}}, {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}},
      {"avgpool2d", {{"x", {2, 2, 5, 5}}}, {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}},
      {"global_avg_pool2d", {{"x", {2, 3, 4, 4}}}, {}},
      {"adaptive_avg_pool2d", {{"x", {1, 2, 5, 7}}}, {{"output_size", "3,2"}}},
      {"channel_shuffle", {{"x", {2, 6, 2, 2}}}, {{"groups", "3"}}},
      {"concat_shuffle", {{"a", {2, 3, 2, 2}}, {"b", {2, 3, 2, 2}}}, {}},
      {"log_softmax", {{"x", {3, 5}}}, {}},
      {"softmax", {{"x", {3, 5}}}, {}},
      {"softmax_cross_entropy", {{"x", {3, 4}}}, {{"label_smoothing", "0.1"}}, {{"target", target}}},
      {"kl_div", {{"x", {3, 4}}}, {{"temperature", "4"}}, {{"target", rand_tensor({3, 4}, 99)}}},
  };
  for (const Case& c : cases) check_case(c);
}

TEST_CASE("grad ops: --list covers the engine's ops") {
  for (const char* name : {"conv2d", "linear", "batchnorm2d", "relu", "maxpool2d", "avgpool2d",
                           "channel_shuffle", "softmax_cross_entropy", "kl_div"})
    CHECK_NOTHROW(find_registered_op(name));
  CHECK_THROWS_WITH_AS(find_registered_op("conv3d"), doctest::Contains("conv3d"), Error);
}
