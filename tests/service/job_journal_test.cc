// The front's job journal (server/job_journal.h) and the engine's use of it:
// accepted jobs survive a front that dies, finished ones do not, a torn tail
// is dropped, a drain's failures are final.
#include "server/job_journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"
#include "server/job_engine.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

using testing::Assigned;
using testing::FakeClock;
using testing::Hello;
using testing::RecordingChannel;
using testing::Request;

class JobJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sparsevid_journal");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    std::remove((dir_ + "/jobs.journal").c_str());
    rmdir(dir_.c_str());
  }
  std::string path() const { return dir_ + "/jobs.journal"; }
  std::unique_ptr<JobJournal> Open(std::vector<JournaledJob>* pending) {
    auto j = JobJournal::Open(dir_, pending);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? std::move(*j) : nullptr;
  }
  static JournaledJob Job(const std::string& id, const std::string& prompt) {
    JournaledJob j;
    j.job.set_job_id(id);
    j.job.set_request_id("r-" + id);
    j.job.set_owner("alice");
    j.job.mutable_request()->set_prompt(prompt);
    j.job.mutable_request()->set_seed(42);
    j.job.set_created_unix_seconds(1700000000);
    j.fingerprint = "fp-" + id;
    j.deadline = absl::FromUnixSeconds(1900000000);
    return j;
  }
  // A front's engine over this directory's journal, with what the previous
  // one left queued again.
  std::unique_ptr<JobEngine> StartFront(std::unique_ptr<JobJournal>* journal, int* restored) {
    std::vector<JournaledJob> pending;
    *journal = Open(&pending);
    EngineOptions o;
    o.queue_capacity = 4;
    o.default_limits = testing::TestLimits();
    o.default_model = "tiny";
    o.journal = journal->get();
    auto engine = std::make_unique<JobEngine>(o, nullptr, clock_.AsClock());
    *restored = engine->Restore(std::move(pending));
    return engine;
  }

  std::string dir_;
  FakeClock clock_;
};

TEST_F(JobJournalTest, UnfinishedJobsComeBackAndFinishedOnesDoNot) {
  std::vector<JournaledJob> pending;
  {
    auto j = Open(&pending);
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(pending.empty());
    ASSERT_TRUE(j->Accepted(Job("j-1", "a cat")).ok());
    ASSERT_TRUE(j->Accepted(Job("j-2", "a dog")).ok());
    ASSERT_TRUE(j->Accepted(Job("j-3", "a cow")).ok());
    ASSERT_TRUE(j->Finished("j-2").ok());
  }
  auto j = Open(&pending);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].job.job_id(), "j-1");
  EXPECT_EQ(pending[0].job.request_id(), "r-j-1");
  EXPECT_EQ(pending[0].job.owner(), "alice");
  EXPECT_EQ(pending[0].job.request().prompt(), "a cat");
  EXPECT_EQ(pending[0].job.request().seed(), 42u);
  EXPECT_EQ(pending[0].fingerprint, "fp-j-1");
  EXPECT_EQ(pending[0].deadline, absl::FromUnixSeconds(1900000000));
  EXPECT_EQ(pending[1].job.job_id(), "j-3");
  // The rewrite kept only those two: finishing one leaves one.
  ASSERT_TRUE(j->Finished("j-1").ok());
  j.reset();
  Open(&pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].job.job_id(), "j-3");
}

TEST_F(JobJournalTest, NoDeadlineRoundTrips) {
  std::vector<JournaledJob> pending;
  JournaledJob job = Job("j-1", "a cat");
  job.deadline = absl::InfiniteFuture();
  ASSERT_TRUE(Open(&pending)->Accepted(job).ok());
  Open(&pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].deadline, absl::InfiniteFuture());
}

TEST_F(JobJournalTest, TornOrCorruptTailIsDroppedAndTheRestKept) {
  std::vector<JournaledJob> pending;
  ASSERT_TRUE(Open(&pending)->Accepted(Job("j-1", "a cat")).ok());
  {
    // A crash in the middle of the next record: a header and half a payload.
    std::ofstream out(path(), std::ios::binary | std::ios::app);
    out.write("\x40\x00\x00\x00\x12\x34\x56\x78" "Aabc", 12);
  }
  Open(&pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].job.job_id(), "j-1");
  {
    // A whole record whose CRC does not match.
    std::ofstream out(path(), std::ios::binary | std::ios::app);
    out.write("\x04\x00\x00\x00\x00\x00\x00\x00" "Fj-1", 12);
  }
  auto j = Open(&pending);
  ASSERT_EQ(pending.size(), 1u) << "a corrupt finish mark must not drop the job";
  // The rewrite removed the tail, so appends land on a clean file.
  ASSERT_TRUE(j->Accepted(Job("j-2", "a dog")).ok());
  j.reset();
  Open(&pending);
  EXPECT_EQ(pending.size(), 2u);
}

