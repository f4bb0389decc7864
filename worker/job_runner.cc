#include "worker/job_runner.h"

#include <malloc.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "worker/video/fmp4_encoder.h"

namespace sparsevid::worker {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

engine::SamplerKind ToSampler(v1::Sampler s) {
  switch (s) {
    case v1::SAMPLER_EULER: return engine::SamplerKind::kEuler;
    case v1::SAMPLER_UNIPC: return engine::SamplerKind::kUniPC;
    default: return engine::SamplerKind::kModelDefault;
  }
}

engine::AttentionMode ToAttention(v1::AttentionMode a) {
  switch (a) {
    case v1::ATTENTION_MODE_DENSE: return engine::AttentionMode::kDense;
    case v1::ATTENTION_MODE_SLA2: return engine::AttentionMode::kSla2;
    case v1::ATTENTION_MODE_SLA2_LOW_BIT: return engine::AttentionMode::kSla2LowBit;
    default: return engine::AttentionMode::kModelDefault;
  }
}

v1::JobEvent FailedEvent(const absl::Status& status) {
  v1::JobEvent ev;
  ev.mutable_failed()->set_code(static_cast<int>(status.code()));
  ev.mutable_failed()->set_message(std::string(status.message()));
  return ev;
}

}  // namespace

struct JobRunner::Job {
  v1::Assign assign;
  engine::CancelToken token;
  std::string cancel_reason;  // guarded by JobRunner::mu_
};

engine::GenerateParams ToGenerateParams(const v1::GenerateRequest& request,
                                        const engine::ModelInfo& info) {
  engine::GenerateParams p;
  p.prompt = request.prompt();
  p.negative_prompt = request.negative_prompt();
  p.width = request.width() > 0 ? request.width() : info.default_width;
  p.height = request.height() > 0 ? request.height() : info.default_height;
  p.num_frames = request.num_frames() > 0 ? request.num_frames() : info.default_frames;
  p.steps = request.steps() > 0 ? request.steps() : info.default_steps;
  if (request.has_guidance_scale()) p.guidance_scale = request.guidance_scale();
  if (request.has_shift()) p.shift = request.shift();
  if (request.has_keep_ratio()) p.keep_ratio = request.keep_ratio();
  if (request.has_seed()) {
    p.seed = request.seed();
  } else {
    std::random_device rd;
    p.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  p.sampler = ToSampler(request.sampler());
  p.attention = ToAttention(request.attention());
  return p;
}

JobRunner::JobRunner(engine::Pipeline* pipeline, WorkerMetrics* metrics, JobRunnerOptions options,
                     EventCallback on_event, SlotCallback on_slot_free)
    : pipeline_(pipeline),
      metrics_(metrics),
      options_(std::move(options)),
      on_event_(std::move(on_event)),
      on_slot_free_(std::move(on_slot_free)) {
  if (options_.capacity < 1) options_.capacity = 1;
  metrics_->SetBusySlots(0, options_.capacity);
  thread_ = std::thread([this] { Loop(); });
}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  CancelAll("worker shutting down");
  cv_.notify_all();
  thread_.join();
}

int JobRunner::free_slots() const {
  std::lock_guard<std::mutex> lock(mu_);
  return options_.capacity - static_cast<int>(waiting_.size()) - (running_ ? 1 : 0);
}

absl::Status JobRunner::Submit(const v1::Assign& assign) {
  if (assign.job_id().empty()) return absl::InvalidArgumentError("assign.job_id is empty");
  auto job = std::make_shared<Job>();
  job->assign = assign;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("worker is shutting down");
    if (running_ && running_->assign.job_id() == assign.job_id()) {
      return absl::AlreadyExistsError(absl::StrCat("job ", assign.job_id(), " is running here"));
    }
    for (const auto& w : waiting_) {
      if (w->assign.job_id() == assign.job_id()) {
        return absl::AlreadyExistsError(absl::StrCat("job ", assign.job_id(), " is queued here"));
      }
    }
    const int used = static_cast<int>(waiting_.size()) + (running_ ? 1 : 0);
    if (used >= options_.capacity) {
      return absl::ResourceExhaustedError(
          absl::StrCat("all ", options_.capacity, " slots of this worker are busy"));
    }
    waiting_.push_back(std::move(job));
    metrics_->SetBusySlots(used + 1, options_.capacity);
  }
  cv_.notify_all();
  return absl::OkStatus();
}

