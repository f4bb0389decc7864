// A small dense tensor: shared storage, shape, row-major strides, a device.
// Views (Reshape, Narrow on dim 0) share storage; everything else allocates.
// Model code reads and writes data only through a Backend, so the same code
// runs on CPU and CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sparsevid::kernels {

enum class DType : uint8_t { kF32, kBF16, kF16, kI8, kI32, kU8 };
enum class DeviceKind : uint8_t { kCpu, kCuda };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

// Raw memory owned by a backend. The deleter returns it to that backend.
class Storage {
 public:
  Storage(void* data, size_t bytes, DeviceKind device, void (*free_fn)(void*));
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  DeviceKind device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  DeviceKind device_;
  void (*free_fn_)(void*);
};

using Shape = std::vector<int64_t>;

std::string ShapeString(const Shape& shape);
int64_t NumElements(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Host tensors (CPU backend memory, 64-byte aligned).
  static Tensor Empty(const Shape& shape, DType dtype = DType::kF32);
  static Tensor Zeros(const Shape& shape, DType dtype = DType::kF32);
  static Tensor FromVector(const std::vector<float>& values, const Shape& shape);
  // Wraps existing storage (used by backends and by the weight loader).
  Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape,
         DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Negative index counts from the end, as in Python.
  int64_t dim(int i) const;
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return numel() * DTypeSize(dtype_); }
  DType dtype() const { return dtype_; }
  DeviceKind device() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t byte_offset() const { return byte_offset_; }

  void* raw() const;
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }
  float* f32() const { return data<float>(); }

  // Same storage, new shape (element count must match).
  Tensor Reshape(const Shape& shape) const;
  // Rows [start, start+length) of dim 0; shares storage.
  Tensor Narrow0(int64_t start, int64_t length) const;
  // Deep copy on the same device.
  Tensor Clone() const;
  // Host copy as f32 (converts bf16/f16); for tests and small reads.
  std::vector<float> ToVector() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t byte_offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::kF32;
};

// bf16 / f16 <-> f32 conversions (round to nearest even).
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t h);
uint16_t FloatToF16(float f);
float F16ToFloat(uint16_t h);

}  // namespace sparsevid::kernels
