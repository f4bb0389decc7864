// The front's job journal (server/job_journal.h) and the engine's use of it:
// accepted jobs survive a front that dies and run again, finished ones and
// succeeded jobs' videos are served again for as long as they are kept, a
// torn tail is dropped, a drain's failures are final.
#include "server/job_journal.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <thread>

#include "gmock/gmock.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

using testing::Assigned;
using testing::ChunkEvent;
using testing::CompletedEvent;
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
    for (const std::string& f : ResultFiles()) std::remove((dir_ + "/results/" + f).c_str());
    rmdir((dir_ + "/results").c_str());
    std::remove((dir_ + "/jobs.journal").c_str());
    rmdir(dir_.c_str());
  }
  std::string path() const { return dir_ + "/jobs.journal"; }
  std::vector<std::string> ResultFiles() const {
    std::vector<std::string> names;
    if (DIR* d = opendir((dir_ + "/results").c_str())) {
      while (const dirent* e = readdir(d))
        if (e->d_name[0] != '.') names.push_back(e->d_name);
      closedir(d);
    }
    return names;
  }
  std::unique_ptr<JobJournal> Open(std::vector<JournaledJob>* pending,
                                   std::vector<JournaledJob>* ended = nullptr) {
    auto j = JobJournal::Open(dir_, pending, ended, clock_.Now(), kRetention);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? std::move(*j) : nullptr;
  }
  // The job as it ended now, in `state`.
  JournaledJob Ended(JournaledJob j, v1::JobState state) {
    j.job.set_state(state);
    j.job.set_finished_unix_seconds(absl::ToDoubleSeconds(clock_.Now() - absl::UnixEpoch()));
    if (state == v1::JOB_STATE_FAILED) {
      j.job.set_status_code(static_cast<int>(absl::StatusCode::kInternal));
      j.job.set_status_message("worker crashed");
    }
    return j;
  }
  static constexpr absl::Duration kRetention = absl::Hours(1);
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
  // one left queued again and what it finished served again (as main.cc).
  std::unique_ptr<JobEngine> StartFront(std::unique_ptr<JobJournal>* journal, int* restored,
                                        int* served = nullptr) {
    std::vector<JournaledJob> pending, ended;
    *journal = Open(&pending, &ended);
    EngineOptions o;
    o.queue_capacity = 4;
    o.default_limits = testing::TestLimits();
    o.default_model = "tiny";
    o.job_retention = kRetention;
    o.result_ttl = absl::Minutes(10);
    o.result_cap_bytes = result_cap_;
    o.journal = journal->get();
    o.journal_compact_records = compact_records_;
    auto engine = std::make_unique<JobEngine>(o, observer_, clock_.AsClock());
    const int n = engine->RestoreEnded(std::move(ended));
    if (served != nullptr) *served = n;
    *restored = engine->Restore(std::move(pending));
    return engine;
  }

  // Starts the queued job `job_id` on a new worker `worker`.
  void StartOn(JobEngine& engine, const std::string& worker, const std::string& job_id) {
    auto ch = std::make_shared<RecordingChannel>();
    ASSERT_TRUE(engine.AddWorker(Hello(worker, 1), ch).ok());
    ASSERT_TRUE(engine.WorkerReady(worker, 1).ok());
    ASSERT_EQ(Assigned(ch->Take()), std::vector<std::string>{job_id});
  }

  // Submits a job and starts it on a new worker `worker`; its id ("" if it
  // could not: the failure is recorded).
  std::string SubmitAndStart(JobEngine& engine, const std::string& worker) {
    auto job = engine.Submit(Request("a cat"), absl::InfiniteFuture());
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    StartOn(engine, worker, job->job_id());
    return job->job_id();
  }

  // Runs one job on a new worker `worker` to success with `mp4` as its video.
  void RunToSuccess(JobEngine& engine, const std::string& worker, const std::string& job_id,
                    const std::string& mp4) {
    StartOn(engine, worker, job_id);
    ASSERT_TRUE(engine.WorkerEvent(worker, ChunkEvent(job_id, 0, mp4, true)).ok());
    ASSERT_TRUE(engine.WorkerEvent(worker, CompletedEvent(job_id)).ok());
    ASSERT_EQ(engine.GetJob(job_id)->state(), v1::JOB_STATE_SUCCEEDED);
  }

  std::string dir_;
  FakeClock clock_;
  int64_t result_cap_ = int64_t{1} << 30;
  size_t compact_records_ = 10000;
  EngineObserver* observer_ = nullptr;
};

