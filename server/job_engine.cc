#include "server/job_engine.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/request_validation.h"
#include "common/status.h"
#include "common/version.h"

namespace sparsevid::front {

using sparsevid::v1::FrontMessage;
using sparsevid::v1::GenerateRequest;
using sparsevid::v1::Job;
using sparsevid::v1::JobEvent;
using sparsevid::v1::JobState;

namespace {

constexpr size_t kMaxJobIdLength = 128;

const char* StateLabel(int state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unspecified";
  }
}

bool IsTerminal(JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

double UnixSeconds(absl::Time t) {
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

absl::Status CheckJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  if (job_id.size() > kMaxJobIdLength) {
    return absl::InvalidArgumentError("job_id: longer than 128 characters");
  }
  return absl::OkStatus();
}

absl::Status NoSuchJob(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "' (unknown or expired)"));
}

// request_ids are per owner: one tenant's id never finds another's job.
std::string IdempotencyKey(const std::string& owner, const std::string& request_id) {
  return absl::StrCat(owner, std::string(1, '\0'), request_id);
}

// Job ids and default seeds straight from the OS entropy source: a seeded
// mt19937_64 is predictable from ~312 of its outputs, so a client could
// rebuild it from its own ids and seeds and count the draws (other clients'
// jobs) between them.
uint64_t RandomU64() {
  static std::mutex mu;
  static std::random_device dev;  // getrandom(2) in libstdc++ on Linux
  std::lock_guard<std::mutex> lock(mu);
  return (static_cast<uint64_t>(dev()) << 32) ^ dev();
}

// The last event of a job that ended as `job` says (state, status, stats).
JobEvent TerminalEvent(const Job& job) {
  JobEvent ev;
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    *ev.mutable_completed()->mutable_stats() = job.stats();
  } else if (job.state() == v1::JOB_STATE_CANCELLED) {
    ev.mutable_cancelled()->set_reason(job.status_message());
  } else {
    ev.mutable_failed()->set_code(job.status_code());
    ev.mutable_failed()->set_message(job.status_message());
  }
  return ev;
}

}  // namespace

struct JobEngine::JobRecord {
  explicit JobRecord(int log_capacity) : log(log_capacity) {}
  Job job;                  // state, request (defaults resolved), progress
  std::string fingerprint;  // the request as submitted, for idempotency
  uint64_t admit_seq = 0;
  absl::Time created;
  absl::Time started;       // of the current attempt
  absl::Time finished;
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time cancel_requested = absl::InfinitePast();
  bool first_progress_seen = false;
  std::string worker_id;    // set while a worker holds a slot for it
  // Counted in active_by_owner_ until finished AND off its worker's slot (a
  // cancelled job still occupies the slot until the worker confirms).
  bool holds_quota = false;
  int attempts = 0;
  int reported_position = 0;
  JobEventLog log;
  std::vector<std::shared_ptr<Subscription>> subscribers;
};

struct JobEngine::WorkerRecord {
  v1::WorkerHello hello;
  std::shared_ptr<WorkerChannel> channel;
  int reported_free = 0;
  std::set<std::string> active;  // jobs holding a slot (incl. being cancelled)
  absl::Time connected;
  uint64_t connection = 0;  // unique per stream: a reconnected worker id gets a new one
};

class JobEngine::Notifier {
 public:
  explicit Notifier(JobEngine* engine) ABSL_NO_THREAD_SAFETY_ANALYSIS
      : engine_(engine) {
    engine_->mu_.Lock();
  }
  ~Notifier() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::vector<std::shared_ptr<Subscription>> subs;
    subs.swap(engine_->pending_notify_);
    engine_->mu_.Unlock();
    for (auto& s : subs) s->Notify();
  }

 private:
  JobEngine* engine_;
};

JobEngine::JobEngine(EngineOptions options, EngineObserver* observer, Clock clock)
    : options_(std::move(options)),
      observer_(observer),
      clock_(std::move(clock)),
      queue_(options_.queue_capacity),
      results_(options_.result_cap_bytes, options_.result_ttl) {
  absl::MutexLock lock(&mu_);
  ReportGauges();
  if (observer_ && options_.journal) observer_->SetJournalRecords(options_.journal->records());
}

JobEngine::~JobEngine() { StopTicker(); }

void JobEngine::StartTicker(absl::Duration period) {
  ticker_ = std::thread([this, period] {
    absl::MutexLock lock(&ticker_mu_);
    while (!ticker_stop_) {
      ticker_mu_.AwaitWithTimeout(absl::Condition(&ticker_stop_), period);
      if (ticker_stop_) break;
      ticker_mu_.Unlock();
      Tick();
      ticker_mu_.Lock();
    }
  });
}

