// Build identity of every sparsevid binary (stamped by CMake at configure time).
#pragma once

#include <string>

namespace sparsevid {

// Semantic version of the project, e.g. "0.1.0".
const char* Version();
// Short git commit of the source tree, or "unknown" outside a git checkout.
const char* GitSha();
// "sparsevid <version> (<git sha>)".
std::string VersionString();

}  // namespace sparsevid
