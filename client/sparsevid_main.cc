// `sparsevid`: command-line client of the sparsevid front.
//   sparsevid generate "a red circle moving left" -o out.mp4
//   sparsevid submit | watch | status | cancel | fetch | list
// Exit codes: client/exit_codes.h (also printed by --help).
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "client/exit_codes.h"
#include "client/health_check.h"
#include "client/output_file.h"
#include "client/progress_view.h"
#include "client/video_client.h"
#include "common/api_key_file.h"
#include "common/signals.h"
#include "common/tls_credentials.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace sparsevid::client {
namespace {

constexpr char kExitCodeHelp[] =
    "Exit codes: 0 ok, 1 job failed, 2 usage, 3 front unreachable/unavailable, 4 invalid "
    "request, 5 queue full, 6 cancelled, 7 deadline exceeded, 8 job not found, 9 other server "
    "error, 10 output file error, 11 not authorised (API key), 130 interrupted.";

struct GlobalFlags {
  std::string address;
  std::string api_key_file;
  TlsClientConfig tls;
  bool json = false;
  double timeout_seconds = 0;  // 0 = no deadline
};

struct RequestFlags {
  std::string prompt, negative_prompt, request_id, model, sampler, attention;
  int width = 0, height = 0, frames = 0, fps = 0, steps = 0, priority = 0;
  float guidance = 0, keep_ratio = 0, shift = 0;
  uint64_t seed = 0;
  bool detach = false;
  CLI::Option *guidance_opt = nullptr, *keep_opt = nullptr, *shift_opt = nullptr,
              *seed_opt = nullptr;
};

void AddRequestOptions(CLI::App* cmd, RequestFlags& f) {
  cmd->add_option("prompt", f.prompt, "text prompt")->required();
  cmd->add_option("--negative-prompt", f.negative_prompt, "negative prompt");
  cmd->add_option("--width", f.width, "pixels, multiple of the model's stride (0 = default)");
  cmd->add_option("--height", f.height, "pixels (0 = default)");
  cmd->add_option("--frames", f.frames, "frames, 4n+1 (0 = default)");
  cmd->add_option("--fps", f.fps, "frames per second of the MP4 (0 = default)");
  cmd->add_option("--steps", f.steps, "denoising steps (0 = default)");
  f.guidance_opt = cmd->add_option("--guidance", f.guidance, "classifier-free guidance scale");
  f.seed_opt = cmd->add_option("--seed", f.seed, "noise seed (default: chosen by the server)");
  cmd->add_option("--sampler", f.sampler, "euler | unipc")
      ->check(CLI::IsMember({"euler", "unipc"}));
  cmd->add_option("--attention", f.attention, "dense | sla2 | sla2_low_bit")
      ->check(CLI::IsMember({"dense", "sla2", "sla2_low_bit"}));
  f.keep_opt = cmd->add_option("--keep-ratio", f.keep_ratio, "SLA2 kept fraction of key blocks");
  f.shift_opt = cmd->add_option("--shift", f.shift, "flow-matching shift");
  cmd->add_option("--priority", f.priority, "0 (lowest) .. 9 (highest)");
  cmd->add_option("--request-id", f.request_id, "idempotency key");
  cmd->add_option("--model", f.model, "model name (default: the served model)");
  cmd->add_flag("--detach", f.detach, "keep the job running if this client disconnects");
}

v1::GenerateRequest BuildRequest(const RequestFlags& f) {
  v1::GenerateRequest r;
  r.set_prompt(f.prompt);
  r.set_negative_prompt(f.negative_prompt);
  r.set_width(f.width);
  r.set_height(f.height);
  r.set_num_frames(f.frames);
  r.set_fps(f.fps);
  r.set_steps(f.steps);
  if (f.guidance_opt->count() > 0) r.set_guidance_scale(f.guidance);
  if (f.seed_opt->count() > 0) r.set_seed(f.seed);
  if (f.keep_opt->count() > 0) r.set_keep_ratio(f.keep_ratio);
  if (f.shift_opt->count() > 0) r.set_shift(f.shift);
  if (f.sampler == "euler") r.set_sampler(v1::SAMPLER_EULER);
  if (f.sampler == "unipc") r.set_sampler(v1::SAMPLER_UNIPC);
  if (f.attention == "dense") r.set_attention(v1::ATTENTION_MODE_DENSE);
  if (f.attention == "sla2") r.set_attention(v1::ATTENTION_MODE_SLA2);
  if (f.attention == "sla2_low_bit") r.set_attention(v1::ATTENTION_MODE_SLA2_LOW_BIT);
  r.set_priority(f.priority);
  r.set_request_id(f.request_id);
  r.set_model(f.model);
  r.set_detach(f.detach);
  return r;
}

std::chrono::milliseconds Timeout(const GlobalFlags& g) {
  return std::chrono::milliseconds(static_cast<int64_t>(g.timeout_seconds * 1000));
}

int ReportRpcError(const absl::Status& st, const GlobalFlags& g) {
  const ExitCode code = ExitCodeForRpcError(st.code());
  if (g.json) {
    nlohmann::json j;
    j["error"] = {{"code", absl::StatusCodeToString(st.code())},
                  {"message", std::string(st.message())},
                  {"exit_code", static_cast<int>(code)}};
    std::cout << j.dump() << "\n";
  }
  std::cerr << "sparsevid: " << absl::StatusCodeToString(st.code()) << ": " << st.message()
            << "\n";
  return code;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

ProgressView::Mode ViewMode(const GlobalFlags& g) {
  if (g.json) return ProgressView::Mode::kJson;
  return isatty(STDERR_FILENO) ? ProgressView::Mode::kBar : ProgressView::Mode::kLines;
}

const char* StateName(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unspecified";
  }
}

// What a stream of job events ended with.
struct FollowResult {
  std::optional<v1::JobEvent> final_event;
  std::string job_id;
  absl::Status output_error;
};

// Follows events (Generate or Watch), writing chunks to `out` if given.
VideoClient::EventCallback Follower(ProgressView& view, OutputFile* out, FollowResult& result) {
  return [&view, out, &result](const v1::JobEvent& e) {
    if (result.job_id.empty()) result.job_id = e.job_id();
    if (e.has_chunk() && out != nullptr) {
      absl::Status st = out->Write(e.chunk().offset(), e.chunk().data());
      if (!st.ok()) {
        result.output_error = st;
        return false;
      }
    }
    view.OnEvent(e);
    if (e.has_completed() || e.has_failed() || e.has_cancelled()) {
      result.final_event = e;
      return false;  // nothing follows a final event
    }
    return true;
  };
}

// Turns the end of a followed stream into an exit code and a message.
int FinishFollow(const absl::Status& rpc, FollowResult& result, OutputFile* out,
                 ProgressView& view, const GlobalFlags& g, bool interrupted, bool detach) {
  view.Close();
  if (!result.output_error.ok()) {
    std::cerr << "sparsevid: output: " << result.output_error.message() << "\n";
    return kExitOutputError;
  }
  if (interrupted) {
    if (!result.job_id.empty()) {
      std::cerr << "sparsevid: interrupted; job " << result.job_id
                << (detach ? " keeps running (sparsevid watch / fetch " + result.job_id + ")"
                           : " cancelled")
                << "\n";
    }
    return kExitInterrupted;
  }
  if (result.final_event) {
    const v1::JobEvent& e = *result.final_event;
    if (e.has_completed()) {
      if (out != nullptr) {
        absl::Status st =
            out->Commit(e.completed().stats().output_bytes(), e.completed().stats().sha256());
        if (!st.ok()) {
          std::cerr << "sparsevid: output: " << st.message() << "\n";
          return kExitOutputError;
        }
        if (!g.json) std::cerr << "wrote " << out->path() << " (" << out->bytes() << " bytes)\n";
      }
      return kExitOk;
    }
    if (e.has_cancelled()) return kExitCancelled;
    std::cerr << "sparsevid: job " << result.job_id << " failed: "
              << absl::StatusCodeToString(static_cast<absl::StatusCode>(e.failed().code())) << ": "
              << e.failed().message() << "\n";
    return ExitCodeForJobFailure(static_cast<absl::StatusCode>(e.failed().code()));
  }
  if (!rpc.ok()) return ReportRpcError(rpc, g);
  std::cerr << "sparsevid: the stream ended before the job finished\n";
  return kExitServerError;
}

// Ctrl-C: runs `on_interrupt` once on the signal thread.
class Interrupts {
 public:
  Interrupts()
      : watcher_([this](int) {
          if (!fired_.exchange(true)) {
            std::lock_guard<std::mutex> lock(mu_);
            if (action_) action_();
          }
        }) {
    watcher_.Start();
  }
  void OnInterrupt(std::function<void()> action) {
    std::lock_guard<std::mutex> lock(mu_);
    action_ = std::move(action);
  }
  bool fired() const { return fired_.load(); }

