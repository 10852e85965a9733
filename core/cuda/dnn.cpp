// cuBLAS GEMMs and the cuDNN convolution, batchnorm (eval mode; training runs our own kernels,
// core/cuda/batch_norm.cu) and pooling of the CUDA backend.
//
// Why cuDNN's legacy (v7-style) API and not the graph API: lowbit is an eager, op-at-a-time engine
// whose shapes are fixed per layer, so a descriptor set per call plus one cached algorithm choice
// per shape is all it needs; the graph API (backend descriptors, or the separate cudnn-frontend
// header library, which the toolkit does not ship) would add an operation-graph build, heuristics
// query and execution-plan cache per op for no gain at this granularity. cuDNN 9 still ships the
// legacy convolution (libcudnn_cnn), batchnorm and pooling entry points; it marks the latter
// deprecated, which warns only under CUDNN_WARN_DEPRECATED (not set here). All cuDNN calls live in
// this file, so moving to the graph API later touches nothing else. docs/architecture.md, "CUDA
// backend", says the same for readers of the docs.
//
// Math mode: plain FP32 (cuBLAS default math, cuDNN FMA math): no TF32, so results track the CPU
// backend. With --deterministic only algorithms cuDNN reports as deterministic are chosen.
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"
#include "core/device_memory.h"

namespace lowbit {

namespace {
bool g_deterministic = false;
}
void cuda_set_deterministic(bool on) { g_deterministic = on; }
bool cuda_deterministic() { return g_deterministic; }

namespace cuda {

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  const float one = 1.f, zero = 0.f;
  LB_CUBLAS("matmul", cublasSgemm(cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b,
                                  (int)ldb, a, (int)lda, &zero, c, (int)n));
}

namespace {

// RAII holders for the descriptors of one call.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w, const char* op) {
    LB_CUDNN(op, cudnnCreateTensorDescriptor(&d));
    LB_CUDNN(op, cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)n, (int)c,
                                            (int)h, (int)w));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const ConvShape& s) {
    LB_CUDNN("conv2d", cudnnCreateFilterDescriptor(&d));
    LB_CUDNN("conv2d", cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)s.o,
                                                  (int)(s.c / s.groups), (int)s.kh, (int)s.kw));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  explicit ConvDesc(const ConvShape& s) {
    LB_CUDNN("conv2d", cudnnCreateConvolutionDescriptor(&d));
    LB_CUDNN("conv2d", cudnnSetConvolution2dDescriptor(d, (int)s.ph, (int)s.pw, (int)s.sh, (int)s.sw,
                                                       (int)s.dh, (int)s.dw, CUDNN_CROSS_CORRELATION,
                                                       CUDNN_DATA_FLOAT));
    LB_CUDNN("conv2d", cudnnSetConvolutionGroupCount(d, (int)s.groups));
    LB_CUDNN("conv2d", cudnnSetConvolutionMathType(d, CUDNN_FMA_MATH));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
};

struct ConvDescs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  explicit ConvDescs(const ConvShape& s)
      : x(s.n, s.c, s.h, s.w, "conv2d"), y(s.n, s.o, s.oh, s.ow, "conv2d"), w(s), conv(s) {}
};

// Algorithm choice, measured once per (direction, shape, deterministic) with cudnnFind* (which
// times the candidates, like torch.backends.cudnn.benchmark) and cached: steady-state steps do
// no search. Candidates come sorted by time; the first that succeeded, fits the workspace cap
// and, in deterministic mode, is deterministic, wins.
using ConvKey = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
ConvKey key_of(int dir, const ConvShape& s) {
  return ConvKey{dir, g_deterministic, s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.sh, s.sw, s.ph,
                 s.pw, s.dh, s.dw, s.groups};
}
constexpr size_t kWorkspaceCap = size_t(1) << 30;

struct Choice {
  int algo;
  size_t ws;
};
std::mutex g_algo_mu;
std::map<ConvKey, Choice> g_algos;

