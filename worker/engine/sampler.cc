#include "worker/engine/sampler.h"

#include "absl/strings/str_cat.h"
#include "worker/engine/euler_sampler.h"
#include "worker/engine/unipc_sampler.h"

namespace sparsevid::engine {

absl::StatusOr<std::unique_ptr<Sampler>> MakeSampler(const std::string& name,
                                                     const FlowSchedule& schedule) {
  if (name == "euler") return std::unique_ptr<Sampler>(new EulerSampler(schedule));
  if (name == "unipc") return std::unique_ptr<Sampler>(new UniPcSampler(schedule));
  return absl::InvalidArgumentError(
      absl::StrCat("sampler '", name, "' is unknown; expected euler or unipc"));
}

}  // namespace sparsevid::engine