void JobEngine::StopTicker() {
  {
    absl::MutexLock lock(&ticker_mu_);
    ticker_stop_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
}

// ---------------------------------------------------------------- helpers

JobEngine::JobRecord* JobEngine::Find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<JobEngine::JobRecord*> JobEngine::FindFor(const std::string& job_id,
                                                         const Caller& caller) const {
  if (absl::Status s = CheckJobId(job_id); !s.ok()) return s;
  JobRecord* rec = Find(job_id);
  // Another owner's job reads as unknown: ids are not confirmed to exist.
  if (rec == nullptr || (!caller.sees_all && rec->job.owner() != caller.name)) {
    return NoSuchJob(job_id);
  }
  return rec;
}

absl::StatusOr<std::pair<v1::ModelLimits, std::vector<std::string>>>
JobEngine::LimitsFor(const std::string& model) const {
  std::vector<std::string> served;
  const WorkerRecord* match = nullptr;
  for (const auto& [id, w] : workers_) {
    if (std::find(served.begin(), served.end(), w->hello.model()) == served.end()) {
      served.push_back(w->hello.model());
    }
    if (match == nullptr && (model.empty() || w->hello.model() == model)) {
      match = w.get();
    }
  }
  if (served.empty()) {
    // No worker yet: the configured model and limits stand in.
    if (!options_.default_model.empty()) served.push_back(options_.default_model);
    return std::make_pair(options_.default_limits, served);
  }
  if (match == nullptr) {
    // Validation reports the unknown model by name.
    return std::make_pair(workers_.begin()->second->hello.limits(), served);
  }
  return std::make_pair(match->hello.limits(), served);
}

Job JobEngine::Snapshot(const JobRecord& rec) const {
  Job job = rec.job;
  job.set_queue_position(job.state() == v1::JOB_STATE_QUEUED
                             ? queue_.Position(job.job_id())
                             : 0);
  return job;
}

void JobEngine::Emit(JobRecord& rec, JobEvent event, int64_t chunk_size) {
  event.set_job_id(rec.job.job_id());
  rec.log.Append(std::move(event), chunk_size);
  for (const auto& s : rec.subscribers) pending_notify_.push_back(s);
}

void JobEngine::SetState(JobRecord& rec, JobState state) {
  const JobState old = rec.job.state();
  if (old == state) return;
  if (old != v1::JOB_STATE_UNSPECIFIED) --state_counts_[old];
  ++state_counts_[state];
  rec.job.set_state(state);
  if (observer_) {
    if (old != v1::JOB_STATE_UNSPECIFIED) {
      observer_->SetJobsInState(StateLabel(old), state_counts_[old]);
    }
    observer_->SetJobsInState(StateLabel(state), state_counts_[state]);
  }
}

void JobEngine::Finish(JobRecord& rec, JobState state, const absl::Status& status,
                       const std::string& outcome) {
  const absl::Time now = clock_();
  if (rec.job.state() == v1::JOB_STATE_QUEUED) queue_.Remove(rec.job.job_id());
  SetState(rec, state);
  MaybeReleaseQuota(rec);
  rec.finished = now;
  rec.job.set_finished_unix_seconds(UnixSeconds(now));
  if (state != v1::JOB_STATE_SUCCEEDED) {
    rec.job.set_status_code(static_cast<int>(state == v1::JOB_STATE_CANCELLED
                                                  ? absl::StatusCode::kCancelled
                                                  : status.code()));
    rec.job.set_status_message(std::string(status.message()));
  }
  Emit(rec, TerminalEvent(rec.job));
  if (state != v1::JOB_STATE_SUCCEEDED) results_.Erase(rec.job.job_id());
  if (observer_) observer_->OnJobFinished(outcome, now - rec.created);
  if (options_.journal != nullptr) {
    // A lost record only means the next front runs the job again.
    absl::Status s = options_.journal->Finished({rec.job, rec.fingerprint, rec.deadline});
    JournalWritten("record", s);
    if (!s.ok())
      logging::Error("job journal write failed", {{"error", s.ToString()}}, rec.job.job_id());
  }
  logging::Info("job finished",
                {{"state", StateLabel(state)},
                 {"code", absl::StatusCodeToString(status.code())},
                 {"message", std::string(status.message())}},
                rec.job.job_id());
}

void JobEngine::StopOnWorker(JobRecord& rec, const std::string& reason) {
  auto it = workers_.find(rec.worker_id);
  if (it == workers_.end()) return;
  FrontMessage msg;
  msg.mutable_cancel()->set_job_id(rec.job.job_id());
  msg.mutable_cancel()->set_reason(reason);
  it->second->channel->Send(msg);
}

void JobEngine::FreeSlot(JobRecord& rec) {
  auto it = workers_.find(rec.worker_id);
  if (it != workers_.end()) it->second->active.erase(rec.job.job_id());
  if (rec.cancel_requested != absl::InfinitePast() && observer_) {
    observer_->OnCancelCompleted(clock_() - rec.cancel_requested);
  }
  rec.cancel_requested = absl::InfinitePast();
  rec.worker_id.clear();
  MaybeReleaseQuota(rec);
}

void JobEngine::MaybeReleaseQuota(JobRecord& rec) {
  if (!rec.holds_quota || !IsTerminal(rec.job.state()) || !rec.worker_id.empty()) return;
  rec.holds_quota = false;
  auto active = active_by_owner_.find(rec.job.owner());
  if (active != active_by_owner_.end() && --active->second <= 0) active_by_owner_.erase(active);
}

int JobEngine::FreeSlots(const WorkerRecord& w) const {
  const int by_capacity = w.hello.capacity() - static_cast<int>(w.active.size());
  return std::max(0, std::min(w.reported_free, by_capacity));
}

double JobEngine::EstimateWaitSeconds(int position) const {
  int total = 0, busy = 0;
  double per_job = mean_run_seconds_;
  for (const auto& [id, w] : workers_) {
    total += w->hello.capacity();
    busy += static_cast<int>(w->active.size());
    if (per_job < 0 && w->hello.limits().step_seconds_estimate() > 0) {
      per_job = w->hello.limits().step_seconds_estimate() *
                std::max(1, w->hello.limits().default_steps());
    }
  }
  if (total == 0 || per_job < 0) return -1;
  // Jobs ahead of this one plus the running ones, served `total` at a time.
  const int rounds = (position - 1 + busy) / total;
  return rounds * per_job;
}

void JobEngine::RefreshQueuePositions() {
  const std::vector<std::string> ids = queue_.Ordered();
  const int depth = static_cast<int>(ids.size());
  for (int i = 0; i < depth; ++i) {
    JobRecord* rec = Find(ids[i]);
    if (rec == nullptr || rec->reported_position == i + 1) continue;
    rec->reported_position = i + 1;
    JobEvent ev;
    ev.mutable_queued()->set_position(i + 1);
    ev.mutable_queued()->set_depth(depth);
    ev.mutable_queued()->set_eta_seconds(EstimateWaitSeconds(i + 1));
    Emit(*rec, std::move(ev));
  }
  ReportGauges();
}

void JobEngine::ReportGauges() {
  if (!observer_) return;
  observer_->SetQueueDepth(queue_.size());
  int free = 0;
  for (const auto& [id, w] : workers_) free += FreeSlots(*w);
  observer_->SetWorkers(static_cast<int>(workers_.size()), free);
}

void JobEngine::TryAssign() {
  if (draining_) return;
  bool assigned = false;
  for (auto& [worker_id, w] : workers_) {
    while (FreeSlots(*w) > 0 && queue_.size() > 0) {
      const std::string& model = w->hello.model();
      const std::string job_id = queue_.PopFirst([&](const std::string& id) {
        const JobRecord* r = Find(id);
        return r != nullptr &&
               (r->job.request().model().empty() || r->job.request().model() == model);
      });
      if (job_id.empty()) break;
      JobRecord& rec = *Find(job_id);
      const absl::Time now = clock_();
      ++rec.attempts;
      rec.worker_id = worker_id;
      rec.started = now;
      rec.reported_position = 0;
      w->active.insert(job_id);
      w->reported_free = std::max(0, w->reported_free - 1);
      SetState(rec, v1::JOB_STATE_RUNNING);
      if (rec.attempts == 1 && observer_) observer_->OnJobStarted(now - rec.created);

      FrontMessage msg;
      v1::Assign* assign = msg.mutable_assign();
      assign->set_job_id(job_id);
      *assign->mutable_request() = rec.job.request();
      assign->set_deadline_unix_seconds(
          rec.deadline == absl::InfiniteFuture() ? 0 : UnixSeconds(rec.deadline));
      assign->set_attempt(rec.attempts);
      w->channel->Send(msg);

      JobEvent ev;
      ev.mutable_started()->set_worker(worker_id);
      ev.mutable_started()->set_attempt(rec.attempts);
      Emit(rec, std::move(ev));
      logging::Info("job assigned", {{"worker", worker_id}, {"attempt", rec.attempts}},
                    job_id);
      assigned = true;
    }
  }
  if (assigned) RefreshQueuePositions();
}

void JobEngine::EraseJob(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  JobRecord& rec = *it->second;
  if (!rec.job.request_id().empty()) {
    // Only if it still names this job: after a restart an old ended job and
    // the newer one its request_id was resubmitted as can both be present.
    auto key = job_by_request_id_.find(IdempotencyKey(rec.job.owner(), rec.job.request_id()));
    if (key != job_by_request_id_.end() && key->second == job_id) job_by_request_id_.erase(key);
  }
  jobs_by_admit_.erase(rec.admit_seq);
  --state_counts_[rec.job.state()];
  if (observer_) {
    observer_->SetJobsInState(StateLabel(rec.job.state()), state_counts_[rec.job.state()]);
  }
  results_.Erase(job_id);
  DropResultFile(job_id);
  jobs_.erase(it);
}

// ------------------------------------------------------------- public API

absl::StatusOr<Job> JobEngine::Submit(const GenerateRequest& request, absl::Time deadline,
                                      const Caller& caller) {
  Notifier lock(this);
  auto reject = [&](const std::string& reason, absl::Status s) {
    if (observer_) observer_->OnRejected(reason);
    return s;
  };
  if (draining_) {
    return reject("draining", absl::UnavailableError(
                                  "front is shutting down; submit to another front"));
  }
  const std::string fingerprint = request.SerializeAsString();
  if (!request.request_id().empty()) {
    if (absl::Status s = ValidateRequestId(request.request_id()); !s.ok()) {
      return reject("invalid", s);
    }
    auto it = job_by_request_id_.find(IdempotencyKey(caller.name, request.request_id()));
    if (it != job_by_request_id_.end()) {
      const JobRecord* existing = Find(it->second);
      if (existing != nullptr) {
        if (existing->fingerprint != fingerprint) {
          return reject("duplicate",
                        absl::AlreadyExistsError(absl::StrCat(
                            "request_id: '", request.request_id(),
                            "' was used for a different request (job ",
                            existing->job.job_id(), ")")));
        }
        return Snapshot(*existing);
      }
    }
  }
  auto limits = LimitsFor(request.model());
  if (!limits.ok()) return reject("invalid", limits.status());
  if (absl::Status s = ValidateGenerateRequest(request, limits->first, limits->second);
      !s.ok()) {
    return reject("invalid", s);
  }
  const absl::Time now = clock_();
  if (deadline <= now) {
    return reject("deadline", absl::DeadlineExceededError(
                                  "deadline passed before the job was queued"));
  }
  if (caller.max_active_jobs > 0) {
    auto active = active_by_owner_.find(caller.name);
    const int n = active == active_by_owner_.end() ? 0 : active->second;
    if (n >= caller.max_active_jobs) {
      return reject("quota", WithRetryDelay(absl::ResourceExhaustedError(absl::StrCat(
                                                "api key '", caller.name, "' has ", n,
                                                " queued or running jobs, its limit; submit "
                                                "again when one finishes")),
                                            options_.min_retry_delay));
    }
  }
  if (queue_.full()) {
    absl::Duration delay = options_.min_retry_delay;
    const double wait = EstimateWaitSeconds(1);
    if (wait > 0) delay = std::max(delay, absl::Seconds(wait));
    return reject("queue_full",
                  WithRetryDelay(absl::ResourceExhaustedError(absl::StrCat(
                                     "queue is full (", queue_.capacity(), " jobs)")),
                                 delay));
  }

  auto rec = std::make_unique<JobRecord>(options_.event_log_capacity);
  const std::string job_id = absl::StrFormat("j-%016x", RandomU64());
  GenerateRequest resolved = request;
  ResolveDefaults(limits->first, &resolved);
  if (!resolved.has_seed()) resolved.set_seed(RandomU64());
  rec->fingerprint = fingerprint;
  rec->admit_seq = next_admit_seq_++;
  rec->created = now;
  rec->deadline = deadline;
  rec->job.set_job_id(job_id);
  rec->job.set_request_id(request.request_id());
  rec->job.set_owner(caller.name);
  *rec->job.mutable_request() = std::move(resolved);
  rec->job.set_created_unix_seconds(UnixSeconds(now));
  JobRecord& r = *rec;
  if (options_.journal != nullptr) {  // on disk before the client hears of the job
    absl::Status s = options_.journal->Accepted({r.job, fingerprint, deadline});
    JournalWritten("record", s);
    if (!s.ok()) {
      logging::Error("job journal write failed", {{"error", s.ToString()}}, job_id);
      return reject("journal", absl::UnavailableError(absl::StrCat(
                                   "front cannot record the job durably: ", s.message())));
    }
  }
  if (absl::Status s = queue_.Push(job_id, request.priority(), r.admit_seq); !s.ok()) {
    return reject("queue_full", s);  // unreachable: fullness checked above
  }
  AddRecord(std::move(rec));
  SetState(r, v1::JOB_STATE_QUEUED);
  logging::Info("job queued",
                {{"priority", request.priority()}, {"request_id", request.request_id()}},
                job_id);
  RefreshQueuePositions();  // emits this job's first Queued event
  TryAssign();
  return Snapshot(r);
}

absl::StatusOr<Job> JobEngine::GetJob(const std::string& job_id, const Caller& caller) const {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JobRecord*> rec = FindFor(job_id, caller);
  if (!rec.ok()) return rec.status();
  return Snapshot(**rec);
}

absl::StatusOr<Job> JobEngine::Cancel(const std::string& job_id, const std::string& reason,
                                      const Caller& caller) {
  Notifier lock(this);
  absl::StatusOr<JobRecord*> found = FindFor(job_id, caller);
  if (!found.ok()) return found.status();
  JobRecord* rec = *found;
  const std::string why = reason.empty() ? "cancelled by client" : reason;
  const JobState state = rec->job.state();
  if (state == v1::JOB_STATE_QUEUED) {
    Finish(*rec, v1::JOB_STATE_CANCELLED, absl::CancelledError(why), "cancelled");
    if (observer_) observer_->OnCancelCompleted(absl::ZeroDuration());
    RefreshQueuePositions();
  } else if (state == v1::JOB_STATE_RUNNING) {
    rec->cancel_requested = clock_();
    StopOnWorker(*rec, why);
    Finish(*rec, v1::JOB_STATE_CANCELLED, absl::CancelledError(why), "cancelled");
  }
  return Snapshot(*rec);
}

absl::StatusOr<v1::ListJobsResponse> JobEngine::ListJobs(const v1::ListJobsRequest& request,
                                                         const Caller& caller) const {
  int page_size = request.page_size() == 0 ? 100 : request.page_size();
  if (page_size < 1 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be in [0, 1000], got ", request.page_size()));
  }
  if (!v1::JobState_IsValid(request.state())) {
    return absl::InvalidArgumentError(absl::StrCat("state: unknown state ", request.state()));
  }
  uint64_t start = 0;
  if (!request.page_token().empty()) {
    absl::StatusOr<uint64_t> position = page_tokens_.Decode(request.page_token(), caller.name);
    if (!position.ok()) return position.status();
    start = *position;
  }
  absl::MutexLock lock(&mu_);
  v1::ListJobsResponse response;
  for (auto it = jobs_by_admit_.lower_bound(start); it != jobs_by_admit_.end(); ++it) {
    const JobRecord* rec = Find(it->second);
    if (rec == nullptr || (!caller.sees_all && rec->job.owner() != caller.name)) continue;
    if (request.state() != v1::JOB_STATE_UNSPECIFIED && rec->job.state() != request.state()) {
      continue;
    }
    if (response.jobs_size() == page_size) {
      response.set_next_page_token(page_tokens_.Encode(it->first, caller.name));
      break;
    }
    *response.add_jobs() = Snapshot(*rec);
  }
  return response;
}

absl::StatusOr<std::string> JobEngine::ReadResult(const std::string& job_id, int64_t offset,
                                                  int64_t max_bytes, int64_t* total_bytes,
                                                  const Caller& caller) const {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JobRecord*> found = FindFor(job_id, caller);
  if (!found.ok()) return found.status();
  const JobRecord* rec = *found;
  if (rec->job.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is ", StateLabel(rec->job.state()), "; only a succeeded job has a result"));
  }
  if (!results_.IsComplete(job_id)) {
    return absl::NotFoundError(
        absl::StrCat("result of job ", job_id, " has expired from the result store"));
  }
  *total_bytes = results_.Size(job_id);
  return results_.Read(job_id, offset, max_bytes);
}

// ----------------------------------------------------------------- events

absl::StatusOr<EventRead> JobEngine::NextEvent(const std::string& job_id, int64_t after_seq,
                                               bool include_chunks) const {
  absl::MutexLock lock(&mu_);
  const JobRecord* rec = Find(job_id);
  if (rec == nullptr) {
    return NoSuchJob(job_id);
  }
  EventRead out;
  int64_t cursor = after_seq;
  while (const JobEventLog::Entry* e = rec->log.NextAfter(cursor, include_chunks)) {
    cursor = e->event.seq();
    if (!e->event.has_chunk()) {
      out.event = e->event;
      return out;
    }
    // Copy the chunk's bytes in from the output; skip it if they are gone.
    auto data = results_.Read(job_id, e->event.chunk().offset(), e->chunk_size);
    if (!data.ok() || static_cast<int64_t>(data->size()) != e->chunk_size) continue;
    out.event = e->event;
    out.event->mutable_chunk()->set_data(std::move(*data));
    return out;
  }
  if (IsTerminal(rec->job.state())) {
    out.finished = true;
    if (rec->job.state() == v1::JOB_STATE_SUCCEEDED) {
      out.final_status = absl::OkStatus();
    } else {
      out.final_status = absl::Status(static_cast<absl::StatusCode>(rec->job.status_code()),
                                      rec->job.status_message());
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<Subscription>> JobEngine::Subscribe(
    const std::string& job_id, std::function<void()> on_change, const Caller& caller) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JobRecord*> found = FindFor(job_id, caller);
  if (!found.ok()) return found.status();
  JobRecord* rec = *found;
  auto sub = std::make_shared<Subscription>(std::move(on_change));
  rec->subscribers.push_back(sub);
  return sub;
}

void JobEngine::Unsubscribe(const std::string& job_id, const std::shared_ptr<Subscription>& sub) {
  sub->Cancel();
  absl::MutexLock lock(&mu_);
  JobRecord* rec = Find(job_id);
  if (rec == nullptr) return;
  auto& subs = rec->subscribers;
  subs.erase(std::remove(subs.begin(), subs.end(), sub), subs.end());
}

// ---------------------------------------------------------------- workers

absl::Status JobEngine::AddWorker(const v1::WorkerHello& hello,
                                  std::shared_ptr<WorkerChannel> channel) {
  if (hello.worker_id().empty() || hello.worker_id().size() > 256) {
    return absl::InvalidArgumentError("hello.worker_id: must be 1..256 characters");
  }
  if (hello.model().empty()) return absl::InvalidArgumentError("hello.model: must not be empty");
  if (hello.capacity() < 1 || hello.capacity() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.capacity: must be in [1, 1024], got ", hello.capacity()));
  }
  if (absl::Status s = ValidateModelLimits(hello.limits()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("hello.", s.message()));
  }
  Notifier lock(this);
  if (workers_.count(hello.worker_id()) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("hello.worker_id: worker '", hello.worker_id(), "' is already connected"));
  }
  auto w = std::make_unique<WorkerRecord>();
  w->hello = hello;
  w->channel = std::move(channel);
  w->connected = clock_();
  w->connection = next_connection_++;
  v1::FrontMessage welcome;
  welcome.mutable_welcome()->set_front_version(VersionString());
  w->channel->Send(welcome);
  workers_.emplace(hello.worker_id(), std::move(w));
  logging::Info("worker connected", {{"worker", hello.worker_id()},
                                     {"model", hello.model()},
                                     {"device", hello.device()},
                                     {"capacity", hello.capacity()}});
  ReportGauges();
  return absl::OkStatus();
}

absl::Status JobEngine::WorkerReady(const std::string& worker_id, int free_slots) {
  Notifier lock(this);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return absl::FailedPreconditionError("Ready before Hello");
  if (free_slots < 0 || free_slots > it->second->hello.capacity()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ready.free_slots: must be in [0, capacity=", it->second->hello.capacity(),
        "], got ", free_slots));
  }
  it->second->reported_free = free_slots;
  TryAssign();
  ReportGauges();
  return absl::OkStatus();
}

absl::StatusOr<std::string> JobEngine::RunningResultBytes(const std::string& worker_id,
                                                         const std::string& job_id,
                                                         SavedResult* whose) const {
  absl::MutexLock lock(&mu_);
  auto wit = workers_.find(worker_id);
  auto jit = jobs_.find(job_id);
  if (wit == workers_.end() || jit == jobs_.end() || wit->second->active.count(job_id) == 0 ||
      jit->second->job.state() != v1::JOB_STATE_RUNNING)
    return absl::NotFoundError("not running on this worker");
  const int64_t size = results_.Size(job_id);
  if (size == 0) return absl::NotFoundError("no output");
  whose->attempt = jit->second->attempts;
  whose->connection = wit->second->connection;
  return results_.Read(job_id, 0, size);
}

absl::Status JobEngine::WorkerEvent(const std::string& worker_id,
                                    const v1::WorkerJobEvent& event) {
  // A completed job's video goes to disk before its end is recorded (a
  // front that dies after that serves it again). The write and its
  // fdatasync happen here, outside the lock, so that a large video does not
  // stall every other call; this worker's stream is the only one that waits.
  // Its chunks all came before (one stream, in order), so the bytes are final.
  std::optional<SavedResult> saved;
  if (options_.journal != nullptr && event.event().has_completed()) {
    SavedResult whose;
    absl::StatusOr<std::string> bytes = RunningResultBytes(worker_id, event.job_id(), &whose);
    if (bytes.ok()) {
      const absl::Time start = absl::Now();
      saved = whose;
      saved->status = options_.journal->WriteResult(event.job_id(), *bytes);
      saved->bytes = static_cast<int64_t>(bytes->size());
      if (observer_) {
        observer_->OnJournalWrite("result", saved->status.ok());
        if (saved->status.ok()) observer_->OnResultFileWritten(absl::Now() - start);
      }
    }
  }
  Notifier lock(this);
  absl::Status handled = absl::OkStatus();
  auto wit = workers_.find(worker_id);
  JobRecord* rec = Find(event.job_id());
  if (wit == workers_.end()) {
    handled = absl::FailedPreconditionError("job event before Hello");
  } else if (rec == nullptr || wit->second->active.count(event.job_id()) == 0) {
    // A job this worker does not hold (cancelled and freed meanwhile, or
    // expired): nothing to update.
    logging::Debug("ignoring event for a job the worker does not hold",
                   {{"worker", worker_id}}, event.job_id());
  } else if (saved && (saved->connection != wit->second->connection ||
                       saved->attempt != rec->attempts)) {
    // Its stream was cut while the file was written; the job went back to
    // the queue and on to a new attempt: this completion is not that one's.
    logging::Info("ignoring the completion of an earlier attempt",
                  {{"worker", worker_id}, {"attempt", saved->attempt}}, event.job_id());
  } else {
    handled = HandleWorkerEvent(*wit->second, *rec, event.event(), saved ? &*saved : nullptr);
  }
  // Ended otherwise while the file was written (cancelled, expired, drained,
  // or a stale attempt): the file goes, unless another completion of the job
  // has succeeded with its own meanwhile.
  if (saved && !saved->adopted &&
      (rec == nullptr || rec->job.state() != v1::JOB_STATE_SUCCEEDED))
    DropResultFile(event.job_id());
  return handled;
}

absl::Status JobEngine::HandleWorkerEvent(WorkerRecord& w, JobRecord& rec,
                                          const JobEvent& event, SavedResult* saved) {
  const bool running = rec.job.state() == v1::JOB_STATE_RUNNING;
  const absl::Time now = clock_();
  switch (event.event_case()) {
    case JobEvent::kProgress: {
      if (!running) return absl::OkStatus();
      const v1::Progress& p = event.progress();
      rec.job.set_stage(p.stage());
      rec.job.set_step(p.step());
      rec.job.set_total_steps(p.total());
      if (!rec.first_progress_seen) {
        rec.first_progress_seen = true;
        if (observer_) observer_->OnFirstProgress(now - rec.created);
      }
      JobEvent ev;
      *ev.mutable_progress() = p;
      Emit(rec, std::move(ev));
      return absl::OkStatus();
    }
    case JobEvent::kChunk: {
      const v1::Chunk& c = event.chunk();
      if (static_cast<int64_t>(c.data().size()) > options_.max_chunk_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk.data: ", c.data().size(), " bytes exceed the limit of ",
            options_.max_chunk_bytes));
      }
      if (!running) return absl::OkStatus();
      absl::Status s = results_.Append(rec.job.job_id(), c.offset(), c.data());
      ForgetEvictedResults();
      if (absl::IsFailedPrecondition(s)) {
        return absl::InvalidArgumentError(absl::StrCat("chunk.offset: ", s.message()));
      }
      if (!s.ok()) {
        rec.cancel_requested = now;
        StopOnWorker(rec, "output too large");
        Finish(rec, v1::JOB_STATE_FAILED, s, "failed");
        return absl::OkStatus();
      }
      JobEvent ev;
      ev.mutable_chunk()->set_offset(c.offset());
      ev.mutable_chunk()->set_last(c.last());
      Emit(rec, std::move(ev), static_cast<int64_t>(c.data().size()));
      return absl::OkStatus();
    }
    case JobEvent::kCompleted: {
      FreeSlot(rec);
      if (running) {
        const int64_t size = results_.Size(rec.job.job_id());
        if (size == 0) {
          Finish(rec, v1::JOB_STATE_FAILED,
                 absl::InternalError("worker reported completion without any output"),
                 "failed");
        } else {
          v1::JobStats stats = event.completed().stats();
          stats.set_queue_seconds(absl::ToDoubleSeconds(rec.started - rec.created));
          stats.set_run_seconds(absl::ToDoubleSeconds(now - rec.started));
          stats.set_output_bytes(size);
          stats.set_worker(w.hello.worker_id());
          stats.set_attempts(rec.attempts);
          if (stats.seed() == 0) stats.set_seed(rec.job.request().seed());
          *rec.job.mutable_stats() = stats;
          results_.Complete(rec.job.job_id(), now);
          if (options_.journal != nullptr) {
            // Written by WorkerEvent before this (if it fails, only a restart
            // loses the video).
            absl::Status s = absl::InternalError("result file not written");
            if (saved != nullptr && saved->bytes == size) {
              saved->adopted = true;
              s = saved->status;
            }
            if (!s.ok())
              logging::Error("result file write failed", {{"error", s.ToString()}},
                             rec.job.job_id());
          }
          const double run = stats.run_seconds();
          mean_run_seconds_ = mean_run_seconds_ < 0 ? run : 0.8 * mean_run_seconds_ + 0.2 * run;
          Finish(rec, v1::JOB_STATE_SUCCEEDED, absl::OkStatus(), "succeeded");
        }
      }
      TryAssign();
      ReportGauges();
      return absl::OkStatus();
    }
    case JobEvent::kFailed: {
      FreeSlot(rec);
      if (running) {
        int code = event.failed().code();
        if (code <= 0 || code > 16) code = static_cast<int>(absl::StatusCode::kInternal);
        Finish(rec, v1::JOB_STATE_FAILED,
               absl::Status(static_cast<absl::StatusCode>(code), event.failed().message()),
               code == static_cast<int>(absl::StatusCode::kDeadlineExceeded) ? "expired"
                                                                             : "failed");
      }
      TryAssign();
      ReportGauges();
      return absl::OkStatus();
    }
    case JobEvent::kCancelled: {
      FreeSlot(rec);
      if (running) {
        Finish(rec, v1::JOB_STATE_CANCELLED,
               absl::CancelledError(event.cancelled().reason().empty()
                                        ? "cancelled by the worker"
                                        : event.cancelled().reason()),
               "cancelled");
      }
      TryAssign();
      ReportGauges();
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          "job_event.event: workers may send only progress, chunk, completed, failed or "
          "cancelled");
  }
}

