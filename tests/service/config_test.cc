#include "common/config.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sparsevid::config {
namespace {

struct TestConfig {
  std::string listen = "127.0.0.1:0";
  int capacity = 64;
  int64_t cap_bytes = 1 << 20;
  double ttl_seconds = 3600;
  bool verbose = false;
};

void Declare(ConfigSchema& s, TestConfig& c) {
  s.AddString("server.listen", &c.listen, "gRPC listen address",
              ListenAddress(false));
  s.AddInt("queue.capacity", &c.capacity, "queued jobs", InRange(1, 10000));
  s.AddInt64("results.cap_bytes", &c.cap_bytes, "bytes kept",
             InRange<int64_t>(0, int64_t{1} << 40));
  s.AddDouble("results.ttl_seconds", &c.ttl_seconds, "seconds kept",
              InRange(1.0, 86400.0 * 30));
  s.AddBool("log.verbose", &c.verbose, "debug logs");
}

absl::StatusOr<CommandLineOutcome> Parse(ConfigSchema& s,
                                         std::vector<std::string> args,
                                         std::string* out_text = nullptr) {
  args.insert(args.begin(), "prog");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  auto r = ParseCommandLine(s, static_cast<int>(argv.size()), argv.data(),
                            "test", out);
  if (out_text) *out_text = out.str();
  return r;
}

TEST(ConfigSchema, DefaultsSurviveEmptyYaml) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  ASSERT_TRUE(s.LoadYamlString("").ok());
  EXPECT_EQ(c.capacity, 64);
  EXPECT_TRUE(s.Validate().ok());
}

TEST(ConfigSchema, NestedYamlSetsTypedFields) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  ASSERT_TRUE(s.LoadYamlString(R"(
server:
  listen: "0.0.0.0:50051"
queue:
  capacity: 12
results:
  cap_bytes: 5000000000
  ttl_seconds: 7.5
log:
  verbose: yes
)").ok());
  EXPECT_EQ(c.listen, "0.0.0.0:50051");
  EXPECT_EQ(c.capacity, 12);
  EXPECT_EQ(c.cap_bytes, 5000000000LL);
  EXPECT_DOUBLE_EQ(c.ttl_seconds, 7.5);
  EXPECT_TRUE(c.verbose);
}

TEST(ConfigSchema, UnknownKeyIsRejectedByName) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  absl::Status st = s.LoadYamlString("queue:\n  capcity: 3\n");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("queue.capcity"), absl::string_view::npos) << st;
  st = s.LoadYamlString("bogus: 1\n");
  EXPECT_NE(st.message().find("'bogus'"), absl::string_view::npos) << st;
}

TEST(ConfigSchema, BadValueIsRejectedByName) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  absl::Status st = s.LoadYamlString("queue:\n  capacity: lots\n");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("queue.capacity"), absl::string_view::npos) << st;
  st = s.LoadYamlString("queue:\n  capacity: 99999999999\n");
  EXPECT_FALSE(st.ok());
  st = s.LoadYamlString("queue:\n  capacity: [1, 2]\n");
  EXPECT_NE(st.message().find("queue.capacity"), absl::string_view::npos) << st;
  st = s.LoadYamlString("queue: 5\n");
  EXPECT_NE(st.message().find("'queue' must be a map"), absl::string_view::npos)
      << st;
  st = s.LoadYamlString("log:\n  verbose: maybe\n");
  EXPECT_NE(st.message().find("log.verbose"), absl::string_view::npos) << st;
  st = s.LoadYamlString("results:\n  ttl_seconds: .nan\n");
  EXPECT_NE(st.message().find("results.ttl_seconds"), absl::string_view::npos)
      << st;
  EXPECT_FALSE(s.LoadYamlString("queue: {capacity: 1").ok());  // bad YAML
}

TEST(ConfigSchema, ValidatorNamesKey) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  ASSERT_TRUE(s.LoadYamlString("queue: {capacity: 0}").ok());
  absl::Status st = s.Validate();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("queue.capacity"), absl::string_view::npos) << st;
  c.capacity = 5;
  c.listen = "localhost:70000";
  st = s.Validate();
  EXPECT_NE(st.message().find("server.listen"), absl::string_view::npos) << st;
}

TEST(ConfigCommandLine, FlagOverridesFile) {
  const std::string path = ::testing::TempDir() + "/config_test.yaml";
  {
    std::ofstream f(path);
    f << "queue:\n  capacity: 7\nresults:\n  ttl_seconds: 10\n";
  }
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  auto r = Parse(s, {"--config", path, "--queue.capacity=9"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, CommandLineOutcome::kRun);
  EXPECT_EQ(c.capacity, 9);          // flag wins
  EXPECT_DOUBLE_EQ(c.ttl_seconds, 10);  // from file
}

TEST(ConfigCommandLine, BadFlagValueAndUnknownFlagAreErrors) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  auto r = Parse(s, {"--queue.capacity", "x"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("queue.capacity"), absl::string_view::npos);
  r = Parse(s, {"--queue.capacity", "0"});  // parses, fails validation
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("queue.capacity"), absl::string_view::npos);
  r = Parse(s, {"--queue.capacty", "3"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("queue.capacty"), absl::string_view::npos)
      << r.status();
  r = Parse(s, {"--config", "/nonexistent/x.yaml"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(ConfigCommandLine, HelpListsEveryKey) {
  TestConfig c;
  ConfigSchema s;
  Declare(s, c);
  std::string text;
  auto r = Parse(s, {"--help"}, &text);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, CommandLineOutcome::kHelpPrinted);
  for (const std::string& key : s.Keys()) {
    EXPECT_NE(text.find("--" + key), std::string::npos) << key << "\n" << text;
  }
  EXPECT_NE(text.find("queued jobs"), std::string::npos) << text;
}

}  // namespace
}  // namespace sparsevid::config
