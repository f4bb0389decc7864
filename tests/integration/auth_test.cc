// API-key auth with the real processes: a front with auth.api_keys_file, a
// worker holding a worker key, and the CLI. A client key generates a video
// end to end; no key or another client's key are refused with their own exit
// codes; a worker with a client key is kept off the front; a client's open
// watch ends (exit 11) once its key is removed from the keys file.
#include <cstdio>
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
    // Keys re-read every 0.2 s, so a revocation test need not wait long.
    ASSERT_TRUE(
        h_.StartFront({"--auth.api_keys_file", keys_file_, "--auth.reload_seconds", "0.2"}).ok())
        << h_.front().Stderr();
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

TEST_F(AuthTest, RemovingAClientKeyEndsItsOpenWatch) {
  // Jobs that stay queued (no worker), and a CLI watch on each.
  auto submit = [&](const char* who) {
    CommandResult r = Cli({"--api-key-file", h_.dir() + "/" + who + ".key", "submit", "waits",
                           "--width", "32", "--height", "32", "--frames", "5"},
                          std::string("submit-") + who);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  };
  auto watch = [&](const char* who, const std::string& id) {
    auto p = ChildProcess::Start({Paths::Cli(), "-a", h_.front_address(), "--api-key-file",
                                  h_.dir() + "/" + who + ".key", "--json", "watch", id},
                                 h_.dir() + "/watch-" + who);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : ChildProcess();
  };
  const std::string alices = submit("alice"), bobs = submit("bob");
  ASSERT_FALSE(alices.empty());
  ASSERT_FALSE(bobs.empty());
  ChildProcess alice = watch("alice", alices), bob = watch("bob", bobs);
  // Both streams are open once they have printed the queued event.
  for (int i = 0; i < 100 && (alice.Stdout().empty() || bob.Stdout().empty()); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_NE(alice.Stdout().find(alices), std::string::npos) << alice.Stderr();
  ASSERT_NE(bob.Stdout().find(bobs), std::string::npos) << bob.Stderr();

  // Alice's key leaves the file (replaced by a rename, as a Secret is).
  WriteFile(keys_file_ + ".tmp",
            "keys:\n"
            "  - {name: bob, key: \"bob-key-0123456789abcdef\", role: client}\n"
            "  - {name: it-worker, key: \"worker-key-0123456789abcdef\", role: worker}\n");
  ASSERT_EQ(std::rename((keys_file_ + ".tmp").c_str(), keys_file_.c_str()), 0);
  // Within about one reload period (0.2 s) after the reload; 10 s for a busy box.
  const std::optional<int> status = alice.WaitExit(10s);
  ASSERT_TRUE(status.has_value()) << "watch still running after its key was removed";
  EXPECT_EQ(*status >> 8, 11) << alice.Stderr();
  EXPECT_NE(alice.Stderr().find("API key 'alice' was revoked"), std::string::npos)
      << alice.Stderr();
  EXPECT_EQ(alice.Stderr().find("alice-key-0123456789abcdef"), std::string::npos);
  EXPECT_NE(h_.front().Stderr().find("stream ended: its API key was revoked"), std::string::npos);
  // Bob's watch runs on, also through several more reload periods (0.2 s).
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(bob.running()) << bob.Stderr();
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
