// The official Wan2.1 flow-matching σ schedule with shift (wan2.1.md §5.2):
//   base_i = σ_max + i·(0 − σ_max)/N  (numpy linspace, float64), i < N,
//            σ_max = float32(1 − 0.001) widened to double
//   σ_i    = s·base_i / (1 + (s − 1)·base_i);  t_i = trunc(1000·σ_i) (from the
//            float64 σ); σ_N = 0; σ stored as float32.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsevid::engine {

struct FlowSchedule {
  std::vector<float> sigmas;       // N + 1 entries, last is 0
  std::vector<int64_t> timesteps;  // N entries, the DiT's integer t
  int steps() const { return static_cast<int>(timesteps.size()); }
};

// steps >= 1 and shift > 0 (validated by the caller).
FlowSchedule MakeFlowSchedule(int steps, double shift);

}  // namespace sparsevid::engine
