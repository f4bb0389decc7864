#include "gtest/gtest.h"
#include "server/job_event_log.h"
#include "server/result_store.h"

namespace sparsevid::front {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(ResultStore, AppendInOrderAndRead) {
  ResultStore s(100, absl::Seconds(10));
  ASSERT_TRUE(s.Append("j", 0, "hello ").ok());
  ASSERT_TRUE(s.Append("j", 6, "world").ok());
  EXPECT_EQ(s.Append("j", 3, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*s.Read("j", 0, 100), "hello world");
  EXPECT_EQ(*s.Read("j", 6, 3), "wor");
  EXPECT_EQ(*s.Read("j", 11, 3), "");
  EXPECT_EQ(s.Read("j", 12, 3).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.Read("j", -1, 3).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.Read("nope", 0, 3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.total_bytes(), 11);
}

TEST(ResultStore, TtlExpiresCompletedResultsOnly) {
  ResultStore s(100, absl::Seconds(10));
  ASSERT_TRUE(s.Append("done", 0, "aaaa").ok());
  s.Complete("done", kT0);
  ASSERT_TRUE(s.Append("running", 0, "bbbb").ok());
  EXPECT_TRUE(s.Sweep(kT0 + absl::Seconds(9)).empty());
  EXPECT_EQ(s.Sweep(kT0 + absl::Seconds(10)), std::vector<std::string>{"done"});
  EXPECT_FALSE(s.Contains("done"));
  EXPECT_TRUE(s.Contains("running"));
  EXPECT_EQ(s.total_bytes(), 4);
}

TEST(ResultStore, CapEvictsOldestCompletedThenRefuses) {
  ResultStore s(10, absl::Hours(1));
  ASSERT_TRUE(s.Append("old", 0, "1234").ok());
  s.Complete("old", kT0);
  ASSERT_TRUE(s.Append("newer", 0, "5678").ok());
  s.Complete("newer", kT0 + absl::Seconds(1));
  ASSERT_TRUE(s.Append("live", 0, "abcd").ok());  // evicts "old"
  EXPECT_FALSE(s.Contains("old"));
  EXPECT_TRUE(s.Contains("newer"));
  EXPECT_EQ(s.TakeEvicted(), std::vector<std::string>{"old"});  // the engine drops its file
  EXPECT_TRUE(s.TakeEvicted().empty());
  ASSERT_TRUE(s.Append("live", 4, "ef").ok());  // 10 bytes total now
  EXPECT_EQ(s.total_bytes(), 10);
  ASSERT_TRUE(s.Append("live", 6, "gh").ok());  // evicts "newer"
  EXPECT_FALSE(s.Contains("newer"));
  EXPECT_EQ(s.TakeEvicted(), std::vector<std::string>{"newer"});
  absl::Status st = s.Append("live", 8, "ijklmn");  // nothing left to evict
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(s.Size("live"), 8);
}

v1::JobEvent Progress(int step) {
  v1::JobEvent e;
  e.mutable_progress()->set_step(step);
  return e;
}

TEST(JobEventLog, SequenceReplayAndChunkFilter) {
  JobEventLog log(100);
  EXPECT_EQ(log.Append(Progress(1)), 1);
  v1::JobEvent chunk;
  chunk.mutable_chunk()->set_offset(0);
  EXPECT_EQ(log.Append(chunk, 10), 2);
  EXPECT_EQ(log.Append(Progress(2)), 3);
  EXPECT_EQ(log.NextAfter(0, true)->event.seq(), 1);
  EXPECT_EQ(log.NextAfter(1, true)->event.seq(), 2);
  EXPECT_EQ(log.NextAfter(1, true)->chunk_size, 10);
  EXPECT_EQ(log.NextAfter(1, false)->event.seq(), 3);
  EXPECT_EQ(log.NextAfter(3, true), nullptr);
  log.DropChunkEvents();
  EXPECT_EQ(log.NextAfter(1, true)->event.seq(), 3);
  EXPECT_EQ(log.Append(Progress(3)), 4);  // numbering continues
}

TEST(JobEventLog, BoundedKeepsNewest) {
  JobEventLog log(3);
  for (int i = 1; i <= 5; ++i) log.Append(Progress(i));
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.first_retained_seq(), 3);
  EXPECT_EQ(log.NextAfter(0, false)->event.seq(), 3);  // replay starts at the oldest kept
  EXPECT_EQ(log.last_seq(), 5);
}

}  // namespace
}  // namespace sparsevid::front
