#include "server/worker_link_service.h"

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
               WorkerLinkServiceImpl* links, const ApiKey& key)
      : engine_(engine),
        metrics_(metrics),
        context_(context),
        channel_(std::make_shared<StreamChannel>(this)),
        links_(links),
        key_name_(key.name) {
    if (links_ != nullptr) link_ = links_->AddLink(key, &revoked_);
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
    delete this;
  }

 private:
  std::string WorkerId() {
    std::lock_guard<std::mutex> lock(mu_);
    return worker_id_;
  }

  absl::Status Handle(const WorkerMessage& m) {
    if (revoked_ && revoked_->load()) {
      return absl::UnauthenticatedError(
          absl::StrCat("API key '", key_name_, "' was removed from the front's keys"));
    }
    switch (m.msg_case()) {
      case WorkerMessage::kHello: {
        if (!WorkerId().empty()) {
          return absl::InvalidArgumentError("hello: sent twice on one stream");
        }
        absl::Status s = engine_.AddWorker(m.hello(), channel_);
        if (!s.ok()) return s;
        if (links_ != nullptr) {
          links_->SetLinkWorker(link_, m.hello().worker_id());
          // Revoked while the hello was handled (DropRevokedWorkers saw no
          // worker id yet): leave the engine here, nobody else will.
          if (revoked_->load()) {
            engine_.RemoveWorker(m.hello().worker_id(), "API key revoked");
            return absl::UnauthenticatedError(
                absl::StrCat("API key '", key_name_, "' was removed from the front's keys"));
          }
        }
        bool ended;
        {
          std::lock_guard<std::mutex> lock(mu_);
          worker_id_ = m.hello().worker_id();
          ended = ended_;
        }
        // The stream ended while the hello was handled: undo it.
        if (ended) engine_.RemoveWorker(m.hello().worker_id(), "stream ended");
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
  // still Send through the channel), then the channel closes.
  void End(const absl::Status& status, const std::string& why) {
    std::string worker_id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      ended_ = true;
      final_status_ = ToGrpcStatus(status, context_);
      worker_id = worker_id_;
    }
    if (links_ != nullptr) links_->RemoveLink(link_);
    // A revoked worker was already dropped from the engine (and its id may
    // be in use again by a new stream).
    const bool revoked = revoked_ && revoked_->load();
    if (!worker_id.empty() && !revoked) engine_.RemoveWorker(worker_id, why);
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
  WorkerLinkServiceImpl* const links_;
  const std::string key_name_;
  uint64_t link_ = 0;
  std::shared_ptr<std::atomic<bool>> revoked_;  // set by DropRevokedWorkers
  std::mutex mu_;
  std::string worker_id_;  // set by a successful hello
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
  return new WorkerStream(engine_, metrics_, context, this, *key);
}

uint64_t WorkerLinkServiceImpl::AddLink(const ApiKey& key,
                                        std::shared_ptr<std::atomic<bool>>* revoked) {
  absl::MutexLock lock(&links_mu_);
  const uint64_t id = next_link_++;
  Link& l = links_[id];
  l.key = key;
  *revoked = l.revoked;
  return id;
}

void WorkerLinkServiceImpl::SetLinkWorker(uint64_t link, const std::string& worker_id) {
  absl::MutexLock lock(&links_mu_);
  auto it = links_.find(link);
  if (it != links_.end()) it->second.worker_id = worker_id;
}

void WorkerLinkServiceImpl::RemoveLink(uint64_t link) {
  absl::MutexLock lock(&links_mu_);
  links_.erase(link);
}

int WorkerLinkServiceImpl::DropRevokedWorkers() {
  if (auth_ == nullptr || !auth_->enabled()) return 0;
  std::vector<std::pair<std::string, std::string>> dropped;  // worker id, key name
  {
    absl::MutexLock lock(&links_mu_);
    for (auto& [id, link] : links_) {
      if (link.revoked->load() || auth_->StillValid(link.key)) continue;
      link.revoked->store(true);
      dropped.emplace_back(link.worker_id, link.key.name);
    }
  }
  for (const auto& [worker_id, key_name] : dropped) {
    logging::Warn("worker API key revoked: no more jobs for this worker",
                  {{"worker", worker_id}, {"key", key_name}});
    if (!worker_id.empty()) engine_.RemoveWorker(worker_id, "API key revoked");
  }
  return static_cast<int>(dropped.size());
}

}  // namespace sparsevid::front
