// Prometheus metrics of one worker process (prefix sparsevid_worker_...,
// base units, counters end in _total, no job-id labels). The registry is
// served on /metrics by the binary; tests read it back through Collect().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sparsevid::worker {

// How a job ended on this worker (label "outcome" of jobs_total).
enum class JobOutcome { kSucceeded, kFailed, kCancelled, kDeadlineExceeded };
const char* JobOutcomeName(JobOutcome outcome);

class WorkerMetrics {
 public:
  // Per-layer density gauges are created for layers [0, max_layers); deeper
  // layers are folded into the last one so the label set stays bounded.
  explicit WorkerMetrics(std::shared_ptr<prometheus::Registry> registry, int max_layers = 64);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // One denoise step: its wall time, the self-attention time inside it, the
  // mean and per-layer kept fraction of key blocks and the mean blend ratio.
  void ObserveDenoiseStep(double step_seconds, double attention_seconds, double density,
                          const std::vector<double>& layer_density, double alpha_mean);
  void ObserveStage(const std::string& stage, double seconds);
  void ObserveEncode(double seconds);
  void AddGenerated(int64_t frames, int64_t tokens, int64_t output_bytes);
  void ObservePeakBytes(int64_t bytes);
  void SetEngineLoadSeconds(double seconds);
  void CountJob(JobOutcome outcome);
  void SetBusySlots(int busy, int capacity);
  void SetFrontConnected(bool connected);
  void CountReconnect();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  int max_layers_;
  prometheus::Histogram* step_seconds_;
  prometheus::Histogram* attention_seconds_;
  prometheus::Histogram* attention_share_;
  prometheus::Gauge* attention_density_;
  prometheus::Family<prometheus::Gauge>* layer_density_family_;
  std::vector<prometheus::Gauge*> layer_density_;
  prometheus::Histogram* blend_ratio_;
  prometheus::Family<prometheus::Histogram>* stage_seconds_family_;
  prometheus::Histogram* encode_seconds_;
  prometheus::Counter* frames_total_;
  prometheus::Counter* tokens_total_;
  prometheus::Counter* output_bytes_total_;
  prometheus::Gauge* memory_peak_bytes_;
  prometheus::Gauge* engine_load_seconds_;
  prometheus::Family<prometheus::Counter>* jobs_family_;
  prometheus::Gauge* busy_slots_;
  prometheus::Gauge* capacity_slots_;
  prometheus::Gauge* front_connected_;
  prometheus::Counter* reconnects_total_;
};

}  // namespace sparsevid::worker
