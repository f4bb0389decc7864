// Bad input through the real front (with a real worker connected, so the
// model's limits come from the worker's Hello): every class is answered
// with INVALID_ARGUMENT naming the field and nothing is queued. Also: a full
// queue answers RESOURCE_EXHAUSTED with a retry delay, and request ids are
// idempotent.
#include <string>
#include <vector>

#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/integration/job_events.h"
#include "tests/integration/running_service_test.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

struct BadCase {
  const char* name;
  const char* field;  // must appear in the error message
  void (*mutate)(v1::GenerateRequest&);
};

const std::vector<BadCase>& BadCases() {
  static const std::vector<BadCase> cases = {
      {"empty prompt", "prompt", [](v1::GenerateRequest& r) { r.set_prompt(""); }},
      {"blank prompt", "prompt", [](v1::GenerateRequest& r) { r.set_prompt("   \n\t "); }},
      {"over-long prompt", "prompt",
       [](v1::GenerateRequest& r) { r.set_prompt(std::string(2001, 'a')); }},
      {"width not a multiple", "width", [](v1::GenerateRequest& r) { r.set_width(40); }},
      {"width too large", "width", [](v1::GenerateRequest& r) { r.set_width(16384); }},
      {"negative width", "width", [](v1::GenerateRequest& r) { r.set_width(-16); }},
      {"height not a multiple", "height", [](v1::GenerateRequest& r) { r.set_height(33); }},
      {"height too large", "height", [](v1::GenerateRequest& r) { r.set_height(4096); }},
      {"frames not 4n+1", "num_frames", [](v1::GenerateRequest& r) { r.set_num_frames(6); }},
      {"too many frames", "num_frames", [](v1::GenerateRequest& r) { r.set_num_frames(1001); }},
      {"negative frames", "num_frames", [](v1::GenerateRequest& r) { r.set_num_frames(-3); }},
      {"negative steps", "steps", [](v1::GenerateRequest& r) { r.set_steps(-1); }},
      {"huge steps", "steps", [](v1::GenerateRequest& r) { r.set_steps(100000); }},
      {"fps too high", "fps", [](v1::GenerateRequest& r) { r.set_fps(61); }},
      {"negative guidance", "guidance_scale",
       [](v1::GenerateRequest& r) { r.set_guidance_scale(-1.0f); }},
      {"NaN guidance", "guidance_scale",
       [](v1::GenerateRequest& r) { r.set_guidance_scale(std::nanf("")); }},
      {"unknown sampler", "sampler",
       [](v1::GenerateRequest& r) { r.set_sampler(static_cast<v1::Sampler>(42)); }},
      {"unknown attention", "attention",
       [](v1::GenerateRequest& r) { r.set_attention(static_cast<v1::AttentionMode>(9)); }},
      {"keep ratio zero", "keep_ratio", [](v1::GenerateRequest& r) { r.set_keep_ratio(0.0f); }},
      {"keep ratio above 1", "keep_ratio", [](v1::GenerateRequest& r) { r.set_keep_ratio(1.5f); }},
      {"priority out of range", "priority", [](v1::GenerateRequest& r) { r.set_priority(10); }},
      {"unknown model", "model", [](v1::GenerateRequest& r) { r.set_model("no-such-model"); }},
      {"malformed request id", "request_id",
       [](v1::GenerateRequest& r) { r.set_request_id("bad id/with spaces"); }},
      {"over-long request id", "request_id",
       [](v1::GenerateRequest& r) { r.set_request_id(std::string(129, 'a')); }},
      {"shift out of range", "shift", [](v1::GenerateRequest& r) { r.set_shift(25.0f); }},
  };
  return cases;
}

class ValidationTest : public RunningServiceTest {};

TEST_F(ValidationTest, EveryBadInputIsInvalidArgumentNamingTheFieldAndNothingIsQueued) {
  client::VideoClient c = h_.Client();
  for (const BadCase& bad : BadCases()) {
    v1::GenerateRequest req = ServiceHarness::SmallRequest();
    bad.mutate(req);
    absl::StatusOr<v1::Job> submitted = c.Submit(req);
    ASSERT_FALSE(submitted.ok()) << bad.name << " was accepted";
    EXPECT_EQ(submitted.status().code(), absl::StatusCode::kInvalidArgument)
        << bad.name << ": " << submitted.status();
    EXPECT_NE(submitted.status().message().find(bad.field), std::string::npos)
        << bad.name << ": message does not name " << bad.field << ": " << submitted.status();
    // Generate answers the same way, before any event.
    FollowedJob streamed = GenerateAll(c, req, 10s);
    EXPECT_EQ(streamed.rpc.code(), absl::StatusCode::kInvalidArgument) << bad.name;
    EXPECT_TRUE(streamed.events.empty()) << bad.name;
  }
  v1::ListJobsRequest list;
  absl::StatusOr<v1::ListJobsResponse> jobs = c.ListJobs(list);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 0) << "rejected requests must not create jobs";
}

TEST_F(ValidationTest, RequestIdIsIdempotent) {
  client::VideoClient c = h_.Client();
  v1::GenerateRequest req = ServiceHarness::SmallRequest();
  req.set_request_id("it-request.1");
  absl::StatusOr<v1::Job> a = c.Submit(req);
  absl::StatusOr<v1::Job> b = c.Submit(req);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->job_id(), b->job_id());
  req.set_prompt("something else");
  absl::StatusOr<v1::Job> other = c.Submit(req);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists) << other.status();
}

TEST(QueueTest, FullQueueAnswersResourceExhaustedWithRetryDelay) {
  ServiceHarness h;
  // No worker: everything stays queued.
  ASSERT_TRUE(h.StartFront({"--queue.capacity", "2"}).ok());
  client::VideoClient c = h.Client();
  ASSERT_TRUE(c.Submit(ServiceHarness::SmallRequest("one")).ok());
  ASSERT_TRUE(c.Submit(ServiceHarness::SmallRequest("two")).ok());
  absl::StatusOr<v1::Job> third = c.Submit(ServiceHarness::SmallRequest("three"));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_TRUE(GetRetryDelay(third.status()).has_value()) << third.status();
  FollowedJob streamed = GenerateAll(c, ServiceHarness::SmallRequest("four"), 10s);
  EXPECT_EQ(streamed.rpc.code(), absl::StatusCode::kResourceExhausted);
  // The CLI says so with its own exit code.
  CommandResult r = RunCommand({Paths::Cli(), "-a", h.front_address(), "submit", "five"}, 30s,
                               h.dir() + "/cli-full");
  EXPECT_EQ(r.exit_code, 5) << r.err;
}

}  // namespace
}  // namespace sparsevid::integration
