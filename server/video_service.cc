#include "server/video_service.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"

namespace sparsevid::front {
namespace {

using sparsevid::v1::Chunk;
using sparsevid::v1::JobEvent;

constexpr int64_t kMaxChunkBytes = 1 << 20;

// The client's deadline, or InfiniteFuture when it set none.
absl::Time ClientDeadline(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  const absl::Time t = absl::FromChrono(deadline);
  return t - absl::Now() > absl::Hours(24 * 365) ? absl::InfiniteFuture() : t;
}

// Streams a job's events: replay after `after_seq`, then live, ending with
// the job's outcome as the RPC status (OK for a succeeded job), or with
// UNAUTHENTICATED once its API key is revoked (`revocable` null: auth off).
class EventStream final : public grpc::ServerWriteReactor<JobEvent> {
 public:
  EventStream(JobEngine& engine, FrontMetrics* metrics, const char* method,
              grpc::CallbackServerContext* context, Caller caller, std::string job_id,
              int64_t after_seq, bool include_chunks, bool cancel_on_disconnect,
              RevocableStreams* revocable, const ApiKey& key)
      : engine_(engine),
        metrics_(metrics),
        method_(method),
        context_(context),
        caller_(std::move(caller)),
        job_id_(std::move(job_id)),
        last_seq_(after_seq),
        include_chunks_(include_chunks),
        cancel_on_disconnect_(cancel_on_disconnect),
        deadline_(ClientDeadline(context)),
        revocable_(revocable) {
    if (revocable_ != nullptr) revocation_ = revocable_->Add(key, [this] { OnKeyRevoked(); });
  }

  void Start() {
    auto sub = engine_.Subscribe(job_id_, [this] { Pump(); }, caller_);
    if (!sub.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(sub.status());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      subscription_ = *sub;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      if (!ok) {
        FinishLocked(absl::CancelledError("client stopped reading"));
        return;
      }
      if (pending_finish_) {
        FinishLocked(*pending_finish_);
        return;
      }
    }
    Pump();
  }

  void OnCancel() override {
    // Client went away (or its deadline passed). Generate without detach
    // cancels the job; an expired deadline is the engine's to report.
    if (cancel_on_disconnect_ && absl::Now() < deadline_) {
      (void)engine_.Cancel(job_id_, "client disconnected", caller_);
    }
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(absl::CancelledError("stream cancelled"));
  }

  void OnDone() override {
    if (revocable_ != nullptr) revocable_->Remove(revocation_);
    std::shared_ptr<Subscription> sub;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sub = subscription_;
    }
    if (sub) engine_.Unsubscribe(job_id_, sub);
    delete this;
  }

 private:
  // The key left the keys file: end now (after a write in flight). The job
  // is not cancelled, even for Generate: its owner may follow it with a
  // current key.
  void OnKeyRevoked() {
    logging::Warn("stream ended: its API key was revoked",
                  {{"method", method_}, {"job", job_id_}, {"key", caller_.name}});
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(KeyRevokedError(caller_.name));
  }

  void Pump() {
    std::lock_guard<std::mutex> lock(mu_);
    if (write_in_flight_ || finished_ || pending_finish_) return;
    absl::StatusOr<EventRead> read = engine_.NextEvent(job_id_, last_seq_, include_chunks_);
    if (!read.ok()) {
      FinishLocked(read.status());
      return;
    }
    if (read->event) {
      current_ = std::move(*read->event);
      last_seq_ = current_.seq();
      write_in_flight_ = true;
      StartWrite(&current_);
      return;
    }
    if (read->finished) FinishLocked(read->final_status);
  }

  void FinishLocked(const absl::Status& status) {
    if (finished_) return;
    if (write_in_flight_) {  // finish once the outstanding write completes
      if (!pending_finish_) pending_finish_ = status;
      return;
    }
    finished_ = true;
    grpc::Status g = ToGrpcStatus(status, context_);
    if (metrics_) metrics_->OnRpc(method_, g.error_code());
    Finish(g);
  }

  JobEngine& engine_;
  FrontMetrics* metrics_;
  const char* method_;
  grpc::CallbackServerContext* context_;
  const Caller caller_;
  const std::string job_id_;

