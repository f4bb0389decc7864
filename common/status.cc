#include "common/status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace sparsevid {
namespace {

int64_t Millis(absl::Duration d) {
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
}

}  // namespace

absl::Status WithRetryDelay(absl::Status status, absl::Duration delay) {
  if (status.ok()) return status;
  const int64_t ms = Millis(delay);
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(ms / 1000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
  absl::Status out(status.code(), absl::StrCat(status.message(),
                                               " (retry after ", ms, " ms)"));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  out.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return out;
}

std::optional<absl::Duration> GetRetryDelay(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryInfoTypeUrl);
  if (!payload) return std::nullopt;
  google::rpc::RetryInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  auto retry = status.GetPayload(kRetryInfoTypeUrl);
  if (!retry) return grpc::Status(code, message);
  google::rpc::Status rich;
  rich.set_code(static_cast<int>(code));
  rich.set_message(message);
  google::protobuf::Any* detail = rich.add_details();
  detail->set_type_url(kRetryInfoTypeUrl);
  detail->set_value(std::string(*retry));
  return grpc::Status(code, message, rich.SerializeAsString());
}

grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* context) {
  if (context != nullptr) {
    if (std::optional<absl::Duration> delay = GetRetryDelay(status)) {
      context->AddTrailingMetadata(kRetryPushbackTrailer,
                                   std::to_string(Millis(*delay)));
    }
  }
  return ToGrpcStatus(status);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  absl::Status out(code >= 0 && code <= 16 ? static_cast<absl::StatusCode>(code)
                                           : absl::StatusCode::kUnknown,
                   status.error_message());
  google::rpc::Status rich;
  if (!status.error_details().empty() &&
      rich.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& detail : rich.details()) {
      if (detail.type_url() == kRetryInfoTypeUrl) {
        out.SetPayload(kRetryInfoTypeUrl, absl::Cord(detail.value()));
      }
    }
  }
  return out;
}

}  // namespace sparsevid
