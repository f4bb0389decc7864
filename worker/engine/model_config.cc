#include "worker/engine/model_config.h"

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace sparsevid::engine {

const std::array<float, 16> kWanLatentsMean = {
    -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
    0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f};
const std::array<float, 16> kWanLatentsStd = {
    2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
    3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

namespace {

// Reads one YAML mapping; remembers which keys were consumed so the rest can
// be reported as unknown. Errors carry the full dotted key path.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {}

  absl::Status status() const { return status_; }

  template <typename T>
  void Get(const std::string& key, T* out, bool required = true) {
    if (!status_.ok()) return;
    seen_.insert(key);
    const YAML::Node value = node_[key];
    if (!value) {
      if (required) Fail(key, "is missing");
      return;
    }
    try {
      *out = value.as<T>();
    } catch (const YAML::Exception& e) {
      Fail(key, absl::StrCat("has the wrong type (", e.msg, ")"));
    }
  }

  // A nested mapping; absent => null node (caller decides).
  YAML::Node Child(const std::string& key) {
    seen_.insert(key);
    return node_[key];
  }

  void Fail(const std::string& key, const std::string& what) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(source_, ": ", Key(key), " ", what));
    }
  }

  std::string Key(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

  void CheckUnknown() {
    if (!status_.ok()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (!seen_.count(key)) {
        status_ = absl::InvalidArgumentError(
            absl::StrCat(source_, ": unknown key ", Key(key)));
        return;
      }
    }
  }

 private:
  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
  absl::Status status_;
};

absl::Status Check(bool ok, const std::string& source, const std::string& key,
                   const std::string& what) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, " ", what));
}

// Copies a list read for `key` into a 3-entry array, or fails naming the axes.
void SetTriple(Section& s, const std::string& key, const std::vector<int64_t>& list,
               const char* axes, std::array<int64_t, 3>& out) {
  if (list.size() != 3) s.Fail(key, absl::StrCat("must have 3 entries (", axes, ")"));
  else for (int i = 0; i < 3; ++i) out[i] = list[i];
}

// `a_key` (value a) must equal `b_key` (value b).
absl::Status CheckEqual(int64_t a, int64_t b, const std::string& source, const std::string& a_key,
                        const std::string& b_key) {
  return Check(a == b, source, a_key,
               absl::StrCat("(", a, ") must equal ", b_key, " (", b, ")"));
}

absl::Status ParseDit(Section& s, DitConfig& c) {
  std::vector<int64_t> patch;
  s.Get("dim", &c.dim);
  s.Get("ffn_dim", &c.ffn_dim);
  s.Get("num_heads", &c.num_heads);
  s.Get("num_layers", &c.num_layers);
  s.Get("patch_size", &patch);
  s.Get("in_dim", &c.in_dim);
  s.Get("out_dim", &c.out_dim);
  s.Get("text_dim", &c.text_dim);
  s.Get("text_len", &c.text_len);
  s.Get("freq_dim", &c.freq_dim);
  s.Get("eps", &c.eps);
  s.CheckUnknown();
  SV_RETURN_IF_ERROR(s.status());
  SetTriple(s, "patch_size", patch, "t, h, w", c.patch_size);
  return s.status();
}

absl::Status ParseAttention(Section& s, AttentionConfig& c) {
  std::vector<int64_t> grid;
  s.Get("mode", &c.mode);
  s.Get("block_q", &c.block_q);
  s.Get("block_k", &c.block_k);
  s.Get("keep_ratio", &c.keep_ratio);
  s.Get("trained_grid", &grid);
  s.CheckUnknown();
  SV_RETURN_IF_ERROR(s.status());
  SetTriple(s, "trained_grid", grid, "f, h, w", c.trained_grid);
  return s.status();
}

absl::Status ParseT5(Section& s, T5Config& c) {
  s.Get("vocab_size", &c.vocab_size);
  s.Get("d_model", &c.d_model);
  s.Get("num_heads", &c.num_heads);
  s.Get("d_kv", &c.d_kv);
  s.Get("d_ff", &c.d_ff);
  s.Get("num_layers", &c.num_layers);
  s.Get("num_buckets", &c.num_buckets);
  s.Get("max_distance", &c.max_distance);
  s.Get("eps", &c.eps);
  s.Get("tokenizer", &c.tokenizer);
  s.CheckUnknown();
  return s.status();
}

