#include "tests/parity/golden.h"

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sparsevid::parity {

std::string GoldenDir() { return std::string(SPARSEVID_SOURCE_DIR) + "/tests/parity/golden"; }

absl::StatusOr<Golden> OpenGolden(const std::string& rel) {
  Golden g;
  g.path = GoldenDir() + "/" + rel;
  auto file = engine::SafetensorsFile::Open(g.path);
  if (!file.ok()) return file.status();
  g.file = *file;
  const auto& meta = g.file->metadata();
  auto cfg = meta.find("config");
  auto params = meta.find("case");
  if (cfg == meta.end() || params == meta.end()) {
    return absl::InvalidArgumentError(absl::StrCat(g.path, ": metadata lacks config or case"));
  }
  auto parsed = engine::ParseModelConfig(cfg->second, g.path + " metadata config");
  if (!parsed.ok()) return parsed.status();
  g.config = *parsed;
  try {
    g.params = nlohmann::json::parse(params->second);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(g.path, ": case is not JSON: ", e.what()));
  }
  return g;
}

kernels::Tensor Golden::F32(const std::string& name) const {
  const engine::SafetensorsEntry* e = file->Find(name);
  EXPECT_NE(e, nullptr) << name << " missing in " << path;
  if (e == nullptr) return kernels::Tensor::Zeros({0});
  kernels::Tensor t = file->Get(*e);
  if (e->dtype == kernels::DType::kI32) {
    std::vector<float> v(t.numel());
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<float>(t.data<int32_t>()[i]);
    return kernels::Tensor::FromVector(v, e->shape);
  }
  if (e->dtype == kernels::DType::kU8) {
    std::vector<float> v(t.numel());
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<uint8_t>()[i];
    return kernels::Tensor::FromVector(v, e->shape);
  }
  return file->GetF32(*e);
}

std::vector<int> Golden::Ints(const std::string& name) const {
  std::vector<int> out;
  for (float f : F32(name).ToVector()) out.push_back(static_cast<int>(f));
  return out;
}

std::vector<uint8_t> Golden::Bytes(const std::string& name) const {
  std::vector<uint8_t> out;
  for (float f : F32(name).ToVector()) out.push_back(static_cast<uint8_t>(f));
  return out;
}

absl::StatusOr<engine::WeightStore> Golden::Weights(
    engine::WeightComponent component, const engine::TensorSpecs& required,
    const std::vector<engine::TensorSpecs>& groups, const std::vector<std::string>& ignored) const {
  engine::WeightRequest req;
  req.component = component;
  req.files = {path};
  req.required = required;
  req.optional_groups = groups;
  req.ignored_prefixes = {"input.", "output."};
  for (const auto& p : ignored) req.ignored_prefixes.push_back(p);
  req.vae_num_res_blocks = static_cast<int>(config.vae.num_res_blocks);
  return engine::WeightStore::Load(req);
}

double RelL2(const std::vector<float>& a, const std::vector<float>& ref) {
  if (a.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double ReportRelL2(const std::string& what, const std::vector<float>& a,
                   const std::vector<float>& ref) {
  const double e = RelL2(a, ref);
  std::printf("[parity] %s rel_l2=%.3g max_abs=%.3g\n", what.c_str(), e, MaxAbsDiff(a, ref));
  ::testing::Test::RecordProperty(what, std::to_string(e));
  return e;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& ref) {
  if (a.size() != ref.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - ref[i]));
  return m;
}

}  // namespace sparsevid::parity
