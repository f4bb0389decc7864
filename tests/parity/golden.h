// Access to the golden parity files (tests/parity/golden, written by
// training/make_golden.py from the PyTorch reference). A missing file is a
// test failure, never a skip: the files are committed.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model_config.h"
#include "worker/engine/safetensors.h"
#include "worker/engine/weight_store.h"

namespace sparsevid::parity {

std::string GoldenDir();

struct Golden {
  std::string path;
  std::shared_ptr<engine::SafetensorsFile> file;
  engine::ModelConfig config;
  nlohmann::json params;  // metadata "case"

  // Host f32 copy of a tensor (I32/U8 converted); fails the test if absent.
  kernels::Tensor F32(const std::string& name) const;
  std::vector<int> Ints(const std::string& name) const;
  std::vector<uint8_t> Bytes(const std::string& name) const;
  // Loads the declared weights (official names) of one component from the
  // file; input.* / output.* entries are skipped.
  absl::StatusOr<engine::WeightStore> Weights(engine::WeightComponent component,
                                              const engine::TensorSpecs& required,
                                              const std::vector<engine::TensorSpecs>& groups = {},
                                              const std::vector<std::string>& ignored = {}) const;
};

absl::StatusOr<Golden> OpenGolden(const std::string& relative_path);

// ||a - ref||_2 / ||ref||_2.
double RelL2(const std::vector<float>& a, const std::vector<float>& ref);
// RelL2, also printed (and recorded in the test XML) as "<what> rel_l2=...".
double ReportRelL2(const std::string& what, const std::vector<float>& a,
                   const std::vector<float>& ref);
double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& ref);

}  // namespace sparsevid::parity