 private:
  std::mutex mu_;
  std::function<void()> action_;
  std::atomic<bool> fired_{false};
  SignalWatcher watcher_;
};

int RunGenerate(VideoClient& client, const RequestFlags& f, const std::string& output,
                const GlobalFlags& g, Interrupts& interrupts) {
  OutputFile out;
  if (absl::Status st = out.Open(output); !st.ok()) {
    std::cerr << "sparsevid: " << st.message() << "\n";
    return kExitOutputError;
  }
  ProgressView view(ViewMode(g), std::cerr, std::cout);
  FollowResult result;
  CallHandle handle;
  interrupts.OnInterrupt([&handle] { handle.Cancel(); });
  const v1::GenerateRequest request = BuildRequest(f);
  absl::Status rpc = client.Generate(request, Follower(view, &out, result), Timeout(g), &handle);
  const bool interrupted = interrupts.fired();
  if (interrupted && !f.detach && !result.job_id.empty()) {
    // The front cancels on disconnect too; asking explicitly makes it certain.
    (void)client.CancelJob(result.job_id, "interrupted by the user (Ctrl-C)");
  }
  return FinishFollow(rpc, result, &out, view, g, interrupted, f.detach);
}

int RunWatch(VideoClient& client, const std::string& job_id, int64_t after_seq,
             const std::string& output, const GlobalFlags& g, Interrupts& interrupts) {
  std::optional<OutputFile> out;
  if (!output.empty()) {
    out.emplace();
    if (absl::Status st = out->Open(output); !st.ok()) {
      std::cerr << "sparsevid: " << st.message() << "\n";
      return kExitOutputError;
    }
  }
  v1::WatchRequest req;
  req.set_job_id(job_id);
  req.set_after_seq(output.empty() ? after_seq : 0);
  req.set_include_chunks(!output.empty());
  ProgressView view(ViewMode(g), std::cerr, std::cout);
  FollowResult result;
  CallHandle handle;
  interrupts.OnInterrupt([&handle] { handle.Cancel(); });
  absl::Status rpc =
      client.Watch(req, Follower(view, out ? &*out : nullptr, result), Timeout(g), &handle);
  return FinishFollow(rpc, result, out ? &*out : nullptr, view, g, interrupts.fired(),
                      /*detach=*/true);
}

int RunFetch(VideoClient& client, const std::string& job_id, const std::string& output,
             const GlobalFlags& g, Interrupts& interrupts) {
  absl::StatusOr<v1::Job> job = client.GetJob(job_id);
  if (!job.ok()) return ReportRpcError(job.status(), g);
  OutputFile out;
  if (absl::Status st = out.Open(output); !st.ok()) {
    std::cerr << "sparsevid: " << st.message() << "\n";
    return kExitOutputError;
  }
  v1::FetchResultRequest req;
  req.set_job_id(job_id);
  CallHandle handle;
  interrupts.OnInterrupt([&handle] { handle.Cancel(); });
  absl::Status write_error;
  absl::Status rpc = client.FetchResult(
      req,
      [&](const v1::Chunk& c) {
        write_error = out.Write(c.offset(), c.data());
        return write_error.ok();
      },
      Timeout(g), &handle);
  if (interrupts.fired()) return kExitInterrupted;
  if (!write_error.ok()) {
    std::cerr << "sparsevid: output: " << write_error.message() << "\n";
    return kExitOutputError;
  }
  if (!rpc.ok()) return ReportRpcError(rpc, g);
  if (absl::Status st = out.Commit(job->stats().output_bytes(), job->stats().sha256()); !st.ok()) {
    std::cerr << "sparsevid: output: " << st.message() << "\n";
    return kExitOutputError;
  }
  if (g.json) {
    nlohmann::json j = {{"job_id", job_id}, {"path", output}, {"bytes", out.bytes()}};
    std::cout << j.dump() << "\n";
  } else {
    std::cerr << "wrote " << output << " (" << out.bytes() << " bytes)\n";
  }
  return kExitOk;
}

void PrintJob(const v1::Job& job, const GlobalFlags& g) {
  if (g.json) {
    std::cout << ToJson(job) << "\n";
    return;
  }
  std::cout << absl::StrFormat("%s  %-9s", job.job_id(), StateName(job.state()));
  if (job.state() == v1::JOB_STATE_QUEUED) {
    std::cout << absl::StrFormat("  position %d", job.queue_position());
  } else if (job.state() == v1::JOB_STATE_RUNNING) {
    std::cout << absl::StrFormat("  %s %d/%d", job.stage(), job.step(), job.total_steps());
  } else if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    std::cout << absl::StrFormat("  %d frames, %d bytes", job.stats().frames(),
                                 job.stats().output_bytes());
  } else if (!job.status_message().empty()) {
    std::cout << "  " << job.status_message();
  }
  std::cout << "  \"" << job.request().prompt() << "\"\n";
}

