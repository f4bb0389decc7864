#include "common/signals.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <utility>

namespace sparsevid {
namespace {

sigset_t WatchedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

SignalWatcher::SignalWatcher(Callback callback)
    : callback_(std::move(callback)) {}

SignalWatcher::~SignalWatcher() { Stop(); }

void SignalWatcher::Start() {
  if (thread_.joinable()) return;
  sigset_t set = WatchedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void SignalWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void SignalWatcher::Run() {
  const sigset_t set = WatchedSignals();
  // A short timeout lets Stop() end the thread without sending a signal.
  const timespec poll{0, 100 * 1000 * 1000};
  while (!stop_) {
    const int signo = sigtimedwait(&set, nullptr, &poll);
    if (signo > 0 && callback_) callback_(signo);
  }
}

}  // namespace sparsevid
