// Validation of untrusted requests, shared by the front (at submit) and the
// worker (defence in depth on Assign). Every error is INVALID_ARGUMENT and
// its message starts with the offending field name, e.g.
//   "width: must be a multiple of 16, got 100".
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "sparsevid/v1/video_service.pb.h"
#include "sparsevid/v1/worker_link.pb.h"

namespace sparsevid {

inline constexpr size_t kMaxRequestIdLength = 128;
inline constexpr size_t kMaxPromptBytes = 2000;
inline constexpr int kMinFps = 1;
inline constexpr int kMaxFps = 60;
inline constexpr int kMaxSteps = 200;
inline constexpr float kMaxGuidance = 30.0f;
inline constexpr float kMaxShift = 20.0f;
inline constexpr int kMaxPriority = 9;

// [A-Za-z0-9._-], 1..128 characters. Empty is valid (no idempotency key).
absl::Status ValidateRequestId(absl::string_view request_id);

// Checks every field of `request` against `limits`. `served_models` lists
// the model names that can run it; an empty request.model always passes,
// an empty list accepts any name.
absl::Status ValidateGenerateRequest(
    const sparsevid::v1::GenerateRequest& request,
    const sparsevid::v1::ModelLimits& limits,
    const std::vector<std::string>& served_models);

// Replaces 0 / unset fields by the model defaults, so the worker runs exactly
// what the job record shows. Call after ValidateGenerateRequest. The seed is
// left to the caller (the front chooses it).
void ResolveDefaults(const sparsevid::v1::ModelLimits& limits,
                     sparsevid::v1::GenerateRequest* request);

// Sanity of limits announced by a worker (or configured on the front):
// positive multiples, max >= min, defaults within the limits.
absl::Status ValidateModelLimits(const sparsevid::v1::ModelLimits& limits);

}  // namespace sparsevid