TEST_F(JobJournalTest, UnfinishedJobsComeBackAsPendingAndFinishedOnesAsEnded) {
  std::vector<JournaledJob> pending, ended;
  {
    auto j = Open(&pending);
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(pending.empty());
    ASSERT_TRUE(j->Accepted(Job("j-1", "a cat")).ok());
    ASSERT_TRUE(j->Accepted(Job("j-2", "a dog")).ok());
    ASSERT_TRUE(j->Accepted(Job("j-3", "a cow")).ok());
    ASSERT_TRUE(j->Finished(Ended(Job("j-2", "a dog"), v1::JOB_STATE_FAILED)).ok());
    // Only an ended job can be recorded as one.
    EXPECT_EQ(j->Finished(Job("j-3", "a cow")).code(), absl::StatusCode::kInvalidArgument);
  }
  auto j = Open(&pending, &ended);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].job.job_id(), "j-2");
  EXPECT_EQ(ended[0].job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(ended[0].job.status_message(), "worker crashed");
  EXPECT_EQ(ended[0].fingerprint, "fp-j-2");
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].job.job_id(), "j-1");
  EXPECT_EQ(pending[0].job.request_id(), "r-j-1");
  EXPECT_EQ(pending[0].job.owner(), "alice");
  EXPECT_EQ(pending[0].job.request().prompt(), "a cat");
  EXPECT_EQ(pending[0].job.request().seed(), 42u);
  EXPECT_EQ(pending[0].fingerprint, "fp-j-1");
  EXPECT_EQ(pending[0].deadline, absl::FromUnixSeconds(1900000000));
  EXPECT_EQ(pending[1].job.job_id(), "j-3");
  // The rewrite kept those: finishing one leaves one pending, two ended.
  ASSERT_TRUE(j->Finished(Ended(Job("j-1", "a cat"), v1::JOB_STATE_SUCCEEDED)).ok());
  j.reset();
  Open(&pending, &ended);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].job.job_id(), "j-3");
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[1].job.job_id(), "j-1");
  // Past the retention an ended job is dropped for good.
  clock_.Advance(kRetention + absl::Seconds(1));
  Open(&pending, &ended);
  EXPECT_TRUE(ended.empty());
  EXPECT_EQ(pending.size(), 1u);
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
  auto cancelled = engine->GetJob(jb->job_id());  // ended before the crash: still ended
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled->status_message(), "not wanted");
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
  auto again = engine->GetJob(job->job_id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(again->status_code(), static_cast<int>(absl::StatusCode::kUnavailable));
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

TEST_F(JobJournalTest, SucceededJobAndItsVideoOutliveAKilledFront) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1, served = -1;
  auto engine = StartFront(&journal, &restored, &served);
  v1::GenerateRequest req = Request("a cat");
  req.set_request_id("req-cat");
  auto job = engine->Submit(req, absl::InfiniteFuture());
  ASSERT_TRUE(job.ok());
  StartOn(*engine, "w1", job->job_id());
  const std::string mp4 = std::string("\0\0\0\x18" "ftypiso5", 12) + std::string(3000, 'v');
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(job->job_id(), 0, mp4.substr(0, 1000), false)).ok());
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(job->job_id(), 1000, mp4.substr(1000), true)).ok());
  ASSERT_TRUE(engine->WorkerEvent("w1", CompletedEvent(job->job_id())).ok());
  ASSERT_EQ(engine->GetJob(job->job_id())->state(), v1::JOB_STATE_SUCCEEDED);
  // The front dies (no drain); the next one serves the job and its video.
  engine.reset();
  journal.reset();
  clock_.Advance(absl::Minutes(1));
  engine = StartFront(&journal, &restored, &served);
  EXPECT_EQ(restored, 0);
  EXPECT_EQ(served, 1);
  auto again = engine->GetJob(job->job_id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(again->stats().output_bytes(), static_cast<int64_t>(mp4.size()));
  EXPECT_EQ(again->stats().frames(), 5);
  int64_t total = 0;
  auto bytes = engine->ReadResult(job->job_id(), 0, 1 << 20, &total);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, mp4);
  EXPECT_EQ(total, static_cast<int64_t>(mp4.size()));
  // Watch ends with the completion; the same request_id is the same job.
  auto ev = engine->NextEvent(job->job_id(), 0, false);
  ASSERT_TRUE(ev.ok() && ev->event.has_value());
  EXPECT_TRUE(ev->event->has_completed());
  auto dup = engine->Submit(req, absl::InfiniteFuture());
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->job_id(), job->job_id());
  EXPECT_EQ(dup->state(), v1::JOB_STATE_SUCCEEDED);
  // Past the result TTL the video expires, and so does its file.
  EXPECT_EQ(ResultFiles().size(), 1u);
  clock_.Advance(absl::Minutes(10));
  engine->Tick();
  EXPECT_EQ(engine->ReadResult(job->job_id(), 0, 1 << 20, &total).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(ResultFiles().empty());
}

