// ListJobs page tokens. A token says where the next page starts: the
// admission number of the next job to list. Admission numbers count every
// owner's jobs, so in the clear they would tell a client how many jobs
// others submitted between its own. A token is therefore that number and a
// tag of the caller's name, encrypted as one AES-128 block under a key drawn
// at random when the front starts: 16 opaque bytes (22 characters of
// URL-safe base64) that decode only for the caller they were given to and
// only until the front restarts. Anything else (malformed, another
// caller's, from before a restart, forged) is INVALID_ARGUMENT naming
// page_token; decrypting a block that was not made here gives random
// bytes, whose 64-bit tag matches with probability 2^-64.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sparsevid::front {

class PageTokens {
 public:
  PageTokens();                          // a fresh random key
  explicit PageTokens(std::string key);  // 16 bytes (tests)

  std::string Encode(uint64_t position, std::string_view owner) const;
  // The position a token of Encode(position, owner) names.
  absl::StatusOr<uint64_t> Decode(std::string_view token, std::string_view owner) const;

 private:
  std::string key_;
};

}  // namespace sparsevid::front
