// API-key auth through the real gRPC adapters in one process: a server on a
// free loopback port with an API keys file, real client stubs and a worker
// stream. Missing, malformed and unknown keys are UNAUTHENTICATED, keys of the
// wrong role PERMISSION_DENIED, client keys see only their own jobs, each
// refusal is counted in sparsevid_auth_failures_total, and open streams end
// when their key leaves the keys file.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/api_keys.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/request_auth.h"
#include "server/video_service.h"
#include "server/worker_link_service.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

using std::chrono::seconds;

constexpr char kAlice[] = "alice-key-0123456789abcdef";
constexpr char kBob[] = "bob-key-0123456789abcdef";
constexpr char kOps[] = "ops-key-0123456789abcdef";
constexpr char kWorker[] = "worker-key-0123456789abcdef";
constexpr char kAliceRotated[] = "alice-rotated-0123456789";

std::chrono::system_clock::time_point In(seconds s) { return std::chrono::system_clock::now() + s; }

class FrontAuthGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sparsevid_auth");
    ASSERT_FALSE(dir_.empty());
    keys_path_ = dir_ + "/api-keys.yaml";
    WriteKeys(/*with_worker=*/true);
    // Re-read on every lookup, so a test sees its own edits at once.
    auto store = ApiKeyStore::Open(keys_path_, absl::ZeroDuration());
    ASSERT_TRUE(store.ok()) << store.status();
    keys_ = std::move(*store);
    auth_ = std::make_unique<RequestAuth>(keys_.get(), &metrics_);

    engine_ = std::make_unique<JobEngine>(testing::GrpcTestOptions(8), &metrics_);
    video_ = std::make_unique<VideoServiceImpl>(*engine_, &metrics_, auth_.get());
    link_ = std::make_unique<WorkerLinkServiceImpl>(*engine_, &metrics_, auth_.get());
    server_ = testing::StartLoopbackServer({video_.get(), link_.get()}, &port_);
    ASSERT_NE(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::VideoService::NewStub(channel_);
  }
  void TearDown() override {
    server_->Shutdown(In(seconds(1)));
    std::remove(keys_path_.c_str());
    rmdir(dir_.c_str());
  }

  // Replaced by a rename, as a Secret update does. Alice's entry holds
  // `alice_key`, or is left out when it is empty.
  void WriteKeys(bool with_worker, const std::string& alice_key = kAlice) {
    const std::string tmp = keys_path_ + ".tmp";
    {
      std::ofstream out(tmp);
      out << "keys:\n";
      if (!alice_key.empty()) {
        out << "  - {name: alice, key: \"" << alice_key << "\", role: client}\n";
      }
      out << "  - {name: bob, key: \"" << kBob << "\", role: client}\n"
          << "  - {name: ops, key: \"" << kOps << "\", role: admin}\n";
      if (with_worker) out << "  - {name: w, key: \"" << kWorker << "\", role: worker}\n";
    }
    ASSERT_EQ(std::rename(tmp.c_str(), keys_path_.c_str()), 0);
  }
  // A context carrying `authorization` (empty = none).
  static void Auth(grpc::ClientContext& ctx, const std::string& value) {
    ctx.set_deadline(In(seconds(10)));
    if (!value.empty()) ctx.AddMetadata("authorization", value);
  }
  grpc::Status Submit(const std::string& auth, const std::string& prompt, v1::Job* job) {
    grpc::ClientContext ctx;
    Auth(ctx, auth);
    return stub_->Submit(&ctx, testing::Request(prompt), job);
  }
  grpc::Status GetJob(const std::string& auth, const std::string& id, v1::Job* job) {
    grpc::ClientContext ctx;
    Auth(ctx, auth);
    v1::GetJobRequest r;
    r.set_job_id(id);
    return stub_->GetJob(&ctx, r, job);
  }
  std::string MetricsText() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_.Collect());
    return out.str();
  }

  std::string dir_, keys_path_;
  prometheus::Registry registry_;
  FrontMetrics metrics_{registry_};
  std::unique_ptr<ApiKeyStore> keys_;
  std::unique_ptr<RequestAuth> auth_;
  std::unique_ptr<JobEngine> engine_;
  std::unique_ptr<VideoServiceImpl> video_;
  std::unique_ptr<WorkerLinkServiceImpl> link_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
};

std::string Bearer(const char* key) { return std::string("Bearer ") + key; }