bool JobRunner::Cancel(const std::string& job_id, const std::string& reason) {
  std::shared_ptr<Job> dropped;
  int free = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ && running_->assign.job_id() == job_id) {
      running_->cancel_reason = reason;
      running_->token.Cancel();
      return true;
    }
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if ((*it)->assign.job_id() == job_id) {
        dropped = *it;
        waiting_.erase(it);
        break;
      }
    }
    if (!dropped) return false;
    free = options_.capacity - static_cast<int>(waiting_.size()) - (running_ ? 1 : 0);
    metrics_->SetBusySlots(options_.capacity - free, options_.capacity);
  }
  // A waiting job never touched the pipeline: answer at once.
  v1::JobEvent ev;
  ev.mutable_cancelled()->set_reason(reason);
  on_event_(job_id, std::move(ev));
  RecordOutcome(job_id, JobOutcome::kCancelled, reason);
  cv_.notify_all();
  on_slot_free_(free);
  return true;
}

void JobRunner::CancelAll(const std::string& reason) {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) ids.push_back(running_->assign.job_id());
    for (const auto& w : waiting_) ids.push_back(w->assign.job_id());
  }
  for (const auto& id : ids) Cancel(id, reason);
}

bool JobRunner::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout,
                      [this] { return !running_ && waiting_.empty() && !reporting_free_; });
}

void JobRunner::Loop() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // stopping and nothing left
      job = waiting_.front();
      waiting_.pop_front();
      running_ = job;
    }
    Run(*job);
    int free = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.reset();
      reporting_free_ = true;
      free = options_.capacity - static_cast<int>(waiting_.size());
      metrics_->SetBusySlots(options_.capacity - free, options_.capacity);
    }
    cv_.notify_all();
    // Give freed heap back to the OS between jobs (large latent and frame
    // buffers otherwise stay mapped).
    malloc_trim(0);
    on_slot_free_(free);
    {
      std::lock_guard<std::mutex> lock(mu_);
      reporting_free_ = false;
    }
    cv_.notify_all();
  }
}

