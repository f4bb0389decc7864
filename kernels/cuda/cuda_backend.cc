#include "kernels/cuda/cuda_backend.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_backend_ops.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cuda {

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device_index) {
  if (device_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device index must be >= 0, got ", device_index));
  }
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return absl::FailedPreconditionError(absl::StrCat(
        "no usable CUDA device for cuda:", device_index, " (",
        e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices", ")"));
  }
  if (device_index >= count) {
    return absl::InvalidArgumentError(absl::StrCat("cuda:", device_index, " requested but only ",
                                                   count, " CUDA device(s) present"));
  }
  auto dev = std::make_shared<CudaDevice>();
  dev->index = device_index;
  cudaDeviceProp prop{};
  cudaError_t st = cudaSetDevice(device_index);
  if (st == cudaSuccess) st = cudaGetDeviceProperties(&prop, device_index);
  if (st == cudaSuccess) {
    const cudaError_t image = ProbeKernelImage();
    if (image != cudaSuccess) {
      cudaGetLastError();
      return absl::FailedPreconditionError(absl::StrCat(
          "cuda:", device_index, " is a ", prop.name, " (compute capability ", prop.major, ".",
          prop.minor, "), which this build's kernels do not support (built for Hopper sm_90a: "
          "H100/H200): ", cudaGetErrorString(image)));
    }
  }
  if (st == cudaSuccess) st = cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking);
  if (st == cudaSuccess) {
    // Keep freed blocks in the pool (a caching allocator) instead of
    // returning them to the driver at every synchronisation.
    cudaMemPool_t pool;
    st = cudaDeviceGetDefaultMemPool(&pool, device_index);
    uint64_t keep_all = UINT64_MAX;
    if (st == cudaSuccess) st = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all);
  }
  if (st != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start CUDA device ", device_index, ": ", cudaGetErrorString(st)));
  }
  const cublasStatus_t cs = cublasCreate(&dev->cublas);
  if (cs == CUBLAS_STATUS_SUCCESS) cublasSetStream(dev->cublas, dev->stream);
  if (cs != CUBLAS_STATUS_SUCCESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start cuBLAS on CUDA device ", device_index, ": ",
                     cublasGetStatusString(cs)));
  }
  std::string name = absl::StrCat("cuda:", device_index, " (", prop.name, ")");
  return std::unique_ptr<Backend>(new CudaBackend(std::move(dev), std::move(name)));
}

namespace {

// Messages of the shared shape contract start with this (op_shapes.h).
constexpr char kWho[] = "CudaBackend ";

void CheckF32(const Tensor& t, const char* op) {
  CheckDevice(t, op);
  op_shapes::CheckF32(kWho, t, op);
}

void CheckSameSize(const Tensor& a, const Tensor& b, const char* op) {
  CheckDevice(a, op);
  CheckDevice(b, op);
  op_shapes::CheckSameSize(kWho, a, b, op);
}

// A per-channel f32 device vector of d elements (Modulate, AddGated).
const float* RowParam(const Tensor& p, int64_t d, const char* what) {
  CheckDevice(p, what);
  op_shapes::CheckRowParam(kWho, p, d, what);
  return p.f32();
}

}  // namespace

CudaBackend::CudaBackend(std::shared_ptr<CudaDevice> dev, std::string device_name)
    : dev_(std::move(dev)), name_(std::move(device_name)) {}

CudaBackend::~CudaBackend() {
  pending_stats_.clear();  // their owners may be gone by now
  Synchronize();
}

Tensor CudaBackend::Empty(const Shape& shape, DType dtype) {
  return Scratch(shape, dtype, "Empty");
}

Tensor CudaBackend::ToDevice(const Tensor& host) {
  SV_CHECK(host.defined(), "CudaBackend ToDevice: undefined tensor");
  if (host.device() == DeviceKind::kCuda) return host;
  Tensor t = Scratch(host.shape(), host.dtype(), "ToDevice");
  // From pageable memory the copy is staged before this returns, so the
  // host tensor may be released right after.
  if (t.nbytes()) {
    SV_CUDA_CHECK("ToDevice", cudaMemcpyAsync(t.raw(), host.raw(), t.nbytes(),
                                              cudaMemcpyHostToDevice, stream()));
  }
  return t;
}

