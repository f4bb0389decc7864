// sparsevid.v1.WorkerLink: one bidirectional stream per worker. The first
// message must be a Hello; then Ready and job events flow in while Assign
// and CancelAssignment flow out. A protocol violation ends that stream with
// INVALID_ARGUMENT (the front keeps running) and the worker's jobs are
// requeued or failed, exactly as if it had died. With auth on, a stream
// opens only with a worker-role API key (server/request_auth.h), and
// DropRevokedWorkers ends the links whose key has left the keys file.
#pragma once

#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/request_auth.h"
#include "server/revocable_streams.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"

namespace sparsevid::front {

class WorkerLinkServiceImpl final : public sparsevid::v1::WorkerLink::CallbackService {
 public:
  // `auth` null = auth off.
  WorkerLinkServiceImpl(JobEngine& engine, FrontMetrics* metrics,
                        const RequestAuth* auth = nullptr)
      : engine_(engine), metrics_(metrics), auth_(auth), links_(auth) {}

  grpc::ServerBidiReactor<sparsevid::v1::WorkerMessage, sparsevid::v1::FrontMessage>*
  Connect(grpc::CallbackServerContext* context) override;

  // Workers whose API key is no longer in the keys file stop getting jobs at
  // once (the engine drops them; their running jobs are requeued) and their
  // stream ends with UNAUTHENTICATED at once (an idle worker sends nothing,
  // so waiting for its next message would strand it). Returns how many.
  // main calls it every auth.reload_seconds.
  int DropRevokedWorkers() { return links_.EndRevoked(); }

 private:
  JobEngine& engine_;
  FrontMetrics* metrics_;
  const RequestAuth* auth_;
  RevocableStreams links_;  // the open links and their keys
};

}  // namespace sparsevid::front
