// Tensor storage and plain helpers. Device memory goes through core/device_memory.h, whose CPU-only
// build is a stub that throws (core/cuda/stub.cpp), so this file has no #ifdef.
#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/autograd.h"
#include "core/device_memory.h"
#include "core/host_memory.h"

namespace lowbit {

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  if (s.size() == 1) r += ",";
  return r + ")";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Storage::Storage(size_t bytes_, Device device_) : bytes(bytes_), device(device_) {
  if (device == Device::cuda) {
    data = cuda_alloc(bytes);
    return;
  }
  data = host_alloc(bytes);  // 64-byte aligned for vector loads; large blocks cached
}

Storage::~Storage() {
  if (device == Device::cuda)
    cuda_free(data, bytes);
  else
    host_free(data, bytes);
}

TensorImpl& Tensor::impl() const {
  LB_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t axis) const {
  int64_t d = dim();
  int64_t a = axis < 0 ? axis + d : axis;
  LB_CHECK(a >= 0 && a < d, "Tensor::size: axis ", axis, " out of range for shape ", shape_str(shape()));
  return shape()[a];
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) LB_CHECK(d >= 0, "Tensor: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>((size_t)shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::cuda)
    cuda_memset_zero(t.raw(), t.nbytes());
  else
    std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

void* Tensor::raw() const {
  const TensorImpl& i = impl();
  return static_cast<char*>(i.storage->data) + i.offset * (int64_t)dtype_size(i.dtype);
}

void Tensor::fill(double v) {
  if (device() == Device::cuda) {  // fill a host copy, then one transfer
    Tensor h = empty(shape(), dtype());
    h.fill(v);
    copy_from(h);
    return;
  }
  check_cpu(*this, "Tensor::fill");
  const int64_t n = numel();
  switch (dtype()) {
    case DType::f32: { auto p = data<float>(); for (int64_t i = 0; i < n; ++i) p[i] = (float)v; break; }
    case DType::f64: { auto p = data<double>(); for (int64_t i = 0; i < n; ++i) p[i] = v; break; }
    case DType::i64: { auto p = data<int64_t>(); for (int64_t i = 0; i < n; ++i) p[i] = (int64_t)v; break; }
    case DType::i32: { auto p = data<int32_t>(); for (int64_t i = 0; i < n; ++i) p[i] = (int32_t)v; break; }
    case DType::i8: { auto p = data<int8_t>(); for (int64_t i = 0; i < n; ++i) p[i] = (int8_t)v; break; }
    case DType::u8: { auto p = data<uint8_t>(); for (int64_t i = 0; i < n; ++i) p[i] = (uint8_t)v; break; }
  }
}

Tensor& Tensor::set_requires_grad(bool on) {
  LB_CHECK(!on || is_floating(dtype()), "requires_grad: tensor '", name(), "' has dtype ",
           dtype_name(dtype()), "; only float32/float64 tensors can have gradients");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) { impl().grad = g.defined() ? g.impl_ptr() : nullptr; }

void Tensor::zero_grad() { impl().grad = nullptr; }

Tensor Tensor::detach() const {
  auto i = std::make_shared<TensorImpl>();
  i->storage = impl().storage;
  i->offset = impl().offset;
  i->shape = impl().shape;
  i->dtype = impl().dtype;
  i->name = impl().name;
  return Tensor(i);
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_from(*this);
  t.set_name(name());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  LB_CHECK(src.shape() == shape() && src.dtype() == dtype(), "Tensor::copy_from: source ",
           shape_str(src.shape()), " ", dtype_name(src.dtype()), " into ", shape_str(shape()), " ",
           dtype_name(dtype()));
  if (device() == Device::cpu && src.device() == Device::cpu)
    std::memcpy(raw(), src.raw(), nbytes());
  else
    cuda_copy(raw(), device(), src.raw(), src.device(), nbytes());
}

Tensor Tensor::to_device(Device d) const {
  Tensor t = empty(shape(), dtype(), d);
  t.copy_from(*this);
  t.set_name(name());
  return t;
}

void Tensor::move_to(Device d) {
  if (device() == d) return;
  Tensor t = to_device(d);
  impl().storage = t.impl().storage;
  impl().offset = 0;
  impl().grad = nullptr;  // a gradient of the old device is stale once the data moved
}

Tensor Tensor::to(DType dt) const {
  check_cpu(*this, "Tensor::to");
  if (dt == dtype()) return clone();
  Tensor t = empty(shape(), dt);
  switch (dt) {
    case DType::f32: { auto v = to_vector<float>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
    case DType::f64: { auto v = to_vector<double>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
    case DType::i64: { auto v = to_vector<int64_t>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
    case DType::i32: { auto v = to_vector<int32_t>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
    case DType::i8: { auto v = to_vector<int8_t>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
    case DType::u8: { auto v = to_vector<uint8_t>(); std::memcpy(t.raw(), v.data(), t.nbytes()); break; }
  }
  return t;
}

Tensor Tensor::view(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LB_CHECK(infer < 0, "view: more than one -1 in ", shape_str(new_shape));
      infer = (int64_t)i;
    } else {
      LB_CHECK(s[i] >= 0, "view: negative dimension in ", shape_str(new_shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    LB_CHECK(known > 0 && numel() % known == 0, "view: cannot view ", shape_str(shape()), " as ",
             shape_str(new_shape));
    s[infer] = numel() / known;
  }
  LB_CHECK(shape_numel(s) == numel(), "view: cannot view ", shape_str(shape()), " (", numel(),
           " elements) as ", shape_str(new_shape));
  Tensor t = detach();
  t.impl().shape = s;
  return t;
}

void check_defined(const Tensor& t, const char* op, const char* arg) {
  LB_CHECK(t.defined(), op, ": input '", arg, "' is missing");
}
void check_float(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  LB_CHECK(is_floating(t.dtype()), op, ": input '", arg, "' must be float32 or float64, got ",
           dtype_name(t.dtype()));
}
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  LB_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch, ", dtype_name(a.dtype()), " vs ",
           dtype_name(b.dtype()));
}
void check_dim(const Tensor& t, int64_t d, const char* op, const char* arg) {
  LB_CHECK(t.dim() == d, op, ": input '", arg, "' must be ", d, "-d, got shape ", shape_str(t.shape()));
}
void check_cpu(const Tensor& t, const char* op) {
  LB_CHECK(t.device() == Device::cpu, op, ": tensor is on ", device_name(t.device()),
           "; this op runs on the cpu (move it with .to_device first)");
}

}  // namespace lowbit
