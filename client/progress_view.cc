#include "client/progress_view.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"

namespace sparsevid::client {

std::string FormatSeconds(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "?";
  const int s = static_cast<int>(std::lround(seconds));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

ProgressView::ProgressView(Mode mode, std::ostream& human, std::ostream& machine)
    : mode_(mode), human_(human), machine_(machine) {}

std::string ProgressView::EventJson(const v1::JobEvent& event) {
  v1::JobEvent copy = event;
  int64_t size = -1;
  if (copy.has_chunk()) {
    size = static_cast<int64_t>(copy.chunk().data().size());
    copy.mutable_chunk()->clear_data();
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(copy, &json, options);
  if (size >= 0 && !json.empty() && json.back() == '}') {
    json.pop_back();
    json += absl::StrFormat(",\"chunk_bytes\":%d}", size);
  }
  return json;
}

void ProgressView::OnEvent(const v1::JobEvent& e) {
  if (mode_ == Mode::kQuiet) return;
  if (mode_ == Mode::kJson) {
    machine_ << EventJson(e) << "\n";
    machine_.flush();
    return;
  }
  if (job_id_.empty()) job_id_ = e.job_id();
  std::string line;
  switch (e.event_case()) {
    case v1::JobEvent::kQueued:
      stage_ = "queued";
      queue_position_ = e.queued().position();
      queue_depth_ = e.queued().depth();
      eta_ = e.queued().eta_seconds();
      line = absl::StrFormat("job %s queued: position %d of %d, starts in %s", e.job_id(),
                             queue_position_, queue_depth_, FormatSeconds(eta_));
      break;
    case v1::JobEvent::kStarted:
      stage_ = "started";
      queue_position_ = 0;
      line = absl::StrFormat("job %s started on %s (attempt %d)", e.job_id(),
                             e.started().worker(), e.started().attempt());
      break;
    case v1::JobEvent::kProgress:
      stage_ = e.progress().stage();
      step_ = e.progress().step();
      total_ = e.progress().total();
      eta_ = e.progress().eta_seconds();
      line = absl::StrFormat("%s %d/%d  %.2fs/step  density %.3f  ETA %s", stage_, step_, total_,
                             e.progress().step_seconds(), e.progress().attention_density(),
                             FormatSeconds(eta_));
      break;
    case v1::JobEvent::kChunk:
      bytes_ += static_cast<int64_t>(e.chunk().data().size());
      break;  // the bar shows bytes; lines stay quiet per chunk
    case v1::JobEvent::kCompleted: {
      const v1::JobStats& s = e.completed().stats();
      stage_ = "done";
      step_ = total_;
      eta_ = 0;
      line = absl::StrFormat(
          "completed: %d frames, %d bytes, queued %.1fs, ran %.1fs (denoise %.1fs, attention "
          "density %.3f), seed %d, worker %s",
          s.frames(), s.output_bytes(), s.queue_seconds(), s.run_seconds(), s.denoise_seconds(),
          s.mean_attention_density(), s.seed(), s.worker());
      break;
    }
    case v1::JobEvent::kFailed:
      stage_ = "failed";
      line = absl::StrFormat("failed: %s", e.failed().message());
      break;
    case v1::JobEvent::kCancelled:
      stage_ = "cancelled";
      line = absl::StrFormat("cancelled: %s", e.cancelled().reason());
      break;
    default:
      break;
  }
  if (mode_ == Mode::kLines) {
    if (!line.empty()) human_ << line << "\n";
    human_.flush();
    return;
  }
  const bool final_event = e.has_completed() || e.has_failed() || e.has_cancelled();
  // Redraw at most ~20 times a second, always on stage changes and at the end.
  const auto now = std::chrono::steady_clock::now();
  if (final_event || !e.has_chunk() || now - last_draw_ > std::chrono::milliseconds(50)) {
    DrawBar();
    last_draw_ = now;
  }
  if (final_event) {
    Close();
    human_ << line << "\n";
    human_.flush();
  }
}

void ProgressView::DrawBar() {
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? static_cast<double>(step_) / total_ : 0.0;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '-');
  std::string status;
  if (queue_position_ > 0) {
    status = absl::StrFormat("queued %d/%d", queue_position_, queue_depth_);
  } else if (total_ > 0) {
    status = absl::StrFormat("%s %d/%d", stage_, step_, total_);
  } else {
    status = stage_;
  }
  human_ << "\r\033[K[" << bar << "] " << status << "  ETA " << FormatSeconds(eta_);
  if (bytes_ > 0) human_ << "  " << bytes_ / 1024 << " KiB";
  human_.flush();
  bar_open_ = true;
}

void ProgressView::Close() {
  if (bar_open_) {
    human_ << "\n";
    human_.flush();
    bar_open_ = false;
  }
}

}  // namespace sparsevid::client
