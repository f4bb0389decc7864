// Runs assigned jobs on the worker's single inference thread. The thread
// owns the Pipeline; callers (the front link's RPC threads) only enqueue
// work and cancel it, and never block on inference. Each job has its own
// CancelToken (cancel + deadline) that the engine checks between denoise
// steps; its events (Progress, Chunk, Completed, Failed, Cancelled) go to
// the event callback from the inference thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "sparsevid/v1/worker_link.pb.h"
#include "worker/engine/pipeline.h"
#include "worker/worker_metrics.h"

namespace sparsevid::worker {

struct JobRunnerOptions {
  std::string worker_id;
  int capacity = 1;        // jobs accepted at once (running + waiting here)
  int crf = 23;            // x264 quality of the output
  std::string preset = "veryfast";
  int encoder_threads = 1;
};

class JobRunner {
 public:
  // Called on the inference thread for every job event (seq is left 0: the
  // front numbers events). Must not block for long.
  using EventCallback = std::function<void(const std::string& job_id, v1::JobEvent event)>;
  // Called whenever a slot frees (after a job's final event was emitted).
  using SlotCallback = std::function<void(int free_slots)>;

  // pipeline and metrics must outlive the runner.
  JobRunner(engine::Pipeline* pipeline, WorkerMetrics* metrics, JobRunnerOptions options,
            EventCallback on_event, SlotCallback on_slot_free);
  ~JobRunner();  // cancels everything and joins the inference thread
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Accepts a job without waiting for the inference thread.
  // RESOURCE_EXHAUSTED when all slots are taken, ALREADY_EXISTS when the id
  // is already here, INVALID_ARGUMENT for an empty id.
  absl::Status Submit(const v1::Assign& assign);
  // Stops the job at its next check (a waiting job is dropped at once);
  // a Cancelled event follows. Unknown ids are ignored (the job may have
  // just finished). Returns whether the job was found.
  bool Cancel(const std::string& job_id, const std::string& reason);
  // Cancels every job (e.g. the link to the front broke).
  void CancelAll(const std::string& reason);
  // Blocks until no job is running or waiting, or the timeout passes.
  bool WaitIdle(std::chrono::milliseconds timeout);

  int free_slots() const;
  int capacity() const { return options_.capacity; }
  // Mean denoise step time of the jobs run so far (moving average), 0 until
  // one ran; the front uses it for ETAs (ModelLimits.step_seconds_estimate).
  double step_seconds_estimate() const { return step_seconds_estimate_.load(); }

 private:
  struct Job;
  void Loop();
  void Run(Job& job);
  void Finish(Job& job, absl::Status status);
  // Counts the outcome and writes the "job finished" log line.
  void RecordOutcome(const std::string& job_id, JobOutcome outcome, const std::string& detail);

  engine::Pipeline* pipeline_;
  WorkerMetrics* metrics_;
  JobRunnerOptions options_;
  EventCallback on_event_;
  SlotCallback on_slot_free_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;  // guarded by mu_
  std::shared_ptr<Job> running_;              // guarded by mu_
  bool stopping_ = false;                     // guarded by mu_
  // True from the end of a job until its freed slot has been reported, so
  // WaitIdle means "finished and announced". Guarded by mu_.
  bool reporting_free_ = false;
  double last_decode_seconds_ = 0;            // inference thread only, for ETAs
  std::atomic<double> step_seconds_estimate_{0};
  std::thread thread_;
};

// Assign.request -> engine parameters (0 / unset fields mean the model
// default). The seed, if unset, is drawn here and reported in Completed.
engine::GenerateParams ToGenerateParams(const v1::GenerateRequest& request,
                                        const engine::ModelInfo& info);

}  // namespace sparsevid::worker