absl::Status ParseVae(Section& s, VaeConfig& c) {
  s.Get("base_dim", &c.base_dim);
  s.Get("z_dim", &c.z_dim);
  s.Get("dim_mult", &c.dim_mult);
  s.Get("num_res_blocks", &c.num_res_blocks);
  s.Get("temporal_downsample", &c.temporal_downsample);
  s.Get("latents_mean", &c.latents_mean);
  s.Get("latents_std", &c.latents_std);
  s.CheckUnknown();
  return s.status();
}

absl::Status ParseSampling(Section& s, SamplingConfig& c) {
  s.Get("sampler", &c.sampler);
  s.Get("steps", &c.steps);
  s.Get("guidance_scale", &c.guidance_scale);
  s.Get("shift", &c.shift);
  s.Get("negative_prompt", &c.negative_prompt);
  s.CheckUnknown();
  return s.status();
}

absl::Status ParseVideo(Section& s, VideoConfig& c) {
  s.Get("width", &c.width);
  s.Get("height", &c.height);
  s.Get("num_frames", &c.num_frames);
  s.Get("fps", &c.fps);
  s.Get("max_width", &c.max_width);
  s.Get("max_height", &c.max_height);
  s.Get("max_frames", &c.max_frames);
  s.CheckUnknown();
  return s.status();
}

absl::Status ParseWeights(Section& s, WeightsConfig& c) {
  s.Get("dit", &c.dit);
  s.Get("t5", &c.t5);
  s.Get("vae", &c.vae);
  s.CheckUnknown();
  return s.status();
}

absl::Status CheckDit(const DitConfig& c, const std::string& src) {
  for (const auto& [key, v] : std::vector<std::pair<std::string, int64_t>>{
           {"dit.dim", c.dim}, {"dit.ffn_dim", c.ffn_dim}, {"dit.num_heads", c.num_heads},
           {"dit.num_layers", c.num_layers}, {"dit.in_dim", c.in_dim},
           {"dit.out_dim", c.out_dim}, {"dit.text_dim", c.text_dim},
           {"dit.text_len", c.text_len}, {"dit.freq_dim", c.freq_dim}}) {
    SV_RETURN_IF_ERROR(Check(v > 0, src, key, "must be positive"));
  }
  for (int i = 0; i < 3; ++i) {
    SV_RETURN_IF_ERROR(Check(c.patch_size[i] > 0, src, "dit.patch_size", "must be positive"));
  }
  SV_RETURN_IF_ERROR(Check(c.dim % c.num_heads == 0, src, "dit.dim",
                           absl::StrCat("(", c.dim, ") must be divisible by dit.num_heads (",
                                        c.num_heads, ")")));
  // 3-D RoPE splits the head dim into complex pairs over three axes.
  SV_RETURN_IF_ERROR(Check(c.head_dim() % 2 == 0 && c.head_dim() >= 6, src, "dit.dim",
                           "/ dit.num_heads must be an even head dim >= 6 (3-D RoPE)"));
  SV_RETURN_IF_ERROR(Check(c.freq_dim % 2 == 0, src, "dit.freq_dim", "must be even"));
  SV_RETURN_IF_ERROR(Check(c.eps > 0, src, "dit.eps", "must be positive"));
  return absl::OkStatus();
}

absl::Status CheckAttention(const AttentionConfig& c, const std::string& src) {
  SV_RETURN_IF_ERROR(Check(c.mode == "dense" || c.mode == "sla2" || c.mode == "sla2_low_bit",
                           src, "attention.mode",
                           absl::StrCat("is '", c.mode, "'; expected dense, sla2 or sla2_low_bit")));
  SV_RETURN_IF_ERROR(Check(c.block_q > 0, src, "attention.block_q", "must be positive"));
  SV_RETURN_IF_ERROR(Check(c.block_k > 0, src, "attention.block_k", "must be positive"));
  SV_RETURN_IF_ERROR(Check(c.keep_ratio > 0 && c.keep_ratio <= 1, src, "attention.keep_ratio",
                           "must be in (0, 1]"));
  for (int i = 0; i < 3; ++i) {
    SV_RETURN_IF_ERROR(Check(c.trained_grid[i] > 0, src, "attention.trained_grid",
                             "entries must be positive"));
  }
  return absl::OkStatus();
}

