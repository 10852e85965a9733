// CPU-only build: the CUDA entry points exist and throw, so op code needs no #ifdef and a user who
// asks for --device cuda learns why it cannot work. The kernels (core/cuda/kernels.h) are
// unreachable here (no tensor can live on cuda) but must link.
#include "core/cuda/kernels.h"
#include "core/device_memory.h"
#include "core/error.h"

namespace lowbit {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  LB_FAIL(what, ": this lowbit was built without CUDA (rebuild with `make GPU=1` on a machine with "
          "the CUDA toolkit and cuDNN)");
}
bool g_deterministic = false;
}  // namespace

bool cuda_available() { return false; }
void* cuda_alloc(size_t) { no_cuda("cuda_alloc"); }
void cuda_free(void*, size_t) {}
void cuda_memset_zero(void*, size_t) { no_cuda("cuda_memset_zero"); }
void cuda_copy(void*, Device, const void*, Device, size_t) { no_cuda("cuda_copy"); }
void cuda_synchronize() {}
void cuda_check_positive(const float*, int64_t, const std::string&) { no_cuda("cuda_check_positive"); }
std::string cuda_describe() { return "CUDA not built in (CPU-only build; `make GPU=1` adds it)"; }
void cuda_set_deterministic(bool on) { g_deterministic = on; }
bool cuda_deterministic() { return g_deterministic; }

namespace cuda {

void binary_broadcast(Bin op, float* y, const float* a, const float* b, const Shape& out,
                      const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) { no_cuda(__func__); }
void scalar_op(Scalar op, float* y, const float* x, float s, int64_t n) { no_cuda(__func__); }
void fill(float* y, float v, int64_t n) { no_cuda(__func__); }
void clamp_relu_forward(float* y, const float* x, float hi, int64_t n) { no_cuda(__func__); }
void clamp_relu_backward(float* gx, const float* g, const float* x, float hi, int64_t n) { no_cuda(__func__); }
void sum_axes(float* y, const float* x, const Shape& in, const std::vector<bool>& red) { no_cuda(__func__); }
void copy_axis_block(float* dst, const float* src, int64_t outer, int64_t inner, int64_t len,
                     int64_t dst_axis, int64_t dst_off, int64_t src_axis, int64_t src_off) { no_cuda(__func__); }
void channel_shuffle(float* y, const float* x, int64_t n, int64_t groups, int64_t per_group,
                     int64_t hw) { no_cuda(__func__); }
void softmax_xent_forward(float* loss, float* prob, const float* logits, const int64_t* target,
                          int64_t n, int64_t k, double smoothing) { no_cuda(__func__); }
void softmax_xent_backward(float* gx, const float* g, const float* prob, const int64_t* target,
                           int64_t n, int64_t k, double smoothing) { no_cuda(__func__); }
void sgd_update(float* p, const float* g, float* buf, bool first, float wd, float momentum,
                float damp, float neg_lr, bool nesterov, int64_t n) { no_cuda(__func__); }
void adam_update(float* p, const float* g, float* m, float* v, float wd, float decay, float b1,
                 float b2, float one_b1, float one_b2, float c2, float eps, float neg_step,
                 bool decoupled, bool small_w, int64_t n) { no_cuda(__func__); }
void apply_mask(float* p, const float* mask, int64_t n) { no_cuda(__func__); }
void lsq_forward(float* y, const float* x, const float* s, const float* beta, int64_t qn,
                 int64_t qp, int64_t channels, int64_t inner) { no_cuda(__func__); }
void lsq_backward(float* gx, float* gs, float* gbeta, const float* gy, const float* x,
                  const float* s, const float* beta, int64_t qn, int64_t qp, double grad_scale,
                  double beta_scale, bool clipped, int64_t channels, int64_t inner) { no_cuda(__func__); }
void pact_forward(float* y, const float* x, const float* alpha, int64_t levels, int64_t n) { no_cuda(__func__); }
void pact_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                   bool clipped, int64_t n) { no_cuda(__func__); }
void dorefa_w_forward(float* y, float* m, const float* w, int64_t levels, int64_t n) { no_cuda(__func__); }
void dorefa_w_backward(float* gw, const float* gy, const float* w, const float* m, int64_t n) { no_cuda(__func__); }
void dorefa_a_forward(float* y, const float* x, int64_t levels, int64_t n) { no_cuda(__func__); }
void dorefa_a_backward(float* gx, const float* gy, const float* x, bool clipped, int64_t n) { no_cuda(__func__); }
void apot_w_stats(float* stats, double host_ms[2], const float* w, int64_t n) { no_cuda(__func__); }
void apot_w_forward(float* y, const float* w, const float* alpha, const float* stats,
                    const float* levels, int64_t nl, int64_t n) { no_cuda(__func__); }
