#include "worker/worker_metrics.h"

#include <algorithm>
#include <string>

namespace sparsevid::worker {
namespace {

prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                                           int count) {
  prometheus::Histogram::BucketBoundaries b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

prometheus::Histogram::BucketBoundaries LinearBuckets(double start, double width, int count) {
  prometheus::Histogram::BucketBoundaries b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

}  // namespace

const char* JobOutcomeName(JobOutcome outcome) {
  switch (outcome) {
    case JobOutcome::kSucceeded: return "succeeded";
    case JobOutcome::kFailed: return "failed";
    case JobOutcome::kCancelled: return "cancelled";
    case JobOutcome::kDeadlineExceeded: return "deadline_exceeded";
  }
  return "unknown";
}

WorkerMetrics::WorkerMetrics(std::shared_ptr<prometheus::Registry> registry, int max_layers)
    : registry_(std::move(registry)), max_layers_(std::max(1, max_layers)) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  prometheus::Registry& r = *registry_;
  // Steps take milliseconds (tiny fixture on CPU) to tens of seconds (14B).
  step_seconds_ = &BuildHistogram()
                       .Name("sparsevid_worker_denoise_step_seconds")
                       .Help("Wall time of one denoise step (all CFG branches)")
                       .Register(r)
                       .Add({}, ExponentialBuckets(0.001, 2.5, 16));
  attention_seconds_ = &BuildHistogram()
                            .Name("sparsevid_worker_attention_seconds")
                            .Help("Self-attention time within one denoise step (device time on GPU workers)")
                            .Register(r)
                            .Add({}, ExponentialBuckets(0.0005, 2.5, 16));
  attention_share_ = &BuildHistogram()
                          .Name("sparsevid_worker_attention_step_share_ratio")
                          .Help("Fraction of a denoise step spent in self-attention")
                          .Register(r)
                          .Add({}, LinearBuckets(0.1, 0.1, 9));
  attention_density_ = &BuildGauge()
                            .Name("sparsevid_worker_attention_density_ratio")
                            .Help("Kept fraction of key blocks in the last step, mean over layers")
                            .Register(r)
                            .Add({});
  layer_density_family_ = &BuildGauge()
                               .Name("sparsevid_worker_layer_attention_density_ratio")
                               .Help("Kept fraction of key blocks in the last step, per DiT layer")
                               .Register(r);
  blend_ratio_ = &BuildHistogram()
                      .Name("sparsevid_worker_blend_ratio")
                      .Help("Mean SLA2 blend ratio alpha (sparse share) per denoise step")
                      .Register(r)
                      .Add({}, LinearBuckets(0.1, 0.1, 9));
  stage_seconds_family_ = &BuildHistogram()
                               .Name("sparsevid_worker_stage_seconds")
                               .Help("Time per pipeline stage of one job")
                               .Register(r);
  encode_seconds_ = &BuildHistogram()
                         .Name("sparsevid_worker_video_encode_seconds")
                         .Help("H.264/fMP4 encoding time of one job")
                         .Register(r)
                         .Add({}, ExponentialBuckets(0.005, 2.5, 12));
  frames_total_ = &BuildCounter()
                       .Name("sparsevid_worker_frames_generated_total")
                       .Help("Video frames generated")
                       .Register(r)
                       .Add({});
  tokens_total_ = &BuildCounter()
                       .Name("sparsevid_worker_tokens_generated_total")
                       .Help("DiT video tokens generated (tokens per forward, once per job)")
                       .Register(r)
                       .Add({});
  output_bytes_total_ = &BuildCounter()
                             .Name("sparsevid_worker_output_bytes_total")
                             .Help("MP4 bytes produced")
                             .Register(r)
                             .Add({});
  memory_peak_bytes_ = &BuildGauge()
                            .Name("sparsevid_worker_memory_peak_bytes")
                            .Help("Largest engine memory peak seen over all jobs")
                            .Register(r)
                            .Add({});
  engine_load_seconds_ = &BuildGauge()
                              .Name("sparsevid_worker_engine_load_seconds")
                              .Help("Time to load the model at start-up")
                              .Register(r)
                              .Add({});
  jobs_family_ = &BuildCounter()
                      .Name("sparsevid_worker_jobs_total")
                      .Help("Jobs finished on this worker by outcome")
                      .Register(r);
  for (JobOutcome o : {JobOutcome::kSucceeded, JobOutcome::kFailed, JobOutcome::kCancelled,
                       JobOutcome::kDeadlineExceeded}) {
    jobs_family_->Add({{"outcome", JobOutcomeName(o)}});
  }
  auto& slots = BuildGauge()
                    .Name("sparsevid_worker_slots")
                    .Help("Job slots of this worker by state")
                    .Register(r);
  busy_slots_ = &slots.Add({{"state", "busy"}});
  capacity_slots_ = &slots.Add({{"state", "capacity"}});
  front_connected_ = &BuildGauge()
                          .Name("sparsevid_worker_front_connected")
                          .Help("1 while the link to the front is up")
                          .Register(r)
                          .Add({});
  reconnects_total_ = &BuildCounter()
                           .Name("sparsevid_worker_front_reconnects_total")
                           .Help("Attempts to re-dial the front after the link broke")
                           .Register(r)
                           .Add({});
  for (int i = 0; i < max_layers_; ++i) {
    layer_density_.push_back(nullptr);  // created on first use
  }
}

void WorkerMetrics::ObserveDenoiseStep(double step_seconds, double attention_seconds,
                                       double density, const std::vector<double>& layer_density,
                                       double alpha_mean) {
  step_seconds_->Observe(step_seconds);
  attention_seconds_->Observe(attention_seconds);
  if (step_seconds > 0) attention_share_->Observe(attention_seconds / step_seconds);
  attention_density_->Set(density);
  blend_ratio_->Observe(alpha_mean);
  for (size_t i = 0; i < layer_density.size(); ++i) {
    const int slot = std::min<int>(static_cast<int>(i), max_layers_ - 1);
    if (layer_density_[slot] == nullptr) {
      layer_density_[slot] = &layer_density_family_->Add({{"layer", std::to_string(slot)}});
    }
    layer_density_[slot]->Set(layer_density[i]);
  }
}

void WorkerMetrics::ObserveStage(const std::string& stage, double seconds) {
  stage_seconds_family_->Add({{"stage", stage}}, ExponentialBuckets(0.001, 3, 14))
      .Observe(seconds);
}

void WorkerMetrics::ObserveEncode(double seconds) { encode_seconds_->Observe(seconds); }

void WorkerMetrics::AddGenerated(int64_t frames, int64_t tokens, int64_t output_bytes) {
  frames_total_->Increment(static_cast<double>(frames));
  tokens_total_->Increment(static_cast<double>(tokens));
  output_bytes_total_->Increment(static_cast<double>(output_bytes));
}

void WorkerMetrics::ObservePeakBytes(int64_t bytes) {
  if (static_cast<double>(bytes) > memory_peak_bytes_->Value()) {
    memory_peak_bytes_->Set(static_cast<double>(bytes));
  }
}

void WorkerMetrics::SetEngineLoadSeconds(double seconds) { engine_load_seconds_->Set(seconds); }

void WorkerMetrics::CountJob(JobOutcome outcome) {
  jobs_family_->Add({{"outcome", JobOutcomeName(outcome)}}).Increment();
}

void WorkerMetrics::SetBusySlots(int busy, int capacity) {
  busy_slots_->Set(busy);
  capacity_slots_->Set(capacity);
}

void WorkerMetrics::SetFrontConnected(bool connected) { front_connected_->Set(connected ? 1 : 0); }

void WorkerMetrics::CountReconnect() { reconnects_total_->Increment(); }

}  // namespace sparsevid::worker
