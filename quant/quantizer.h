// Quantizer: what a quantized layer holds for its weight ("wq") and its input ("aq"): a method, a
// bit width, its learnable parameters under PyTorch-style names (step, offset, alpha) and its state
// (initialized, running ranges), so a layer registers them as "<layer>.wq.step". Each forward calls
// the graph op of quant/<method>.h (METHODS.md "Uniform quantizers", "Non-uniform quantizers").
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  Quantizer(const Quantizer&) = delete;
  Quantizer& operator=(const Quantizer&) = delete;

  // Quantizes x. The first call initialises data-dependent parameters from x (LSQ's step, LSQ+'s
  // step and offset) and sets initialized; training selects the state updates (min-max EMA).
  virtual Tensor forward(const Tensor& x, bool training) = 0;

  const std::string& method() const { return method_; }  // "lsq", "apot", ...
  int bits() const { return bits_; }
  bool is_weight() const { return is_weight_; }
  bool is_signed() const { return is_signed_; }
  bool per_channel() const { return per_channel_; }
  // Whether the data-dependent init ran; stored in the buffer "initialized" (0-d, 0 or 1) so that a
  // checkpoint carries it and a resumed run does not initialise again.
  bool initialized() const;

  // Learnable parameters ("step", "offset", "alpha"), requires_grad set; and buffers.
  const std::vector<std::pair<std::string, Tensor>>& parameters() const { return params_; }
  const std::vector<std::pair<std::string, Tensor>>& buffers() const { return buffers_; }
  // Name given to the graph node each forward records ("layer1.0.conv1/wq"); empty: unnamed.
  void set_node_name(const std::string& n) { node_name_ = n; }
  std::string describe() const;  // "lsq:4 weight signed"

 protected:
  Quantizer(std::string method, int bits, bool is_weight, bool is_signed, DType dtype);
  Tensor& add_parameter(const std::string& name, Tensor t);
  Tensor& add_buffer(const std::string& name, Tensor t);
  void set_initialized(bool on);
  Tensor named(Tensor y) const;  // applies node_name_
  bool per_channel_ = false;

  DType dtype_;

 private:
  std::string method_;
  int bits_;
  bool is_weight_, is_signed_;
  std::string node_name_;
  std::vector<std::pair<std::string, Tensor>> params_, buffers_;
};

// spec "method:bits[:options]" with method one of lsq, lsqplus, pact, dorefa, apot, pot, minmax,
// maxabs (quant/maxabs.h: symmetric, scale max|x|/(2^(b-1)-1), identity STE; the 8-bit first/last
// layer weights). options: "pc" = per-output-channel step sizes (lsq/lsqplus weights only), which
// needs channels = the weight's size(0) so the step has its final shape (C) before any forward
// (a checkpoint loads into it). Parameters and state are created in dtype (float32 for training,
// float64 for gradient checks). pact is for activations only (is_weight must be false). Errors
// name make_quantizer and the spec.
std::unique_ptr<Quantizer> make_quantizer(const std::string& spec, bool is_weight, bool is_signed,
                                          DType dtype = DType::f32, int64_t channels = 0);

}  // namespace lowbit
