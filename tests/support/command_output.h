// Test helper: runs a shell command (ffprobe, ffmpeg, sha256sum) and returns
// what it wrote to stdout. Header-only so tests in any folder can use it
// without another library.
#pragma once

#include <cstdio>
#include <string>

namespace sparsevid::testing_support {

// stdout of `cmd`, or "" when it cannot be started.
inline std::string CommandOutput(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  return out;
}

}  // namespace sparsevid::testing_support
