#include "tests/integration/job_events.h"

#include <thread>

#include "absl/strings/str_cat.h"

namespace sparsevid::integration {
namespace {

bool IsFinal(const v1::JobEvent& e) {
  return e.has_completed() || e.has_failed() || e.has_cancelled();
}

}  // namespace

const v1::JobEvent* FollowedJob::final_event() const {
  for (const auto& e : events) {
    if (IsFinal(e)) return &e;
  }
  return nullptr;
}

int FollowedJob::Count(v1::JobEvent::EventCase c) const {
  int n = 0;
  for (const auto& e : events) n += e.event_case() == c ? 1 : 0;
  return n;
}

FollowedJob GenerateAll(client::VideoClient& client, const v1::GenerateRequest& request,
                        std::chrono::milliseconds timeout) {
  FollowedJob job;
  job.rpc = client.Generate(
      request,
      [&](const v1::JobEvent& e) {
        if (job.job_id.empty()) job.job_id = e.job_id();
        if (e.has_chunk()) job.video += e.chunk().data();
        job.events.push_back(e);
        return true;
      },
      timeout);
  return job;
}

FollowedJob WatchAll(client::VideoClient& client, const std::string& job_id, int64_t after_seq,
                     bool include_chunks, std::chrono::milliseconds timeout) {
  FollowedJob job;
  job.job_id = job_id;
  v1::WatchRequest req;
  req.set_job_id(job_id);
  req.set_after_seq(after_seq);
  req.set_include_chunks(include_chunks);
  job.rpc = client.Watch(
      req,
      [&](const v1::JobEvent& e) {
        if (e.has_chunk()) job.video += e.chunk().data();
        job.events.push_back(e);
        return !IsFinal(e);
      },
      timeout);
  return job;
}

absl::StatusOr<v1::Job> WaitForState(client::VideoClient& client, const std::string& job_id,
                                     v1::JobState state, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::StatusOr<v1::Job> job;
  while (true) {
    job = client.GetJob(job_id);
    if (job.ok() && job->state() == state) return job;
    if (std::chrono::steady_clock::now() >= deadline) {
      if (!job.ok()) return job.status();
      return absl::DeadlineExceededError(absl::StrCat("job ", job_id, " is in state ",
                                                      job->state(), ", wanted ", state));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace sparsevid::integration
