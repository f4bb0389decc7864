#include "common/signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace sparsevid {
namespace {

// Write end used by the handler; read end by the watcher thread.
int g_pipe[2] = {-1, -1};

void OnSignal(int signo) {
  const int saved = errno;
  const char byte = static_cast<char>(signo);
  (void)!write(g_pipe[1], &byte, 1);  // async-signal-safe
  errno = saved;
}

constexpr char kStopByte = 0;

}  // namespace

SignalWatcher::SignalWatcher(Callback callback) : callback_(std::move(callback)) {}

SignalWatcher::~SignalWatcher() { Stop(); }

void SignalWatcher::Start() {
  if (thread_.joinable()) return;
  if (pipe2(g_pipe, O_CLOEXEC) != 0) return;
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  thread_ = std::thread([this] { Run(); });
}

void SignalWatcher::Stop() {
  if (!thread_.joinable()) return;
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  const char stop = kStopByte;
  (void)!write(g_pipe[1], &stop, 1);
  thread_.join();
  close(g_pipe[0]);
  close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

void SignalWatcher::Run() {
  while (true) {
    char byte = 0;
    const ssize_t n = read(g_pipe[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == kStopByte) return;
    if (callback_) callback_(static_cast<unsigned char>(byte));
  }
}

}  // namespace sparsevid
