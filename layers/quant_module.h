// QuantizerModule: a Quantizer (quant/quantizer.h) as a child module of a Conv2d/Linear ("wq" for
// its weight, "aq" for its input), so that its parameters and buffers appear in the state_dict as
// "layer1.0.conv1.wq.step", "...wq.initialized" and its graph node is named "layer1.0.conv1/wq".
// Also evaluates a trained uniform quantizer at fewer bits (METHODS.md "Mixed precision: Bit skipping").
#pragma once
#include <memory>
#include <string>

#include "layers/module.h"
#include "quant/quantizer.h"

namespace lowbit {

class QuantizerModule : public Module {
 public:
  explicit QuantizerModule(std::unique_ptr<Quantizer> q);
  // q->forward(x, training()), or the bit-skipped grid when set_skip_bits is active.
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Quantizer"; }
  std::string describe() const override;
  Quantizer& quantizer() { return *q_; }
  const Quantizer& quantizer() const { return *q_; }

  // Bit skipping (seed 003 §3.2): a quantizer trained at b bits evaluates at t bits by keeping every
  // k-th level of its grid, k = 2^(b-t), starting from its lowest level -Q_N (0 when unsigned):
  // the levels k·{-2^(t-1), ..., 2^(t-1)-1}·s (signed) or k·{0, ..., 2^t-1}·s (unsigned). That is
  // exactly LSQ at t bits with step k·s, rounding to the nearest kept level: the clip range stays
  // [-Q_N·s, (Q_P-k+1)·s] (the top k-1 levels fall out), nothing is re-fitted. LSQ+ the same with
  // its offset β unchanged. Supported for lsq and lsqplus; other methods are an error naming
  // the method and the layer. t = 0 or t = b: off. 2 <= t <= b otherwise.
  void set_skip_bits(int t);
  int skip_bits() const { return skip_bits_; }

 private:
  std::unique_ptr<Quantizer> q_;
  int skip_bits_ = 0;
};

}  // namespace lowbit