void JobEngine::RemoveWorker(const std::string& worker_id, const std::string& why) {
  Notifier lock(this);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  std::unique_ptr<WorkerRecord> w = std::move(it->second);
  workers_.erase(it);
  logging::Warn("worker disconnected", {{"worker", worker_id}, {"why", why},
                                        {"active_jobs", w->active.size()}});
  for (const std::string& job_id : w->active) {
    JobRecord* rec = Find(job_id);
    if (rec == nullptr) continue;
    if (rec->job.state() != v1::JOB_STATE_RUNNING) {
      FreeSlot(*rec);  // a cancel in flight: the slot is gone with the worker
      continue;
    }
    rec->worker_id.clear();
    if (rec->attempts < options_.max_attempts && !draining_) {
      // Start over: the partial output of this attempt is void.
      results_.Erase(job_id);
      rec->log.DropChunkEvents();
      rec->job.set_stage("");
      rec->job.set_step(0);
      rec->job.set_total_steps(0);
      SetState(*rec, v1::JOB_STATE_QUEUED);
      (void)queue_.Push(job_id, rec->job.request().priority(), rec->admit_seq,
                        /*ignore_capacity=*/true);
      if (observer_) observer_->OnRequeued();
      logging::Warn("job requeued after worker loss",
                    {{"worker", worker_id}, {"attempt", rec->attempts}}, job_id);
    } else {
      Finish(*rec, v1::JOB_STATE_FAILED,
             absl::UnavailableError(absl::StrCat(
                 "worker ", worker_id, " was lost (", why, ") during attempt ",
                 rec->attempts, " of ", options_.max_attempts,
                 draining_ ? " while the front was draining" : "")),
             "failed");
    }
  }
  RefreshQueuePositions();
  TryAssign();
  ReportGauges();
}

