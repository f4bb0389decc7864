// TLS for the gRPC hops that leave a trusted network: the front's listener
// (server.tls_*), and the CLI's and workers' channels to it. PEM files are
// read once at start; errors name the file and what it should hold.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace sparsevid {

struct TlsClientConfig {
  bool enabled = false;   // also implied by ca_file
  std::string ca_file;    // roots to verify the front; empty = the system's
  std::string cert_file;  // client certificate for a front that requires one (mTLS)
  std::string key_file;
  std::string server_name;  // verify the certificate for this name instead of the address host
};

// Insecure credentials when TLS is off.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsClientConfig& config);

struct TlsServerConfig {
  std::string cert_file;       // both or neither: TLS on with both
  std::string key_file;
  std::string client_ca_file;  // set: clients must present a certificate it signed
};

// Insecure credentials when no certificate is configured.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerConfig& config);

// The PEM text of `path`; `what` names its role in errors ("server.tls_cert_file").
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& what);

}  // namespace sparsevid
