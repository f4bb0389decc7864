// Writes a streamed MP4 to <path>.part in offset order and, once the job's
// stats arrive, checks size and SHA-256 before renaming it to <path>, so a
// half-written or corrupted file never appears under the requested name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace sparsevid::client {

class OutputFile {
 public:
  OutputFile() = default;
  ~OutputFile();  // removes the .part file unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  absl::Status Open(const std::string& path);
  // Chunks must arrive in order: offset == bytes written so far.
  absl::Status Write(int64_t offset, std::string_view data);
  // expected_sha256 may be empty (not checked).
  absl::Status Commit(int64_t expected_bytes, const std::string& expected_sha256);
  void Abort();

  int64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, part_path_;
  FILE* file_ = nullptr;
  EVP_MD_CTX* sha_ = nullptr;
  int64_t bytes_ = 0;
  bool committed_ = false;
};

}  // namespace sparsevid::client
