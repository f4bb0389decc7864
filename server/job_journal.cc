#include "server/job_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparsevid::front {
namespace {

constexpr char kAccepted = 'A';
constexpr char kEnded = 'E';     // the job as it finished: same layout as kAccepted
constexpr char kFinished = 'F';  // a bare finish mark (journals of older fronts)
constexpr char kResultsDir[] = "results";

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutI64(std::string* out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint32_t Crc(const std::string& s) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

std::string ErrnoText() { return std::strerror(errno); }

// One record: [u32 payload bytes][u32 CRC-32 of the payload][payload].
std::string Framed(const std::string& payload) {
  std::string rec;
  PutU32(&rec, static_cast<uint32_t>(payload.size()));
  PutU32(&rec, Crc(payload));
  rec += payload;
  return rec;
}

// Accepted / Ended: kind, deadline (unix micros; INT64_MAX = none),
// fingerprint length and bytes, then the Job message.
std::string Encode(char kind, const JournaledJob& j) {
  std::string p(1, kind);
  PutI64(&p, j.deadline == absl::InfiniteFuture() ? INT64_MAX : absl::ToUnixMicros(j.deadline));
  PutU32(&p, static_cast<uint32_t>(j.fingerprint.size()));
  p += j.fingerprint;
  p += j.job.SerializeAsString();
  return p;
}

bool Decode(const std::string& p, JournaledJob* j) {
  if (p.size() < 13) return false;
  const auto deadline = static_cast<int64_t>(GetLE(p.data() + 1, 8));
  const uint32_t fp = static_cast<uint32_t>(GetLE(p.data() + 9, 4));
  if (p.size() < 13 + static_cast<size_t>(fp)) return false;
  j->deadline =
      deadline == INT64_MAX ? absl::InfiniteFuture() : absl::FromUnixMicros(deadline);
  j->fingerprint = p.substr(13, fp);
  return j->job.ParseFromString(p.substr(13 + fp)) && !j->job.job_id().empty();
}

bool SafeJobId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool IsTerminal(sparsevid::v1::JobState s) {
  return s == sparsevid::v1::JOB_STATE_SUCCEEDED || s == sparsevid::v1::JOB_STATE_FAILED ||
         s == sparsevid::v1::JOB_STATE_CANCELLED;
}

// A whole file; NOT_FOUND when it does not exist. `what` names it in errors.
absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::FILE* in = std::fopen(path.c_str(), "rb");
  if (in == nullptr) {
    const bool missing = errno == ENOENT;
    const std::string msg = absl::StrCat(what, " '", path, "': cannot open: ", ErrnoText());
    return missing ? absl::NotFoundError(msg) : absl::FailedPreconditionError(msg);
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), in)) > 0) data.append(buf, n);
  const bool failed = std::ferror(in) != 0;
  std::fclose(in);
  if (failed) return absl::DataLossError(absl::StrCat(what, " '", path, "': read failed"));
  return data;
}

