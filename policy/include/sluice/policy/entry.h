// One destination: a host pattern or a CIDR block, with an optional port.
// The grammar of egress_allowlist entries and of configured endpoints.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "sluice/policy/address.h"
#include "sluice/policy/hostname.h"

namespace sluice::policy {

// Longest entry text accepted before any parsing: a maximal host name plus
// a port, or a bracketed IPv6 CIDR with a port, fit well within it.
inline constexpr std::size_t kMaxEntryLength = 300;

struct Entry {
  std::variant<HostPattern, Cidr> target;
  std::optional<std::uint16_t> port;  // nullopt: any port

  [[nodiscard]] const HostPattern* host() const { return std::get_if<HostPattern>(&target); }
  [[nodiscard]] const Cidr* cidr() const { return std::get_if<Cidr>(&target); }
  [[nodiscard]] bool port_allows(std::uint16_t p) const { return !port || *port == p; }
  // Canonical text, parseable back to an equal Entry: "api.example.com",
  // "*.example.com:443", "10.0.0.0/8:443", "[2001:db8::1]:443", "2001:db8::/32".
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const Entry&) const = default;
};

// Parses "host", "host:port", "*.domain[:port]", "a.b.c.d[/len][:port]",
// "v6addr", "v6addr/len", "[v6addr]:port", "[v6addr/len]:port" and
// "v6addr/len:port". Rejects entries inside always-denied ranges.
Result<Entry> parse_entry(std::string_view text, const DenyOptions& options);

// Port number text: decimal 1..65535, no sign, no leading zero.
Result<std::uint16_t> parse_port(std::string_view text);

}  // namespace sluice::policy
