#include "common/tls_credentials.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/text_file.h"

namespace sparsevid {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& what) {
  absl::StatusOr<std::string> text = ReadTextFile(path, what);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " is not a PEM file"));
  }
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsClientConfig& config) {
  const bool tls = config.enabled || !config.ca_file.empty() || !config.cert_file.empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  if (config.cert_file.empty() != config.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS client certificate: give both the certificate and its key, or neither");
  }
  grpc::SslCredentialsOptions ssl;
  if (!config.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(config.ca_file, "TLS CA file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (!config.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(config.cert_file, "TLS client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile(config.key_file, "TLS client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerConfig& config) {
  if (config.cert_file.empty() && config.key_file.empty()) {
    if (!config.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "server.tls_client_ca_file: needs server.tls_cert_file and server.tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  if (config.cert_file.empty() || config.key_file.empty()) {
    return absl::InvalidArgumentError(
        "server.tls_cert_file and server.tls_key_file: give both or neither");
  }
  absl::StatusOr<std::string> cert = ReadPemFile(config.cert_file, "server.tls_cert_file");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile(config.key_file, "server.tls_key_file");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!config.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(config.client_ca_file, "server.tls_client_ca_file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace sparsevid
