// sparsevid-worker: loads the model, dials the front and runs the jobs it
// assigns. Config: YAML file (--config) with every key overridable by a
// flag (--help lists them). Prints one JSON "ready" line on stdout with the
// bound ports once the model is loaded and its servers are up.
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/api_key_file.h"
#include "common/config.h"
#include "common/tls_credentials.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/version.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "worker/engine/pipeline.h"
#include "worker/front_link.h"
#include "worker/job_runner.h"
#include "worker/worker_metrics.h"

extern "C" {
#include <libavutil/log.h>
}

namespace sparsevid::worker {
namespace {

struct WorkerConfig {
  std::string front_address = "127.0.0.1:50051";
  std::string front_api_key_file;
  TlsClientConfig front_tls;
  std::string worker_id;  // empty = <hostname>-<pid>
  std::string model_dir = "models/sparsevid-shapes";
  std::string device = "cpu";
  int threads = 0;
  int capacity = 1;
  std::string health_address = "0.0.0.0:50061";
  std::string metrics_address = "0.0.0.0:9465";
  std::string log_level = "info";
  int crf = 23;
  std::string preset = "veryfast";
  double drain_grace_seconds = 600;
  int reconnect_max_backoff_ms = 10000;
};

void Declare(config::ConfigSchema& s, WorkerConfig& c) {
  using config::InRange;
  s.AddString("front.address", &c.front_address,
              "host:port of the front's worker-link listener", config::NonEmpty());
  s.AddString("front.api_key_file", &c.front_api_key_file,
              "file holding this worker's API key (role worker) for a front with auth on; "
              "else env SPARSEVID_API_KEY (the key) or SPARSEVID_API_KEY_FILE; re-read on "
              "every reconnect");
  s.AddBool("front.tls", &c.front_tls.enabled,
            "dial the front with TLS (verified with the system's CAs unless front.tls_ca_file)");
  s.AddString("front.tls_ca_file", &c.front_tls.ca_file,
              "PEM CA that signed the front's certificate (implies front.tls)");
  s.AddString("front.tls_cert_file", &c.front_tls.cert_file,
              "client certificate (PEM) for a front that requires one (mTLS)");
  s.AddString("front.tls_key_file", &c.front_tls.key_file, "private key of front.tls_cert_file");
  s.AddString("worker.id", &c.worker_id, "worker id reported to the front; empty = hostname-pid");
  s.AddInt("worker.capacity", &c.capacity, "jobs accepted at once (one runs, the rest wait)",
           InRange(1, 64));
  s.AddString("model.dir", &c.model_dir, "model directory (model.yaml + weights + tokenizer)",
              config::NonEmpty());
  s.AddString("engine.device", &c.device, "cpu or cuda[:N]", config::NonEmpty());
  s.AddInt("engine.threads", &c.threads, "CPU threads for inference; 0 = all cores",
           InRange(0, 1024));
  s.AddString("health.address", &c.health_address,
              "gRPC health + reflection listener (host:0 = free port)",
              config::ListenAddress(false));
  s.AddString("metrics.address", &c.metrics_address,
              "Prometheus /metrics listener (host:0 = free port, empty = off)",
              config::ListenAddress(true));
  s.AddString("log.level", &c.log_level, "debug | info | warn | error",
              config::OneOf({"debug", "info", "warn", "error"}));
  s.AddInt("video.crf", &c.crf, "x264 constant rate factor of the output", InRange(0, 51));
  s.AddString("video.preset", &c.preset, "x264 preset",
              config::OneOf({"ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                             "slow", "slower", "veryslow"}));
  s.AddDouble("drain.grace_seconds", &c.drain_grace_seconds,
              "on SIGTERM, how long running jobs may finish before they are cancelled",
              InRange(0.0, 86400.0));
  s.AddInt("front.max_backoff_ms", &c.reconnect_max_backoff_ms,
           "longest wait between re-dials of the front", InRange(100, 600000));
}

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

v1::ModelLimits ToLimits(const engine::ModelInfo& i) {
  v1::ModelLimits l;
  l.set_spatial_multiple(i.spatial_multiple);
  l.set_max_width(i.max_width);
  l.set_max_height(i.max_height);
  l.set_min_frames(i.min_frames);
  l.set_max_frames(i.max_frames);
  l.set_frame_multiple(i.temporal_stride);
  l.set_max_prompt_tokens(i.max_prompt_tokens);
  l.set_default_width(i.default_width);
  l.set_default_height(i.default_height);
  l.set_default_frames(i.default_frames);
  l.set_default_fps(i.default_fps);
  l.set_default_steps(i.default_steps);
  l.set_default_guidance(i.default_guidance);
  l.set_default_shift(i.default_shift);
  l.set_default_keep_ratio(i.default_keep_ratio);
  l.set_step_seconds_estimate(0);  // unknown until a job ran
  return l;
}

// SIGTERM / SIGINT for the worker. common/signals.h blocks the signals in
// the threads created after it starts, but OpenBLAS and OpenMP start their
// threads in library constructors before main(), so a signal could land on
// one of those and kill the process. A handler works whichever thread
// receives the signal; it only writes to a pipe (async-signal-safe).
class StopSignal {
 public:
  StopSignal() {
    if (pipe(fds_) != 0) fds_[0] = fds_[1] = -1;
    write_fd_.store(fds_[1]);
    struct sigaction sa {};
    sa.sa_handler = &StopSignal::Handle;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
  }
  // Blocks until a signal arrived; returns its number.
  int Wait() {
    unsigned char signo = 0;
    while (read(fds_[0], &signo, 1) < 0 && errno == EINTR) {
    }
    return signo;
  }

 private:
  static void Handle(int signo) {
    const unsigned char b = static_cast<unsigned char>(signo);
    const int saved = errno;
    (void)!write(write_fd_.load(), &b, 1);
    errno = saved;
  }
  static inline std::atomic<int> write_fd_{-1};
  int fds_[2] = {-1, -1};
};

int Main(int argc, char** argv) {
  StopSignal stop;

  WorkerConfig cfg;
  config::ConfigSchema schema;
  Declare(schema, cfg);
  auto parsed = config::ParseCommandLine(schema, argc, argv,
                                         "sparsevid-worker: runs video jobs for a front", std::cout);
  if (!parsed.ok()) {
    std::cerr << "sparsevid-worker: " << parsed.status().message() << "\n";
    return 2;
  }
  if (*parsed == config::CommandLineOutcome::kHelpPrinted) return 0;
  if (absl::Status st = logging::Init("worker", cfg.log_level); !st.ok()) {
    std::cerr << "sparsevid-worker: " << st.message() << "\n";
    return 2;
  }
  av_log_set_level(AV_LOG_ERROR);
  if (cfg.worker_id.empty()) cfg.worker_id = DefaultWorkerId();

  metrics::MetricsServer metrics_server;
  if (absl::Status st = metrics_server.Start(cfg.metrics_address); !st.ok()) {
    logging::Error("cannot serve metrics", {{"error", std::string(st.message())}});
    return 1;
  }
  metrics::AddBuildInfo(metrics_server.registry(), "worker");
  WorkerMetrics metrics(metrics_server.shared_registry());

  if (!std::filesystem::is_regular_file(std::filesystem::path(cfg.model_dir) / "model.yaml")) {
    logging::Error("model directory not found or has no model.yaml; pass --model.dir",
                   {{"model_dir", cfg.model_dir}});
    return 3;
  }
  const auto load_start = std::chrono::steady_clock::now();
  engine::EngineOptions engine_options;
  engine_options.device = cfg.device;
  engine_options.threads = cfg.threads;
  auto pipeline = engine::Pipeline::Load(cfg.model_dir, engine_options);
  if (!pipeline.ok()) {
    // The code tells a missing GPU or driver (FAILED_PRECONDITION) from a
    // bad model or flag (INVALID_ARGUMENT, NOT_FOUND) at a glance.
    const absl::Status& st = pipeline.status();
    logging::Error("cannot load the model", {{"model_dir", cfg.model_dir},
                                             {"device", cfg.device},
                                             {"code", absl::StatusCodeToString(st.code())},
                                             {"error", std::string(st.message())}});
    return 3;
  }
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  metrics.SetEngineLoadSeconds(load_seconds);
  const engine::ModelInfo& info = (*pipeline)->info();
  logging::Info("model loaded", {{"model", info.name}, {"device", info.device},
                                 {"load_seconds", load_seconds}});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int health_port = 0;
  builder.AddListeningPort(cfg.health_address, grpc::InsecureServerCredentials(), &health_port);
  std::unique_ptr<grpc::Server> health_server = builder.BuildAndStart();
  if (!health_server || health_port == 0) {
    logging::Error("cannot listen for health checks", {{"address", cfg.health_address}});
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = health_server->GetHealthCheckService();
  health->SetServingStatus(false);

  FrontLinkOptions link_options;
  link_options.front_address = cfg.front_address;
  link_options.max_backoff = std::chrono::milliseconds(cfg.reconnect_max_backoff_ms);
  {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeChannelCredentials(cfg.front_tls);
    if (!creds.ok()) {
      logging::Error("front TLS settings unusable",
                     {{"error", std::string(creds.status().message())}});
      return 2;
    }
    link_options.credentials = *creds;
  }
  {
    absl::StatusOr<std::string> key =
        ResolveApiKey(cfg.front_api_key_file, "SPARSEVID_API_KEY", "SPARSEVID_API_KEY_FILE");
    if (!key.ok()) {
      logging::Error("no usable API key for the front",
                     {{"error", std::string(key.status().message())}});
      return 2;
    }
    link_options.api_key = *key;
    // A key read from a file is re-read on every dial (rotation).
    const char* env_key = std::getenv("SPARSEVID_API_KEY");
    const char* env_file = std::getenv("SPARSEVID_API_KEY_FILE");
    link_options.api_key_file = cfg.front_api_key_file;
    if (link_options.api_key_file.empty() && (env_key == nullptr || *env_key == '\0') &&
        env_file != nullptr) {
      link_options.api_key_file = env_file;
    }
  }
  v1::WorkerHello& hello = link_options.hello;
  hello.set_worker_id(cfg.worker_id);
  hello.set_model(info.name);
  hello.set_device(info.device);
  hello.set_capacity(cfg.capacity);
  hello.set_version(VersionString());
  *hello.mutable_limits() = ToLimits(info);
  // Health says SERVING only while the worker can take jobs: model loaded
  // and linked to the front.
  std::atomic<bool> draining{false};
  FrontLink link(link_options, &metrics, [&](bool connected) {
    health->SetServingStatus(connected && !draining.load());
  });

  JobRunnerOptions runner_options;
  runner_options.worker_id = cfg.worker_id;
  runner_options.capacity = cfg.capacity;
  runner_options.crf = cfg.crf;
  runner_options.preset = cfg.preset;
  auto runner = std::make_unique<JobRunner>(
      pipeline->get(), &metrics, runner_options,
      [&link](const std::string& job_id, v1::JobEvent ev) { link.OnJobEvent(job_id, std::move(ev)); },
      [&link](int free_slots) { link.OnSlotFree(free_slots); });
  link.Start(runner.get());

  logging::EmitReadyLine({{"component", "worker"},
                          {"worker_id", cfg.worker_id},
                          {"health_port", health_port},
                          {"metrics_port", metrics_server.port()},
                          {"model", info.name},
                          {"device", info.device},
                          {"front", cfg.front_address}});

  const int signo = stop.Wait();
  // Drain: stop taking work, let the running job finish within the grace
  // period, then cancel what is left and leave.
  draining.store(true);
  health->SetServingStatus(false);
  link.StopAcceptingJobs();
  logging::Info("draining", {{"signal", signo}, {"grace_seconds", cfg.drain_grace_seconds}});
  const bool idle = runner->WaitIdle(std::chrono::milliseconds(
      static_cast<int64_t>(cfg.drain_grace_seconds * 1000)));
  if (!idle) {
    runner->CancelAll("worker drain grace period over");
    runner->WaitIdle(std::chrono::seconds(30));
  }
  link.Stop();
  runner.reset();
  health_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  logging::Info("stopped", {{"drained", idle}});
  return 0;
}

}  // namespace
}  // namespace sparsevid::worker

int main(int argc, char** argv) { return sparsevid::worker::Main(argc, argv); }
