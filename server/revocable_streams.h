// Open streams and the API key each was authorised with, so that a stream
// whose key has left the keys file ends instead of running on: the worker
// links (WorkerLinkServiceImpl) and VideoService's long-lived streams
// (Generate, Watch, FetchResult) each keep one. main calls EndRevoked()
// every auth.reload_seconds; it checks each distinct key once against the
// loaded keys (ApiKeyStore re-reads the file only when it changed, at most
// once per reload interval), so an open stream costs nothing per event.
//
// A stream stays authorised while an entry with its key's digest, name and
// role is in the file: a key rotated to a new digest ends the streams of
// the old one, even where the name stays; a changed max_active_jobs does
// not end them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/api_keys.h"
#include "server/request_auth.h"
#include "server/subscription.h"

namespace sparsevid::front {

// The status a stream ends with when its key is revoked: names the key's
// name, never the key.
absl::Status KeyRevokedError(const std::string& key_name);

class RevocableStreams {
 public:
  // `auth` null or off: nothing is ever revoked.
  explicit RevocableStreams(const RequestAuth* auth) : auth_(auth) {}

  // Registers a stream opened with `key`. `on_revoked` runs at most once,
  // on EndRevoked's thread, once the key is gone from the file. It never
  // runs after Remove(id) has returned (Remove waits for a running one), so
  // it may use the stream; it must not call Remove itself.
  uint64_t Add(const ApiKey& key, std::function<void()> on_revoked);
  void Remove(uint64_t id);

  // Runs on_revoked of every stream whose key has left the keys file.
  // Returns how many streams that was.
  int EndRevoked();

  int size() const;

 private:
  struct Entry {
    ApiKey key;
    std::shared_ptr<Subscription> on_revoked;
    bool revoked = false;
  };

  const RequestAuth* const auth_;
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sparsevid::front
