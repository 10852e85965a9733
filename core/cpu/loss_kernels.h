// Row-wise softmax-family CPU kernels on raw pointers: x, y, dx, g, prob: (rows, k) contiguous.
// Each row is computed in double with its maximum subtracted first (no overflow in exp).
#pragma once
#include <cstdint>

namespace lowbit {

// y = log_softmax(x * scale) per row (scale = 1/T for a temperature).
template <class T>
void log_softmax_cpu(T* y, const T* x, int64_t rows, int64_t k, double scale);
// y = softmax(x * scale) per row.
template <class T>
void softmax_cpu(T* y, const T* x, int64_t rows, int64_t k, double scale);
// Backward of y = log_softmax(x): dx = g - exp(y) * sum_row(g).
template <class T>
void log_softmax_backward_cpu(T* dx, const T* g, const T* y, int64_t rows, int64_t k);
// Backward of y = softmax(x): dx = y * (g - sum_row(g * y)).
template <class T>
void softmax_backward_cpu(T* dx, const T* g, const T* y, int64_t rows, int64_t k);

// loss_rows (rows) = -sum_j q_j log p_j with q = (1-eps) onehot(target) + eps/k, p = softmax(x);
// also writes prob = p for the backward. target (rows) must be in [0, k).
template <class T>
void cross_entropy_forward_cpu(double* loss_rows, T* prob, const T* x, const int64_t* target,
                               int64_t rows, int64_t k, double eps);
// dx = scale * (prob - q); scale = upstream gradient / rows for the batch mean.
template <class T>
void cross_entropy_backward_cpu(T* dx, const T* prob, const int64_t* target, int64_t rows,
                                int64_t k, double eps, double scale);

// loss_rows (rows) = KL(softmax(t/temp) || softmax(x/temp)) = sum_j pt_j (log pt_j - log ps_j);
// also writes ps = softmax(x/temp) and pt = softmax(t/temp) for the backward.
template <class T>
void kl_div_forward_cpu(double* loss_rows, T* ps, T* pt, const T* x, const T* t, int64_t rows,
                        int64_t k, double temp);

}  // namespace lowbit
