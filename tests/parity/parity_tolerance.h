// Tolerances of the parity tests (relative L2 error against the PyTorch
// reference, both sides fp32).
#pragma once

namespace sparsevid::parity {

// Same math, same precision, different summation order (OpenBLAS vs MKL/
// PyTorch kernels, blocked softmax): errors are ~1e-6; 1e-4 leaves room for
// accumulation over layers without hiding a wrong formula (a wrong sign,
// order or scale gives errors of order 1e-1).
constexpr double kFp32RelL2 = 1e-4;

}  // namespace sparsevid::parity
