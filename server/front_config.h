// Configuration of sparsevid-front: every key in one struct, declared once
// (DeclareFrontConfig) so YAML, flags, --help and validation agree.
// See configs/front.yaml for an annotated example.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"
#include "server/job_engine.h"

namespace sparsevid::front {

struct FrontConfig {
  std::string listen = "0.0.0.0:50051";
  // TLS on the gRPC port (both files, PEM); empty = plaintext. A client CA
  // makes clients (and workers) present a certificate it signed.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  std::string metrics_listen = "0.0.0.0:9464";
  std::string log_level = "info";

  int queue_capacity = 256;
  int max_attempts = 3;
  int event_log_capacity = 4096;
  double job_retention_seconds = 3600;
  int max_finished_jobs = 10000;
  double min_retry_delay_seconds = 1;

  int64_t result_cap_bytes = int64_t{2} << 30;
  double result_ttl_seconds = 3600;

  double drain_grace_seconds = 600;

  // Directory of the job journal (server/job_journal.h); empty = accepted
  // jobs live in memory only and a restart loses them.
  std::string state_dir;

  // API keys (server/api_keys.h); empty = auth off, every caller sees every job.
  std::string api_keys_file;
  double api_keys_reload_seconds = 2;

  int max_receive_message_bytes = 4 << 20;
  int max_send_message_bytes = 4 << 20;
  double keepalive_time_seconds = 30;
  double keepalive_timeout_seconds = 10;
  double min_client_ping_interval_seconds = 10;

  // Stand-ins for ModelLimits until the first worker says hello.
  std::string model = "sparsevid-shapes-v1";
  int spatial_multiple = 16;
  int max_width = 1280;
  int max_height = 1280;
  int min_frames = 1;
  int max_frames = 161;
  int frame_multiple = 4;
  int default_width = 832;
  int default_height = 480;
  int default_frames = 81;
  int default_fps = 16;
  int default_steps = 50;
  double default_guidance = 5.0;
  double default_shift = 5.0;
  double default_keep_ratio = 0.03;
};

void DeclareFrontConfig(config::ConfigSchema& schema, FrontConfig* config);

EngineOptions ToEngineOptions(const FrontConfig& config);

}  // namespace sparsevid::front
