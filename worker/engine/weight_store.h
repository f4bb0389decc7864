// Loads the tensors one model component declares from its safetensors files:
// names are mapped to the official ones (name_conversion.h), then every
// declared tensor must be present exactly once with the declared shape, and
// nothing undeclared may remain. Errors name the tensor and the file.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "worker/engine/name_conversion.h"
#include "worker/engine/safetensors.h"
#include "worker/engine/tensor_spec.h"

namespace sparsevid::engine {

struct WeightRequest {
  WeightComponent component = WeightComponent::kDit;
  std::vector<std::string> files;  // full paths
  TensorSpecs required;
  // All-or-none groups (e.g. the SLA2 router and blend parameters, which an
  // official dense checkpoint does not have).
  std::vector<TensorSpecs> optional_groups;
  // Official-name prefixes that may be present and are skipped (the VAE
  // encoder in a full VAE checkpoint).
  std::vector<std::string> ignored_prefixes;
  int vae_num_res_blocks = 2;
};

class WeightStore {
 public:
  static absl::StatusOr<WeightStore> Load(const WeightRequest& request);

  bool Has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Host tensor in the file's dtype (memory-mapped). The name must have been
  // declared (a bug otherwise).
  const kernels::Tensor& Get(const std::string& name) const;
  // Host f32 copy.
  kernels::Tensor GetF32(const std::string& name) const;
  size_t size() const { return tensors_.size(); }
  // True when every tensor of optional group g was found.
  bool HasGroup(size_t g) const { return g < groups_present_.size() && groups_present_[g]; }

 private:
  std::map<std::string, kernels::Tensor> tensors_;
  std::vector<bool> groups_present_;
};

}  // namespace sparsevid::engine