template <class Perf>
Choice pick(const Perf* perf, int count, const char* op) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kWorkspaceCap) continue;
    if (g_deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    return Choice{(int)perf[i].algo, perf[i].memory};
  }
  LB_FAIL(op, ": cuDNN found no usable algorithm",
          g_deterministic ? " (deterministic mode rules out the nondeterministic ones)" : "");
}

template <class Find>
Choice cached_choice(int dir, const ConvShape& s, Find find) {
  const ConvKey key = key_of(dir, s);
  {
    std::lock_guard<std::mutex> lock(g_algo_mu);
    auto it = g_algos.find(key);
    if (it != g_algos.end()) return it->second;
  }
  Choice c = find();
  std::lock_guard<std::mutex> lock(g_algo_mu);
  g_algos[key] = c;
  return c;
}

}  // namespace

void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s) {
  ConvDescs d(s);
  const Choice ch = cached_choice(0, s, [&] {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    LB_CUDNN("conv2d", cudnnFindConvolutionForwardAlgorithm(cudnn(), d.x.d, d.w.d, d.conv.d, d.y.d,
                                                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                            &count, perf));
    return pick(perf, count, "conv2d");
  });
  const float one = 1.f, zero = 0.f;
  LB_CUDNN("conv2d", cudnnConvolutionForward(cudnn(), &one, d.x.d, x, d.w.d, w, d.conv.d,
                                             (cudnnConvolutionFwdAlgo_t)ch.algo, workspace(ch.ws),
                                             ch.ws, &zero, d.y.d, y));
  if (bias) {  // y += bias[c], broadcast over (N, ., H, W), in place
    const Shape out{s.n, s.o, s.oh, s.ow};
    binary_broadcast(Bin::add, y, y, bias, out, {s.o * s.oh * s.ow, s.oh * s.ow, s.ow, 1},
                     {0, 1, 0, 0});
  }
}

