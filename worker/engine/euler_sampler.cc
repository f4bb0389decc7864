#include "worker/engine/euler_sampler.h"

#include "kernels/check.h"

namespace sparsevid::engine {

void EulerSampler::Step(int i, const std::vector<float>& v, std::vector<float>& x) {
  SV_CHECK(i >= 0 && i < schedule_.steps() && v.size() == x.size());
  const float dt = schedule_.sigmas[i + 1] - schedule_.sigmas[i];
  for (size_t n = 0; n < x.size(); ++n) x[n] = x[n] + dt * v[n];
}

}  // namespace sparsevid::engine
