// The quantizer ops runnable by name (`lowbit grad OP ...`, core/op_registry.h): each entry lists
// its inputs (the learnable parameters s, beta, alpha are inputs, so their gradients are reported)
// and its options with their defaults, and runs the op of quant/*.h.
#include <algorithm>
#include <cmath>

#include "core/op_registry.h"
#include "quant/apot.h"
#include "quant/dorefa.h"
#include "quant/lsq.h"
#include "quant/minmax.h"
#include "quant/pact.h"
#include "quant/rounding.h"

namespace lowbit {

namespace {

using Inputs = std::map<std::string, Tensor>;

const Tensor& input(const Inputs& in, const std::string& name, const std::string& op) {
  auto it = in.find(name);
  LB_CHECK(it != in.end() && it->second.defined(), op, ": input '", name, "' is missing");
  return it->second;
}

int bits_option(const OpOptions& opt, const char* op, int def) {
  const int64_t b = opt.get_int("bits", def);
  LB_CHECK(b >= 0 && b <= 64, op, ": bits must be a small positive integer, got ", b);
  return (int)b;
}

Ste ste_option(const OpOptions& opt, const char* op) { return parse_ste(opt.get_string("ste", ""), op); }

const OpOption kSteClipped{"ste", "identity|clipped straight-through estimator (default clipped)"};

OpOption bits_help(int def, const char* range) {
  return {"bits", str_cat("bit width ", range, " (default ", def, ")")};
}

// LSQ and LSQ+ share their options. Without grad_scale, N = all elements of x, METHODS.md's
// default for a standalone op (also per-channel, unlike a layer's weight quantizer).
LsqOptions lsq_options(const OpOptions& opt, const Tensor& x, const char* op, bool signed_default) {
  LsqOptions o;
  o.grad_scale_n = x.numel();
  o.bits = bits_option(opt, op, 4);
  o.is_signed = opt.get_bool("signed", signed_default);
  o.per_channel = opt.get_bool("per_channel", false);
  o.grad_scale = opt.has("grad_scale") ? opt.get_double("grad_scale", -1) : -1;
  LB_CHECK(!opt.has("grad_scale") || o.grad_scale >= 0, op, ": grad_scale must be >= 0, got ", o.grad_scale);
  o.ste = ste_option(opt, op);
  return o;
}

std::vector<OpOption> lsq_option_list(bool signed_default) {
  return {bits_help(4, "[2, 16]"),
          {"signed", str_cat("signed grid Q_N = 2^(b-1), Q_P = 2^(b-1)-1, else Q_N = 0, Q_P = 2^b-1 (default ",
                             signed_default ? "true" : "false", ")")},
          {"per_channel", "step per channel of axis 0, s of shape (C) (default false)"},
          {"grad_scale", "factor on the step's gradient (default 1/sqrt(N*Q_P), N = all elements of x)"},
          kSteClipped};
}

// A fixed step for the rounding ops: the `step` option, by default max|x|/top (top = the largest
// level index), as a tensor of x's dtype.
Tensor step_option(const Tensor& x, const OpOptions& opt, const char* op, double top) {
  double s = opt.get_double("step", -1);
  if (!opt.has("step")) {
    double m = 0;
    for (double v : x.to_vector<double>()) m = std::max(m, std::fabs(v));
    s = m > 0 ? m / top : 1.0;
  }
  LB_CHECK(s > 0 && std::isfinite(s), op, ": step must be > 0, got ", s);
  return Tensor::scalar(s, x.dtype());
}

RoundingOptions rounding_options(const OpOptions& opt, const char* op, bool has_signed) {
  RoundingOptions o;
  o.bits = bits_option(opt, op, 8);
  if (has_signed) o.is_signed = opt.get_bool("signed", true);
  o.ste = ste_option(opt, op);
  return o;
}

ApotOptions apot_options(const OpOptions& opt, const char* op) {
  ApotOptions o;
  o.bits = bits_option(opt, op, 4);
  o.ste = ste_option(opt, op);
  return o;
}

}  // namespace

void add_quant_grad_ops(std::vector<RegisteredOp>& table) {
  table.push_back({"lsq", "LSQ: round(clip(x/s, -Q_N, Q_P))*s, learnable step s (() or (C))",
                   {{"x"}, {"s"}}, lsq_option_list(true), [](const Inputs& in, const OpOptions& opt) {
                     const Tensor& x = input(in, "x", "lsq");
                     LsqOptions o = lsq_options(opt, x, "lsq", true);
                     opt.check_all_used();
                     return lsq_quantize(x, input(in, "s", "lsq"), o);
                   }});
  table.push_back({"lsqplus", "LSQ+: round(clip((x-beta)/s, -Q_N, Q_P))*s + beta, learnable s and beta",
                   {{"x"}, {"s"}, {"beta"}}, lsq_option_list(false),
                   [](const Inputs& in, const OpOptions& opt) {
                     const Tensor& x = input(in, "x", "lsqplus");
                     LsqOptions o = lsq_options(opt, x, "lsqplus", false);
                     opt.check_all_used();
                     return lsqplus_quantize(x, input(in, "s", "lsqplus"), input(in, "beta", "lsqplus"), o);
                   }});
  table.push_back({"pact", "PACT: round(clip(x, 0, alpha)*(2^b-1)/alpha)*alpha/(2^b-1), learnable alpha",
                   {{"x"}, {"alpha"}}, {bits_help(4, "[2, 16]"), kSteClipped},
                   [](const Inputs& in, const OpOptions& opt) {
                     PactOptions o;
                     o.bits = bits_option(opt, "pact", 4);
                     o.ste = ste_option(opt, "pact");
                     opt.check_all_used();
                     return pact_quantize(input(in, "x", "pact"), input(in, "alpha", "pact"), o);
                   }});
  table.push_back({"dorefa_w", "DoReFa weights: 2*quantize_k(tanh(w)/max|tanh w|/2 + 1/2) - 1",
                   {{"w"}}, {bits_help(4, "[2, 16]")}, [](const Inputs& in, const OpOptions& opt) {
                     DorefaOptions o;
                     o.bits = bits_option(opt, "dorefa_w", 4);
                     opt.check_all_used();
                     return dorefa_quantize_weight(input(in, "w", "dorefa_w"), o);
                   }});
  table.push_back({"dorefa_a", "DoReFa activations: quantize_k(clip(x, 0, 1))", {{"x"}},
                   {bits_help(4, "[2, 16]"), kSteClipped}, [](const Inputs& in, const OpOptions& opt) {
                     DorefaOptions o;
                     o.bits = bits_option(opt, "dorefa_a", 4);
                     o.ste = ste_option(opt, "dorefa_a");
                     opt.check_all_used();
                     return dorefa_quantize_activation(input(in, "x", "dorefa_a"), o);
                   }});
  const OpOption ste_w{"ste", "identity|clipped (default identity, as the authors' code)"};
  struct NonUniform {
    const char* name;
    const char* summary;
    bool weight;
    const char* range;
    Tensor (*fn)(const Tensor&, const Tensor&, const ApotOptions&);
  };
  for (const NonUniform& u : {
           NonUniform{"apot_w", "APoT weights: normalised w, alpha*q(clip(w/alpha, -1, 1)), B = b-1", true, "[2, 5]", apot_quantize_weight},
           NonUniform{"apot_a", "APoT activations: alpha*q(min(x/alpha, 1)), B = b", false, "[2, 5]", apot_quantize_activation},
           NonUniform{"pot_w", "PoT weights: normalised w, alpha*q(clip(w/alpha, -1, 1)), B = b-1", true, "[2, 8]", pot_quantize_weight},
           NonUniform{"pot_a", "PoT activations: alpha*q(min(x/alpha, 1)), B = b", false, "[2, 8]", pot_quantize_activation}}) {
    const std::string xname = u.weight ? "w" : "x";
    const std::string name = u.name;
    auto fn = u.fn;
    table.push_back({name, u.summary, {{xname}, {"alpha"}},
                     {bits_help(4, u.range), u.weight ? ste_w : kSteClipped},
                     [name, xname, fn](const Inputs& in, const OpOptions& opt) {
                       ApotOptions o = apot_options(opt, name.c_str());
                       opt.check_all_used();
                       return fn(input(in, xname, name), input(in, "alpha", name), o);
                     }});
  }
  table.push_back({"minmax", "min-max fake quantization S(q - Z), range from x (widened to contain 0)",
                   {{"x"}},
                   {bits_help(8, "[2, 16]"),
                    {"symmetric", "S = max|x|/(2^(b-1)-1), Z = 0 (default false: asymmetric)"},
                    {"per_channel", "ranges per channel of axis 0 (default false)"},
                    kSteClipped},
                   [](const Inputs& in, const OpOptions& opt) {
                     MinMaxOptions o;
                     o.bits = bits_option(opt, "minmax", 8);
                     o.symmetric = opt.get_bool("symmetric", false);
                     o.per_channel = opt.get_bool("per_channel", false);
                     o.ste = ste_option(opt, "minmax");
                     opt.check_all_used();
                     return minmax_quantize(input(in, "x", "minmax"), o);
                   }});
  table.push_back({"stochastic_round",
                   "stochastic rounding on the grid step*[-Q_N, Q_P]: up with probability frac(x/step)",
                   {{"x"}},
                   {bits_help(8, "[2, 16]"), {"signed", "signed grid (default true)"},
                    {"step", "grid step (default max|x|/Q_P)"},
                    {"seed", "RNG seed; element i draws uniform(seed, stream, i) (default 0)"},
                    {"stream", "RNG stream (default 0)"}, kSteClipped},
                   [](const Inputs& in, const OpOptions& opt) {
                     const Tensor& x = input(in, "x", "stochastic_round");
                     RoundingOptions o = rounding_options(opt, "stochastic_round", true);
                     o.seed = (uint64_t)opt.get_int("seed", 0);
                     o.stream = (uint64_t)opt.get_int("stream", 0);
                     check_bits("stochastic_round", o.bits, 2, 16);
                     Tensor s = step_option(x, opt, "stochastic_round", (double)quant_range(o.bits, o.is_signed).qp);
                     opt.check_all_used();
                     return stochastic_round(x, s, o);
                   }});
  table.push_back({"midrise", "mid-rise quantization: levels ±(k+1/2)*step, k = 0..2^(b-1)-1", {{"x"}},
                   {bits_help(8, "[2, 16]"), {"step", "grid step (default max|x|/2^(b-1))"}, kSteClipped},
                   [](const Inputs& in, const OpOptions& opt) {
                     const Tensor& x = input(in, "x", "midrise");
                     RoundingOptions o = rounding_options(opt, "midrise", false);
                     check_bits("midrise", o.bits, 2, 16);
                     Tensor s = step_option(x, opt, "midrise", std::ldexp(1.0, o.bits - 1));
                     opt.check_all_used();
                     return midrise_quantize(x, s, o);
                   }});
}

}  // namespace lowbit