// -------------------------------------------------------------- lifecycle

void JobEngine::Tick() {
  Notifier lock(this);
  TickLocked(clock_());
}

void JobEngine::TickLocked(absl::Time now) {
  bool queue_changed = false;
  std::vector<std::string> expired_jobs;
  std::vector<std::pair<absl::Time, std::string>> finished;
  for (auto& [id, rec] : jobs_) {
    const JobState state = rec->job.state();
    if ((state == v1::JOB_STATE_QUEUED || state == v1::JOB_STATE_RUNNING) &&
        now >= rec->deadline) {
      const bool queued = state == v1::JOB_STATE_QUEUED;
      if (!queued) {
        rec->cancel_requested = now;
        StopOnWorker(*rec, "deadline exceeded");
      }
      queue_changed |= queued;
      Finish(*rec, v1::JOB_STATE_FAILED,
             absl::DeadlineExceededError(
                 queued ? "the client deadline passed while the job was queued"
                        : absl::StrCat("the client deadline passed while the job was running (",
                                       rec->job.stage(), " step ", rec->job.step(), "/",
                                       rec->job.total_steps(), ")")),
             "expired");
    } else if (IsTerminal(state) && rec->worker_id.empty()) {
      if (now - rec->finished >= options_.job_retention) {
        expired_jobs.push_back(id);
      } else {
        finished.emplace_back(rec->finished, id);
      }
    }
  }
  for (const std::string& id : expired_jobs) EraseJob(id);
  if (static_cast<int>(finished.size()) > options_.max_finished_jobs) {
    std::sort(finished.begin(), finished.end());
    const size_t excess = finished.size() - options_.max_finished_jobs;
    for (size_t i = 0; i < excess; ++i) EraseJob(finished[i].second);
  }
  for (const std::string& id : results_.Sweep(now)) DropResultFile(id);
  if (queue_changed) RefreshQueuePositions();
  MaybeCompactJournal();
}

