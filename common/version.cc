#include "common/version.h"

#ifndef SPARSEVID_VERSION
#define SPARSEVID_VERSION "0.0.0"
#endif
#ifndef SPARSEVID_GIT_SHA
#define SPARSEVID_GIT_SHA "unknown"
#endif

namespace sparsevid {

const char* Version() { return SPARSEVID_VERSION; }
const char* GitSha() { return SPARSEVID_GIT_SHA; }
std::string VersionString() {
  return std::string("sparsevid ") + Version() + " (" + GitSha() + ")";
}

}  // namespace sparsevid
