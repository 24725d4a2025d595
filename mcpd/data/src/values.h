// Values across the SQLite boundary: JSON parameters bound to a statement,
// and result cells turned into JSON that always serialises (valid UTF-8).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "result.h"

struct sqlite3_stmt;

namespace sluice::mcpd {

// Binds `params` to the statement's `?` parameters in order. Named
// parameters (:a, @a, $a) are refused: binding them by position would be a
// surprise. The count must match exactly. Strings are bound without a copy:
// the caller keeps `params` alive until the bindings are cleared.
[[nodiscard]] DataResult<void> bind_params(sqlite3_stmt* stmt,
                                           const std::vector<nlohmann::json>& params);
// Whether every parameter of the statement is positional (? or ?NNN).
[[nodiscard]] DataResult<void> positional_only(sqlite3_stmt* stmt);

// The cell in column `col` of the current row. Adds its size to `bytes`:
// a fixed per-cell overhead plus its text (or base64) as written into an
// answer, where a tool's result is JSON inside a JSON string, escaped
// twice: a quote or backslash counts 4 bytes, a control character 7.
[[nodiscard]] nlohmann::json cell_to_json(sqlite3_stmt* stmt, int col, std::size_t& bytes);

// At least what cell_to_json() would add for that cell, known before any
// of it is copied (SQLite's byte count; escaping only adds).
[[nodiscard]] std::size_t cell_floor(sqlite3_stmt* stmt, int col);

// Length of the valid UTF-8 sequence at the start of `s` (not empty), or 0.
// Strict like nlohmann's serialiser: no overlong forms, no surrogates,
// <= U+10FFFF.
[[nodiscard]] std::size_t utf8_sequence(std::string_view s);

// `s` with every invalid UTF-8 sequence replaced by U+FFFD.
[[nodiscard]] std::string valid_utf8(std::string_view s);

// RFC 4648 base64 with padding.
[[nodiscard]] std::string base64(const unsigned char* data, std::size_t n);

// The JSON key of a BLOB cell: {"$blob_base64": "..."}.
inline constexpr char kBlobKey[] = "$blob_base64";
// The JSON key of a floating-point cell JSON cannot hold as a number:
// {"$float": "Infinity"}, "-Infinity" or "NaN".
inline constexpr char kFloatKey[] = "$float";

}  // namespace sluice::mcpd
