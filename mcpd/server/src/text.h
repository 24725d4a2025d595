// Untrusted text bound for audit records and replies: valid UTF-8, cut to
// a byte budget on a character boundary. (nlohmann::json refuses to dump
// invalid UTF-8; a header byte 0xFF must never be able to stop the audit.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "status.h"

namespace sluice::mcpd {

// `s` with every invalid UTF-8 sequence replaced by U+FFFD, then cut to at
// most `max_bytes` without splitting a character.
std::string clean_text(std::string_view s, std::size_t max_bytes);

// JSON from outside (request bodies, the admin socket, what those stored)
// nests at most this deep: nlohmann parses iteratively but copies and
// dumps recursively, so a 1 MiB body of nested arrays would overflow a
// thread's stack on its first copy.
inline constexpr int kMaxJsonDepth = 64;
// ... and holds at most this many values: a tree costs far more than its
// text (`[{},{},...]` about 20 bytes of heap per byte of a body), so a
// 1 MiB body could otherwise hold ~20 MiB while its call waits for a
// worker. The largest real documents (a policy of 4096 allowlist entries)
// hold a few tens of thousands.
inline constexpr std::size_t kMaxJsonValues = 100000;

// `text` as JSON, never throwing; refused when it is not JSON ("not JSON"),
// nests deeper than kMaxJsonDepth or holds more than kMaxJsonValues values
// (both checked before anything is built).
Result<nlohmann::json> parse_json(std::string_view text);

// Compact JSON text that never throws: invalid UTF-8 in a string (from a
// client or a data source) becomes U+FFFD.
std::string to_text(const nlohmann::json& j);

// `s` as a JSON string literal appended to `out`: quoted and escaped as
// to_text() does; each byte that starts no valid UTF-8 sequence becomes
// one U+FFFD (nlohmann may fold a truncated sequence into one).
void append_json_string(std::string& out, std::string_view s);

// Compact JSON written straight into a string, for the per-call hot path
// (answers, audit records) where a tree built only to be dumped would
// cost more than the work it describes. Keys are the caller's literals
// (never escaped); values are escaped as to_text() would.
//   JsonObject(out).str("kind", "tool_call").num("rows", 3).close();
class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  JsonObject& str(std::string_view key, std::string_view value) {
    field(key);
    append_json_string(out_, value);
    return *this;
  }
  JsonObject& num(std::string_view key, std::int64_t value) {
    field(key);
    out_ += std::to_string(value);
    return *this;
  }
  JsonObject& boolean(std::string_view key, bool value) {
    field(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  // `json` must be one complete JSON value (to_text() of something, or
  // text another JsonObject wrote); empty text is written as null.
  JsonObject& raw(std::string_view key, std::string_view json) {
    field(key);
    out_ += json.empty() ? std::string_view("null") : json;
    return *this;
  }
  // Starts a value the caller writes itself; then close() as usual.
  std::string& value(std::string_view key) {
    field(key);
    return out_;
  }
  void close() { out_ += '}'; }

 private:
  void field(std::string_view key) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += key;
    out_ += "\":";
  }
  std::string& out_;
  bool first_ = true;
};

}  // namespace sluice::mcpd
