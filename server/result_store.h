// MP4 bytes per job. Outputs grow while a job runs (chunks arrive in order),
// become immutable when it completes, and are kept for `ttl` after that.
// The total size is capped: to admit new bytes the oldest completed results
// are evicted first; if in-progress outputs alone exceed the cap the append
// fails with RESOURCE_EXHAUSTED (the engine then fails that job).
// Not thread-safe (engine mutex).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sparsevid::front {

class ResultStore {
 public:
  ResultStore(int64_t cap_bytes, absl::Duration ttl);

  // Appends `data` at `offset`, which must equal the bytes stored so far
  // (FAILED_PRECONDITION otherwise). Creates the entry on first use.
  absl::Status Append(const std::string& job_id, int64_t offset,
                      const std::string& data);
  // Marks the output complete; its TTL starts at `now`.
  void Complete(const std::string& job_id, absl::Time now);
  void Erase(const std::string& job_id);

  bool Contains(const std::string& job_id) const;
  bool IsComplete(const std::string& job_id) const;
  int64_t Size(const std::string& job_id) const;  // 0 if absent
  // Up to max_bytes from offset. NOT_FOUND if absent; OUT_OF_RANGE if
  // offset is negative or past the end.
  absl::StatusOr<std::string> Read(const std::string& job_id, int64_t offset,
                                   int64_t max_bytes) const;
  // Drops completed results older than the TTL; returns their job ids.
  std::vector<std::string> Sweep(absl::Time now);
  // The job ids whose results Append evicted for room since the last call.
  std::vector<std::string> TakeEvicted();

  int64_t total_bytes() const { return total_bytes_; }
  int64_t cap_bytes() const { return cap_bytes_; }

 private:
  struct Entry {
    std::string bytes;
    bool complete = false;
    absl::Time completed_at;
  };
  bool EvictOldestCompleted(const std::string& keep);

  int64_t cap_bytes_;
  absl::Duration ttl_;
  int64_t total_bytes_ = 0;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> evicted_;
};

}  // namespace sparsevid::front