void JobEngine::MaybeCompactJournal() {
  if (options_.journal == nullptr) return;
  const size_t records = options_.journal->records();
  // An ended job held has two records (accepted, ended): dead ones come from
  // jobs the engine let go (retention), or a failed compaction's retry wait.
  if (records <= std::max({options_.journal_compact_records, 2 * jobs_.size(),
                           compact_retry_records_}))
    return;
  std::vector<JournaledJob> pending, ended;
  for (const auto& [seq, id] : jobs_by_admit_) {
    const JobRecord& r = *jobs_.at(id);
    if (IsTerminal(r.job.state())) {
      ended.push_back({r.job, r.fingerprint, r.deadline});
      continue;
    }
    JournaledJob j{{}, r.fingerprint, r.deadline};  // as Submit recorded it
    j.job.set_job_id(r.job.job_id());
    j.job.set_request_id(r.job.request_id());
    j.job.set_owner(r.job.owner());
    *j.job.mutable_request() = r.job.request();
    j.job.set_created_unix_seconds(r.job.created_unix_seconds());
    pending.push_back(std::move(j));
  }
  absl::Status s = options_.journal->Compact(pending, ended);
  JournalWritten("compaction", s);
  if (!s.ok()) {
    // The old file stays in use; tried again after as many records more.
    logging::Error("job journal compaction failed", {{"error", s.ToString()}});
    compact_retry_records_ = records + options_.journal_compact_records;
    return;
  }
  compact_retry_records_ = 0;
  logging::Info("job journal compacted",
                {{"records_before", static_cast<int64_t>(records)},
                 {"records_after", static_cast<int64_t>(pending.size() + ended.size())}});
}