Tensor CudaBackend::ToHost(const Tensor& t) {
  SV_CHECK(t.defined(), "CudaBackend ToHost: undefined tensor");
  Tensor host = Tensor::Empty(t.shape(), t.dtype());
  if (t.nbytes()) {
    SV_CUDA_CHECK("ToHost", cudaMemcpyAsync(host.raw(), t.raw(), t.nbytes(), cudaMemcpyDefault,
                                            stream()));
  }
  Synchronize();
  return host;
}

void CudaBackend::Copy(const Tensor& src, Tensor& dst) {
  SV_CHECK(src.numel() == dst.numel() && src.dtype() == dst.dtype(),
           "CudaBackend Copy %s %s -> %s %s", ShapeString(src.shape()).c_str(),
           DTypeName(src.dtype()), ShapeString(dst.shape()).c_str(), DTypeName(dst.dtype()));
  if (!src.nbytes() || src.raw() == dst.raw()) return;
  const char* s = static_cast<const char*>(src.raw());
  const char* d = static_cast<const char*>(dst.raw());
  SV_CHECK(s + src.nbytes() <= d || d + dst.nbytes() <= s,
           "CudaBackend Copy: source and destination overlap partially");
  SV_CUDA_CHECK("Copy", cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDefault,
                                        stream()));
  // A host side must be complete before the caller touches it.
  if (src.device() == DeviceKind::kCpu || dst.device() == DeviceKind::kCpu) Synchronize();
}

void CudaBackend::Fill(Tensor& dst, float value) {
  CheckDevice(dst, "Fill");
  uint32_t pattern = 0;
  switch (dst.dtype()) {
    case DType::kF32: std::memcpy(&pattern, &value, 4); break;
    case DType::kBF16: pattern = FloatToBf16(value); break;
    case DType::kF16: pattern = FloatToF16(value); break;
    case DType::kI32: pattern = static_cast<uint32_t>(static_cast<int32_t>(std::lrint(value))); break;
    case DType::kI8:
    case DType::kU8:
      SV_CHECK(dst.dtype() == DType::kU8 ? (value >= 0 && value <= 255)
                                         : (value >= -128 && value <= 127),
               "CudaBackend Fill value %g does not fit %s", value, DTypeName(dst.dtype()));
      pattern = static_cast<uint32_t>(std::lrint(value)) & 0xffu;
      break;
  }
  LaunchFillPattern(dst.raw(), static_cast<int>(DTypeSize(dst.dtype())), pattern, dst.numel(),
                    stream());
  CheckLaunch("Fill");
}

Tensor CudaBackend::ToF32(const Tensor& t) {
  CheckDevice(t, "ToF32");
  Tensor out = Scratch(t.shape(), DType::kF32, "ToF32");
  LaunchToF32(t.raw(), t.dtype(), out.f32(), t.numel(), stream());
  CheckLaunch("ToF32");
  return out;
}

Tensor CudaBackend::AsF32(const Tensor& t, const char* op) {
  CheckDevice(t, op);
  if (t.dtype() == DType::kF32) return t;
  Tensor out = Scratch(t.shape(), DType::kF32, op);
  LaunchToF32(t.raw(), t.dtype(), out.f32(), t.numel(), stream());
  CheckLaunch(op);
  return out;
}

void CudaBackend::Synchronize() {
  SV_CUDA_CHECK("Synchronize", cudaStreamSynchronize(stream()));
  CompleteSla2Stats();
}

