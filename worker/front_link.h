// The worker's end of WorkerLink.Connect: dials the front, announces itself
// (Hello with model limits, then Ready with free slots), runs the Assign /
// Cancel messages it receives through the JobRunner and sends the jobs'
// events back. When the stream breaks (front restart, network), jobs in
// progress are cancelled (the front requeues or fails them) and the link
// re-dials with exponential backoff until stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "sparsevid/v1/worker_link.grpc.pb.h"
#include "worker/job_runner.h"
#include "worker/worker_metrics.h"

namespace sparsevid::worker {

struct FrontLinkOptions {
  std::string front_address;  // host:port of the front's worker listener
  v1::WorkerHello hello;      // sent first on every connection
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
  // Keepalive pings so a front that vanished without closing the TCP
  // connection is noticed while a multi-minute job is running.
  std::chrono::milliseconds keepalive_time{20000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // Sent as `authorization: Bearer <key>` (a worker-role key of the front's
  // auth.api_keys_file). With api_key_file set, the file is re-read on every
  // dial, so a rotated Secret is picked up at the next reconnect.
  std::string api_key;
  std::string api_key_file;
  // TLS to the front (common/tls_credentials.h); null = plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

class FrontLink {
 public:
  // Called with true when a stream is established and false when it ends.
  using ConnectionCallback = std::function<void(bool connected)>;

  FrontLink(FrontLinkOptions options, WorkerMetrics* metrics, ConnectionCallback on_connection);
  ~FrontLink();  // Stop()
  FrontLink(const FrontLink&) = delete;
  FrontLink& operator=(const FrontLink&) = delete;

  // Starts the dial loop on its own thread. runner must outlive the link.
  void Start(JobRunner* runner);
  // Closes the stream and joins the threads; jobs still running are cancelled.
  void Stop();

  // JobRunner callbacks (any thread; never block on the network).
  void OnJobEvent(const std::string& job_id, v1::JobEvent event);
  void OnSlotFree(int free_slots);

  // Advertise zero free slots from now on (draining before exit).
  void StopAcceptingJobs();

  bool connected() const { return connected_.load(); }

 private:
  void DialLoop();
  // Runs one connection until it breaks; returns true if it was established.
  bool RunConnection();
  // UNAUTHENTICATED / PERMISSION_DENIED: the front refused this worker's key.
  static bool IsKeyRefusal(const grpc::Status& st);
  void LogKeyRefusal(const grpc::Status& st) const;
  void WriterLoop(grpc::ClientReaderWriter<v1::WorkerMessage, v1::FrontMessage>* stream,
                  grpc::ClientContext* context);
  void Enqueue(v1::WorkerMessage msg);
  void HandleAssign(const v1::Assign& assign);

  FrontLinkOptions options_;
  WorkerMetrics* metrics_;
  ConnectionCallback on_connection_;
  JobRunner* runner_ = nullptr;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerLink::Stub> stub_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::WorkerMessage> outbox_;  // guarded by mu_, per connection
  std::set<std::string> active_jobs_;     // guarded by mu_: assigned on this connection
  bool stream_open_ = false;              // guarded by mu_
  bool stopping_ = false;                 // guarded by mu_
  grpc::ClientContext* live_context_ = nullptr;  // guarded by mu_
  std::atomic<bool> accepting_{true};
  std::atomic<bool> connected_{false};
  std::thread dial_thread_;
};

}  // namespace sparsevid::worker