void JobRunner::Run(Job& job) {
  const std::string& job_id = job.assign.job_id();
  const auto run_start = Clock::now();
  const engine::ModelInfo& info = pipeline_->info();
  engine::GenerateParams params = ToGenerateParams(job.assign.request(), info);
  const int fps = job.assign.request().fps() > 0 ? job.assign.request().fps() : info.default_fps;
  if (job.assign.deadline_unix_seconds() > 0) {
    job.token.set_deadline(std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(job.assign.deadline_unix_seconds()))));
  }
  absl::Status status = job.token.Check();
  if (status.ok()) status = pipeline_->Validate(params);
  if (!status.ok()) return Finish(job, status);

  // Held back by one so the final piece can carry last = true.
  std::optional<v1::Chunk> pending_chunk;
  auto emit_chunk = [&](bool last) {
    v1::JobEvent ev;
    *ev.mutable_chunk() = std::move(*pending_chunk);
    ev.mutable_chunk()->set_last(last);
    pending_chunk.reset();
    on_event_(job_id, std::move(ev));
  };
  std::unique_ptr<video::Fmp4Encoder> encoder;
  double encode_seconds = 0;
  double step_sum = 0;
  int denoise_steps_seen = 0;

  auto on_progress = [&](const engine::ProgressEvent& e) {
    v1::JobEvent ev;
    v1::Progress* p = ev.mutable_progress();
    p->set_stage(engine::StageName(e.stage));
    p->set_step(e.step);
    p->set_total(e.total);
    p->set_step_seconds(e.step_seconds);
    p->set_attention_density(e.attention_density);
    double eta = -1;
    if (e.stage == engine::Stage::kDenoise) {
      step_sum += e.step_seconds;
      ++denoise_steps_seen;
      metrics_->ObserveDenoiseStep(e.step_seconds, e.attention_seconds, e.attention_density,
                                   e.layer_density, e.alpha_mean);
      eta = (e.total - e.step) * (step_sum / denoise_steps_seen) + last_decode_seconds_;
    } else if (e.stage == engine::Stage::kVaeDecode && e.step > 0) {
      eta = (e.total - e.step) * e.step_seconds;
    }
    p->set_eta_seconds(eta);
    on_event_(job_id, std::move(ev));
  };
  auto on_frames = [&](const engine::FrameBatch& batch) -> absl::Status {
    if (!encoder) {
      video::Fmp4EncoderOptions opt;
      opt.width = batch.width;
      opt.height = batch.height;
      opt.fps = fps;
      opt.crf = options_.crf;
      opt.preset = options_.preset;
      opt.threads = options_.encoder_threads;
      auto created = video::Fmp4Encoder::Create(
          opt, [&](int64_t offset, std::string_view data) -> absl::Status {
            if (pending_chunk) emit_chunk(false);
            pending_chunk.emplace();
            pending_chunk->set_offset(offset);
            pending_chunk->set_data(data.data(), data.size());
            return absl::OkStatus();
          });
      if (!created.ok()) return created.status();
      encoder = std::move(*created);
    }
    const size_t frame_bytes = static_cast<size_t>(batch.width) * batch.height * 3;
    for (const auto& frame : batch.frames) {
      if (frame.size() != frame_bytes) {
        return absl::InternalError(absl::StrCat("engine produced a frame of ", frame.size(),
                                                " bytes, expected ", frame_bytes));
      }
      const auto t0 = Clock::now();
      absl::Status st = encoder->AddFrame(frame.data(), batch.width, batch.height);
      encode_seconds += SecondsSince(t0);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  };

  absl::StatusOr<engine::GenerateStats> stats =
      pipeline_->Generate(params, on_progress, on_frames, job.token);
  if (!stats.ok()) return Finish(job, stats.status());
  if (!encoder || encoder->frames() == 0) {
    return Finish(job, absl::InternalError("the pipeline produced no frames"));
  }
  if (encoder->frames() != params.num_frames) {
    return Finish(job, absl::InternalError(absl::StrCat("the pipeline produced ",
                                                        encoder->frames(), " frames, expected ",
                                                        params.num_frames)));
  }
  const auto t0 = Clock::now();
  status = encoder->Finish();
  encode_seconds += SecondsSince(t0);
  if (!status.ok()) return Finish(job, status);
  if (pending_chunk) emit_chunk(true);
  last_decode_seconds_ = stats->vae_decode_seconds;
  if (denoise_steps_seen > 0) {
    const double mean = step_sum / denoise_steps_seen;
    const double old = step_seconds_estimate_.load();
    step_seconds_estimate_.store(old > 0 ? 0.7 * old + 0.3 * mean : mean);
  }

  v1::JobEvent ev;
  v1::JobStats* s = ev.mutable_completed()->mutable_stats();
  s->set_run_seconds(SecondsSince(run_start));
  s->set_text_encode_seconds(stats->text_encode_seconds);
  s->set_denoise_seconds(stats->denoise_seconds);
  s->set_vae_decode_seconds(stats->vae_decode_seconds);
  s->set_encode_seconds(encode_seconds);
  s->set_attention_seconds(stats->attention_seconds);
  s->set_mean_attention_density(stats->mean_attention_density);
  s->set_output_bytes(encoder->bytes_written());
  s->set_frames(encoder->frames());
  s->set_video_tokens(stats->video_tokens);
  s->set_seed(params.seed);
  s->set_worker(options_.worker_id);
  s->set_attempts(job.assign.attempt());
  s->set_sha256(encoder->sha256_hex());

  metrics_->ObserveStage("text_encode", stats->text_encode_seconds);
  metrics_->ObserveStage("denoise", stats->denoise_seconds);
  metrics_->ObserveStage("vae_decode", stats->vae_decode_seconds);
  metrics_->ObserveEncode(encode_seconds);
  metrics_->AddGenerated(encoder->frames(), stats->video_tokens, encoder->bytes_written());
  metrics_->ObservePeakBytes(stats->peak_bytes);
  RecordOutcome(job_id, JobOutcome::kSucceeded,
                absl::StrCat(encoder->frames(), " frames, ", encoder->bytes_written(), " bytes"));
  encoder.reset();
  on_event_(job_id, std::move(ev));
}

void JobRunner::RecordOutcome(const std::string& job_id, JobOutcome outcome,
                              const std::string& detail) {
  metrics_->CountJob(outcome);
  logging::Info("job finished", {{"outcome", JobOutcomeName(outcome)}, {"detail", detail}},
                job_id);
}

void JobRunner::Finish(Job& job, absl::Status status) {
  v1::JobEvent ev;
  if (status.code() == absl::StatusCode::kCancelled) {
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reason = job.cancel_reason;
    }
    ev.mutable_cancelled()->set_reason(reason.empty() ? std::string(status.message()) : reason);
    RecordOutcome(job.assign.job_id(), JobOutcome::kCancelled, ev.cancelled().reason());
  } else {
    ev = FailedEvent(status);
    RecordOutcome(job.assign.job_id(),
                  status.code() == absl::StatusCode::kDeadlineExceeded
                      ? JobOutcome::kDeadlineExceeded
                      : JobOutcome::kFailed,
                  status.ToString());
  }
  on_event_(job.assign.job_id(), std::move(ev));
}

}  // namespace sparsevid::worker
