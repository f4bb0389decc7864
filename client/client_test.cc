// Unit tests of the client library pieces that need no server: output file
// checks, exit-code mapping, progress rendering and the unreachable-front
// message. End-to-end CLI runs live in tests/integration.
#include <openssl/sha.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "client/exit_codes.h"
#include "client/output_file.h"
#include "client/progress_view.h"
#include "client/video_client.h"
#include "common/api_key_file.h"
#include "gtest/gtest.h"

namespace sparsevid::client {
namespace {

std::string Sha256Hex(const std::string& data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  std::string hex;
  char buf[3];
  for (unsigned char c : d) {
    snprintf(buf, sizeof(buf), "%02x", c);
    hex += buf;
  }
  return hex;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

TEST(OutputFileTest, CommitsVerifiedFileUnderFinalName) {
  const std::string path = testing::TempDir() + "/ok.mp4";
  std::remove(path.c_str());
  OutputFile f;
  ASSERT_TRUE(f.Open(path).ok());
  ASSERT_TRUE(f.Write(0, "hello ").ok());
  ASSERT_TRUE(f.Write(6, "world").ok());
  EXPECT_FALSE(Exists(path)) << "only the .part file exists before commit";
  ASSERT_TRUE(f.Commit(11, Sha256Hex("hello world")).ok());
  EXPECT_EQ(ReadAll(path), "hello world");
  EXPECT_FALSE(Exists(path + ".part"));
}

TEST(OutputFileTest, RejectsGapsSizeAndChecksumMismatch) {
  const std::string path = testing::TempDir() + "/bad.mp4";
  std::remove(path.c_str());
  {
    OutputFile f;
    ASSERT_TRUE(f.Open(path).ok());
    ASSERT_TRUE(f.Write(0, "abc").ok());
    EXPECT_EQ(f.Write(5, "x").code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_FALSE(Exists(path + ".part")) << "an aborted download leaves nothing behind";
  {
    OutputFile f;
    ASSERT_TRUE(f.Open(path).ok());
    ASSERT_TRUE(f.Write(0, "abc").ok());
    EXPECT_EQ(f.Commit(4, "").code(), absl::StatusCode::kDataLoss);
  }
  {
    OutputFile f;
    ASSERT_TRUE(f.Open(path).ok());
    ASSERT_TRUE(f.Write(0, "abc").ok());
    absl::Status st = f.Commit(3, Sha256Hex("abd"));
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(st.message().find("SHA-256"), std::string::npos);
  }
  EXPECT_FALSE(Exists(path));
  OutputFile f;
  EXPECT_FALSE(f.Open(testing::TempDir() + "/no/such/dir/x.mp4").ok());
}

TEST(ExitCodesTest, DistinctPerOutcome) {
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kUnavailable), kExitUnavailable);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kInvalidArgument), kExitInvalidArgument);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kResourceExhausted), kExitQueueFull);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kNotFound), kExitNotFound);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kDeadlineExceeded), kExitDeadlineExceeded);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kAlreadyExists), kExitServerError);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kUnauthenticated), kExitNotAuthorized);
  EXPECT_EQ(ExitCodeForRpcError(absl::StatusCode::kPermissionDenied), kExitNotAuthorized);
  EXPECT_EQ(ExitCodeForJobFailure(absl::StatusCode::kInternal), kExitJobFailed);
  EXPECT_EQ(ExitCodeForJobFailure(absl::StatusCode::kDeadlineExceeded), kExitDeadlineExceeded);
}

