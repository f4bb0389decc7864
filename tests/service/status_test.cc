#include "common/status.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace sparsevid {
namespace {

TEST(StatusMapping, CodesMapOneToOne) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const absl::StatusCode codes[] = {
      absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
      absl::StatusCode::kAlreadyExists, absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kCancelled,
      absl::StatusCode::kUnavailable, absl::StatusCode::kInternal,
      absl::StatusCode::kResourceExhausted};
  for (absl::StatusCode code : codes) {
    grpc::Status g = ToGrpcStatus(absl::Status(code, "msg"));
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(code));
    EXPECT_EQ(g.error_message(), "msg");
    EXPECT_TRUE(g.error_details().empty());
    absl::Status back = FromGrpcStatus(g);
    EXPECT_EQ(back.code(), code);
    EXPECT_EQ(back.message(), "msg");
  }
}

TEST(StatusMapping, RetryDelayTravelsAsRetryInfo) {
  absl::Status s = WithRetryDelay(absl::ResourceExhaustedError("queue is full"),
                                  absl::Milliseconds(2500));
  ASSERT_TRUE(GetRetryDelay(s).has_value());
  EXPECT_EQ(*GetRetryDelay(s), absl::Milliseconds(2500));
  EXPECT_NE(s.message().find("retry after 2500 ms"), absl::string_view::npos);

  grpc::Status g = ToGrpcStatus(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status rich;
  ASSERT_TRUE(rich.ParseFromString(g.error_details()));
  EXPECT_EQ(rich.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  ASSERT_EQ(rich.details_size(), 1);
  EXPECT_EQ(rich.details(0).type_url(), kRetryInfoTypeUrl);
  google::rpc::RetryInfo info;
  ASSERT_TRUE(rich.details(0).UnpackTo(&info));
  EXPECT_EQ(info.retry_delay().seconds(), 2);
  EXPECT_EQ(info.retry_delay().nanos(), 500000000);

  absl::Status back = FromGrpcStatus(g);
  ASSERT_TRUE(GetRetryDelay(back).has_value());
  EXPECT_EQ(*GetRetryDelay(back), absl::Milliseconds(2500));
}

TEST(StatusMapping, NoDelayOnPlainErrors) {
  EXPECT_FALSE(GetRetryDelay(absl::InternalError("x")).has_value());
  EXPECT_TRUE(WithRetryDelay(absl::OkStatus(), absl::Seconds(1)).ok());
}

}  // namespace
}  // namespace sparsevid
