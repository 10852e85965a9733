// QuantizerModule (layers/quant_module.h): registers the quantizer's own tensors (shared storage,
// so the quantizer's updates are the module's) and names its node after the owning layer.
#include "layers/quant_module.h"

#include "core/error.h"
#include "quant/lsq.h"

namespace lowbit {

namespace {

// "layer1.0.conv1.wq" -> "layer1.0.conv1/wq": the node name DESIGN.md uses for a layer's quantizer.
std::string quantizer_node_name(const std::string& path) {
  const auto dot = path.rfind('.');
  if (dot == std::string::npos) return path;
  return path.substr(0, dot) + "/" + path.substr(dot + 1);
}

Tensor find_param(const Quantizer& q, const char* name) {
  for (auto& p : q.parameters())
    if (p.first == name) return p.second;
  return Tensor();
}

}  // namespace

QuantizerModule::QuantizerModule(std::unique_ptr<Quantizer> q) : q_(std::move(q)) {
  LB_CHECK(q_ != nullptr, "QuantizerModule: quantizer is null");
  for (auto& p : q_->parameters()) register_parameter(p.first, p.second);
  for (auto& b : q_->buffers()) register_buffer(b.first, b.second);
}

std::string QuantizerModule::describe() const {
  std::string d = q_->describe();
  if (skip_bits_ > 0) d += str_cat(" (skipped to ", skip_bits_, " bits)");
  return d;
}

void QuantizerModule::set_skip_bits(int t) {
  const Quantizer& q = *q_;
  if (t == 0 || t == q.bits()) {
    skip_bits_ = 0;
    return;
  }
  LB_CHECK(q.method() == "lsq" || q.method() == "lsqplus", "bit skipping: '", path(), "' uses ",
           q.method(), ", bit skipping is implemented for the uniform lsq and lsqplus quantizers only");
  LB_CHECK(t >= 2 && t < q.bits(), "bit skipping: '", path(), "' was trained at ", q.bits(),
           " bits; the skipped width must be in [2, ", q.bits(), "], got ", t);
  skip_bits_ = t;
}

Tensor QuantizerModule::forward(const Tensor& x) {
  q_->set_node_name(quantizer_node_name(path()));
  if (skip_bits_ == 0) return q_->forward(x, training());
  LB_CHECK(q_->initialized(), "bit skipping: '", path(), "' has no trained step (not initialized)");
  Tensor step = find_param(*q_, "step");
  LsqOptions o;
  o.bits = skip_bits_;
  o.is_signed = q_->is_signed();
  o.per_channel = q_->per_channel();
  Tensor ks = mul_scalar(step, (double)(int64_t(1) << (q_->bits() - skip_bits_)));
  Tensor y = q_->method() == "lsqplus" ? lsqplus_quantize(x, ks, find_param(*q_, "offset"), o)
                                       : lsq_quantize(x, ks, o);
  return name_node(y, quantizer_node_name(path()));
}

}  // namespace lowbit
