// SV_CHECK: internal invariants (bugs), not user input. User input is
// validated at the edges and answered with absl::Status.
#pragma once

#include <cstdio>
#include <cstdlib>

#define SV_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "sparsevid: check failed at %s:%d: %s: ", __FILE__, \
                   __LINE__, #cond);                                           \
      std::fprintf(stderr, "" __VA_ARGS__);                                    \
      std::fprintf(stderr, "\n");                                              \
      std::abort();                                                            \
    }                                                                          \
  } while (0)
