#include "worker/engine/flow_schedule.h"

namespace sparsevid::engine {

FlowSchedule MakeFlowSchedule(int steps, double shift) {
  FlowSchedule s;
  const double sigma_max = static_cast<double>(static_cast<float>(1.0 - 0.001));
  const double sigma_min = 0.0;
  const double step = (sigma_min - sigma_max) / steps;
  for (int i = 0; i < steps; ++i) {
    const double base = i * step + sigma_max;  // numpy: arange(n) * step + start
    const double sigma = shift * base / (1.0 + (shift - 1.0) * base);
    s.sigmas.push_back(static_cast<float>(sigma));
    s.timesteps.push_back(static_cast<int64_t>(sigma * 1000.0));
  }
  s.sigmas.push_back(0.0f);
  return s;
}

}  // namespace sparsevid::engine