void JobEngine::StartDrain() {
  Notifier lock(this);
  if (draining_) return;
  draining_ = true;
  for (const std::string& id : queue_.Ordered()) {
    JobRecord* rec = Find(id);
    if (rec == nullptr) continue;
    Finish(*rec, v1::JOB_STATE_FAILED,
           absl::UnavailableError("front is shutting down before the job started; resubmit"),
           "failed");
  }
  ReportGauges();
  logging::Info("draining", {{"running_jobs", state_counts_[v1::JOB_STATE_RUNNING]}});
}

bool JobEngine::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

int JobEngine::running_jobs() const {
  absl::MutexLock lock(&mu_);
  auto it = state_counts_.find(v1::JOB_STATE_RUNNING);
  return it == state_counts_.end() ? 0 : it->second;
}

void JobEngine::FailRunning(const absl::Status& status) {
  Notifier lock(this);
  for (auto& [id, rec] : jobs_) {
    if (rec->job.state() != v1::JOB_STATE_RUNNING) continue;
    rec->cancel_requested = clock_();
    StopOnWorker(*rec, std::string(status.message()));
    Finish(*rec, v1::JOB_STATE_FAILED, status, "failed");
  }
}

void JobEngine::JournalWritten(const char* kind, const absl::Status& s) {
  if (observer_ == nullptr) return;
  observer_->OnJournalWrite(kind, s.ok());
  observer_->SetJournalRecords(options_.journal->records());
}

