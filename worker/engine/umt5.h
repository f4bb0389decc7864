// umT5 encoder (wan2.1.md §3.3): token embedding, per-layer relative position
// bias (bidirectional buckets), unscaled attention, gated-GELU FFN, T5
// RMSNorm. It runs on the valid tokens only: with the key mask of the
// reference, padded positions never influence valid rows.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/model_config.h"
#include "worker/engine/tensor_spec.h"
#include "worker/engine/weight_store.h"

namespace sparsevid::engine {

class Umt5Encoder {
 public:
  static TensorSpecs DeclareTensors(const T5Config& cfg);
  static absl::StatusOr<std::unique_ptr<Umt5Encoder>> Create(const T5Config& cfg,
                                                             const WeightStore& weights,
                                                             kernels::Backend& backend);

  // ids: 1..text_len token ids (validated by the tokenizer, < vocab_size).
  // Returns [ids.size(), d_model] f32 on the backend.
  absl::StatusOr<kernels::Tensor> Encode(const std::vector<int>& ids);

 private:
  struct Block {
    kernels::Tensor norm1, q, k, v, o, norm2, gate, fc1, fc2;
    std::vector<float> rel_bias;  // [num_buckets, H]
  };
  Umt5Encoder(const T5Config& cfg, kernels::Backend& b) : cfg_(cfg), b_(b) {}
  kernels::Tensor Linear(const kernels::Tensor& x, const kernels::Tensor& w);

  T5Config cfg_;
  kernels::Backend& b_;
  kernels::Tensor embedding_;  // host, file dtype (gathered on the host)
  kernels::Tensor final_norm_;
  std::vector<Block> blocks_;
};

// Bidirectional relative-position bucket of key j for query i (HF/Wan T5).
int T5RelativeBucket(int64_t relative_position /* j - i */, int64_t num_buckets,
                     int64_t max_distance);

}  // namespace sparsevid::engine
