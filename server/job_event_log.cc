#include "server/job_event_log.h"

#include <algorithm>

namespace sparsevid::front {

JobEventLog::JobEventLog(int capacity) : capacity_(std::max(2, capacity)) {}

int64_t JobEventLog::Append(sparsevid::v1::JobEvent event, int64_t chunk_size) {
  const int64_t seq = next_seq_++;
  event.set_seq(seq);
  entries_.push_back(Entry{std::move(event), chunk_size});
  while (static_cast<int>(entries_.size()) > capacity_) entries_.pop_front();
  return seq;
}

const JobEventLog::Entry* JobEventLog::NextAfter(int64_t after_seq,
                                                 bool include_chunks) const {
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), after_seq,
      [](int64_t seq, const Entry& e) { return seq < e.event.seq(); });
  for (; it != entries_.end(); ++it) {
    if (include_chunks || !it->event.has_chunk()) return &*it;
  }
  return nullptr;
}

void JobEventLog::DropChunkEvents() {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [](const Entry& e) { return e.event.has_chunk(); }),
                 entries_.end());
}

int64_t JobEventLog::first_retained_seq() const {
  return entries_.empty() ? next_seq_ : entries_.front().event.seq();
}

}  // namespace sparsevid::front