void JobEngine::DropResultFile(const std::string& job_id) {
  if (options_.journal != nullptr) options_.journal->RemoveResult(job_id);
}

void JobEngine::ForgetEvictedResults() {
  // The journal's result files follow the store's cap, so the disk holds no
  // more than the memory does.
  for (const std::string& id : results_.TakeEvicted()) DropResultFile(id);
}

void JobEngine::RestoreResult(const Job& job, absl::Time now) {
  const std::string& job_id = job.job_id();
  const absl::Time finished = FinishedAt(job);
  if (now - finished >= options_.result_ttl) {
    DropResultFile(job_id);  // expired while the front was down
    return;
  }
  absl::StatusOr<std::string> bytes = options_.journal != nullptr
                                          ? options_.journal->ReadResult(job_id)
                                          : absl::NotFoundError("no journal");
  absl::Status loaded = bytes.status();
  if (bytes.ok() && static_cast<int64_t>(bytes->size()) != job.stats().output_bytes()) {
    loaded = absl::DataLossError(absl::StrCat("result file has ", bytes->size(),
                                              " bytes, the job made ", job.stats().output_bytes()));
  }
  if (loaded.ok()) loaded = results_.Append(job_id, 0, *bytes);
  ForgetEvictedResults();
  if (loaded.ok()) {
    results_.Complete(job_id, finished);
    return;
  }
  results_.Erase(job_id);
  DropResultFile(job_id);
  logging::Warn("result of an ended job not restored (FetchResult: expired)",
                {{"error", loaded.ToString()}}, job_id);
}

