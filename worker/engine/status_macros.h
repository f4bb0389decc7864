// Early-return helpers for absl::Status / absl::StatusOr in engine code.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SV_RETURN_IF_ERROR(expr)   \
  do {                             \
    absl::Status sv_st_ = (expr);  \
    if (!sv_st_.ok()) return sv_st_; \
  } while (0)

#define SV_CONCAT_INNER_(a, b) a##b
#define SV_CONCAT_(a, b) SV_CONCAT_INNER_(a, b)
// SV_ASSIGN_OR_RETURN(auto x, Foo());
#define SV_ASSIGN_OR_RETURN(lhs, expr) \
  SV_ASSIGN_OR_RETURN_IMPL_(SV_CONCAT_(sv_or_, __LINE__), lhs, expr)
#define SV_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
