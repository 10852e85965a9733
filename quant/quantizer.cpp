// Quantizer modules over the quantizer ops (quant/quantizer.h): parameters, init on the first
// batch, the LSQ gradient scale's N per use (weights: all elements; activations: C·H·W of one
// example, METHODS.md "LSQ"), min-max EMA ranges in training.
#include "quant/quantizer.h"

#include <cstdlib>

#include "core/autograd.h"
#include "quant/apot.h"
#include "quant/dorefa.h"
#include "quant/lsq.h"
#include "quant/maxabs.h"
#include "quant/minmax.h"
#include "quant/pact.h"

namespace lowbit {

Quantizer::Quantizer(std::string method, int bits, bool is_weight, bool is_signed, DType dtype)
    : dtype_(dtype), method_(std::move(method)), bits_(bits), is_weight_(is_weight), is_signed_(is_signed) {
  add_buffer("initialized", Tensor::scalar(0, dtype));
}

bool Quantizer::initialized() const { return buffers_[0].second.item<double>() != 0; }
void Quantizer::set_initialized(bool on) { buffers_[0].second.fill(on ? 1 : 0); }

Tensor& Quantizer::add_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true).set_name(name);
  params_.emplace_back(name, t);
  return params_.back().second;
}

Tensor& Quantizer::add_buffer(const std::string& name, Tensor t) {
  t.set_name(name);
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

Tensor Quantizer::named(Tensor y) const { return node_name_.empty() ? y : name_node(y, node_name_); }

std::string Quantizer::describe() const {
  return str_cat(method_, ":", bits_, per_channel_ ? ":pc" : "", is_weight_ ? " weight" : " activation",
                 is_signed_ ? " signed" : " unsigned");
}

namespace {

// N of LSQ's gradient scale: the whole weight, or one example of an activation batch.
int64_t lsq_n(const Tensor& x, bool is_weight) {
  if (is_weight || x.dim() < 2 || x.size(0) == 0) return x.numel();
  return x.numel() / x.size(0);
}

class LsqQuantizer : public Quantizer {
 public:
  // channels > 0: per-output-channel step (and offset) of shape (channels).
  LsqQuantizer(bool plus, int bits, bool is_weight, bool is_signed, DType dt, int64_t channels)
      : Quantizer(plus ? "lsqplus" : "lsq", bits, is_weight, is_signed, dt), plus_(plus) {
    per_channel_ = channels > 0;
    const int64_t c = per_channel_ ? channels : 1;
    step_ = add_parameter("step", Tensor::ones({c}, dt));
    if (plus_) offset_ = add_parameter("offset", Tensor::zeros({c}, dt));
  }
  Tensor forward(const Tensor& x, bool) override {
    if (!initialized()) {
      NoGradGuard ng;
      if (plus_) {
        auto [s, b] = lsqplus_init_minmax(x, bits(), is_signed(), per_channel_);
        step_.copy_from(s);
        offset_.copy_from(b);
      } else {
        step_.copy_from(lsq_init_step(x, bits(), is_signed(), per_channel_));
      }
      set_initialized(true);
    }
    LsqOptions o;
    o.bits = bits();
    o.is_signed = is_signed();
    o.per_channel = per_channel_;
    // Per-channel weights: N = one output channel's elements, the op's own default.
    o.grad_scale_n = per_channel_ ? 0 : lsq_n(x, is_weight());
    return named(plus_ ? lsqplus_quantize(x, step_, offset_, o) : lsq_quantize(x, step_, o));
  }

 private:
  bool plus_;
  Tensor step_, offset_;
};

class PactQuantizer : public Quantizer {
 public:
  PactQuantizer(int bits, DType dt) : Quantizer("pact", bits, false, false, dt) {
    alpha_ = add_parameter("alpha", Tensor::ones({1}, dt));
    alpha_.fill(10.0);  // the PACT paper's initial clip level
    set_initialized(true);
  }
  Tensor forward(const Tensor& x, bool) override {
    PactOptions o;
    o.bits = bits();
    return named(pact_quantize(x, alpha_, o));
  }

 private:
  Tensor alpha_;
};

class DorefaQuantizer : public Quantizer {
 public:
  DorefaQuantizer(int bits, bool is_weight, bool is_signed, DType dt)
      : Quantizer("dorefa", bits, is_weight, is_signed, dt) {
    set_initialized(true);
  }
  Tensor forward(const Tensor& x, bool) override {
    DorefaOptions o;
    o.bits = bits();
    return named(is_weight() ? dorefa_quantize_weight(x, o) : dorefa_quantize_activation(x, o));
  }
};

class ApotQuantizer : public Quantizer {
 public:
  ApotQuantizer(bool pot, int bits, bool is_weight, bool is_signed, DType dt)
      : Quantizer(pot ? "pot" : "apot", bits, is_weight, is_signed, dt), pot_(pot) {
    alpha_ = add_parameter("alpha", Tensor::ones({1}, dt));
    alpha_.fill(is_weight ? kApotAlphaInitWeight : kApotAlphaInitActivation);
    set_initialized(true);
  }
  Tensor forward(const Tensor& x, bool) override {
    ApotOptions o;
    o.bits = bits();
    if (is_weight())
      return named(pot_ ? pot_quantize_weight(x, alpha_, o) : apot_quantize_weight(x, alpha_, o));
    return named(pot_ ? pot_quantize_activation(x, alpha_, o) : apot_quantize_activation(x, alpha_, o));
  }

 private:
  bool pot_;
  Tensor alpha_;
};

// Weights: symmetric, range from the weights each step (int8 weights have Z = 0, Jacob et al.).
// Activations: asymmetric, EMA of the batch ranges in training, the running range in eval.
class MinMaxQuantizer : public Quantizer {
 public:
  MinMaxQuantizer(int bits, bool is_weight, bool is_signed, DType dt)
      : Quantizer("minmax", bits, is_weight, is_signed, dt) {
    if (is_weight) {
      set_initialized(true);
    } else {
      rmin_ = add_buffer("running_min", Tensor::zeros({1}, dt));
      rmax_ = add_buffer("running_max", Tensor::zeros({1}, dt));
    }
  }
  Tensor forward(const Tensor& x, bool training) override {
    MinMaxOptions o;
    o.bits = bits();
    o.symmetric = is_weight();
    if (is_weight()) return named(minmax_quantize(x, o));
    if (training || !initialized()) {
      bool init = initialized();
      minmax_ema_update(rmin_, rmax_, init, x, false, o.ema_decay);
      set_initialized(init);
    }
    return named(minmax_quantize(x, rmin_, rmax_, o));
  }

 private:
  Tensor rmin_, rmax_;
};

// First conv / last linear weights at 8 bits (METHODS.md, APoT's first/last layer rule): nothing
// to learn or to initialise; the scale comes from the weights at every forward.
class MaxAbsQuantizer : public Quantizer {
 public:
  MaxAbsQuantizer(int bits, bool is_weight, DType dt) : Quantizer("maxabs", bits, is_weight, true, dt) {
    set_initialized(true);
  }
  Tensor forward(const Tensor& x, bool) override {
    MaxAbsOptions o;
    o.bits = bits();
    return named(maxabs_quantize(x, o));
  }
};

}  // namespace

std::unique_ptr<Quantizer> make_quantizer(const std::string& spec, bool is_weight, bool is_signed,
                                          DType dtype, int64_t channels) {
  const auto colon = spec.find(':');
  LB_CHECK(colon != std::string::npos && colon + 1 < spec.size(), "make_quantizer: spec '", spec,
           "' must be method:bits, e.g. lsq:4");
  const std::string m = spec.substr(0, colon);
  std::string b = spec.substr(colon + 1), options;
  if (const auto c2 = b.find(':'); c2 != std::string::npos) {
    options = b.substr(c2 + 1);
    b = b.substr(0, c2);
  }
  LB_CHECK(options.empty() || options == "pc", "make_quantizer: unknown option '", options,
           "' in '", spec, "' (known: pc = per-channel weight steps)");
  const bool pc = options == "pc";
  LB_CHECK(!pc || ((m == "lsq" || m == "lsqplus") && is_weight), "make_quantizer: option pc in '",
           spec, "' is for lsq/lsqplus weight quantizers only");
  LB_CHECK(!pc || channels > 0, "make_quantizer: option pc in '", spec,
           "' needs the number of output channels");
  char* end = nullptr;
  const long bits = std::strtol(b.c_str(), &end, 10);
  LB_CHECK(end && *end == '\0' && bits >= 1 && bits <= 16, "make_quantizer: bits in '", spec,
           "' must be an integer in [2, 16]");
  LB_CHECK(is_floating(dtype), "make_quantizer: dtype must be float32 or float64");
  const int nb = (int)bits;
  const char* op = "make_quantizer";
  if (m == "lsq" || m == "lsqplus") {
    check_bits(op, nb, 2, 16);
    return std::make_unique<LsqQuantizer>(m == "lsqplus", nb, is_weight, is_signed, dtype,
                                          pc ? channels : 0);
  }
  if (m == "pact") {
    LB_CHECK(!is_weight, "make_quantizer: pact quantizes activations, not weights (spec '", spec, "')");
    check_bits(op, nb, 2, 16);
    return std::make_unique<PactQuantizer>(nb, dtype);
  }
  if (m == "dorefa") {
    check_bits(op, nb, 2, 16);
    return std::make_unique<DorefaQuantizer>(nb, is_weight, is_signed, dtype);
  }
  if (m == "apot" || m == "pot") {
    check_bits(op, nb, 2, m == "apot" ? 5 : 8);
    return std::make_unique<ApotQuantizer>(m == "pot", nb, is_weight, is_signed, dtype);
  }
  if (m == "minmax") {
    check_bits(op, nb, 2, 16);
    return std::make_unique<MinMaxQuantizer>(nb, is_weight, is_signed, dtype);
  }
  if (m == "maxabs") {
    check_bits(op, nb, 2, 16);
    return std::make_unique<MaxAbsQuantizer>(nb, is_weight, dtype);
  }
  LB_FAIL("make_quantizer: unknown method '", m, "' in '", spec,
          "' (known: lsq, lsqplus, pact, dorefa, apot, pot, minmax, maxabs)");
}

}  // namespace lowbit