void CudaBackend::LayerNorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                            Tensor& y) {
  CheckSameSize(x, y, "LayerNorm");
  const int64_t d = x.dim(-1);
  op_shapes::CheckNormParam(kWho, gamma, d, "LayerNorm gamma");
  op_shapes::CheckNormParam(kWho, beta, d, "LayerNorm beta");
  Tensor g, b;
  if (gamma) g = AsF32(*gamma, "LayerNorm");
  if (beta) b = AsF32(*beta, "LayerNorm");
  LaunchLayerNorm(x.f32(), gamma ? g.f32() : nullptr, beta ? b.f32() : nullptr, eps, y.f32(),
                  d ? x.numel() / d : 0, d, stream());
  CheckLaunch("LayerNorm");
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  CheckSameSize(x, y, "RmsNorm");
  const int64_t d = x.dim(-1);
  op_shapes::CheckNormParam(kWho, gamma, d, "RmsNorm gamma");
  Tensor g;
  if (gamma) g = AsF32(*gamma, "RmsNorm");
  LaunchRmsNorm(x.f32(), gamma ? g.f32() : nullptr, eps, y.f32(), d ? x.numel() / d : 0, d,
                stream());
  CheckLaunch("RmsNorm");
}

void CudaBackend::ChannelRmsNorm(const Tensor& x, const Tensor& gamma, Tensor& y) {
  CheckSameSize(x, y, "ChannelRmsNorm");
  const int64_t c = op_shapes::CheckChannelRmsNorm(kWho, x, gamma);
  const Tensor g = AsF32(gamma, "ChannelRmsNorm");
  LaunchChannelRmsNorm(x.f32(), g.f32(), y.f32(), c, c ? x.numel() / c : 0, stream());
  CheckLaunch("ChannelRmsNorm");
}

void CudaBackend::GeluTanh(const Tensor& x, Tensor& y) {
  CheckSameSize(x, y, "GeluTanh");
  LaunchUnary(UnaryOp::kGeluTanh, x.f32(), y.f32(), x.numel(), 0, 0, stream());
  CheckLaunch("GeluTanh");
}

void CudaBackend::Silu(const Tensor& x, Tensor& y) {
  CheckSameSize(x, y, "Silu");
  LaunchUnary(UnaryOp::kSilu, x.f32(), y.f32(), x.numel(), 0, 0, stream());
  CheckLaunch("Silu");
}

void CudaBackend::Scale(const Tensor& x, float s, Tensor& y) {
  CheckSameSize(x, y, "Scale");
  LaunchUnary(UnaryOp::kScale, x.f32(), y.f32(), x.numel(), s, 0, stream());
  CheckLaunch("Scale");
}

void CudaBackend::Clamp(const Tensor& x, float lo, float hi, Tensor& y) {
  CheckSameSize(x, y, "Clamp");
  SV_CHECK(lo <= hi, "CudaBackend Clamp: lo %g > hi %g", lo, hi);
  LaunchUnary(UnaryOp::kClamp, x.f32(), y.f32(), x.numel(), lo, hi, stream());
  CheckLaunch("Clamp");
}

void CudaBackend::Add(const Tensor& a, const Tensor& b, Tensor& y) {
  CheckSameSize(a, b, "Add");
  CheckSameSize(a, y, "Add");
  LaunchBinary(BinaryOp::kAdd, a.f32(), b.f32(), y.f32(), a.numel(), stream());
  CheckLaunch("Add");
}

void CudaBackend::Mul(const Tensor& a, const Tensor& b, Tensor& y) {
  CheckSameSize(a, b, "Mul");
  CheckSameSize(a, y, "Mul");
  LaunchBinary(BinaryOp::kMul, a.f32(), b.f32(), y.f32(), a.numel(), stream());
  CheckLaunch("Mul");
}

void CudaBackend::Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) {
  CheckSameSize(x, y, "Modulate");
  const int64_t d = x.dim(-1);
  const float* sh = RowParam(shift, d, "Modulate shift");
  const float* sc = RowParam(scale, d, "Modulate scale");
  LaunchModulate(x.f32(), sh, sc, y.f32(), d ? x.numel() / d : 0, d, stream());
  CheckLaunch("Modulate");
}

void CudaBackend::AddGated(Tensor& x, const Tensor& y, const Tensor* gate) {
  CheckSameSize(x, y, "AddGated");
  const int64_t d = x.dim(-1);
  const float* g = gate ? RowParam(*gate, d, "AddGated gate") : nullptr;
  LaunchAddGated(x.f32(), y.f32(), g, d ? x.numel() / d : 0, d, stream());
  CheckLaunch("AddGated");
}