  std::mutex mu_;  // never held while the engine calls us (it notifies unlocked)
  int64_t last_seq_;
  const bool include_chunks_;
  const bool cancel_on_disconnect_;
  const absl::Time deadline_;
  bool write_in_flight_ = false;
  bool finished_ = false;
  std::optional<absl::Status> pending_finish_;
  JobEvent current_;
  std::shared_ptr<Subscription> subscription_;
  RevocableStreams* const revocable_;
  uint64_t revocation_ = 0;
};

// Streams a finished job's MP4 in chunks, one write in flight. A revoked
// API key ends it with UNAUTHENTICATED when the write in flight completes.
class ResultStream final : public grpc::ServerWriteReactor<Chunk> {
 public:
  ResultStream(JobEngine& engine, FrontMetrics* metrics, grpc::CallbackServerContext* context,
               Caller caller, const sparsevid::v1::FetchResultRequest& request,
               RevocableStreams* revocable, const ApiKey& key)
      : engine_(engine),
        metrics_(metrics),
        context_(context),
        caller_(std::move(caller)),
        job_id_(request.job_id()),
        offset_(request.offset()),
        chunk_bytes_(request.chunk_bytes() == 0 ? kMaxChunkBytes : request.chunk_bytes()),
        revocable_(revocable) {
    if (revocable_ != nullptr) {
      revocation_ = revocable_->Add(key, [this] { revoked_.store(true); });
    }
    if (request.chunk_bytes() < 0 || request.chunk_bytes() > kMaxChunkBytes) {
      Done(absl::InvalidArgumentError(absl::StrCat(
          "chunk_bytes: must be in [0, ", kMaxChunkBytes, "], got ", request.chunk_bytes())));
      return;
    }
    if (request.offset() < 0) {
      Done(absl::InvalidArgumentError(
          absl::StrCat("offset: must be >= 0, got ", request.offset())));
      return;
    }
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(absl::CancelledError("client stopped reading"));
      return;
    }
    if (last_sent_) {
      Done(absl::OkStatus());
      return;
    }
    if (revoked_.load()) {
      logging::Warn("stream ended: its API key was revoked",
                    {{"method", "FetchResult"}, {"job", job_id_}, {"key", caller_.name}});
      Done(KeyRevokedError(caller_.name));
      return;
    }
    Next();
  }

  void OnDone() override {
    if (revocable_ != nullptr) revocable_->Remove(revocation_);
    delete this;
  }

 private:
  void Next() {
    int64_t total = 0;
    absl::StatusOr<std::string> data =
        engine_.ReadResult(job_id_, offset_, chunk_bytes_, &total, caller_);
    if (!data.ok()) {
      Done(data.status());
      return;
    }
    if (data->empty()) {  // offset == total: nothing (more) to send
      Done(absl::OkStatus());
      return;
    }
    chunk_.set_offset(offset_);
    offset_ += static_cast<int64_t>(data->size());
    chunk_.set_data(std::move(*data));
    chunk_.set_last(offset_ == total);
    last_sent_ = chunk_.last();
    StartWrite(&chunk_);
  }

  void Done(const absl::Status& status) {
    grpc::Status g = ToGrpcStatus(status, context_);
    if (metrics_) metrics_->OnRpc("FetchResult", g.error_code());
    Finish(g);
  }

  JobEngine& engine_;
  FrontMetrics* metrics_;
  grpc::CallbackServerContext* context_;
  const Caller caller_;
  const std::string job_id_;
  int64_t offset_;
  const int64_t chunk_bytes_;
  bool last_sent_ = false;
  Chunk chunk_;
  RevocableStreams* const revocable_;
  uint64_t revocation_ = 0;
  std::atomic<bool> revoked_{false};  // set on EndRevoked's thread
};

