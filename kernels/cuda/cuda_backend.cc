#include "kernels/cuda/cuda_backend.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_backend_ops.h"

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

void CheckF32(const Tensor& t, const char* op) {
  CheckDevice(t, op);
  SV_CHECK(t.dtype() == DType::kF32, "CudaBackend %s: f32 tensors only, got %s", op,
           DTypeName(t.dtype()));
}

void CheckSameSize(const Tensor& a, const Tensor& b, const char* op) {
  CheckF32(a, op);
  CheckF32(b, op);
  SV_CHECK(a.numel() == b.numel(), "CudaBackend %s: %s vs %s", op, ShapeString(a.shape()).c_str(),
           ShapeString(b.shape()).c_str());
}

// A per-channel f32 device vector of d elements (Modulate, AddGated).
const float* RowParam(const Tensor& p, int64_t d, const char* what) {
  CheckF32(p, what);
  SV_CHECK(p.numel() == d, "CudaBackend %s has shape %s, expected %lld elements", what,
           ShapeString(p.shape()).c_str(), static_cast<long long>(d));
  return p.f32();
}

}  // namespace

CudaBackend::CudaBackend(std::shared_ptr<CudaDevice> dev, std::string device_name)
    : dev_(std::move(dev)), name_(std::move(device_name)) {}

CudaBackend::~CudaBackend() { Synchronize(); }

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
}

void CudaBackend::LayerNorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                            Tensor& y) {
  CheckSameSize(x, y, "LayerNorm");
  const int64_t d = x.dim(-1);
  Tensor g, b;
  if (gamma) {
    SV_CHECK(gamma->numel() == d, "CudaBackend LayerNorm gamma: %lld elements for d=%lld",
             static_cast<long long>(gamma->numel()), static_cast<long long>(d));
    g = AsF32(*gamma, "LayerNorm");
  }
  if (beta) {
    SV_CHECK(beta->numel() == d, "CudaBackend LayerNorm beta: %lld elements for d=%lld",
             static_cast<long long>(beta->numel()), static_cast<long long>(d));
    b = AsF32(*beta, "LayerNorm");
  }
  LaunchLayerNorm(x.f32(), gamma ? g.f32() : nullptr, beta ? b.f32() : nullptr, eps, y.f32(),
                  d ? x.numel() / d : 0, d, stream());
  CheckLaunch("LayerNorm");
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  CheckSameSize(x, y, "RmsNorm");
  const int64_t d = x.dim(-1);
  Tensor g;
  if (gamma) {
    SV_CHECK(gamma->numel() == d, "CudaBackend RmsNorm gamma: %lld elements for d=%lld",
             static_cast<long long>(gamma->numel()), static_cast<long long>(d));
    g = AsF32(*gamma, "RmsNorm");
  }
  LaunchRmsNorm(x.f32(), gamma ? g.f32() : nullptr, eps, y.f32(), d ? x.numel() / d : 0, d,
                stream());
  CheckLaunch("RmsNorm");
}

void CudaBackend::ChannelRmsNorm(const Tensor& x, const Tensor& gamma, Tensor& y) {
  CheckSameSize(x, y, "ChannelRmsNorm");
  SV_CHECK(x.ndim() >= 1, "CudaBackend ChannelRmsNorm of a scalar");
  const int64_t c = x.dim(0);
  SV_CHECK(gamma.numel() == c, "CudaBackend ChannelRmsNorm gamma: %lld elements for %lld channels",
           static_cast<long long>(gamma.numel()), static_cast<long long>(c));
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
  const int n = x.ndim();
  SV_CHECK(static_cast<int>(perm.size()) == n,
           "CudaBackend Permute: perm of size %zu for a %d-d tensor", perm.size(), n);
  SV_CHECK(n <= kMaxPermuteDims, "CudaBackend Permute: %d dims (at most %d)", n, kMaxPermuteDims);
  SV_CHECK(x.dtype() == y.dtype(), "CudaBackend Permute: dtype mismatch");
  std::vector<bool> seen(n, false);
  Shape expect(n);
  for (int i = 0; i < n; ++i) {
    SV_CHECK(perm[i] >= 0 && perm[i] < n && !seen[perm[i]], "CudaBackend Permute: invalid perm");
    seen[perm[i]] = true;
    expect[i] = x.shape()[perm[i]];
  }
  SV_CHECK(y.shape() == expect, "CudaBackend Permute: y %s, expected %s",
           ShapeString(y.shape()).c_str(), ShapeString(expect).c_str());
  if (x.numel() == 0) return;
  SV_CHECK(x.raw() != y.raw(), "CudaBackend Permute cannot run in place");
  PermuteDims dims;
  dims.ndim = n;
  std::vector<int64_t> istride(n, 1);
  for (int i = n - 2; i >= 0; --i) istride[i] = istride[i + 1] * x.shape()[i + 1];
  for (int i = 0; i < n; ++i) {
    dims.out_shape[i] = expect[i];
    dims.in_stride[i] = istride[perm[i]];
  }
  LaunchPermute(x.raw(), y.raw(), static_cast<int>(DTypeSize(x.dtype())), dims, x.numel(),
                stream());
  CheckLaunch("Permute");
}

