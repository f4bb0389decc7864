// The client side of API-key auth, shared by the CLI / client library and the
// worker: where the key comes from and how it travels (the gRPC metadata
// `authorization: Bearer <key>`, checked by the front's server/request_auth.h).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sparsevid {

inline constexpr char kAuthorizationMetadata[] = "authorization";

// "Bearer <key>".
std::string BearerValue(const std::string& key);

// One token of printable ASCII (no spaces), what an `authorization` value
// may hold; the front's key file requires the same of its keys.
bool IsPrintableToken(absl::string_view text);

// The key in `path` (e.g. a mounted Secret): the file's text without
// surrounding whitespace. Errors name the file, never the key.
absl::StatusOr<std::string> ReadApiKeyFile(const std::string& path);

// The key to send: from `file` when set, else from the environment variable
// `env_key` (the key itself), else from the file named by `env_file`; ""
// when none is set (the front then answers UNAUTHENTICATED if it has auth on).
absl::StatusOr<std::string> ResolveApiKey(const std::string& file, const char* env_key,
                                          const char* env_file);

}  // namespace sparsevid