void JobEngine::AddRecord(std::unique_ptr<JobRecord> rec) {
  JobRecord& r = *rec;
  const std::string job_id = r.job.job_id();
  jobs_.emplace(job_id, std::move(rec));
  jobs_by_admit_.emplace(r.admit_seq, job_id);
  if (!r.job.request_id().empty())
    job_by_request_id_[IdempotencyKey(r.job.owner(), r.job.request_id())] = job_id;
  ++active_by_owner_[r.job.owner()];
  r.holds_quota = true;
}

std::unique_ptr<JobEngine::JobRecord> JobEngine::RecordFromJournal(JournaledJob j) {
  auto rec = std::make_unique<JobRecord>(options_.event_log_capacity);
  rec->fingerprint = std::move(j.fingerprint);
  // Admission order as the previous front had it (creation time in µs), so
  // that ListJobs and the queue keep their order whichever list (ended or
  // pending) a job comes back in; jobs admitted from now on sort after.
  // (Clamped: a damaged or far-future time must not overflow the cast.)
  const double created = std::clamp(j.job.created_unix_seconds(), 0.0, 1e12);
  uint64_t seq = static_cast<uint64_t>(std::round(std::isnan(created) ? 0.0 : created * 1e6));
  seq = std::max(seq, uint64_t{1});
  while (jobs_by_admit_.count(seq) != 0) ++seq;
  rec->admit_seq = seq;
  next_admit_seq_ = std::max(next_admit_seq_, seq + 1);
  rec->created = absl::FromUnixSeconds(static_cast<int64_t>(j.job.created_unix_seconds()));
  rec->deadline = j.deadline;
  rec->job = std::move(j.job);  // as the journal kept it: ids, owner, request, created (, end)
  rec->job.set_state(v1::JOB_STATE_UNSPECIFIED);  // SetState counts it as new
  return rec;
}

int JobEngine::Restore(std::vector<JournaledJob> jobs) {
  Notifier lock(this);
  const absl::Time now = clock_();
  int queued = 0;
  for (JournaledJob& j : jobs) {
    const std::string job_id = j.job.job_id();
    if (jobs_.count(job_id) != 0) continue;
    std::unique_ptr<JobRecord> rec = RecordFromJournal(std::move(j));
    JobRecord& r = *rec;
    AddRecord(std::move(rec));
    absl::Status pushed = queue_.Push(job_id, r.job.request().priority(), r.admit_seq);
    SetState(r, v1::JOB_STATE_QUEUED);
    if (!pushed.ok()) {
      Finish(r, v1::JOB_STATE_FAILED,
             absl::ResourceExhaustedError(absl::StrCat(
                 "front restarted with a smaller queue (", queue_.capacity(),
                 " jobs); this job no longer fit; resubmit")),
             "failed");
    } else if (r.deadline <= now) {
      Finish(r, v1::JOB_STATE_FAILED,
             absl::DeadlineExceededError("the client deadline passed while the front restarted"),
             "expired");
    } else {
      ++queued;
      logging::Info("job restored from the journal", {{"request_id", r.job.request_id()}},
                    job_id);
    }
  }
  RefreshQueuePositions();
  TryAssign();
  ReportGauges();
  return queued;
}

int JobEngine::RestoreEnded(std::vector<JournaledJob> jobs) {
  Notifier lock(this);
  const absl::Time now = clock_();
  int restored = 0;
  for (JournaledJob& j : jobs) {
    const std::string job_id = j.job.job_id();
    if (jobs_.count(job_id) != 0 || !IsTerminal(j.job.state())) continue;
    const absl::Time finished = FinishedAt(j.job);
    if (now - finished >= options_.job_retention) continue;
    const v1::JobState state = j.job.state();
    std::unique_ptr<JobRecord> rec = RecordFromJournal(std::move(j));
    rec->finished = finished;
    JobRecord& r = *rec;
    AddRecord(std::move(rec));
    SetState(r, state);
    MaybeReleaseQuota(r);  // ended: holds none
    Emit(r, TerminalEvent(r.job));
    if (state == v1::JOB_STATE_SUCCEEDED) RestoreResult(r.job, now);
    ++restored;
  }
  ReportGauges();
  return restored;
}

int JobEngine::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

int JobEngine::connected_workers() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(workers_.size());
}

}  // namespace sparsevid::front
