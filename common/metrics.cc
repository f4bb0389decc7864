#include "common/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"

namespace sparsevid::metrics {

MetricsServer::MetricsServer()
    : registry_(std::make_shared<prometheus::Registry>()) {}

MetricsServer::~MetricsServer() = default;

absl::Status MetricsServer::Start(const std::string& address) {
  if (address.empty()) return absl::OkStatus();
  if (exposer_) return absl::FailedPreconditionError("metrics already started");
  try {
    // One serving thread is plenty for a scrape every few seconds.
    exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on '", address, "': ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

void AddBuildInfo(prometheus::Registry& registry, const std::string& component) {
  prometheus::BuildGauge()
      .Name("sparsevid_build_info")
      .Help("Build of this process; the value is always 1")
      .Register(registry)
      .Add({{"component", component},
            {"version", Version()},
            {"git_sha", GitSha()}})
      .Set(1);
}

std::vector<double> JobSecondsBuckets() {
  return {1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800};
}
std::vector<double> StepSecondsBuckets() {
  return {0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};
}
std::vector<double> LatencySecondsBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
std::vector<double> RatioBuckets() {
  return {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0};
}

}  // namespace sparsevid::metrics
