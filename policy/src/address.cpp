#include "sluice/policy/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sluice::policy {
namespace {

// Longest textual IPv6 address (with embedded IPv4) is 45 characters.
constexpr std::size_t kMaxAddressText = 45;

bool is_v4_mapped(const std::array<std::uint8_t, 16>& b) {
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff;
}

IpAddr unmap(const std::array<std::uint8_t, 16>& b) {
  return IpAddr::v4(b[12], b[13], b[14], b[15]);
}

// Bit `i` (0 = most significant) of the address.
bool bit(const IpAddr& a, unsigned i) { return (a.bytes[i / 8] >> (7 - i % 8)) & 1; }

bool prefix_equal(const IpAddr& a, const IpAddr& b, unsigned prefix) {
  const unsigned whole = prefix / 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), whole) != 0) return false;
  if (prefix % 8 == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - prefix % 8));
  return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

Cidr must_cidr(std::string_view text) {
  auto c = parse_cidr(text);
  // The tables below are literals of this file; a failure is a bug.
  if (!c) std::abort();
  return *c;
}

}  // namespace

IpAddr IpAddr::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddr ip;
  ip.family = Family::v4;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  return ip;
}

std::string IpAddr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = family == Family::v4 ? AF_INET : AF_INET6;
  if (!inet_ntop(af, bytes.data(), buf, sizeof buf)) std::abort();  // cannot fail on valid af
  return buf;
}

Result<IpAddr> parse_ip(std::string_view text) {
  if (text.empty()) return fail(ErrorCode::empty, "empty address");
  // inet_pton stops at a NUL byte: "10.0.0.1\0junk" must not parse as 10.0.0.1.
  if (text.size() > kMaxAddressText || text.find('\0') != std::string_view::npos) {
    return fail(ErrorCode::bad_address, "not an IP address: " + quote(text));
  }
  char buf[kMaxAddressText + 1];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddr ip;
  if (text.find(':') == std::string_view::npos) {
    // glibc's inet_pton(AF_INET) takes exactly a dotted quad of decimal
    // octets without leading zeros: no "1.2.3", no octal, no hex.
    if (inet_pton(AF_INET, buf, ip.bytes.data()) != 1) {
      return fail(ErrorCode::bad_address, "not an IPv4 address: " + quote(text));
    }
    ip.family = Family::v4;
    return ip;
  }
  std::array<std::uint8_t, 16> raw{};
  if (inet_pton(AF_INET6, buf, raw.data()) != 1) {
    return fail(ErrorCode::bad_address, "not an IPv6 address: " + quote(text));
  }
  if (is_v4_mapped(raw)) return unmap(raw);
  ip.family = Family::v6;
  ip.bytes = raw;
  return ip;
}

bool Cidr::contains(const IpAddr& a) const {
  return a.family == addr.family && prefix_equal(addr, a, prefix);
}

bool Cidr::contains(const Cidr& inner) const {
  return inner.addr.family == addr.family && inner.prefix >= prefix &&
         prefix_equal(addr, inner.addr, prefix);
}

std::string Cidr::to_string() const {
  if (is_host()) return addr.to_string();
  return addr.to_string() + "/" + std::to_string(prefix);
}

Result<Cidr> parse_cidr(std::string_view text) {
  const auto slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return tl::unexpected(ip.error());
  if (slash == std::string_view::npos) return Cidr::host(*ip);

  const std::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  const bool leading_zero = len_text.size() > 1 && len_text.front() == '0';
  if (len_text.empty() || ec != std::errc{} || end != len_text.data() + len_text.size() ||
      leading_zero) {
    return fail(ErrorCode::bad_prefix, "prefix length must be a decimal number: " + quote(text));
  }

  // An IPv4-mapped block of /96 or longer is the IPv4 block it maps.
  const bool was_mapped_v6 = ip->family == Family::v4 && text.substr(0, slash).find(':') !=
                                                             std::string_view::npos;
  if (was_mapped_v6) {
    if (len < 96 || len > 128) {
      return fail(ErrorCode::bad_prefix,
                  "an IPv4-mapped block needs a prefix of /96 to /128: " + quote(text));
    }
    len -= 96;
  }
  if (len > ip->bits()) {
    return fail(ErrorCode::bad_prefix, "prefix length /" + std::to_string(len) +
                                           " exceeds " + std::to_string(ip->bits()) +
                                           " bits: " + quote(text));
  }
  Cidr c{*ip, static_cast<std::uint8_t>(len)};
  for (unsigned i = len; i < ip->bits(); ++i) {
    if (bit(*ip, i)) {
      IpAddr masked = *ip;
      for (unsigned j = len; j < ip->bits(); ++j) {
        masked.bytes[j / 8] &= static_cast<std::uint8_t>(~(1u << (7 - j % 8)));
      }
      return fail(ErrorCode::host_bits_set,
                  "host bits set below the /" + std::to_string(len) + " prefix of " +
                      quote(text) + " (did you mean " + masked.to_string() + "/" +
                      std::to_string(len) + "?)");
    }
  }
  return c;
}

std::optional<Cidr> intersect(const Cidr& a, const Cidr& b) {
  if (a.contains(b)) return b;
  if (b.contains(a)) return a;
  return std::nullopt;
}

std::vector<Cidr> normalize(std::vector<Cidr> blocks) {
  // Sorted by (family, address, prefix), a block's containers come before
  // it; as blocks nest or are disjoint, a block inside any kept block is
  // inside the last kept one. One pass, O(n log n).
  std::sort(blocks.begin(), blocks.end());
  std::vector<Cidr> out;
  for (const Cidr& c : blocks) {
    if (out.empty() || !out.back().contains(c)) out.push_back(c);
  }
  return out;
}

bool covered_by(const Cidr& inner, const std::vector<Cidr>& set) {
  return std::any_of(set.begin(), set.end(), [&](const Cidr& c) { return c.contains(inner); });
}

const std::vector<DeniedRange>& always_denied(const DenyOptions& options) {
  static const std::vector<DeniedRange> kAlways = {
      {must_cidr("169.254.0.0/16"), "link-local (includes the 169.254.169.254 metadata service)"},
      {must_cidr("fe80::/10"), "IPv6 link-local"},
      {must_cidr("fd00:ec2::254"), "cloud metadata service (IPv6)"},
      {must_cidr("100.100.100.200"), "cloud metadata service"},
  };
  static const std::vector<DeniedRange> kWithLoopback = [] {
    std::vector<DeniedRange> r = kAlways;
    r.push_back({must_cidr("127.0.0.0/8"), "loopback"});
    r.push_back({must_cidr("::1"), "loopback"});
    // Connecting to 0.0.0.0 or :: reaches the local host on Linux.
    r.push_back({must_cidr("0.0.0.0/8"), "this-network (reaches the local host)"});
    r.push_back({must_cidr("::"), "unspecified address (reaches the local host)"});
    return r;
  }();
  return options.allow_loopback ? kAlways : kWithLoopback;
}

std::optional<std::string_view> denied_reason(const Cidr& block, const DenyOptions& options) {
  for (const DeniedRange& d : always_denied(options)) {
    if (d.range.contains(block)) return d.why;
  }
  return std::nullopt;
}

Result<Cidr> parse_allowed_block(std::string_view text, std::string_view shown,
                                 const DenyOptions& options) {
  auto block = parse_cidr(text);
  if (!block) return block;
  if (auto why = denied_reason(*block, options)) {
    return fail(ErrorCode::denied_range,
                quote(shown) + " is inside an always-denied range (" + std::string(*why) + ")");
  }
  return block;
}

}  // namespace sluice::policy
