// sparsevid.v1.VideoService over the JobEngine (callback API). Each handler
// converts the request, makes engine calls and maps the absl::Status once
// (common/status.h). Streams keep one write in flight and pull the next
// event from the engine when it completes, so a slow client never makes the
// front buffer more than one message per stream. Every call is first
// authenticated (server/request_auth.h) and acts as its Caller: a client key
// sees and cancels only its own jobs. A stream (Generate, Watch,
// FetchResult) whose key is later removed from the keys file ends with
// UNAUTHENTICATED (EndRevokedStreams); its job is left as it is.
#pragma once

#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/request_auth.h"
#include "server/revocable_streams.h"
#include "sparsevid/v1/video_service.grpc.pb.h"

namespace sparsevid::front {

class VideoServiceImpl final : public sparsevid::v1::VideoService::CallbackService {
 public:
  // `metrics` may be null; `auth` null = auth off (every call the default Caller).
  VideoServiceImpl(JobEngine& engine, FrontMetrics* metrics, const RequestAuth* auth = nullptr)
      : engine_(engine), metrics_(metrics), auth_(auth), streams_(auth) {}

  // Ends the open streams whose API key has left the keys file, with
  // UNAUTHENTICATED. Returns how many. main calls it every
  // auth.reload_seconds.
  int EndRevokedStreams() { return streams_.EndRevoked(); }

  grpc::ServerWriteReactor<sparsevid::v1::JobEvent>* Generate(
      grpc::CallbackServerContext* context,
      const sparsevid::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context,
                                   const sparsevid::v1::GenerateRequest* request,
                                   sparsevid::v1::Job* response) override;
  grpc::ServerWriteReactor<sparsevid::v1::JobEvent>* Watch(
      grpc::CallbackServerContext* context,
      const sparsevid::v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const sparsevid::v1::GetJobRequest* request,
                                   sparsevid::v1::Job* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const sparsevid::v1::CancelJobRequest* request,
                                      sparsevid::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const sparsevid::v1::ListJobsRequest* request,
                                     sparsevid::v1::ListJobsResponse* response) override;
  grpc::ServerWriteReactor<sparsevid::v1::Chunk>* FetchResult(
      grpc::CallbackServerContext* context,
      const sparsevid::v1::FetchResultRequest* request) override;

 private:
  grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                        const char* method, const absl::Status& status);
  // `key` (if not null) gets the key the call was made with.
  absl::StatusOr<Caller> Authorize(const grpc::CallbackServerContext* context,
                                   ApiKey* key = nullptr) const;
  // Where a stream registers its key: null with auth off.
  RevocableStreams* Revocable() {
    return auth_ != nullptr && auth_->enabled() ? &streams_ : nullptr;
  }

  JobEngine& engine_;
  FrontMetrics* metrics_;
  const RequestAuth* auth_;
  RevocableStreams streams_;
};

}  // namespace sparsevid::front
