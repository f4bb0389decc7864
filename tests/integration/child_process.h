// A child process for integration tests: started with fork+exec, stdout and
// stderr captured in files, killed with SIGKILL when the handle dies (and
// by the kernel if the test process itself dies), so a failing test never
// leaves servers behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sparsevid::integration {

class ChildProcess {
 public:
  // argv[0] is the executable path. Output goes to <log_prefix>.out/.err.
  static absl::StatusOr<ChildProcess> Start(std::vector<std::string> argv,
                                            const std::string& log_prefix);
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  // Waits for the JSON line with "msg":"ready" on stdout; fails early when
  // the process exits, with the tail of its stderr.
  absl::StatusOr<nlohmann::json> WaitReady(std::chrono::milliseconds timeout);
  void Signal(int signo);
  // Exit status as from waitpid (WIFEXITED etc.), or nullopt on timeout.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  bool running();
  pid_t pid() const { return pid_; }
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string out_path_, err_path_;
};

// Runs a command to completion; returns its exit code and stdout.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::string& log_prefix);

}  // namespace sparsevid::integration
