// A tensor a model declares: its official name and shape. Models derive their
// full list from the config; the weight store checks files against it.
#pragma once

#include <string>
#include <vector>

#include "kernels/tensor.h"

namespace sparsevid::engine {

struct TensorSpec {
  std::string name;
  kernels::Shape shape;
};

using TensorSpecs = std::vector<TensorSpec>;

}  // namespace sparsevid::engine