absl::Status CheckT5(const T5Config& c, const std::string& src) {
  for (const auto& [key, v] : std::vector<std::pair<std::string, int64_t>>{
           {"t5.vocab_size", c.vocab_size}, {"t5.d_model", c.d_model},
           {"t5.num_heads", c.num_heads}, {"t5.d_kv", c.d_kv}, {"t5.d_ff", c.d_ff},
           {"t5.num_layers", c.num_layers}, {"t5.max_distance", c.max_distance}}) {
    SV_RETURN_IF_ERROR(Check(v > 0, src, key, "must be positive"));
  }
  // Bidirectional buckets: half per direction, half of those exact.
  SV_RETURN_IF_ERROR(Check(c.num_buckets >= 4 && c.num_buckets % 4 == 0, src,
                           "t5.num_buckets", "must be a positive multiple of 4"));
  SV_RETURN_IF_ERROR(Check(c.max_distance > c.num_buckets / 4, src, "t5.max_distance",
                           "must exceed t5.num_buckets / 4"));
  SV_RETURN_IF_ERROR(Check(c.eps > 0, src, "t5.eps", "must be positive"));
  SV_RETURN_IF_ERROR(Check(!c.tokenizer.empty(), src, "t5.tokenizer", "must not be empty"));
  return absl::OkStatus();
}

absl::Status CheckVae(const VaeConfig& c, const std::string& src) {
  SV_RETURN_IF_ERROR(Check(c.base_dim > 0, src, "vae.base_dim", "must be positive"));
  SV_RETURN_IF_ERROR(Check(c.z_dim > 0, src, "vae.z_dim", "must be positive"));
  SV_RETURN_IF_ERROR(Check(c.dim_mult.size() >= 2 && c.dim_mult.size() <= 4, src,
                           "vae.dim_mult", "must have 2 to 4 entries (the Wan decoder layout)"));
  for (int64_t m : c.dim_mult) {
    SV_RETURN_IF_ERROR(Check(m > 0, src, "vae.dim_mult", "entries must be positive"));
  }
  SV_RETURN_IF_ERROR(Check(c.num_res_blocks >= 0, src, "vae.num_res_blocks",
                           "must not be negative"));
  SV_RETURN_IF_ERROR(Check(c.temporal_downsample.size() == c.dim_mult.size() - 1, src,
                           "vae.temporal_downsample",
                           absl::StrCat("must have len(vae.dim_mult) - 1 = ",
                                        c.dim_mult.size() - 1, " entries")));
  for (const auto& [key, values] : std::vector<std::pair<std::string, const std::vector<float>*>>{
           {"vae.latents_mean", &c.latents_mean}, {"vae.latents_std", &c.latents_std}}) {
    SV_RETURN_IF_ERROR(Check(static_cast<int64_t>(values->size()) == c.z_dim, src, key,
                             absl::StrCat("must have vae.z_dim = ", c.z_dim, " entries")));
  }
  for (float s : c.latents_std) {
    SV_RETURN_IF_ERROR(Check(s > 0, src, "vae.latents_std", "entries must be positive"));
  }
  return absl::OkStatus();
}

absl::Status CheckSampling(const SamplingConfig& c, const std::string& src) {
  SV_RETURN_IF_ERROR(Check(c.sampler == "unipc" || c.sampler == "euler", src,
                           "sampling.sampler",
                           absl::StrCat("is '", c.sampler, "'; expected unipc or euler")));
  SV_RETURN_IF_ERROR(Check(c.steps >= 1 && c.steps <= 200, src, "sampling.steps",
                           "must be in [1, 200]"));
  SV_RETURN_IF_ERROR(Check(c.guidance_scale >= 0, src, "sampling.guidance_scale",
                           "must not be negative"));
  SV_RETURN_IF_ERROR(Check(c.shift > 0, src, "sampling.shift", "must be positive"));
  return absl::OkStatus();
}

