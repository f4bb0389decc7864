// Service load generator: starts one sparsevid-front and N workers on
// loopback (tiny TEST FIXTURE model by default) or targets a running front,
// then runs many concurrent Generate streams and prints a table:
//   front overhead per request (client end-to-end minus the job's queue and
//   run time, and time to the first event), events/s, chunk throughput,
//   cancel latency, and errors by code (RESOURCE_EXHAUSTED is expected when
//   the streams outnumber the queue; those streams retry after the delay the
//   front suggests).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/health_check.h"
#include "client/video_client.h"
#include "common/status.h"
#include "tests/integration/child_process.h"

namespace sparsevid::bench {
namespace {

using Clock = std::chrono::steady_clock;
using integration::ChildProcess;

struct Options {
  int streams = 200;
  int workers = 2;
  int queue_capacity = 64;
  int steps = 2, width = 32, height = 32, frames = 5;
  double cancel_fraction = 0.1;
  int max_attempts = 200;  // per stream, counting RESOURCE_EXHAUSTED retries
  double timeout_seconds = 600;
  std::string front;  // existing front; empty = start our own
  bool journal = false;  // the started front keeps a job journal (state.dir)
  std::string front_bin = SPARSEVID_FRONT_BIN, worker_bin = SPARSEVID_WORKER_BIN;
  std::string model_dir = SPARSEVID_TINY_MODEL_DIR;
};

struct StreamResult {
  bool completed = false, cancelled = false;
  absl::StatusCode error = absl::StatusCode::kOk;
  std::string error_message;
  int rejections = 0;
  int64_t events = 0, chunks = 0, chunk_bytes = 0;
  double first_event = -1, overhead = -1, e2e = -1, cancel_latency = -1;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

v1::GenerateRequest MakeRequest(const Options& o, int index, bool to_cancel) {
  v1::GenerateRequest r;
  r.set_prompt(absl::StrCat("bench stream ", index, " a red circle moving left"));
  r.set_seed(static_cast<uint64_t>(index));
  if (to_cancel) {
    // Long enough to be cancelled mid-denoise.
    r.set_width(256);
    r.set_height(256);
    r.set_num_frames(17);
    r.set_steps(200);
  } else {
    r.set_width(o.width);
    r.set_height(o.height);
    r.set_num_frames(o.frames);
    r.set_steps(o.steps);
  }
  return r;
}

StreamResult RunStream(client::VideoClient& c, const Options& o, int index, bool to_cancel) {
  StreamResult res;
  const v1::GenerateRequest req = MakeRequest(o, index, to_cancel);
  const auto deadline = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    const auto t0 = Clock::now();
    Clock::time_point cancel_sent{};
    double queue_s = 0, run_s = 0;
    bool got_final = false;
    absl::Status st = c.Generate(
        req,
        [&](const v1::JobEvent& e) {
          ++res.events;
          if (res.first_event < 0) res.first_event = Seconds(Clock::now() - t0);
          if (e.has_chunk()) {
            ++res.chunks;
            res.chunk_bytes += static_cast<int64_t>(e.chunk().data().size());
          }
          if (to_cancel && cancel_sent == Clock::time_point{} && e.has_progress() &&
              e.progress().stage() == "denoise") {
            cancel_sent = Clock::now();
            (void)c.CancelJob(e.job_id(), "bench cancel");
          }
          if (e.has_completed()) {
            res.completed = true;
            queue_s = e.completed().stats().queue_seconds();
            run_s = e.completed().stats().run_seconds();
          }
          if (e.has_cancelled()) {
            res.cancelled = true;
            if (cancel_sent != Clock::time_point{}) {
              res.cancel_latency = Seconds(Clock::now() - cancel_sent);
            }
          }
          if (e.has_failed()) {
            res.error = static_cast<absl::StatusCode>(e.failed().code());
            res.error_message = e.failed().message();
          }
          got_final = e.has_completed() || e.has_cancelled() || e.has_failed();
          return !got_final;
        },
        deadline);
    if (st.code() == absl::StatusCode::kResourceExhausted && !got_final) {
      ++res.rejections;
      res.first_event = -1;
      const auto delay = GetRetryDelay(st).value_or(absl::Milliseconds(200));
      std::this_thread::sleep_for(std::chrono::microseconds(absl::ToInt64Microseconds(delay)));
      continue;
    }
    if (!got_final && !st.ok()) {
      res.error = st.code();
      res.error_message = std::string(st.message());
    }
    res.e2e = Seconds(Clock::now() - t0);
    if (res.completed) res.overhead = res.e2e - queue_s - run_s;
    return res;
  }
  res.error = absl::StatusCode::kResourceExhausted;
  res.error_message = "still rejected after max attempts";
  return res;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app("sparsevid service benchmark: concurrent Generate streams");
  app.add_option("--streams", o.streams, "concurrent client streams")->capture_default_str();
  app.add_option("--workers", o.workers, "workers to start")->capture_default_str();
  app.add_option("--queue-capacity", o.queue_capacity, "front queue capacity")
      ->capture_default_str();
  app.add_option("--steps", o.steps, "denoise steps per job")->capture_default_str();
  app.add_option("--width", o.width)->capture_default_str();
  app.add_option("--height", o.height)->capture_default_str();
  app.add_option("--frames", o.frames)->capture_default_str();
  app.add_option("--cancel-fraction", o.cancel_fraction, "share of streams that cancel")
      ->capture_default_str();
  app.add_option("--front", o.front, "use this running front instead of starting one");
  app.add_flag("--journal", o.journal,
               "the started front keeps its job journal and result files in a temporary state.dir");
  app.add_option("--model-dir", o.model_dir, "model served by the started workers")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_seconds, "deadline per stream, seconds")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string dir = "/tmp/sparsevid-bench-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return 1;
  ChildProcess front;
  std::vector<ChildProcess> workers;
  std::string address = o.front;
  if (address.empty()) {
    std::vector<std::string> args = {o.front_bin, "--server.listen", "127.0.0.1:0",
                                     "--metrics.listen", "", "--log.level", "warn",
                                     "--queue.capacity", std::to_string(o.queue_capacity)};
    if (o.journal) args.insert(args.end(), {"--state.dir", dir + "/state"});
    auto f = ChildProcess::Start(args, dir + "/front");
    if (!f.ok()) return 1;
    front = std::move(*f);
    auto ready = front.WaitReady(std::chrono::seconds(30));
    if (!ready.ok()) {
      std::fprintf(stderr, "front: %s\n", std::string(ready.status().message()).c_str());
      return 1;
    }
    address = absl::StrCat("127.0.0.1:", ready->value("grpc_port", 0));
    for (int i = 0; i < o.workers; ++i) {
      auto w = ChildProcess::Start(
          {o.worker_bin, "--front.address", address, "--model.dir", o.model_dir, "--worker.id",
           absl::StrCat("bench-worker-", i), "--health.address", "127.0.0.1:0",
           "--metrics.address", "", "--engine.threads", "1", "--log.level", "warn"},
          absl::StrCat(dir, "/worker", i));
      if (!w.ok()) return 1;
      auto wr = w->WaitReady(std::chrono::seconds(60));
      if (!wr.ok()) {
        std::fprintf(stderr, "worker: %s\n", std::string(wr.status().message()).c_str());
        return 1;
      }
      auto linked = client::WaitForServing(
          absl::StrCat("127.0.0.1:", wr->value("health_port", 0)), "", std::chrono::seconds(20));
      if (!linked.ok() || *linked != client::HealthStatus::kServing) return 1;
      workers.push_back(std::move(*w));
    }
  }

