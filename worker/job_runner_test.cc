// JobRunner against a scripted Pipeline test double (this file only): the
// runner's own logic — event order, chunk layout, cancellation between
// steps, deadlines, slots — is what is under test. The real engine is
// exercised by the integration tests.
#include "worker/job_runner.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

extern "C" {
#include <libavutil/log.h>
}

namespace sparsevid::worker {
namespace {

using namespace std::chrono_literals;

class ScriptedPipeline : public engine::Pipeline {
 public:
  ScriptedPipeline() {
    info_.name = "scripted";
    info_.device = "cpu";
    info_.default_width = 64;
    info_.default_height = 48;
    info_.default_frames = 5;
    info_.default_fps = 8;
    info_.default_steps = 4;
  }
  const engine::ModelInfo& info() const override { return info_; }
  absl::Status Validate(const engine::GenerateParams& p) const override {
    if (p.prompt.empty()) return absl::InvalidArgumentError("prompt must not be empty");
    return absl::OkStatus();
  }
  absl::StatusOr<engine::GenerateStats> Generate(const engine::GenerateParams& p,
                                                 const engine::ProgressCallback& progress,
                                                 const engine::FrameSink& sink,
                                                 const engine::CancelToken& cancel) override {
    engine::ProgressEvent e;
    e.stage = engine::Stage::kTextEncode;
    e.step = e.total = 1;
    progress(e);
    for (int s = 1; s <= p.steps; ++s) {
      if (absl::Status st = cancel.Check(); !st.ok()) return st;
      std::this_thread::sleep_for(step_time);
      e.stage = engine::Stage::kDenoise;
      e.step = s;
      e.total = p.steps;
      e.step_seconds = std::chrono::duration<double>(step_time).count();
      e.attention_density = 0.25;
      e.layer_density = {0.2, 0.3};
      progress(e);
    }
    const int frames = p.num_frames + frame_count_error;
    for (int f = 0; f < frames; f += 2) {
      engine::FrameBatch b;
      b.width = p.width;
      b.height = p.height;
      b.first_frame = f;
      for (int k = f; k < std::min(frames, f + 2); ++k) {
        std::vector<uint8_t> rgb(static_cast<size_t>(p.width) * p.height * 3);
        for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7 + k * 31);
        b.frames.push_back(std::move(rgb));
      }
      if (absl::Status st = sink(b); !st.ok()) return st;
    }
    engine::GenerateStats stats;
    stats.frames = frames;
    stats.video_tokens = 123;
    last_seed = p.seed;
    return stats;
  }

