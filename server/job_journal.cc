#include "server/job_journal.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparsevid::front {
namespace {

constexpr char kAccepted = 'A';
constexpr char kFinished = 'F';

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

// Accepted: kind, deadline (unix micros; INT64_MAX = none), fingerprint
// length and bytes, then the Job message.
std::string EncodeAccepted(const JournaledJob& j) {
  std::string p(1, kAccepted);
  PutI64(&p, j.deadline == absl::InfiniteFuture() ? INT64_MAX : absl::ToUnixMicros(j.deadline));
  PutU32(&p, static_cast<uint32_t>(j.fingerprint.size()));
  p += j.fingerprint;
  p += j.job.SerializeAsString();
  return p;
}

bool DecodeAccepted(const std::string& p, JournaledJob* j) {
  if (p.size() < 13) return false;
  const auto deadline = static_cast<int64_t>(GetLE(p.data() + 1, 8));
  const uint32_t fp = static_cast<uint32_t>(GetLE(p.data() + 9, 4));
  if (p.size() < 13 + static_cast<size_t>(fp)) return false;
  j->deadline =
      deadline == INT64_MAX ? absl::InfiniteFuture() : absl::FromUnixMicros(deadline);
  j->fingerprint = p.substr(13, fp);
  return j->job.ParseFromString(p.substr(13 + fp)) && !j->job.job_id().empty();
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobJournal>> JobJournal::Open(const std::string& dir,
                                                             std::vector<JournaledJob>* pending) {
  pending->clear();
  if (dir.empty()) return absl::InvalidArgumentError("state.dir: empty");
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::FailedPreconditionError(
        absl::StrCat("state.dir: cannot create '", dir, "': ", ErrnoText()));
  const std::string path = dir + "/jobs.journal";

  // Replay: accepted jobs in order, minus the finished ones.
  std::vector<JournaledJob> order;
  std::map<std::string, size_t> index;
  if (std::FILE* in = std::fopen(path.c_str(), "rb")) {
    std::string data;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), in)) > 0) data.append(buf, n);
    const bool read_error = std::ferror(in) != 0;
    std::fclose(in);
    if (read_error)
      return absl::DataLossError(absl::StrCat("job journal '", path, "': read failed"));
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
        if (!DecodeAccepted(payload, &j)) break;
        index[j.job.job_id()] = order.size();
        order.push_back(std::move(j));
      } else if (payload[0] == kFinished) {
        auto it = index.find(payload.substr(1));
        if (it != index.end()) {
          order[it->second].job.clear_job_id();  // finished: dropped below
          index.erase(it);
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
  } else if (errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("job journal '", path, "': cannot open: ", ErrnoText()));
  }
  for (JournaledJob& j : order)
    if (!j.job.job_id().empty()) pending->push_back(std::move(j));

  // Rewrite with only the pending jobs, then append to it from here on.
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat("job journal '", tmp, "': cannot create: ", ErrnoText()));
  std::unique_ptr<JobJournal> journal(new JobJournal(tmp, out));
  for (const JournaledJob& j : *pending) {
    if (absl::Status s = journal->Append(EncodeAccepted(j)); !s.ok()) {
      std::remove(tmp.c_str());
      return s;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = ErrnoText();
    std::remove(tmp.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("job journal '", path, "': cannot replace it: ", why));
  }
  // The rename itself is on disk once the directory is.
  if (int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    fsync(fd);
    close(fd);
  }
  journal->path_ = path;
  return journal;
}

JobJournal::~JobJournal() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status JobJournal::Append(const std::string& payload) {
  std::string rec;
  PutU32(&rec, static_cast<uint32_t>(payload.size()));
  PutU32(&rec, Crc(payload));
  rec += payload;
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0 ||
      fdatasync(fileno(file_)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("job journal '", path_, "': write failed: ", ErrnoText()));
  }
  return absl::OkStatus();
}

absl::Status JobJournal::Accepted(const JournaledJob& job) { return Append(EncodeAccepted(job)); }

absl::Status JobJournal::Finished(const std::string& job_id) {
  return Append(std::string(1, kFinished) + job_id);
}

}  // namespace sparsevid::front
