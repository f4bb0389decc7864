// API-key auth with the real processes: a front with auth.api_keys_file, a
// worker holding a worker key, and the CLI. A client key generates a video
// end to end; no key or another client's key are refused with their own exit
// codes; a worker with a client key is kept off the front.
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/health_check.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/child_process.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_file_ = h_.dir() + "/api-keys.yaml";
    WriteFile(keys_file_,
              "keys:\n"
              "  - {name: alice, key: \"alice-key-0123456789abcdef\", role: client}\n"
              "  - {name: bob, key: \"bob-key-0123456789abcdef\", role: client}\n"
              "  - {name: it-worker, key: \"worker-key-0123456789abcdef\", role: worker}\n");
    WriteFile(h_.dir() + "/alice.key", "alice-key-0123456789abcdef\n");
    WriteFile(h_.dir() + "/bob.key", "bob-key-0123456789abcdef\n");
    WriteFile(h_.dir() + "/worker.key", "worker-key-0123456789abcdef\n");
    ASSERT_TRUE(h_.StartFront({"--auth.api_keys_file", keys_file_}).ok()) << h_.front().Stderr();
  }
  CommandResult Cli(std::vector<std::string> args, const std::string& log) {
    std::vector<std::string> argv = {Paths::Cli(), "-a", h_.front_address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, 120s, h_.dir() + "/" + log);
  }
  ServiceHarness h_;
  std::string keys_file_;
};

TEST_F(AuthTest, ClientKeyGeneratesAVideoAndOthersAreRefused) {
  auto w = h_.StartWorker({"--front.api_key_file", h_.dir() + "/worker.key"});
  ASSERT_TRUE(w.ok()) << w.status() << h_.worker(0).Stderr();

  const std::string out = h_.dir() + "/alice.mp4";
  CommandResult r = Cli({"--api-key-file", h_.dir() + "/alice.key", "generate", "a red circle",
                         "-o", out, "--width", "32", "--height", "32", "--frames", "5", "--fps",
                         "8", "--steps", "2", "--request-id", "alice-1"},
                        "gen");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ProbeVideo(out), "h264,32,32,yuv420p,8/1,5");

  // The job is Alice's: she lists it, Bob sees nothing of it.
  r = Cli({"--api-key-file", h_.dir() + "/alice.key", "--json", "list"}, "list-alice");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json listed = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(listed.value("owner", ""), "alice") << r.out;
  const std::string id = listed.value("job_id", "");
  ASSERT_FALSE(id.empty()) << r.out;
  r = Cli({"--api-key-file", h_.dir() + "/bob.key", "list"}, "list-bob");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find(id), std::string::npos) << r.out;
  r = Cli({"--api-key-file", h_.dir() + "/bob.key", "status", id}, "status-bob");
  EXPECT_EQ(r.exit_code, 8) << r.err;  // NOT_FOUND, as for an unknown id

  // No key: exit 11 with the fix in the message; no job queued.
  r = Cli({"submit", "x", "--width", "32", "--height", "32", "--frames", "5"}, "nokey");
  EXPECT_EQ(r.exit_code, 11) << r.err;
  EXPECT_NE(r.err.find("missing API key"), std::string::npos) << r.err;
  // A key from the environment works like the flag; an unreadable key file
  // is a usage error naming the file.
  r = RunCommand({"/usr/bin/env", "SPARSEVID_API_KEY=not-a-key-0123456789abc", Paths::Cli(), "-a",
                  h_.front_address(), "list"},
                 30s, h_.dir() + "/badenv");
  EXPECT_EQ(r.exit_code, 11) << r.err;
  EXPECT_NE(r.err.find("invalid API key"), std::string::npos) << r.err;
  r = RunCommand({"/usr/bin/env", "SPARSEVID_API_KEY=alice-key-0123456789abcdef", Paths::Cli(),
                  "-a", h_.front_address(), "status", id},
                 30s, h_.dir() + "/goodenv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"--api-key-file", h_.dir() + "/no-such.key", "list"}, "nofile");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no-such.key"), std::string::npos) << r.err;

}

TEST_F(AuthTest, WorkerWithAClientKeyIsKeptOff) {
  auto w = h_.StartWorker({"--front.api_key_file", h_.dir() + "/alice.key"},
                          /*wait_linked=*/false);
  ASSERT_TRUE(w.ok()) << w.status();
  // It never becomes SERVING, and both sides say why.
  auto health = client::WaitForServing(absl::StrCat("127.0.0.1:", h_.worker_health_port(*w)),
                                       "", 3s);
  EXPECT_TRUE(!health.ok() || *health != client::HealthStatus::kServing);
  for (int i = 0; i < 100 && h_.worker(*w).Stderr().find("refused this worker's API key") ==
                                 std::string::npos;
       ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(h_.worker(*w).Stderr().find("refused this worker's API key"), std::string::npos)
      << h_.worker(*w).Stderr();
  EXPECT_NE(h_.front().Stderr().find("worker stream refused"), std::string::npos);
  // A worker with no key at all fails the same way.
  auto anon = h_.StartWorker({}, /*wait_linked=*/false);
  ASSERT_TRUE(anon.ok());
  health = client::WaitForServing(absl::StrCat("127.0.0.1:", h_.worker_health_port(*anon)), "",
                                  2s);
  EXPECT_TRUE(!health.ok() || *health != client::HealthStatus::kServing);
}

TEST_F(AuthTest, FrontRefusesToStartWithABadKeysFile) {
  ServiceHarness other;
  const std::string bad = other.dir() + "/bad.yaml";
  WriteFile(bad, "keys:\n  - {name: a, key: short, role: client}\n");
  absl::Status s = other.StartFront({"--auth.api_keys_file", bad});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(other.front().Stderr().find("keys[0].key"), std::string::npos)
      << other.front().Stderr();
  EXPECT_EQ(other.front().WaitExit(10s).value_or(-1) >> 8, 2);
}

}  // namespace
}  // namespace sparsevid::integration