TEST_F(FrontAuthGrpcTest, BadCredentialsAreRefusedWithAClearStatusAndCounted) {
  struct Case {
    std::string auth;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"", grpc::StatusCode::UNAUTHENTICATED, "missing API key"},
      {"Basic YWxpY2U6eA==", grpc::StatusCode::UNAUTHENTICATED, "expected 'Bearer <key>'"},
      {"Bearer", grpc::StatusCode::UNAUTHENTICATED, "expected 'Bearer <key>'"},
      {"Bearer not-a-key-0123456789", grpc::StatusCode::UNAUTHENTICATED, "invalid API key"},
      {Bearer(kWorker), grpc::StatusCode::PERMISSION_DENIED, "role worker"},
  };
  for (const Case& c : cases) {
    v1::Job job;
    grpc::Status s = Submit(c.auth, "refused", &job);
    EXPECT_EQ(s.error_code(), c.code) << c.auth << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
    EXPECT_EQ(s.error_message().find("0123456789"), std::string::npos) << "key echoed";
  }
  EXPECT_EQ(engine_->queue_depth(), 0);  // nothing was queued

  // Streams are refused the same way.
  grpc::ClientContext ctx;
  Auth(ctx, "");
  auto reader = stub_->Generate(&ctx, testing::Request("refused"));
  EXPECT_EQ(testing::FinishWithoutMessages(*reader), grpc::StatusCode::UNAUTHENTICATED);

  // The scheme is case-insensitive, as HTTP says.
  v1::Job job;
  EXPECT_TRUE(Submit(std::string("bearer ") + kAlice, "lower-case scheme", &job).ok());

  const std::string text = MetricsText();
  EXPECT_NE(text.find("sparsevid_auth_failures_total{reason=\"missing\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("sparsevid_auth_failures_total{reason=\"malformed\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("sparsevid_auth_failures_total{reason=\"invalid\"} 1"), std::string::npos);
  EXPECT_NE(text.find("sparsevid_auth_failures_total{reason=\"forbidden\"} 1"),
            std::string::npos);
}

TEST_F(FrontAuthGrpcTest, ClientKeysSeeOnlyTheirJobsAndAdminsSeeAll) {
  v1::Job alices;
  ASSERT_TRUE(Submit(Bearer(kAlice), "alice's video", &alices).ok());
  EXPECT_EQ(alices.owner(), "alice");

  v1::Job seen;
  grpc::Status bob = GetJob(Bearer(kBob), alices.job_id(), &seen);
  EXPECT_EQ(bob.error_code(), grpc::StatusCode::NOT_FOUND) << bob.error_message();
  EXPECT_TRUE(GetJob(Bearer(kAlice), alices.job_id(), &seen).ok());
  EXPECT_TRUE(GetJob(Bearer(kOps), alices.job_id(), &seen).ok());

  {  // Bob cannot cancel it, watch it or fetch it.
    grpc::ClientContext ctx;
    Auth(ctx, Bearer(kBob));
    v1::CancelJobRequest r;
    r.set_job_id(alices.job_id());
    v1::Job out;
    EXPECT_EQ(stub_->CancelJob(&ctx, r, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Auth(ctx, Bearer(kBob));
    v1::WatchRequest r;
    r.set_job_id(alices.job_id());
    auto reader = stub_->Watch(&ctx, r);
    EXPECT_EQ(testing::FinishWithoutMessages(*reader), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Auth(ctx, Bearer(kBob));
    v1::FetchResultRequest r;
    r.set_job_id(alices.job_id());
    auto reader = stub_->FetchResult(&ctx, r);
    EXPECT_EQ(testing::FinishWithoutMessages(*reader), grpc::StatusCode::NOT_FOUND);
  }
  ASSERT_TRUE(GetJob(Bearer(kAlice), alices.job_id(), &seen).ok());
  EXPECT_EQ(seen.state(), v1::JOB_STATE_QUEUED);

  auto list = [&](const char* key) {
    grpc::ClientContext ctx;
    Auth(ctx, Bearer(key));
    v1::ListJobsResponse resp;
    EXPECT_TRUE(stub_->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
    return resp.jobs_size();
  };
  EXPECT_EQ(list(kBob), 0);
  EXPECT_EQ(list(kAlice), 1);
  EXPECT_EQ(list(kOps), 1);
}

TEST_F(FrontAuthGrpcTest, WorkerLinkTakesWorkerKeysOnly) {
  for (const std::string& auth : {std::string(), Bearer(kAlice), Bearer(kOps)}) {
    auto stub = v1::WorkerLink::NewStub(channel_);
    grpc::ClientContext ctx;
    Auth(ctx, auth);
    auto stream = stub->Connect(&ctx);
    v1::WorkerMessage hello;
    *hello.mutable_hello() = testing::Hello("intruder");
    stream->Write(hello);
    v1::FrontMessage m;
    EXPECT_FALSE(stream->Read(&m));
    const grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), auth.empty() ? grpc::StatusCode::UNAUTHENTICATED
                                           : grpc::StatusCode::PERMISSION_DENIED)
        << auth << ": " << s.error_message();
  }
  EXPECT_EQ(engine_->connected_workers(), 0);

  // A worker key links, and gets the queued job.
  v1::Job job;
  ASSERT_TRUE(Submit(Bearer(kAlice), "for the worker", &job).ok());
  testing::ScriptedWorker worker(channel_, "w1", Bearer(kWorker));
  const v1::FrontMessage assign = worker.Read();
  ASSERT_TRUE(assign.has_assign());
  EXPECT_EQ(assign.assign().job_id(), job.job_id());
  worker.ctx.TryCancel();
}

TEST_F(FrontAuthGrpcTest, RemovingAWorkerKeyCutsOffItsOpenLink) {
  auto worker = std::make_unique<testing::ScriptedWorker>(channel_, "w1", Bearer(kWorker),
                                                          /*ready=*/false);
  EXPECT_EQ(engine_->connected_workers(), 1);
  EXPECT_EQ(link_->DropRevokedWorkers(), 0);  // still listed

  WriteKeys(/*with_worker=*/false);
  EXPECT_EQ(link_->DropRevokedWorkers(), 1);
  // Dropped at once, or by its stream as soon as it has finished handling
  // the hello (the Welcome can reach the worker before that).
  for (int i = 0; i < 200 && engine_->connected_workers() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine_->connected_workers(), 0);  // no job reaches it any more
  EXPECT_EQ(link_->DropRevokedWorkers(), 0);   // counted once
  v1::Job job;
  ASSERT_TRUE(Submit(Bearer(kAlice), "not for a revoked worker", &job).ok());

  // The stream ends at once, saying why, though the worker sends nothing
  // (an idle worker would otherwise stay linked to nothing until its 30 s
  // deadline: DEADLINE_EXCEEDED below).
  v1::FrontMessage msg;
  EXPECT_FALSE(worker->stream->Read(&msg)) << msg.DebugString();
  const grpc::Status s = worker->stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_NE(s.error_message().find("'w' was revoked"), std::string::npos) << s.error_message();
  ASSERT_TRUE(GetJob(Bearer(kAlice), job.job_id(), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);

  // A new stream with the old key is refused; the key restored links again.
  {
    auto stub = v1::WorkerLink::NewStub(channel_);
    grpc::ClientContext again;
    Auth(again, Bearer(kWorker));
    auto refused = stub->Connect(&again);
    v1::FrontMessage none;
    EXPECT_FALSE(refused->Read(&none));
    EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  WriteKeys(/*with_worker=*/true);
  testing::ScriptedWorker back(channel_, "w1", Bearer(kWorker));  // the same id is free again
  EXPECT_EQ(back.Read().assign().job_id(), job.job_id());
  back.ctx.TryCancel();
}

// An open server stream of a test client.
template <typename T>
struct OpenStream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<T>> reader;
  // Reads to the end; the status the stream ended with.
  grpc::Status Drain() {
    T msg;
    while (reader->Read(&msg)) {
    }
    return reader->Finish();
  }
};

void ExpectRevoked(const grpc::Status& s) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_NE(s.error_message().find("API key 'alice' was revoked"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(s.error_message().find("0123456789"), std::string::npos) << "key echoed";
}

TEST_F(FrontAuthGrpcTest, RemovingAClientKeyEndsItsOpenStreams) {
  v1::Job alices, bobs;
  ASSERT_TRUE(Submit(Bearer(kAlice), "watched", &alices).ok());
  ASSERT_TRUE(Submit(Bearer(kBob), "bob's", &bobs).ok());
  using Events = OpenStream<v1::JobEvent>;
  // Opens a Watch and reads its first (queued) event, so it is surely open.
  auto watch = [&](const char* key, const std::string& id) {
    auto o = std::make_unique<Events>();
    Auth(o->ctx, Bearer(key));
    v1::WatchRequest r;
    r.set_job_id(id);
    o->reader = stub_->Watch(&o->ctx, r);
    v1::JobEvent first;
    EXPECT_TRUE(o->reader->Read(&first));
    return o;
  };
  auto alice_watch = watch(kAlice, alices.job_id());
  auto alice_generate = std::make_unique<Events>();
  Auth(alice_generate->ctx, Bearer(kAlice));
  alice_generate->reader = stub_->Generate(&alice_generate->ctx, testing::Request("generated"));
  v1::JobEvent first;
  ASSERT_TRUE(alice_generate->reader->Read(&first));
  const std::string generated = first.job_id();
  auto bob_watch = watch(kBob, bobs.job_id());
  auto ops_watch = watch(kOps, alices.job_id());
  EXPECT_EQ(video_->EndRevokedStreams(), 0);  // every key still listed

  WriteKeys(/*with_worker=*/true, /*alice_key=*/"");
  EXPECT_EQ(video_->EndRevokedStreams(), 2);
  ExpectRevoked(alice_watch->Drain());
  ExpectRevoked(alice_generate->Drain());
  EXPECT_EQ(video_->EndRevokedStreams(), 0);  // counted once

  // The jobs are left as they were, Generate's too (not a disconnect).
  v1::Job job;
  ASSERT_TRUE(GetJob(Bearer(kOps), generated, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(GetJob(Bearer(kOps), alices.job_id(), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);

  // Other keys' streams run on: they still get their job's next event.
  for (auto [stream, key, id] : {std::make_tuple(bob_watch.get(), kBob, bobs.job_id()),
                                 std::make_tuple(ops_watch.get(), kOps, alices.job_id())}) {
    grpc::ClientContext ctx;
    Auth(ctx, Bearer(key));
    v1::CancelJobRequest r;
    r.set_job_id(id);
    ASSERT_TRUE(stub_->CancelJob(&ctx, r, &job).ok());
    v1::JobEvent e;
    ASSERT_TRUE(stream->reader->Read(&e)) << key;
    EXPECT_TRUE(e.has_cancelled()) << e.DebugString();
    EXPECT_EQ(stream->Drain().error_code(), grpc::StatusCode::CANCELLED);
  }

  // A new stream with the removed key is refused as before.
  Events refused;
  Auth(refused.ctx, Bearer(kAlice));
  v1::WatchRequest r;
  r.set_job_id(generated);
  refused.reader = stub_->Watch(&refused.ctx, r);
  EXPECT_EQ(testing::FinishWithoutMessages(*refused.reader), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(FrontAuthGrpcTest, ARotatedClientKeyEndsTheOldKeysStreamsOnly) {
  v1::Job job;
  ASSERT_TRUE(Submit(Bearer(kAlice), "rotated", &job).ok());
  auto open = [&](const char* key) {
    auto o = std::make_unique<OpenStream<v1::JobEvent>>();
    Auth(o->ctx, Bearer(key));
    v1::WatchRequest r;
    r.set_job_id(job.job_id());
    o->reader = stub_->Watch(&o->ctx, r);
    v1::JobEvent first;
    EXPECT_TRUE(o->reader->Read(&first)) << key;
    return o;
  };
  auto old_key = open(kAlice);
  // Same name, new key: the name's jobs stay Alice's, the old key's stream ends.
  WriteKeys(/*with_worker=*/true, kAliceRotated);
  auto new_key = open(kAliceRotated);
  EXPECT_EQ(video_->EndRevokedStreams(), 1);
  ExpectRevoked(old_key->Drain());
  grpc::ClientContext ctx;
  Auth(ctx, Bearer(kAliceRotated));
  v1::CancelJobRequest r;
  r.set_job_id(job.job_id());
  ASSERT_TRUE(stub_->CancelJob(&ctx, r, &job).ok());
  EXPECT_EQ(new_key->Drain().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(FrontAuthGrpcTest, RemovingAClientKeyEndsItsResultDownload) {
  v1::Job job;
  ASSERT_TRUE(Submit(Bearer(kAlice), "a long video", &job).ok());
  // An 8 MiB result, played in by a worker on the engine directly.
  auto channel = std::make_shared<testing::RecordingChannel>();
  ASSERT_TRUE(engine_->AddWorker(testing::Hello("w-local"), channel).ok());
  ASSERT_TRUE(engine_->WorkerReady("w-local", 1).ok());
  constexpr int kChunks = 16;
  const std::string chunk(512 << 10, 'v');
  for (int i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(engine_
                    ->WorkerEvent("w-local", testing::ChunkEvent(job.job_id(), i * chunk.size(),
                                                                 chunk, i == kChunks - 1))
                    .ok());
  }
  ASSERT_TRUE(engine_->WorkerEvent("w-local", testing::CompletedEvent(job.job_id())).ok());
  const int64_t total = int64_t{kChunks} * static_cast<int64_t>(chunk.size());

  // A client that reads one 16 KiB chunk and then waits: HTTP/2 flow control
  // (a fixed 64 KiB window without BDP probing) holds the front back.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto stub = v1::VideoService::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials(), args));
  OpenStream<v1::Chunk> fetch;
  Auth(fetch.ctx, Bearer(kAlice));
  v1::FetchResultRequest r;
  r.set_job_id(job.job_id());
  r.set_chunk_bytes(16 << 10);
  fetch.reader = stub->FetchResult(&fetch.ctx, r);
  v1::Chunk c;
  ASSERT_TRUE(fetch.reader->Read(&c));
  int64_t received = static_cast<int64_t>(c.data().size());

  WriteKeys(/*with_worker=*/true, /*alice_key=*/"");
  EXPECT_EQ(video_->EndRevokedStreams(), 1);
  while (fetch.reader->Read(&c)) received += static_cast<int64_t>(c.data().size());
  ExpectRevoked(fetch.reader->Finish());
  EXPECT_LT(received, total / 2);
}

}  // namespace
}  // namespace sparsevid::front
