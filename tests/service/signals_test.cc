#include "common/signals.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace sparsevid {
namespace {

TEST(SignalWatcher, DeliversSigtermToCallbackFromAnyThread) {
  std::atomic<int> got{0};
  SignalWatcher watcher([&](int signo) { got = signo; });
  watcher.Start();
  std::thread([] { kill(getpid(), SIGTERM); }).join();
  for (int i = 0; i < 200 && got == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(got.load(), SIGTERM);
  watcher.Stop();  // default handling restored; stopping twice is fine
  watcher.Stop();
}

}  // namespace
}  // namespace sparsevid
