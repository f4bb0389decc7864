// The gRPC adapters end to end inside one process: a real server on a free
// loopback port, real clients, and a scripted worker speaking WorkerLink.
#include <chrono>
#include <memory>
#include <thread>

#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/video_service.h"
#include "server/worker_link_service.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

using std::chrono::seconds;

std::chrono::system_clock::time_point In(seconds s) { return std::chrono::system_clock::now() + s; }

class FrontGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = std::make_unique<JobEngine>(testing::GrpcTestOptions(2), &metrics_);
    engine_->StartTicker(absl::Milliseconds(20));
    video_ = std::make_unique<VideoServiceImpl>(*engine_, &metrics_);
    link_ = std::make_unique<WorkerLinkServiceImpl>(*engine_, &metrics_);
    server_ = testing::StartLoopbackServer({video_.get(), link_.get()}, &port_);
    ASSERT_NE(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::VideoService::NewStub(channel_);
  }
  void TearDown() override {
    server_->Shutdown(In(seconds(1)));
    engine_->StopTicker();
  }

  prometheus::Registry registry_;
  FrontMetrics metrics_{registry_};
  std::unique_ptr<JobEngine> engine_;
  std::unique_ptr<VideoServiceImpl> video_;
  std::unique_ptr<WorkerLinkServiceImpl> link_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
};

using testing::ScriptedWorker;