absl::Status CheckVideo(const ModelConfig& m, const std::string& src) {
  const VideoConfig& c = m.video;
  for (const auto& [key, v] : std::vector<std::pair<std::string, int64_t>>{
           {"video.width", c.width}, {"video.height", c.height},
           {"video.num_frames", c.num_frames}, {"video.fps", c.fps},
           {"video.max_width", c.max_width}, {"video.max_height", c.max_height},
           {"video.max_frames", c.max_frames}}) {
    SV_RETURN_IF_ERROR(Check(v > 0, src, key, "must be positive"));
  }
  const int64_t mult_w = m.vae.spatial_stride() * m.dit.patch_size[2];
  const int64_t mult_h = m.vae.spatial_stride() * m.dit.patch_size[1];
  const int64_t ts = m.vae.temporal_stride();
  SV_RETURN_IF_ERROR(Check(c.width % mult_w == 0, src, "video.width",
                           absl::StrCat("must be a multiple of ", mult_w)));
  SV_RETURN_IF_ERROR(Check(c.height % mult_h == 0, src, "video.height",
                           absl::StrCat("must be a multiple of ", mult_h)));
  SV_RETURN_IF_ERROR(Check((c.num_frames - 1) % ts == 0, src, "video.num_frames",
                           absl::StrCat("must be ", ts, "n+1")));
  SV_RETURN_IF_ERROR(Check(c.width <= c.max_width, src, "video.width",
                           "must not exceed video.max_width"));
  SV_RETURN_IF_ERROR(Check(c.height <= c.max_height, src, "video.height",
                           "must not exceed video.max_height"));
  SV_RETURN_IF_ERROR(Check(c.num_frames <= c.max_frames, src, "video.num_frames",
                           "must not exceed video.max_frames"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source,
                                             const std::vector<std::string>& optional_sections) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": top level must be a mapping"));
  }
  const std::set<std::string> optional(optional_sections.begin(), optional_sections.end());
  ModelConfig cfg;
  Section top(root, "", source);
  top.Get("name", &cfg.name, !optional.count("name"));
  SV_RETURN_IF_ERROR(top.status());

  std::set<std::string> present;
  using Parser = std::function<absl::Status(Section&)>;
  const std::vector<std::pair<std::string, Parser>> sections = {
      {"dit", [&](Section& s) { return ParseDit(s, cfg.dit); }},
      {"attention", [&](Section& s) { return ParseAttention(s, cfg.attention); }},
      {"t5", [&](Section& s) { return ParseT5(s, cfg.t5); }},
      {"vae", [&](Section& s) { return ParseVae(s, cfg.vae); }},
      {"sampling", [&](Section& s) { return ParseSampling(s, cfg.sampling); }},
      {"video", [&](Section& s) { return ParseVideo(s, cfg.video); }},
      {"weights", [&](Section& s) { return ParseWeights(s, cfg.weights); }},
  };
  for (const auto& [key, parse] : sections) {
    YAML::Node node = top.Child(key);
    if (!node) {
      if (optional.count(key)) continue;
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, " is missing"));
    }
    if (!node.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, " must be a mapping"));
    }
    Section s(node, key, source);
    SV_RETURN_IF_ERROR(parse(s));
    present.insert(key);
  }
  top.CheckUnknown();
  SV_RETURN_IF_ERROR(top.status());
  SV_RETURN_IF_ERROR(Check(!cfg.name.empty() || optional.count("name"), source, "name",
                           "must not be empty"));

  const bool dit = present.count("dit"), t5 = present.count("t5"), vae = present.count("vae");
  if (dit) SV_RETURN_IF_ERROR(CheckDit(cfg.dit, source));
  if (present.count("attention")) SV_RETURN_IF_ERROR(CheckAttention(cfg.attention, source));
  if (t5) SV_RETURN_IF_ERROR(CheckT5(cfg.t5, source));
  if (vae) SV_RETURN_IF_ERROR(CheckVae(cfg.vae, source));
  if (present.count("sampling")) SV_RETURN_IF_ERROR(CheckSampling(cfg.sampling, source));
  if (dit && vae) {
    SV_RETURN_IF_ERROR(
        CheckEqual(cfg.dit.in_dim, cfg.vae.z_dim, source, "dit.in_dim", "vae.z_dim"));
    SV_RETURN_IF_ERROR(
        CheckEqual(cfg.dit.out_dim, cfg.vae.z_dim, source, "dit.out_dim", "vae.z_dim"));
  }
  if (dit && t5) {
    SV_RETURN_IF_ERROR(
        CheckEqual(cfg.dit.text_dim, cfg.t5.d_model, source, "dit.text_dim", "t5.d_model"));
  }
  if (dit && present.count("attention") && cfg.attention.mode != "dense") {
    SV_RETURN_IF_ERROR(Check(cfg.attention.block_q > 0, source, "attention.block_q",
                             "must be positive"));
  }
  if (dit && vae && present.count("video")) SV_RETURN_IF_ERROR(CheckVideo(cfg, source));
  if (present.count("weights")) {
    for (const auto& [key, files] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"weights.dit", cfg.weights.dit}, {"weights.t5", cfg.weights.t5},
             {"weights.vae", cfg.weights.vae}}) {
      SV_RETURN_IF_ERROR(Check(!files.empty(), source, key, "must list at least one file"));
      for (const auto& f : files) {
        SV_RETURN_IF_ERROR(Check(!f.empty() && f[0] != '/' && f.find("..") == std::string::npos,
                                 source, key,
                                 absl::StrCat("entry '", f,
                                              "' must be a relative path inside the model directory")));
      }
    }
  }
  return cfg;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/model.yaml";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseModelConfig(ss.str(), path);
}

}  // namespace sparsevid::engine
