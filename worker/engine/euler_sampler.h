// Flow-matching Euler: x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i.
#pragma once

#include "worker/engine/sampler.h"

namespace sparsevid::engine {

class EulerSampler : public Sampler {
 public:
  explicit EulerSampler(FlowSchedule schedule) : schedule_(std::move(schedule)) {}
  void Step(int i, const std::vector<float>& velocity, std::vector<float>& x) override;

 private:
  FlowSchedule schedule_;
};

}  // namespace sparsevid::engine
