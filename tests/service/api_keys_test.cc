// The front's API keys file: parsing and validation (every error names the
// file and the entry, never the secret), lookup, and reloading a changed
// file without a restart (a bad change keeps the previous keys).
#include "server/api_keys.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/service/engine_test_util.h"

namespace sparsevid::front {
namespace {

constexpr char kAliceKey[] = "alice-key-0123456789abcdef";
constexpr char kGood[] = R"(keys:
  - name: alice
    key: "alice-key-0123456789abcdef"
    role: client
    max_active_jobs: 3
  - name: ops.team
    key: "ops-key-0123456789abcdef"
    role: admin
  - name: gpu-worker
    key: "worker-key-0123456789abcdef"
    role: worker
  - name: bob
    key_sha256: "cfffcf49d8b485b308f1bbeedaf9a2cea8a07d01d1a6bb29d07e5fafd4c89a71"
    role: client
)";

TEST(ApiKeysParseTest, ReadsNamesRolesAndLimits) {
  auto keys = ParseApiKeys(kGood, "keys.yaml");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 4u);
  EXPECT_EQ((*keys)[0].name, "alice");
  EXPECT_EQ((*keys)[0].role, ApiKeyRole::kClient);
  EXPECT_EQ((*keys)[0].max_active_jobs, 3);
  EXPECT_EQ((*keys)[1].role, ApiKeyRole::kAdmin);
  EXPECT_EQ((*keys)[1].max_active_jobs, 0);
  EXPECT_EQ((*keys)[2].role, ApiKeyRole::kWorker);
  // Plain keys are kept only as their digest; a key_sha256 entry is that digest.
  EXPECT_EQ((*keys)[0].sha256, Sha256(kAliceKey));
  EXPECT_EQ((*keys)[3].sha256, Sha256("bob-key-0123456789abcdef"));
  EXPECT_EQ((*keys)[3].sha256.size(), 32u);
}

TEST(ApiKeysParseTest, EveryBadFileIsRejectedNamingTheEntryAndNeverTheSecret) {
  const std::string key = "k: \"secret-value-0123456789\"";
  struct Case {
    const char* text;
    const char* must_name;
  };
  const Case cases[] = {
      {"keys: [", "not valid YAML"},
      {"- a\n- b\n", "'keys' list"},
      {"keys: {}\n", "keys: must be a list"},
      {"keys: []\n", "keys: is empty"},
      {"keys: [1]\n", "keys[0]: must be a mapping"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\"}\n", "keys[0].role: missing"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: root}\n",
       "keys[0].role: must be client, admin or worker, got 'root'"},
      {"keys:\n  - {name: a, key: short, role: client}\n", "keys[0].key: must be 16..256"},
      {"keys:\n  - {name: a, key: \"secret value 0123456789\", role: client}\n",
       "keys[0].key: must be"},
      {"keys:\n  - {name: \"a b\", key: \"secret-value-0123456789\", role: client}\n",
       "keys[0].name: must be 1..64"},
      {"keys:\n  - {key: \"secret-value-0123456789\", role: client}\n", "keys[0].name"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client, quota: 3}\n",
       "keys[0].quota: unknown field"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client, "
       "max_active_jobs: -1}\n",
       "keys[0].max_active_jobs: must be in [0, 1000000], got -1"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client, "
       "max_active_jobs: many}\n",
       "keys[0]: bad value"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client}\n"
       "  - {name: a, key: \"other-secret-0123456789\", role: admin}\n",
       "keys[1].name: 'a' appears twice"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client}\n"
       "  - {name: b, key: \"secret-value-0123456789\", role: admin}\n",
       "keys[1]: the key of 'b' is also another entry's key"},
      {"keys:\n  - {name: a, role: client}\n", "keys[0]: needs exactly one of key and key_sha256"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", key_sha256: \"cfffcf49d8b485b308f1bbeedaf9a2cea8a07d01d1a6bb29d07e5fafd4c89a71\", "
       "role: client}\n",
       "keys[0]: needs exactly one of key and key_sha256"},
      {"keys:\n  - {name: a, key_sha256: \"abc\", role: client}\n",
       "keys[0].key_sha256: must be 64 hex digits"},
      {"keys:\n  - {name: a, key_sha256: \"gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg\", role: client}\n",
       "keys[0].key_sha256: must be 64 hex digits"},
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client}\nextra: 1\n",
       "extra: unknown top-level key"},
      // Odd YAML shapes are errors, not exceptions (a throw on reload would
      // end the front).
      {"keys:\n  - {name: a, key: \"secret-value-0123456789\", role: client}\n[x, y]: 1\n",
       "top-level keys must be plain names"},
      {"keys:\n  - {[n]: a, key: \"secret-value-0123456789\", role: client}\n", "keys[0]"},
      {"keys:\n  - {name: [a], key: \"secret-value-0123456789\", role: client}\n", "keys[0]"},
      {"keys:\n  - {name: a, key: {k: v}, role: client}\n", "keys[0]"},
  };
  for (const Case& c : cases) {
    auto keys = ParseApiKeys(c.text, "/etc/keys.yaml");
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    const std::string msg(keys.status().message());
    EXPECT_NE(msg.find("/etc/keys.yaml"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.must_name), std::string::npos)
        << "want '" << c.must_name << "' in: " << msg;
    EXPECT_EQ(msg.find("secret-value"), std::string::npos) << "secret echoed: " << msg;
    EXPECT_EQ(msg.find("other-secret"), std::string::npos) << "secret echoed: " << msg;
  }
}

