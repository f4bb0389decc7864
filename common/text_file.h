// Whole small text files (key files, certificates): one reader, one error
// shape, "<what>: cannot read <path> (<reason>)".
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace sparsevid {

absl::StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& what);

}  // namespace sparsevid
