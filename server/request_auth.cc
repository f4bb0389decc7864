#include "server/request_auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sparsevid::front {
namespace {

constexpr absl::string_view kBearer = "bearer ";

}  // namespace

absl::Status RequestAuth::Fail(const char* reason, absl::Status status) const {
  if (metrics_) metrics_->OnAuthFailure(reason);
  return status;
}

absl::StatusOr<ApiKey> RequestAuth::Authenticate(const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Fail("missing", absl::UnauthenticatedError(
                               "missing API key: send the metadata 'authorization: Bearer <key>' "
                               "(sparsevid CLI: --api-key-file or SPARSEVID_API_KEY)"));
  }
  const absl::string_view value(it->second.data(), it->second.size());
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return Fail("malformed",
                absl::UnauthenticatedError("authorization: expected 'Bearer <key>'"));
  }
  const absl::string_view presented = absl::StripAsciiWhitespace(value.substr(kBearer.size()));
  absl::StatusOr<ApiKey> key = keys_->Lookup(std::string_view(presented.data(), presented.size()));
  if (!key.ok()) return Fail("invalid", key.status());
  return key;
}

absl::StatusOr<Caller> RequestAuth::VideoCaller(const grpc::ServerContextBase& context,
                                                ApiKey* used) const {
  if (keys_ == nullptr) return Caller{};
  absl::StatusOr<ApiKey> key = Authenticate(context);
  if (!key.ok()) return key.status();
  if (key->role == ApiKeyRole::kWorker) {
    return Fail("forbidden",
                absl::PermissionDeniedError(absl::StrCat(
                    "API key '", key->name,
                    "' has role worker, which may only call sparsevid.v1.WorkerLink")));
  }
  Caller caller;
  caller.name = key->name;
  caller.sees_all = key->role == ApiKeyRole::kAdmin;
  caller.max_active_jobs = key->role == ApiKeyRole::kAdmin ? 0 : key->max_active_jobs;
  if (used != nullptr) *used = *std::move(key);
  return caller;
}

absl::StatusOr<ApiKey> RequestAuth::WorkerKey(const grpc::ServerContextBase& context) const {
  if (keys_ == nullptr) return ApiKey{};
  absl::StatusOr<ApiKey> key = Authenticate(context);
  if (!key.ok()) return key.status();
  if (key->role != ApiKeyRole::kWorker) {
    return Fail("forbidden",
                absl::PermissionDeniedError(absl::StrCat(
                    "API key '", key->name, "' has role ", ApiKeyRoleName(key->role),
                    "; sparsevid.v1.WorkerLink takes worker keys only")));
  }
  return key;
}

}  // namespace sparsevid::front
