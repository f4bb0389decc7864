// Ending streams whose API key has left the keys file: each stream's
// callback runs once after a reload that removed its key (a rotated key
// counts as removed, even under the same name), never after the stream is
// gone, and only as often as the keys file is checked anyway (no file read
// per call). The gRPC streams that use it are in front_auth_grpc_test.cc.
#include "server/revocable_streams.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

constexpr char kAlice[] = "alice-key-0123456789abcdef";
constexpr char kAliceNew[] = "alice-rotated-0123456789";
constexpr char kBob[] = "bob-key-0123456789abcdef";

class RevocableStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sparsevid_revoke");
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/api-keys.yaml";
    Write(kAlice, "client");
    auto store = ApiKeyStore::Open(path_, absl::Seconds(2), clock_.AsClock());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auth_ = std::make_unique<RequestAuth>(store_.get(), nullptr);
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  // Bob always; Alice with `alice_key` (none if empty). Replaced through a
  // rename, as a Kubernetes Secret update does.
  void Write(const std::string& alice_key, const std::string& alice_role,
             int alice_max_active = 0) {
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp);
      out << "keys:\n  - {name: bob, key: \"" << kBob << "\", role: client}\n";
      if (!alice_key.empty()) {
        out << "  - {name: alice, key: \"" << alice_key << "\", role: " << alice_role
            << ", max_active_jobs: " << alice_max_active << "}\n";
      }
    }
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }
  ApiKey Key(const char* secret) {
    auto k = store_->Lookup(secret);
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *k : ApiKey{};
  }
  // Past the store's reload interval, so the next check re-reads a changed file.
  void NextPeriod() { clock_.Advance(absl::Seconds(3)); }

  std::string dir_, path_;
  testing::FakeClock clock_;
  std::unique_ptr<ApiKeyStore> store_;
  std::unique_ptr<RequestAuth> auth_;
};

TEST_F(RevocableStreamsTest, StreamsOfARemovedKeyEndOnceAndOthersRunOn) {
  RevocableStreams streams(auth_.get());
  int alice_ended = 0, bob_ended = 0;
  const ApiKey alice = Key(kAlice), bob = Key(kBob);
  const uint64_t a1 = streams.Add(alice, [&] { ++alice_ended; });
  const uint64_t a2 = streams.Add(alice, [&] { ++alice_ended; });
  const uint64_t b = streams.Add(bob, [&] { ++bob_ended; });
  EXPECT_EQ(streams.size(), 3);
  EXPECT_EQ(streams.EndRevoked(), 0);

  Write("", "client");
  // Cheap: nothing is read before the store's reload interval has passed.
  EXPECT_EQ(streams.EndRevoked(), 0);
  EXPECT_EQ(alice_ended, 0);
  NextPeriod();
  EXPECT_EQ(streams.EndRevoked(), 2);
  EXPECT_EQ(alice_ended, 2);
  EXPECT_EQ(bob_ended, 0);
  NextPeriod();
  EXPECT_EQ(streams.EndRevoked(), 0);  // once per stream
  EXPECT_EQ(alice_ended, 2);

  // The key back does not revive anything; removed streams are forgotten.
  streams.Remove(a1);
  streams.Remove(a2);
  streams.Remove(a2);  // twice is harmless
  EXPECT_EQ(streams.size(), 1);
  streams.Remove(b);
  EXPECT_EQ(streams.size(), 0);
  EXPECT_EQ(bob_ended, 0);
}

TEST_F(RevocableStreamsTest, ARotatedKeyEndsTheOldKeysStreamsEvenUnderTheSameName) {
  RevocableStreams streams(auth_.get());
  int old_ended = 0, new_ended = 0;
  streams.Add(Key(kAlice), [&] { ++old_ended; });
  // Rotation with an overlap is not possible under one name (names are
  // unique in the file), so the old key goes when the new one comes.
  Write(kAliceNew, "client");
  NextPeriod();
  streams.Add(Key(kAliceNew), [&] { ++new_ended; });
  EXPECT_EQ(streams.EndRevoked(), 1);
  EXPECT_EQ(old_ended, 1);
  EXPECT_EQ(new_ended, 0);

  // A new quota keeps the stream; a new role for the same key ends it (its
  // Caller was made from the old role).
  Write(kAliceNew, "client", /*alice_max_active=*/3);
  NextPeriod();
  EXPECT_EQ(streams.EndRevoked(), 0);
  Write(kAliceNew, "admin");
  NextPeriod();
  EXPECT_EQ(streams.EndRevoked(), 1);
  EXPECT_EQ(new_ended, 1);
}

TEST_F(RevocableStreamsTest, ARemovedStreamIsNeverCalledAndRemoveWaitsForARunningCall) {
  RevocableStreams streams(auth_.get());
  std::atomic<bool> removed_called{false}, entered{false}, left{false};
  const uint64_t gone = streams.Add(Key(kAlice), [&] { removed_called = true; });
  const uint64_t slow = streams.Add(Key(kAlice), [&] {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    left = true;
  });
  streams.Remove(gone);
  Write("", "client");
  NextPeriod();
  std::thread revoker([&] { EXPECT_EQ(streams.EndRevoked(), 1); });
  while (!entered) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  streams.Remove(slow);  // the stream would be deleted after this
  EXPECT_TRUE(left.load());
  revoker.join();
  EXPECT_FALSE(removed_called.load());
}

TEST_F(RevocableStreamsTest, AuthOffRevokesNothing) {
  const RequestAuth off(nullptr, nullptr);
  RevocableStreams streams(&off);
  int ended = 0;
  streams.Add(ApiKey{}, [&] { ++ended; });
  EXPECT_EQ(streams.EndRevoked(), 0);
  RevocableStreams none(nullptr);
  none.Add(ApiKey{}, [&] { ++ended; });
  EXPECT_EQ(none.EndRevoked(), 0);
  EXPECT_EQ(ended, 0);
}

TEST(KeyRevokedErrorTest, NamesTheKeyNameNeverTheKey) {
  const absl::Status s = KeyRevokedError("alice");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(s.message().find("API key 'alice' was revoked"), absl::string_view::npos)
      << s.message();
}

}  // namespace
}  // namespace sparsevid::front
