// Shows a job's events: a one-line progress bar on a terminal (queue
// position, stage, step x/y, ETA), plain lines otherwise, or one JSON object
// per event (--json; chunk payloads are replaced by their size).
#pragma once

#include <chrono>
#include <ostream>
#include <string>

#include "sparsevid/v1/video_service.pb.h"

namespace sparsevid::client {

class ProgressView {
 public:
  enum class Mode { kBar, kLines, kJson, kQuiet };

  // Bar and lines go to `human` (stderr); JSON lines go to `machine` (stdout).
  ProgressView(Mode mode, std::ostream& human, std::ostream& machine);

  void OnEvent(const v1::JobEvent& event);
  // Ends the bar line (call before printing anything else).
  void Close();

  // JSON text of an event as printed in kJson mode.
  static std::string EventJson(const v1::JobEvent& event);

 private:
  void DrawBar();

  Mode mode_;
  std::ostream& human_;
  std::ostream& machine_;
  std::string job_id_;
  std::string stage_ = "submitted";
  int step_ = 0, total_ = 0;
  int queue_position_ = 0, queue_depth_ = 0;
  double eta_ = -1;
  int64_t bytes_ = 0;
  bool bar_open_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

std::string FormatSeconds(double seconds);

}  // namespace sparsevid::client
