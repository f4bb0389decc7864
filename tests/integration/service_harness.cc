#include "tests/integration/service_harness.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/health_check.h"
#include "gtest/gtest.h"
#include "tests/support/command_output.h"

namespace sparsevid::integration {

std::string Paths::Front() { return SPARSEVID_FRONT_BIN; }
std::string Paths::Worker() { return SPARSEVID_WORKER_BIN; }
std::string Paths::Cli() { return SPARSEVID_CLI_BIN; }
std::string Paths::TinyModel() { return SPARSEVID_TINY_MODEL_DIR; }

ServiceHarness::ServiceHarness() {
  std::string tmpl = testing::TempDir() + "/sparsevid-it-XXXXXX";
  char* made = mkdtemp(tmpl.data());
  dir_ = made != nullptr ? made : testing::TempDir();
}

ServiceHarness::~ServiceHarness() {
  // Workers first so the front does not log them as lost mid-teardown.
  workers_.clear();
  front_ = ChildProcess();
  if (!testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
}

absl::Status ServiceHarness::StartFront(const std::vector<std::string>& extra, int port) {
  std::vector<std::string> argv = {Paths::Front(),
                                   "--server.listen", absl::StrCat("127.0.0.1:", port),
                                   "--metrics.listen", "127.0.0.1:0",
                                   "--log.level", "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = ChildProcess::Start(argv, absl::StrCat(dir_, "/front", ++front_starts_));
  if (!p.ok()) return p.status();
  front_ = std::move(*p);
  auto ready = front_.WaitReady(20s);
  if (!ready.ok()) return ready.status();
  front_port_ = ready->value("grpc_port", 0);
  if (front_port_ <= 0) return absl::InternalError("front ready line has no grpc_port");
  auto health = client::WaitForServing(front_address(), "", 10s, front_credentials_);
  if (!health.ok()) return health.status();
  return absl::OkStatus();
}

absl::StatusOr<int> ServiceHarness::StartWorker(const std::vector<std::string>& extra,
                                                bool wait_linked) {
  const int index = static_cast<int>(workers_.size());
  std::vector<std::string> argv = {Paths::Worker(),
                                   "--front.address", front_address(),
                                   "--model.dir", Paths::TinyModel(),
                                   "--worker.id", absl::StrCat("it-worker-", index),
                                   "--health.address", "127.0.0.1:0",
                                   "--metrics.address", "127.0.0.1:0",
                                   "--engine.threads", "1",
                                   "--front.max_backoff_ms", "500",
                                   "--log.level", "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = ChildProcess::Start(argv, absl::StrCat(dir_, "/worker", index));
  if (!p.ok()) return p.status();
  workers_.push_back(std::move(*p));
  auto ready = workers_.back().WaitReady(60s);
  if (!ready.ok()) return ready.status();
  worker_health_ports_.push_back(ready->value("health_port", 0));
  if (wait_linked) {
    auto health = client::WaitForServing(
        absl::StrCat("127.0.0.1:", worker_health_ports_.back()), "", 20s);
    if (!health.ok()) return health.status();
    if (*health != client::HealthStatus::kServing) {
      return absl::DeadlineExceededError("worker did not link to the front in time");
    }
  }
  return index;
}

std::string ServiceHarness::front_address() const {
  return absl::StrCat("127.0.0.1:", front_port_);
}

client::VideoClient ServiceHarness::Client(std::chrono::milliseconds rpc_timeout) const {
  client::ClientOptions opt;
  opt.address = front_address();
  opt.rpc_timeout = rpc_timeout;
  opt.credentials = front_credentials_;
  return client::VideoClient(opt);
}

v1::GenerateRequest ServiceHarness::SmallRequest(const std::string& prompt) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.set_width(32);
  r.set_height(32);
  r.set_num_frames(5);
  r.set_fps(10);
  r.set_steps(2);
  r.set_seed(7);
  return r;
}

v1::GenerateRequest ServiceHarness::SlowRequest(int steps) {
  v1::GenerateRequest r = SmallRequest("a slow job");
  r.set_width(256);
  r.set_height(256);
  r.set_num_frames(17);
  r.set_steps(steps);
  return r;
}

namespace {
// The command's stdout without trailing line ends.
std::string Capture(const std::string& cmd) {
  std::string out = testing_support::CommandOutput(cmd);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}
}  // namespace

std::string ProbeVideo(const std::string& path) {
  return Capture(absl::StrCat(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames -of csv=p=0 '",
      path, "' 2>&1"));
}

std::string DecodeErrors(const std::string& path) {
  return Capture(absl::StrCat("ffmpeg -nostdin -v error -i '", path, "' -f null - 2>&1"));
}

std::string Sha256OfFile(const std::string& path) {
  return Capture(absl::StrCat("sha256sum '", path, "'")).substr(0, 64);
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace sparsevid::integration
