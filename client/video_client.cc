#include "client/video_client.h"

#include "absl/strings/str_cat.h"
#include "common/api_key_file.h"
#include "common/status.h"

namespace sparsevid::client {
namespace {

// Streams carry chunks of up to 1 MiB plus framing.
constexpr int kMaxReceiveBytes = 4 * 1024 * 1024;

}  // namespace

void CallHandle::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool CallHandle::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void CallHandle::Attach(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  context_ = context;
  if (cancelled_) context_->TryCancel();
}

void CallHandle::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  context_ = nullptr;
}

VideoClient::VideoClient(ClientOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  // Multi-minute streams: ping so dead connections are noticed.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  channel_ = grpc::CreateCustomChannel(
      options_.address,
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials(), args);
  stub_ = v1::VideoService::NewStub(channel_);
}

void VideoClient::Prepare(grpc::ClientContext& context, std::chrono::milliseconds timeout) const {
  if (timeout.count() > 0) context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!options_.api_key.empty()) {
    context.AddMetadata(kAuthorizationMetadata, BearerValue(options_.api_key));
  }
}

absl::Status VideoClient::Convert(const grpc::Status& status) const {
  absl::Status st = FromGrpcStatus(status);
  if (st.code() == absl::StatusCode::kUnavailable &&
      channel_->GetState(false) != GRPC_CHANNEL_READY) {
    return absl::UnavailableError(absl::StrCat("front at ", options_.address,
                                               " is not reachable: ", st.message()));
  }
  return st;
}

// Fails fast with a clear message when nothing listens at the address
// (connection refused shows up as TRANSIENT_FAILURE at once), instead of a
// bare transport error or a wait until the call's deadline.
absl::Status VideoClient::EnsureConnected() const {
  const auto deadline = std::chrono::system_clock::now() + options_.connect_timeout;
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError(absl::StrCat("front at ", options_.address,
                                                 " is not reachable (connection failed)"));
    }
    if (!channel_->WaitForStateChange(state, deadline)) {
      return absl::UnavailableError(absl::StrCat("front at ", options_.address,
                                                 " is not reachable (no connection within ",
                                                 options_.connect_timeout.count(), " ms)"));
    }
    state = channel_->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

#define SPARSEVID_REQUIRE_CONNECTED()                         \
  do {                                                        \
    if (absl::Status st = EnsureConnected(); !st.ok()) return st; \
  } while (0)

template <typename Message, typename Start, typename OnMessage>
absl::Status VideoClient::ReadStream(const Start& start, const OnMessage& on_message,
                                     std::chrono::milliseconds timeout, CallHandle* handle) {
  SPARSEVID_REQUIRE_CONNECTED();
  grpc::ClientContext context;
  Prepare(context, timeout);
  if (handle != nullptr) handle->Attach(&context);
  auto reader = start(&context);
  Message message;
  while (reader->Read(&message)) {
    if (!on_message(message)) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (handle != nullptr) handle->Detach();
  return Convert(st);
}

template <typename Response, typename Call>
absl::StatusOr<Response> VideoClient::CallUnary(const Call& call) {
  SPARSEVID_REQUIRE_CONNECTED();
  grpc::ClientContext context;
  Prepare(context, options_.rpc_timeout);
  Response response;
  grpc::Status st = call(&context, &response);
  if (!st.ok()) return Convert(st);
  return response;
}

absl::Status VideoClient::Generate(const v1::GenerateRequest& request,
                                   const EventCallback& on_event,
                                   std::chrono::milliseconds timeout, CallHandle* handle) {
  return ReadStream<v1::JobEvent>(
      [&](grpc::ClientContext* context) { return stub_->Generate(context, request); }, on_event,
      timeout, handle);
}

absl::StatusOr<v1::Job> VideoClient::Submit(const v1::GenerateRequest& request) {
  return CallUnary<v1::Job>([&](grpc::ClientContext* context, v1::Job* job) {
    return stub_->Submit(context, request, job);
  });
}

absl::Status VideoClient::Watch(const v1::WatchRequest& request, const EventCallback& on_event,
                                std::chrono::milliseconds timeout, CallHandle* handle) {
  return ReadStream<v1::JobEvent>(
      [&](grpc::ClientContext* context) { return stub_->Watch(context, request); }, on_event,
      timeout, handle);
}

absl::StatusOr<v1::Job> VideoClient::GetJob(const std::string& job_id) {
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  return CallUnary<v1::Job>([&](grpc::ClientContext* context, v1::Job* job) {
    return stub_->GetJob(context, req, job);
  });
}

absl::StatusOr<v1::Job> VideoClient::CancelJob(const std::string& job_id,
                                               const std::string& reason) {
  v1::CancelJobRequest req;
  req.set_job_id(job_id);
  req.set_reason(reason);
  return CallUnary<v1::Job>([&](grpc::ClientContext* context, v1::Job* job) {
    return stub_->CancelJob(context, req, job);
  });
}

absl::StatusOr<v1::ListJobsResponse> VideoClient::ListJobs(const v1::ListJobsRequest& request) {
  return CallUnary<v1::ListJobsResponse>(
      [&](grpc::ClientContext* context, v1::ListJobsResponse* resp) {
        return stub_->ListJobs(context, request, resp);
      });
}

absl::Status VideoClient::FetchResult(const v1::FetchResultRequest& request,
                                      const ChunkCallback& on_chunk,
                                      std::chrono::milliseconds timeout, CallHandle* handle) {
  return ReadStream<v1::Chunk>(
      [&](grpc::ClientContext* context) { return stub_->FetchResult(context, request); },
      on_chunk, timeout, handle);
}

}  // namespace sparsevid::client
