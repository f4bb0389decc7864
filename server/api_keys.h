// The front's API keys (auth.api_keys_file): who may call it and as whom.
//
//   keys:
//     - name: alice            # [A-Za-z0-9._-], 1..64: recorded as the owner of its jobs
//       key: "..."             # the secret: 16..256 printable ASCII characters, no spaces
//       role: client           # client: its own jobs | admin: every job | worker: WorkerLink only
//       max_active_jobs: 4     # optional (client): queued + running jobs at once; 0 = no limit
//     - name: bob
//       key_sha256: "9f86..."  # instead of key: SHA-256 of the key, 64 hex digits, so the
//       role: client           # file (and its Secret) need not hold the key itself
//
// The file is meant to be mounted from a Kubernetes Secret. It is re-read when
// it changes (checked at most once per reload interval), so keys rotate
// without a restart; a change that does not parse keeps the previous keys and
// is logged, so a bad edit never locks every client out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sparsevid::front {

enum class ApiKeyRole { kClient, kAdmin, kWorker };
const char* ApiKeyRoleName(ApiKeyRole role);

struct ApiKey {
  std::string name;
  std::string sha256;  // 32 bytes: SHA-256 of the key (computed when the file gives `key`)
  ApiKeyRole role = ApiKeyRole::kClient;
  int max_active_jobs = 0;
};

// SHA-256 of `text`, 32 raw bytes.
std::string Sha256(std::string_view text);

// Parses and validates a key file's text; errors name `origin` and the entry.
absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(const std::string& yaml_text,
                                                 const std::string& origin);

// Compares without an early exit, so the time taken says nothing about how
// much of a guess was right (Lookup compares fixed-size digests).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

class ApiKeyStore {
 public:
  using Clock = std::function<absl::Time()>;
  // Called after each reload attempt of a changed file (metrics).
  using ReloadObserver = std::function<void(bool ok)>;

  // Reads `path` now: an unreadable or invalid file is an error (the front
  // refuses to start rather than run open).
  static absl::StatusOr<std::unique_ptr<ApiKeyStore>> Open(
      std::string path, absl::Duration reload_interval = absl::Seconds(2),
      Clock clock = [] { return absl::Now(); });

  // The entry whose key hashes to the same SHA-256 as `presented` (every
  // entry is compared), or UNAUTHENTICATED. Re-reads the file first if it
  // changed.
  absl::StatusOr<ApiKey> Lookup(std::string_view presented);

  // Whether `key` (name and digest) is still in the file (re-read first if it
  // changed): streams opened with a key that is gone get ended.
  bool IsCurrent(const ApiKey& key);

  int size() const;
  void set_reload_observer(ReloadObserver observer);

 private:
  struct FileStamp {
    int64_t mtime_ns = 0;
    int64_t size = -1;
    uint64_t inode = 0;
    bool operator==(const FileStamp& o) const {
      return mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
    }
  };
  ApiKeyStore(std::string path, absl::Duration reload_interval, Clock clock);
  static absl::StatusOr<FileStamp> Stamp(const std::string& path);
  absl::Status Load(const FileStamp& stamp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeReload() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  const absl::Duration reload_interval_;
  const Clock clock_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<ApiKey>> keys_ ABSL_GUARDED_BY(mu_);
  FileStamp loaded_ ABSL_GUARDED_BY(mu_);
  FileStamp failed_ ABSL_GUARDED_BY(mu_);  // last stamp that did not load (logged once)
  bool unreadable_logged_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
  ReloadObserver on_reload_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sparsevid::front
