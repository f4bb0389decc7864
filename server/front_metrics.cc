#include "server/front_metrics.h"

#include "common/metrics.h"

namespace sparsevid::front {
namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

std::vector<double> QueueWaitBuckets() {
  return {0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800};
}

}  // namespace

FrontMetrics::FrontMetrics(prometheus::Registry& r)
    : queue_depth_(prometheus::BuildGauge()
                       .Name("sparsevid_queue_depth")
                       .Help("Jobs waiting in the queue")
                       .Register(r)
                       .Add({})),
      jobs_(prometheus::BuildGauge()
                .Name("sparsevid_jobs")
                .Help("Jobs known to the front by state")
                .Register(r)),
      finished_(prometheus::BuildCounter()
                    .Name("sparsevid_jobs_finished_total")
                    .Help("Jobs finished by outcome (succeeded, failed, cancelled, expired)")
                    .Register(r)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("sparsevid_queue_wait_seconds")
                      .Help("Submit to first start on a worker")
                      .Register(r)
                      .Add({}, QueueWaitBuckets())),
      request_duration_(prometheus::BuildHistogram()
                            .Name("sparsevid_request_duration_seconds")
                            .Help("Submit to finish, by outcome")
                            .Register(r)),
      first_progress_(prometheus::BuildHistogram()
                          .Name("sparsevid_time_to_first_progress_seconds")
                          .Help("Submit to the first progress event from a worker")
                          .Register(r)
                          .Add({}, metrics::JobSecondsBuckets())),
      cancel_latency_(prometheus::BuildHistogram()
                          .Name("sparsevid_cancel_latency_seconds")
                          .Help("Cancel request to the job's worker slot being free")
                          .Register(r)
                          .Add({}, metrics::LatencySecondsBuckets())),
      workers_(prometheus::BuildGauge()
                   .Name("sparsevid_workers_connected")
                   .Help("Workers with an open WorkerLink stream")
                   .Register(r)
                   .Add({})),
      free_slots_(prometheus::BuildGauge()
                      .Name("sparsevid_worker_free_slots")
                      .Help("Job slots free across connected workers")
                      .Register(r)
                      .Add({})),
      rpcs_(prometheus::BuildCounter()
                .Name("sparsevid_grpc_requests_total")
                .Help("Finished RPCs by method and status code")
                .Register(r)),
      rejections_(prometheus::BuildCounter()
                      .Name("sparsevid_rejections_total")
                      .Help("Submissions refused, by reason")
                      .Register(r)),
      requeued_(prometheus::BuildCounter()
                    .Name("sparsevid_jobs_requeued_total")
                    .Help("Jobs put back in the queue after their worker was lost")
                    .Register(r)
                    .Add({})),
      auth_failures_(prometheus::BuildCounter()
                         .Name("sparsevid_auth_failures_total")
                         .Help("Calls refused by API-key auth, by reason (missing, malformed, "
                               "invalid, forbidden)")
                         .Register(r)),
      key_reloads_(prometheus::BuildCounter()
                       .Name("sparsevid_api_key_reloads_total")
                       .Help("Re-reads of a changed API keys file, by outcome (ok, error)")
                       .Register(r)),
      journal_writes_(prometheus::BuildCounter()
                          .Name("sparsevid_journal_writes_total")
                          .Help("Writes of the job journal (state.dir) by kind (record, result, "
                                "compaction) and outcome (ok, error)")
                          .Register(r)),
      journal_records_(prometheus::BuildGauge()
                           .Name("sparsevid_journal_records")
                           .Help("Records in the job journal's file (0 without state.dir)")
                           .Register(r)
                           .Add({})),
      result_write_(prometheus::BuildHistogram()
                        .Name("sparsevid_journal_result_write_seconds")
                        .Help("Writing and syncing one video's result file in state.dir")
                        .Register(r)
                        .Add({}, metrics::LatencySecondsBuckets())) {
  // Fixed label values exist from the start, so rate() has a baseline.
  for (const char* s : {"queued", "running", "succeeded", "failed", "cancelled"}) {
    jobs_.Add({{"state", s}});
  }
  for (const char* o : {"succeeded", "failed", "cancelled", "expired"}) {
    finished_.Add({{"outcome", o}});
  }
  for (const char* reason :
       {"queue_full", "invalid", "draining", "duplicate", "deadline", "quota", "journal"}) {
    rejections_.Add({{"reason", reason}});
  }
  for (const char* reason : {"missing", "malformed", "invalid", "forbidden"}) {
    auth_failures_.Add({{"reason", reason}});
  }
  for (const char* outcome : {"ok", "error"}) key_reloads_.Add({{"outcome", outcome}});
  for (const char* kind : {"record", "result", "compaction"})
    for (const char* outcome : {"ok", "error"})
      journal_writes_.Add({{"kind", kind}, {"outcome", outcome}});
  metrics::AddBuildInfo(r, "front");
}

void FrontMetrics::SetQueueDepth(int depth) { queue_depth_.Set(depth); }
void FrontMetrics::SetJobsInState(const std::string& state, int count) {
  jobs_.Add({{"state", state}}).Set(count);
}
void FrontMetrics::SetWorkers(int connected, int free_slots) {
  workers_.Set(connected);
  free_slots_.Set(free_slots);
}
void FrontMetrics::OnRejected(const std::string& reason) {
  rejections_.Add({{"reason", reason}}).Increment();
}
void FrontMetrics::OnJobStarted(absl::Duration queue_wait) {
  queue_wait_.Observe(absl::ToDoubleSeconds(queue_wait));
}
void FrontMetrics::OnFirstProgress(absl::Duration since_submit) {
  first_progress_.Observe(absl::ToDoubleSeconds(since_submit));
}
void FrontMetrics::OnJobFinished(const std::string& outcome, absl::Duration since_submit) {
  finished_.Add({{"outcome", outcome}}).Increment();
  request_duration_.Add({{"outcome", outcome}}, metrics::JobSecondsBuckets())
      .Observe(absl::ToDoubleSeconds(since_submit));
}
void FrontMetrics::OnCancelCompleted(absl::Duration latency) {
  cancel_latency_.Observe(absl::ToDoubleSeconds(latency));
}
void FrontMetrics::OnRequeued() { requeued_.Increment(); }
void FrontMetrics::OnAuthFailure(const std::string& reason) {
  auth_failures_.Add({{"reason", reason}}).Increment();
}
void FrontMetrics::OnApiKeysReloaded(bool ok) {
  key_reloads_.Add({{"outcome", ok ? "ok" : "error"}}).Increment();
}
void FrontMetrics::OnRpc(const std::string& method, grpc::StatusCode code) {
  rpcs_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
}

void FrontMetrics::OnJournalWrite(const std::string& kind, bool ok) {
  journal_writes_.Add({{"kind", kind}, {"outcome", ok ? "ok" : "error"}}).Increment();
}

void FrontMetrics::SetJournalRecords(size_t records) {
  journal_records_.Set(static_cast<double>(records));
}

void FrontMetrics::OnResultFileWritten(absl::Duration took) {
  result_write_.Observe(absl::ToDoubleSeconds(took));
}

}  // namespace sparsevid::front
