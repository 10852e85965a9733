// Device halves of the ops whose CUDA path is not a drop-in kernel call (cuDNN convolution,
// batchnorm and pooling; relu; the cross-entropy): each checks its inputs, allocates on the
// device, calls core/cuda/kernels.h and records the same node as its CPU op. The public op
// (core/ops_*.cpp) branches here when an input lives on cuda (on_cuda in core/cuda/kernels.h).
#pragma once
#include "core/ops.h"

namespace lowbit {

Tensor conv2d_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o);
// Training mode fuses the residual add and the activation as the CPU's node does; eval mode runs
// cuDNN's inference kernel and records them as separate nodes.
Tensor batch_norm2d_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         Tensor running_mean, Tensor running_var, bool training, double momentum,
                         double eps, FusedAct act, const Tensor& residual);
// "batch_norm2d", then "+add" with a residual and "+relu" / "+relu6" with an activation
// (core/ops_norm.cpp): the node's name on both devices.
std::string batch_norm_node_name(bool residual, FusedAct act);
Tensor clamp_relu_cuda(const Tensor& x, double hi, const char* op);  // relu: hi < 0
// max or average pooling; global and adaptive (evenly dividing bins) average pooling map onto it.
Tensor pool2d_cuda(const Tensor& x, const Pool2dOptions& o, bool is_max, const char* op);
// Inverted dropout with the CPU's mask: the same counter-based RNG draws on the device.
Tensor dropout_cuda(const Tensor& x, double p, uint64_t seed, uint64_t stream);
Tensor softmax_cross_entropy_cuda(const Tensor& logits, const Tensor& target, double smoothing);

}  // namespace lowbit
