// TLS on the front with the real processes: a CA, server and client
// certificates made with the openssl CLI at test time; the worker and the
// CLI dial with TLS (and, for a front that requires it, a client
// certificate); plaintext and untrusted clients are refused.
#include <string>

#include "common/tls_credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/child_process.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // TEST FIXTURE certificates, valid for two days, for 127.0.0.1 only.
    const std::string script =
        "set -e; cd '" + h_.dir() + "'\n"
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "  -subj /CN=sparsevid-test-ca 2>/dev/null\n"
        "printf 'subjectAltName=IP:127.0.0.1' > san.cnf\n"
        "for who in server client; do\n"
        "  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr "
        "    -subj /CN=sparsevid-test-$who 2>/dev/null\n"
        "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "    -out $who.pem -days 2 -extfile san.cnf 2>/dev/null\n"
        "done\n";
    CommandResult r = RunCommand({"/bin/sh", "-c", script}, 60s, h_.dir() + "/openssl");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    TlsClientConfig trusted;
    trusted.ca_file = Path("ca.pem");
    trusted.cert_file = Path("client.pem");
    trusted.key_file = Path("client.key");
    auto creds = MakeChannelCredentials(trusted);
    ASSERT_TRUE(creds.ok()) << creds.status();
    h_.set_front_credentials(*creds);
  }
  std::string Path(const std::string& name) const { return h_.dir() + "/" + name; }
  CommandResult Cli(std::vector<std::string> args, const std::string& log) {
    std::vector<std::string> argv = {Paths::Cli(), "-a", h_.front_address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, 120s, h_.dir() + "/" + log);
  }
  ServiceHarness h_;
};

TEST_F(TlsTest, WorkerAndCliOverTlsPlaintextAndUntrustedAreRefused) {
  ASSERT_TRUE(h_.StartFront({"--server.tls_cert_file", Path("server.pem"),
                             "--server.tls_key_file", Path("server.key")})
                  .ok())
      << h_.front().Stderr();
  auto w = h_.StartWorker({"--front.tls_ca_file", Path("ca.pem")});
  ASSERT_TRUE(w.ok()) << w.status() << h_.worker(0).Stderr();

  const std::string out = Path("tls.mp4");
  CommandResult r = Cli({"--tls-ca-file", Path("ca.pem"), "generate", "a red circle", "-o", out,
                         "--width", "32", "--height", "32", "--frames", "5", "--fps", "8",
                         "--steps", "2"},
                        "gen");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ProbeVideo(out), "h264,32,32,yuv420p,8/1,5");

  // Plaintext to a TLS port, and TLS that does not trust the test CA: the
  // front is unreachable for them (exit 3), nothing leaks.
  r = Cli({"list"}, "plain");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  r = Cli({"--tls", "list"}, "untrusted");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  // A CA file that is not PEM is a usage error naming it.
  WriteFile(Path("junk.pem"), "not a certificate\n");
  r = Cli({"--tls-ca-file", Path("junk.pem"), "list"}, "junk");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("junk.pem is not a PEM file"), std::string::npos) << r.err;
}

TEST_F(TlsTest, FrontRequiringClientCertificates) {
  ASSERT_TRUE(h_.StartFront({"--server.tls_cert_file", Path("server.pem"),
                             "--server.tls_key_file", Path("server.key"),
                             "--server.tls_client_ca_file", Path("ca.pem")})
                  .ok())
      << h_.front().Stderr();
  // The worker links only with its certificate.
  auto no_cert = h_.StartWorker({"--front.tls_ca_file", Path("ca.pem")}, /*wait_linked=*/false);
  ASSERT_TRUE(no_cert.ok());
  auto w = h_.StartWorker({"--front.tls_ca_file", Path("ca.pem"), "--front.tls_cert_file",
                           Path("client.pem"), "--front.tls_key_file", Path("client.key")});
  ASSERT_TRUE(w.ok()) << w.status() << h_.worker(1).Stderr();

  CommandResult r = Cli({"--tls-ca-file", Path("ca.pem"), "list"}, "nocert");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  r = Cli({"--tls-ca-file", Path("ca.pem"), "--tls-cert-file", Path("client.pem"),
           "--tls-key-file", Path("client.key"), "list"},
          "cert");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"--tls-ca-file", Path("ca.pem"), "--tls-cert-file", Path("client.pem"), "list"},
          "halfcert");
  EXPECT_EQ(r.exit_code, 2) << r.err;  // a certificate without its key
}

TEST_F(TlsTest, FrontRefusesHalfATlsConfiguration) {
  ServiceHarness other;
  EXPECT_FALSE(other.StartFront({"--server.tls_cert_file", Path("server.pem")}).ok());
  EXPECT_NE(other.front().Stderr().find("give both or neither"), std::string::npos)
      << other.front().Stderr();
  EXPECT_EQ(other.front().WaitExit(10s).value_or(-1) >> 8, 2);
  ServiceHarness third;
  EXPECT_FALSE(third.StartFront({"--server.tls_cert_file", Path("server.pem"),
                                 "--server.tls_key_file", Path("missing.key")})
                   .ok());
  EXPECT_NE(third.front().Stderr().find("server.tls_key_file: cannot read"), std::string::npos)
      << third.front().Stderr();
}

}  // namespace
}  // namespace sparsevid::integration
