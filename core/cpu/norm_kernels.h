// Batch-norm CPU kernels on raw pointers. x, y, dy, dx: (N, C, HW) contiguous; per-channel
// statistics are double. Rows are summed one by one and the row sums added per channel in a fixed
// order, so results do not depend on the threads.
#pragma once
#include <cstdint>

#include "core/activation.h"

namespace lowbit {

// mean (C) and biased variance (C) over the N*HW values of each channel (one pass, double).
template <class T>
void batch_norm_stats_cpu(double* mean, double* var, const T* x, int64_t n, int64_t c, int64_t hw);

// invstd = 1 / sqrt(var + eps) per channel, in double; an error names the channel where var + eps
// is not positive.
void batch_norm_invstd(double* invstd, const double* var, int64_t c, double eps);

// The per-channel affine map the forward applies, y = (x - mu) * scale + shift, each rounded to T:
// mu = mean, scale = invstd * gamma, shift = beta; gamma, beta may be null (1 and 0). The fused
// inference convolution (core/cpu/conv_epilogue.h) applies the same map, so its values are these.
template <class T>
void batch_norm_affine(T* mu, T* scale, T* shift, const double* mean, const double* invstd,
                       const T* gamma, const T* beta, int64_t c);

// y = act((x - mean) * invstd * gamma + beta + residual); gamma, beta (C) and residual (the
// shape of x) may be null (1, 0 and 0).
template <class T>
void batch_norm_forward_cpu(T* y, const T* x, const double* mean, const double* invstd,
                            const T* gamma, const T* beta, int64_t n, int64_t c, int64_t hw,
                            FusedAct act = FusedAct::none, const T* residual = nullptr);

// dgamma = sum(dy * x_hat), dbeta = sum(dy) per channel (double, C). dx (may be null):
//   training: gamma * invstd * (dy - sum(dy)/M - x_hat * sum(dy * x_hat)/M), M = N*HW
//   eval:     gamma * invstd * dy (the statistics are constants)
// With a fused activation, dy is first masked by the forward's output y (core/activation.h), the
// same values relu's backward would have handed on; y is unused (may be null) without one.
// dmask (the shape of x, may be null; only with an activation) receives that masked dy: the
// gradient of a residual added before the activation.
template <class T>
void batch_norm_backward_cpu(T* dx, double* dgamma, double* dbeta, const T* dy, const T* x,
                             const double* mean, const double* invstd, const T* gamma,
                             bool training, int64_t n, int64_t c, int64_t hw,
                             const T* y = nullptr, FusedAct act = FusedAct::none,
                             T* dmask = nullptr);

}  // namespace lowbit
