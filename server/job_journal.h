// The front's record of accepted work on disk, so that a front that dies (a
// crash, an OOM kill, SIGKILL) does not lose queued or running jobs. (A
// drain on SIGTERM ends every job itself before the front exits.)
// An append-only file: each accepted job's request, owner, ids and deadline,
// and a mark when it finishes. At start-up the front replays it, re-queues
// the jobs that never finished (same job id, request_id and seed: the same
// video) and rewrites the file with only those. Finished records and their
// videos are not kept across a restart.
//
// Each record is [u32 payload bytes][u32 CRC-32 of the payload][payload],
// little-endian. A crash can leave a torn last record: replay stops at the
// first record that is short or fails its CRC, logs what it dropped, and the
// rewrite removes it.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sparsevid/v1/video_service.pb.h"

namespace sparsevid::front {

// A job as the journal keeps it: enough to queue it again.
struct JournaledJob {
  sparsevid::v1::Job job;   // id, request_id, owner, request (defaults resolved, seed set), created
  std::string fingerprint;  // the request as submitted (idempotency)
  absl::Time deadline = absl::InfiniteFuture();
};

class JobJournal {
 public:
  // Opens (creating the directory's file `jobs.journal` if needed), replays
  // it into `pending` (accepted and never finished, oldest first) and
  // rewrites the file with only those. Errors name the file.
  static absl::StatusOr<std::unique_ptr<JobJournal>> Open(const std::string& dir,
                                                          std::vector<JournaledJob>* pending);
  ~JobJournal();
  JobJournal(const JobJournal&) = delete;
  JobJournal& operator=(const JobJournal&) = delete;

  // Both are on disk (fdatasync) when they return OK.
  absl::Status Accepted(const JournaledJob& job);
  absl::Status Finished(const std::string& job_id);

  const std::string& path() const { return path_; }

 private:
  JobJournal(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  absl::Status Append(const std::string& payload);

  std::string path_;
  std::FILE* file_;
};

}  // namespace sparsevid::front
