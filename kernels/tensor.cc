#include "kernels/tensor.h"

#include <immintrin.h>

#include <cstring>
#include <sstream>

#include "kernels/check.h"
#include "kernels/cpu/host_allocator.h"

namespace sparsevid::kernels {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
    case DType::kI8:
    case DType::kU8:
      return 1;
  }
  SV_CHECK(false, "unknown dtype %d", static_cast<int>(dtype));
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI8: return "i8";
    case DType::kI32: return "i32";
    case DType::kU8: return "u8";
  }
  return "unknown";
}

Storage::Storage(void* data, size_t bytes, DeviceKind device, void (*free_fn)(void*))
    : data_(data), bytes_(bytes), device_(device), free_fn_(free_fn) {}

Storage::~Storage() {
  if (free_fn_ != nullptr) free_fn_(data_);
}

std::string ShapeString(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    out << shape[i];
  }
  out << ']';
  return out.str();
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    SV_CHECK(s >= 0, "negative dimension in shape %s", ShapeString(shape).c_str());
    n *= s;
  }
  return n;
}

Tensor::Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape, DType dtype)
    : storage_(std::move(storage)), byte_offset_(byte_offset), shape_(std::move(shape)),
      dtype_(dtype) {
  SV_CHECK(storage_ != nullptr, "tensor without storage");
  SV_CHECK(byte_offset_ + nbytes() <= storage_->bytes(),
           "tensor %s %s at offset %zu overruns storage of %zu bytes",
           ShapeString(shape_).c_str(), DTypeName(dtype_), byte_offset_, storage_->bytes());
}

Tensor Tensor::Empty(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  return Tensor(AllocateHost(bytes, GlobalHostAccount()), 0, shape, dtype);
}

Tensor Tensor::Zeros(const Shape& shape, DType dtype) {
  Tensor t = Empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::FromVector(const std::vector<float>& values, const Shape& shape) {
  SV_CHECK(static_cast<int64_t>(values.size()) == NumElements(shape),
           "FromVector: %zu values for shape %s", values.size(), ShapeString(shape).c_str());
  Tensor t = Empty(shape, DType::kF32);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int idx = i < 0 ? i + n : i;
  SV_CHECK(idx >= 0 && idx < n, "dim %d of a %d-d tensor %s", i, n, ShapeString(shape_).c_str());
  return shape_[idx];
}

DeviceKind Tensor::device() const {
  SV_CHECK(defined(), "device() of an undefined tensor");
  return storage_->device();
}

void* Tensor::raw() const {
  SV_CHECK(defined(), "data access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + byte_offset_;
}

Tensor Tensor::Reshape(const Shape& shape) const {
  SV_CHECK(NumElements(shape) == numel(), "Reshape %s -> %s changes the element count",
           ShapeString(shape_).c_str(), ShapeString(shape).c_str());
  return Tensor(storage_, byte_offset_, shape, dtype_);
}

Tensor Tensor::Narrow0(int64_t start, int64_t length) const {
  SV_CHECK(ndim() >= 1, "Narrow0 of a scalar");
  SV_CHECK(start >= 0 && length >= 0 && start + length <= shape_[0],
           "Narrow0(%lld, %lld) out of range for %s", static_cast<long long>(start),
           static_cast<long long>(length), ShapeString(shape_).c_str());
  Shape shape = shape_;
  shape[0] = length;
  const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  return Tensor(storage_, byte_offset_ + start * row * DTypeSize(dtype_), shape, dtype_);
}

Tensor Tensor::Clone() const {
  SV_CHECK(device() == DeviceKind::kCpu,
           "Tensor::Clone copies host tensors only; use Backend::Copy on a device");
  Tensor t = Empty(shape_, dtype_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

std::vector<float> Tensor::ToVector() const {
  SV_CHECK(device() == DeviceKind::kCpu, "ToVector reads host tensors only");
  const int64_t n = numel();
  std::vector<float> out(n);
  switch (dtype_) {
    case DType::kF32:
      if (n) std::memcpy(out.data(), raw(), n * sizeof(float));
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(data<uint16_t>()[i]);
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToFloat(data<uint16_t>()[i]);
      break;
    case DType::kI8:
      for (int64_t i = 0; i < n; ++i) out[i] = data<int8_t>()[i];
      break;
    case DType::kI32:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(data<int32_t>()[i]);
      break;
    case DType::kU8:
      for (int64_t i = 0; i < n; ++i) out[i] = data<uint8_t>()[i];
      break;
  }
  return out;
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, keep sign
  }
  // Round to nearest even on the 16 dropped bits (overflow correctly yields inf).
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// F16C hardware conversion (the build requires -mf16c): IEEE round to nearest even.
uint16_t FloatToF16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

float F16ToFloat(uint16_t h) { return _cvtsh_ss(h); }

}  // namespace sparsevid::kernels
