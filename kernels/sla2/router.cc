#include "kernels/sla2/router.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

namespace sparsevid::kernels::sla2 {

double DecimalValue(float f) {
  // The shortest decimal that reads back as f is what the config file said
  // ("0.29"); parsed as a double it is the value Python multiplies with.
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return static_cast<double>(f);
}

int64_t KeptBlocksPerRow(float keep_ratio, int64_t T_n) {
  const double product = DecimalValue(keep_ratio) * static_cast<double>(T_n);
  const auto k = static_cast<int64_t>(std::floor(product));
  return std::max<int64_t>(1, std::min<int64_t>(T_n, k));
}

void MeanPoolBlocks(const float* x, int64_t L, int64_t d, int64_t block, float* pooled) {
  const int64_t blocks = NumBlocks(L, block);
  std::vector<double> acc(d);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * block, r1 = std::min(L, r0 + block);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < d; ++c) acc[c] += x[r * d + c];
    }
    for (int64_t c = 0; c < d; ++c) pooled[b * d + c] = static_cast<float>(acc[c] / (r1 - r0));
  }
}

void ProjectRows(const float* x, int64_t n, int64_t d, const float* w, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < d; ++o) {
      if (!w) {
        y[i * d + o] = x[i * d + o];
        continue;
      }
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += static_cast<double>(x[i * d + c]) * w[o * d + c];
      y[i * d + o] = static_cast<float>(s);
    }
  }
}

void TopKPerRow(const float* scores, int64_t T_m, int64_t T_n, int64_t k,
                std::vector<int32_t>* kept) {
  kept->resize(T_m * k);
  std::vector<int32_t> order(T_n);
  for (int64_t i = 0; i < T_m; ++i) {
    const float* row = scores + i * T_n;
    std::iota(order.begin(), order.end(), 0);
    // Strict weak order: higher score first, NaN last, then lower index.
    auto before = [row](int32_t a, int32_t b) {
      const bool na = std::isnan(row[a]), nb = std::isnan(row[b]);
      if (na != nb) return nb;
      if (!na && row[a] != row[b]) return row[a] > row[b];
      return a < b;
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
    std::sort(order.begin(), order.begin() + k);
    std::copy(order.begin(), order.begin() + k, kept->begin() + i * k);
  }
}

}  // namespace sparsevid::kernels::sla2
