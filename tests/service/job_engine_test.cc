#include "server/job_engine.h"

#include <atomic>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

using testing::AllEvents;
using testing::Assigned;
using testing::CancelledEvent;
using testing::ChunkEvent;
using testing::CompletedEvent;
using testing::FakeClock;
using testing::Hello;
using testing::ProgressEvent;
using testing::RecordingChannel;
using testing::Request;

const absl::Time kNoDeadline = absl::InfiniteFuture();

class JobEngineTest : public ::testing::Test {
 protected:
  EngineOptions Options() {
    EngineOptions o;
    o.queue_capacity = 3;
    o.max_attempts = 2;
    o.result_ttl = absl::Seconds(60);
    o.job_retention = absl::Seconds(120);
    o.default_limits = testing::TestLimits();
    o.default_model = "tiny";
    return o;
  }
  void SetUp() override { engine_ = std::make_unique<JobEngine>(Options(), nullptr, clock_.AsClock()); }

  std::shared_ptr<RecordingChannel> Connect(const std::string& id, int capacity = 1,
                                            int ready = 1) {
    auto ch = std::make_shared<RecordingChannel>();
    EXPECT_TRUE(engine_->AddWorker(Hello(id, capacity), ch).ok());
    auto welcome = ch->Take();  // the first message, before any Ready
    EXPECT_EQ(welcome.size(), 1u);
    EXPECT_TRUE(!welcome.empty() && welcome[0].has_welcome());
    EXPECT_TRUE(engine_->WorkerReady(id, ready).ok());
    return ch;
  }
  std::string SubmitOk(const v1::GenerateRequest& r, absl::Time deadline = kNoDeadline) {
    auto job = engine_->Submit(r, deadline);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->job_id() : "";
  }
  v1::JobState State(const std::string& id) { return engine_->GetJob(id)->state(); }
  // Plays a worker finishing `job_id` with `bytes` of output.
  void Complete(const std::string& worker, const std::string& job_id,
                const std::string& bytes = "MP4DATA") {
    ASSERT_TRUE(engine_->WorkerEvent(worker, ProgressEvent(job_id, 1, 4)).ok());
    ASSERT_TRUE(engine_->WorkerEvent(worker, ChunkEvent(job_id, 0, bytes, true)).ok());
    ASSERT_TRUE(engine_->WorkerEvent(worker, CompletedEvent(job_id)).ok());
  }

  FakeClock clock_;
  std::unique_ptr<JobEngine> engine_;
};

TEST_F(JobEngineTest, HappyPathStateMachineAndEvents) {
  const std::string id = SubmitOk(Request("a cat"));
  EXPECT_EQ(State(id), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(engine_->GetJob(id)->queue_position(), 1);
  // Defaults resolved from the limits and a seed chosen.
  auto job = *engine_->GetJob(id);
  EXPECT_EQ(job.request().width(), 32);
  EXPECT_EQ(job.request().num_frames(), 5);
  EXPECT_TRUE(job.request().has_seed());

  auto ch = Connect("w1");
  auto sent = ch->Take();
  ASSERT_EQ(Assigned(sent), std::vector<std::string>{id});
  EXPECT_EQ(sent[0].assign().attempt(), 1);
  EXPECT_EQ(sent[0].assign().deadline_unix_seconds(), 0);
  EXPECT_EQ(State(id), v1::JOB_STATE_RUNNING);

  clock_.Advance(absl::Seconds(2));
  Complete("w1", id, "0123456789");
  job = *engine_->GetJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.stats().output_bytes(), 10);
  EXPECT_EQ(job.stats().worker(), "w1");
  EXPECT_EQ(job.stats().attempts(), 1);
  EXPECT_DOUBLE_EQ(job.stats().run_seconds(), 2.0);

  auto events = AllEvents(*engine_, id);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_TRUE(events[0].has_queued());
  EXPECT_EQ(events[0].queued().position(), 1);
  EXPECT_TRUE(events[1].has_started());
  EXPECT_TRUE(events[2].has_progress());
  EXPECT_TRUE(events[3].has_chunk());
  EXPECT_EQ(events[3].chunk().data(), "0123456789");
  EXPECT_TRUE(events[4].has_completed());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(events[i].job_id(), id);
  }
  auto end = engine_->NextEvent(id, 5, true);
  EXPECT_TRUE(end->finished);
  EXPECT_TRUE(end->final_status.ok());

  int64_t total = 0;
  EXPECT_EQ(*engine_->ReadResult(id, 2, 3, &total), "234");
  EXPECT_EQ(total, 10);
}