  client::ClientOptions copt;
  copt.address = address;
  client::VideoClient c(copt);
  const int cancel_every =
      o.cancel_fraction > 0 ? std::max(1, static_cast<int>(1.0 / o.cancel_fraction)) : 0;
  std::vector<StreamResult> results(static_cast<size_t>(o.streams));
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int i = 0; i < o.streams; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      const bool to_cancel = cancel_every > 0 && i % cancel_every == cancel_every - 1;
      results[static_cast<size_t>(i)] = RunStream(c, o, i, to_cancel);
    });
  }
  while (ready.load() < o.streams) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto start = Clock::now();
  go.store(true);
  for (auto& t : threads) t.join();
  const double wall = Seconds(Clock::now() - start);

  std::vector<double> overhead, first_event, e2e, cancel;
  int64_t events = 0, chunks = 0, bytes = 0;
  int completed = 0, cancelled = 0, rejections = 0;
  std::map<std::string, int> errors;
  for (const auto& r : results) {
    events += r.events;
    chunks += r.chunks;
    bytes += r.chunk_bytes;
    rejections += r.rejections;
    completed += r.completed ? 1 : 0;
    cancelled += r.cancelled ? 1 : 0;
    if (r.overhead >= 0) overhead.push_back(r.overhead);
    if (r.first_event >= 0) first_event.push_back(r.first_event);
    if (r.e2e >= 0) e2e.push_back(r.e2e);
    if (r.cancel_latency >= 0) cancel.push_back(r.cancel_latency);
    if (r.error != absl::StatusCode::kOk) {
      ++errors[absl::StrCat(absl::StatusCodeToString(r.error), ": ", r.error_message)];
    }
  }
  auto ms = [](double s) { return s < 0 ? std::string("n/a") : absl::StrFormat("%.2f", s * 1000.0); };
  std::printf("\nsparsevid service benchmark: %d streams, %d workers, queue capacity %d, "
              "job %dx%dx%d frames, %d steps, %.0f%% cancelled\n",
              o.streams, o.front.empty() ? o.workers : -1, o.queue_capacity, o.width, o.height,
              o.frames, o.steps, o.cancel_fraction * 100);
  std::printf("%-44s %s\n", "metric", "value");
  std::printf("%-44s %.2f\n", "wall time (s)", wall);
  std::printf("%-44s %d / %d\n", "jobs completed / cancelled", completed, cancelled);
  std::printf("%-44s %.1f\n", "jobs completed per second", completed / wall);
  std::printf("%-44s %s / %s\n", "front overhead p50 / p99 (ms)",
              ms(Percentile(overhead, 0.5)).c_str(), ms(Percentile(overhead, 0.99)).c_str());
  std::printf("%-44s %s / %s\n", "time to first event p50 / p99 (ms)",
              ms(Percentile(first_event, 0.5)).c_str(), ms(Percentile(first_event, 0.99)).c_str());
  std::printf("%-44s %s / %s\n", "end-to-end p50 / p99 (ms)", ms(Percentile(e2e, 0.5)).c_str(),
              ms(Percentile(e2e, 0.99)).c_str());
  std::printf("%-44s %lld (%.0f/s)\n", "events received", static_cast<long long>(events),
              events / wall);
  std::printf("%-44s %lld chunks, %.2f MiB (%.2f MiB/s)\n", "chunks received",
              static_cast<long long>(chunks), bytes / 1048576.0, bytes / 1048576.0 / wall);
  std::printf("%-44s %s / %s (n=%zu)\n", "cancel latency p50 / p99 (ms)",
              ms(Percentile(cancel, 0.5)).c_str(), ms(Percentile(cancel, 0.99)).c_str(),
              cancel.size());
  std::printf("%-44s %d\n", "RESOURCE_EXHAUSTED rejections (retried)", rejections);
  int unexpected = 0;
  for (const auto& [what, n] : errors) {
    std::printf("%-44s %d  %s\n", "ERROR", n, what.c_str());
    unexpected += n;
  }
  std::printf("%-44s %d\n", "unexpected errors", unexpected);

  for (auto& w : workers) w.Signal(SIGTERM);
  for (auto& w : workers) w.WaitExit(std::chrono::seconds(30));
  if (!o.front.empty()) return unexpected == 0 ? 0 : 1;
  front.Signal(SIGTERM);
  front.WaitExit(std::chrono::seconds(30));
  return unexpected == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sparsevid::bench

int main(int argc, char** argv) { return sparsevid::bench::Main(argc, argv); }
