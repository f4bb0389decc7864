#include "worker/front_link.h"

#include <random>
#include <utility>

#include "common/api_key_file.h"
#include "common/logging.h"
#include "common/status.h"

namespace sparsevid::worker {
namespace {

bool IsFinalEvent(const v1::JobEvent& e) {
  return e.has_completed() || e.has_failed() || e.has_cancelled();
}

// A connection that lived this long counts as healthy: the next failure
// starts again from the initial backoff.
constexpr std::chrono::seconds kHealthyConnection{5};

}  // namespace

FrontLink::FrontLink(FrontLinkOptions options, WorkerMetrics* metrics,
                     ConnectionCallback on_connection)
    : options_(std::move(options)), metrics_(metrics), on_connection_(std::move(on_connection)) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options_.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options_.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Our own loop owns the backoff; keep gRPC's reconnect delay below it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.initial_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.max_backoff.count()));
  channel_ = grpc::CreateCustomChannel(
      options_.front_address,
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials(), args);
  stub_ = v1::WorkerLink::NewStub(channel_);
}

FrontLink::~FrontLink() { Stop(); }

void FrontLink::Start(JobRunner* runner) {
  runner_ = runner;
  dial_thread_ = std::thread([this] { DialLoop(); });
}

void FrontLink::Stop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_ && !dial_thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_all();
    // Graceful close: the writer sends what is queued (final job events),
    // then half-closes; the front answers by ending the stream. Cancel only
    // if that does not happen in time.
    const bool closed = cv_.wait_for(lock, std::chrono::seconds(5), [this] { return !stream_open_; });
    if (!closed && live_context_ != nullptr) live_context_->TryCancel();
  }
  cv_.notify_all();
  if (dial_thread_.joinable()) dial_thread_.join();
}

void FrontLink::StopAcceptingJobs() {
  accepting_.store(false);
  v1::WorkerMessage msg;
  msg.mutable_ready()->set_free_slots(0);
  Enqueue(std::move(msg));
}

void FrontLink::OnJobEvent(const std::string& job_id, v1::JobEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  // Events of jobs that were not assigned on the current stream (e.g. the
  // cancellation that follows a broken link) mean nothing to the front.
  auto it = active_jobs_.find(job_id);
  if (!stream_open_ || it == active_jobs_.end()) return;
  if (IsFinalEvent(event)) active_jobs_.erase(it);
  v1::WorkerMessage msg;
  v1::WorkerJobEvent* je = msg.mutable_job_event();
  je->set_job_id(job_id);
  event.set_job_id(job_id);
  *je->mutable_event() = std::move(event);
  outbox_.push_back(std::move(msg));
  cv_.notify_all();
}

void FrontLink::OnSlotFree(int free_slots) {
  v1::WorkerMessage msg;
  msg.mutable_ready()->set_free_slots(accepting_.load() ? free_slots : 0);
  Enqueue(std::move(msg));
}

void FrontLink::Enqueue(v1::WorkerMessage msg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stream_open_) return;
  outbox_.push_back(std::move(msg));
  cv_.notify_all();
}

void FrontLink::DialLoop() {
  std::mt19937 rng(std::random_device{}());
  auto backoff = options_.initial_backoff;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    const auto started = std::chrono::steady_clock::now();
    const bool established = RunConnection();
    if (established && std::chrono::steady_clock::now() - started >= kHealthyConnection) {
      backoff = options_.initial_backoff;
    }
    // Jitter (0.8x .. 1.2x) keeps a fleet of workers from re-dialling in step.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    const auto wait = std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng)));
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, wait, [this] { return stopping_; })) return;
    }
    metrics_->CountReconnect();
    logging::Info("re-dialling the front",
                  {{"front", options_.front_address}, {"backoff_ms", wait.count()}});
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