TEST_F(JobEngineTest, WatchReplaysAfterSeqAndSkipsChunksUnlessAsked) {
  auto ch = Connect("w1");
  const std::string id = SubmitOk(Request("x"));
  Complete("w1", id);
  auto after2 = AllEvents(*engine_, id, 2, /*chunks=*/false);
  ASSERT_EQ(after2.size(), 2u);
  EXPECT_TRUE(after2[0].has_progress());
  EXPECT_TRUE(after2[1].has_completed());
}

TEST_F(JobEngineTest, QueueOrderPositionsAndFullQueue) {
  const std::string low = SubmitOk(Request("low", 0));
  const std::string high = SubmitOk(Request("high", 5));
  const std::string low2 = SubmitOk(Request("low2", 0));
  EXPECT_EQ(engine_->GetJob(high)->queue_position(), 1);
  EXPECT_EQ(engine_->GetJob(low)->queue_position(), 2);
  EXPECT_EQ(engine_->GetJob(low2)->queue_position(), 3);
  // "low" was pushed back by "high": it got a new Queued event.
  auto ev = AllEvents(*engine_, low);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].queued().position(), 2);
  EXPECT_EQ(ev[1].queued().depth(), 2);

  auto full = engine_->Submit(Request("overflow"), kNoDeadline);
  ASSERT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(GetRetryDelay(full.status()).has_value());
  EXPECT_GE(*GetRetryDelay(full.status()), absl::Seconds(1));

  auto ch = Connect("w1");
  EXPECT_EQ(Assigned(ch->Take()), std::vector<std::string>{high});
  EXPECT_EQ(engine_->GetJob(low)->queue_position(), 1);
  Complete("w1", high);
  EXPECT_TRUE(engine_->WorkerReady("w1", 1).ok());
  EXPECT_EQ(Assigned(ch->Take()), std::vector<std::string>{low});
}

TEST_F(JobEngineTest, IdempotentRequestId) {
  v1::GenerateRequest r = Request("same");
  r.set_request_id("req-1");
  const std::string a = SubmitOk(r);
  const std::string b = SubmitOk(r);
  EXPECT_EQ(a, b);
  EXPECT_EQ(engine_->queue_depth(), 1);
  r.set_prompt("different");
  auto c = engine_->Submit(r, kNoDeadline);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(c.status().message().find("request_id"), absl::string_view::npos);
  r.set_request_id("bad id!");
  EXPECT_EQ(engine_->Submit(r, kNoDeadline).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JobEngineTest, ValidatesAgainstConfigThenWorkerLimits) {
  v1::GenerateRequest r = Request("big");
  r.set_width(512);  // over the default limit of 256
  auto s = engine_->Submit(r, kNoDeadline).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().substr(0, 6), "width:");
  r.set_width(0);
  r.set_model("other");
  s = engine_->Submit(r, kNoDeadline).status();
  EXPECT_EQ(s.message().substr(0, 6), "model:") << s;

  // A worker with larger limits widens what is accepted.
  v1::WorkerHello h = Hello("w-big");
  h.mutable_limits()->set_max_width(1024);
  ASSERT_TRUE(engine_->AddWorker(h, std::make_shared<RecordingChannel>()).ok());
  r.set_model("");
  r.set_width(512);
  EXPECT_TRUE(engine_->Submit(r, kNoDeadline).ok());
  EXPECT_EQ(engine_->queue_depth(), 1);  // invalid requests queued nothing
}

