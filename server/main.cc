// sparsevid-front: the gRPC front server.
//
// Start-up: config (YAML + flags) -> metrics endpoint -> job engine ->
// gRPC server (VideoService, WorkerLink, grpc.health.v1, reflection) ->
// one JSON "ready" line on stdout with the bound ports.
// SIGTERM/SIGINT: health NOT_SERVING, new work UNAVAILABLE, running jobs get
// drain.grace_seconds to finish, then they fail and the server stops.
// A second signal skips the rest of the grace period.
#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/request_validation.h"
#include "common/signals.h"
#include "common/tls_credentials.h"
#include "common/version.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/front_config.h"
#include "server/api_keys.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"
#include "server/request_auth.h"
#include "server/video_service.h"
#include "server/worker_link_service.h"

namespace sparsevid::front {
namespace {

constexpr char kVideoServiceName[] = "sparsevid.v1.VideoService";
constexpr char kWorkerLinkName[] = "sparsevid.v1.WorkerLink";

void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);  // "" = the whole server
  health->SetServingStatus(kVideoServiceName, serving);
  health->SetServingStatus(kWorkerLinkName, serving);
}

int Run(int argc, char** argv) {
  // Signals are turned into callbacks on a watcher thread (common/signals.h).
  absl::Notification stop;
  std::atomic<int> signals{0};
  absl::Notification skip_grace;
  SignalWatcher watcher([&](int signo) {
    const int n = ++signals;
    logging::Info("signal received", {{"signal", signo}, {"count", n}});
    if (n == 1) {
      stop.Notify();
    } else if (!skip_grace.HasBeenNotified()) {
      skip_grace.Notify();
    }
  });
  watcher.Start();

  FrontConfig cfg;
  config::ConfigSchema schema;
  DeclareFrontConfig(schema, &cfg);
  absl::StatusOr<config::CommandLineOutcome> parsed = config::ParseCommandLine(
      schema, argc, argv,
      "sparsevid-front: queues text-to-video jobs and hands them to workers", std::cout);
  if (!parsed.ok()) {
    std::fprintf(stderr, "sparsevid-front: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  if (*parsed == config::CommandLineOutcome::kHelpPrinted) return 0;
  const EngineOptions engine_options = ToEngineOptions(cfg);
  if (absl::Status s = ValidateModelLimits(engine_options.default_limits); !s.ok()) {
    std::fprintf(stderr, "sparsevid-front: config %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (absl::Status s = logging::Init("front", cfg.log_level); !s.ok()) {
    std::fprintf(stderr, "sparsevid-front: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  logging::Info("starting", {{"version", VersionString()}});

  metrics::MetricsServer metrics_server;
  if (absl::Status s = metrics_server.Start(cfg.metrics_listen); !s.ok()) {
    logging::Error("metrics endpoint failed", {{"error", std::string(s.message())}});
    return 1;
  }
  FrontMetrics front_metrics(metrics_server.registry());

  std::unique_ptr<ApiKeyStore> api_keys;
  if (!cfg.api_keys_file.empty()) {
    absl::StatusOr<std::unique_ptr<ApiKeyStore>> opened =
        ApiKeyStore::Open(cfg.api_keys_file, absl::Seconds(cfg.api_keys_reload_seconds));
    if (!opened.ok()) {
      logging::Error("auth.api_keys_file unusable",
                     {{"error", std::string(opened.status().message())}});
      std::fprintf(stderr, "sparsevid-front: %s\n",
                   std::string(opened.status().message()).c_str());
      return 2;
    }
    api_keys = std::move(*opened);
    api_keys->set_reload_observer(
        [&front_metrics](bool ok) { front_metrics.OnApiKeysReloaded(ok); });
    logging::Info("auth on", {{"api_keys_file", cfg.api_keys_file}, {"keys", api_keys->size()}});
  } else {
    logging::Warn("auth off: no auth.api_keys_file, every caller may read and cancel every job");
  }
  const RequestAuth auth(api_keys.get(), &front_metrics);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = MakeServerCredentials(
      {cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_client_ca_file});
  if (!credentials.ok()) {
    logging::Error("TLS settings unusable", {{"error", std::string(credentials.status().message())}});
    std::fprintf(stderr, "sparsevid-front: %s\n",
                 std::string(credentials.status().message()).c_str());
    return 2;
  }
  if (cfg.tls_cert_file.empty() && api_keys != nullptr) {
    logging::Warn("auth on without TLS: API keys cross the network in clear (fine behind a "
                  "TLS-terminating gateway on a private network)");
  }

  // Jobs on disk: what a previous front left unfinished is queued again, and
  // what it finished is served again, before any request is served.
  std::unique_ptr<JobJournal> journal;
  std::vector<JournaledJob> pending, ended;
  if (!cfg.state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<JobJournal>> opened = JobJournal::Open(
        cfg.state_dir, &pending, &ended, absl::Now(), engine_options.job_retention);
    if (!opened.ok()) {
      logging::Error("state.dir unusable", {{"error", std::string(opened.status().message())}});
      std::fprintf(stderr, "sparsevid-front: %s\n",
                   std::string(opened.status().message()).c_str());
      return 2;
    }
    journal = std::move(*opened);
  } else {
    logging::Warn("no state.dir: accepted jobs live in memory only; a restart loses them");
  }
  EngineOptions options = engine_options;
  options.journal = journal.get();
  JobEngine engine(options, &front_metrics);
  if (journal != nullptr) {
    const size_t found = pending.size();
    const int served = engine.RestoreEnded(std::move(ended));
    const int queued = engine.Restore(std::move(pending));
    logging::Info("job journal", {{"path", journal->path()},
                                  {"unfinished", static_cast<int64_t>(found)},
                                  {"queued_again", queued},
                                  {"finished_served_again", served}});
  }
  engine.StartTicker(absl::Milliseconds(100));
  VideoServiceImpl video_service(engine, &front_metrics, &auth);
  WorkerLinkServiceImpl worker_link(engine, &front_metrics, &auth);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(cfg.listen, *credentials, &grpc_port);
  builder.RegisterService(&video_service);
  builder.RegisterService(&worker_link);
  // Video moves in chunks of at most 1 MiB, so the default-sized limits
  // suffice; they are explicit so a bad peer cannot make us buffer more.
  builder.SetMaxReceiveMessageSize(cfg.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(cfg.max_send_message_bytes);
  // Streams last minutes and may sit idle between progress events (a slow
  // step, a long queue wait). Ping idle connections every
  // keepalive_time_seconds so load balancers with 60 s+ idle timeouts keep
  // them and dead peers (a killed worker host) are noticed within
  // keepalive_timeout_seconds.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(cfg.keepalive_time_seconds * 1000));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(cfg.keepalive_timeout_seconds * 1000));
  // Workers keep their stream open while idle; allow pings without calls.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Accept client keepalive pings as often as this (the library default of
  // 5 min would answer faster pings with GOAWAY too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(cfg.min_client_ping_interval_seconds * 1000));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    logging::Error("cannot listen", {{"address", cfg.listen}});
    return 1;
  }
  SetHealth(*server, true);
  // Revoked keys: worker links opened with a key that has left the keys file
  // stop getting jobs, and client streams (Watch, Generate, FetchResult)
  // end, within auth.reload_seconds.
  std::thread revoker;
  if (auth.enabled()) {
    revoker = std::thread([&] {
      while (!stop.WaitForNotificationWithTimeout(absl::Seconds(cfg.api_keys_reload_seconds))) {
        worker_link.DropRevokedWorkers();
        video_service.EndRevokedStreams();
      }
    });
  }
  logging::EmitReadyLine({{"component", "front"},
                          {"grpc_port", grpc_port},
                          {"metrics_port", metrics_server.port()},
                          {"auth", auth.enabled()},
                          {"tls", !cfg.tls_cert_file.empty()},
                          {"version", Version()}});

  stop.WaitForNotification();
  if (revoker.joinable()) revoker.join();

  // Drain: readiness off first so balancers stop sending, then refuse work.
  SetHealth(*server, false);
  engine.StartDrain();
  const absl::Time grace_end = absl::Now() + absl::Seconds(cfg.drain_grace_seconds);
  while (engine.running_jobs() > 0 && absl::Now() < grace_end &&
         !skip_grace.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
  }
  if (engine.running_jobs() > 0) {
    engine.FailRunning(absl::UnavailableError("front shut down before the job finished"));
  }
  // Let streams deliver their final events, then close what is left.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  engine.StopTicker();
  logging::Info("stopped");
  return 0;
}

}  // namespace
}  // namespace sparsevid::front

int main(int argc, char** argv) { return sparsevid::front::Run(argc, argv); }
