// A callback registration that can be revoked safely from another thread:
// after Cancel() returns, the callback is not running and never runs again.
// The engine calls Notify() outside its own lock, so a callback may call
// back into the engine.
#pragma once

#include <functional>
#include <mutex>

namespace sparsevid::front {

class Subscription {
 public:
  explicit Subscription(std::function<void()> callback)
      : callback_(std::move(callback)) {}

  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    if (callback_) callback_();
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    callback_ = nullptr;
  }

 private:
  std::mutex mu_;  // held while the callback runs, so Cancel waits for it
  std::function<void()> callback_;
};

}  // namespace sparsevid::front
