// The text-to-video pipeline the worker runs: text encoder -> DiT x steps
// (sampler, CFG) -> VAE decoder -> frames. One Pipeline owns the loaded
// model and its backend; Generate is called from a single inference thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sparsevid::engine {

enum class AttentionMode { kModelDefault, kDense, kSla2, kSla2LowBit };
enum class SamplerKind { kModelDefault, kEuler, kUniPC };

struct GenerateParams {
  std::string prompt;
  std::string negative_prompt;  // empty = the model's default negative prompt
  int width = 0;                // 0 = model default
  int height = 0;
  int num_frames = 0;
  int steps = 0;
  std::optional<float> guidance_scale;
  std::optional<float> shift;
  uint64_t seed = 0;
  SamplerKind sampler = SamplerKind::kModelDefault;
  AttentionMode attention = AttentionMode::kModelDefault;
  std::optional<float> keep_ratio;
};

// Limits and defaults of the loaded model (the front validates with these).
struct ModelInfo {
  std::string name;
  std::string device;
  int spatial_multiple = 16;  // VAE spatial stride x patch size
  int temporal_stride = 4;    // VAE temporal stride: frames = stride*n + 1
  int max_width = 0, max_height = 0;
  int min_frames = 1, max_frames = 0;
  int max_prompt_tokens = 0;
  int default_width = 0, default_height = 0, default_frames = 0, default_fps = 16;
  int default_steps = 0;
  float default_guidance = 5.0f, default_shift = 5.0f, default_keep_ratio = 0.03f;
  AttentionMode default_attention = AttentionMode::kSla2;
  SamplerKind default_sampler = SamplerKind::kUniPC;
  std::string default_negative_prompt;
};

enum class Stage { kTextEncode, kDenoise, kVaeDecode };
const char* StageName(Stage stage);

struct ProgressEvent {
  Stage stage = Stage::kDenoise;
  int step = 0;   // 1-based
  int total = 0;
  double step_seconds = 0.0;
  double attention_seconds = 0.0;   // self-attention time in this step (device time)
  double attention_density = 0.0;   // kept fraction of key blocks (1.0 dense)
  std::vector<double> layer_density;  // per DiT layer, this step
  double alpha_mean = 0.0;          // mean SLA2 blend ratio this step
};

// RGB frames, 8 bit, row-major [height][width][3].
struct FrameBatch {
  int width = 0, height = 0;
  int first_frame = 0;  // index of frames[0] in the whole video
  std::vector<std::vector<uint8_t>> frames;
};

struct GenerateStats {
  double text_encode_seconds = 0, denoise_seconds = 0, vae_decode_seconds = 0;
  double attention_seconds = 0;
  double mean_attention_density = 0;
  int frames = 0;
  int64_t video_tokens = 0;
  int64_t peak_bytes = 0;
};

// Cancellation and deadline, checked between denoise steps (and VAE chunks).
class CancelToken {
 public:
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  void set_deadline(std::chrono::system_clock::time_point d) { deadline_ = d; }
  // OK, CANCELLED or DEADLINE_EXCEEDED.
  absl::Status Check() const;

 private:
  std::atomic<bool> cancelled_{false};
  std::optional<std::chrono::system_clock::time_point> deadline_;
};

using ProgressCallback = std::function<void(const ProgressEvent&)>;
// Called with each batch of decoded frames, in order, as the VAE produces
// them. A non-OK status stops the generation and is returned.
using FrameSink = std::function<absl::Status(const FrameBatch&)>;

struct EngineOptions {
  std::string device = "cpu";  // "cpu" or "cuda[:N]"
  int threads = 0;             // CPU threads; 0 = all
};

class Pipeline {
 public:
  virtual ~Pipeline() = default;
  // Loads models/<dir>/model.yaml and the weights it names.
  static absl::StatusOr<std::unique_ptr<Pipeline>> Load(const std::string& model_dir,
                                                        const EngineOptions& options);
  virtual const ModelInfo& info() const = 0;
  // Validates params against the model (INVALID_ARGUMENT naming the field).
  virtual absl::Status Validate(const GenerateParams& params) const = 0;
  virtual absl::StatusOr<GenerateStats> Generate(const GenerateParams& params,
                                                 const ProgressCallback& progress,
                                                 const FrameSink& frames,
                                                 const CancelToken& cancel) = 0;
};

}  // namespace sparsevid::engine
