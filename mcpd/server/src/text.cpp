#include "text.h"

#include "values.h"

namespace sluice::mcpd {

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // Runs of plain ASCII are copied at once.
    std::size_t j = i;
    while (j < s.size()) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    i = j;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence(s.substr(i));
      if (len == 0) {
        out += kReplacement;
        ++i;
      } else {
        out.append(s.data() + i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
    }
    ++i;
  }
  out += '"';
}

std::string clean_text(std::string_view s, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t len = utf8_sequence(s.substr(i));
    const std::string_view piece = len ? s.substr(i, len) : std::string_view(kReplacement, 3);
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    i += len ? len : 1;
  }
  return out;
}

Result<nlohmann::json> parse_json(std::string_view text) {
  // Brackets outside strings, counted before the parser builds anything.
  // Exact for valid JSON; invalid JSON the parser refuses anyway. Values:
  // the root, and in each non-empty container one more than its commas.
  int depth = 0;
  std::size_t values = 1;
  bool opened = false;  // just after a bracket: is the container empty?
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (opened && !in_string && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      opened = false;
      if (c != ']' && c != '}') ++values;
    }
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return fail("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      opened = true;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',') {
      ++values;
    }
  }
  if (values > kMaxJsonValues) return fail("JSON with more than " + std::to_string(kMaxJsonValues) + " values");
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail("not JSON");
  return doc;
}

std::string to_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sluice::mcpd
