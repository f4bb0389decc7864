// SIGTERM / SIGINT handling without async-signal-safety traps: the signal
// handler only writes the signal number to a pipe; a watcher thread reads
// it and runs an ordinary callback (e.g. start draining). Works whichever
// thread the kernel delivers the signal to, so threads started before
// main (OpenBLAS) do not matter.
#pragma once

#include <functional>
#include <thread>

namespace sparsevid {

class SignalWatcher {
 public:
  // Called on the watcher thread for every SIGTERM or SIGINT received.
  using Callback = std::function<void(int signo)>;

  explicit SignalWatcher(Callback callback);
  ~SignalWatcher();  // stops the thread and restores default handling
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // Installs the handlers and starts the thread. One watcher per process.
  void Start();
  void Stop();

 private:
  void Run();

  Callback callback_;
  std::thread thread_;
};

}  // namespace sparsevid
