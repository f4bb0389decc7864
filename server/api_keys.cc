#include "server/api_keys.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/api_key_file.h"
#include "common/logging.h"
#include "common/text_file.h"
#include "yaml-cpp/yaml.h"

namespace sparsevid::front {
namespace {

constexpr int kMinKeyLength = 16;
constexpr int kMaxKeyLength = 256;
constexpr int kMaxNameLength = 64;

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// 64 hex digits -> 32 bytes; false if malformed.
bool HexToBytes(const std::string& hex, std::string* out) {
  if (hex.size() != 64) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (size_t j = i; j < i + 2; ++j) {
      const char c = hex[j];
      const int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out->push_back(static_cast<char>(v));
  }
  return true;
}

}  // namespace

std::string Sha256(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

const char* ApiKeyRoleName(ApiKeyRole role) {
  switch (role) {
    case ApiKeyRole::kClient: return "client";
    case ApiKeyRole::kAdmin: return "admin";
    case ApiKeyRole::kWorker: return "worker";
  }
  return "client";
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walks the presented value's full length whatever the stored one is.
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char y = b.empty() ? 0 : static_cast<unsigned char>(b[i % b.size()]);
    diff |= static_cast<unsigned char>(a[i]) ^ y;
  }
  return diff == 0;
}

static absl::StatusOr<std::vector<ApiKey>> ParseApiKeysOrThrow(const std::string& yaml_text,
                                                               const std::string& origin);

absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(const std::string& yaml_text,
                                                 const std::string& origin) {
  // yaml-cpp throws on conversions of odd nodes (a list as a mapping key, ...):
  // whatever the file holds, the answer is an error naming it, never a throw.
  try {
    return ParseApiKeysOrThrow(yaml_text, origin);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("api keys file ", origin, ": unexpected structure (", e.what(), ")"));
  }
}

static absl::StatusOr<std::vector<ApiKey>> ParseApiKeysOrThrow(const std::string& yaml_text,
                                                               const std::string& origin) {
  auto fail = [&](const std::string& where, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("api keys file ", origin, ": ", where,
                                                   where.empty() ? "" : ": ", what));
  };
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return fail("", absl::StrCat("not valid YAML (", e.what(), ")"));
  }
  if (!root.IsMap() || !root["keys"]) {
    return fail("", "expected a mapping with a 'keys' list");
  }
  for (const auto& top : root) {
    if (!top.first.IsScalar()) return fail("", "top-level keys must be plain names");
    if (top.first.as<std::string>() != "keys") {
      return fail(top.first.as<std::string>(), "unknown top-level key (only 'keys')");
    }
  }
  const YAML::Node list = root["keys"];
  if (!list.IsSequence()) return fail("keys", "must be a list");
  if (list.size() == 0) return fail("keys", "is empty: no one could call the front");
  std::vector<ApiKey> keys;
  std::set<std::string> names, secrets;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node entry = list[i];
    const std::string where = absl::StrCat("keys[", i, "]");
    if (!entry.IsMap()) return fail(where, "must be a mapping (name, key, role)");
    ApiKey k;
    std::string key, key_hex;
    bool has_role = false;
    try {
      for (const auto& field : entry) {
        const std::string f = field.first.as<std::string>();
        if (f == "name") {
          k.name = field.second.as<std::string>();
        } else if (f == "key") {
          key = field.second.as<std::string>();
        } else if (f == "key_sha256") {
          key_hex = field.second.as<std::string>();
        } else if (f == "role") {
          const std::string r = field.second.as<std::string>();
          has_role = true;
          if (r == "client") {
            k.role = ApiKeyRole::kClient;
          } else if (r == "admin") {
            k.role = ApiKeyRole::kAdmin;
          } else if (r == "worker") {
            k.role = ApiKeyRole::kWorker;
          } else {
            return fail(where + ".role", absl::StrCat("must be client, admin or worker, got '",
                                                      r, "'"));
          }
        } else if (f == "max_active_jobs") {
          k.max_active_jobs = field.second.as<int>();
          if (k.max_active_jobs < 0 || k.max_active_jobs > 1000000) {
            return fail(where + ".max_active_jobs",
                        absl::StrCat("must be in [0, 1000000], got ", k.max_active_jobs));
          }
        } else {
          return fail(where + "." + f,
                      "unknown field (name, key, key_sha256, role, max_active_jobs)");
        }
      }
    } catch (const YAML::Exception& e) {
      return fail(where, absl::StrCat("bad value (", e.what(), ")"));
    }
    if (!ValidName(k.name)) {
      return fail(where + ".name",
                  absl::StrCat("must be 1..", kMaxNameLength,
                               " characters of [A-Za-z0-9._-], got '", k.name, "'"));
    }
    if (key.empty() == key_hex.empty()) {
      return fail(where, "needs exactly one of key and key_sha256");
    }
    if (!key_hex.empty()) {
      if (!HexToBytes(key_hex, &k.sha256)) {
        return fail(where + ".key_sha256", "must be 64 hex digits (sha256sum of the key)");
      }
    } else if (static_cast<int>(key.size()) < kMinKeyLength ||
               static_cast<int>(key.size()) > kMaxKeyLength || !IsPrintableToken(key)) {
      // Never echo the secret.
      return fail(where + ".key",
                  absl::StrCat("must be ", kMinKeyLength, "..", kMaxKeyLength,
                               " printable ASCII characters without spaces (key of '", k.name,
                               "' has ", key.size(), ")"));
    } else {
      k.sha256 = Sha256(key);
    }
    if (!has_role) return fail(where + ".role", "missing (client, admin or worker)");
    if (!names.insert(k.name).second) {
      return fail(where + ".name", absl::StrCat("'", k.name, "' appears twice"));
    }
    if (!secrets.insert(k.sha256).second) {
      return fail(where, absl::StrCat("the key of '", k.name, "' is also another entry's key"));
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

// ------------------------------------------------------------------ store

ApiKeyStore::ApiKeyStore(std::string path, absl::Duration reload_interval, Clock clock)
    : path_(std::move(path)), reload_interval_(reload_interval), clock_(std::move(clock)) {}

absl::StatusOr<ApiKeyStore::FileStamp> ApiKeyStore::Stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("api keys file ", path, ": cannot stat (", std::strerror(errno), ")"));
  }
  FileStamp s;
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  s.size = static_cast<int64_t>(st.st_size);
  s.inode = static_cast<uint64_t>(st.st_ino);
  return s;
}

