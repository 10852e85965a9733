// Operands for testing a float32 conv kernel against the float64 im2col + GEMM path (float64 never
// takes the direct, packed or Winograd kernels), shared by the conv test files.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/conv_kernels.h"
#include "tests/gradcheck.h"

namespace lowbit {
namespace test {

// Random float32 operands of a geometry, their float64 copies for the reference, and buffers for
// the float32 results (dw prefilled with 7 so that a kernel that skips a weight shows).
struct ConvOperands {
  std::vector<float> xf, wf, bf, dyf, y, dx, dw;
  std::vector<double> xd, wd, bd, dyd, yr, dxr, dwr;
  ConvOperands(const ConvGeom& g, uint64_t seed) {
    const Tensor x = rand_tensor({g.N, g.C, g.H, g.W}, seed, -1, 1, DType::f32);
    const Tensor w = rand_tensor({g.O, g.C / g.groups, g.KH, g.KW}, seed + 1, -1, 1, DType::f32);
    const Tensor b = rand_tensor({g.O}, seed + 2, -1, 1, DType::f32);
    const Tensor dyt = rand_tensor({g.N, g.O, g.OH, g.OW}, seed + 3, -1, 1, DType::f32);
    xf = x.to_vector<float>(), wf = w.to_vector<float>(), bf = b.to_vector<float>();
    dyf = dyt.to_vector<float>();
    xd = x.to_vector<double>(), wd = w.to_vector<double>(), bd = b.to_vector<double>();
    dyd = dyt.to_vector<double>();
    y.resize(dyf.size()), dx.resize(xf.size()), dw.assign(wf.size(), 7.0f);
    yr.resize(dyf.size()), dxr.resize(xf.size()), dwr.resize(wf.size());
  }
  // The float64 reference (im2col + gemm, float64 never takes the direct kernels).
  void reference(const ConvGeom& g) {
    conv2d_forward_cpu(yr.data(), xd.data(), wd.data(), bd.data(), g);
    conv2d_backward_data_cpu(dxr.data(), dyd.data(), wd.data(), g);
    conv2d_backward_weight_cpu(dwr.data(), dyd.data(), xd.data(), g);
  }
};

// Largest |a - r| / (1 + |r|).
inline double rel_err(const std::vector<float>& a, const std::vector<double>& r) {
  double m = 0;
  for (size_t i = 0; i < r.size(); ++i) m = std::max(m, std::fabs(a[i] - r[i]) / (1 + std::fabs(r[i])));
  return m;
}

}  // namespace test
}  // namespace lowbit
