// The core ops that `lowbit grad` runs by name: convolution, linear, normalisation, activations,
// pools, losses, broadcasting arithmetic and reductions. Input and option names follow PyTorch's
// functional API (torch.nn.functional.conv2d(input, weight, bias, stride, padding, ...)), so a
// reference script can call PyTorch with the same names.
#include <string>

#include "core/op_registry.h"
#include "core/ops.h"

namespace lowbit {

namespace {

using Inputs = std::map<std::string, Tensor>;

// An optional input: undefined when absent.
Tensor opt_in(const Inputs& in, const char* name) {
  auto it = in.find(name);
  return it == in.end() ? Tensor() : it->second;
}

// A required input (cmd_grad checks presence first; this keeps direct callers honest too).
Tensor req_in(const Inputs& in, const char* op, const char* name) {
  Tensor t = opt_in(in, name);
  LB_CHECK(t.defined(), op, ": input '", name, "' is missing");
  return t;
}

void set_pair(int64_t dst[2], const std::vector<int64_t>& v) {
  dst[0] = v[0];
  dst[1] = v[1];
}

// A pair option that has no default in PyTorch either (kernel_size, output_size).
std::vector<int64_t> required_pair(const OpOptions& opt, const char* op, const char* key) {
  LB_CHECK(opt.has(key), op, ": option '", key, "' is required (e.g. --opt ", key, "=2)");
  return opt.get_pair(key, 0);
}

// "0,2" -> {0, 2}; "" -> {} (all axes).
std::vector<int64_t> get_axes(const OpOptions& opt, const char* op) {
  const std::string s = opt.get_string("axes", "");
  std::vector<int64_t> axes;
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    const std::string item = s.substr(start, comma - start);
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    LB_CHECK(!item.empty() && end == item.c_str() + item.size(), op,
             ": option 'axes': expected integers separated by commas such as 0,2, got '", s, "'");
    axes.push_back((int64_t)v);
    start = comma + 1;
    LB_CHECK(comma == s.size() || start < s.size(), op, ": option 'axes': trailing comma in '", s,
             "'");
  }
  return axes;
}

const OpInput kX{"x"};

void add_binary(std::vector<RegisteredOp>& t, const char* name, const char* summary,
                Tensor (*f)(const Tensor&, const Tensor&)) {
  t.push_back({name, summary, {{"a"}, {"b"}}, {}, [name, f](const Inputs& in, const OpOptions&) {
                 return f(req_in(in, name, "a"), req_in(in, name, "b"));
               }});
}

void add_unary(std::vector<RegisteredOp>& t, const char* name, const char* summary,
               Tensor (*f)(const Tensor&)) {
  t.push_back({name, summary, {kX}, {},
               [name, f](const Inputs& in, const OpOptions&) { return f(req_in(in, name, "x")); }});
}

void add_conv_linear(std::vector<RegisteredOp>& t) {
  t.push_back({"conv2d", "2-d convolution: x (N,C,H,W), weight (O,C/groups,KH,KW), bias (O)",
               {kX, {"weight"}, {"bias", true}},
               {{"stride", "int or H,W (default 1)"},
                {"padding", "int or H,W, zeros (default 0)"},
                {"dilation", "int or H,W (default 1)"},
                {"groups", "int; groups = C is depthwise (default 1)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 Conv2dOptions o;
                 set_pair(o.stride, opt.get_pair("stride", 1));
                 set_pair(o.padding, opt.get_pair("padding", 0));
                 set_pair(o.dilation, opt.get_pair("dilation", 1));
                 o.groups = opt.get_int("groups", 1);
                 return conv2d(req_in(in, "conv2d", "x"), req_in(in, "conv2d", "weight"),
                               opt_in(in, "bias"), o);
               }});
  t.push_back({"linear", "y = x weight^T + bias: x (N,in), weight (out,in), bias (out)",
               {kX, {"weight"}, {"bias", true}},
               {},
               [](const Inputs& in, const OpOptions&) {
                 return linear(req_in(in, "linear", "x"), req_in(in, "linear", "weight"),
                               opt_in(in, "bias"));
               }});
  t.push_back({"matmul", "matrix product: a (M,K), b (K,N) -> (M,N)", {{"a"}, {"b"}}, {},
               [](const Inputs& in, const OpOptions&) {
                 return matmul(req_in(in, "matmul", "a"), req_in(in, "matmul", "b"));
               }});
}

void add_norm_pool(std::vector<RegisteredOp>& t) {
  t.push_back(
      {"batchnorm2d",
       "batch norm over (N,H,W) per channel; running stats start at 0/1 and are not output",
       {kX, {"weight", true}, {"bias", true}, {"residual", true}},
       {{"eps", "added to the variance (default 1e-5)"},
        {"momentum", "running-average factor (default 0.1)"},
        {"training", "true: batch statistics; false: the running stats 0/1 (default true)"},
        {"act", "none, relu or relu6 fused after it (after the residual, if given), one node "
                "(default none)"}},
       [](const Inputs& in, const OpOptions& opt) {
         const std::string act_name = opt.get_string("act", "none");
         const FusedAct act = act_name == "relu"    ? FusedAct::relu
                              : act_name == "relu6" ? FusedAct::relu6
                                                    : FusedAct::none;
         LB_CHECK(act != FusedAct::none || act_name == "none", "batchnorm2d: option 'act' is '",
                  act_name, "'; expected none, relu or relu6");
         const double eps = opt.get_double("eps", 1e-5);
         const double momentum = opt.get_double("momentum", 0.1);
         const bool training = opt.get_bool("training", true);
         Tensor x = req_in(in, "batchnorm2d", "x");
         LB_CHECK(x.dim() == 4, "batchnorm2d: input 'x' must be 4-d (N, C, H, W), got shape ",
                  shape_str(x.shape()));
         Tensor rm = Tensor::zeros({x.size(1)}, x.dtype());
         Tensor rv = Tensor::ones({x.size(1)}, x.dtype());
         return batch_norm2d(x, opt_in(in, "weight"), opt_in(in, "bias"), rm, rv, training,
                             momentum, eps, act, opt_in(in, "residual"));
       }});
  for (const bool is_max : {true, false}) {
    std::vector<OpOption> options = {{"kernel_size", "int or H,W (required)"},
                                     {"stride", "int or H,W (default kernel_size)"},
                                     {"padding", "int or H,W (default 0)"}};
    if (!is_max)
      options.push_back({"count_include_pad", "average over the zero padding too (default true)"});
    const char* name = is_max ? "maxpool2d" : "avgpool2d";
    t.push_back({name,
                 is_max ? "2-d max pooling of x (N,C,H,W)" : "2-d average pooling of x (N,C,H,W)",
                 {kX},
                 options,
                 [name, is_max](const Inputs& in, const OpOptions& opt) {
                   Pool2dOptions o;
                   const std::vector<int64_t> k = required_pair(opt, name, "kernel_size");
                   set_pair(o.kernel, k);
                   set_pair(o.stride, opt.has("stride") ? opt.get_pair("stride", 0) : k);
                   set_pair(o.padding, opt.get_pair("padding", 0));
                   if (!is_max) o.count_include_pad = opt.get_bool("count_include_pad", true);
                   Tensor x = req_in(in, name, "x");
                   return is_max ? max_pool2d(x, o) : avg_pool2d(x, o);
                 }});
  }
  add_unary(t, "global_avg_pool2d", "mean over H and W: (N,C,H,W) -> (N,C)", global_avg_pool2d);
  t.push_back({"adaptive_avg_pool2d", "PyTorch's adaptive average pooling to output_size",
               {kX}, {{"output_size", "int or H,W (required)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 auto s = required_pair(opt, "adaptive_avg_pool2d", "output_size");
                 return adaptive_avg_pool2d(req_in(in, "adaptive_avg_pool2d", "x"), s[0], s[1]);
               }});
  t.push_back({"channel_shuffle",
               "ShuffleNet's channel shuffle of x (N,C,H,W)",
               {kX},
               {{"groups", "int dividing C (required)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 LB_CHECK(opt.has("groups"),
                          "channel_shuffle: option 'groups' is required (e.g. --opt groups=2)");
                 const int64_t g = opt.get_int("groups", 1);
                 return channel_shuffle(req_in(in, "channel_shuffle", "x"), g);
               }});
  add_binary(t, "concat_shuffle",
             "channel_shuffle(concat(a, b), 2) as one node (a ShuffleNetV2 unit's end); same shapes",
             concat_shuffle);
}

void add_losses(std::vector<RegisteredOp>& t) {
  t.push_back({"softmax_cross_entropy",
               "mean cross-entropy of logits x (N,K) against int64 class indices target (N)",
               {kX, {"target", false, true}},
               {{"label_smoothing", "target = (1-eps) one-hot + eps/K (default 0)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 const double ls = opt.get_double("label_smoothing", 0.0);
                 return softmax_cross_entropy(req_in(in, "softmax_cross_entropy", "x"),
                                              req_in(in, "softmax_cross_entropy", "target"), ls);
               }});
  add_unary(t, "log_softmax", "log-softmax over the last axis of a 2-d x", log_softmax);
  add_unary(t, "softmax", "softmax over the last axis of a 2-d x", softmax);
  t.push_back({"kl_div", "T^2 KL(softmax(target/T) || softmax(x/T)), batch mean; x, target logits "
               "(no gradient flows to target)",
               {kX, {"target"}},
               {{"temperature", "T (default 1)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 const double temp = opt.get_double("temperature", 1.0);
                 return kl_div(req_in(in, "kl_div", "x"), req_in(in, "kl_div", "target"), temp);
               }});
}

void add_elementwise(std::vector<RegisteredOp>& t) {
  add_binary(t, "add", "a + b with NumPy broadcasting", add);
  add_binary(t, "sub", "a - b with NumPy broadcasting", sub);
  add_binary(t, "mul", "a * b with NumPy broadcasting", mul);
  add_binary(t, "div", "a / b with NumPy broadcasting", div);
  add_unary(t, "relu", "max(x, 0)", relu);
  add_binary(t, "add_relu", "max(a + b, 0) as one node (a residual block's end); same shapes", add_relu);
  add_unary(t, "relu6", "min(max(x, 0), 6)", relu6);
  for (const bool is_mean : {false, true}) {
    const char* name = is_mean ? "mean" : "sum";
    t.push_back({name, is_mean ? "mean over axes" : "sum over axes", {kX},
                 {{"axes", "comma-separated, negative from the end (default: all)"},
                  {"keepdim", "keep reduced axes with size 1 (default false)"}},
                 [name, is_mean](const Inputs& in, const OpOptions& opt) {
                   const std::vector<int64_t> axes = get_axes(opt, name);
                   const bool keepdim = opt.get_bool("keepdim", false);
                   Tensor x = req_in(in, name, "x");
                   return is_mean ? mean(x, axes, keepdim) : sum(x, axes, keepdim);
                 }});
  }
  t.push_back({"dropout", "inverted dropout (training mode), mask from the counter-based RNG",
               {kX},
               {{"p", "probability of zeroing (default 0.5)"}, {"seed", "RNG seed (default 0)"}},
               [](const Inputs& in, const OpOptions& opt) {
                 const double p = opt.get_double("p", 0.5);
                 const int64_t seed = opt.get_int("seed", 0);
                 LB_CHECK(seed >= 0, "dropout: option 'seed' must be >= 0, got ", seed);
                 return dropout(req_in(in, "dropout", "x"), p, true, (uint64_t)seed, 0);
               }});
}

}  // namespace

void add_core_grad_ops(std::vector<RegisteredOp>& table) {
  add_conv_linear(table);
  add_norm_pool(table);
  add_losses(table);
  add_elementwise(table);
}

}  // namespace lowbit