TEST(ApiKeysParseTest, ConstantTimeEqualsIsEquality) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abcabc", "abc"));  // a repeat is not a match
}

class ApiKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sparsevid_keys");
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/api-keys.yaml";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  // Replaced through a rename, as a Kubernetes Secret update does.
  void Write(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }
  std::string dir_, path_;
  testing::FakeClock clock_;
};

TEST_F(ApiKeyStoreTest, OpenFailsClearlyOnAMissingOrInvalidFile) {
  auto missing = ApiKeyStore::Open(path_);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(path_), absl::string_view::npos);
  Write("keys: []\n");
  auto empty = ApiKeyStore::Open(path_);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("keys: is empty"), absl::string_view::npos);
}

TEST_F(ApiKeyStoreTest, LookupFindsTheEntryOrAnswersUnauthenticated) {
  Write(kGood);
  auto store = ApiKeyStore::Open(path_, absl::Seconds(2), clock_.AsClock());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->size(), 4);
  auto alice = (*store)->Lookup(kAliceKey);
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->name, "alice");
  auto bob = (*store)->Lookup("bob-key-0123456789abcdef");  // listed by its SHA-256
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->name, "bob");
  for (const char* bad : {"", "alice-key-0123456789abcde", "alice-key-0123456789abcdefX",
                          "ALICE-KEY-0123456789ABCDEF"}) {
    auto r = (*store)->Lookup(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
}

TEST_F(ApiKeyStoreTest, AChangedFileIsReloadedAndABadChangeKeepsTheOldKeys) {
  Write(kGood);
  auto opened = ApiKeyStore::Open(path_, absl::Seconds(2), clock_.AsClock());
  ASSERT_TRUE(opened.ok());
  ApiKeyStore& store = **opened;
  std::vector<bool> reloads;
  store.set_reload_observer([&](bool ok) { reloads.push_back(ok); });

  // Rotation: Alice's key replaced.
  Write("keys:\n  - {name: alice, key: \"alice-rotated-0123456789\", role: client}\n");
  EXPECT_TRUE(store.Lookup(kAliceKey).ok());  // not re-checked before the interval
  clock_.Advance(absl::Seconds(3));
  EXPECT_EQ(store.Lookup(kAliceKey).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(store.Lookup("alice-rotated-0123456789").ok());
  EXPECT_EQ(store.size(), 1);
  EXPECT_EQ(reloads, std::vector<bool>({true}));

  // A broken edit: the previous keys stay, reported once.
  Write("keys:\n  - {name: alice, key: short, role: client}\n");
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(store.Lookup("alice-rotated-0123456789").ok());
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(store.Lookup("alice-rotated-0123456789").ok());
  EXPECT_EQ(reloads, std::vector<bool>({true, false}));

  // The file vanishing for a moment (a Secret swap) keeps the keys too.
  std::remove(path_.c_str());
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(store.Lookup("alice-rotated-0123456789").ok());

  // Fixed: loaded again.
  Write(kGood);
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(store.Lookup(kAliceKey).ok());
  EXPECT_EQ(store.size(), 4);
  EXPECT_EQ(reloads.back(), true);
}

}  // namespace
}  // namespace sparsevid::front
