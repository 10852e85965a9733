// Elementwise CPU kernels on raw pointers. Broadcasting is resolved by the caller into per-input
// element strides over the output shape (stride 0 on a broadcast axis).
#pragma once
#include <cstdint>
#include <vector>

#include "core/parallel.h"

namespace lowbit {

// Strides (in elements) of a contiguous tensor of shape `in` read through the broadcast output
// shape `out` (in is right-aligned against out; axes of size 1 get stride 0).
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in, const std::vector<int64_t>& out);

// The loops below copy the pointers into __restrict locals inside the parallel body: read
// through the lambda's captures, GCC reloads them after every store and never vectorises.
template <class T, class F>
void unary_cpu(T* y, const T* x, int64_t n, F f) {
  parallel_for(n, 1, [&](int64_t s, int64_t e) {
    T* __restrict yo = y;
    const T* __restrict xi = x;
    for (int64_t i = s; i < e; ++i) yo[i] = f(xi[i]);
  });
}

// acc[i] += b[i], in place (the autograd engine's gradient sums): the same bits as acc[i] + b[i]
// into a fresh buffer, without a fresh buffer.
template <class T>
void add_into_cpu(T* acc, const T* b, int64_t n) {
  parallel_for(n, 1, [&](int64_t s, int64_t e) {
    T* __restrict a = acc;
    const T* __restrict bi = b;
    for (int64_t i = s; i < e; ++i) a[i] += bi[i];
  });
}

// y[i] = f(a[i], b[i]) for same-shape inputs.
template <class T, class F>
void binary_cpu(T* y, const T* a, const T* b, int64_t n, F f) {
  parallel_for(n, 1, [&](int64_t s, int64_t e) {
    T* __restrict yo = y;
    const T* __restrict ai = a;
    const T* __restrict bi = b;
    for (int64_t i = s; i < e; ++i) yo[i] = f(ai[i], bi[i]);
  });
}

// y[i] = f(a[ia(i)], b[ib(i)]) over the output shape. out: (shape), a, b read with strides.
template <class T, class F>
void binary_broadcast_cpu(T* y, const T* a, const T* b, const std::vector<int64_t>& shape,
                          const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, F f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t nd = (int64_t)shape.size();
  bool same = true;
  int64_t contig = 1;
  for (int64_t i = nd - 1; i >= 0; --i) {
    if (sa[i] != contig || sb[i] != contig) same = false;
    contig *= shape[i];
  }
  if (same) {  // no broadcasting: a plain loop the compiler vectorises
    binary_cpu(y, a, b, n, f);
    return;
  }
  const int64_t inner = nd ? shape[nd - 1] : 1;
  const int64_t rows = inner ? n / inner : 0;
  parallel_for(rows, inner, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(nd > 0 ? nd - 1 : 0);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, oa = 0, ob = 0;
      for (int64_t d = nd - 2; d >= 0; --d) {
        int64_t k = rem % shape[d];
        rem /= shape[d];
        oa += k * sa[d];
        ob += k * sb[d];
      }
      const int64_t ia = nd ? sa[nd - 1] : 0, ib = nd ? sb[nd - 1] : 0;
      T* yr = y + r * inner;
      for (int64_t j = 0; j < inner; ++j) yr[j] = f(a[oa + j * ia], b[ob + j * ib]);
    }
  });
}


}  // namespace lowbit