void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) {
  ConvDescs d(s);
  const Choice ch = cached_choice(1, s, [&] {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    LB_CUDNN("conv2d backward", cudnnFindConvolutionBackwardDataAlgorithm(
                                    cudnn(), d.w.d, d.y.d, d.conv.d, d.x.d,
                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
    return pick(perf, count, "conv2d backward (data)");
  });
  const float one = 1.f, zero = 0.f;
  LB_CUDNN("conv2d backward", cudnnConvolutionBackwardData(
                                  cudnn(), &one, d.w.d, w, d.y.d, gy, d.conv.d,
                                  (cudnnConvolutionBwdDataAlgo_t)ch.algo, workspace(ch.ws), ch.ws,
                                  &zero, d.x.d, gx));
}

void conv2d_backward_filter(float* gw, const float* gy, const float* x, const ConvShape& s) {
  ConvDescs d(s);
  const Choice ch = cached_choice(2, s, [&] {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    LB_CUDNN("conv2d backward", cudnnFindConvolutionBackwardFilterAlgorithm(
                                    cudnn(), d.x.d, d.y.d, d.conv.d, d.w.d,
                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
    return pick(perf, count, "conv2d backward (filter)");
  });
  const float one = 1.f, zero = 0.f;
  LB_CUDNN("conv2d backward", cudnnConvolutionBackwardFilter(
                                  cudnn(), &one, d.x.d, x, d.y.d, gy, d.conv.d,
                                  (cudnnConvolutionBwdFilterAlgo_t)ch.algo, workspace(ch.ws), ch.ws,
                                  &zero, d.w.d, gw));
}

void conv2d_backward_bias(float* gb, const float* gy, const ConvShape& s) {
  sum_axes(gb, gy, {s.n, s.o, s.oh, s.ow}, {true, false, true, true});
}

namespace {
// Per-channel ones/zeros standing in for an absent affine weight/bias (cuDNN wants both); made
// only when one is absent, so an affine batch norm launches no fill kernels.
struct AffineDefaults {
  float* p = nullptr;
  size_t bytes = 0;
  AffineDefaults(int64_t c, bool needed) {
    if (!needed) return;
    bytes = (size_t)c * 2 * sizeof(float);
    p = (float*)cuda_alloc(bytes);
    fill(p, 1.f, c);
    fill(p + c, 0.f, c);
  }
  ~AffineDefaults() {
    if (p) cuda_free(p, bytes);
  }
};
}  // namespace

void batch_norm_eval_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                             const float* weight, const float* bias, const float* running_mean,
                             const float* running_var, double eps, int64_t n, int64_t c, int64_t h,
                             int64_t w) {
  const char* op = "batch_norm2d";
  LB_CHECK(eps >= CUDNN_BN_MIN_EPSILON, op, ": cuDNN needs eps >= ", CUDNN_BN_MIN_EPSILON, ", got ", eps);
  TensorDesc xd(n, c, h, w, op), pd(1, c, 1, 1, op);
  AffineDefaults def(c, !weight || !bias);
  const float one = 1.f, zero = 0.f;
  LB_CUDNN(op, cudnnBatchNormalizationForwardInference(
                   cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd.d, x, xd.d, y, pd.d,
                   weight ? weight : def.p, bias ? bias : def.p + c, running_mean, running_var, eps));
  bn_eval_stats(save_mean, save_invstd, running_mean, running_var, eps, c);
}

void pool2d_forward(float* y, const float* x, const PoolShape& s) {
  const char* op = s.max ? "max_pool2d" : "avg_pool2d";
  TensorDesc xd(s.n, s.c, s.h, s.w, op), yd(s.n, s.c, s.oh, s.ow, op);
  cudnnPoolingDescriptor_t pd;
  LB_CUDNN(op, cudnnCreatePoolingDescriptor(&pd));
  const cudnnPoolingMode_t mode = s.max ? CUDNN_POOLING_MAX_DETERMINISTIC
                                  : s.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                                        : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  cudnnStatus_t st = cudnnSetPooling2dDescriptor(pd, mode, CUDNN_NOT_PROPAGATE_NAN, (int)s.kh,
                                                 (int)s.kw, (int)s.ph, (int)s.pw, (int)s.sh, (int)s.sw);
  const float one = 1.f, zero = 0.f;
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnPoolingForward(cudnn(), pd, &one, xd.d, x, &zero, yd.d, y);
  cudnnDestroyPoolingDescriptor(pd);
  if (st != CUDNN_STATUS_SUCCESS) fail_cudnn(op, "cudnnPoolingForward", st);
}

void pool2d_backward(float* gx, const float* gy, const float* y, const float* x, const PoolShape& s) {
  const char* op = s.max ? "max_pool2d backward" : "avg_pool2d backward";
  TensorDesc xd(s.n, s.c, s.h, s.w, op), yd(s.n, s.c, s.oh, s.ow, op);
  cudnnPoolingDescriptor_t pd;
  LB_CUDNN(op, cudnnCreatePoolingDescriptor(&pd));
  const cudnnPoolingMode_t mode = s.max ? CUDNN_POOLING_MAX_DETERMINISTIC
                                  : s.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                                        : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  cudnnStatus_t st = cudnnSetPooling2dDescriptor(pd, mode, CUDNN_NOT_PROPAGATE_NAN, (int)s.kh,
                                                 (int)s.kw, (int)s.ph, (int)s.pw, (int)s.sh, (int)s.sw);
  const float one = 1.f, zero = 0.f;
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnPoolingBackward(cudnn(), pd, &one, yd.d, y, yd.d, gy, xd.d, x, &zero, xd.d, gx);
  cudnnDestroyPoolingDescriptor(pd);
  if (st != CUDNN_STATUS_SUCCESS) fail_cudnn(op, "cudnnPoolingBackward", st);
}

}  // namespace cuda
}  // namespace lowbit
