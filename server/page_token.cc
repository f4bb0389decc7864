#include "server/page_token.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "common/logging.h"
#include "server/api_keys.h"

namespace sparsevid::front {
namespace {

constexpr size_t kBlock = 16;  // AES block = key size (AES-128)
constexpr size_t kTag = 8;     // bytes of the owner's tag in a block

// One AES-128 block: ECB is sound here because a token is exactly one block.
bool AesBlock(const std::string& key, const unsigned char* in, unsigned char* out,
              bool encrypt) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  const bool ok =
      ctx != nullptr &&
      EVP_CipherInit_ex(ctx, EVP_aes_128_ecb(), nullptr,
                        reinterpret_cast<const unsigned char*>(key.data()), nullptr,
                        encrypt ? 1 : 0) == 1 &&
      EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
      EVP_CipherUpdate(ctx, out, &len, in, static_cast<int>(kBlock)) == 1 &&
      len == static_cast<int>(kBlock);
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

// Binds a token to its caller: another name's tokens do not decode.
std::string OwnerTag(std::string_view owner) { return Sha256(owner).substr(0, kTag); }

absl::Status NotOurs() {
  return absl::InvalidArgumentError(
      "page_token: not a token ListJobs gave this caller (a token is valid only for the API "
      "key name it was given to, and only until the front restarts)");
}

}  // namespace

PageTokens::PageTokens() : key_(kBlock, '\0') {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), kBlock) != 1) {
    // A guessable key would make tokens readable again; there is no safe fallback.
    logging::Error("no random bytes for the ListJobs page-token key");
    std::abort();
  }
}

PageTokens::PageTokens(std::string key) : key_(std::move(key)) {
  if (key_.size() != kBlock) std::abort();
}

std::string PageTokens::Encode(uint64_t position, std::string_view owner) const {
  unsigned char plain[kBlock], sealed[kBlock];
  for (size_t i = 0; i < 8; ++i) plain[i] = static_cast<unsigned char>(position >> (56 - 8 * i));
  const std::string tag = OwnerTag(owner);
  for (size_t i = 0; i < kTag; ++i) plain[8 + i] = static_cast<unsigned char>(tag[i]);
  if (!AesBlock(key_, plain, sealed, /*encrypt=*/true)) std::abort();  // fixed sizes: cannot fail
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(sealed), kBlock));
}

absl::StatusOr<uint64_t> PageTokens::Decode(std::string_view token,
                                            std::string_view owner) const {
  std::string sealed;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &sealed) ||
      sealed.size() != kBlock) {
    return absl::InvalidArgumentError("page_token: not a token returned by ListJobs");
  }
  unsigned char plain[kBlock];
  if (!AesBlock(key_, reinterpret_cast<const unsigned char*>(sealed.data()), plain,
                /*encrypt=*/false)) {
    return NotOurs();
  }
  if (!ConstantTimeEquals(std::string_view(reinterpret_cast<const char*>(plain) + 8, kTag),
                          OwnerTag(owner))) {
    return NotOurs();
  }
  uint64_t position = 0;
  for (size_t i = 0; i < 8; ++i) position = (position << 8) | plain[i];
  return position;
}

}  // namespace sparsevid::front