bool FrontLink::RunConnection() {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    live_context_ = &context;
  }
  if (!options_.api_key_file.empty()) {
    absl::StatusOr<std::string> key = ReadApiKeyFile(options_.api_key_file);
    if (key.ok()) {
      options_.api_key = *key;
    } else {
      logging::Error("api key file unreadable; dialling with the previous key",
                     {{"error", std::string(key.status().message())}});
    }
  }
  if (!options_.api_key.empty()) {
    context.AddMetadata(kAuthorizationMetadata, BearerValue(options_.api_key));
  }
  auto stream = stub_->Connect(&context);
  v1::WorkerMessage hello;
  *hello.mutable_hello() = options_.hello;
  if (runner_->step_seconds_estimate() > 0) {
    hello.mutable_hello()->mutable_limits()->set_step_seconds_estimate(
        runner_->step_seconds_estimate());
  }
  if (!stream->Write(hello)) {
    grpc::Status st = stream->Finish();
    std::lock_guard<std::mutex> lock(mu_);
    live_context_ = nullptr;
    if (IsKeyRefusal(st)) {
      LogKeyRefusal(st);
    } else {
      logging::Warn("front not reachable", {{"front", options_.front_address},
                                            {"error", st.error_message()}});
    }
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    outbox_.clear();
    active_jobs_.clear();
    stream_open_ = true;
  }
  std::thread writer([&] { WriterLoop(stream.get(), &context); });
  // Ready goes out at once (the front reads the Hello first and ends the
  // stream if it refuses it), so a front that predates Welcome still gets
  // this worker's slots; only "connected" and health wait for the Welcome.
  OnSlotFree(runner_->free_slots());

  // Linked only once the front says Welcome: a hello or API key it refuses
  // ends the stream before that, and the worker never looks connected.
  bool welcomed = false;
  v1::FrontMessage msg;
  while (stream->Read(&msg)) {
    switch (msg.msg_case()) {
      case v1::FrontMessage::kWelcome:
        if (welcomed) break;
        welcomed = true;
        connected_.store(true);
        metrics_->SetFrontConnected(true);
        logging::Info("connected to the front",
                      {{"front", options_.front_address},
                       {"worker_id", options_.hello.worker_id()},
                       {"front_version", msg.welcome().front_version()}});
        if (on_connection_) on_connection_(true);
        break;
      case v1::FrontMessage::kAssign:
        HandleAssign(msg.assign());
        break;
      case v1::FrontMessage::kCancel: {
        bool known;
        {
          std::lock_guard<std::mutex> lock(mu_);
          known = active_jobs_.count(msg.cancel().job_id()) > 0;
        }
        if (known) runner_->Cancel(msg.cancel().job_id(), msg.cancel().reason());
        break;
      }
      default:
        logging::Warn("ignoring an empty or unknown message from the front");
        break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_open_ = false;
    outbox_.clear();
    active_jobs_.clear();
  }
  cv_.notify_all();
  writer.join();
  grpc::Status st = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_context_ = nullptr;
  }
  connected_.store(false);
  metrics_->SetFrontConnected(false);
  if (welcomed && on_connection_) on_connection_(false);
  // The front treats a broken stream as a lost worker and requeues or fails
  // its jobs, so nothing here may keep running for it.
  runner_->CancelAll("link to the front lost");
  if (IsKeyRefusal(st)) {
    LogKeyRefusal(st);
    return false;
  }
  logging::Warn("link to the front closed",
                {{"front", options_.front_address}, {"code", static_cast<int>(st.error_code())},
                 {"error", st.error_message()}});
  return welcomed;
}

bool FrontLink::IsKeyRefusal(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

void FrontLink::LogKeyRefusal(const grpc::Status& st) const {
  logging::Error("the front refused this worker's API key (front.api_key_file or "
                 "SPARSEVID_API_KEY must hold a worker-role key of its auth.api_keys_file)",
                 {{"front", options_.front_address},
                  {"code", static_cast<int>(st.error_code())},
                  {"error", st.error_message()}});
}

void FrontLink::WriterLoop(grpc::ClientReaderWriter<v1::WorkerMessage, v1::FrontMessage>* stream,
                           grpc::ClientContext* context) {
  while (true) {
    v1::WorkerMessage msg;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return !outbox_.empty() || !stream_open_ || stopping_; });
      if (!stream_open_) return;
      if (outbox_.empty()) {  // stopping with nothing left to send
        lock.unlock();
        stream->WritesDone();
        return;
      }
      msg = std::move(outbox_.front());
      outbox_.pop_front();
    }
    if (!stream->Write(msg)) {
      context->TryCancel();  // unblocks the reader, which ends the connection
      return;
    }
  }
}

void FrontLink::HandleAssign(const v1::Assign& assign) {
  const std::string& job_id = assign.job_id();
  if (job_id.empty()) {
    logging::Warn("ignoring an Assign without job_id");
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_jobs_.count(job_id) > 0) {
      logging::Warn("ignoring a repeated Assign", {}, job_id);
      return;
    }
    active_jobs_.insert(job_id);
  }
  // While draining, an Assign that crossed our Ready(0) on the wire still
  // runs if a slot is free: refusing it would fail the client's job.
  absl::Status st = runner_->Submit(assign);
  if (st.ok()) {
    logging::Info("job assigned", {{"attempt", assign.attempt()}}, job_id);
    return;
  }
  logging::Warn("refusing an Assign", {{"error", std::string(st.message())}}, job_id);
  // UNAVAILABLE tells the front the job did not start here and may run
  // elsewhere.
  v1::JobEvent ev;
  ev.mutable_failed()->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  ev.mutable_failed()->set_message(
      std::string("worker ") + options_.hello.worker_id() + " refused the job: " +
      std::string(st.message()));
  OnJobEvent(job_id, std::move(ev));
}

}  // namespace sparsevid::worker
