#include "worker/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace sparsevid::engine {
namespace {

using kernels::DType;

// Headers beyond this are not produced by any real writer; refusing them
// keeps a corrupt length field from driving a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

void NoFree(void*) {}

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, ": ", what));
}

bool ParseDType(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::kF32;
  else if (s == "BF16") *out = DType::kBF16;
  else if (s == "F16") *out = DType::kF16;
  else if (s == "I32") *out = DType::kI32;  // golden-file inputs (token ids)
  else if (s == "U8") *out = DType::kU8;    // golden-file masks
  else return false;
  return true;
}

const char* DTypeTag(DType d) {
  switch (d) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kU8: return "U8";
    default: return nullptr;
  }
}

}  // namespace

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Bad(path, "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Bad(path, absl::StrCat("truncated: ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Bad(path, absl::StrCat("mmap failed: ", std::strerror(errno)));

  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_bytes_ = size;
  // The storage owns the mapping: tensors handed out keep it alive even
  // after the SafetensorsFile object is gone.
  file->storage_ = std::shared_ptr<kernels::Storage>(
      new kernels::Storage(map, size, kernels::DeviceKind::kCpu, &NoFree),
      [size](kernels::Storage* s) {
        ::munmap(s->data(), size);
        delete s;
      });

  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    return Bad(path, absl::StrCat("header length ", header_len, " is implausible (corrupt file?)"));
  }
  if (header_len > size - 8) {
    return Bad(path, absl::StrCat("truncated: header length ", header_len, " exceeds the ",
                                  size - 8, " bytes after the length field"));
  }
  const size_t data_start = 8 + header_len;
  const size_t data_bytes = size - data_start;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    return Bad(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return Bad(path, "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Bad(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return Bad(path, absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        }
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return Bad(path, absl::StrCat(where, " lacks dtype, shape or data_offsets"));
    }
    SafetensorsEntry e;
    e.name = name;
    if (!v["dtype"].is_string()) return Bad(path, absl::StrCat(where, ": dtype is not a string"));
    const std::string dtype = v["dtype"].get<std::string>();
    if (!ParseDType(dtype, &e.dtype)) {
      return Bad(path, absl::StrCat(where, " has unsupported dtype ", dtype,
                                    " (supported: F32, BF16, F16, I32, U8)"));
    }
    if (!v["shape"].is_array()) return Bad(path, absl::StrCat(where, ": shape is not an array"));
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) {
        return Bad(path, absl::StrCat(where, ": shape entries must be non-negative integers"));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t{1} << 48) / dim) {
        return Bad(path, absl::StrCat(where, ": shape is implausibly large"));
      }
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return Bad(path, absl::StrCat(where, ": data_offsets must be two non-negative integers"));
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_bytes) {
      return Bad(path, absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                    ") out of range of the ", data_bytes,
                                    "-byte data section (truncated file?)"));
    }
    const uint64_t expect = numel * kernels::DTypeSize(e.dtype);
    if (end - begin != expect) {
      return Bad(path, absl::StrCat(where, ": ", end - begin, " data bytes but dtype ", dtype,
                                    " and shape ", kernels::ShapeString(e.shape), " need ",
                                    expect));
    }
    e.file_offset = data_start + begin;
    e.nbytes = end - begin;
    file->index_[name] = file->entries_.size();
    file->entries_.push_back(std::move(e));
  }
  // Overlapping ranges mean a corrupt header.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : file->entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) {
    return a->file_offset < b->file_offset;
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const auto* prev = sorted[i - 1];
    if (sorted[i]->nbytes > 0 && prev->file_offset + prev->nbytes > sorted[i]->file_offset) {
      return Bad(path, absl::StrCat("tensors '", prev->name, "' and '", sorted[i]->name,
                                    "' overlap"));
    }
  }
  // Header order as written (nlohmann sorts keys; restore by offset).
  std::stable_sort(file->entries_.begin(), file->entries_.end(),
                   [](const auto& a, const auto& b) { return a.file_offset < b.file_offset; });
  file->index_.clear();
  for (size_t i = 0; i < file->entries_.size(); ++i) file->index_[file->entries_[i].name] = i;
  return file;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

kernels::Tensor SafetensorsFile::Get(const SafetensorsEntry& e) const {
  const size_t align = kernels::DTypeSize(e.dtype);
  if ((reinterpret_cast<uintptr_t>(map_) + e.file_offset) % align == 0) {
    return kernels::Tensor(storage_, e.file_offset, e.shape, e.dtype);
  }
  kernels::Tensor t = kernels::Tensor::Empty(e.shape, e.dtype);
  std::memcpy(t.raw(), static_cast<const uint8_t*>(map_) + e.file_offset, e.nbytes);
  return t;
}

kernels::Tensor SafetensorsFile::GetF32(const SafetensorsEntry& e) const {
  kernels::Tensor src = Get(e);
  if (e.dtype == DType::kF32) return src.Clone();
  return kernels::Tensor::FromVector(src.ToVector(), e.shape);
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, kernels::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const char* tag = DTypeTag(t.dtype());
    if (tag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write tensor '", name, "' of dtype ", kernels::DTypeName(t.dtype())));
    }
    if (header.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", name, "'"));
    }
    header[name] = {{"dtype", tag}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{json.size()} >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(json.data(), json.size());
  for (const auto& [name, t] : tensors) {
    out.write(static_cast<const char*>(t.raw()), t.nbytes());
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("write failed: ", path));
  return absl::OkStatus();
}

}  // namespace sparsevid::engine