  engine::ModelInfo info_;
  std::chrono::milliseconds step_time{5};
  int frame_count_error = 0;
  uint64_t last_seed = 0;
};

// Collects events per job and lets a test wait for the final one.
class EventLog {
 public:
  void Add(const std::string& job_id, v1::JobEvent e) {
    std::lock_guard<std::mutex> lock(mu_);
    e.set_job_id(job_id);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  // Waits for a final event of job_id; returns it (or an empty event).
  v1::JobEvent WaitFinal(const std::string& job_id, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mu_);
    v1::JobEvent found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& e : events_) {
        if (e.job_id() == job_id && (e.has_completed() || e.has_failed() || e.has_cancelled())) {
          found = e;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  bool WaitProgress(const std::string& job_id, int step, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& e : events_) {
        if (e.job_id() == job_id && e.has_progress() && e.progress().stage() == "denoise" &&
            e.progress().step() >= step) {
          return true;
        }
      }
      return false;
    });
  }
  std::vector<v1::JobEvent> Of(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<v1::JobEvent> out;
    for (const auto& e : events_) {
      if (e.job_id() == job_id) out.push_back(e);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::JobEvent> events_;
};

class JobRunnerTest : public testing::Test {
 protected:
  void MakeRunner(int capacity) {
    JobRunnerOptions opt;
    opt.worker_id = "w-test";
    opt.capacity = capacity;
    runner_ = std::make_unique<JobRunner>(
        &pipeline_, &metrics_, opt,
        [this](const std::string& id, v1::JobEvent e) { log_.Add(id, std::move(e)); },
        [this](int free) { last_free_.store(free); });
  }
  static v1::Assign MakeAssign(const std::string& id, int steps = 4) {
    v1::Assign a;
    a.set_job_id(id);
    a.set_attempt(1);
    a.mutable_request()->set_prompt("a red circle");
    a.mutable_request()->set_steps(steps);
    a.mutable_request()->set_seed(42);
    return a;
  }

  // The Prometheus text exposition of the runner's metrics.
  std::string MetricsText() const {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }
  static bool Has(const std::string& text, const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
  }

  ScriptedPipeline pipeline_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics_{registry_};
  EventLog log_;
  std::atomic<int> last_free_{-1};
  std::unique_ptr<JobRunner> runner_;
};

std::string RunCommand(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST_F(JobRunnerTest, CompletedJobStreamsProgressThenChunksThenStats) {
  MakeRunner(1);
  ASSERT_TRUE(runner_->Submit(MakeAssign("j1")).ok());
  v1::JobEvent final_event = log_.WaitFinal("j1");
  ASSERT_TRUE(final_event.has_completed()) << final_event.DebugString();
  std::vector<v1::JobEvent> events = log_.Of("j1");
  std::string mp4;
  int denoise_steps = 0;
  bool saw_chunk = false, saw_last = false;
  for (const auto& e : events) {
    if (e.has_progress()) {
      EXPECT_FALSE(saw_chunk) << "the scripted engine reports all steps before frames";
      if (e.progress().stage() == "denoise") {
        ++denoise_steps;
        EXPECT_EQ(e.progress().total(), 4);
        EXPECT_DOUBLE_EQ(e.progress().attention_density(), 0.25);
        EXPECT_GE(e.progress().eta_seconds(), 0);
      }
    } else if (e.has_chunk()) {
      saw_chunk = true;
      EXPECT_FALSE(saw_last) << "no chunk after the last one";
      EXPECT_EQ(e.chunk().offset(), static_cast<int64_t>(mp4.size()));
      EXPECT_LE(e.chunk().data().size(), 1u << 20);
      mp4 += e.chunk().data();
      saw_last = e.chunk().last();
    }
  }
  EXPECT_EQ(denoise_steps, 4);
  EXPECT_TRUE(saw_last);
  const v1::JobStats& s = final_event.completed().stats();
  EXPECT_EQ(s.frames(), 5);
  EXPECT_EQ(s.output_bytes(), static_cast<int64_t>(mp4.size()));
  EXPECT_EQ(s.seed(), 42u);
  EXPECT_EQ(s.worker(), "w-test");
  EXPECT_EQ(s.video_tokens(), 123);
  std::string path = testing::TempDir() + "/runner.mp4";
  std::ofstream(path, std::ios::binary) << mp4;
  EXPECT_EQ(RunCommand("sha256sum " + path).substr(0, 64), s.sha256());
  EXPECT_EQ(RunCommand("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                       "stream=width,height,r_frame_rate,nb_read_frames -of csv=p=0 " + path),
            "64,48,8/1,5");
  EXPECT_TRUE(runner_->WaitIdle(5s));
  EXPECT_EQ(runner_->free_slots(), 1);
  EXPECT_NEAR(runner_->step_seconds_estimate(), 0.005, 1e-9);
  const std::string m = MetricsText();
  EXPECT_TRUE(Has(m, "sparsevid_worker_jobs_total{outcome=\"succeeded\"} 1")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_frames_generated_total 5")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_tokens_generated_total 123")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_denoise_step_seconds_count 4")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_attention_density_ratio 0.25")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_layer_attention_density_ratio{layer=\"1\"} 0.3")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_video_encode_seconds_count 1")) << m;
  EXPECT_TRUE(Has(m, "sparsevid_worker_slots{state=\"busy\"} 0")) << m;
}

TEST_F(JobRunnerTest, CancelStopsRunningJobAtNextStep) {
  pipeline_.step_time = 50ms;
  MakeRunner(1);
  ASSERT_TRUE(runner_->Submit(MakeAssign("slow", 200)).ok());
  ASSERT_TRUE(log_.WaitProgress("slow", 2));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(runner_->Cancel("slow", "user asked"));
  v1::JobEvent final_event = log_.WaitFinal("slow");
  const auto latency = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(final_event.has_cancelled()) << final_event.DebugString();
  EXPECT_EQ(final_event.cancelled().reason(), "user asked");
  EXPECT_LT(latency, 500ms) << "cancel must act at the next step (50 ms)";
  EXPECT_TRUE(Has(MetricsText(), "sparsevid_worker_jobs_total{outcome=\"cancelled\"} 1"));
  EXPECT_TRUE(runner_->WaitIdle(5s));
  EXPECT_EQ(last_free_.load(), 1);
  for (const auto& e : log_.Of("slow")) EXPECT_FALSE(e.has_chunk());
}

TEST_F(JobRunnerTest, DeadlineFailsJobWithDeadlineExceeded) {
  pipeline_.step_time = 20ms;
  MakeRunner(1);
  v1::Assign a = MakeAssign("late", 500);
  const double now = std::chrono::duration<double>(
      std::chrono::system_clock::now().time_since_epoch()).count();
  a.set_deadline_unix_seconds(now + 0.2);
  ASSERT_TRUE(runner_->Submit(a).ok());
  v1::JobEvent final_event = log_.WaitFinal("late");
  ASSERT_TRUE(final_event.has_failed()) << final_event.DebugString();
  EXPECT_EQ(final_event.failed().code(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(Has(MetricsText(), "sparsevid_worker_jobs_total{outcome=\"deadline_exceeded\"} 1"));
}

TEST_F(JobRunnerTest, SubmitNeverBlocksAndRespectsCapacity) {
  pipeline_.step_time = 50ms;
  MakeRunner(2);
  ASSERT_TRUE(runner_->Submit(MakeAssign("a", 100)).ok());
  ASSERT_TRUE(log_.WaitProgress("a", 1));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(runner_->Submit(MakeAssign("b")).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20ms);
  EXPECT_EQ(runner_->Submit(MakeAssign("c")).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(runner_->Submit(MakeAssign("a")).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(runner_->Submit(MakeAssign("")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner_->free_slots(), 0);
  // A waiting job is dropped at once, without touching the pipeline.
  EXPECT_TRUE(runner_->Cancel("b", "changed my mind"));
  EXPECT_TRUE(log_.WaitFinal("b", 100ms).has_cancelled());
  EXPECT_EQ(runner_->free_slots(), 1);
  EXPECT_FALSE(runner_->Cancel("nope", "unknown"));
  runner_->CancelAll("test over");
  EXPECT_TRUE(log_.WaitFinal("a").has_cancelled());
}

TEST_F(JobRunnerTest, InvalidParamsFailWithoutOutput) {
  MakeRunner(1);
  v1::Assign a = MakeAssign("bad");
  a.mutable_request()->clear_prompt();
  ASSERT_TRUE(runner_->Submit(a).ok());
  v1::JobEvent final_event = log_.WaitFinal("bad");
  ASSERT_TRUE(final_event.has_failed());
  EXPECT_EQ(final_event.failed().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(final_event.failed().message().find("prompt"), std::string::npos);
  EXPECT_EQ(log_.Of("bad").size(), 1u);
}

TEST_F(JobRunnerTest, WrongFrameCountFromEngineIsAnInternalError) {
  pipeline_.frame_count_error = -2;
  MakeRunner(1);
  ASSERT_TRUE(runner_->Submit(MakeAssign("short")).ok());
  v1::JobEvent final_event = log_.WaitFinal("short");
  ASSERT_TRUE(final_event.has_failed()) << final_event.DebugString();
  EXPECT_EQ(final_event.failed().code(), static_cast<int>(absl::StatusCode::kInternal));
}

TEST_F(JobRunnerTest, UnsetSeedIsDrawnAndReported) {
  MakeRunner(1);
  v1::Assign a = MakeAssign("seedless");
  a.mutable_request()->clear_seed();
  ASSERT_TRUE(runner_->Submit(a).ok());
  v1::JobEvent final_event = log_.WaitFinal("seedless");
  ASSERT_TRUE(final_event.has_completed());
  EXPECT_EQ(final_event.completed().stats().seed(), pipeline_.last_seed);
}

}  // namespace
}  // namespace sparsevid::worker

int main(int argc, char** argv) {
  av_log_set_level(AV_LOG_ERROR);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
