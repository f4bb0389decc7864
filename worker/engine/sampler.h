// Flow-matching samplers (wan2.1.md §5). A sampler walks the σ schedule: at
// step i the caller evaluates the (guided) velocity v at the current sample
// x_i and timestep t_i, and Step(i, v, x) turns x into x_{i+1}. Latents are
// small (a few MB), so the update runs on host f32 vectors: exact, cheap and
// identical on every backend.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/flow_schedule.h"

namespace sparsevid::engine {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Steps must be taken in order 0, 1, ..., N-1.
  virtual void Step(int i, const std::vector<float>& velocity, std::vector<float>& x) = 0;
};

// name: "euler" or "unipc".
absl::StatusOr<std::unique_ptr<Sampler>> MakeSampler(const std::string& name,
                                                     const FlowSchedule& schedule);

}  // namespace sparsevid::engine
