// Prometheus /metrics endpoint shared by front and worker (prometheus-cpp).
// Naming follows the Prometheus guide: prefix sparsevid_, base units,
// counters end in _total, histograms rather than summaries.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace sparsevid::metrics {

// Owns the registry and, once started, the HTTP exposer serving it.
class MetricsServer {
 public:
  MetricsServer();
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Serves the registry at http://<address>/metrics. "host:0" binds a free
  // port (see port()). An empty address leaves the endpoint off (metrics are
  // still recorded). Fails with UNAVAILABLE if the address cannot be bound.
  absl::Status Start(const std::string& address);

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  // Bound port, or 0 when not serving.
  int port() const { return port_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// Adds sparsevid_build_info{component,version,git_sha} = 1.
void AddBuildInfo(prometheus::Registry& registry, const std::string& component);

// Histogram buckets (seconds) sized for video jobs, which run seconds to
// tens of minutes: 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800.
std::vector<double> JobSecondsBuckets();
// Per denoise step / per stage: 0.05 .. 10 s.
std::vector<double> StepSecondsBuckets();
// Short control-path latencies (queue hand-off, cancel): 1 ms .. 60 s.
std::vector<double> LatencySecondsBuckets();
// Ratios in [0, 1] (attention density, blend ratio).
std::vector<double> RatioBuckets();

}  // namespace sparsevid::metrics
