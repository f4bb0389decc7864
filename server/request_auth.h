// Authenticates the front's gRPC calls: the `authorization: Bearer <key>`
// metadata is looked up in the API keys (server/api_keys.h) and the key's role
// is checked against the service called. Missing, malformed or unknown keys
// are UNAUTHENTICATED; a key of the wrong role is PERMISSION_DENIED. Each
// failure is counted in sparsevid_auth_failures_total{reason}.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/api_keys.h"
#include "server/front_metrics.h"
#include "server/job_engine.h"

namespace sparsevid::front {

class RequestAuth {
 public:
  // `keys` null: auth is off and every call is the default Caller (owner "",
  // sees every job). `metrics` may be null.
  RequestAuth(ApiKeyStore* keys, FrontMetrics* metrics) : keys_(keys), metrics_(metrics) {}

  bool enabled() const { return keys_ != nullptr; }

  // sparsevid.v1.VideoService: client and admin keys. `key` (if not null)
  // gets the key the call was made with, for streams that must end when it
  // is revoked (server/revocable_streams.h).
  absl::StatusOr<Caller> VideoCaller(const grpc::ServerContextBase& context,
                                     ApiKey* key = nullptr) const;
  // sparsevid.v1.WorkerLink: worker keys; returns the key (name and digest).
  absl::StatusOr<ApiKey> WorkerKey(const grpc::ServerContextBase& context) const;
  // Whether a key a stream was opened with is still in the keys file.
  bool StillValid(const ApiKey& key) const { return keys_ == nullptr || keys_->IsCurrent(key); }

 private:
  absl::StatusOr<ApiKey> Authenticate(const grpc::ServerContextBase& context) const;
  absl::Status Fail(const char* reason, absl::Status status) const;

  ApiKeyStore* const keys_;
  FrontMetrics* const metrics_;
};

}  // namespace sparsevid::front
