#include "common/api_key_file.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/text_file.h"

namespace sparsevid {

std::string BearerValue(const std::string& key) { return absl::StrCat("Bearer ", key); }

bool IsPrintableToken(absl::string_view text) {
  for (char c : text) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

namespace {

// One token of printable ASCII, as an `authorization` value must be (gRPC
// aborts the process on anything else). `where` names the source, never the key.
absl::StatusOr<std::string> CheckKey(absl::string_view raw, const std::string& where) {
  std::string key(absl::StripAsciiWhitespace(raw));
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": is empty"));
  if (key.size() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the key is over 4096 characters"));
  }
  if (!IsPrintableToken(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the key must be one token of printable ASCII characters"));
  }
  return key;
}

}  // namespace

absl::StatusOr<std::string> ReadApiKeyFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path, "api key file");
  if (!text.ok()) return text.status();
  return CheckKey(*text, absl::StrCat("api key file ", path));
}

absl::StatusOr<std::string> ResolveApiKey(const std::string& file, const char* env_key,
                                          const char* env_file) {
  if (!file.empty()) return ReadApiKeyFile(file);
  if (const char* key = std::getenv(env_key); key != nullptr && *key != '\0') {
    return CheckKey(key, env_key);
  }
  if (const char* path = std::getenv(env_file); path != nullptr && *path != '\0') {
    return ReadApiKeyFile(path);
  }
  return std::string();
}

}  // namespace sparsevid
