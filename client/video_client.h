// A small C++ client for sparsevid.v1.VideoService: one channel, blocking
// calls with a deadline, streaming calls delivered to a callback, errors as
// absl::Status (with the front's message; UNAVAILABLE from the transport is
// reworded to say the front is not reachable). Used by the `sparsevid` CLI,
// the integration tests and the service benchmark.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "sparsevid/v1/video_service.grpc.pb.h"

namespace sparsevid::client {

struct ClientOptions {
  std::string address = "localhost:50051";
  // Deadline of unary calls; streaming calls take their own (0 = none).
  std::chrono::milliseconds rpc_timeout{10000};
  // How long a call waits for the channel to connect before failing with
  // UNAVAILABLE ("front not reachable").
  std::chrono::milliseconds connect_timeout{5000};
  // Sent as `authorization: Bearer <api_key>` on every call; empty = none
  // (a front with auth on then answers UNAUTHENTICATED).
  std::string api_key;
  // Channel credentials (common/tls_credentials.h); null = plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Lets another thread (e.g. the Ctrl-C handler) cancel a streaming call.
class CallHandle {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class VideoClient;
  void Attach(grpc::ClientContext* context);
  void Detach();
  mutable std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;
  bool cancelled_ = false;
};

class VideoClient {
 public:
  explicit VideoClient(ClientOptions options);

  // Return false from the callback to stop reading (the call is cancelled).
  using EventCallback = std::function<bool(const v1::JobEvent&)>;
  using ChunkCallback = std::function<bool(const v1::Chunk&)>;

  // Streams the job's events until the stream ends. timeout 0 = no deadline
  // (the deadline also bounds the job on the front).
  absl::Status Generate(const v1::GenerateRequest& request, const EventCallback& on_event,
                        std::chrono::milliseconds timeout, CallHandle* handle = nullptr);
  absl::StatusOr<v1::Job> Submit(const v1::GenerateRequest& request);
  absl::Status Watch(const v1::WatchRequest& request, const EventCallback& on_event,
                     std::chrono::milliseconds timeout, CallHandle* handle = nullptr);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id, const std::string& reason);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  absl::Status FetchResult(const v1::FetchResultRequest& request, const ChunkCallback& on_chunk,
                           std::chrono::milliseconds timeout, CallHandle* handle = nullptr);

  const ClientOptions& options() const { return options_; }

 private:
  void Prepare(grpc::ClientContext& context, std::chrono::milliseconds timeout) const;
  absl::Status Convert(const grpc::Status& status) const;
  absl::Status EnsureConnected() const;
  // The shared body of the server-streaming calls: `start` opens the stream
  // on the prepared context; each message goes to `on_message`.
  template <typename Message, typename Start, typename OnMessage>
  absl::Status ReadStream(const Start& start, const OnMessage& on_message,
                          std::chrono::milliseconds timeout, CallHandle* handle);
  // The shared body of the unary calls, under options_.rpc_timeout: `call`
  // fills the response on the prepared context.
  template <typename Response, typename Call>
  absl::StatusOr<Response> CallUnary(const Call& call);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
};

}  // namespace sparsevid::client