TEST(ApiKeySourceTest, FileThenEnvironmentThenNone) {
  const std::string dir = testing::TempDir();
  const std::string good = dir + "/client.key", empty = dir + "/empty.key",
                    spaced = dir + "/spaced.key";
  std::ofstream(good) << "  key-0123456789abcdef\n";
  std::ofstream(empty) << "\n \n";
  std::ofstream(spaced) << "two words\n";
  unsetenv("SV_TEST_KEY");
  unsetenv("SV_TEST_KEY_FILE");
  EXPECT_EQ(*ResolveApiKey("", "SV_TEST_KEY", "SV_TEST_KEY_FILE"), "");
  EXPECT_EQ(*ResolveApiKey(good, "SV_TEST_KEY", "SV_TEST_KEY_FILE"), "key-0123456789abcdef");
  setenv("SV_TEST_KEY_FILE", good.c_str(), 1);
  EXPECT_EQ(*ResolveApiKey("", "SV_TEST_KEY", "SV_TEST_KEY_FILE"), "key-0123456789abcdef");
  setenv("SV_TEST_KEY", " from-env-0123456789 ", 1);  // the key itself wins over the file var
  EXPECT_EQ(*ResolveApiKey("", "SV_TEST_KEY", "SV_TEST_KEY_FILE"), "from-env-0123456789");
  // A key gRPC would refuse as a header value (and abort on, printing it) is
  // an error naming the variable, never the key.
  for (const char* bad : {"key\x01-0123456789", "two\nlines-0123456789", "ключ-0123456789"}) {
    setenv("SV_TEST_KEY", bad, 1);
    auto k = ResolveApiKey("", "SV_TEST_KEY", "SV_TEST_KEY_FILE");
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_NE(k.status().message().find("SV_TEST_KEY"), absl::string_view::npos);
    EXPECT_EQ(k.status().message().find("0123456789"), absl::string_view::npos);
  }
  unsetenv("SV_TEST_KEY");
  unsetenv("SV_TEST_KEY_FILE");
  for (const std::string& bad : {dir + "/missing.key", empty, spaced}) {
    auto k = ResolveApiKey(bad, "SV_TEST_KEY", "SV_TEST_KEY_FILE");
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_NE(k.status().message().find(bad), absl::string_view::npos) << k.status();
    EXPECT_EQ(k.status().message().find("two words"), absl::string_view::npos);
  }
  EXPECT_EQ(BearerValue("abc"), "Bearer abc");
}

TEST(ProgressViewTest, PlainLinesNameQueueStageStepAndEta) {
  std::ostringstream human, machine;
  ProgressView view(ProgressView::Mode::kLines, human, machine);
  v1::JobEvent e;
  e.set_job_id("j-1");
  e.mutable_queued()->set_position(2);
  e.mutable_queued()->set_depth(3);
  e.mutable_queued()->set_eta_seconds(75);
  view.OnEvent(e);
  e.mutable_progress()->set_stage("denoise");
  e.mutable_progress()->set_step(3);
  e.mutable_progress()->set_total(10);
  e.mutable_progress()->set_eta_seconds(12);
  view.OnEvent(e);
  EXPECT_EQ(human.str(),
            "job j-1 queued: position 2 of 3, starts in 1m15s\n"
            "denoise 3/10  0.00s/step  density 0.000  ETA 12s\n");
  EXPECT_EQ(machine.str(), "");
}

TEST(ProgressViewTest, JsonReplacesChunkPayloadBySize) {
  v1::JobEvent e;
  e.set_job_id("j-2");
  e.set_seq(7);
  e.mutable_chunk()->set_offset(0);
  e.mutable_chunk()->set_data(std::string(1000, 'x'));
  const std::string json = ProgressView::EventJson(e);
  EXPECT_EQ(json.find("xxxx"), std::string::npos);
  EXPECT_NE(json.find("\"chunk_bytes\":1000"), std::string::npos);
  EXPECT_NE(json.find("\"job_id\":\"j-2\""), std::string::npos);
}

TEST(VideoClientTest, UnreachableFrontIsReportedClearlyAndQuickly) {
  ClientOptions opt;
  opt.address = "127.0.0.1:1";  // nothing listens on port 1
  opt.connect_timeout = std::chrono::milliseconds(300);
  VideoClient client(opt);
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<v1::Job> job = client.GetJob("j-1");
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(job.status().message().find("not reachable"), std::string::npos) << job.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

}  // namespace
}  // namespace sparsevid::client
