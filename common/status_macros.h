// Early-return helpers for absl::Status / absl::StatusOr, as used across the
// gateway's module boundaries. Header-only; no state.
#ifndef EDGE_COMMON_STATUS_MACROS_H_
#define EDGE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define EDGE_CONCAT_INNER_(a, b) a##b
#define EDGE_CONCAT_(a, b) EDGE_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status edge_status_ = (expr);        \
    if (!edge_status_.ok()) return edge_status_; \
  } while (0)

// `lhs = value of statusor_expr`, or returns its error.
#define ASSIGN_OR_RETURN(lhs, statusor_expr)                          \
  ASSIGN_OR_RETURN_IMPL_(EDGE_CONCAT_(edge_statusor_, __LINE__), lhs, \
                         statusor_expr)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, statusor_expr) \
  auto tmp = (statusor_expr);                           \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()

namespace edge {

// INVALID_ARGUMENT with the pieces concatenated (absl::StrCat): the error of
// every validating parser (manifest, model config, server config).
template <typename... Pieces>
absl::Status InvalidArgument(const Pieces&... pieces) {
  return absl::InvalidArgumentError(absl::StrCat(pieces...));
}

}  // namespace edge

#endif  // EDGE_COMMON_STATUS_MACROS_H_
