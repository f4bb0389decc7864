#include "server/result_store.h"

#include "absl/strings/str_cat.h"

namespace sparsevid::front {

ResultStore::ResultStore(int64_t cap_bytes, absl::Duration ttl)
    : cap_bytes_(cap_bytes), ttl_(ttl) {}

bool ResultStore::EvictOldestCompleted(const std::string& keep) {
  auto oldest = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (!it->second.complete || it->first == keep) continue;
    if (oldest == entries_.end() ||
        it->second.completed_at < oldest->second.completed_at) {
      oldest = it;
    }
  }
  if (oldest == entries_.end()) return false;
  total_bytes_ -= static_cast<int64_t>(oldest->second.bytes.size());
  evicted_.push_back(oldest->first);
  entries_.erase(oldest);
  return true;
}

absl::Status ResultStore::Append(const std::string& job_id, int64_t offset,
                                 const std::string& data) {
  Entry& e = entries_[job_id];
  if (e.complete) {
    return absl::FailedPreconditionError(
        absl::StrCat("output of job ", job_id, " is already complete"));
  }
  if (offset != static_cast<int64_t>(e.bytes.size())) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk offset ", offset, " but ", e.bytes.size(),
                     " bytes received so far"));
  }
  const int64_t need = static_cast<int64_t>(data.size());
  while (total_bytes_ + need > cap_bytes_) {
    if (!EvictOldestCompleted(job_id)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "result store full: ", total_bytes_, " + ", need, " bytes exceed the cap of ",
          cap_bytes_, " bytes"));
    }
  }
  e.bytes.append(data);
  total_bytes_ += need;
  return absl::OkStatus();
}

void ResultStore::Complete(const std::string& job_id, absl::Time now) {
  Entry& e = entries_[job_id];
  e.complete = true;
  e.completed_at = now;
}

void ResultStore::Erase(const std::string& job_id) {
  auto it = entries_.find(job_id);
  if (it == entries_.end()) return;
  total_bytes_ -= static_cast<int64_t>(it->second.bytes.size());
  entries_.erase(it);
}

bool ResultStore::Contains(const std::string& job_id) const {
  return entries_.count(job_id) != 0;
}

bool ResultStore::IsComplete(const std::string& job_id) const {
  auto it = entries_.find(job_id);
  return it != entries_.end() && it->second.complete;
}

int64_t ResultStore::Size(const std::string& job_id) const {
  auto it = entries_.find(job_id);
  return it == entries_.end() ? 0 : static_cast<int64_t>(it->second.bytes.size());
}

absl::StatusOr<std::string> ResultStore::Read(const std::string& job_id,
                                              int64_t offset,
                                              int64_t max_bytes) const {
  auto it = entries_.find(job_id);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat("result of job ", job_id, " is not stored (expired or evicted)"));
  }
  const std::string& b = it->second.bytes;
  if (offset < 0 || offset > static_cast<int64_t>(b.size())) {
    return absl::OutOfRangeError(absl::StrCat(
        "offset: ", offset, " is outside the result of ", b.size(), " bytes"));
  }
  return b.substr(static_cast<size_t>(offset), static_cast<size_t>(max_bytes));
}

std::vector<std::string> ResultStore::Sweep(absl::Time now) {
  std::vector<std::string> removed;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.complete && now - it->second.completed_at >= ttl_) {
      removed.push_back(it->first);
      total_bytes_ -= static_cast<int64_t>(it->second.bytes.size());
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

std::vector<std::string> ResultStore::TakeEvicted() {
  std::vector<std::string> out;
  out.swap(evicted_);
  return out;
}

}  // namespace sparsevid::front
