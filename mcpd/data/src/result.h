// Errors of the tenant data layer. Every failure a client can cause is a
// value, never an exception: `message` may be shown to the client (no file
// paths, no SQLite internals, no echo of the SQL beyond the offending
// token), `detail` is for the audit log only.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace sluice::mcpd {

struct DataError {
  enum class Kind { invalid_sql, denied, timeout, too_large, not_found, internal, cancelled };

  Kind kind = Kind::internal;
  std::string message;  // safe to show a client
  std::string detail;   // for the audit log only
};

template <class T>
using DataResult = tl::expected<T, DataError>;

inline tl::unexpected<DataError> data_error(DataError::Kind kind, std::string message,
                                            std::string detail = {}) {
  return tl::unexpected(DataError{kind, std::move(message), std::move(detail)});
}

// Stable names for logs and the wire ("invalid_sql", "denied", ...).
constexpr std::string_view to_string(DataError::Kind kind) {
  switch (kind) {
    case DataError::Kind::invalid_sql: return "invalid_sql";
    case DataError::Kind::denied: return "denied";
    case DataError::Kind::timeout: return "timeout";
    case DataError::Kind::too_large: return "too_large";
    case DataError::Kind::not_found: return "not_found";
    case DataError::Kind::internal: return "internal";
    case DataError::Kind::cancelled: return "cancelled";
  }
  return "internal";
}

}  // namespace sluice::mcpd
