// grpc.health.v1.Health/Check from the client side, without generated
// health stubs (Debian ships only the server half): the request and
// response are two tiny protobuf messages encoded by hand.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"

namespace sparsevid::client {

enum class HealthStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
const char* HealthStatusName(HealthStatus status);

// One Check call for `service` ("" = the whole server). UNAVAILABLE when
// nothing answers at `address`. `credentials` null = plaintext.
absl::StatusOr<HealthStatus> CheckHealth(
    const std::string& address, const std::string& service, std::chrono::milliseconds timeout,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// Polls until SERVING or the timeout passes; returns the last answer or error.
absl::StatusOr<HealthStatus> WaitForServing(
    const std::string& address, const std::string& service, std::chrono::milliseconds timeout,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace sparsevid::client