// ListJobs lists the same jobs in the same (admission) order after a
// restart, ended and unfinished ones alike.
TEST_F(JobJournalTest, ListJobsKeepsItsOrderAcrossARestart) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  std::vector<std::string> ids;
  for (const char* prompt : {"a cat", "a dog", "a cow"}) {
    auto job = engine->Submit(Request(prompt), absl::InfiniteFuture());
    ASSERT_TRUE(job.ok());
    ids.push_back(job->job_id());
    clock_.Advance(absl::Seconds(1));
  }
  ASSERT_TRUE(engine->Cancel(ids[1], "").ok());  // ended; the others stay queued
  auto listed = [&] {
    std::vector<std::string> out;
    auto page = engine->ListJobs(v1::ListJobsRequest());
    EXPECT_TRUE(page.ok());
    if (page.ok())
      for (const v1::Job& j : page->jobs()) out.push_back(j.job_id());
    return out;
  };
  ASSERT_EQ(listed(), ids);
  engine.reset();
  journal.reset();
  engine = StartFront(&journal, &restored);
  EXPECT_EQ(restored, 2);
  EXPECT_EQ(listed(), ids);
  // A job submitted now comes after them.
  auto later = engine->Submit(Request("a hen"), absl::InfiniteFuture());
  ASSERT_TRUE(later.ok());
  ids.push_back(later->job_id());
  EXPECT_EQ(listed(), ids);
}

// A running front rewrites its journal once most records are dead (jobs it
// no longer keeps), so the file follows the jobs held, not the uptime; the
// next front restores from the compacted file exactly what was held.
TEST_F(JobJournalTest, RunningFrontCompactsItsJournal) {
  compact_records_ = 20;
  std::unique_ptr<JobJournal> journal;
  int restored = -1, served = -1;
  auto engine = StartFront(&journal, &restored);
  auto queued = engine->Submit(Request("queued all along"), absl::InfiniteFuture());
  ASSERT_TRUE(queued.ok());
  for (int i = 0; i < 30; ++i) {
    auto job = engine->Submit(Request("cancelled " + std::to_string(i)), absl::InfiniteFuture());
    ASSERT_TRUE(job.ok());
    ASSERT_TRUE(engine->Cancel(job->job_id(), "").ok());
  }
  engine->Tick();  // every job still held: nothing to drop
  EXPECT_EQ(journal->records(), 61u);
  struct stat before {};
  ASSERT_EQ(stat(path().c_str(), &before), 0);
  clock_.Advance(kRetention);
  engine->Tick();  // the 30 ended jobs expire, and with them 60 records
  EXPECT_EQ(journal->records(), 1u);
  struct stat after {};
  ASSERT_EQ(stat(path().c_str(), &after), 0);
  EXPECT_LT(after.st_size * 20, before.st_size);
  // Appends go to the compacted file.
  auto last = engine->Submit(Request("cancelled last"), absl::InfiniteFuture());
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(engine->Cancel(last->job_id(), "").ok());
  EXPECT_EQ(journal->records(), 3u);
  engine.reset();
  journal.reset();
  engine = StartFront(&journal, &restored, &served);
  EXPECT_EQ(restored, 1);
  EXPECT_EQ(served, 1);
  auto page = engine->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs_size(), 2);
  EXPECT_EQ(page->jobs(0).job_id(), queued->job_id());
  EXPECT_EQ(page->jobs(0).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(page->jobs(0).request().prompt(), "queued all along");
  EXPECT_EQ(page->jobs(1).job_id(), last->job_id());
  EXPECT_EQ(page->jobs(1).state(), v1::JOB_STATE_CANCELLED);
}

