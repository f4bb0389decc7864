// sparsevid.v1.WorkerLink: one bidirectional stream per worker. The first
// message must be a Hello; then Ready and job events flow in while Assign
// and CancelAssignment flow out. A protocol violation ends that stream with
// INVALID_ARGUMENT (the front keeps running) and the worker's jobs are
// requeued or failed, exactly as if it had died.
#pragma once

#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"

namespace sparsevid::front {

class WorkerLinkServiceImpl final : public sparsevid::v1::WorkerLink::CallbackService {
 public:
  WorkerLinkServiceImpl(JobEngine& engine, FrontMetrics* metrics)
      : engine_(engine), metrics_(metrics) {}

  grpc::ServerBidiReactor<sparsevid::v1::WorkerMessage, sparsevid::v1::FrontMessage>*
  Connect(grpc::CallbackServerContext* context) override;

 private:
  JobEngine& engine_;
  FrontMetrics* metrics_;
};

}  // namespace sparsevid::front
