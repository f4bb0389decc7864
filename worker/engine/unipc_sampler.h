// UniPC multistep, official Wan defaults (wan2.1.md §5.4): solver_order 2,
// x0 prediction, bh2, lower-order warm-up and final step, corrector (UniC) at
// every step after the first, final σ = 0. Scalar coefficients are computed
// in float32 like the reference (which does them on float32 tensors).
#pragma once

#include <deque>

#include "worker/engine/sampler.h"

namespace sparsevid::engine {

class UniPcSampler : public Sampler {
 public:
  explicit UniPcSampler(FlowSchedule schedule) : schedule_(std::move(schedule)) {}
  void Step(int i, const std::vector<float>& velocity, std::vector<float>& x) override;

 private:
  float Lambda(int i) const;
  FlowSchedule schedule_;
  std::deque<std::vector<float>> m_;  // x0 predictions of the last two steps
  std::vector<float> last_sample_;    // x^c of the previous step
  int this_order_ = 1;
  int lower_order_nums_ = 0;
  int next_step_ = 0;
};

}  // namespace sparsevid::engine
