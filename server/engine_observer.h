// What the job engine reports for metrics. FrontMetrics implements it with
// Prometheus; tests may leave it out. Called under the engine lock (and, for
// a result file's write, from the worker stream's thread outside it): keep
// implementations cheap and thread-safe, and never call back into the engine.
#pragma once

#include <cstddef>
#include <string>

#include "absl/time/time.h"

namespace sparsevid::front {

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // Gauges, refreshed after every change.
  virtual void SetQueueDepth(int depth) = 0;
  virtual void SetJobsInState(const std::string& state, int count) = 0;
  virtual void SetWorkers(int connected, int free_slots) = 0;
  // A submit refused: reason is queue_full, invalid, draining, duplicate.
  virtual void OnRejected(const std::string& reason) = 0;
  virtual void OnJobStarted(absl::Duration queue_wait) = 0;
  virtual void OnFirstProgress(absl::Duration since_submit) = 0;
  // outcome: succeeded, failed, cancelled, expired (deadline).
  virtual void OnJobFinished(const std::string& outcome, absl::Duration since_submit) = 0;
  // Cancel request to the worker confirming its slot is free (or to leaving
  // the queue for a queued job).
  virtual void OnCancelCompleted(absl::Duration latency) = 0;
  virtual void OnRequeued() = 0;
  // The job journal (state.dir): one write of `kind` (record: a job accepted
  // or ended; result: a video's file; compaction) and whether it worked.
  virtual void OnJournalWrite(const std::string& kind, bool ok) = 0;
  // Records in the journal's file now.
  virtual void SetJournalRecords(size_t records) = 0;
  // A video's result file written and synced.
  virtual void OnResultFileWritten(absl::Duration took) = 0;
};

}  // namespace sparsevid::front
