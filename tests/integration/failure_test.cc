// Failures through real processes: a worker killed mid-job, SIGTERM drain of
// the front, the front restarting under a connected worker, a killed front
// whose journal keeps its accepted job, and garbage on the worker link.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/health_check.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"
#include "tests/integration/job_events.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

v1::GenerateRequest LongRequest() { return ServiceHarness::SlowRequest(200); }

// Submits a long job and waits until a worker is denoising it.
std::string StartLongJob(client::VideoClient& c, v1::GenerateRequest req = LongRequest()) {
  absl::StatusOr<v1::Job> job = c.Submit(req);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return "";
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto j = c.GetJob(job->job_id());
    if (j.ok() && j->state() == v1::JOB_STATE_RUNNING && j->step() >= 1) break;
    std::this_thread::sleep_for(20ms);
  }
  return job->job_id();
}

TEST(WorkerFailureTest, KilledWorkerJobIsRequeuedToAnotherWorker) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront({"--jobs.max_attempts", "2"}).ok());
  ASSERT_TRUE(h.StartWorker().ok());
  client::VideoClient c = h.Client();
  const std::string id = StartLongJob(c, ServiceHarness::SlowRequest(20));
  ASSERT_FALSE(id.empty());
  h.worker(0).Signal(SIGKILL);
  ASSERT_TRUE(h.worker(0).WaitExit(10s).has_value());
  // Back in the queue (or already waiting for a worker), then done by a new one.
  ASSERT_TRUE(h.StartWorker().ok());
  FollowedJob rest = WatchAll(c, id, 0, false, 120s);
  ASSERT_NE(rest.final_event(), nullptr) << rest.rpc;
  ASSERT_TRUE(rest.final_event()->has_completed()) << rest.final_event()->DebugString();
  EXPECT_EQ(rest.final_event()->completed().stats().attempts(), 2);
  EXPECT_EQ(rest.final_event()->completed().stats().worker(), "it-worker-1");
  EXPECT_EQ(rest.Count(v1::JobEvent::kStarted), 2);
}

TEST(WorkerFailureTest, KilledWorkerFailsJobClearlyWhenAttemptsAreUsedUp) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront({"--jobs.max_attempts", "1"}).ok());
  ASSERT_TRUE(h.StartWorker().ok());
  client::VideoClient c = h.Client();
  const std::string id = StartLongJob(c);
  ASSERT_FALSE(id.empty());
  h.worker(0).Signal(SIGKILL);
  auto job = WaitForState(c, id, v1::JOB_STATE_FAILED, 20s);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_NE(job->status_code(), 0);
  EXPECT_FALSE(job->status_message().empty());
  std::printf("[ info ] lost-worker failure: code %d, \"%s\"\n", job->status_code(),
              job->status_message().c_str());
}