TEST_F(FrontGrpcTest, GenerateStreamsEventsAndChunksThenFetchResult) {
  ScriptedWorker worker(channel_, "w1");
  grpc::ClientContext ctx;
  ctx.set_deadline(In(seconds(20)));
  v1::GenerateRequest req = testing::Request("a red circle");
  auto reader = stub_->Generate(&ctx, req);

  v1::FrontMessage assign = worker.Read();
  ASSERT_TRUE(assign.has_assign());
  const std::string id = assign.assign().job_id();
  EXPECT_GT(assign.assign().deadline_unix_seconds(), 0);  // client deadline passed on
  worker.Send(testing::ProgressEvent(id, 1, 4));
  worker.Send(testing::ChunkEvent(id, 0, "abc", false));
  worker.Send(testing::ChunkEvent(id, 3, "def", true));
  worker.Send(testing::CompletedEvent(id));

  std::string video;
  bool completed = false;
  v1::JobEvent ev;
  int64_t last_seq = 0;
  while (reader->Read(&ev)) {
    EXPECT_EQ(ev.seq(), last_seq + 1);
    last_seq = ev.seq();
    if (ev.has_chunk()) video += ev.chunk().data();
    completed |= ev.has_completed();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(completed);
  EXPECT_EQ(video, "abcdef");

  grpc::ClientContext fctx;
  v1::FetchResultRequest f;
  f.set_job_id(id);
  f.set_offset(1);
  f.set_chunk_bytes(2);
  auto fr = stub_->FetchResult(&fctx, f);
  std::string fetched;
  v1::Chunk c;
  bool last = false;
  while (fr->Read(&c)) {
    EXPECT_EQ(c.offset(), 1 + static_cast<int64_t>(fetched.size()));
    fetched += c.data();
    last = c.last();
  }
  EXPECT_TRUE(fr->Finish().ok());
  EXPECT_EQ(fetched, "bcdef");
  EXPECT_TRUE(last);

  // Watch after the fact replays from a sequence number.
  grpc::ClientContext wctx;
  v1::WatchRequest w;
  w.set_job_id(id);
  w.set_after_seq(2);
  auto wr = stub_->Watch(&wctx, w);
  std::vector<v1::JobEvent> replay;
  while (wr->Read(&ev)) replay.push_back(ev);
  EXPECT_TRUE(wr->Finish().ok());
  ASSERT_FALSE(replay.empty());
  EXPECT_EQ(replay.front().seq(), 3);
  EXPECT_TRUE(replay.back().has_completed());
  for (const auto& e : replay) EXPECT_FALSE(e.has_chunk());  // not asked for
}

TEST_F(FrontGrpcTest, StatusCodesAtTheEdge) {
  grpc::ClientContext c1;
  v1::Job job;
  v1::GenerateRequest bad = testing::Request("");
  grpc::Status s = stub_->Submit(&c1, bad, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("prompt:", 0), 0u) << s.error_message();

  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->Submit(&c, testing::Request("fill"), &job).ok());
  }
  grpc::ClientContext c2;
  s = stub_->Submit(&c2, testing::Request("overflow"), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  absl::Status back = FromGrpcStatus(s);
  ASSERT_TRUE(GetRetryDelay(back).has_value());
  auto trailer = c2.GetServerTrailingMetadata().find("grpc-retry-pushback-ms");
  ASSERT_NE(trailer, c2.GetServerTrailingMetadata().end());
  EXPECT_GT(std::stoi(std::string(trailer->second.data(), trailer->second.size())), 0);

  grpc::ClientContext c3;
  v1::GetJobRequest g;
  g.set_job_id("j-unknown");
  EXPECT_EQ(stub_->GetJob(&c3, g, &job).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext c4;
  v1::FetchResultRequest f;
  f.set_job_id(job.job_id());
  auto fr = stub_->FetchResult(&c4, f);
  EXPECT_EQ(testing::FinishWithoutMessages(*fr), grpc::StatusCode::FAILED_PRECONDITION);

  grpc::ClientContext c5;
  f.set_chunk_bytes(-1);
  fr = stub_->FetchResult(&c5, f);
  EXPECT_EQ(fr->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  engine_->StartDrain();
  grpc::ClientContext c6;
  EXPECT_EQ(stub_->Submit(&c6, testing::Request("late"), &job).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(FrontGrpcTest, GenerateDisconnectCancelsRunningJob) {
  ScriptedWorker worker(channel_, "w1");
  auto ctx = std::make_unique<grpc::ClientContext>();
  auto reader = stub_->Generate(ctx.get(), testing::Request("to cancel"));
  v1::FrontMessage assign = worker.Read();
  ASSERT_TRUE(assign.has_assign());
  const std::string id = assign.assign().job_id();
  ctx->TryCancel();
  reader->Finish();
  v1::FrontMessage cancel = worker.Read();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().job_id(), id);
  EXPECT_EQ(engine_->GetJob(id)->state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(FrontGrpcTest, WorkerStreamBreakRequeuesAndGarbageEndsOnlyThatStream) {
  std::string id;
  {
    ScriptedWorker worker(channel_, "w1");
    grpc::ClientContext c;
    v1::Job job;
    ASSERT_TRUE(stub_->Submit(&c, testing::Request("x"), &job).ok());
    id = job.job_id();
    ASSERT_TRUE(worker.Read().has_assign());
    worker.ctx.TryCancel();  // the worker vanishes mid-job
  }
  for (int i = 0; i < 200 && engine_->GetJob(id)->state() != v1::JOB_STATE_QUEUED; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine_->GetJob(id)->state(), v1::JOB_STATE_QUEUED);

  // A peer that sends an event before hello is cut off with INVALID_ARGUMENT.
  auto stub = v1::WorkerLink::NewStub(channel_);
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  v1::WorkerMessage m;
  m.mutable_ready()->set_free_slots(1);
  stream->Write(m);
  v1::FrontMessage out;
  EXPECT_FALSE(stream->Read(&out));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // The front still serves: a good worker picks the requeued job up.
  ScriptedWorker second(channel_, "w2");
  v1::FrontMessage assign = second.Read();
  ASSERT_TRUE(assign.has_assign());
  EXPECT_EQ(assign.assign().job_id(), id);
  EXPECT_EQ(assign.assign().attempt(), 2);
}

}  // namespace
}  // namespace sparsevid::front
