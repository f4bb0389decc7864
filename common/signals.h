// SIGTERM / SIGINT handling without async-signal-safety traps: the signals
// are blocked in every thread and one watcher thread receives them with
// sigtimedwait, then runs an ordinary callback (e.g. start draining).
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace sparsevid {

class SignalWatcher {
 public:
  // Called on the watcher thread for every SIGTERM or SIGINT received.
  using Callback = std::function<void(int signo)>;

  // Blocks SIGTERM and SIGINT in the calling thread, so call Start before
  // any other thread is created (new threads inherit the mask).
  explicit SignalWatcher(Callback callback);
  ~SignalWatcher();  // stops and joins the watcher thread
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  void Start();
  void Stop();

 private:
  void Run();

  Callback callback_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sparsevid
