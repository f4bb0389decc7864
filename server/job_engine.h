// The front's job engine: job table, state machine, bounded priority queue,
// idempotent submission, per-job event logs, result store, and the registry
// of connected workers that pull jobs. Plain C++ with absl::Status; the gRPC
// services in this folder are thin adapters over it, and tests drive it
// directly (with a fake clock and fake worker channels).
//
// Job states: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, and
// RUNNING -> QUEUED when its worker is lost and attempts remain.
// QUEUED -> FAILED (deadline, drain) | CANCELLED.
//
// Threading: every public method may be called from any thread. One mutex
// guards all state. Worker channels are called under it (so messages to a
// worker keep their order) and must only enqueue. Subscriptions are
// notified after the mutex is released, so they may call back in.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/engine_observer.h"
#include "server/job_event_log.h"
#include "server/job_journal.h"
#include "server/job_queue.h"
#include "server/page_token.h"
#include "server/result_store.h"
#include "server/subscription.h"
#include "sparsevid/v1/video_service.pb.h"
#include "sparsevid/v1/worker_link.pb.h"

namespace sparsevid::front {

struct EngineOptions {
  int queue_capacity = 256;
  int max_attempts = 3;           // runs of one job, counting requeues
  int event_log_capacity = 4096;  // events kept per job
  int64_t result_cap_bytes = int64_t{2} << 30;
  absl::Duration result_ttl = absl::Hours(1);
  absl::Duration job_retention = absl::Hours(1);  // finished job records
  int max_finished_jobs = 10000;
  // Retry hint sent with RESOURCE_EXHAUSTED when the queue is full (the
  // estimated time for one slot to free up is used when known).
  absl::Duration min_retry_delay = absl::Seconds(1);
  int64_t max_chunk_bytes = 1 << 20;
  // Used to validate requests while no worker is connected.
  sparsevid::v1::ModelLimits default_limits;
  std::string default_model;
  // Accepted jobs recorded on disk (server/job_journal.h), not owned; null =
  // jobs live in memory only. It covers a front that dies (crash, OOM kill,
  // SIGKILL): a drain still ends every job before the front exits.
  JobJournal* journal = nullptr;
  // The journal is rewritten with only the jobs the engine still holds once
  // it has this many records and more than twice as many as those jobs (so
  // its size follows the jobs kept, not the front's uptime).
  size_t journal_compact_records = 10000;
};

// Who makes a call (from the API key, server/api_keys.h). Jobs record their
// submitter as owner; a caller that does not see all jobs gets NOT_FOUND for
// another owner's job, exactly as for an unknown id, and its request_ids
// never collide with another owner's. With auth off every call is the
// default Caller: owner "", sees every job, no quota.
struct Caller {
  std::string name;
  bool sees_all = true;
  int max_active_jobs = 0;  // queued + running jobs of this owner; 0 = no limit
};

// The engine's handle on one connected worker's stream.
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  // Queues a message; must not block and must not call the engine.
  virtual void Send(const sparsevid::v1::FrontMessage& message) = 0;
};

// One step of an event stream (see JobEngine::NextEvent).
struct EventRead {
  std::optional<sparsevid::v1::JobEvent> event;
  // True when no further event will come: the job is finished and its last
  // event was read. `final_status` is then the job's outcome.
  bool finished = false;
  absl::Status final_status;
};

class JobEngine {
 public:
  using Clock = std::function<absl::Time()>;

  explicit JobEngine(EngineOptions options, EngineObserver* observer = nullptr,
                     Clock clock = [] { return absl::Now(); });
  ~JobEngine();
  JobEngine(const JobEngine&) = delete;
  JobEngine& operator=(const JobEngine&) = delete;

  // Starts a thread that calls Tick() every `period` (deadlines, TTLs).
  void StartTicker(absl::Duration period);
  void StopTicker();