TEST_F(JobEngineTest, CancelQueuedLeavesQueue) {
  const std::string a = SubmitOk(Request("a"));
  const std::string b = SubmitOk(Request("b"));
  auto job = engine_->Cancel(a, "");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(engine_->queue_depth(), 1);
  EXPECT_EQ(engine_->GetJob(b)->queue_position(), 1);
  auto end = engine_->NextEvent(a, AllEvents(*engine_, a).back().seq(), false);
  EXPECT_TRUE(end->finished);
  EXPECT_EQ(end->final_status.code(), absl::StatusCode::kCancelled);
  // Cancelling again is harmless; unknown ids are NOT_FOUND.
  EXPECT_EQ(engine_->Cancel(a, "")->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(engine_->Cancel("j-nope", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobEngineTest, CancelRunningStopsWorkerAndFreesSlotOnConfirm) {
  auto ch = Connect("w1");
  const std::string a = SubmitOk(Request("a"));
  const std::string b = SubmitOk(Request("b"));
  ch->Take();
  ASSERT_EQ(engine_->Cancel(a, "user")->state(), v1::JOB_STATE_CANCELLED);
  auto sent = ch->Take();
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_TRUE(sent[0].has_cancel());
  EXPECT_EQ(sent[0].cancel().job_id(), a);
  // Slot still held until the worker confirms, even if it says it is ready.
  EXPECT_TRUE(engine_->WorkerReady("w1", 1).ok());
  EXPECT_TRUE(Assigned(ch->Take()).empty());
  // Late progress for the cancelled job is ignored.
  EXPECT_TRUE(engine_->WorkerEvent("w1", ProgressEvent(a, 2, 4)).ok());
  ASSERT_TRUE(engine_->WorkerEvent("w1", CancelledEvent(a)).ok());
  EXPECT_EQ(Assigned(ch->Take()), std::vector<std::string>{b});
  EXPECT_EQ(State(a), v1::JOB_STATE_CANCELLED);
}

TEST_F(JobEngineTest, WorkerLossRequeuesThenFails) {
  auto ch1 = Connect("w1");
  const std::string id = SubmitOk(Request("x"));
  ASSERT_EQ(Assigned(ch1->Take()), std::vector<std::string>{id});
  ASSERT_TRUE(engine_->WorkerEvent("w1", ChunkEvent(id, 0, "partial", false)).ok());
  engine_->RemoveWorker("w1", "stream broken");
  EXPECT_EQ(State(id), v1::JOB_STATE_QUEUED);
  // The partial chunk of the lost attempt is gone from the replay.
  for (const auto& e : AllEvents(*engine_, id)) EXPECT_FALSE(e.has_chunk());

  auto ch2 = Connect("w2");
  auto sent = ch2->Take();
  ASSERT_EQ(Assigned(sent), std::vector<std::string>{id});
  EXPECT_EQ(sent[0].assign().attempt(), 2);
  engine_->RemoveWorker("w2", "killed");
  auto job = *engine_->GetJob(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.status_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_NE(job.status_message().find("attempt 2 of 2"), std::string::npos)
      << job.status_message();
}

TEST_F(JobEngineTest, DeadlineWhileQueuedAndWhileRunning) {
  const std::string queued = SubmitOk(Request("q"), clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(6));
  engine_->Tick();
  auto job = *engine_->GetJob(queued);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.status_code(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(engine_->queue_depth(), 0);

  auto ch = Connect("w1");
  const absl::Time deadline = clock_.Now() + absl::Seconds(5);
  const std::string running = SubmitOk(Request("r"), deadline);
  auto sent = ch->Take();
  ASSERT_EQ(Assigned(sent), std::vector<std::string>{running});
  EXPECT_DOUBLE_EQ(sent[0].assign().deadline_unix_seconds(), absl::ToUnixSeconds(deadline));
  clock_.Advance(absl::Seconds(5));
  engine_->Tick();
  EXPECT_EQ(engine_->GetJob(running)->status_code(),
            static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  sent = ch->Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(sent[0].has_cancel());
  EXPECT_EQ(engine_->Submit(Request("late"), clock_.Now()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(JobEngineTest, ResultAndJobRecordsExpire) {
  auto ch = Connect("w1");
  const std::string id = SubmitOk(Request("x"));
  Complete("w1", id);
  int64_t total = 0;
  EXPECT_TRUE(engine_->ReadResult(id, 0, 100, &total).ok());
  clock_.Advance(absl::Seconds(61));
  engine_->Tick();
  EXPECT_EQ(engine_->ReadResult(id, 0, 100, &total).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(State(id), v1::JOB_STATE_SUCCEEDED);  // the record outlives the bytes
  clock_.Advance(absl::Seconds(60));
  engine_->Tick();
  EXPECT_EQ(engine_->GetJob(id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobEngineTest, FetchBeforeCompletionIsFailedPrecondition) {
  const std::string id = SubmitOk(Request("x"));
  int64_t total = 0;
  EXPECT_EQ(engine_->ReadResult(id, 0, 10, &total).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobEngineTest, GarbageFromWorkerIsRejectedNotFatal) {
  auto ch = std::make_shared<RecordingChannel>();
  v1::WorkerHello bad = Hello("w1");
  bad.set_capacity(0);
  EXPECT_EQ(engine_->AddWorker(bad, ch).code(), absl::StatusCode::kInvalidArgument);
  bad = Hello("w1");
  bad.mutable_limits()->set_spatial_multiple(0);
  EXPECT_EQ(engine_->AddWorker(bad, ch).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->WorkerReady("ghost", 1).code(), absl::StatusCode::kFailedPrecondition);

  auto w = Connect("w1");
  EXPECT_EQ(engine_->AddWorker(Hello("w1"), ch).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(engine_->WorkerReady("w1", -4).code(), absl::StatusCode::kInvalidArgument);
  const std::string id = SubmitOk(Request("x"));
  // Oversized chunk, out-of-order chunk, and a front-only event type.
  EXPECT_EQ(engine_->WorkerEvent("w1", ChunkEvent(id, 0, std::string((1 << 20) + 1, 'x'), false))
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->WorkerEvent("w1", ChunkEvent(id, 7, "x", false)).code(),
            absl::StatusCode::kInvalidArgument);
  v1::WorkerJobEvent started;
  started.set_job_id(id);
  started.mutable_event()->mutable_started()->set_worker("w1");
  EXPECT_EQ(engine_->WorkerEvent("w1", started).code(), absl::StatusCode::kInvalidArgument);
  // Events for unknown jobs are ignored.
  EXPECT_TRUE(engine_->WorkerEvent("w1", CompletedEvent("j-unknown")).ok());
  // Completion without output fails the job with a clear status.
  ASSERT_TRUE(engine_->WorkerEvent("w1", CompletedEvent(id)).ok());
  EXPECT_EQ(engine_->GetJob(id)->status_code(), static_cast<int>(absl::StatusCode::kInternal));
}

TEST_F(JobEngineTest, DrainRefusesNewWorkFailsQueuedKeepsRunning) {
  auto ch = Connect("w1");
  const std::string running = SubmitOk(Request("r"));
  const std::string queued = SubmitOk(Request("q"));
  engine_->StartDrain();
  EXPECT_TRUE(engine_->draining());
  EXPECT_EQ(engine_->Submit(Request("new"), kNoDeadline).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine_->GetJob(queued)->status_code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(State(running), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(engine_->running_jobs(), 1);
  Complete("w1", running);
  EXPECT_EQ(engine_->running_jobs(), 0);
  EXPECT_EQ(State(running), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(JobEngineTest, FailRunningAtEndOfGrace) {
  auto ch = Connect("w1");
  const std::string running = SubmitOk(Request("r"));
  engine_->StartDrain();
  engine_->FailRunning(absl::UnavailableError("drain grace period over"));
  EXPECT_EQ(State(running), v1::JOB_STATE_FAILED);
  EXPECT_EQ(engine_->running_jobs(), 0);
}

TEST_F(JobEngineTest, ListJobsPagesAndFilters) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(SubmitOk(Request("p" + std::to_string(i))));
  ASSERT_TRUE(engine_->Cancel(ids[1], "").ok());
  v1::ListJobsRequest req;
  req.set_page_size(2);
  auto page1 = *engine_->ListJobs(req);
  ASSERT_EQ(page1.jobs_size(), 2);
  EXPECT_EQ(page1.jobs(0).job_id(), ids[0]);
  ASSERT_FALSE(page1.next_page_token().empty());
  req.set_page_token(page1.next_page_token());
  auto page2 = *engine_->ListJobs(req);
  ASSERT_EQ(page2.jobs_size(), 1);
  EXPECT_EQ(page2.jobs(0).job_id(), ids[2]);
  EXPECT_TRUE(page2.next_page_token().empty());
  v1::ListJobsRequest cancelled;
  cancelled.set_state(v1::JOB_STATE_CANCELLED);
  auto only = *engine_->ListJobs(cancelled);
  ASSERT_EQ(only.jobs_size(), 1);
  EXPECT_EQ(only.jobs(0).job_id(), ids[1]);
  req.set_page_size(5000);
  EXPECT_EQ(engine_->ListJobs(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.set_page_size(1);
  // Malformed tokens, and admission numbers as tokens (the old format), are
  // refused naming the field.
  for (const char* bad : {"garbage", "1", "2", "3", "AAAAAAAAAAAAAAAAAAAAAA"}) {
    req.set_page_token(bad);
    const absl::Status s = engine_->ListJobs(req).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().rfind("page_token: ", 0), 0u) << s;
  }
}

TEST_F(JobEngineTest, SubscribersAreNotifiedAndCanUnsubscribe) {
  const std::string id = SubmitOk(Request("x"));
  std::atomic<int> calls{0};
  auto sub = engine_->Subscribe(id, [&] {
    ++calls;
    (void)engine_->GetJob(id);  // re-entering the engine from a callback is allowed
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(engine_->Cancel(id, "").ok());
  EXPECT_EQ(calls.load(), 1);
  engine_->Unsubscribe(id, *sub);
  EXPECT_EQ(engine_->Subscribe("j-unknown", [] {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobEngineTest, CapacityAboveOneRunsJobsConcurrently) {
  auto ch = Connect("w1", /*capacity=*/2, /*ready=*/2);
  const std::string a = SubmitOk(Request("a"));
  const std::string b = SubmitOk(Request("b"));
  const std::string c = SubmitOk(Request("c"));
  EXPECT_EQ(Assigned(ch->Take()), (std::vector<std::string>{a, b}));
  EXPECT_EQ(State(c), v1::JOB_STATE_QUEUED);
  // A stale Ready(2) cannot overbook the worker.
  EXPECT_TRUE(engine_->WorkerReady("w1", 2).ok());
  EXPECT_TRUE(Assigned(ch->Take()).empty());
}

}  // namespace
Caller ClientCaller(const std::string& name, int max_active = 0) {
  Caller c;
  c.name = name;
  c.sees_all = false;
  c.max_active_jobs = max_active;
  return c;
}

TEST_F(JobEngineTest, ClientCallersSeeOnlyTheirOwnJobs) {
  const Caller alice = ClientCaller("alice"), bob = ClientCaller("bob");
  Caller admin;
  admin.name = "ops";
  auto a = engine_->Submit(Request("alice's"), kNoDeadline, alice);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->owner(), "alice");
  const std::string id = a->job_id();

  // Bob gets exactly what an unknown id gets, for every job-id call.
  const absl::Status unknown = engine_->GetJob("j-0000000000000000", bob).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  const absl::Status hidden = engine_->GetJob(id, bob).status();
  EXPECT_EQ(hidden.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(hidden.message().find(id), absl::string_view::npos);
  EXPECT_EQ(hidden.message().find("alice"), absl::string_view::npos);  // owner not revealed
  EXPECT_EQ(engine_->Cancel(id, "", bob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->Subscribe(id, [] {}, bob).status().code(), absl::StatusCode::kNotFound);
  int64_t total = 0;
  EXPECT_EQ(engine_->ReadResult(id, 0, 10, &total, bob).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(State(id), v1::JOB_STATE_QUEUED);  // Bob's cancel did nothing

  // Alice and an admin see it; Bob's list is empty, the admin's has it.
  EXPECT_TRUE(engine_->GetJob(id, alice).ok());
  EXPECT_TRUE(engine_->GetJob(id, admin).ok());
  ASSERT_TRUE(engine_->Submit(Request("bob's"), kNoDeadline, bob).ok());
  auto bob_list = engine_->ListJobs(v1::ListJobsRequest(), bob);
  ASSERT_TRUE(bob_list.ok());
  ASSERT_EQ(bob_list->jobs_size(), 1);
  EXPECT_EQ(bob_list->jobs(0).owner(), "bob");
  auto all = engine_->ListJobs(v1::ListJobsRequest(), admin);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->jobs_size(), 2);

  // Paging over another owner's jobs still fills pages with the caller's.
  ASSERT_TRUE(engine_->Submit(Request("alice's 2"), kNoDeadline, alice).ok());
  v1::ListJobsRequest page;
  page.set_page_size(1);
  auto first = engine_->ListJobs(page, alice);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->jobs_size(), 1);
  page.set_page_token(first->next_page_token());
  auto second = engine_->ListJobs(page, alice);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->jobs_size(), 1);
  EXPECT_EQ(second->jobs(0).request().prompt(), "alice's 2");

  // Alice cancels her own.
  EXPECT_EQ(engine_->Cancel(id, "", alice)->state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(JobEngineTest, RequestIdsArePerOwner) {
  v1::GenerateRequest r = Request("same words");
  r.set_request_id("shared-id");
  auto a = engine_->Submit(r, kNoDeadline, ClientCaller("alice"));
  auto b = engine_->Submit(r, kNoDeadline, ClientCaller("bob"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->job_id(), b->job_id());  // Bob never gets Alice's job back
  auto again = engine_->Submit(r, kNoDeadline, ClientCaller("alice"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->job_id(), a->job_id());
  EXPECT_EQ(engine_->queue_depth(), 2);
}

TEST_F(JobEngineTest, MaxActiveJobsPerKey) {
  const Caller alice = ClientCaller("alice", 2);
  auto ch = Connect("w1");
  const std::string first = engine_->Submit(Request("1"), kNoDeadline, alice)->job_id();
  ASSERT_TRUE(engine_->Submit(Request("2"), kNoDeadline, alice).ok());
  EXPECT_EQ(State(first), v1::JOB_STATE_RUNNING);  // running counts too
  auto third = engine_->Submit(Request("3"), kNoDeadline, alice);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("'alice'"), absl::string_view::npos);
  EXPECT_NE(third.status().message().find("2 queued or running"), absl::string_view::npos);
  // Another key is not held back by Alice's limit.
  EXPECT_TRUE(engine_->Submit(Request("bob"), kNoDeadline, ClientCaller("bob", 2)).ok());
  // A finished job frees a place.
  Complete("w1", first);
  EXPECT_EQ(State(first), v1::JOB_STATE_SUCCEEDED);
  const std::string third_id = engine_->Submit(Request("3 again"), kNoDeadline, alice)->job_id();
  // Job 2 now runs. Cancelling it does not free a place until the worker has
  // stopped it: submit-then-cancel cannot fill the workers past the limit.
  ASSERT_TRUE(engine_->WorkerReady("w1", 1).ok());
  std::string running;
  for (const auto& id : Assigned(ch->Take())) running = id;
  ASSERT_FALSE(running.empty());
  EXPECT_EQ(engine_->Cancel(running, "", alice)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(engine_->Submit(Request("4"), kNoDeadline, alice).status().code(),
            absl::StatusCode::kResourceExhausted);
  v1::WorkerJobEvent stopped;
  stopped.set_job_id(running);
  stopped.mutable_event()->mutable_cancelled()->set_reason("stopped");
  ASSERT_TRUE(engine_->WorkerEvent("w1", stopped).ok());
  EXPECT_TRUE(engine_->Submit(Request("4"), kNoDeadline, alice).ok());
  // Cancelling a queued job frees its place at once.
  EXPECT_EQ(engine_->Cancel(third_id, "", alice)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(engine_->Submit(Request("5"), kNoDeadline, alice).ok());
}

TEST_F(JobEngineTest, ListJobsPageTokensAreOpaqueAndTheCallersOwn) {
  EngineOptions roomy = Options();
  roomy.queue_capacity = 64;
  engine_ = std::make_unique<JobEngine>(roomy, nullptr, clock_.AsClock());
  const Caller alice = ClientCaller("alice"), bob = ClientCaller("bob");
  std::vector<std::string> alices;
  // Alice's jobs with Bob's in between: her pages must not tell how many.
  for (int i = 0; i < 4; ++i) {
    alices.push_back(engine_->Submit(Request(absl::StrCat("a", i)), kNoDeadline, alice)->job_id());
    for (int j = 0; j < i; ++j) {
      ASSERT_TRUE(engine_->Submit(Request(absl::StrCat("b", i, j)), kNoDeadline, bob).ok());
    }
  }
  v1::ListJobsRequest req;
  req.set_page_size(1);
  std::vector<std::string> seen, tokens;
  while (true) {
    auto page = engine_->ListJobs(req, alice);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& j : page->jobs()) seen.push_back(j.job_id());
    if (page->next_page_token().empty()) break;
    tokens.push_back(page->next_page_token());
    req.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(seen, alices);  // order and page size as before
  ASSERT_EQ(tokens.size(), 3u);
  // Not the jobs' admission numbers (2, 4, 7 here): fixed-size opaque
  // strings (page_token_test.cc checks the encryption itself).
  for (const std::string& t : tokens) {
    uint64_t n = 0;
    EXPECT_FALSE(absl::SimpleAtoi(t, &n)) << t;
    EXPECT_EQ(t.size(), 22u) << t;
  }

  // Bob cannot use Alice's token, nor can an admin; a token from before a
  // restart (another engine, another key) is stale; Alice's own still works.
  req.set_page_token(tokens[0]);
  Caller admin;
  admin.name = "ops";
  for (const Caller& other : {bob, admin}) {
    const absl::Status s = engine_->ListJobs(req, other).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << other.name;
    EXPECT_EQ(s.message().rfind("page_token: ", 0), 0u) << s;
  }
  JobEngine restarted(Options(), nullptr, clock_.AsClock());
  ASSERT_TRUE(restarted.Submit(Request("x"), kNoDeadline, alice).ok());
  EXPECT_EQ(restarted.ListJobs(req, alice).status().code(), absl::StatusCode::kInvalidArgument);
  auto again = engine_->ListJobs(req, alice);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->jobs_size(), 1);
  EXPECT_EQ(again->jobs(0).job_id(), alices[1]);

  // A token outlives the job it points at: that job expired, the next page
  // starts at the one after it. Filters still apply to later pages.
  ASSERT_TRUE(engine_->Cancel(alices[1], "", alice).ok());
  clock_.Advance(absl::Seconds(100));
  ASSERT_TRUE(engine_->Cancel(alices[2], "", alice).ok());
  ASSERT_TRUE(engine_->Cancel(alices[3], "", alice).ok());
  clock_.Advance(absl::Seconds(30));  // retention 120 s: only alices[1] expires
  engine_->Tick();
  ASSERT_EQ(engine_->GetJob(alices[1], alice).status().code(), absl::StatusCode::kNotFound);
  req.set_state(v1::JOB_STATE_CANCELLED);
  auto after = engine_->ListJobs(req, alice);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->jobs_size(), 1);
  EXPECT_EQ(after->jobs(0).job_id(), alices[2]);
  EXPECT_FALSE(after->next_page_token().empty());
}

}  // namespace sparsevid::front