void SyncDir(const std::string& dir) {
  if (int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobJournal>> JobJournal::Open(const std::string& dir,
                                                             std::vector<JournaledJob>* pending,
                                                             std::vector<JournaledJob>* ended,
                                                             absl::Time now,
                                                             absl::Duration keep_ended) {
  pending->clear();
  if (ended != nullptr) ended->clear();
  if (dir.empty()) return absl::InvalidArgumentError("state.dir: empty");
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::FailedPreconditionError(
        absl::StrCat("state.dir: cannot create '", dir, "': ", ErrnoText()));
  const std::string path = dir + "/jobs.journal";

  const std::string results = dir + "/" + kResultsDir;
  if (mkdir(results.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::FailedPreconditionError(
        absl::StrCat("state.dir: cannot create '", results, "': ", ErrnoText()));

  // Replay: accepted jobs in order, minus the finished ones, which go to
  // `done` in the order they ended (a job ends once; the last record wins).
  std::vector<JournaledJob> order;
  std::map<std::string, size_t> index;
  std::vector<JournaledJob> done;
  std::map<std::string, size_t> done_index;
  absl::StatusOr<std::string> read = ReadFile(path, "job journal");
  if (!read.ok() && !absl::IsNotFound(read.status())) return read.status();
  if (read.ok()) {
    const std::string& data = *read;
    size_t pos = 0;
    while (pos < data.size()) {
      if (data.size() - pos < 8) break;
      const auto len = static_cast<size_t>(GetLE(data.data() + pos, 4));
      const auto crc = static_cast<uint32_t>(GetLE(data.data() + pos + 4, 4));
      if (data.size() - pos - 8 < len) break;
      const std::string payload = data.substr(pos + 8, len);
      if (payload.empty() || Crc(payload) != crc) break;
      if (payload[0] == kAccepted) {
        JournaledJob j;
        if (!Decode(payload, &j)) break;
        index[j.job.job_id()] = order.size();
        order.push_back(std::move(j));
      } else if (payload[0] == kEnded || payload[0] == kFinished) {
        JournaledJob j;
        const bool full = payload[0] == kEnded;
        if (full && (!Decode(payload, &j) || !IsTerminal(j.job.state()))) break;
        const std::string id = full ? j.job.job_id() : payload.substr(1);
        auto it = index.find(id);
        if (it != index.end()) {
          order[it->second].job.clear_job_id();  // finished: dropped below
          index.erase(it);
        }
        if (full) {
          if (auto d = done_index.find(id); d != done_index.end()) {
            done[d->second] = std::move(j);
          } else {
            done_index[id] = done.size();
            done.push_back(std::move(j));
          }
        }
      } else {
        break;
      }
      pos += 8 + len;
    }
    if (pos < data.size()) {
      logging::Warn("job journal: dropped a torn or corrupt tail",
                    {{"path", path},
                     {"offset", static_cast<int64_t>(pos)},
                     {"bytes", static_cast<int64_t>(data.size() - pos)}});
    }
  }
  for (JournaledJob& j : order)
    if (!j.job.job_id().empty()) pending->push_back(std::move(j));
  // Ended jobs the front still keeps, and the result files that go with them.
  std::vector<JournaledJob> kept;
  std::set<std::string> kept_results;
  for (JournaledJob& j : done) {
    if (now - FinishedAt(j.job) >= keep_ended) continue;  // as JobEngine::RestoreEnded
    if (j.job.state() == sparsevid::v1::JOB_STATE_SUCCEEDED) kept_results.insert(j.job.job_id());
    kept.push_back(std::move(j));
  }
  if (DIR* d = opendir(results.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const size_t dot = name.rfind(".mp4");
      const bool ours = dot != std::string::npos && dot + 4 == name.size() &&
                        kept_results.count(name.substr(0, dot)) != 0;
      if (!ours) std::remove((results + "/" + name).c_str());  // expired, or a torn .tmp
    }
    closedir(d);
  }

  // Rewrite with only the jobs kept, then append to it from here on.
  std::unique_ptr<JobJournal> journal(new JobJournal(dir, path, nullptr));
  if (absl::Status s = journal->Compact(*pending, kept); !s.ok()) return s;
  if (ended != nullptr) *ended = std::move(kept);
  return journal;
}

absl::Status JobJournal::Compact(const std::vector<JournaledJob>& pending,
                                 const std::vector<JournaledJob>& ended) {
  std::string all;
  for (const JournaledJob& j : pending) all += Framed(Encode(kAccepted, j));
  for (const JournaledJob& j : ended) {
    if (!IsTerminal(j.job.state()))
      return absl::InvalidArgumentError(
          absl::StrCat("job journal: job '", j.job.job_id(), "' has not ended"));
    all += Framed(Encode(kEnded, j));
  }
  const std::string tmp = path_ + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat("job journal '", tmp, "': cannot create: ", ErrnoText()));
  if (std::fwrite(all.data(), 1, all.size(), out) != all.size() || std::fflush(out) != 0 ||
      fdatasync(fileno(out)) != 0) {
    const std::string why = ErrnoText();
    std::fclose(out);
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("job journal '", tmp, "': write failed: ", why));
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = ErrnoText();
    std::fclose(out);
    std::remove(tmp.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("job journal '", path_, "': cannot replace it: ", why));
  }
  SyncDir(dir_);  // the rename itself is on disk once the directory is
  if (file_ != nullptr) std::fclose(file_);
  file_ = out;
  records_ = pending.size() + ended.size();
  return absl::OkStatus();
}

JobJournal::~JobJournal() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status JobJournal::Append(const std::string& payload) {
  const std::string rec = Framed(payload);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0 ||
      fdatasync(fileno(file_)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("job journal '", path_, "': write failed: ", ErrnoText()));
  }
  ++records_;
  return absl::OkStatus();
}

absl::Status JobJournal::Accepted(const JournaledJob& job) { return Append(Encode(kAccepted, job)); }

absl::Status JobJournal::Finished(const JournaledJob& ended) {
  if (!IsTerminal(ended.job.state()))
    return absl::InvalidArgumentError(
        absl::StrCat("job journal: job '", ended.job.job_id(), "' has not ended"));
  return Append(Encode(kEnded, ended));
}

std::string JobJournal::ResultPath(const std::string& job_id) const {
  return absl::StrCat(dir_, "/", kResultsDir, "/", job_id, ".mp4");
}

absl::Status JobJournal::WriteResult(const std::string& job_id, const std::string& bytes) {
  if (!SafeJobId(job_id))
    return absl::InvalidArgumentError(absl::StrCat("job id '", job_id, "' cannot name a file"));
  // A temporary name of its own: two completions of one job (a stale attempt
  // and its successor) never write into the same file.
  const std::string path = ResultPath(job_id);
  std::string tmp = path + ".XXXXXX.tmp";
  const int fd = mkstemps(tmp.data(), 4);
  std::FILE* out = fd >= 0 ? fdopen(fd, "wb") : nullptr;
  if (out == nullptr) {
    const std::string why = ErrnoText();
    if (fd >= 0) {
      close(fd);
      std::remove(tmp.c_str());
    }
    return absl::UnavailableError(absl::StrCat("result file '", tmp, "': ", why));
  }
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size() &&
                       std::fflush(out) == 0 && fdatasync(fileno(out)) == 0;
  const std::string why = written ? "" : ErrnoText();
  std::fclose(out);
  if (written && before_rename_) before_rename_(job_id);
  if (!written || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = written ? ErrnoText() : why;
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("result file '", path, "': ", err));
  }
  SyncDir(dir_ + "/" + kResultsDir);
  return absl::OkStatus();
}

absl::StatusOr<std::string> JobJournal::ReadResult(const std::string& job_id) const {
  if (!SafeJobId(job_id))
    return absl::InvalidArgumentError(absl::StrCat("job id '", job_id, "' cannot name a file"));
  return ReadFile(ResultPath(job_id), "result file");
}

void JobJournal::RemoveResult(const std::string& job_id) {
  if (SafeJobId(job_id)) std::remove(ResultPath(job_id).c_str());
}

}  // namespace sparsevid::front
