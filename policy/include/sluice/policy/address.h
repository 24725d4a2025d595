// IP addresses and CIDR blocks, parsed strictly, plus the ranges that no
// policy may open.
//
// Invariants: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is always stored
// as the IPv4 address it maps, because the kernel hooks judge it as such;
// a Cidr never has bits set below its prefix.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/policy/error.h"

namespace sluice::policy {

enum class Family : std::uint8_t { v4 = 4, v6 = 6 };

struct IpAddr {
  Family family = Family::v4;
  std::array<std::uint8_t, 16> bytes{};  // v4 uses bytes[0..3], rest zero

  static IpAddr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);
  [[nodiscard]] unsigned bits() const { return family == Family::v4 ? 32 : 128; }
  // Canonical text: dotted quad, or RFC 5952 for IPv6.
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const IpAddr&) const = default;
};

// Parses a literal address (no brackets, no zone, no port). IPv4 must be a
// plain dotted quad without leading zeros; IPv4-mapped IPv6 becomes IPv4.
Result<IpAddr> parse_ip(std::string_view text);

struct Cidr {
  IpAddr addr;
  std::uint8_t prefix = 0;

  static Cidr host(const IpAddr& a) { return {a, static_cast<std::uint8_t>(a.bits())}; }
  [[nodiscard]] bool is_host() const { return prefix == addr.bits(); }
  [[nodiscard]] bool contains(const IpAddr& a) const;
  [[nodiscard]] bool contains(const Cidr& inner) const;
  // "10.0.0.0/8"; a single address is written without "/32" or "/128".
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const Cidr&) const = default;
};

// "10.0.0.0/8", "2001:db8::/32" or a single address. Host bits set below
// the prefix are an error (host_bits_set), never silently masked.
Result<Cidr> parse_cidr(std::string_view text);

// Two CIDR blocks either nest or are disjoint: the intersection is the
// narrower one, or nothing.
std::optional<Cidr> intersect(const Cidr& a, const Cidr& b);

// Removes blocks contained in others and sorts: a canonical set.
std::vector<Cidr> normalize(std::vector<Cidr> blocks);

// True when `inner` lies inside one block of `set`.
bool covered_by(const Cidr& inner, const std::vector<Cidr>& set);

struct DeniedRange {
  Cidr range;
  std::string_view why;  // "link-local", "cloud metadata", ...
};

// Options shared by everything that checks destinations against the
// always-denied ranges.
struct DenyOptions {
  // Loopback (127.0.0.0/8, ::1) and the unspecified/this-network ranges that
  // reach the local host are denied to tenants, except in test set-ups
  // that opt in explicitly.
  bool allow_loopback = false;
};

// The ranges no tenant may reach, whatever its policy.
const std::vector<DeniedRange>& always_denied(const DenyOptions& options);

// The reason `block` lies entirely inside an always-denied range, if it does.
std::optional<std::string_view> denied_reason(const Cidr& block, const DenyOptions& options);

// parse_cidr, refusing (denied_range) a block inside an always-denied
// range; the message quotes `shown` (the text the user wrote).
Result<Cidr> parse_allowed_block(std::string_view text, std::string_view shown,
                                 const DenyOptions& options);

}  // namespace sluice::policy