// Holds the front's writes of result files open (written and synced, not
// yet renamed) until the test lets them go; the thread that writes is the
// completing worker stream's, here a test thread.
class ResultWriteGate {
 public:
  explicit ResultWriteGate(JobJournal& journal) {
    journal.SetBeforeRenameForTesting([this](const std::string&) {
      absl::MutexLock lock(&mu_);
      ++entered_;
      mu_.Await(absl::Condition(&open_));
    });
  }
  // True once a write is held (false after 10 s).
  bool WaitForWrite() {
    absl::MutexLock lock(&mu_);
    auto entered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&entered), absl::Seconds(10));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }

 private:
  absl::Mutex mu_;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs `fn` on a thread that is always joined, with the gate opened first
// (so a failed assertion cannot leave it blocked or abort the binary).
class GatedThread {
 public:
  GatedThread(ResultWriteGate& gate, std::function<void()> fn) : gate_(gate), t_(std::move(fn)) {}
  ~GatedThread() { Join(); }
  void Join() {
    gate_.Open();
    if (t_.joinable()) t_.join();
  }

 private:
  ResultWriteGate& gate_;
  std::thread t_;
};

// A video's write and fdatasync happen outside the engine's lock: while a
// result file is being written, other calls are answered.
TEST_F(JobJournalTest, ResultFileIsWrittenWithoutHoldingTheEngine) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  ResultWriteGate gate(*journal);
  const std::string id = SubmitAndStart(*engine, "w1");
  ASSERT_FALSE(id.empty());
  const std::string mp4 = std::string("\0\0\0\x18" "ftypiso5", 12) + std::string(5000, 'v');
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(id, 0, mp4, true)).ok());
  GatedThread worker(gate, [&] { EXPECT_TRUE(engine->WorkerEvent("w1", CompletedEvent(id)).ok()); });
  ASSERT_TRUE(gate.WaitForWrite());
  // The worker's thread is inside the write. Another caller is answered.
  auto other = std::async(std::launch::async, [&] { return engine->GetJob(id); });
  const bool answered = other.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(answered) << "GetJob waited for the result file's write";
  worker.Join();
  auto during = other.get();
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ(during->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(engine->GetJob(id)->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(ResultFiles(), std::vector<std::string>{id + ".mp4"});
  std::ifstream in(dir_ + "/results/" + id + ".mp4", std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), mp4);
}

