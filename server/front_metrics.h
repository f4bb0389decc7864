// Prometheus metrics of the front (names in docs/api.md): the engine's
// observer plus per-RPC counts. Label sets are resolved once where fixed.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/engine_observer.h"

namespace sparsevid::front {

class FrontMetrics : public EngineObserver {
 public:
  explicit FrontMetrics(prometheus::Registry& registry);

  // EngineObserver
  void SetQueueDepth(int depth) override;
  void SetJobsInState(const std::string& state, int count) override;
  void SetWorkers(int connected, int free_slots) override;
  void OnRejected(const std::string& reason) override;
  void OnJobStarted(absl::Duration queue_wait) override;
  void OnFirstProgress(absl::Duration since_submit) override;
  void OnJobFinished(const std::string& outcome, absl::Duration since_submit) override;
  void OnCancelCompleted(absl::Duration latency) override;
  void OnRequeued() override;
  void OnJournalWrite(const std::string& kind, bool ok) override;
  void SetJournalRecords(size_t records) override;
  void OnResultFileWritten(absl::Duration took) override;

  // One finished RPC of the public API or the worker link.
  void OnRpc(const std::string& method, grpc::StatusCode code);
  // A call refused by API-key auth (server/request_auth.h).
  void OnAuthFailure(const std::string& reason);
  // The API keys file changed and was re-read.
  void OnApiKeysReloaded(bool ok);

 private:
  prometheus::Gauge& queue_depth_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Histogram& queue_wait_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Histogram& first_progress_;
  prometheus::Histogram& cancel_latency_;
  prometheus::Gauge& workers_;
  prometheus::Gauge& free_slots_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Counter>& rejections_;
  prometheus::Counter& requeued_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& key_reloads_;
  prometheus::Family<prometheus::Counter>& journal_writes_;
  prometheus::Gauge& journal_records_;
  prometheus::Histogram& result_write_;
};

}  // namespace sparsevid::front
