// Test doubles for the job engine: a settable clock and a worker channel
// that records what the front sends, plus helpers to play a worker.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/job_engine.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"

namespace sparsevid::front::testing {

class FakeClock {
 public:
  absl::Time Now() const {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> l(mu_);
    now_ += d;
  }
  JobEngine::Clock AsClock() {
    return [this] { return Now(); };
  }

 private:
  mutable std::mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

class RecordingChannel : public WorkerChannel {
 public:
  void Send(const v1::FrontMessage& m) override {
    std::lock_guard<std::mutex> l(mu_);
    sent_.push_back(m);
  }
  std::vector<v1::FrontMessage> Take() {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<v1::FrontMessage> out;
    out.swap(sent_);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<v1::FrontMessage> sent_;
};

inline v1::ModelLimits TestLimits() {
  v1::ModelLimits l;
  l.set_spatial_multiple(16);
  l.set_max_width(256);
  l.set_max_height(256);
  l.set_min_frames(1);
  l.set_max_frames(17);
  l.set_frame_multiple(4);
  l.set_max_prompt_tokens(64);
  l.set_default_width(32);
  l.set_default_height(32);
  l.set_default_frames(5);
  l.set_default_fps(8);
  l.set_default_steps(4);
  l.set_default_guidance(5.0f);
  l.set_default_shift(3.0f);
  l.set_default_keep_ratio(0.5f);
  l.set_step_seconds_estimate(0.5);
  return l;
}

inline v1::WorkerHello Hello(const std::string& id, int capacity = 1,
                             const std::string& model = "tiny") {
  v1::WorkerHello h;
  h.set_worker_id(id);
  h.set_model(model);
  h.set_device("cpu");
  h.set_capacity(capacity);
  *h.mutable_limits() = TestLimits();
  return h;
}

inline v1::GenerateRequest Request(const std::string& prompt, int priority = 0) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.set_priority(priority);
  return r;
}

inline v1::WorkerJobEvent ProgressEvent(const std::string& job_id, int step, int total) {
  v1::WorkerJobEvent e;
  e.set_job_id(job_id);
  auto* p = e.mutable_event()->mutable_progress();
  p->set_stage("denoise");
  p->set_step(step);
  p->set_total(total);
  p->set_step_seconds(0.1);
  return e;
}

inline v1::WorkerJobEvent ChunkEvent(const std::string& job_id, int64_t offset,
                                     const std::string& data, bool last) {
  v1::WorkerJobEvent e;
  e.set_job_id(job_id);
  auto* c = e.mutable_event()->mutable_chunk();
  c->set_offset(offset);
  c->set_data(data);
  c->set_last(last);
  return e;
}

inline v1::WorkerJobEvent CompletedEvent(const std::string& job_id) {
  v1::WorkerJobEvent e;
  e.set_job_id(job_id);
  e.mutable_event()->mutable_completed()->mutable_stats()->set_frames(5);
  return e;
}

inline v1::WorkerJobEvent CancelledEvent(const std::string& job_id) {
  v1::WorkerJobEvent e;
  e.set_job_id(job_id);
  e.mutable_event()->mutable_cancelled()->set_reason("stopped");
  return e;
}

// Job ids of the Assign messages in `msgs`.
inline std::vector<std::string> Assigned(const std::vector<v1::FrontMessage>& msgs) {
  std::vector<std::string> ids;
  for (const auto& m : msgs) {
    if (m.has_assign()) ids.push_back(m.assign().job_id());
  }
  return ids;
}

// Engine options the in-process gRPC tests share (the TestLimits model "tiny").
inline EngineOptions GrpcTestOptions(int queue_capacity) {
  EngineOptions o;
  o.queue_capacity = queue_capacity;
  o.default_limits = TestLimits();
  o.default_model = "tiny";
  return o;
}

// `services` on a free 127.0.0.1 port (written to *port); null on failure.
inline std::unique_ptr<grpc::Server> StartLoopbackServer(
    const std::vector<grpc::Service*>& services, int* port) {
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  for (grpc::Service* s : services) b.RegisterService(s);
  return b.BuildAndStart();
}

// A worker on a synchronous client stream, played by a test: Hello (with
// `authorization` when not empty), the front's Welcome, then Ready(1)
// unless `ready` is false.
struct ScriptedWorker {
  ScriptedWorker(std::shared_ptr<grpc::Channel> channel, const std::string& id,
                 const std::string& authorization = "", bool ready = true) {
    stub = v1::WorkerLink::NewStub(channel);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    stream = stub->Connect(&ctx);
    v1::WorkerMessage m;
    *m.mutable_hello() = Hello(id);
    EXPECT_TRUE(stream->Write(m));
    EXPECT_TRUE(Read().has_welcome());  // the front accepted the hello
    if (ready) Ready(1);
  }
  v1::FrontMessage Read() {
    v1::FrontMessage m;
    EXPECT_TRUE(stream->Read(&m));
    return m;
  }
  void Ready(int free_slots) {
    v1::WorkerMessage m;
    m.mutable_ready()->set_free_slots(free_slots);
    stream->Write(m);
  }
  void Send(const v1::WorkerJobEvent& e) {
    v1::WorkerMessage m;
    *m.mutable_job_event() = e;
    EXPECT_TRUE(stream->Write(m));
  }
  std::unique_ptr<v1::WorkerLink::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::FrontMessage>> stream;
};

// The code a server stream ends with when it must send nothing first.
template <typename T>
grpc::StatusCode FinishWithoutMessages(grpc::ClientReader<T>& reader) {
  T msg;
  const bool got = reader.Read(&msg);
  if (got) ADD_FAILURE() << "the stream sent a message before its status";
  return reader.Finish().error_code();
}

// A fresh directory under /tmp (the caller removes what it puts there).
inline std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
  return mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
}

// Every event of a job from after_seq on (chunks included).
inline std::vector<v1::JobEvent> AllEvents(const JobEngine& engine, const std::string& job_id,
                                           int64_t after_seq = 0, bool chunks = true) {
  std::vector<v1::JobEvent> out;
  while (true) {
    auto r = engine.NextEvent(job_id, after_seq, chunks);
    if (!r.ok() || !r->event) break;
    after_seq = r->event->seq();
    out.push_back(*r->event);
  }
  return out;
}

}  // namespace sparsevid::front::testing
