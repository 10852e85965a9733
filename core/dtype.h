// Element types and devices. float32 is the training type; float64 exists so that gradient checks
// by finite differences are meaningful; the integer types hold labels, counters and integer codes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace lowbit {

enum class DType : uint8_t { f32, f64, i64, i32, i8, u8 };
enum class Device : uint8_t { cpu, cuda };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::i8: return 1;
    case DType::u8: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
    case DType::i32: return "int32";
    case DType::i8: return "int8";
    case DType::u8: return "uint8";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }
inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };

}  // namespace lowbit

// Runs BODY with `scalar_t` bound to float or double according to DTYPE; any other dtype is an
// error naming OP. Used by every floating-point op to pick its kernel instantiation.
#define LB_DISPATCH_FLOAT(DTYPE, OP, ...)                                            \
  [&] {                                                                             \
    switch (DTYPE) {                                                                \
      case ::lowbit::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }  \
      case ::lowbit::DType::f64: { using scalar_t = double; return __VA_ARGS__(); } \
      default:                                                                      \
        LB_FAIL(OP, ": expected a float32 or float64 tensor, got ",                 \
                ::lowbit::dtype_name(DTYPE));                                       \
    }                                                                               \
  }()
