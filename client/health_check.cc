#include "client/health_check.h"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"

namespace sparsevid::client {

const char* HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kServing: return "SERVING";
    case HealthStatus::kNotServing: return "NOT_SERVING";
    case HealthStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
}

absl::StatusOr<HealthStatus> CheckHealth(const std::string& address, const std::string& service,
                                         std::chrono::milliseconds timeout,
                                         std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (service.size() > 127) return absl::InvalidArgumentError("service name too long");
  auto channel =
      grpc::CreateChannel(address, credentials ? credentials : grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  // HealthCheckRequest{string service = 1}: tag 0x0a, length, bytes.
  std::string request;
  if (!service.empty()) {
    request.push_back(0x0a);
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::Status rpc_status;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer,
                 &response_buffer, [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   rpc_status = std::move(s);
                   done = true;
                   cv.notify_all();
                 });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (!rpc_status.ok()) return FromGrpcStatus(rpc_status);
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) return absl::InternalError("unreadable health answer");
  std::string response;
  for (const auto& s : slices) response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{ServingStatus status = 1}: tag 0x08, varint; an
  // empty message means 0 (UNKNOWN).
  if (response.empty()) return HealthStatus::kUnknown;
  if (response.size() < 2 || response[0] != 0x08 || response[1] < 0 || response[1] > 3) {
    return absl::InternalError("malformed health answer");
  }
  return static_cast<HealthStatus>(response[1]);
}

absl::StatusOr<HealthStatus> WaitForServing(const std::string& address, const std::string& service,
                                            std::chrono::milliseconds timeout,
                                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::StatusOr<HealthStatus> last = absl::UnavailableError(absl::StrCat(address, " not checked"));
  while (true) {
    last = CheckHealth(address, service, std::chrono::milliseconds(1000), credentials);
    if (last.ok() && *last == HealthStatus::kServing) return last;
    if (std::chrono::steady_clock::now() >= deadline) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace sparsevid::client
