// safetensors files: a memory-mapped reader and a small writer.
// Format: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string", ...}}
// then the raw little-endian tensor bytes (offsets relative to the data start).
// Every malformation is an INVALID_ARGUMENT error naming the file and, where
// one is involved, the tensor. Supported dtypes: F32, BF16, F16 (weights)
// and I32, U8 (inputs and masks of the parity files).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace sparsevid::engine {

struct SafetensorsEntry {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  kernels::Shape shape;
  size_t file_offset = 0;  // absolute byte offset of the data in the file
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // Entries in header order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Host tensor with the file's dtype. Shares the mapping (zero copy) when the
  // data is aligned for its dtype, else a copy. Keeps the mapping alive.
  kernels::Tensor Get(const SafetensorsEntry& entry) const;
  // Host f32 copy (bf16/f16 converted).
  kernels::Tensor GetF32(const SafetensorsEntry& entry) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::shared_ptr<kernels::Storage> storage_;  // views the whole mapping
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (host, f32/bf16/f16) in the given order. Used by the test
// fixture and tests; the training side writes the golden files.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, kernels::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace sparsevid::engine
