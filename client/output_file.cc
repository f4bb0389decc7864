#include "client/output_file.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sparsevid::client {

OutputFile::~OutputFile() {
  if (!committed_) Abort();
  if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
}

absl::Status OutputFile::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("output path is empty");
  path_ = path;
  part_path_ = path + ".part";
  file_ = std::fopen(part_path_.c_str(), "wb");
  if (file_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", part_path_, ": ", std::strerror(errno)));
  }
  sha_ = EVP_MD_CTX_new();
  if (sha_ == nullptr || EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("cannot initialise SHA-256");
  }
  return absl::OkStatus();
}

absl::Status OutputFile::Write(int64_t offset, std::string_view data) {
  if (file_ == nullptr) return absl::FailedPreconditionError("output file is not open");
  if (offset != bytes_) {
    return absl::DataLossError(
        absl::StrCat("chunk at byte ", offset, " but ", bytes_, " bytes were written so far"));
  }
  if (std::fwrite(data.data(), 1, data.size(), file_) != data.size()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("writing ", part_path_, ": ", std::strerror(errno)));
  }
  EVP_DigestUpdate(sha_, data.data(), data.size());
  bytes_ += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::Status OutputFile::Commit(int64_t expected_bytes, const std::string& expected_sha256) {
  if (file_ == nullptr) return absl::FailedPreconditionError("output file is not open");
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    return absl::ResourceExhaustedError(
        absl::StrCat("closing ", part_path_, ": ", std::strerror(errno)));
  }
  file_ = nullptr;
  if (expected_bytes >= 0 && bytes_ != expected_bytes) {
    return absl::DataLossError(
        absl::StrCat("received ", bytes_, " bytes, the server reported ", expected_bytes));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(sha_, digest, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) absl::StrAppendFormat(&hex, "%02x", digest[i]);
  if (!expected_sha256.empty() && hex != expected_sha256) {
    return absl::DataLossError(
        absl::StrCat("SHA-256 mismatch: got ", hex, ", server reported ", expected_sha256));
  }
  if (std::rename(part_path_.c_str(), path_.c_str()) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("renaming ", part_path_, " to ", path_, ": ", std::strerror(errno)));
  }
  committed_ = true;
  return absl::OkStatus();
}

void OutputFile::Abort() {
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (!part_path_.empty()) std::remove(part_path_.c_str());
}

}  // namespace sparsevid::client
