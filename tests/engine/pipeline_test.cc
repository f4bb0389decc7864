// Pipeline API on the tiny TEST FIXTURE model: load, validation of every
// bad-input class, progress, cancellation, determinism.
#include "worker/engine/pipeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/engine/fixtures/tiny_model.h"

namespace sparsevid::engine {
namespace {

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(::testing::TempDir()) + "/tiny_model_" +
                           std::to_string(::getpid()));
    ASSERT_TRUE(testing::WriteTinyModel(*dir_).ok());
    EngineOptions o;
    o.threads = 2;
    auto p = Pipeline::Load(*dir_, o);
    ASSERT_TRUE(p.ok()) << p.status();
    pipeline_ = p->release();
  }
  static void TearDownTestSuite() {
    delete pipeline_;
    pipeline_ = nullptr;
    std::system(("rm -rf " + *dir_).c_str());
    delete dir_;
  }
  static GenerateParams Good() {
    GenerateParams p;
    p.prompt = "a red circle moving left on a black background";
    p.seed = 7;
    return p;
  }
  static void ExpectInvalid(const GenerateParams& p, const std::string& field) {
    const absl::Status st = pipeline_->Validate(p);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field << ": " << st;
    EXPECT_NE(std::string(st.message()).find(field), std::string::npos) << st;
  }
  static std::string* dir_;
  static Pipeline* pipeline_;
};
std::string* PipelineTest::dir_ = nullptr;
Pipeline* PipelineTest::pipeline_ = nullptr;

TEST_F(PipelineTest, InfoComesFromTheConfig) {
  const ModelInfo& i = pipeline_->info();
  EXPECT_EQ(i.name, "tiny-random-test-fixture");
  EXPECT_EQ(i.spatial_multiple, 16);
  EXPECT_EQ(i.temporal_stride, 4);
  EXPECT_EQ(i.default_width, 64);
  EXPECT_EQ(i.max_frames, 33);
  EXPECT_EQ(i.max_prompt_tokens, 64);
  EXPECT_EQ(i.default_attention, AttentionMode::kSla2);
  EXPECT_EQ(i.default_sampler, SamplerKind::kUniPC);
}

TEST_F(PipelineTest, ValidateAcceptsDefaults) { EXPECT_TRUE(pipeline_->Validate(Good()).ok()); }

TEST_F(PipelineTest, ValidateRejectsEveryBadInputClass) {
  GenerateParams p = Good();
  p.width = 70;  ExpectInvalid(p, "width");
  p = Good(); p.width = -16;  ExpectInvalid(p, "width");
  p = Good(); p.width = 512;  ExpectInvalid(p, "width");
  p = Good(); p.height = 40;  ExpectInvalid(p, "height");
  p = Good(); p.height = 272; ExpectInvalid(p, "height");
  p = Good(); p.num_frames = 8;  ExpectInvalid(p, "num_frames");
  p = Good(); p.num_frames = 37; ExpectInvalid(p, "num_frames");
  p = Good(); p.num_frames = -3; ExpectInvalid(p, "num_frames");
  p = Good(); p.steps = -1;  ExpectInvalid(p, "steps");
  p = Good(); p.steps = 201; ExpectInvalid(p, "steps");
  p = Good(); p.guidance_scale = -0.5f; ExpectInvalid(p, "guidance_scale");
  p = Good(); p.guidance_scale = std::nanf(""); ExpectInvalid(p, "guidance_scale");
  p = Good(); p.shift = 0.0f; ExpectInvalid(p, "shift");
  p = Good(); p.keep_ratio = 1.5f; ExpectInvalid(p, "keep_ratio");
  p = Good(); p.sampler = static_cast<SamplerKind>(42); ExpectInvalid(p, "sampler");
  p = Good(); p.attention = static_cast<AttentionMode>(42); ExpectInvalid(p, "attention");
  p = Good(); p.prompt = "";  ExpectInvalid(p, "prompt");
  p = Good(); p.prompt = " \t\n "; ExpectInvalid(p, "prompt");
  p = Good();
  p.prompt.clear();
  for (int i = 0; i < 40; ++i) p.prompt += "a red circle ";
  ExpectInvalid(p, "prompt");
  p = Good();
  for (int i = 0; i < 40; ++i) p.negative_prompt += "blurry static ";
  ExpectInvalid(p, "negative_prompt");
}

TEST_F(PipelineTest, GenerateStreamsFramesAndProgress) {
  GenerateParams p = Good();
  p.steps = 2;
  int denoise_events = 0, text_events = 0, vae_events = 0, frames = 0, next_frame = 0;
  double vae_step_sum = 0;
  auto st = pipeline_->Generate(
      p,
      [&](const ProgressEvent& e) {
        if (e.stage == Stage::kDenoise) {
          ++denoise_events;
          EXPECT_EQ(e.step, denoise_events);
          EXPECT_EQ(e.total, 2);
          EXPECT_GT(e.step_seconds, 0);
          EXPECT_GT(e.attention_seconds, 0);  // timed spans of real work
          EXPECT_LT(e.attention_seconds, e.step_seconds);
          EXPECT_EQ(e.layer_density.size(), 2u);
          EXPECT_GT(e.attention_density, 0);
          EXPECT_LT(e.attention_density, 1.0);  // SLA2 keeps a fraction
        } else if (e.stage == Stage::kTextEncode) {
          ++text_events;
        } else {
          ++vae_events;
          EXPECT_EQ(e.step, vae_events);
          vae_step_sum += e.step_seconds;  // per chunk, not cumulative
        }
      },
      [&](const FrameBatch& b) {
        EXPECT_EQ(b.width, 64);
        EXPECT_EQ(b.height, 64);
        EXPECT_EQ(b.first_frame, next_frame);
        next_frame += static_cast<int>(b.frames.size());
        for (const auto& f : b.frames) EXPECT_EQ(f.size(), 64u * 64u * 3u);
        frames += static_cast<int>(b.frames.size());
        return absl::OkStatus();
      },
      CancelToken());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(text_events, 1);
  EXPECT_EQ(denoise_events, 2);
  EXPECT_EQ(vae_events, 3);  // one per latent frame
  EXPECT_LE(vae_step_sum, st->vae_decode_seconds * 1.0001);
  EXPECT_EQ(frames, 9);
  EXPECT_EQ(st->frames, 9);
  EXPECT_EQ(st->video_tokens, 3 * 4 * 4);
  EXPECT_GT(st->peak_bytes, 0);
}

