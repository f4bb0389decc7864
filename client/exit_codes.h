// Exit codes of the `sparsevid` CLI, one per outcome, so scripts can tell a
// failed job from an unreachable front or a bad request:
//
//   0   success (video written / command done)
//   1   the job failed on the server (engine or worker error)
//   2   usage error (bad or missing command-line arguments)
//   3   the front is not reachable or not serving (UNAVAILABLE)
//   4   the request was rejected as invalid (INVALID_ARGUMENT; message names the field)
//   5   the queue is full (RESOURCE_EXHAUSTED; retry later)
//   6   the job was cancelled
//   7   the deadline (--timeout) passed (DEADLINE_EXCEEDED)
//   8   unknown or expired job id (NOT_FOUND)
//   9   other server error (ALREADY_EXISTS, FAILED_PRECONDITION, INTERNAL, ...)
//   10  the output file could not be written or failed its size/SHA-256 check
//   11  not authorised: missing, unknown or wrong-role API key
//       (UNAUTHENTICATED / PERMISSION_DENIED)
//   130 interrupted by Ctrl-C
#pragma once

#include "absl/status/status.h"

namespace sparsevid::client {

enum ExitCode : int {
  kExitOk = 0,
  kExitJobFailed = 1,
  kExitUsage = 2,
  kExitUnavailable = 3,
  kExitInvalidArgument = 4,
  kExitQueueFull = 5,
  kExitCancelled = 6,
  kExitDeadlineExceeded = 7,
  kExitNotFound = 8,
  kExitServerError = 9,
  kExitOutputError = 10,
  kExitNotAuthorized = 11,
  kExitInterrupted = 130,
};

// For an RPC that failed with `code`.
ExitCode ExitCodeForRpcError(absl::StatusCode code);
// For a job whose final event was Failed{code}.
ExitCode ExitCodeForJobFailure(absl::StatusCode code);

}  // namespace sparsevid::client
