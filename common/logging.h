// Structured logs: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-27T14:10:00.123Z","level":"info","component":"front",
//    "msg":"job started","job_id":"j-...","worker":"w1"}
// Fields are free-form JSON; job_id is a first-class argument so every line
// about a job can be found with one grep.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace sparsevid::logging {

enum class Level { kDebug, kInfo, kWarn, kError };

// Sets the component name written on every line and the minimum level
// ("debug", "info", "warn", "error"). Safe to call again (e.g. after config).
absl::Status Init(std::string component, absl::string_view level);
// Sends log lines to `out` instead of stderr (tests). `out` must outlive
// the logger or be detached with UseStderr().
void UseStreamForTest(std::ostream& out);
void UseStderr();

// Builds the JSON line (exposed for tests).
std::string FormatLine(Level level, absl::string_view msg,
                       const nlohmann::json& fields, absl::string_view job_id);

void Log(Level level, absl::string_view msg, const nlohmann::json& fields = {},
         absl::string_view job_id = {});
inline void Debug(absl::string_view msg, const nlohmann::json& fields = {},
                  absl::string_view job_id = {}) {
  Log(Level::kDebug, msg, fields, job_id);
}
inline void Info(absl::string_view msg, const nlohmann::json& fields = {},
                 absl::string_view job_id = {}) {
  Log(Level::kInfo, msg, fields, job_id);
}
inline void Warn(absl::string_view msg, const nlohmann::json& fields = {},
                 absl::string_view job_id = {}) {
  Log(Level::kWarn, msg, fields, job_id);
}
inline void Error(absl::string_view msg, const nlohmann::json& fields = {},
                  absl::string_view job_id = {}) {
  Log(Level::kError, msg, fields, job_id);
}

// Writes `fields` plus {"msg": "ready"} as one JSON line on stdout and
// flushes: the line tests and supervisors wait for (bound ports etc.).
void EmitReadyLine(const nlohmann::json& fields);

}  // namespace sparsevid::logging
