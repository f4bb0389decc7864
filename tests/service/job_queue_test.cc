#include "server/job_queue.h"

#include "gtest/gtest.h"

namespace sparsevid::front {
namespace {

TEST(JobQueue, HigherPriorityFirstFifoWithin) {
  JobQueue q(10);
  ASSERT_TRUE(q.Push("a", 0, 1).ok());
  ASSERT_TRUE(q.Push("b", 5, 2).ok());
  ASSERT_TRUE(q.Push("c", 0, 3).ok());
  ASSERT_TRUE(q.Push("d", 5, 4).ok());
  ASSERT_TRUE(q.Push("e", 9, 5).ok());
  EXPECT_EQ(q.Ordered(), (std::vector<std::string>{"e", "b", "d", "a", "c"}));
  EXPECT_EQ(q.Position("e"), 1);
  EXPECT_EQ(q.Position("c"), 5);
  EXPECT_EQ(q.Position("zz"), 0);
  EXPECT_EQ(q.Pop(), "e");
  EXPECT_EQ(q.Pop(), "b");
  EXPECT_EQ(q.Position("a"), 2);
}

TEST(JobQueue, CapacityIsEnforcedExceptForRequeue) {
  JobQueue q(2);
  ASSERT_TRUE(q.Push("a", 0, 1).ok());
  ASSERT_TRUE(q.Push("b", 0, 2).ok());
  EXPECT_TRUE(q.full());
  absl::Status s = q.Push("c", 0, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  // A requeued job keeps its admission order: it goes ahead of later ones.
  ASSERT_TRUE(q.Push("x", 0, 0, /*ignore_capacity=*/true).ok());
  EXPECT_EQ(q.size(), 3);
  EXPECT_EQ(q.Pop(), "x");
  EXPECT_EQ(q.Push("a", 0, 9).code(), absl::StatusCode::kAlreadyExists);
}

TEST(JobQueue, RemoveAndPopFirst) {
  JobQueue q(5);
  ASSERT_TRUE(q.Push("a", 0, 1).ok());
  ASSERT_TRUE(q.Push("b", 0, 2).ok());
  ASSERT_TRUE(q.Push("c", 0, 3).ok());
  EXPECT_TRUE(q.Remove("b"));
  EXPECT_FALSE(q.Remove("b"));
  EXPECT_EQ(q.PopFirst([](const std::string& id) { return id == "c"; }), "c");
  EXPECT_EQ(q.PopFirst([](const std::string&) { return false; }), "");
  EXPECT_EQ(q.Pop(), "a");
  EXPECT_EQ(q.Pop(), "");
}

}  // namespace
}  // namespace sparsevid::front
