// Shape ops: reshape/flatten (views sharing storage), slice, concat, split, channel_shuffle. Their
// backward moves the gradient back (reshape it, place it, cut it, unshuffle it); they work on any
// dtype. Channel shuffle: METHODS.md, Layers of the small-dense models.
#include "core/autograd.h"
#include "core/cpu/shape_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"

namespace lowbit {

namespace {

int64_t norm_axis(int64_t axis, const Shape& s, const char* op) {
  const int64_t nd = (int64_t)s.size();
  const int64_t a = axis < 0 ? axis + nd : axis;
  LB_CHECK(a >= 0 && a < nd, op, ": axis ", axis, " out of range for shape ", shape_str(s));
  return a;
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

// Fresh copy of x[..., start:start+length, ...] along axis (already normalised and checked).
Tensor slice_plain(const Tensor& x, int64_t axis, int64_t start, int64_t length) {
  const Shape& s = x.shape();
  Shape out = s;
  out[axis] = length;
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  if (x.device() == Device::cuda)
    cuda::copy_axis_block(y.data<float>(), x.data<float>(), prod(s, 0, axis), prod(s, axis + 1, s.size()),
                          length, length, 0, s[axis], start);
  else
  copy_axis_block_cpu(y.raw(), length, 0, x.raw(), s[axis], start, length, prod(s, 0, axis),
                      prod(s, axis + 1, s.size()), (int64_t)dtype_size(x.dtype()));
  return y;
}

// Zeros of `shape` with g written at [start, start+len) along axis: the backward of slice.
Tensor place_plain(const Tensor& g, const Shape& shape, int64_t axis, int64_t start) {
  const int64_t len = g.shape()[axis];
  if (g.device() == Device::cuda) {
    Tensor gx = Tensor::zeros(shape, g.dtype(), g.device());
    cuda::copy_axis_block(gx.data<float>(), g.data<float>(), prod(shape, 0, axis),
                          prod(shape, axis + 1, shape.size()), len, shape[axis], start, len, 0);
    return gx;
  }
  Tensor gx = Tensor::empty(shape, g.dtype(), g.device());
  place_axis_block_cpu(gx.raw(), shape[axis], start, g.raw(), len, prod(shape, 0, axis),
                       prod(shape, axis + 1, shape.size()), (int64_t)dtype_size(g.dtype()));
  return gx;
}

Tensor shuffle_plain(const Tensor& x, int64_t groups) {
  const Shape& s = x.shape();
  Tensor y = Tensor::empty(s, x.dtype(), x.device());
  if (x.device() == Device::cuda)
    cuda::channel_shuffle(y.data<float>(), x.data<float>(), s[0], groups, s[1] / groups, s[2] * s[3]);
  else
  channel_shuffle_cpu(y.raw(), x.raw(), s[0], s[1], groups, s[2] * s[3],
                      (int64_t)dtype_size(x.dtype()));
  return y;
}

Tensor reshape_as(const Tensor& x, const Shape& shape, const char* op) {
  check_defined(x, op, "x");
  Tensor y;
  try {
    y = x.view(shape);
  } catch (const Error& e) {  // re-throw naming the op the user called
    LB_FAIL(op, ": cannot reshape ", shape_str(x.shape()), " to ", shape_str(shape), " (", e.what(),
            ")");
  }
  Shape in = x.shape();
  return record(y, op, {x}, {"x"},
                [in](const Node&, const Tensor& g) { return std::vector<Tensor>{g.view(in)}; });
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) { return reshape_as(x, shape, "reshape"); }

Tensor flatten(const Tensor& x, int64_t start_dim) {
  check_defined(x, "flatten", "x");
  const Shape& s = x.shape();
  if (s.empty()) return reshape_as(x, {1}, "flatten");  // a 0-d tensor flattens to (1,)
  const int64_t a = norm_axis(start_dim, s, "flatten");
  Shape out(s.begin(), s.begin() + a);
  out.push_back(prod(s, a, s.size()));
  return reshape_as(x, out, "flatten");
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t length) {
  check_defined(x, "slice", "x");
  if (!on_cuda("slice", {&x}, {"x"})) check_cpu(x, "slice");
  const Shape in = x.shape();
  const int64_t a = norm_axis(axis, in, "slice");
  LB_CHECK(start >= 0 && length >= 0 && start + length <= in[a], "slice: range [", start, ", ",
           start + length, ") out of bounds for axis ", axis, " of size ", in[a], " in shape ",
           shape_str(in));
  Tensor y = slice_plain(x, a, start, length);
  return record(y, "slice", {x}, {"x"}, [in, a, start](const Node& node, const Tensor& g) {
    // Another piece's gradient already pending for x (a split's other half): add into its block.
    // The same sums as the engine's full-size add, which would add this slice's zeros elsewhere
    // (only a -0 there would come out +0 that way).
    Tensor acc = pending_grad(node, 0);  // x's dtype and shape, so g's dtype
    if (acc.defined()) {
      const int64_t len = g.shape()[a], outer = prod(in, 0, a), inner = prod(in, a + 1, in.size());
      LB_DISPATCH_FLOAT(g.dtype(), "slice backward", [&] {
        add_axis_block_cpu(acc.data<scalar_t>(), in[a], start, g.data<scalar_t>(), len, outer, inner);
      });
      return std::vector<Tensor>{acc};
    }
    return std::vector<Tensor>{place_plain(g, in, a, start)};
  });
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  LB_CHECK(!xs.empty(), "concat: no tensors given");
  for (size_t i = 0; i < xs.size(); ++i) {
    LB_CHECK(xs[i].defined(), "concat: tensor ", i, " is undefined");
    if (xs[0].device() != Device::cuda) check_cpu(xs[i], "concat");
    else LB_CHECK(xs[i].device() == Device::cuda && xs[i].dtype() == DType::f32, "concat: tensor ", i,
                  " must be float32 on cuda like tensor 0");
  }
  const Shape& s0 = xs[0].shape();
  const int64_t a = norm_axis(axis, s0, "concat");
  Shape out = s0;
  out[a] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Shape& si = xs[i].shape();
    LB_CHECK(xs[i].dtype() == xs[0].dtype(), "concat: tensor ", i, " is ",
             dtype_name(xs[i].dtype()), ", tensor 0 is ", dtype_name(xs[0].dtype()));
    bool ok = si.size() == s0.size();
    for (size_t d = 0; ok && d < si.size(); ++d) ok = (int64_t)d == a || si[d] == s0[d];
    LB_CHECK(ok, "concat: tensor ", i, " has shape ", shape_str(si), ", incompatible with ",
             shape_str(s0), " for concatenation along axis ", axis);
    out[a] += si[a];
  }
  Tensor y = Tensor::empty(out, xs[0].dtype(), xs[0].device());
  const int64_t outer = prod(out, 0, a), inner = prod(out, a + 1, out.size());
  const int64_t elem = (int64_t)dtype_size(y.dtype());
  std::vector<int64_t> starts;
  int64_t off = 0;
  for (const Tensor& x : xs) {
    const int64_t len = x.shape()[a];
    if (y.device() == Device::cuda)
      cuda::copy_axis_block(y.data<float>(), x.data<float>(), outer, inner, len, out[a], off, len, 0);
    else
      copy_axis_block_cpu(y.raw(), out[a], off, x.raw(), len, 0, len, outer, inner, elem);
    starts.push_back(off);
    off += len;
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < xs.size(); ++i) names.push_back("x" + std::to_string(i));
  return record(y, "concat", xs, names, [a, starts](const Node& n, const Tensor& g) {
    std::vector<Tensor> gs(n.inputs.size());
    for (size_t i = 0; i < gs.size(); ++i)
      if (n.needs_grad(i)) gs[i] = slice_plain(g, a, starts[i], n.inputs[i].shape()[a]);
    return gs;
  });
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  check_defined(x, "split", "x");
  const int64_t a = norm_axis(axis, x.shape(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    LB_CHECK(s >= 0, "split: negative size ", s, " for shape ", shape_str(x.shape()));
    total += s;
  }
  LB_CHECK(total == x.shape()[a], "split: sizes add up to ", total, " but axis ", axis,
           " of shape ", shape_str(x.shape()), " has ", x.shape()[a]);
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {  // each piece is its own slice node, so each has its own gradient
    parts.push_back(slice(x, a, start, s));
    start += s;
  }
  return parts;
}

Tensor channel_shuffle(const Tensor& x, int64_t groups) {
  check_defined(x, "channel_shuffle", "x");
  if (!on_cuda("channel_shuffle", {&x}, {"x"})) check_cpu(x, "channel_shuffle");
  LB_CHECK(x.dim() == 4, "channel_shuffle: x must be 4-d (N, C, H, W), got shape ",
           shape_str(x.shape()));
  const int64_t c = x.shape()[1];
  LB_CHECK(groups > 0 && c % groups == 0, "channel_shuffle: ", c, " channels of shape ",
           shape_str(x.shape()), " are not divisible into ", groups, " groups");
  Tensor y = shuffle_plain(x, groups);
  const int64_t inverse = c / groups;  // shuffling with C/g groups undoes the shuffle
  return record(y, "channel_shuffle", {x}, {"x"}, [inverse](const Node&, const Tensor& g) {
    return std::vector<Tensor>{inverse ? shuffle_plain(g, inverse) : g};
  });
}

Tensor concat_shuffle(const Tensor& a, const Tensor& b) {
  const char* op = "concat+shuffle";
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  if (a.device() == Device::cuda || b.device() == Device::cuda)
    return channel_shuffle(concat({a, b}, 1), 2);  // two nodes on the GPU
  check_cpu(a, op);
  check_cpu(b, op);
  LB_CHECK(a.dim() == 4, op, ": a must be 4-d (N, C, H, W), got shape ", shape_str(a.shape()));
  LB_CHECK(a.shape() == b.shape(), op, ": a and b must have the same shape, got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  LB_CHECK(a.dtype() == b.dtype(), op, ": a is ", dtype_name(a.dtype()), ", b is ",
           dtype_name(b.dtype()));
  const Shape& s = a.shape();
  const int64_t n = s[0], c = s[1], hw = s[2] * s[3], elem = (int64_t)dtype_size(a.dtype());
  Tensor y = Tensor::empty({n, 2 * c, s[2], s[3]}, a.dtype());
  interleave_channels_cpu(y.raw(), a.raw(), b.raw(), n, c, hw, elem, false);
  return record(y, op, {a, b}, {"a", "b"}, [s, n, c, hw, elem](const Node& node, const Tensor& g) {
    Tensor ga = Tensor::empty(s, g.dtype()), gb = Tensor::empty(s, g.dtype());
    interleave_channels_cpu(g.raw(), ga.raw(), gb.raw(), n, c, hw, elem, true);
    return std::vector<Tensor>{node.needs_grad(0) ? ga : Tensor(), node.needs_grad(1) ? gb : Tensor()};
  });
}

}  // namespace lowbit
