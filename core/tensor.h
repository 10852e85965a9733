// Tensor: a shared handle to contiguous row-major storage with a shape, a dtype and a device tag.
// Views (reshape, flatten) share storage with an element offset; every op writes fresh storage.
// Autograd state (requires_grad, .grad, the node that produced it) lives in the shared impl, so
// copies of a Tensor handle are the same tensor, as in PyTorch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lowbit {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

struct Node;

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf (or retained)
  std::shared_ptr<Node> node;        // the op that produced this tensor (null for leaves)
  std::string name;                  // parameter or buffer name, for graph dumps and errors
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Construction. New storage is zero-filled by zeros(), uninitialised by empty().
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32);  // 0-d
  template <class T>
  static Tensor from_vector(const Shape& shape, const std::vector<T>& values);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return (int64_t)impl().shape.size(); }
  int64_t size(int64_t axis) const;  // negative axis counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype()); }

  void* raw() const;  // pointer to the first element (cpu or device memory)
  template <class T>
  T* data() const;  // checks that T matches the dtype
  template <class T>
  T item() const;  // value of a one-element tensor, converted to T
  double item_double() const { return item<double>(); }
  template <class T>
  std::vector<T> to_vector() const;  // copy of the elements converted to T

  // Autograd.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;  // undefined until a backward pass reached this leaf
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the accumulated gradient
  const std::shared_ptr<Node>& node() const { return impl().node; }
  Tensor detach() const;  // same storage, no autograd history

  const std::string& name() const { return impl().name; }
  Tensor& set_name(const std::string& n) {
    impl().name = n;
    return *this;
  }

  // Plain (non-recording) helpers.
  Tensor clone() const;  // deep copy, detached
  Tensor to(DType dtype) const;  // converted copy, detached
  Tensor to_device(Device d) const;  // copy on device d (a copy even when already there), detached
  // Moves the storage of this tensor (and every handle sharing its impl: a module's parameter, an
  // optimizer's slot) to device d in place; drops its gradient. No-op when already there.
  void move_to(Device d);
  void copy_from(const Tensor& src);  // same shape and dtype, elementwise copy into this storage
  void fill(double value);
  Tensor view(const Shape& shape) const;  // shares storage; -1 infers one axis; detached

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Checks used by ops (they throw lowbit::Error naming the op).
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_float(const Tensor& t, const char* op, const char* arg);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_dim(const Tensor& t, int64_t dim, const char* op, const char* arg);
void check_cpu(const Tensor& t, const char* op);

// ---- template definitions ----
template <class T>
Tensor Tensor::from_vector(const Shape& shape, const std::vector<T>& values) {
  LB_CHECK((int64_t)values.size() == shape_numel(shape), "Tensor::from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

template <class T>
T* Tensor::data() const {
  LB_CHECK(dtype_of<T>::value == dtype(), "Tensor::data: tensor '", name(), "' is ",
           dtype_name(dtype()), ", accessed as ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  if (device() != Device::cpu) return to_device(Device::cpu).to_vector<T>();  // one transfer
  check_cpu(*this, "Tensor::to_vector");
  std::vector<T> out((size_t)numel());
  const int64_t n = numel();
  switch (dtype()) {
    case DType::f32: { auto p = data<float>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
    case DType::f64: { auto p = data<double>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
    case DType::i64: { auto p = data<int64_t>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
    case DType::i32: { auto p = data<int32_t>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
    case DType::i8: { auto p = data<int8_t>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
    case DType::u8: { auto p = data<uint8_t>(); for (int64_t i = 0; i < n; ++i) out[i] = (T)p[i]; break; }
  }
  return out;
}

template <class T>
T Tensor::item() const {
  LB_CHECK(numel() == 1, "Tensor::item: tensor of shape ", shape_str(shape()),
           " has ", numel(), " elements, expected 1");
  return to_vector<T>()[0];
}

}  // namespace lowbit
