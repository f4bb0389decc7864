#include "common/request_validation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sparsevid {
namespace {

using sparsevid::v1::GenerateRequest;
using sparsevid::v1::ModelLimits;

absl::Status FieldError(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// Structural UTF-8 check (no overlongs or surrogates accepted).
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status ValidateText(absl::string_view field, absl::string_view text,
                          bool required) {
  if (!IsValidUtf8(text)) return FieldError(field, "is not valid UTF-8");
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (required && trimmed.empty()) {
    return FieldError(field, "must not be empty");
  }
  if (trimmed.size() > kMaxPromptBytes) {
    return FieldError(field, absl::StrCat("is ", trimmed.size(),
                                          " bytes, the limit is ",
                                          kMaxPromptBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateSize(absl::string_view field, int value, int multiple,
                          int max) {
  if (value == 0) return absl::OkStatus();
  if (value < 0) {
    return FieldError(field, absl::StrCat("must be positive, got ", value));
  }
  if (value % multiple != 0) {
    return FieldError(field, absl::StrCat("must be a multiple of ", multiple,
                                          ", got ", value));
  }
  if (value > max) {
    return FieldError(field,
                      absl::StrCat("must be at most ", max, ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptionalFloat(absl::string_view field, bool has, float v,
                                   float lo, bool lo_inclusive, float hi) {
  if (!has) return absl::OkStatus();
  const bool low_ok = lo_inclusive ? v >= lo : v > lo;
  if (!std::isfinite(v) || !low_ok || v > hi) {
    return FieldError(field, absl::StrCat("must be in ", lo_inclusive ? "[" : "(",
                                          lo, ", ", hi, "], got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (request_id.size() > kMaxRequestIdLength) {
    return FieldError("request_id", absl::StrCat("is ", request_id.size(),
                                                 " characters, the limit is ",
                                                 kMaxRequestIdLength));
  }
  for (char c : request_id) {
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-')) {
      return FieldError("request_id",
                        "may contain only letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateGenerateRequest(const GenerateRequest& r,
                                     const ModelLimits& limits,
                                     const std::vector<std::string>& served_models) {
  if (absl::Status s = ValidateRequestId(r.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateText("prompt", r.prompt(), true); !s.ok()) return s;
  if (absl::Status s = ValidateText("negative_prompt", r.negative_prompt(), false);
      !s.ok()) {
    return s;
  }
  const int multiple = std::max(1, limits.spatial_multiple());
  if (absl::Status s = ValidateSize("width", r.width(), multiple, limits.max_width());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateSize("height", r.height(), multiple, limits.max_height());
      !s.ok()) {
    return s;
  }
  if (r.num_frames() != 0) {
    const int n = r.num_frames();
    const int fm = std::max(1, limits.frame_multiple());
    if (n < limits.min_frames() || n > limits.max_frames()) {
      return FieldError("num_frames",
                        absl::StrCat("must be in [", limits.min_frames(), ", ",
                                     limits.max_frames(), "], got ", n));
    }
    if ((n - 1) % fm != 0) {
      return FieldError("num_frames", absl::StrCat("must be ", fm,
                                                   "n+1, got ", n));
    }
  }
  if (r.fps() != 0 && (r.fps() < kMinFps || r.fps() > kMaxFps)) {
    return FieldError("fps", absl::StrCat("must be in [", kMinFps, ", ", kMaxFps,
                                          "], got ", r.fps()));
  }
  if (r.steps() != 0 && (r.steps() < 1 || r.steps() > kMaxSteps)) {
    return FieldError("steps", absl::StrCat("must be in [1, ", kMaxSteps,
                                            "], got ", r.steps()));
  }
  if (absl::Status s = ValidateOptionalFloat("guidance_scale", r.has_guidance_scale(),
                                             r.guidance_scale(), 0.0f, true,
                                             kMaxGuidance);
      !s.ok()) {
    return s;
  }
  if (!sparsevid::v1::Sampler_IsValid(r.sampler())) {
    return FieldError("sampler", absl::StrCat("unknown sampler ", r.sampler()));
  }
  if (!sparsevid::v1::AttentionMode_IsValid(r.attention())) {
    return FieldError("attention",
                      absl::StrCat("unknown attention mode ", r.attention()));
  }
  if (absl::Status s = ValidateOptionalFloat("keep_ratio", r.has_keep_ratio(),
                                             r.keep_ratio(), 0.0f, false, 1.0f);
      !s.ok()) {
    return s;
  }
  if (r.priority() < 0 || r.priority() > kMaxPriority) {
    return FieldError("priority", absl::StrCat("must be in [0, ", kMaxPriority,
                                               "], got ", r.priority()));
  }
  if (!r.model().empty() && !served_models.empty() &&
      std::find(served_models.begin(), served_models.end(), r.model()) ==
          served_models.end()) {
    std::string known;
    for (const auto& m : served_models) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", m);
    }
    return FieldError("model", absl::StrCat("unknown model '", r.model(),
                                            "'; served: ", known));
  }
  if (absl::Status s = ValidateOptionalFloat("shift", r.has_shift(), r.shift(),
                                             0.0f, false, kMaxShift);
      !s.ok()) {
    return s;
  }
  return absl::OkStatus();
}

void ResolveDefaults(const ModelLimits& limits, GenerateRequest* r) {
  if (r->width() == 0) r->set_width(limits.default_width());
  if (r->height() == 0) r->set_height(limits.default_height());
  if (r->num_frames() == 0) r->set_num_frames(limits.default_frames());
  if (r->fps() == 0) r->set_fps(limits.default_fps());
  if (r->steps() == 0) r->set_steps(limits.default_steps());
  if (!r->has_guidance_scale()) r->set_guidance_scale(limits.default_guidance());
  if (!r->has_shift()) r->set_shift(limits.default_shift());
  if (!r->has_keep_ratio() && limits.default_keep_ratio() > 0) {
    r->set_keep_ratio(limits.default_keep_ratio());
  }
}

absl::Status ValidateModelLimits(const ModelLimits& l) {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("limits.", field, ": ", why));
  };
  if (l.spatial_multiple() < 1) return bad("spatial_multiple", "must be >= 1");
  if (l.frame_multiple() < 1) return bad("frame_multiple", "must be >= 1");
  if (l.max_width() < l.spatial_multiple()) {
    return bad("max_width", "must be >= spatial_multiple");
  }
  if (l.max_height() < l.spatial_multiple()) {
    return bad("max_height", "must be >= spatial_multiple");
  }
  if (l.min_frames() < 1) return bad("min_frames", "must be >= 1");
  if (l.max_frames() < l.min_frames()) return bad("max_frames", "must be >= min_frames");
  if (l.default_width() <= 0 || l.default_width() > l.max_width() ||
      l.default_width() % l.spatial_multiple() != 0) {
    return bad("default_width", "must be a positive multiple of spatial_multiple within max_width");
  }
  if (l.default_height() <= 0 || l.default_height() > l.max_height() ||
      l.default_height() % l.spatial_multiple() != 0) {
    return bad("default_height", "must be a positive multiple of spatial_multiple within max_height");
  }
  if (l.default_frames() < l.min_frames() || l.default_frames() > l.max_frames() ||
      (l.default_frames() - 1) % l.frame_multiple() != 0) {
    return bad("default_frames", "must be frame_multiple*n+1 within [min_frames, max_frames]");
  }
  if (l.default_fps() < kMinFps || l.default_fps() > kMaxFps) {
    return bad("default_fps", "must be in [1, 60]");
  }
  if (l.default_steps() < 1 || l.default_steps() > kMaxSteps) {
    return bad("default_steps", "must be in [1, 200]");
  }
  if (!std::isfinite(l.default_guidance()) || l.default_guidance() < 0 ||
      l.default_guidance() > kMaxGuidance) {
    return bad("default_guidance", "must be in [0, 30]");
  }
  if (!std::isfinite(l.default_shift()) || l.default_shift() <= 0 ||
      l.default_shift() > kMaxShift) {
    return bad("default_shift", "must be in (0, 20]");
  }
  if (!std::isfinite(l.default_keep_ratio()) || l.default_keep_ratio() < 0 ||
      l.default_keep_ratio() > 1) {
    return bad("default_keep_ratio", "must be in [0, 1] (0 = model has none)");
  }
  if (!std::isfinite(l.step_seconds_estimate()) || l.step_seconds_estimate() < 0) {
    return bad("step_seconds_estimate", "must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace sparsevid