// A stream that fails before it starts.
template <typename T>
class FailedStream final : public grpc::ServerWriteReactor<T> {
 public:
  explicit FailedStream(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* VideoServiceImpl::FinishUnary(grpc::CallbackServerContext* context,
                                                        const char* method,
                                                        const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status g = ToGrpcStatus(status, context);
  if (metrics_) metrics_->OnRpc(method, g.error_code());
  reactor->Finish(g);
  return reactor;
}

absl::StatusOr<Caller> VideoServiceImpl::Authorize(const grpc::CallbackServerContext* context,
                                                   ApiKey* key) const {
  if (auth_ == nullptr) return Caller{};
  return auth_->VideoCaller(*context, key);
}

grpc::ServerWriteReactor<JobEvent>* VideoServiceImpl::Generate(
    grpc::CallbackServerContext* context, const sparsevid::v1::GenerateRequest* request) {
  ApiKey key;
  absl::StatusOr<Caller> caller = Authorize(context, &key);
  absl::StatusOr<sparsevid::v1::Job> job =
      caller.ok() ? engine_.Submit(*request, ClientDeadline(context), *caller)
                  : absl::StatusOr<sparsevid::v1::Job>(caller.status());
  if (!job.ok()) {
    grpc::Status g = ToGrpcStatus(job.status(), context);
    if (metrics_) metrics_->OnRpc("Generate", g.error_code());
    return new FailedStream<JobEvent>(g);
  }
  auto* stream = new EventStream(engine_, metrics_, "Generate", context, *caller, job->job_id(),
                                 0, /*include_chunks=*/true,
                                 /*cancel_on_disconnect=*/!request->detach(), Revocable(), key);
  stream->Start();
  return stream;
}

grpc::ServerUnaryReactor* VideoServiceImpl::Submit(grpc::CallbackServerContext* context,
                                                   const sparsevid::v1::GenerateRequest* request,
                                                   sparsevid::v1::Job* response) {
  // The call's own deadline covers only this call: Submit returns at once
  // and the job runs on (use Generate to bound a job by a deadline).
  absl::StatusOr<Caller> caller = Authorize(context);
  if (!caller.ok()) return FinishUnary(context, "Submit", caller.status());
  absl::StatusOr<sparsevid::v1::Job> job =
      engine_.Submit(*request, absl::InfiniteFuture(), *caller);
  if (job.ok()) *response = std::move(*job);
  return FinishUnary(context, "Submit", job.status());
}

grpc::ServerWriteReactor<JobEvent>* VideoServiceImpl::Watch(
    grpc::CallbackServerContext* context, const sparsevid::v1::WatchRequest* request) {
  ApiKey key;
  absl::StatusOr<Caller> caller = Authorize(context, &key);
  absl::Status bad = caller.status();
  if (bad.ok() && request->after_seq() < 0) {
    bad = absl::InvalidArgumentError("after_seq: must be >= 0");
  }
  if (!bad.ok()) {
    grpc::Status g = ToGrpcStatus(bad, context);
    if (metrics_) metrics_->OnRpc("Watch", g.error_code());
    return new FailedStream<JobEvent>(g);
  }
  auto* stream = new EventStream(engine_, metrics_, "Watch", context, *caller, request->job_id(),
                                 request->after_seq(), request->include_chunks(),
                                 /*cancel_on_disconnect=*/false, Revocable(), key);
  stream->Start();
  return stream;
}

grpc::ServerUnaryReactor* VideoServiceImpl::GetJob(grpc::CallbackServerContext* context,
                                                   const sparsevid::v1::GetJobRequest* request,
                                                   sparsevid::v1::Job* response) {
  absl::StatusOr<Caller> caller = Authorize(context);
  if (!caller.ok()) return FinishUnary(context, "GetJob", caller.status());
  absl::StatusOr<sparsevid::v1::Job> job = engine_.GetJob(request->job_id(), *caller);
  if (job.ok()) *response = std::move(*job);
  return FinishUnary(context, "GetJob", job.status());
}

grpc::ServerUnaryReactor* VideoServiceImpl::CancelJob(
    grpc::CallbackServerContext* context, const sparsevid::v1::CancelJobRequest* request,
    sparsevid::v1::Job* response) {
  absl::StatusOr<Caller> caller = Authorize(context);
  if (!caller.ok()) return FinishUnary(context, "CancelJob", caller.status());
  absl::StatusOr<sparsevid::v1::Job> job =
      engine_.Cancel(request->job_id(), request->reason(), *caller);
  if (job.ok()) *response = std::move(*job);
  return FinishUnary(context, "CancelJob", job.status());
}

grpc::ServerUnaryReactor* VideoServiceImpl::ListJobs(
    grpc::CallbackServerContext* context, const sparsevid::v1::ListJobsRequest* request,
    sparsevid::v1::ListJobsResponse* response) {
  absl::StatusOr<Caller> caller = Authorize(context);
  if (!caller.ok()) return FinishUnary(context, "ListJobs", caller.status());
  absl::StatusOr<sparsevid::v1::ListJobsResponse> list = engine_.ListJobs(*request, *caller);
  if (list.ok()) *response = std::move(*list);
  return FinishUnary(context, "ListJobs", list.status());
}

grpc::ServerWriteReactor<Chunk>* VideoServiceImpl::FetchResult(
    grpc::CallbackServerContext* context, const sparsevid::v1::FetchResultRequest* request) {
  ApiKey key;
  absl::StatusOr<Caller> caller = Authorize(context, &key);
  if (!caller.ok()) {
    grpc::Status g = ToGrpcStatus(caller.status(), context);
    if (metrics_) metrics_->OnRpc("FetchResult", g.error_code());
    return new FailedStream<Chunk>(g);
  }
  return new ResultStream(engine_, metrics_, context, *caller, *request, Revocable(), key);
}

}  // namespace sparsevid::front
