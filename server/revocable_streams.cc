#include "server/revocable_streams.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace sparsevid::front {
namespace {

// One entry per distinct key: name, role and digest.
std::string KeyId(const ApiKey& key) {
  return absl::StrCat(key.name, "/", ApiKeyRoleName(key.role), "/", key.sha256);
}

}  // namespace

absl::Status KeyRevokedError(const std::string& key_name) {
  return absl::UnauthenticatedError(
      absl::StrCat("API key '", key_name, "' was revoked (removed from the front's keys)"));
}

uint64_t RevocableStreams::Add(const ApiKey& key, std::function<void()> on_revoked) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  Entry& e = entries_[id];
  e.key = key;
  e.on_revoked = std::make_shared<Subscription>(std::move(on_revoked));
  return id;
}

void RevocableStreams::Remove(uint64_t id) {
  std::shared_ptr<Subscription> sub;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    sub = std::move(it->second.on_revoked);
    entries_.erase(it);
  }
  sub->Cancel();  // waits for a callback running on EndRevoked's thread
}

int RevocableStreams::EndRevoked() {
  if (auth_ == nullptr || !auth_->enabled()) return 0;
  // The keys in use, checked without our lock held: a check may re-read
  // the file, and streams keep opening and closing meanwhile.
  std::map<std::string, ApiKey> in_use;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, e] : entries_) {
      if (!e.revoked) in_use.emplace(KeyId(e.key), e.key);
    }
  }
  std::map<std::string, bool> gone;
  for (const auto& [key_id, key] : in_use) gone[key_id] = !auth_->StillValid(key);
  std::vector<std::shared_ptr<Subscription>> to_end;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, e] : entries_) {
      if (e.revoked) continue;
      auto it = gone.find(KeyId(e.key));
      if (it == gone.end() || !it->second) continue;  // opened since, or still listed
      e.revoked = true;
      to_end.push_back(e.on_revoked);
    }
  }
  for (const auto& sub : to_end) sub->Notify();
  return static_cast<int>(to_end.size());
}

int RevocableStreams::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(entries_.size());
}

}  // namespace sparsevid::front
