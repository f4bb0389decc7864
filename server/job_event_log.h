// Per-job event history with monotonic sequence numbers (1, 2, 3, ...), so
// Watch(after_seq) can replay what a client missed and then follow live.
// Bounded: beyond `capacity` events the oldest are dropped (a replay then
// starts at the oldest kept one). Chunk events are stored without their
// bytes (offset and size only); the bytes live once, in the job's output,
// and are copied in when an event is read. Not thread-safe (engine mutex).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "sparsevid/v1/video_service.pb.h"

namespace sparsevid::front {

class JobEventLog {
 public:
  explicit JobEventLog(int capacity);

  struct Entry {
    sparsevid::v1::JobEvent event;  // chunk.data left empty
    int64_t chunk_size = 0;         // bytes of a chunk event
  };

  // Stores `event` with the next sequence number and returns it.
  int64_t Append(sparsevid::v1::JobEvent event, int64_t chunk_size = 0);
  // First retained entry with seq > after_seq (skipping chunk events unless
  // include_chunks), or nullptr.
  const Entry* NextAfter(int64_t after_seq, bool include_chunks) const;
  // Drops every chunk event: used when a job is requeued and its partial
  // output from the failed attempt becomes void.
  void DropChunkEvents();

  int64_t last_seq() const { return next_seq_ - 1; }
  int64_t first_retained_seq() const;
  size_t size() const { return entries_.size(); }

 private:
  int capacity_;
  int64_t next_seq_ = 1;
  std::deque<Entry> entries_;
};

}  // namespace sparsevid::front
