// Real sparsevid processes on loopback for integration tests: a front on a
// free port (port 0, read back from its ready line) and workers serving the
// tiny random TEST FIXTURE model. Every wait has a deadline; children are
// killed when the harness goes away.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/video_client.h"
#include "tests/integration/child_process.h"

namespace sparsevid::integration {

using namespace std::chrono_literals;

// Paths baked in by CMake.
struct Paths {
  static std::string Front();
  static std::string Worker();
  static std::string Cli();
  static std::string TinyModel();  // TEST FIXTURE: random weights
};

class ServiceHarness {
 public:
  ServiceHarness();  // makes a fresh temp directory for logs and outputs
  ~ServiceHarness();

  // Starts (or restarts) the front; port 0 = a free port.
  absl::Status StartFront(const std::vector<std::string>& extra_flags = {}, int port = 0);
  // Starts a worker linked to the front and waits until it is SERVING
  // (model loaded, link up). Returns its index.
  absl::StatusOr<int> StartWorker(const std::vector<std::string>& extra_flags = {},
                                  bool wait_linked = true);

  ChildProcess& front() { return front_; }
  ChildProcess& worker(int i) { return workers_.at(i); }
  int front_port() const { return front_port_; }
  std::string front_address() const;
  int worker_health_port(int i) const { return worker_health_ports_.at(i); }
  const std::string& dir() const { return dir_; }

  client::VideoClient Client(std::chrono::milliseconds rpc_timeout = 10s) const;
  // Channel credentials for the front (its health check and Client());
  // null = plaintext.
  void set_front_credentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    front_credentials_ = std::move(credentials);
  }

  // A small valid request for the tiny model (fast on a shared 2-core box).
  static v1::GenerateRequest SmallRequest(const std::string& prompt = "a red circle moving left");
  // The largest size the fixture allows: about 0.05-0.1 s per denoise step
  // on one core, for jobs that must still be running when a test acts.
  static v1::GenerateRequest SlowRequest(int steps);

 private:
  std::string dir_;
  std::shared_ptr<grpc::ChannelCredentials> front_credentials_;
  ChildProcess front_;
  int front_port_ = 0;
  int front_starts_ = 0;
  std::vector<ChildProcess> workers_;
  std::vector<int> worker_health_ports_;
};

// ffprobe of the first video stream: "codec,width,height,pix_fmt,rate,frames".
std::string ProbeVideo(const std::string& path);
// `ffmpeg -nostdin -v error -i path -f null -` output (empty = decodes cleanly).
std::string DecodeErrors(const std::string& path);
std::string Sha256OfFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);

}  // namespace sparsevid::integration