TEST(FrontDrainTest, SigtermStopsIntakeFinishesRunningJobThenExits) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront({"--drain.grace_seconds", "60"}).ok());
  ASSERT_TRUE(h.StartWorker().ok());
  client::VideoClient c = h.Client();
  const std::string id = StartLongJob(c, ServiceHarness::SlowRequest(30));
  ASSERT_FALSE(id.empty());
  // Follow the running job on its own stream while the front drains.
  FollowedJob running;
  std::thread follower([&] { running = WatchAll(c, id, 0, false, 120s); });
  std::this_thread::sleep_for(200ms);
  h.front().Signal(SIGTERM);
  // Health goes NOT_SERVING first, new work is refused with UNAVAILABLE.
  bool not_serving = false;
  for (int i = 0; i < 100 && !not_serving; ++i) {
    auto st = client::CheckHealth(h.front_address(), "", 1s);
    not_serving = st.ok() && *st == client::HealthStatus::kNotServing;
    if (!not_serving) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(not_serving);
  client::VideoClient late = h.Client();
  absl::StatusOr<v1::Job> refused = late.Submit(ServiceHarness::SmallRequest());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  follower.join();
  ASSERT_NE(running.final_event(), nullptr) << running.rpc;
  EXPECT_TRUE(running.final_event()->has_completed()) << running.final_event()->DebugString();
  std::optional<int> status = h.front().WaitExit(30s);
  ASSERT_TRUE(status.has_value()) << "front did not exit after draining";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST(WorkerLinkTest, WorkerCancelsItsJobWhenTheFrontDiesAndReconnects) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront().ok());
  ASSERT_TRUE(h.StartWorker().ok());
  const int port = h.front_port();
  std::string id;
  {
    client::VideoClient c = h.Client();
    id = StartLongJob(c);
    ASSERT_FALSE(id.empty());
  }
  h.front().Signal(SIGKILL);
  ASSERT_TRUE(h.front().WaitExit(10s).has_value());
  // The worker notices (health NOT_SERVING), cancels the orphaned job at its
  // next step and re-dials with backoff.
  const std::string worker_health = absl::StrCat("127.0.0.1:", h.worker_health_port(0));
  bool down = false;
  for (int i = 0; i < 200 && !down; ++i) {
    auto st = client::CheckHealth(worker_health, "", 1s);
    down = st.ok() && *st == client::HealthStatus::kNotServing;
    if (!down) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(down);
  const std::string cancelled_line = "\"job_id\":\"" + id + "\"";
  bool cancelled = false;
  for (int i = 0; i < 250 && !cancelled; ++i) {
    const std::string log = h.worker(0).Stderr();
    for (size_t pos = log.find(cancelled_line); pos != std::string::npos && !cancelled;
         pos = log.find(cancelled_line, pos + 1)) {
      const size_t start = log.rfind('\n', pos) + 1;
      const std::string line = log.substr(start, log.find('\n', pos) - start);
      cancelled = line.find("\"msg\":\"job finished\"") != std::string::npos &&
                  line.find("\"outcome\":\"cancelled\"") != std::string::npos;
    }
    if (!cancelled) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(cancelled) << "the worker kept running a job nobody waits for";
  ASSERT_TRUE(h.StartFront({}, port).ok()) << h.front().Stderr();
  auto up = client::WaitForServing(worker_health, "", 20s);
  ASSERT_TRUE(up.ok() && *up == client::HealthStatus::kServing);
  client::VideoClient c = h.Client();
  FollowedJob job = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  ASSERT_NE(job.final_event(), nullptr) << job.rpc;
  EXPECT_TRUE(job.final_event()->has_completed()) << job.final_event()->DebugString();
  EXPECT_TRUE(h.worker(0).running());
}

// With state.dir, a job the front accepted survives the front being killed:
// the next front on the same directory queues it again (same id, request_id
// and seed) and a worker finishes it.
TEST(FrontRestartTest, JournaledJobSurvivesAKilledFront) {
  ServiceHarness h;
  std::string tmpl = "/tmp/sparsevid_state_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  ASSERT_TRUE(h.StartFront({"--state.dir", dir}).ok()) << h.front().Stderr();
  const int port = h.front_port();
  v1::GenerateRequest req = ServiceHarness::SmallRequest();
  req.set_request_id("survives-restart");
  std::string id;
  uint64_t seed = 0;
  {
    client::VideoClient c = h.Client();
    absl::StatusOr<v1::Job> job = c.Submit(req);
    ASSERT_TRUE(job.ok()) << job.status();
    id = job->job_id();
    seed = job->request().seed();
  }
  // SIGKILL, no drain; the next front on the same directory and port.
  auto kill_and_restart_front = [&] {
    h.front().Signal(SIGKILL);
    ASSERT_TRUE(h.front().WaitExit(10s).has_value());
    ASSERT_TRUE(h.StartFront({"--state.dir", dir}, port).ok()) << h.front().Stderr();
  };
  ASSERT_NO_FATAL_FAILURE(kill_and_restart_front());
  client::VideoClient c = h.Client();
  absl::StatusOr<v1::Job> again = c.GetJob(id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(again->request().seed(), seed);
  absl::StatusOr<v1::Job> dup = c.Submit(req);  // the same request_id names the same job
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_EQ(dup->job_id(), id);
  ASSERT_TRUE(h.StartWorker().ok());
  auto done = WaitForState(c, id, v1::JOB_STATE_SUCCEEDED, 120s);
  ASSERT_TRUE(done.ok()) << done.status();
  auto fetch = [&](client::VideoClient& client, std::string* mp4) {
    v1::FetchResultRequest fr;
    fr.set_job_id(id);
    return client.FetchResult(
        fr, [&](const v1::Chunk& ch) { *mp4 += ch.data(); return true; }, 30s);
  };
  std::string before;
  ASSERT_TRUE(fetch(c, &before).ok());
  ASSERT_FALSE(before.empty());
  // Killed again after the job ended: the next front still has the job and
  // its video (the journal's result file), so nothing has to run again.
  ASSERT_NO_FATAL_FAILURE(kill_and_restart_front());
  client::VideoClient c2 = h.Client();
  absl::StatusOr<v1::Job> ended = c2.GetJob(id);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), v1::JOB_STATE_SUCCEEDED);
  std::string after;
  ASSERT_TRUE(fetch(c2, &after).ok());
  EXPECT_EQ(after, before);
  std::remove((dir + "/results/" + id + ".mp4").c_str());
  rmdir((dir + "/results").c_str());
  std::remove((dir + "/jobs.journal").c_str());
  rmdir(dir.c_str());
}

