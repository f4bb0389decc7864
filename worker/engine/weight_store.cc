#include "worker/engine/weight_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"

namespace sparsevid::engine {
namespace {

struct Found {
  kernels::Tensor tensor;
  std::string file;
  std::string file_name;  // the name as written in the file
};

}  // namespace

absl::StatusOr<WeightStore> WeightStore::Load(const WeightRequest& req) {
  const std::string component = WeightComponentName(req.component);
  if (req.files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(component, ": no weight files configured"));
  }
  std::map<std::string, Found> found;
  for (const std::string& path : req.files) {
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) return file.status();
    for (const SafetensorsEntry& e : (*file)->entries()) {
      const std::string name = ToOfficialName(req.component, e.name, req.vae_num_res_blocks);
      auto it = found.find(name);
      if (it != found.end()) {
        // HF T5 files store the embedding twice (shared / embed_tokens).
        if (it->second.tensor.shape() == e.shape && name == "token_embedding.weight") continue;
        return absl::InvalidArgumentError(absl::StrCat(
            component, " weights: tensor '", name, "' appears twice: as '", it->second.file_name,
            "' in ", it->second.file, " and as '", e.name, "' in ", path));
      }
      found[name] = Found{(*file)->Get(e), path, e.name};
    }
  }

  WeightStore store;
  auto take = [&](const TensorSpec& spec) -> absl::Status {
    auto it = found.find(spec.name);
    if (it == found.end()) {
      return absl::NotFoundError(absl::StrCat(component, " weights: tensor '", spec.name,
                                              "' is missing from ",
                                              absl::StrJoin(req.files, ", ")));
    }
    const kernels::DType dt = it->second.tensor.dtype();
    if (dt != kernels::DType::kF32 && dt != kernels::DType::kBF16 && dt != kernels::DType::kF16) {
      return absl::InvalidArgumentError(absl::StrCat(
          component, " weights: tensor '", spec.name, "' (as '", it->second.file_name, "' in ",
          it->second.file, ") has dtype ", kernels::DTypeName(dt),
          "; weights must be F32, BF16 or F16"));
    }
    if (it->second.tensor.shape() != spec.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          component, " weights: tensor '", spec.name, "' (as '", it->second.file_name, "' in ",
          it->second.file, ") has shape ", kernels::ShapeString(it->second.tensor.shape()),
          ", the config needs ", kernels::ShapeString(spec.shape)));
    }
    store.tensors_[spec.name] = it->second.tensor;
    found.erase(it);
    return absl::OkStatus();
  };
  for (const TensorSpec& spec : req.required) {
    absl::Status st = take(spec);
    if (!st.ok()) return st;
  }
  for (const TensorSpecs& group : req.optional_groups) {
    bool any = false;
    for (const TensorSpec& spec : group) any = any || found.count(spec.name);
    if (any) {
      for (const TensorSpec& spec : group) {
        absl::Status st = take(spec);
        if (!st.ok()) return st;
      }
    }
    store.groups_present_.push_back(any);
  }
  for (const auto& [name, f] : found) {
    bool ignored = false;
    for (const auto& prefix : req.ignored_prefixes) ignored = ignored || absl::StartsWith(name, prefix);
    if (ignored) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        component, " weights: unexpected tensor '", f.file_name, "' in ", f.file,
        name == f.file_name ? "" : absl::StrCat(" (official name '", name, "')"),
        "; it is not part of the configured model"));
  }
  return store;
}

const kernels::Tensor& WeightStore::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  SV_CHECK(it != tensors_.end(), "undeclared weight %s", name.c_str());
  return it->second;
}

kernels::Tensor WeightStore::GetF32(const std::string& name) const {
  const kernels::Tensor& t = Get(name);
  if (t.dtype() == kernels::DType::kF32) return t;
  return kernels::Tensor::FromVector(t.ToVector(), t.shape());
}

}  // namespace sparsevid::engine
