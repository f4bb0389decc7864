// CudaBackend::NewSpanTimer: spans timed by CUDA events recorded on the
// backend's stream, so timing a span adds no wait; the events are kept for
// the next spans once read.
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_backend_impl.h"

namespace sparsevid::kernels::cuda {
namespace {

class CudaSpanTimer final : public SpanTimer {
 public:
  explicit CudaSpanTimer(std::shared_ptr<CudaDevice> dev) : dev_(std::move(dev)) {}
  ~CudaSpanTimer() override {
    cudaSetDevice(dev_->index);
    for (auto& [b, e] : events_) {
      cudaEventDestroy(b);
      cudaEventDestroy(e);
    }
  }
  void Begin() override {
    SV_CHECK(!open_, "SpanTimer: Begin() twice without End()");
    if (used_ == events_.size()) {
      cudaEvent_t b = nullptr, e = nullptr;
      SV_CUDA_CHECK("SpanTimer", cudaSetDevice(dev_->index));
      SV_CUDA_CHECK("SpanTimer", cudaEventCreate(&b));
      SV_CUDA_CHECK("SpanTimer", cudaEventCreate(&e));
      events_.emplace_back(b, e);
    }
    SV_CUDA_CHECK("SpanTimer", cudaEventRecord(events_[used_].first, dev_->stream));
    open_ = true;
  }
  void End() override {
    SV_CHECK(open_, "SpanTimer: End() without Begin()");
    SV_CUDA_CHECK("SpanTimer", cudaEventRecord(events_[used_].second, dev_->stream));
    ++used_;
    open_ = false;
  }
  double TakeSeconds() override {
    SV_CHECK(!open_, "SpanTimer: TakeSeconds() inside a span");
    if (used_ == 0) return 0;
    SV_CUDA_CHECK("SpanTimer", cudaEventSynchronize(events_[used_ - 1].second));
    double ms = 0;
    for (size_t i = 0; i < used_; ++i) {
      float span = 0;
      SV_CUDA_CHECK("SpanTimer", cudaEventElapsedTime(&span, events_[i].first, events_[i].second));
      ms += span;
    }
    used_ = 0;
    return ms / 1000.0;
  }

 private:
  std::shared_ptr<CudaDevice> dev_;
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events_;
  size_t used_ = 0;
  bool open_ = false;
};

}  // namespace

std::unique_ptr<SpanTimer> CudaBackend::NewSpanTimer() {
  return std::make_unique<CudaSpanTimer>(dev_);
}

}  // namespace sparsevid::kernels::cuda
