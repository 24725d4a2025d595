#include "values.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include <sqlite3.h>

namespace sluice::mcpd {

std::size_t utf8_sequence(std::string_view s) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

namespace {

using Json = nlohmann::json;
using Kind = DataError::Kind;

// Per cell, on top of its text or blob bytes: numbers, NULLs and the JSON
// punctuation are not free, and a million tiny cells must still count.
constexpr std::size_t kCellOverhead = 8;
// Numbers at their widest as text: -9223372036854775808, -2.2250738585072014e-308,
// and {\"$float\":\"-Infinity\"} escaped twice.
constexpr std::size_t kIntegerText = 20;
constexpr std::size_t kFloatText = 28;
// {\"$blob_base64\":\"...\"} around a blob's base64, escaped twice.
constexpr std::size_t kBlobWrapper = 24;

DataResult<void> bind_one(sqlite3_stmt* stmt, int i, const Json& p) {
  const std::string where = "parameter " + std::to_string(i);
  int rc = SQLITE_OK;
  switch (p.type()) {
    case Json::value_t::null: rc = sqlite3_bind_null(stmt, i); break;
    case Json::value_t::boolean: rc = sqlite3_bind_int(stmt, i, p.get<bool>() ? 1 : 0); break;
    case Json::value_t::number_integer:
      rc = sqlite3_bind_int64(stmt, i, p.get<std::int64_t>());
      break;
    case Json::value_t::number_unsigned: {
      const auto u = p.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return data_error(Kind::invalid_sql, where + " is out of the 64-bit integer range");
      }
      rc = sqlite3_bind_int64(stmt, i, static_cast<std::int64_t>(u));
      break;
    }
    case Json::value_t::number_float: rc = sqlite3_bind_double(stmt, i, p.get<double>()); break;
    case Json::value_t::string: {
      const auto& s = p.get_ref<const std::string&>();
      rc = sqlite3_bind_text64(stmt, i, s.data(), s.size(), SQLITE_STATIC, SQLITE_UTF8);
      break;
    }
    default:
      return data_error(Kind::invalid_sql,
                        where + " must be null, a boolean, a number or a string, not " +
                            std::string(p.type_name()));
  }
  if (rc == SQLITE_TOOBIG) return data_error(Kind::too_large, where + " is too large");
  if (rc != SQLITE_OK) {
    return data_error(Kind::internal, "could not bind " + where,
                      "sqlite3_bind: " + std::string(sqlite3_errstr(rc)));
  }
  return {};
}

}  // namespace

DataResult<void> positional_only(sqlite3_stmt* stmt) {
  const int count = sqlite3_bind_parameter_count(stmt);
  for (int i = 1; i <= count; ++i) {
    const char* name = sqlite3_bind_parameter_name(stmt, i);
    if (name && name[0] != '?') {
      return data_error(Kind::invalid_sql, "only positional ? parameters are supported");
    }
  }
  return {};
}

DataResult<void> bind_params(sqlite3_stmt* stmt, const std::vector<Json>& params) {
  if (auto p = positional_only(stmt); !p) return p;
  const int count = sqlite3_bind_parameter_count(stmt);
  if (params.size() != static_cast<std::size_t>(count)) {
    return data_error(Kind::invalid_sql, "the statement takes " + std::to_string(count) +
                                             " parameter(s) but " +
                                             std::to_string(params.size()) + " were given");
  }
  for (int i = 0; i < count; ++i) {
    if (auto r = bind_one(stmt, i + 1, params[static_cast<std::size_t>(i)]); !r) return r;
  }
  return {};
}

std::size_t cell_floor(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER: return kCellOverhead + kIntegerText;
    case SQLITE_FLOAT: return kCellOverhead + kFloatText;
    case SQLITE_TEXT: return kCellOverhead + static_cast<std::size_t>(sqlite3_column_bytes(stmt, col));
    case SQLITE_BLOB:
      return kCellOverhead + kBlobWrapper + (static_cast<std::size_t>(sqlite3_column_bytes(stmt, col)) + 2) / 3 * 4;
    default: return kCellOverhead;
  }
}

Json cell_to_json(sqlite3_stmt* stmt, int col, std::size_t& bytes) {
  bytes += kCellOverhead;
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      bytes += kIntegerText;
      return sqlite3_column_int64(stmt, col);
    case SQLITE_FLOAT: {
      bytes += kFloatText;
      // JSON has no infinities: the serializer would write null, which is
      // SQL NULL to a client (an overflowing sum() is not "no value").
      const double d = sqlite3_column_double(stmt, col);
      if (std::isinf(d)) return Json{{kFloatKey, d > 0 ? "Infinity" : "-Infinity"}};
      if (std::isnan(d)) return Json{{kFloatKey, "NaN"}};
      return d;
    }
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
      const auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, col));
      std::string text = p ? valid_utf8(std::string_view(p, n)) : std::string();
      // Escaped twice on its way out: "\\\"" for a quote, "\\u0001" for a control.
      std::size_t written = text.size();
      for (const char c : text) {
        if (c == '"' || c == '\\') written += 3;
        else if (static_cast<unsigned char>(c) < 0x20) written += 6;
      }
      bytes += written;
      return text;
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(stmt, col));
      const auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, col));
      std::string encoded = base64(p, n);
      bytes += kBlobWrapper + encoded.size();
      return Json{{kBlobKey, std::move(encoded)}};
    }
    default: return nullptr;
  }
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    // Runs of ASCII, the common case, are copied in one go.
    std::size_t j = i;
    while (j < s.size() && static_cast<unsigned char>(s[j]) < 0x80) ++j;
    out.append(s.substr(i, j - i));
    if (j == s.size()) break;
    if (const std::size_t n = utf8_sequence(s.substr(j)); n > 0) {
      out.append(s.substr(j, n));
      i = j + n;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
      i = j + 1;
    }
  }
  return out;
}

std::string base64(const unsigned char* data, std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (std::size_t i = 0; i < n; i += 3) {
    const std::uint32_t v = (std::uint32_t{data[i]} << 16) |
                            (i + 1 < n ? std::uint32_t{data[i + 1]} << 8 : 0) |
                            (i + 2 < n ? std::uint32_t{data[i + 2]} : 0);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
  }
  return out;
}

}  // namespace sluice::mcpd
