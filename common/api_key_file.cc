#include "common/api_key_file.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sparsevid {

std::string BearerValue(const std::string& key) { return absl::StrCat("Bearer ", key); }

absl::StatusOr<std::string> ReadApiKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("api key file ", path, ": cannot read (", std::strerror(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string key(absl::StripAsciiWhitespace(text.str()));
  if (key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("api key file ", path, ": is empty"));
  }
  for (char c : key) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat(
          "api key file ", path, ": the key must be one token of printable ASCII characters"));
    }
  }
  return key;
}

absl::StatusOr<std::string> ResolveApiKey(const std::string& file, const char* env_key,
                                          const char* env_file) {
  if (!file.empty()) return ReadApiKeyFile(file);
  if (const char* key = std::getenv(env_key); key != nullptr && *key != '\0') {
    std::string k(absl::StripAsciiWhitespace(key));
    if (k.empty()) return absl::InvalidArgumentError(absl::StrCat(env_key, ": is blank"));
    return k;
  }
  if (const char* path = std::getenv(env_file); path != nullptr && *path != '\0') {
    return ReadApiKeyFile(path);
  }
  return std::string();
}

}  // namespace sparsevid
