// Helpers to follow a job's event stream in integration tests.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/video_client.h"

namespace sparsevid::integration {

struct FollowedJob {
  absl::Status rpc;                 // how the stream ended
  std::vector<v1::JobEvent> events;
  std::string job_id;
  std::string video;                // concatenated chunk data
  const v1::JobEvent* final_event() const;
  int Count(v1::JobEvent::EventCase c) const;
};

// Generate with a deadline, collecting everything until the stream ends.
FollowedJob GenerateAll(client::VideoClient& client, const v1::GenerateRequest& request,
                        std::chrono::milliseconds timeout);
// Watch from after_seq until a final event (or the deadline).
FollowedJob WatchAll(client::VideoClient& client, const std::string& job_id, int64_t after_seq,
                     bool include_chunks, std::chrono::milliseconds timeout);
// Polls GetJob until the job is in `state` or the timeout passes.
absl::StatusOr<v1::Job> WaitForState(client::VideoClient& client, const std::string& job_id,
                                     v1::JobState state, std::chrono::milliseconds timeout);

}  // namespace sparsevid::integration