TEST(WorkerDrainTest, SigtermLetsTheRunningJobFinishThenTheWorkerExits) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront().ok());
  ASSERT_TRUE(h.StartWorker().ok());
  client::VideoClient c = h.Client();
  const std::string id = StartLongJob(c, ServiceHarness::SlowRequest(30));
  ASSERT_FALSE(id.empty());
  h.worker(0).Signal(SIGTERM);
  // Submitted while the worker drains: it must not take it.
  absl::StatusOr<v1::Job> waiting = c.Submit(ServiceHarness::SmallRequest());
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  auto done = WaitForState(c, id, v1::JOB_STATE_SUCCEEDED, 60s);
  EXPECT_TRUE(done.ok()) << done.status();
  std::optional<int> status = h.worker(0).WaitExit(30s);
  ASSERT_TRUE(status.has_value()) << "worker did not exit after draining";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  auto j = c.GetJob(waiting->job_id());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state(), v1::JOB_STATE_QUEUED) << "the draining worker took new work";
}

TEST(WorkerLinkTest, GarbageOnTheWorkerLinkDoesNotHurtTheFront) {
  ServiceHarness h;
  ASSERT_TRUE(h.StartFront().ok());
  auto channel = grpc::CreateChannel(h.front_address(), grpc::InsecureChannelCredentials());
  auto stub = v1::WorkerLink::NewStub(channel);
  // 1. Events for a job that was never assigned, without a Hello first.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    auto stream = stub->Connect(&ctx);
    v1::WorkerMessage m;
    m.mutable_job_event()->set_job_id("j-forged");
    m.mutable_job_event()->mutable_event()->mutable_completed();
    stream->Write(m);
    stream->WritesDone();
    v1::FrontMessage reply;
    while (stream->Read(&reply)) {
    }
    grpc::Status st = stream->Finish();
    EXPECT_FALSE(st.ok());
    std::printf("[ info ] no-Hello stream closed with %d: %s\n", st.error_code(),
                st.error_message().c_str());
  }
  // 2. Bytes that are not a WorkerMessage at all.
  {
    grpc::GenericStub generic(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(&ctx, "/sparsevid.v1.WorkerLink/Connect", &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    std::string junk = "\xff\xff\xff\xff\x0f garbage \x01\x02";
    grpc::Slice slice(junk);
    grpc::ByteBuffer buf(&slice, 1);
    call->Write(buf, reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    call->WritesDone(reinterpret_cast<void*>(3));
    cq.Next(&tag, &ok);
    grpc::Status st;
    call->Finish(&st, reinterpret_cast<void*>(4));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(4)) {
    }
    // gRPC reports an undecodable message to the front as a failed read, so
    // the stream may end with any status; what matters is that the front
    // survives (checked below).
    std::printf("[ info ] junk-bytes stream closed with %d: %s\n", st.error_code(),
                st.error_message().c_str());
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  // 3. An oversized Hello (over the front's message limit).
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    auto stream = stub->Connect(&ctx);
    v1::WorkerMessage m;
    m.mutable_hello()->set_worker_id(std::string(8 << 20, 'x'));
    stream->Write(m);
    stream->WritesDone();
    v1::FrontMessage reply;
    while (stream->Read(&reply)) {
    }
    EXPECT_FALSE(stream->Finish().ok());
  }
  // 4. A Hello with nonsense limits and capacity.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    auto stream = stub->Connect(&ctx);
    v1::WorkerMessage m;
    m.mutable_hello()->set_worker_id("evil");
    m.mutable_hello()->set_capacity(-5);
    m.mutable_hello()->mutable_limits()->set_spatial_multiple(0);
    m.mutable_hello()->mutable_limits()->set_max_frames(-1);
    stream->Write(m);
    stream->WritesDone();
    v1::FrontMessage reply;
    while (stream->Read(&reply)) {
    }
    (void)stream->Finish();
  }
  // The front is alive and serves a real worker and job.
  EXPECT_TRUE(h.front().running()) << h.front().Stderr();
  auto health = client::CheckHealth(h.front_address(), "", 2s);
  ASSERT_TRUE(health.ok() && *health == client::HealthStatus::kServing);
  ASSERT_TRUE(h.StartWorker().ok());
  client::VideoClient c = h.Client();
  FollowedJob job = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  ASSERT_NE(job.final_event(), nullptr) << job.rpc;
  EXPECT_TRUE(job.final_event()->has_completed()) << job.final_event()->DebugString();
}

}  // namespace
}  // namespace sparsevid::integration
