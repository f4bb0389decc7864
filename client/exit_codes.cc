#include "client/exit_codes.h"

namespace sparsevid::client {

ExitCode ExitCodeForRpcError(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return kExitOk;
    case absl::StatusCode::kUnavailable: return kExitUnavailable;
    case absl::StatusCode::kInvalidArgument: return kExitInvalidArgument;
    case absl::StatusCode::kResourceExhausted: return kExitQueueFull;
    case absl::StatusCode::kCancelled: return kExitCancelled;
    case absl::StatusCode::kDeadlineExceeded: return kExitDeadlineExceeded;
    case absl::StatusCode::kNotFound: return kExitNotFound;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied: return kExitNotAuthorized;
    default: return kExitServerError;
  }
}

ExitCode ExitCodeForJobFailure(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kCancelled: return kExitCancelled;
    case absl::StatusCode::kDeadlineExceeded: return kExitDeadlineExceeded;
    case absl::StatusCode::kInvalidArgument: return kExitInvalidArgument;
    default: return kExitJobFailed;
  }
}

}  // namespace sparsevid::client
