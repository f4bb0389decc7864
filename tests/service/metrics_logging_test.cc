#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include "common/logging.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace sparsevid {
namespace {

// Minimal HTTP/1.0 GET against 127.0.0.1:port.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string body;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, n);
  close(fd);
  return body;
}

TEST(Metrics, PortZeroBindsAndServes) {
  metrics::MetricsServer server;
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  ASSERT_GT(server.port(), 0);
  metrics::AddBuildInfo(server.registry(), "test");
  prometheus::BuildCounter()
      .Name("sparsevid_test_events_total")
      .Help("test")
      .Register(server.registry())
      .Add({})
      .Increment(3);
  const std::string page = HttpGet(server.port(), "/metrics");
  EXPECT_NE(page.find("sparsevid_test_events_total 3"), std::string::npos) << page;
  EXPECT_NE(page.find("sparsevid_build_info{"), std::string::npos) << page;
}

TEST(Metrics, EmptyAddressDisablesAndBadAddressFails) {
  metrics::MetricsServer off;
  EXPECT_TRUE(off.Start("").ok());
  EXPECT_EQ(off.port(), 0);
  metrics::MetricsServer first;
  ASSERT_TRUE(first.Start("127.0.0.1:0").ok());
  metrics::MetricsServer clash;
  absl::Status s = clash.Start("127.0.0.1:" + std::to_string(first.port()));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

TEST(Metrics, BucketsAreIncreasing) {
  for (const auto& b : {metrics::JobSecondsBuckets(), metrics::StepSecondsBuckets(),
                        metrics::LatencySecondsBuckets(), metrics::RatioBuckets()}) {
    ASSERT_FALSE(b.empty());
    for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  }
}

TEST(Logging, JsonLineCarriesJobIdAndFields) {
  ASSERT_TRUE(logging::Init("front", "info").ok());
  std::ostringstream out;
  logging::UseStreamForTest(out);
  logging::Info("job started", {{"worker", "w1"}, {"attempt", 2}}, "job-42");
  logging::Debug("hidden");  // below the level
  logging::UseStderr();
  const std::string line = out.str();
  const auto j = nlohmann::json::parse(line.substr(0, line.find('\n')));
  EXPECT_EQ(j["msg"], "job started");
  EXPECT_EQ(j["job_id"], "job-42");
  EXPECT_EQ(j["component"], "front");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["worker"], "w1");
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_EQ(line.find("hidden"), std::string::npos);
  EXPECT_FALSE(logging::Init("front", "loud").ok());
}

TEST(Logging, InvalidUtf8DoesNotThrow) {
  const std::string line = logging::FormatLine(
      logging::Level::kWarn, "bad \xC3\x28", {{"prompt", "x\xFF"}}, "");
  EXPECT_TRUE(nlohmann::json::accept(line)) << line;
}

}  // namespace
}  // namespace sparsevid
