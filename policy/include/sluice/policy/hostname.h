// Host names and host patterns as they appear in allowlists and endpoint
// configuration: RFC 1123 names, ASCII only (IDNs in punycode), compared
// case-insensitively and stored lowercase.
#pragma once

#include <compare>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/policy/error.h"

namespace sluice::policy {

inline constexpr std::size_t kMaxHostnameLength = 253;
inline constexpr std::size_t kMaxLabelLength = 63;

// A host name, or "*.<name>" which matches every strict subdomain of
// <name> (not <name> itself). The wildcard is only ever the whole leftmost
// label and needs at least two labels after it: "*.com" is refused.
struct HostPattern {
  std::string name;  // lowercase, no trailing dot, without the "*." part
  bool wildcard = false;

  // `host` must be canonical (see canonical_hostname).
  [[nodiscard]] bool matches(std::string_view host) const;
  // Every name this pattern matches is matched by `outer` too.
  [[nodiscard]] bool within(const HostPattern& outer) const;
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const HostPattern&) const = default;
};

// Validates and canonicalises a host name: lowercase, one trailing dot
// removed. Errors: empty, bad_hostname, non_ascii, bad_punycode.
Result<std::string> canonical_hostname(std::string_view text);

// As canonical_hostname, also accepting a leading "*." wildcard label.
Result<HostPattern> parse_host_pattern(std::string_view text);

// The names both patterns match, as one pattern, if any.
std::optional<HostPattern> intersect(const HostPattern& a, const HostPattern& b);

}  // namespace sluice::policy