void CudaBackend::Concat(const std::vector<Tensor>& xs, int dim, Tensor& y) {
  SV_CHECK(!xs.empty(), "CudaBackend Concat of no tensors");
  CheckDevice(y, "Concat");
  const int n = y.ndim();
  const int d = dim < 0 ? dim + n : dim;
  SV_CHECK(d >= 0 && d < n, "CudaBackend Concat: dim %d for a %d-d output", dim, n);
  int64_t total = 0;
  for (const Tensor& x : xs) {
    CheckDevice(x, "Concat");
    SV_CHECK(x.ndim() == n && x.dtype() == y.dtype(),
             "CudaBackend Concat: input %s %s vs output %s %s", ShapeString(x.shape()).c_str(),
             DTypeName(x.dtype()), ShapeString(y.shape()).c_str(), DTypeName(y.dtype()));
    for (int i = 0; i < n; ++i) {
      SV_CHECK(i == d || x.shape()[i] == y.shape()[i], "CudaBackend Concat: input %s vs output %s",
               ShapeString(x.shape()).c_str(), ShapeString(y.shape()).c_str());
    }
    total += x.shape()[d];
  }
  SV_CHECK(total == y.shape()[d],
           "CudaBackend Concat: sizes along dim %d sum to %lld, output has %lld", d,
           static_cast<long long>(total), static_cast<long long>(y.shape()[d]));
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= y.shape()[i];
  for (int i = d + 1; i < n; ++i) inner *= y.shape()[i];
  const size_t es = DTypeSize(y.dtype());
  const size_t out_row = static_cast<size_t>(y.shape()[d] * inner) * es;
  char* dst = static_cast<char*>(y.raw());
  size_t col = 0;  // byte offset of the current input inside an output row
  for (const Tensor& x : xs) {
    const size_t row = static_cast<size_t>(x.shape()[d] * inner) * es;
    if (row > 0 && outer > 0) {
      SV_CUDA_CHECK("Concat", cudaMemcpy2DAsync(dst + col, out_row, x.raw(), row, row, outer,
                                                cudaMemcpyDeviceToDevice, stream()));
    }
    col += row;
  }
}

void CudaBackend::Embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  CheckDevice(table, "Embedding");
  CheckDevice(y, "Embedding");
  SV_CHECK(table.ndim() == 2, "CudaBackend Embedding: table %s must be 2-d",
           ShapeString(table.shape()).c_str());
  SV_CHECK(table.dtype() == DType::kF32 || table.dtype() == DType::kBF16 ||
               table.dtype() == DType::kF16,
           "CudaBackend Embedding: table dtype %s", DTypeName(table.dtype()));
  const int64_t vocab = table.dim(0), d = table.dim(1);
  SV_CHECK(y.dtype() == DType::kF32 && y.numel() == static_cast<int64_t>(ids.size()) * d,
           "CudaBackend Embedding: y %s for %zu ids of width %lld", ShapeString(y.shape()).c_str(),
           ids.size(), static_cast<long long>(d));
  for (int32_t id : ids) {
    SV_CHECK(id >= 0 && id < vocab, "CudaBackend Embedding: id %d outside the table of %lld rows",
             id, static_cast<long long>(vocab));
  }
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
  SV_CHECK(x.ndim() == 3, "CudaBackend Rope3d: x %s must be [L, H, d]",
           ShapeString(x.shape()).c_str());
  const int64_t L = x.dim(0), heads = x.dim(1), d = x.dim(2);
  SV_CHECK(L == grid.tokens(), "CudaBackend Rope3d: %lld tokens vs grid %lldx%lldx%lld",
           static_cast<long long>(L), static_cast<long long>(grid.frames),
           static_cast<long long>(grid.height), static_cast<long long>(grid.width));
  SV_CHECK(d % 2 == 0, "CudaBackend Rope3d: odd head dim %lld", static_cast<long long>(d));
  LaunchRope3d(x.f32(), L, heads, d, grid.height, grid.width, stream());
  CheckLaunch("Rope3d");
}

void CudaBackend::UpsampleNearest2x(const Tensor& x, Tensor& y) {
  CheckF32(x, "UpsampleNearest2x");
  CheckF32(y, "UpsampleNearest2x");
  SV_CHECK(x.ndim() == 4, "CudaBackend UpsampleNearest2x: x %s must be [C, T, H, W]",
           ShapeString(x.shape()).c_str());
  const int64_t h = x.dim(2), w = x.dim(3);
  SV_CHECK((y.shape() == Shape{x.dim(0), x.dim(1), 2 * h, 2 * w}),
           "CudaBackend UpsampleNearest2x: y %s for x %s", ShapeString(y.shape()).c_str(),
           ShapeString(x.shape()).c_str());
  LaunchUpsampleNearest2x(x.f32(), y.f32(), x.dim(0) * x.dim(1), h, w, stream());
  CheckLaunch("UpsampleNearest2x");
}

}  // namespace sparsevid::kernels::cuda