void CudaBackend::Softmax(const Tensor& x, Tensor& y) {
  CheckSameSize(x, y, "Softmax");
  const int64_t d = x.dim(-1);
  LaunchSoftmax(x.f32(), y.f32(), 1, d ? x.numel() / d : 0, d, nullptr, 0, 0, stream());
  CheckLaunch("Softmax");
}

void CudaBackend::Permute(const Tensor& x, const std::vector<int>& perm, Tensor& y) {
  CheckDevice(x, "Permute");
  CheckDevice(y, "Permute");
  const op_shapes::PermuteGeometry g = op_shapes::CheckPermute(kWho, x, perm, y);
  const int n = x.ndim();
  SV_CHECK(n <= kMaxPermuteDims, "CudaBackend Permute: %d dims (at most %d)", n, kMaxPermuteDims);
  if (x.numel() == 0) return;
  PermuteDims dims;
  dims.ndim = n;
  for (int i = 0; i < n; ++i) {
    dims.out_shape[i] = g.out_shape[i];
    dims.in_stride[i] = g.in_stride[i];
  }
  LaunchPermute(x.raw(), y.raw(), static_cast<int>(DTypeSize(x.dtype())), dims, x.numel(),
                stream());
  CheckLaunch("Permute");
}

void CudaBackend::Concat(const std::vector<Tensor>& xs, int dim, Tensor& y) {
  CheckDevice(y, "Concat");
  for (const Tensor& x : xs) CheckDevice(x, "Concat");
  const op_shapes::ConcatGeometry g = op_shapes::CheckConcat(kWho, xs, dim, y);
  char* dst = static_cast<char*>(y.raw());
  size_t col = 0;  // byte offset of the current input inside an output row
  for (size_t i = 0; i < xs.size(); ++i) {
    const size_t row = g.row_bytes[i];
    if (row > 0 && g.outer > 0) {
      SV_CUDA_CHECK("Concat", cudaMemcpy2DAsync(dst + col, g.out_row_bytes, xs[i].raw(), row, row,
                                                g.outer, cudaMemcpyDeviceToDevice, stream()));
    }
    col += row;
  }
}

void CudaBackend::Embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  CheckDevice(table, "Embedding");
  CheckDevice(y, "Embedding");
  const int64_t d = op_shapes::CheckEmbedding(kWho, table, ids, y).d;
  SV_CHECK(table.dtype() == DType::kF32 || table.dtype() == DType::kBF16 ||
               table.dtype() == DType::kF16,
           "CudaBackend Embedding: table dtype %s", DTypeName(table.dtype()));
  if (ids.empty() || d == 0) return;
  Tensor ids_dev = Scratch({static_cast<int64_t>(ids.size())}, DType::kI32, "Embedding");
  SV_CUDA_CHECK("Embedding", cudaMemcpyAsync(ids_dev.raw(), ids.data(), ids.size() * sizeof(int32_t),
                                             cudaMemcpyHostToDevice, stream()));
  LaunchEmbedding(table.raw(), table.dtype(), ids_dev.data<int32_t>(), y.f32(),
                  static_cast<int64_t>(ids.size()), d, stream());
  CheckLaunch("Embedding");
}

void CudaBackend::Rope3d(Tensor& x, const TokenGrid& grid) {
  CheckF32(x, "Rope3d");
  const op_shapes::RopeDims dims = op_shapes::CheckRope3d(kWho, x, grid);
  const int64_t L = dims.tokens, heads = dims.heads, d = dims.head_dim;
  LaunchRope3d(x.f32(), L, heads, d, grid.height, grid.width, stream());
  CheckLaunch("Rope3d");
}

void CudaBackend::UpsampleNearest2x(const Tensor& x, Tensor& y) {
  CheckF32(x, "UpsampleNearest2x");
  CheckF32(y, "UpsampleNearest2x");
  const op_shapes::UpsampleDims dims = op_shapes::CheckUpsampleNearest2x(kWho, x, y);
  LaunchUpsampleNearest2x(x.f32(), y.f32(), dims.planes, dims.h, dims.w, stream());
  CheckLaunch("UpsampleNearest2x");
}

}  // namespace sparsevid::kernels::cuda
