// Bounded priority queue of job ids: higher priority first, FIFO within a
// priority (by admission sequence, so a requeued job keeps its place ahead
// of later arrivals). Not thread-safe; the JobEngine's mutex guards it.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"

namespace sparsevid::front {

class JobQueue {
 public:
  explicit JobQueue(int capacity);

  // RESOURCE_EXHAUSTED when full (unless `ignore_capacity`, used to put an
  // already admitted job back after its worker died). ALREADY_EXISTS if the
  // id is queued.
  absl::Status Push(const std::string& job_id, int priority, uint64_t admit_seq,
                    bool ignore_capacity = false);
  // Removes and returns the next job id; empty string when empty.
  std::string Pop();
  // Pops the first job (in queue order) for which `eligible` is true.
  template <typename Pred>
  std::string PopFirst(Pred eligible);
  bool Remove(const std::string& job_id);
  // 1-based position, 0 if not queued. O(n).
  int Position(const std::string& job_id) const;
  // Job ids in queue order.
  std::vector<std::string> Ordered() const;

  int size() const { return static_cast<int>(order_.size()); }
  int capacity() const { return capacity_; }
  bool full() const { return size() >= capacity_; }

 private:
  struct Key {
    int priority;
    uint64_t admit_seq;
    std::string job_id;
    bool operator<(const Key& o) const {
      if (priority != o.priority) return priority > o.priority;  // high first
      return admit_seq < o.admit_seq;
    }
  };
  int capacity_;
  std::set<Key> order_;
  std::unordered_map<std::string, Key> index_;
};

template <typename Pred>
std::string JobQueue::PopFirst(Pred eligible) {
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    if (eligible(it->job_id)) {
      std::string id = it->job_id;
      index_.erase(id);
      order_.erase(it);
      return id;
    }
  }
  return "";
}

}  // namespace sparsevid::front