TEST_F(JobJournalTest, UnusableDirectoryIsAClearError) {
  std::vector<JournaledJob> pending;
  auto j = JobJournal::Open("/proc/sparsevid-no-such-dir/state", &pending);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("/proc/sparsevid-no-such-dir/state"), std::string::npos)
      << j.status();
  EXPECT_FALSE(JobJournal::Open("", &pending).ok());
}

TEST_F(JobJournalTest, EngineRestartKeepsQueuedAndRunningJobsAndIdempotency) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  EXPECT_EQ(restored, 0);
  v1::GenerateRequest a = Request("a cat"), b = Request("a dog"), c = Request("a cow");
  a.set_request_id("req-a");
  auto ja = engine->Submit(a, absl::InfiniteFuture());
  auto jb = engine->Submit(b, absl::InfiniteFuture());
  auto jc = engine->Submit(c, absl::InfiniteFuture());
  ASSERT_TRUE(ja.ok() && jb.ok() && jc.ok());
  ASSERT_TRUE(engine->Cancel(jb->job_id(), "not wanted").ok());
  // A worker takes the first job; the front then dies without a drain.
  auto ch = std::make_shared<RecordingChannel>();
  ASSERT_TRUE(engine->AddWorker(Hello("w1", 1), ch).ok());
  ASSERT_TRUE(engine->WorkerReady("w1", 1).ok());
  EXPECT_EQ(Assigned(ch->Take()), std::vector<std::string>{ja->job_id()});
  engine.reset();
  journal.reset();

  engine = StartFront(&journal, &restored);
  EXPECT_EQ(restored, 2);  // the running job and the queued one
  auto again = engine->GetJob(ja->job_id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(again->request().seed(), ja->request().seed());  // the same video
  EXPECT_EQ(again->request_id(), "req-a");
  EXPECT_EQ(engine->GetJob(jc->job_id())->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(engine->GetJob(jb->job_id()).status().code(), absl::StatusCode::kNotFound);
  // The same request_id still names the same job; a different request is refused.
  auto dup = engine->Submit(a, absl::InfiniteFuture());
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->job_id(), ja->job_id());
  v1::GenerateRequest other = Request("a bird");
  other.set_request_id("req-a");
  EXPECT_EQ(engine->Submit(other, absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kAlreadyExists);
  // A worker of the new front runs them in their old order.
  auto ch2 = std::make_shared<RecordingChannel>();
  ASSERT_TRUE(engine->AddWorker(Hello("w2", 2), ch2).ok());
  ASSERT_TRUE(engine->WorkerReady("w2", 2).ok());
  EXPECT_EQ(Assigned(ch2->Take()), (std::vector<std::string>{ja->job_id(), jc->job_id()}));
}

TEST_F(JobJournalTest, DrainEndsQueuedJobsAndTheNextFrontDoesNotRunThem) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  auto job = engine->Submit(Request("a cat"), absl::InfiniteFuture());
  ASSERT_TRUE(job.ok());
  engine->StartDrain();
  EXPECT_EQ(engine->GetJob(job->job_id())->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(engine->GetJob(job->job_id())->status_code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  engine.reset();
  journal.reset();
  engine = StartFront(&journal, &restored);
  EXPECT_EQ(restored, 0) << "the client was told to resubmit; running it too would run it twice";
}

TEST_F(JobJournalTest, RestoredJobPastItsDeadlineOrBeyondTheQueueFailsClearly) {
  std::vector<JournaledJob> pending;
  {
    auto j = Open(&pending);
    JournaledJob late = Job("j-late", "a cat");
    late.deadline = clock_.AsClock()() - absl::Seconds(1);
    ASSERT_TRUE(j->Accepted(late).ok());
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(j->Accepted(Job("j-" + std::to_string(i), "a dog")).ok());
  }
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);  // queue capacity 4
  EXPECT_EQ(restored, 4);
  auto late = engine->GetJob("j-late");
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(late->status_code(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  auto last = engine->GetJob("j-4");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(last->status_message().find("smaller queue"), std::string::npos);
  // Both failures are marked finished: the next front does not see them.
  engine.reset();
  journal.reset();
  Open(&pending);
  EXPECT_EQ(pending.size(), 4u);
}

}  // namespace
}  // namespace sparsevid::front