std::vector<std::vector<uint8_t>> RunFrames(Pipeline& pipeline, GenerateParams p) {
  std::vector<std::vector<uint8_t>> out;
  auto st = pipeline.Generate(p, nullptr,
                              [&](const FrameBatch& b) {
                                for (const auto& f : b.frames) out.push_back(f);
                                return absl::OkStatus();
                              },
                              CancelToken());
  EXPECT_TRUE(st.ok()) << st.status();
  return out;
}

TEST_F(PipelineTest, SameSeedSameFramesOtherSeedOtherFrames) {
  GenerateParams p = Good();
  p.steps = 2;
  const auto a = RunFrames(*pipeline_, p);
  const auto b = RunFrames(*pipeline_, p);
  ASSERT_EQ(a.size(), 9u);
  EXPECT_EQ(a, b);
  p.seed = 8;
  EXPECT_NE(RunFrames(*pipeline_, p), a);
}

TEST_F(PipelineTest, EverySamplerAndAttentionModeRuns) {
  for (auto mode : {AttentionMode::kDense, AttentionMode::kSla2, AttentionMode::kSla2LowBit}) {
    for (auto sampler : {SamplerKind::kEuler, SamplerKind::kUniPC}) {
      GenerateParams p = Good();
      p.steps = 2;
      p.attention = mode;
      p.sampler = sampler;
      p.guidance_scale = 1.0f;  // unconditional branch skipped
      EXPECT_EQ(RunFrames(*pipeline_, p).size(), 9u);
    }
  }
}

TEST_F(PipelineTest, CancelMidDenoiseStopsWithCancelled) {
  GenerateParams p = Good();
  p.steps = 6;
  CancelToken cancel;
  int steps_seen = 0, frames = 0;
  auto st = pipeline_->Generate(
      p,
      [&](const ProgressEvent& e) {
        if (e.stage == Stage::kDenoise && ++steps_seen == 2) cancel.Cancel();
      },
      [&](const FrameBatch& b) {
        frames += static_cast<int>(b.frames.size());
        return absl::OkStatus();
      },
      cancel);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(steps_seen, 2);
  EXPECT_EQ(frames, 0);
}

TEST_F(PipelineTest, CancelBetweenVaeChunks) {
  GenerateParams p = Good();
  p.steps = 1;
  CancelToken cancel;
  int batches = 0;
  auto st = pipeline_->Generate(p, nullptr,
                                [&](const FrameBatch&) {
                                  ++batches;
                                  cancel.Cancel();
                                  return absl::OkStatus();
                                },
                                cancel);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(batches, 1);
}

TEST_F(PipelineTest, ExpiredDeadlineIsDeadlineExceeded) {
  CancelToken cancel;
  cancel.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  auto st = pipeline_->Generate(Good(), nullptr, nullptr, cancel);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(PipelineTest, FrameSinkErrorStopsGeneration) {
  GenerateParams p = Good();
  p.steps = 1;
  auto st = pipeline_->Generate(p, nullptr,
                                [](const FrameBatch&) { return absl::DataLossError("disk full"); },
                                CancelToken());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDataLoss);
}

// Device selection: malformed names are INVALID_ARGUMENT; "cuda" without
// CUDA in the build is INVALID_ARGUMENT, with CUDA but no usable GPU
// FAILED_PRECONDITION, each with a message naming the problem.
TEST_F(PipelineTest, DeviceSelection) {
  auto load = [](const std::string& device) {
    EngineOptions o;
    o.device = device;
    o.threads = 1;
    return Pipeline::Load(*dir_, o);
  };
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda0", "CPU"}) {
    auto p = load(bad);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad << ": " << p.status();
    EXPECT_NE(std::string(p.status().message()).find(bad), std::string::npos) << p.status();
  }
  auto cuda = load("cuda");
#if defined(SPARSEVID_HAVE_CUDA_BACKEND)
  if (cuda.ok()) {
    EXPECT_EQ((*cuda)->info().device.rfind("cuda:0 (", 0), 0u) << (*cuda)->info().device;
    auto far = load("cuda:4096");
    EXPECT_EQ(far.status().code(), absl::StatusCode::kInvalidArgument) << far.status();
    EXPECT_NE(std::string(far.status().message()).find("cuda:4096"), std::string::npos);
  } else {
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition) << cuda.status();
    EXPECT_NE(std::string(cuda.status().message()).find("no usable CUDA device"),
              std::string::npos)
        << cuda.status();
  }
#else
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kInvalidArgument) << cuda.status();
  EXPECT_NE(std::string(cuda.status().message()).find("no CUDA support"), std::string::npos)
      << cuda.status();
#endif
}

TEST(PipelineLoad, MissingDirectoryIsNotFound) {
  auto p = Pipeline::Load("/nonexistent/model", EngineOptions());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sparsevid::engine