// A job the front ends while the worker's completion is writing its video
// (here: failed by a shutdown) stays ended, and the file written goes.
TEST_F(JobJournalTest, JobEndedWhileItsVideoIsWrittenStaysEnded) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  ResultWriteGate gate(*journal);
  const std::string id = SubmitAndStart(*engine, "w1");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(id, 0, std::string(2000, 'v'), true)).ok());
  GatedThread worker(gate, [&] { EXPECT_TRUE(engine->WorkerEvent("w1", CompletedEvent(id)).ok()); });
  ASSERT_TRUE(gate.WaitForWrite());
  auto failing = std::async(std::launch::async, [&] {
    engine->FailRunning(absl::UnavailableError("front shutting down"));
  });
  EXPECT_EQ(failing.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "FailRunning waited for the result file's write";
  worker.Join();
  failing.get();
  auto after = engine->GetJob(id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(after->status_message(), "front shutting down");
  EXPECT_TRUE(ResultFiles().empty());
}

// A worker whose stream is cut while its completion writes the video, and
// that reconnects under the same id and gets the requeued job again: the
// old completion, handled after that, is stale. It must not end the new
// attempt (with that attempt's partial output) or free its slot.
TEST_F(JobJournalTest, CompletionOfAnAttemptCutOffMeanwhileIsIgnored) {
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  ResultWriteGate gate(*journal);
  const std::string id = SubmitAndStart(*engine, "w1");
  ASSERT_FALSE(id.empty());
  const std::string mp4 = std::string(3000, 'v');
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(id, 0, mp4, true)).ok());
  GatedThread old_stream(gate,
                         [&] { EXPECT_TRUE(engine->WorkerEvent("w1", CompletedEvent(id)).ok()); });
  ASSERT_TRUE(gate.WaitForWrite());
  engine->RemoveWorker("w1", "stream cut");
  StartOn(*engine, "w1", id);  // attempt 2, same worker id, new stream
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(id, 0, mp4.substr(0, 7), false)).ok());
  old_stream.Join();
  auto during = engine->GetJob(id);
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(during->stats().attempts(), 0);  // not ended: no stats yet
  EXPECT_TRUE(ResultFiles().empty());
  // Attempt 2 finishes normally, on the slot it still holds.
  ASSERT_TRUE(engine->WorkerEvent("w1", ChunkEvent(id, 7, mp4.substr(7), true)).ok());
  ASSERT_TRUE(engine->WorkerEvent("w1", CompletedEvent(id)).ok());
  auto after = engine->GetJob(id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(after->stats().attempts(), 2);
  EXPECT_EQ(after->stats().output_bytes(), static_cast<int64_t>(mp4.size()));
  EXPECT_EQ(ResultFiles(), std::vector<std::string>{id + ".mp4"});
}

