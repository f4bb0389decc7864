#include "server/front_config.h"

#include "common/request_validation.h"

namespace sparsevid::front {

using config::InRange;

void DeclareFrontConfig(config::ConfigSchema& s, FrontConfig* c) {
  s.AddString("server.listen", &c->listen,
              "gRPC address (host:port; port 0 picks a free one)",
              config::ListenAddress(false));
  s.AddString("server.tls_cert_file", &c->tls_cert_file,
              "PEM certificate chain for TLS on the gRPC port (with server.tls_key_file); "
              "empty = plaintext");
  s.AddString("server.tls_key_file", &c->tls_key_file, "PEM private key of that certificate");
  s.AddString("server.tls_client_ca_file", &c->tls_client_ca_file,
              "PEM CA: clients and workers must present a certificate it signed (mTLS); "
              "empty = no client certificates");
  s.AddString("metrics.listen", &c->metrics_listen,
              "Prometheus /metrics address (host:port, port 0 = free port, empty = off)",
              config::ListenAddress(true));
  s.AddString("log.level", &c->log_level, "debug, info, warn or error",
              config::OneOf({"debug", "info", "warn", "error"}));

  s.AddInt("queue.capacity", &c->queue_capacity,
           "queued jobs before Submit answers RESOURCE_EXHAUSTED", InRange(1, 1000000));
  s.AddDouble("queue.min_retry_delay_seconds", &c->min_retry_delay_seconds,
              "smallest retry delay suggested when the queue is full", InRange(0.001, 3600.0));
  s.AddInt("jobs.max_attempts", &c->max_attempts,
           "runs of a job, counting requeues after a worker is lost", InRange(1, 100));
  s.AddInt("jobs.event_log_capacity", &c->event_log_capacity,
           "events kept per job for Watch replay", InRange(16, 1000000));
  s.AddDouble("jobs.retention_seconds", &c->job_retention_seconds,
              "how long finished job records stay visible", InRange(1.0, 30 * 86400.0));
  s.AddInt("jobs.max_finished", &c->max_finished_jobs,
           "finished job records kept at most (oldest dropped first)", InRange(1, 10000000));

  s.AddInt64("results.cap_bytes", &c->result_cap_bytes,
             "total bytes of MP4 results kept in memory",
             InRange<int64_t>(1 << 20, int64_t{1} << 40));
  s.AddDouble("results.ttl_seconds", &c->result_ttl_seconds,
              "how long a finished video stays fetchable", InRange(1.0, 30 * 86400.0));

  s.AddDouble("drain.grace_seconds", &c->drain_grace_seconds,
              "on SIGTERM, how long running jobs may finish before they fail",
              InRange(0.0, 86400.0));

  s.AddString("state.dir", &c->state_dir,
              "directory of the job journal: jobs accepted by a front that dies (crash, OOM kill) "
              "are queued again by the next front on it, and the jobs it finished (with their "
              "videos, up to results.cap_bytes) are served again; a drain still ends queued jobs; "
              "empty = jobs live in memory only");

  s.AddString("auth.api_keys_file", &c->api_keys_file,
              "YAML file of API keys (name, key, role, max_active_jobs); empty = no auth: "
              "every caller may read and cancel every job");
  s.AddDouble("auth.reload_seconds", &c->api_keys_reload_seconds,
              "how often the API keys file is checked for changes", InRange(0.1, 3600.0));

  s.AddInt("grpc.max_receive_message_bytes", &c->max_receive_message_bytes,
           "largest message accepted (chunks are at most 1 MiB)",
           InRange(1 << 20, 64 << 20));
  s.AddInt("grpc.max_send_message_bytes", &c->max_send_message_bytes,
           "largest message sent", InRange(1 << 20, 64 << 20));
  s.AddDouble("grpc.keepalive_time_seconds", &c->keepalive_time_seconds,
              "server pings an idle connection this often", InRange(1.0, 7200.0));
  s.AddDouble("grpc.keepalive_timeout_seconds", &c->keepalive_timeout_seconds,
              "a ping unanswered this long closes the connection", InRange(1.0, 600.0));
  s.AddDouble("grpc.min_client_ping_interval_seconds", &c->min_client_ping_interval_seconds,
              "clients may ping at most this often", InRange(1.0, 3600.0));

  s.AddString("limits.model", &c->model,
              "model name accepted before any worker connects", config::NonEmpty());
  s.AddInt("limits.spatial_multiple", &c->spatial_multiple, "width/height multiple",
           InRange(1, 1024));
  s.AddInt("limits.max_width", &c->max_width, "largest width (pixels)", InRange(1, 16384));
  s.AddInt("limits.max_height", &c->max_height, "largest height (pixels)", InRange(1, 16384));
  s.AddInt("limits.min_frames", &c->min_frames, "fewest frames", InRange(1, 10000));
  s.AddInt("limits.max_frames", &c->max_frames, "most frames", InRange(1, 10000));
  s.AddInt("limits.frame_multiple", &c->frame_multiple, "num_frames = multiple*n + 1",
           InRange(1, 64));
  s.AddInt("limits.default_width", &c->default_width, "width when 0", InRange(1, 16384));
  s.AddInt("limits.default_height", &c->default_height, "height when 0", InRange(1, 16384));
  s.AddInt("limits.default_frames", &c->default_frames, "frames when 0", InRange(1, 10000));
  s.AddInt("limits.default_fps", &c->default_fps, "fps when 0", InRange(1, 60));
  s.AddInt("limits.default_steps", &c->default_steps, "steps when 0", InRange(1, 200));
  s.AddDouble("limits.default_guidance", &c->default_guidance, "guidance when unset",
              InRange(0.0, 30.0));
  s.AddDouble("limits.default_shift", &c->default_shift, "shift when unset",
              InRange(0.001, 20.0));
  s.AddDouble("limits.default_keep_ratio", &c->default_keep_ratio,
              "SLA2 keep ratio when unset", InRange(0.0, 1.0));
}

EngineOptions ToEngineOptions(const FrontConfig& c) {
  EngineOptions o;
  o.queue_capacity = c.queue_capacity;
  o.max_attempts = c.max_attempts;
  o.event_log_capacity = c.event_log_capacity;
  o.result_cap_bytes = c.result_cap_bytes;
  o.result_ttl = absl::Seconds(c.result_ttl_seconds);
  o.job_retention = absl::Seconds(c.job_retention_seconds);
  o.max_finished_jobs = c.max_finished_jobs;
  o.min_retry_delay = absl::Seconds(c.min_retry_delay_seconds);
  o.default_model = c.model;
  v1::ModelLimits& l = o.default_limits;
  l.set_spatial_multiple(c.spatial_multiple);
  l.set_max_width(c.max_width);
  l.set_max_height(c.max_height);
  l.set_min_frames(c.min_frames);
  l.set_max_frames(c.max_frames);
  l.set_frame_multiple(c.frame_multiple);
  l.set_default_width(c.default_width);
  l.set_default_height(c.default_height);
  l.set_default_frames(c.default_frames);
  l.set_default_fps(c.default_fps);
  l.set_default_steps(c.default_steps);
  l.set_default_guidance(static_cast<float>(c.default_guidance));
  l.set_default_shift(static_cast<float>(c.default_shift));
  l.set_default_keep_ratio(static_cast<float>(c.default_keep_ratio));
  return o;
}

}  // namespace sparsevid::front