int Main(int argc, char** argv) {
  // First, before gRPC starts threads: SIGINT is then handled on one thread.
  Interrupts interrupts;

  CLI::App app("sparsevid: text-to-video client");
  app.footer(kExitCodeHelp);
  app.require_subcommand(1);
  GlobalFlags g;
  const char* env_address = std::getenv("SPARSEVID_ADDRESS");
  g.address = env_address != nullptr ? env_address : "localhost:50051";
  app.add_option("-a,--address", g.address, "front host:port (env SPARSEVID_ADDRESS)")
      ->capture_default_str();
  app.add_option("--api-key-file", g.api_key_file,
                 "file holding the API key to send (else env SPARSEVID_API_KEY, the key itself, "
                 "or SPARSEVID_API_KEY_FILE)");
  app.add_flag("--tls", g.tls.enabled, "connect with TLS, verifying the front with the system's CAs");
  app.add_option("--tls-ca-file", g.tls.ca_file,
                 "connect with TLS, verifying the front with this PEM CA");
  app.add_option("--tls-cert-file", g.tls.cert_file,
                 "client certificate (PEM) for a front that requires one (mTLS)");
  app.add_option("--tls-key-file", g.tls.key_file, "private key of --tls-cert-file");
  app.add_flag("--json", g.json, "machine-readable output: one JSON object per line on stdout");
  app.add_option("--timeout", g.timeout_seconds,
                 "seconds before the call (and a job it follows) is abandoned; 0 = none")
      ->check(CLI::NonNegativeNumber);

  RequestFlags gen_flags, submit_flags;
  std::string output;
  auto* generate = app.add_subcommand("generate", "generate a video and write it to a file");
  AddRequestOptions(generate, gen_flags);
  generate->add_option("-o,--output", output, "output MP4 path")->required();

  auto* submit = app.add_subcommand("submit", "queue a job and print its id");
  AddRequestOptions(submit, submit_flags);

  std::string job_id, reason, watch_output, fetch_output;
  int64_t after_seq = 0;
  auto* watch = app.add_subcommand("watch", "follow a job's events until it ends");
  watch->add_option("job_id", job_id, "job id")->required();
  watch->add_option("--after-seq", after_seq, "replay events after this sequence number");
  watch->add_option("-o,--output", watch_output, "also write the video to this path");

  auto* status = app.add_subcommand("status", "show a job");
  status->add_option("job_id", job_id, "job id")->required();

  auto* cancel = app.add_subcommand("cancel", "cancel a queued or running job");
  cancel->add_option("job_id", job_id, "job id")->required();
  cancel->add_option("--reason", reason, "reason recorded with the job");

  auto* fetch = app.add_subcommand("fetch", "download a finished job's video");
  fetch->add_option("job_id", job_id, "job id")->required();
  fetch->add_option("-o,--output", fetch_output, "output MP4 path")->required();

  std::string state_filter;
  int page_size = 0;
  auto* list = app.add_subcommand("list", "list jobs");
  list->add_option("--state", state_filter, "queued | running | succeeded | failed | cancelled")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed", "cancelled"}));
  list->add_option("--page-size", page_size, "jobs per page (1..1000)");

  std::string health_service;
  double health_wait = 0;
  auto* health = app.add_subcommand("health", "check grpc.health.v1 of a front or worker");
  health->add_option("--service", health_service, "service name (default: the whole server)");
  health->add_option("--wait", health_wait, "poll up to this many seconds until SERVING")
      ->check(CLI::NonNegativeNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(g.tls);
  if (!credentials.ok()) {
    std::cerr << "sparsevid: " << credentials.status().message() << "\n";
    return kExitUsage;
  }
  if (health->parsed()) {
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(health_wait * 1000));
    absl::StatusOr<HealthStatus> st =
        wait.count() > 0
            ? WaitForServing(g.address, health_service, wait, *credentials)
            : CheckHealth(g.address, health_service, std::chrono::seconds(5), *credentials);
    if (!st.ok()) return ReportRpcError(st.status(), g);
    if (g.json) {
      std::cout << nlohmann::json({{"address", g.address}, {"status", HealthStatusName(*st)}})
                       .dump()
                << "\n";
    } else {
      std::cout << HealthStatusName(*st) << "\n";
    }
    return *st == HealthStatus::kServing ? kExitOk : kExitUnavailable;
  }

  ClientOptions options;
  options.address = g.address;
  absl::StatusOr<std::string> api_key =
      ResolveApiKey(g.api_key_file, "SPARSEVID_API_KEY", "SPARSEVID_API_KEY_FILE");
  if (!api_key.ok()) {
    std::cerr << "sparsevid: " << api_key.status().message() << "\n";
    return kExitUsage;
  }
  options.api_key = *api_key;
  options.credentials = *credentials;
  VideoClient client(options);

  if (generate->parsed()) return RunGenerate(client, gen_flags, output, g, interrupts);
  if (watch->parsed()) return RunWatch(client, job_id, after_seq, watch_output, g, interrupts);
  if (fetch->parsed()) return RunFetch(client, job_id, fetch_output, g, interrupts);
  if (submit->parsed()) {
    absl::StatusOr<v1::Job> job = client.Submit(BuildRequest(submit_flags));
    if (!job.ok()) return ReportRpcError(job.status(), g);
    if (g.json) {
      std::cout << ToJson(*job) << "\n";
    } else {
      std::cout << job->job_id() << "\n";
    }
    return kExitOk;
  }
  if (status->parsed()) {
    absl::StatusOr<v1::Job> job = client.GetJob(job_id);
    if (!job.ok()) return ReportRpcError(job.status(), g);
    PrintJob(*job, g);
    return kExitOk;
  }
  if (cancel->parsed()) {
    absl::StatusOr<v1::Job> job = client.CancelJob(job_id, reason);
    if (!job.ok()) return ReportRpcError(job.status(), g);
    PrintJob(*job, g);
    return kExitOk;
  }
  if (list->parsed()) {
    v1::ListJobsRequest req;
    req.set_page_size(page_size);
    const std::pair<const char*, v1::JobState> states[] = {
        {"queued", v1::JOB_STATE_QUEUED},       {"running", v1::JOB_STATE_RUNNING},
        {"succeeded", v1::JOB_STATE_SUCCEEDED}, {"failed", v1::JOB_STATE_FAILED},
        {"cancelled", v1::JOB_STATE_CANCELLED}};
    for (const auto& [name, value] : states) {
      if (state_filter == name) req.set_state(value);
    }
    do {
      absl::StatusOr<v1::ListJobsResponse> resp = client.ListJobs(req);
      if (!resp.ok()) return ReportRpcError(resp.status(), g);
      for (const v1::Job& job : resp->jobs()) PrintJob(job, g);
      req.set_page_token(resp->next_page_token());
    } while (!req.page_token().empty());
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace sparsevid::client

int main(int argc, char** argv) { return sparsevid::client::Main(argc, argv); }