  // ---- public API (VideoService) ----
  // Validates, applies defaults and queues. `deadline` (InfiniteFuture for
  // none) bounds the job while queued and running. A request_id seen before
  // returns the existing job if the request is identical, ALREADY_EXISTS
  // otherwise (request_ids are per owner). Full queue: RESOURCE_EXHAUSTED
  // with a retry delay; so is a caller at its max_active_jobs. Draining:
  // UNAVAILABLE.
  absl::StatusOr<sparsevid::v1::Job> Submit(const sparsevid::v1::GenerateRequest& request,
                                            absl::Time deadline, const Caller& caller = {});
  absl::StatusOr<sparsevid::v1::Job> GetJob(const std::string& job_id,
                                            const Caller& caller = {}) const;
  // Queued: leaves the queue. Running: CANCELLED at once, the worker is told
  // to stop and its slot is free once it confirms. Finished: unchanged.
  absl::StatusOr<sparsevid::v1::Job> Cancel(const std::string& job_id, const std::string& reason,
                                            const Caller& caller = {});
  // The caller's jobs (all jobs for one that sees all), oldest first. Page
  // tokens are opaque and valid only for the caller's name (page_token.h).
  absl::StatusOr<sparsevid::v1::ListJobsResponse> ListJobs(
      const sparsevid::v1::ListJobsRequest& request, const Caller& caller = {}) const;
  // Bytes [offset, offset+max_bytes) of a succeeded job's MP4 and its total
  // size. FAILED_PRECONDITION if not succeeded, NOT_FOUND if expired.
  absl::StatusOr<std::string> ReadResult(const std::string& job_id, int64_t offset,
                                         int64_t max_bytes, int64_t* total_bytes,
                                         const Caller& caller = {}) const;

  // ---- events ----
  // The first event with seq > after_seq (chunk events only when asked).
  absl::StatusOr<EventRead> NextEvent(const std::string& job_id, int64_t after_seq,
                                      bool include_chunks) const;
  // `on_change` runs (outside the engine lock) whenever the job gets a new
  // event. Cancel the subscription (and call Unsubscribe) when done.
  absl::StatusOr<std::shared_ptr<Subscription>> Subscribe(
      const std::string& job_id, std::function<void()> on_change, const Caller& caller = {});
  void Unsubscribe(const std::string& job_id, const std::shared_ptr<Subscription>& sub);

  // ---- workers (WorkerLink) ----
  // First message of a worker stream. INVALID_ARGUMENT for a malformed
  // hello, ALREADY_EXISTS if the worker id is connected.
  absl::Status AddWorker(const sparsevid::v1::WorkerHello& hello,
                         std::shared_ptr<WorkerChannel> channel);
  absl::Status WorkerReady(const std::string& worker_id, int free_slots);
  // An error means the worker broke the protocol: close its stream (and
  // call RemoveWorker). Stale events (e.g. for a job cancelled meanwhile)
  // are ignored.
  absl::Status WorkerEvent(const std::string& worker_id,
                           const sparsevid::v1::WorkerJobEvent& event);
  // Stream gone: its running jobs are requeued (attempts left) or failed.
  void RemoveWorker(const std::string& worker_id, const std::string& why);

  // Queues jobs a previous front accepted and never finished (from
  // JobJournal::Open), before any request is served: same job id, request_id,
  // owner and request. One that no longer fits the queue, or whose deadline
  // has passed, fails with a status saying so. Returns how many were queued.
  int Restore(std::vector<JournaledJob> jobs);
  // Serves again jobs a previous front finished (JobJournal::Open's
  // `ended`): GetJob, ListJobs, Watch (their last event), request_id
  // idempotency, and FetchResult while the result's TTL lasts (the MP4 from
  // the journal's result file). Jobs older than job_retention are skipped.
  // Returns how many were restored.
  int RestoreEnded(std::vector<JournaledJob> jobs);

  // ---- lifecycle ----
  // Enforces deadlines and expires results and old job records.
  void Tick();
  // New work gets UNAVAILABLE; queued jobs fail with UNAVAILABLE; running
  // jobs continue. (Also with a journal: the next front may not share its
  // directory, and a client told UNAVAILABLE knows to resubmit.)
  void StartDrain();
  bool draining() const;
  int running_jobs() const;
  // End of the drain grace period: running jobs fail with `status`.
  void FailRunning(const absl::Status& status);

  // For tests and the ready line.
  int queue_depth() const;
  int connected_workers() const;

 private:
  struct JobRecord;
  struct WorkerRecord;

  // Collects subscriptions to notify once the lock is released.
  class Notifier;

