// The front's record of accepted work on disk, so that a front that dies (a
// crash, an OOM kill, SIGKILL) does not lose queued, running or finished
// jobs. (A drain on SIGTERM ends every job itself before the front exits.)
// An append-only file: each accepted job's request, owner, ids and deadline,
// and the job as it ended (state, status, stats); beside it, under
// results/, the MP4 of each succeeded job. At start-up the front replays it,
// re-queues the jobs that never finished (same job id, request_id and seed:
// the same video), serves the ended ones again (GetJob, Watch, FetchResult,
// idempotent resubmission) for as long as it keeps finished jobs, and
// rewrites the file with only those (as a running front does when most of
// its records are dead: Compact).
//
// Each record is [u32 payload bytes][u32 CRC-32 of the payload][payload],
// little-endian. A crash can leave a torn last record: replay stops at the
// first record that is short or fails its CRC, logs what it dropped, and the
// rewrite removes it. A result file is written whole (temporary file,
// fdatasync, rename) before its job's end is recorded.
#pragma once

#include <cstdio>
#include <functional>
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

// When an ended job finished (Job.finished_unix_seconds as a time).
inline absl::Time FinishedAt(const sparsevid::v1::Job& job) {
  return absl::FromUnixMicros(static_cast<int64_t>(job.finished_unix_seconds() * 1e6));
}

class JobJournal {
 public:
  // Opens (creating the directory's file `jobs.journal` if needed) and
  // replays it: `pending` gets the jobs accepted and never finished, `ended`
  // (when given) the finished ones that ended within `keep_ended` of `now`,
  // both oldest first. Rewrites the file with only those, and removes the
  // result files of jobs it no longer keeps. Errors name the file.
  static absl::StatusOr<std::unique_ptr<JobJournal>> Open(
      const std::string& dir, std::vector<JournaledJob>* pending,
      std::vector<JournaledJob>* ended = nullptr, absl::Time now = absl::Now(),
      absl::Duration keep_ended = absl::Hours(1));
  ~JobJournal();
  JobJournal(const JobJournal&) = delete;
  JobJournal& operator=(const JobJournal&) = delete;

  // Both are on disk (fdatasync) when they return OK. `ended` is the job as
  // it finished (a terminal state, its status or stats, finished time).
  absl::Status Accepted(const JournaledJob& job);
  absl::Status Finished(const JournaledJob& ended);

  // A succeeded job's MP4, on disk (written to a temporary file, synced,
  // renamed) when WriteResult returns OK. Job ids other than [A-Za-z0-9_-]
  // (at most 128) are INVALID_ARGUMENT: they never name a file.
  absl::Status WriteResult(const std::string& job_id, const std::string& bytes);
  // Tests: called by WriteResult once the temporary file is written and
  // synced, just before its rename (to hold a write open).
  void SetBeforeRenameForTesting(std::function<void(const std::string& job_id)> hook) {
    before_rename_ = std::move(hook);
  }
  absl::StatusOr<std::string> ReadResult(const std::string& job_id) const;
  void RemoveResult(const std::string& job_id);

  // Replaces the file with just these jobs (the unfinished ones as they were
  // accepted, the ended ones as they ended): a temporary file, one
  // fdatasync, a rename; appends go to the new file from then on. On an
  // error the old file stays in use, whole. Open does this at start-up; a
  // running front does it when most records are dead (JobEngine).
  absl::Status Compact(const std::vector<JournaledJob>& pending,
                       const std::vector<JournaledJob>& ended);
  // Records in the file: those of the last Compact plus those appended since.
  size_t records() const { return records_; }

  const std::string& path() const { return path_; }

 private:
  JobJournal(std::string dir, std::string path, std::FILE* file)
      : dir_(std::move(dir)), path_(std::move(path)), file_(file) {}
  absl::Status Append(const std::string& payload);
  std::string ResultPath(const std::string& job_id) const;

  std::string dir_;
  std::string path_;
  std::FILE* file_;
  size_t records_ = 0;
  std::function<void(const std::string&)> before_rename_;
};

}  // namespace sparsevid::front
