// Cancellation through real processes: explicit CancelJob on a running job
// (latency measured), client disconnect, and deadlines while running.
#include <cstdio>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/job_events.h"
#include "tests/integration/running_service_test.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

class CancelTest : public RunningServiceTest {
 protected:
  // A job long enough to be cancelled mid-denoise.
  static v1::GenerateRequest LongRequest() { return ServiceHarness::SlowRequest(200); }
};

TEST_F(CancelTest, CancelRunningJobStopsAtNextStepAndFreesTheWorker) {
  client::VideoClient c = h_.Client();
  absl::StatusOr<v1::Job> job = c.Submit(LongRequest());
  ASSERT_TRUE(job.ok()) << job.status();
  // Follow until denoising is under way, then cancel from another call.
  std::chrono::steady_clock::time_point cancel_sent, cancelled_seen;
  bool sent = false;
  std::thread canceller;
  FollowedJob followed;
  v1::WatchRequest wr;
  wr.set_job_id(job->job_id());
  followed.rpc = c.Watch(
      wr,
      [&](const v1::JobEvent& e) {
        followed.events.push_back(e);
        if (!sent && e.has_progress() && e.progress().stage() == "denoise" &&
            e.progress().step() >= 2) {
          sent = true;
          cancel_sent = std::chrono::steady_clock::now();
          canceller = std::thread([&c, id = job->job_id()] { (void)c.CancelJob(id, "test cancel"); });
        }
        if (e.has_cancelled()) cancelled_seen = std::chrono::steady_clock::now();
        return !(e.has_completed() || e.has_failed() || e.has_cancelled());
      },
      120s);
  if (canceller.joinable()) canceller.join();
  ASSERT_TRUE(sent) << "no denoise progress seen";
  const v1::JobEvent* fin = followed.final_event();
  ASSERT_NE(fin, nullptr) << followed.rpc;
  ASSERT_TRUE(fin->has_cancelled()) << fin->DebugString();
  const double latency = std::chrono::duration<double>(cancelled_seen - cancel_sent).count();
  std::printf("[ metric ] cancel latency (running job, tiny model): %.1f ms\n", latency * 1000);
  EXPECT_LT(latency, 5.0);
  int last_step = 0;
  for (const auto& e : followed.events) {
    if (e.has_progress() && e.progress().stage() == "denoise") last_step = e.progress().step();
    EXPECT_FALSE(e.has_chunk()) << "no video after a cancel mid-denoise";
  }
  EXPECT_LT(last_step, 200) << "the job stopped before the end";
  auto state = WaitForState(c, job->job_id(), v1::JOB_STATE_CANCELLED, 10s);
  EXPECT_TRUE(state.ok()) << state.status();
  // The worker is free again: a new job completes.
  FollowedJob next = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  ASSERT_NE(next.final_event(), nullptr) << next.rpc;
  EXPECT_TRUE(next.final_event()->has_completed()) << next.final_event()->DebugString();
}

TEST_F(CancelTest, ClientDisconnectCancelsUnlessDetached) {
  client::VideoClient c = h_.Client();
  std::string job_id;
  client::CallHandle handle;
  absl::Status st = c.Generate(
      LongRequest(),
      [&](const v1::JobEvent& e) {
        job_id = e.job_id();
        return !(e.has_progress() && e.progress().stage() == "denoise");
      },
      60s, &handle);
  ASSERT_FALSE(job_id.empty());
  auto state = WaitForState(c, job_id, v1::JOB_STATE_CANCELLED, 20s);
  EXPECT_TRUE(state.ok()) << state.status();
}

TEST_F(CancelTest, DeadlineBoundsARunningJob) {
  client::VideoClient c = h_.Client();
  const auto t0 = std::chrono::steady_clock::now();
  FollowedJob job = GenerateAll(c, LongRequest(), 1500ms);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(job.rpc.code(), absl::StatusCode::kDeadlineExceeded) << job.rpc;
  EXPECT_LT(seconds, 10.0);
  ASSERT_FALSE(job.job_id.empty());
  // The job itself ends (failed with DEADLINE_EXCEEDED or cancelled), and
  // the worker takes the next job.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  v1::JobState state = v1::JOB_STATE_RUNNING;
  while (std::chrono::steady_clock::now() < deadline) {
    auto j = c.GetJob(job.job_id);
    ASSERT_TRUE(j.ok()) << j.status();
    state = j->state();
    if (state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED) << state;
  FollowedJob next = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  ASSERT_NE(next.final_event(), nullptr) << next.rpc;
  EXPECT_TRUE(next.final_event()->has_completed());
}

}  // namespace
}  // namespace sparsevid::integration
