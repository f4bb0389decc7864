#include "common/logging.h"

#include <cstdio>
#include <iostream>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace sparsevid::logging {
namespace {

struct State {
  std::mutex mu;
  std::string component = "sparsevid";
  std::shared_ptr<spdlog::logger> logger;
};

State& GetState() {
  static State* state = [] {
    auto* s = new State;
    // The message is already a JSON line; spdlog only writes it.
    s->logger = std::make_shared<spdlog::logger>(
        "sparsevid", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    s->logger->set_pattern("%v");
    s->logger->set_level(spdlog::level::info);
    s->logger->flush_on(spdlog::level::trace);
    return s;
  }();
  return *state;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

void ReplaceSink(spdlog::sink_ptr sink) {
  State& st = GetState();
  std::lock_guard<std::mutex> lock(st.mu);
  auto logger = std::make_shared<spdlog::logger>("sparsevid", std::move(sink));
  logger->set_pattern("%v");
  logger->set_level(st.logger->level());
  logger->flush_on(spdlog::level::trace);
  st.logger = std::move(logger);
}

std::string Dump(const nlohmann::json& j) {
  // Prompts may hold invalid UTF-8; replace rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

absl::Status Init(std::string component, absl::string_view level) {
  Level parsed;
  if (level == "debug") {
    parsed = Level::kDebug;
  } else if (level == "info") {
    parsed = Level::kInfo;
  } else if (level == "warn") {
    parsed = Level::kWarn;
  } else if (level == "error") {
    parsed = Level::kError;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level must be debug, info, warn or error; got '", level, "'"));
  }
  State& st = GetState();
  std::lock_guard<std::mutex> lock(st.mu);
  st.component = std::move(component);
  st.logger->set_level(ToSpd(parsed));
  return absl::OkStatus();
}

void UseStreamForTest(std::ostream& out) {
  ReplaceSink(std::make_shared<spdlog::sinks::ostream_sink_mt>(out, true));
}

void UseStderr() { ReplaceSink(std::make_shared<spdlog::sinks::stderr_sink_mt>()); }

std::string FormatLine(Level level, absl::string_view msg,
                       const nlohmann::json& fields, absl::string_view job_id) {
  nlohmann::json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                absl::UTCTimeZone());
  line["level"] = LevelName(level);
  {
    State& st = GetState();
    std::lock_guard<std::mutex> lock(st.mu);
    line["component"] = st.component;
  }
  line["msg"] = std::string(msg);
  if (!job_id.empty()) line["job_id"] = std::string(job_id);
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      // Fixed keys win so every line keeps the same shape.
      if (!line.contains(it.key())) line[it.key()] = it.value();
    }
  } else if (!fields.is_null()) {
    line["fields"] = fields;
  }
  return Dump(line);
}

void Log(Level level, absl::string_view msg, const nlohmann::json& fields,
         absl::string_view job_id) {
  std::shared_ptr<spdlog::logger> logger;
  {
    State& st = GetState();
    std::lock_guard<std::mutex> lock(st.mu);
    logger = st.logger;
  }
  if (!logger->should_log(ToSpd(level))) return;
  logger->log(ToSpd(level), FormatLine(level, msg, fields, job_id));
}

void EmitReadyLine(const nlohmann::json& fields) {
  nlohmann::json line = fields.is_object() ? fields : nlohmann::json::object();
  line["msg"] = "ready";
  const std::string text = Dump(line);
  std::fprintf(stdout, "%s\n", text.c_str());
  std::fflush(stdout);
  Info("ready", fields);
}

}  // namespace sparsevid::logging
