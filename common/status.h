// The one mapping between absl::Status (used everywhere inside sparsevid)
// and grpc::Status (only at the RPC edge). Both use the canonical codes, so
// codes map one to one; what needs care is the retry delay of
// RESOURCE_EXHAUSTED, which travels three ways:
//   inside:  an absl::Status payload holding a google.rpc.RetryInfo;
//   on gRPC: google.rpc.Status{details=[RetryInfo]} in grpc-status-details-bin
//            and, when a server context is given, the grpc-retry-pushback-ms
//            trailer that gRPC's own retry logic honours;
//   in text: the message ends with "(retry after N ms)".
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace sparsevid {

inline constexpr char kRetryInfoTypeUrl[] =
    "type.googleapis.com/google.rpc.RetryInfo";
inline constexpr char kRetryPushbackTrailer[] = "grpc-retry-pushback-ms";

// Attaches a retry delay (rounded to milliseconds, at least 1 ms).
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);
std::optional<absl::Duration> GetRetryDelay(const absl::Status& status);

grpc::Status ToGrpcStatus(const absl::Status& status);
// As above, and sets the grpc-retry-pushback-ms trailer when a retry delay is
// attached. Call before finishing the RPC.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* context);

// For clients and the worker: back to absl, keeping the retry delay from
// the error details.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace sparsevid
