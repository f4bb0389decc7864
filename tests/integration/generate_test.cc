// End to end through real processes: front + worker (tiny TEST FIXTURE
// model) + gRPC client / CLI. Videos are checked with ffprobe and ffmpeg.
#include <sys/wait.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/job_events.h"
#include "tests/integration/running_service_test.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

class GenerateTest : public RunningServiceTest {};

TEST_F(GenerateTest, GenerateStreamsEventsAndAPlayableVideoAsRequested) {
  client::VideoClient c = h_.Client();
  v1::GenerateRequest req = ServiceHarness::SmallRequest();
  req.set_width(48);
  req.set_height(32);
  req.set_num_frames(9);
  req.set_fps(12);
  FollowedJob job = GenerateAll(c, req, 120s);
  ASSERT_TRUE(job.rpc.ok()) << job.rpc;
  const v1::JobEvent* fin = job.final_event();
  ASSERT_NE(fin, nullptr);
  ASSERT_TRUE(fin->has_completed()) << fin->DebugString();
  // Order: Queued, Started, progress..., chunks..., Completed; seq 1, 2, 3...
  ASSERT_GE(job.events.size(), 5u);
  EXPECT_TRUE(job.events.front().has_queued());
  EXPECT_EQ(job.Count(v1::JobEvent::kStarted), 1);
  EXPECT_GE(job.Count(v1::JobEvent::kChunk), 1);
  for (size_t i = 0; i < job.events.size(); ++i) {
    EXPECT_EQ(job.events[i].seq(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(job.events[i].job_id(), job.job_id);
  }
  int denoise = 0;
  for (const auto& e : job.events) {
    if (e.has_progress() && e.progress().stage() == "denoise") {
      ++denoise;
      EXPECT_EQ(e.progress().total(), 2);
      EXPECT_GT(e.progress().step_seconds(), 0);
      EXPECT_GT(e.progress().attention_density(), 0);
      EXPECT_LE(e.progress().attention_density(), 1);
    }
  }
  EXPECT_EQ(denoise, 2);
  const v1::JobStats& s = fin->completed().stats();
  const std::string path = h_.dir() + "/e2e.mp4";
  WriteFile(path, job.video);
  EXPECT_EQ(ProbeVideo(path), "h264,48,32,yuv420p,12/1,9");
  EXPECT_EQ(DecodeErrors(path), "");
  EXPECT_EQ(s.frames(), 9);
  EXPECT_EQ(s.output_bytes(), static_cast<int64_t>(job.video.size()));
  EXPECT_EQ(s.sha256(), Sha256OfFile(path));
  EXPECT_EQ(s.seed(), 7u);
  EXPECT_EQ(s.worker(), "it-worker-0");
  EXPECT_EQ(s.attempts(), 1);
}

TEST_F(GenerateTest, SameSeedGivesTheSameVideo) {
  client::VideoClient c = h_.Client();
  FollowedJob a = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  FollowedJob b = GenerateAll(c, ServiceHarness::SmallRequest(), 120s);
  ASSERT_TRUE(a.final_event() && a.final_event()->has_completed());
  ASSERT_TRUE(b.final_event() && b.final_event()->has_completed());
  EXPECT_EQ(a.final_event()->completed().stats().sha256(),
            b.final_event()->completed().stats().sha256());
}

TEST_F(GenerateTest, WatchAfterDisconnectReplaysFromSeqAndFetchResultResumes) {
  client::VideoClient c = h_.Client();
  v1::GenerateRequest req = ServiceHarness::SmallRequest();
  req.set_detach(true);
  req.set_steps(30);
  // Read until the first progress event, then drop the stream.
  FollowedJob first;
  first.rpc = c.Generate(
      req,
      [&](const v1::JobEvent& e) {
        first.job_id = e.job_id();
        first.events.push_back(e);
        return !e.has_progress();
      },
      60s);
  ASSERT_FALSE(first.events.empty());
  const int64_t last_seq = first.events.back().seq();
  // Detached: the job goes on without a client.
  FollowedJob rest = WatchAll(c, first.job_id, last_seq, /*include_chunks=*/true, 120s);
  ASSERT_TRUE(rest.final_event() && rest.final_event()->has_completed())
      << rest.rpc << " events " << rest.events.size();
  ASSERT_FALSE(rest.events.empty());
  EXPECT_EQ(rest.events.front().seq(), last_seq + 1) << "replay continues right after after_seq";
  for (size_t i = 1; i < rest.events.size(); ++i) {
    EXPECT_EQ(rest.events[i].seq(), rest.events[i - 1].seq() + 1);
  }
  const v1::JobStats stats = rest.final_event()->completed().stats();
  // Watch without chunks and from 0 replays everything but the chunks.
  FollowedJob replay = WatchAll(c, first.job_id, 0, /*include_chunks=*/false, 30s);
  EXPECT_EQ(replay.Count(v1::JobEvent::kChunk), 0);
  EXPECT_TRUE(replay.events.front().has_queued());

  // FetchResult: whole file, then resumed from an offset.
  std::string whole, tail;
  v1::FetchResultRequest fr;
  fr.set_job_id(first.job_id);
  fr.set_chunk_bytes(1000);
  absl::Status st = c.FetchResult(
      fr,
      [&](const v1::Chunk& ch) {
        EXPECT_EQ(ch.offset(), static_cast<int64_t>(whole.size()));
        EXPECT_LE(ch.data().size(), 1000u);
        whole += ch.data();
        return true;
      },
      30s);
  ASSERT_TRUE(st.ok()) << st;
  const std::string path = h_.dir() + "/fetched.mp4";
  WriteFile(path, whole);
  EXPECT_EQ(static_cast<int64_t>(whole.size()), stats.output_bytes());
  EXPECT_EQ(Sha256OfFile(path), stats.sha256());
  EXPECT_EQ(ProbeVideo(path), "h264,32,32,yuv420p,10/1,5");
  fr.set_offset(100);
  fr.set_chunk_bytes(0);
  st = c.FetchResult(fr, [&](const v1::Chunk& ch) { tail += ch.data(); return true; }, 30s);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(tail, whole.substr(100));

  v1::FetchResultRequest missing;
  missing.set_job_id("j-does-not-exist");
  EXPECT_EQ(c.FetchResult(missing, [](const v1::Chunk&) { return true; }, 10s).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(GenerateTest, CliGeneratesVideoAndReportsOutcomesWithExitCodes) {
  const std::string out = h_.dir() + "/cli.mp4";
  CommandResult r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "generate",
                                "a blue square", "-o", out, "--width", "32", "--height", "32",
                                "--frames", "5", "--fps", "8", "--steps", "2", "--seed", "3"},
                               120s, h_.dir() + "/cli1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("denoise 2/2"), std::string::npos) << "plain progress lines off a TTY";
  EXPECT_EQ(ProbeVideo(out), "h264,32,32,yuv420p,8/1,5");

  // Invalid request: exit 4, message names the field, no file left behind.
  const std::string bad_out = h_.dir() + "/bad.mp4";
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "generate", "x", "-o", bad_out,
                  "--width", "33"},
                 30s, h_.dir() + "/cli2");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("width"), std::string::npos) << r.err;
  EXPECT_FALSE(std::ifstream(bad_out).good());
  EXPECT_FALSE(std::ifstream(bad_out + ".part").good());

  // JSON mode: one object per line, ending with the completed event.
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "--json", "submit", "json please",
                  "--width", "32", "--height", "32", "--frames", "5", "--steps", "2"},
                 30s, h_.dir() + "/cli3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json job = nlohmann::json::parse(r.out);
  const std::string id = job.value("job_id", "");
  ASSERT_FALSE(id.empty()) << r.out;
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "--json", "watch", id}, 120s,
                 h_.dir() + "/cli4");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"completed\""), std::string::npos) << r.out;
  const std::string fetched = h_.dir() + "/cli-fetch.mp4";
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "fetch", id, "-o", fetched}, 60s,
                 h_.dir() + "/cli5");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ProbeVideo(fetched), "h264,32,32,yuv420p,8/1,5") << "fps 0 = the model default (8)";
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "status", id}, 30s, h_.dir() + "/cli6");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("succeeded"), std::string::npos) << r.out;
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "list"}, 30s, h_.dir() + "/cli7");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  r = RunCommand({Paths::Cli(), "-a", h_.front_address(), "status", "j-nope"}, 30s,
                 h_.dir() + "/cli8");
  EXPECT_EQ(r.exit_code, 8) << r.err;

  // Nothing listening: exit 3 with a clear message.
  r = RunCommand({Paths::Cli(), "-a", "127.0.0.1:1", "status", id}, 30s, h_.dir() + "/cli9");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("not reachable"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace sparsevid::integration