void apot_w_backward(float* gw, float* galpha, const float* gy, const float* w, const float* alpha,
                     const float* stats, const float* levels, int64_t nl, bool clipped, int64_t n) { no_cuda(__func__); }
void apot_a_forward(float* y, const float* x, const float* alpha, const float* levels, int64_t nl,
                    int64_t n) { no_cuda(__func__); }
void apot_a_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                     const float* levels, int64_t nl, bool clipped, int64_t n) { no_cuda(__func__); }
void rounding_forward(float* y, const float* x, const float* s, int kind, int64_t lo, int64_t hi,
                      uint64_t seed, uint64_t stream, int64_t channels, int64_t inner) { no_cuda(__func__); }
void rounding_backward(float* gx, const float* gy, const float* x, const float* s, int64_t lo,
                       int64_t hi, bool clipped, int64_t channels, int64_t inner) { no_cuda(__func__); }
void maxabs_scale(float* s, const float* x, double qp, int64_t n) { no_cuda(__func__); }
void minmax_forward(float* y, const float* x, const float* scale, const float* zero, int64_t qmin,
                    int64_t qmax, int64_t channels, int64_t inner) { no_cuda(__func__); }
void minmax_backward(float* gx, const float* gy, const float* x, const float* scale,
                     const float* zero, int64_t qmin, int64_t qmax, bool clipped, int64_t channels,
                     int64_t inner) { no_cuda(__func__); }
void dropout_forward(float* y, float* mask, const float* x, float p, float keep_scale,
                     uint64_t seed, uint64_t stream, int64_t n) { no_cuda(__func__); }
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c) { no_cuda(__func__); }
void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s) { no_cuda(__func__); }
void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) { no_cuda(__func__); }
void conv2d_backward_filter(float* gw, const float* gy, const float* x, const ConvShape& s) { no_cuda(__func__); }
void conv2d_backward_bias(float* gb, const float* gy, const ConvShape& s) { no_cuda(__func__); }
void batch_norm_train_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                              const float* weight, const float* bias, float* running_mean,
                              float* running_var, double momentum, double eps, int64_t n,
                              int64_t c, int64_t hw, FusedAct act, const float* residual) { no_cuda(__func__); }
void batch_norm_train_backward(float* gx, float* gweight, float* gbias, float* gres,
                               const float* gy, const float* x, const float* y,
                               const float* weight, const float* save_mean,
                               const float* save_invstd, int64_t n, int64_t c, int64_t hw,
                               FusedAct act) { no_cuda(__func__); }
void batch_norm_eval_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                             const float* weight, const float* bias, const float* running_mean,
                             const float* running_var, double eps, int64_t n, int64_t c, int64_t h,
                             int64_t w) { no_cuda(__func__); }
void bn_eval_stats(float* save_mean, float* save_invstd, const float* running_mean,
                   const float* running_var, double eps, int64_t c) { no_cuda(__func__); }
void bn_eval_backward(float* gx, float* gw, float* gb, const float* gy, const float* x,
                      const float* weight, const float* mean, const float* invstd, int64_t n,
                      int64_t c, int64_t hw) { no_cuda(__func__); }
void pool2d_forward(float* y, const float* x, const PoolShape& s) { no_cuda(__func__); }
void pool2d_backward(float* gx, const float* gy, const float* y, const float* x, const PoolShape& s) { no_cuda(__func__); }

}  // namespace cuda
}  // namespace lowbit
