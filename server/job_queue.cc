#include "server/job_queue.h"

#include "absl/strings/str_cat.h"

namespace sparsevid::front {

JobQueue::JobQueue(int capacity) : capacity_(capacity) {}

absl::Status JobQueue::Push(const std::string& job_id, int priority,
                            uint64_t admit_seq, bool ignore_capacity) {
  if (index_.count(job_id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("job ", job_id, " is already queued"));
  }
  if (!ignore_capacity && full()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("queue is full (", capacity_, " jobs)"));
  }
  Key key{priority, admit_seq, job_id};
  order_.insert(key);
  index_.emplace(job_id, std::move(key));
  return absl::OkStatus();
}

std::string JobQueue::Pop() {
  return PopFirst([](const std::string&) { return true; });
}

bool JobQueue::Remove(const std::string& job_id) {
  auto it = index_.find(job_id);
  if (it == index_.end()) return false;
  order_.erase(it->second);
  index_.erase(it);
  return true;
}

int JobQueue::Position(const std::string& job_id) const {
  auto it = index_.find(job_id);
  if (it == index_.end()) return 0;
  int pos = 1;
  for (const Key& k : order_) {
    if (k.job_id == job_id) return pos;
    ++pos;
  }
  return 0;
}

std::vector<std::string> JobQueue::Ordered() const {
  std::vector<std::string> ids;
  ids.reserve(order_.size());
  for (const Key& k : order_) ids.push_back(k.job_id);
  return ids;
}

}  // namespace sparsevid::front
