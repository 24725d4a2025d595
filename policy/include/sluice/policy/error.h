// Errors of the policy library: a code a caller can branch on, the JSON
// path of the offending field and a message a person can act on.
//
// Nothing here throws: every function that can fail on input returns a
// Result (one error) or a Results (every error found, capped).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace sluice::policy {

enum class ErrorCode {
  syntax,          // not JSON / not TOML
  too_large,       // document, string or nesting bound exceeded
  duplicate_key,   // a JSON object names a key twice
  unknown_field,
  missing_field,
  wrong_type,
  too_many,        // more entries than allowed
  empty,           // empty string where a value is needed
  bad_hostname,    // character, label or length rules of RFC 1123
  non_ascii,       // an IDN given as Unicode instead of punycode
  bad_punycode,    // an xn-- label that does not decode
  bad_wildcard,    // '*' anywhere but the whole leftmost label, or too broad
  bad_address,     // not an IPv4 or IPv6 address
  bad_prefix,      // CIDR prefix length malformed or out of range
  host_bits_set,   // CIDR with bits set below the prefix
  bad_port,
  denied_range,    // inside an always-denied range (link-local, metadata, ...)
  bad_url,         // endpoint URL malformed
  bad_value,       // a value of the right type that is not acceptable
};

std::string_view to_string(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string path;     // JSON path of the field, "" for a bare value
  std::string message;  // never contains more than a bounded quote of input

  // "egress_allowlist[3]: host bits set ..." or the message alone.
  [[nodiscard]] std::string to_string() const;
  // The same error reported under a field: "egress_allowlist[3]" + "".
  [[nodiscard]] Error at(std::string_view prefix) const;
};

template <class T>
using Result = tl::expected<T, Error>;
template <class T>
using Results = tl::expected<T, std::vector<Error>>;

inline tl::unexpected<Error> fail(ErrorCode code, std::string message, std::string path = {}) {
  return tl::unexpected(Error{code, std::move(path), std::move(message)});
}

// At most this many errors are collected from one document; the last one
// then says how many more there were. Keeps output bounded on hostile input.
inline constexpr std::size_t kMaxErrors = 64;

// Adds `error` unless the cap is reached; counts what was dropped.
class ErrorSink {
 public:
  void add(Error error);
  [[nodiscard]] bool empty() const { return errors_.empty() && dropped_ == 0; }
  [[nodiscard]] std::vector<Error> take();

 private:
  std::vector<Error> errors_;
  std::size_t dropped_ = 0;
};

// A bounded, printable rendering of untrusted input for use in messages:
// at most 64 bytes, control and non-ASCII bytes as \xNN, in double quotes.
std::string quote(std::string_view input);

}  // namespace sluice::policy
