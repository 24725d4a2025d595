#include "sluice/policy/error.h"

#include <cstdio>

namespace sluice::policy {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::syntax: return "syntax";
    case ErrorCode::too_large: return "too_large";
    case ErrorCode::duplicate_key: return "duplicate_key";
    case ErrorCode::unknown_field: return "unknown_field";
    case ErrorCode::missing_field: return "missing_field";
    case ErrorCode::wrong_type: return "wrong_type";
    case ErrorCode::too_many: return "too_many";
    case ErrorCode::empty: return "empty";
    case ErrorCode::bad_hostname: return "bad_hostname";
    case ErrorCode::non_ascii: return "non_ascii";
    case ErrorCode::bad_punycode: return "bad_punycode";
    case ErrorCode::bad_wildcard: return "bad_wildcard";
    case ErrorCode::bad_address: return "bad_address";
    case ErrorCode::bad_prefix: return "bad_prefix";
    case ErrorCode::host_bits_set: return "host_bits_set";
    case ErrorCode::bad_port: return "bad_port";
    case ErrorCode::denied_range: return "denied_range";
    case ErrorCode::bad_url: return "bad_url";
    case ErrorCode::bad_value: return "bad_value";
  }
  return "unknown";
}

std::string Error::to_string() const {
  if (path.empty()) return message;
  return path + ": " + message;
}

Error Error::at(std::string_view prefix) const {
  Error e = *this;
  if (prefix.empty()) return e;
  if (e.path.empty()) {
    e.path = std::string(prefix);
  } else if (e.path.front() == '[') {
    e.path = std::string(prefix) + e.path;
  } else {
    e.path = std::string(prefix) + "." + e.path;
  }
  return e;
}

void ErrorSink::add(Error error) {
  if (errors_.size() < kMaxErrors) {
    errors_.push_back(std::move(error));
  } else {
    ++dropped_;
  }
}

std::vector<Error> ErrorSink::take() {
  if (dropped_ > 0) {
    errors_.push_back(Error{ErrorCode::too_many, "",
                            "and " + std::to_string(dropped_) + " more errors not shown"});
    dropped_ = 0;
  }
  return std::move(errors_);
}

std::string quote(std::string_view input) {
  constexpr std::size_t kMaxQuoted = 64;
  std::string out = "\"";
  for (std::size_t i = 0; i < input.size() && i < kMaxQuoted; ++i) {
    const auto c = static_cast<unsigned char>(input[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += input.size() > kMaxQuoted ? "\"..." : "\"";
  return out;
}

}  // namespace sluice::policy
