// sparsevid.v1.WorkerLink: one bidirectional stream per worker. The first
// message must be a Hello; then Ready and job events flow in while Assign
// and CancelAssignment flow out. A protocol violation ends that stream with
// INVALID_ARGUMENT (the front keeps running) and the worker's jobs are
// requeued or failed, exactly as if it had died. With auth on, a stream
// opens only with a worker-role API key (server/request_auth.h), and
// DropRevokedWorkers ends the links whose key has left the keys file.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/request_auth.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"

namespace sparsevid::front {

class WorkerLinkServiceImpl final : public sparsevid::v1::WorkerLink::CallbackService {
 public:
  // `auth` null = auth off.
  WorkerLinkServiceImpl(JobEngine& engine, FrontMetrics* metrics,
                        const RequestAuth* auth = nullptr)
      : engine_(engine), metrics_(metrics), auth_(auth) {}

  grpc::ServerBidiReactor<sparsevid::v1::WorkerMessage, sparsevid::v1::FrontMessage>*
  Connect(grpc::CallbackServerContext* context) override;

  // Workers whose API key is no longer in the keys file stop getting jobs at
  // once (the engine drops them; their running jobs are requeued) and their
  // stream ends with UNAUTHENTICATED at its next message. Returns how many.
  // main calls it every auth.reload_seconds.
  int DropRevokedWorkers();

  // Stream bookkeeping for DropRevokedWorkers (used by the streams).
  struct Link {
    ApiKey key;
    std::string worker_id;  // once its hello is accepted
    std::shared_ptr<std::atomic<bool>> revoked = std::make_shared<std::atomic<bool>>(false);
  };
  uint64_t AddLink(const ApiKey& key, std::shared_ptr<std::atomic<bool>>* revoked);
  void SetLinkWorker(uint64_t link, const std::string& worker_id);
  void RemoveLink(uint64_t link);

 private:
  JobEngine& engine_;
  FrontMetrics* metrics_;
  const RequestAuth* auth_;

  absl::Mutex links_mu_;
  uint64_t next_link_ ABSL_GUARDED_BY(links_mu_) = 1;
  std::map<uint64_t, Link> links_ ABSL_GUARDED_BY(links_mu_);
};

}  // namespace sparsevid::front