TEST_F(JobJournalTest, ExpiringAnOldEndedJobKeepsItsResubmissionsRequestId) {
  std::vector<JournaledJob> pending;
  {
    // X ended near the end of its retention; its request_id was then
    // resubmitted as Y (X had left the previous front's table), and the
    // front died.
    auto j = Open(&pending);
    JournaledJob x = Job("j-x", "a cat"), y = Job("j-y", "a cat");
    x.job.set_request_id("same");
    y.job.set_request_id("same");
    clock_.Advance(-(kRetention - absl::Seconds(2)));
    ASSERT_TRUE(j->Finished(Ended(x, v1::JOB_STATE_FAILED)).ok());
    clock_.Advance(kRetention - absl::Seconds(2));
    ASSERT_TRUE(j->Accepted(y).ok());
  }
  std::unique_ptr<JobJournal> journal;
  int restored = -1, served = -1;
  auto engine = StartFront(&journal, &restored, &served);
  EXPECT_EQ(served, 1);
  EXPECT_EQ(restored, 1);
  clock_.Advance(absl::Seconds(3));
  engine->Tick();  // X leaves the table
  EXPECT_EQ(engine->GetJob("j-x").status().code(), absl::StatusCode::kNotFound);
  // The request_id still names Y: another request under it is refused, not run.
  v1::GenerateRequest other = Request("a bird");
  other.set_request_id("same");
  Caller alice;
  alice.name = "alice";
  EXPECT_EQ(engine->Submit(other, absl::InfiniteFuture(), alice).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(JobJournalTest, ResultFilesFollowTheResultStoresCap) {
  result_cap_ = 5000;
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  auto a = engine->Submit(Request("a cat"), absl::InfiniteFuture());
  ASSERT_TRUE(a.ok());
  RunToSuccess(*engine, "w1", a->job_id(), std::string(3000, 'a'));
  EXPECT_EQ(ResultFiles(), std::vector<std::string>{a->job_id() + ".mp4"});
  auto b = engine->Submit(Request("a dog"), absl::InfiniteFuture());
  ASSERT_TRUE(b.ok());
  RunToSuccess(*engine, "w2", b->job_id(), std::string(3000, 'b'));  // evicts a's video
  EXPECT_EQ(ResultFiles(), std::vector<std::string>{b->job_id() + ".mp4"});
}

TEST_F(JobJournalTest, DamagedResultFileIsReportedExpiredNotServed) {
  std::vector<JournaledJob> pending;
  {
    auto j = Open(&pending);
    JournaledJob done = Ended(Job("j-1", "a cat"), v1::JOB_STATE_SUCCEEDED);
    done.job.mutable_stats()->set_output_bytes(100);
    ASSERT_TRUE(j->WriteResult("j-1", std::string(60, 'x')).ok());  // cut short
    ASSERT_TRUE(j->Finished(done).ok());
    EXPECT_EQ(j->WriteResult("../escape", "x").code(), absl::StatusCode::kInvalidArgument);
    // A result file whose job the journal does not keep is removed at start-up.
    ASSERT_TRUE(j->WriteResult("j-orphan", "y").ok());
  }
  std::unique_ptr<JobJournal> journal;
  int restored = -1, served = -1;
  auto engine = StartFront(&journal, &restored, &served);
  EXPECT_EQ(served, 1);
  EXPECT_TRUE(ResultFiles().empty()) << "the orphan and the damaged file are removed";
  EXPECT_EQ(engine->GetJob("j-1")->state(), v1::JOB_STATE_SUCCEEDED);
  int64_t total = 0;
  auto bytes = engine->ReadResult("j-1", 0, 1 << 20, &total);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kNotFound) << "60 of 100 bytes";
}

// The journal's writes show in the front's metrics: records, result files
// (one that failed: its directory had become a file), compactions, the file's size.
TEST_F(JobJournalTest, JournalWritesShowInTheMetrics) {
  prometheus::Registry registry;
  FrontMetrics metrics(registry);
  observer_ = &metrics;
  compact_records_ = 3;
  std::unique_ptr<JobJournal> journal;
  int restored = -1;
  auto engine = StartFront(&journal, &restored);
  auto first = engine->Submit(Request("a cat"), absl::InfiniteFuture());
  ASSERT_TRUE(first.ok());
  RunToSuccess(*engine, "w1", first->job_id(), std::string(3000, 'v'));
  // The second video cannot be written: its directory is a file now.
  const std::string results = dir_ + "/results";
  for (const std::string& f : ResultFiles()) std::remove((results + "/" + f).c_str());
  ASSERT_EQ(rmdir(results.c_str()), 0);
  std::ofstream(results) << "not a directory";
  auto second = engine->Submit(Request("a dog"), absl::InfiniteFuture());
  ASSERT_TRUE(second.ok());
  RunToSuccess(*engine, "w2", second->job_id(), std::string(3000, 'w'));
  std::remove(results.c_str());
  ASSERT_EQ(mkdir(results.c_str(), 0700), 0);
  auto text = [&] { return prometheus::TextSerializer().Serialize(registry.Collect()); };
  using ::testing::HasSubstr;
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_writes_total{kind=\"record\",outcome=\"ok\"} 4"));
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_writes_total{kind=\"result\",outcome=\"ok\"} 1"));
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_writes_total{kind=\"result\",outcome=\"error\"} 1"));
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_result_write_seconds_count 1"));
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_records 4"));
  clock_.Advance(kRetention);
  engine->Tick();  // both jobs expire: the journal is compacted to nothing
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_writes_total{kind=\"compaction\",outcome=\"ok\"} 1"));
  EXPECT_THAT(text(), HasSubstr("sparsevid_journal_records 0"));
  engine.reset();
}

}  // namespace
}  // namespace sparsevid::front