absl::Status ApiKeyStore::Load(const FileStamp& stamp) {
  absl::StatusOr<std::string> text = ReadTextFile(path_, "api keys file");
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<ApiKey>> keys = ParseApiKeys(*text, path_);
  if (!keys.ok()) return keys.status();
  keys_ = std::make_shared<const std::vector<ApiKey>>(std::move(*keys));
  loaded_ = stamp;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ApiKeyStore>> ApiKeyStore::Open(std::string path,
                                                               absl::Duration reload_interval,
                                                               Clock clock) {
  std::unique_ptr<ApiKeyStore> store(
      new ApiKeyStore(std::move(path), reload_interval, std::move(clock)));
  absl::StatusOr<FileStamp> stamp = Stamp(store->path_);
  if (!stamp.ok()) return stamp.status();
  absl::MutexLock lock(&store->mu_);
  if (absl::Status s = store->Load(*stamp); !s.ok()) return s;
  store->next_check_ = store->clock_() + store->reload_interval_;
  return store;
}

void ApiKeyStore::MaybeReload() {
  ReloadObserver notify;
  bool ok = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_();
    if (now < next_check_) return;
    next_check_ = now + reload_interval_;
    absl::StatusOr<FileStamp> stamp = Stamp(path_);
    if (!stamp.ok()) {
      // A Secret being swapped can vanish for a moment: keep serving.
      if (unreadable_logged_) return;
      unreadable_logged_ = true;
      logging::Error("api keys file unreadable; keeping the loaded keys",
                     {{"error", std::string(stamp.status().message())}});
      notify = on_reload_;
    } else {
      unreadable_logged_ = false;
      if (*stamp == loaded_ || *stamp == failed_) return;
      absl::Status s = Load(*stamp);
      ok = s.ok();
      if (ok) {
        failed_ = FileStamp{};
        logging::Info("api keys reloaded",
                      {{"file", path_}, {"keys", static_cast<int64_t>(keys_->size())}});
      } else {
        failed_ = *stamp;
        logging::Error("api keys file changed but is invalid; keeping the loaded keys",
                       {{"error", std::string(s.message())}});
      }
      notify = on_reload_;
    }
  }
  if (notify) notify(ok);
}

absl::StatusOr<ApiKey> ApiKeyStore::Lookup(std::string_view presented) {
  MaybeReload();
  std::shared_ptr<const std::vector<ApiKey>> keys;
  {
    absl::MutexLock lock(&mu_);
    keys = keys_;
  }
  const std::string digest = Sha256(presented);
  const ApiKey* match = nullptr;
  for (const ApiKey& k : *keys) {  // no early exit: every entry is compared
    if (ConstantTimeEquals(digest, k.sha256)) match = &k;
  }
  if (match == nullptr) return absl::UnauthenticatedError("invalid API key");
  return *match;
}

bool ApiKeyStore::IsCurrent(const ApiKey& key) {
  MaybeReload();
  absl::MutexLock lock(&mu_);
  for (const ApiKey& k : *keys_) {
    if (k.name == key.name && k.sha256 == key.sha256 && k.role == key.role) return true;
  }
  return false;
}

int ApiKeyStore::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(keys_->size());
}

void ApiKeyStore::set_reload_observer(ReloadObserver observer) {
  absl::MutexLock lock(&mu_);
  on_reload_ = std::move(observer);
}

}  // namespace sparsevid::front