  absl::StatusOr<std::pair<sparsevid::v1::ModelLimits, std::vector<std::string>>>
  LimitsFor(const std::string& model) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobRecord* Find(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Find, or NOT_FOUND (also for a job the caller may not see).
  absl::StatusOr<JobRecord*> FindFor(const std::string& job_id, const Caller& caller) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  sparsevid::v1::Job Snapshot(const JobRecord& rec) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(JobRecord& rec, sparsevid::v1::JobEvent event, int64_t chunk_size = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetState(JobRecord& rec, sparsevid::v1::JobState state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Terminal transitions.
  void Finish(JobRecord& rec, sparsevid::v1::JobState state, const absl::Status& status,
              const std::string& outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Running job ends on the front side: tell its worker to stop.
  void StopOnWorker(JobRecord& rec, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeSlot(JobRecord& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the job's hold on its owner's max_active_jobs once it is finished
  // and no worker slot is still busy with it.
  void MaybeReleaseQuota(JobRecord& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshQueuePositions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TryAssign() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int FreeSlots(const WorkerRecord& w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double EstimateWaitSeconds(int position) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseJob(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A record of a journaled job (Restore, RestoreEnded), state unset.
  std::unique_ptr<JobRecord> RecordFromJournal(JournaledJob j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Metrics of one journal write under the lock (kind: record for Accepted /
  // Finished, compaction) and the file's record count after it.
  void JournalWritten(const char* kind, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The journal's result file of a job (none without a journal).
  void DropResultFile(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the journal's result files of results the store evicted.
  void ForgetEvictedResults() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A restored succeeded job's video from its result file, into the store
  // while its TTL lasts; a file past its TTL or of the wrong size is removed.
  void RestoreResult(const sparsevid::v1::Job& job, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new job's record into the table and its indexes (admission order,
  // request_id, its owner's active count).
  void AddRecord(std::unique_ptr<JobRecord> rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A completed job's video, written to the journal's result file before
  // the event is handled (WorkerEvent, outside the lock).
  struct SavedResult {
    absl::Status status;  // of JobJournal::WriteResult
    int64_t bytes = 0;    // what was written
    bool adopted = false; // the job succeeded with exactly these bytes
    // Whose output it was: the job's attempt and the worker's connection.
    // Either changed by the time the completion is handled (the stream was
    // cut and the job requeued, maybe to the same worker id reconnected):
    // the completion is stale and ignored.
    int attempt = 0;
    uint64_t connection = 0;
  };
  // The bytes of a job that `worker_id` runs, for its result file, and
  // whose they are; NOT_FOUND when it is not running there or has no output.
  absl::StatusOr<std::string> RunningResultBytes(const std::string& worker_id,
                                                 const std::string& job_id,
                                                 SavedResult* whose) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status HandleWorkerEvent(WorkerRecord& w, JobRecord& rec,
                                 const sparsevid::v1::JobEvent& event, SavedResult* saved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TickLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journal::Compact with the jobs held now, when most records are dead.
  void MaybeCompactJournal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EngineOptions options_;
  EngineObserver* const observer_;
  const Clock clock_;
  // ListJobs tokens: opaque, so they do not reveal admission numbers.
  const PageTokens page_tokens_;

  mutable absl::Mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<JobRecord>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> jobs_by_admit_ ABSL_GUARDED_BY(mu_);
  // (owner, request_id) -> job id; see IdempotencyKey.
  std::unordered_map<std::string, std::string> job_by_request_id_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, int> active_by_owner_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<WorkerRecord>> workers_ ABSL_GUARDED_BY(mu_);
  JobQueue queue_ ABSL_GUARDED_BY(mu_);
  ResultStore results_ ABSL_GUARDED_BY(mu_);
  std::map<int, int> state_counts_ ABSL_GUARDED_BY(mu_);
  uint64_t next_admit_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_connection_ ABSL_GUARDED_BY(mu_) = 1;  // WorkerRecord::connection
  // After a failed journal compaction: not tried again below this many records.
  size_t compact_retry_records_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  // Mean run time of succeeded jobs (exponential average), seconds; <0 unknown.
  double mean_run_seconds_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<std::shared_ptr<Subscription>> pending_notify_ ABSL_GUARDED_BY(mu_);

  absl::Mutex ticker_mu_;
  bool ticker_stop_ ABSL_GUARDED_BY(ticker_mu_) = false;
  std::thread ticker_;
};

}  // namespace sparsevid::front
