#include "server/worker_link_service.h"

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace sparsevid::front {
namespace {

using sparsevid::v1::FrontMessage;
using sparsevid::v1::WorkerMessage;

class WorkerStream;

// The engine's handle on the stream. Send only queues (called under the
// engine lock); it touches the reactor only while the stream is alive.
class StreamChannel final : public WorkerChannel {
 public:
  explicit StreamChannel(WorkerStream* stream) : stream_(stream) {}
  void Send(const FrontMessage& message) override;
  // Called from the reactor when its write completes.
  void OnWriteDone(bool ok, const std::function<void()>& finish_if_pending);
  // No more writes: returns true if a write is still in flight.
  bool Close();

 private:
  std::mutex mu_;
  WorkerStream* stream_;  // null once closed
  std::deque<FrontMessage> outbox_;
  bool writing_ = false;
};

class WorkerStream final : public grpc::ServerBidiReactor<WorkerMessage, FrontMessage> {
 public:
  // `links` null: auth off, no revocation bookkeeping.
  WorkerStream(JobEngine& engine, FrontMetrics* metrics, grpc::CallbackServerContext* context,
               RevocableStreams* links, const ApiKey& key)
      : engine_(engine),
        metrics_(metrics),
        context_(context),
        channel_(std::make_shared<StreamChannel>(this)),
        links_(links),
        key_name_(key.name) {
    if (links_ != nullptr) link_ = links_->Add(key, [this] { OnKeyRevoked(); });
    StartRead(&in_);
  }

  void Write(const FrontMessage* message) { StartWrite(message); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End(absl::OkStatus(), "stream closed by the worker");
      return;
    }
    absl::Status s = Handle(in_);
    if (!s.ok()) {
      logging::Warn(s.code() == absl::StatusCode::kUnauthenticated
                        ? "worker link ended: its API key was revoked"
                        : "worker protocol violation",
                    {{"worker", WorkerId()}, {"error", std::string(s.message())}});
      End(s, std::string(s.message()));
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    channel_->OnWriteDone(ok, [this] { FinishNow(); });
  }

  void OnCancel() override { End(absl::CancelledError("worker stream cancelled"), "cancelled"); }

  void OnDone() override {
    End(absl::CancelledError("stream done"), "stream done");
    // A revocation ended the stream without leaving the registry (it ran
    // inside the registry's callback); Remove is a no-op otherwise.
    if (links_ != nullptr) links_->Remove(link_);
    delete this;
  }

 private:
  std::string WorkerId() {
    std::lock_guard<std::mutex> lock(mu_);
    return worker_id_;
  }

  // The key left the keys file (on DropRevokedWorkers' thread, never after
  // End has left the registry): no more jobs, and the stream ends now. An
  // idle worker sends nothing, so waiting for its next message would leave
  // it linked to nothing, healthy-looking, never dialling again.
  void OnKeyRevoked() {
    revoked_.store(true);
    std::string leave;
    {
      std::lock_guard<std::mutex> lock(mu_);
      leave = TakeEngineExitLocked();
    }
    logging::Warn("worker API key revoked: no more jobs for this worker",
                  {{"worker", WorkerId()}, {"key", key_name_}});
    if (!leave.empty()) engine_.RemoveWorker(leave, "API key revoked");
    End(KeyRevokedError(key_name_), "API key revoked", /*unregister=*/false);
  }

  // The worker id to remove from the engine, once: the hello, End and a
  // revocation race for it, and whoever comes first under mu_ takes it
  // ("" = not in the engine, or already taken).
  std::string TakeEngineExitLocked() {
    if (worker_id_.empty() || left_engine_) return "";
    left_engine_ = true;
    return worker_id_;
  }

  absl::Status Handle(const WorkerMessage& m) {
    if (revoked_.load()) return KeyRevokedError(key_name_);
    switch (m.msg_case()) {
      case WorkerMessage::kHello: {
        if (!WorkerId().empty()) {
          return absl::InvalidArgumentError("hello: sent twice on one stream");
        }
        absl::Status s = engine_.AddWorker(m.hello(), channel_);
        if (!s.ok()) return s;
        std::string leave;
        bool revoked;
        {
          std::lock_guard<std::mutex> lock(mu_);
          worker_id_ = m.hello().worker_id();
          // Ended or revoked while the hello was handled (End and
          // OnKeyRevoked saw no worker id yet): leave here, nobody else will.
          revoked = revoked_.load();
          if (ended_ || revoked) leave = TakeEngineExitLocked();
        }
        if (!leave.empty()) {
          engine_.RemoveWorker(leave, revoked ? "API key revoked" : "stream ended");
        }
        if (revoked) return KeyRevokedError(key_name_);
        return absl::OkStatus();
      }
      case WorkerMessage::kReady:
        if (WorkerId().empty()) return absl::InvalidArgumentError("ready: before hello");
        return engine_.WorkerReady(WorkerId(), m.ready().free_slots());
      case WorkerMessage::kJobEvent:
        if (WorkerId().empty()) return absl::InvalidArgumentError("job_event: before hello");
        return engine_.WorkerEvent(WorkerId(), m.job_event());
      default:
        return absl::InvalidArgumentError("msg: empty or unknown worker message");
    }
  }

  // Ends the stream once: the worker leaves the engine first (which may
  // still Send through the channel), then the channel closes. `unregister`
  // false: called from the registry's own callback, where Remove would wait
  // for itself; OnDone removes the entry then.
  void End(const absl::Status& status, const std::string& why, bool unregister = true) {
    std::string leave;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      ended_ = true;
      final_status_ = ToGrpcStatus(status, context_);
      // Not when a revocation already dropped the worker: its id may be in
      // use again by a new stream.
      leave = TakeEngineExitLocked();
    }
    if (unregister && links_ != nullptr) links_->Remove(link_);  // OnKeyRevoked is over
    if (!leave.empty()) engine_.RemoveWorker(leave, why);
    if (metrics_) metrics_->OnRpc("WorkerLink.Connect", final_status_.error_code());
    if (!channel_->Close()) FinishNow();
  }

  void FinishNow() {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    Finish(final_status_);
  }

  JobEngine& engine_;
  FrontMetrics* metrics_;
  grpc::CallbackServerContext* context_;
  std::shared_ptr<StreamChannel> channel_;
  WorkerMessage in_;
  RevocableStreams* const links_;
  const std::string key_name_;
  uint64_t link_ = 0;
  std::atomic<bool> revoked_{false};  // set by OnKeyRevoked
  std::mutex mu_;
  std::string worker_id_;  // set by a successful hello
  bool left_engine_ = false;  // see TakeEngineExitLocked
  bool ended_ = false;
  bool finished_ = false;
  grpc::Status final_status_;
};

// A stream refused before its first read (authentication).
class RejectedStream final : public grpc::ServerBidiReactor<WorkerMessage, FrontMessage> {
 public:
  explicit RejectedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

void StreamChannel::Send(const FrontMessage& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ == nullptr) return;
  outbox_.push_back(message);
  if (!writing_) {
    writing_ = true;
    stream_->Write(&outbox_.front());
  }
}

void StreamChannel::OnWriteDone(bool ok, const std::function<void()>& finish_if_pending) {
  bool finish = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!outbox_.empty()) outbox_.pop_front();
    if (ok && stream_ != nullptr && !outbox_.empty()) {
      stream_->Write(&outbox_.front());
      return;
    }
    writing_ = false;
    finish = stream_ == nullptr;  // closed while this write was in flight
    if (!ok) outbox_.clear();
  }
  if (finish) finish_if_pending();
}

bool StreamChannel::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  stream_ = nullptr;
  return writing_;
}

}  // namespace

grpc::ServerBidiReactor<WorkerMessage, FrontMessage>* WorkerLinkServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  if (auth_ == nullptr || !auth_->enabled()) {
    return new WorkerStream(engine_, metrics_, context, nullptr, ApiKey{});
  }
  absl::StatusOr<ApiKey> key = auth_->WorkerKey(*context);
  if (!key.ok()) {
    logging::Warn("worker stream refused", {{"peer", context->peer()},
                                            {"error", std::string(key.status().message())}});
    grpc::Status g = ToGrpcStatus(key.status(), context);
    if (metrics_) metrics_->OnRpc("WorkerLink.Connect", g.error_code());
    return new RejectedStream(g);
  }
  return new WorkerStream(engine_, metrics_, context, &links_, *key);
}

}  // namespace sparsevid::front
