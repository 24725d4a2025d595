#include "sluice/policy/entry.h"

#include <algorithm>
#include <charconv>

namespace sluice::policy {
namespace {

bool looks_like_ipv4(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

Result<Entry> with_port(Result<Cidr> block, std::optional<std::string_view> port_text) {
  if (!block) return tl::unexpected(block.error());
  Entry e{*block, std::nullopt};
  if (port_text) {
    auto port = parse_port(*port_text);
    if (!port) return tl::unexpected(port.error());
    e.port = *port;
  }
  return e;
}

}  // namespace

Result<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
      (text.size() > 1 && text.front() == '0') || value == 0 || value > 65535) {
    return fail(ErrorCode::bad_port, "port must be a number from 1 to 65535: " + quote(text));
  }
  return static_cast<std::uint16_t>(value);
}

Result<Entry> parse_entry(std::string_view text, const DenyOptions& options) {
  if (text.empty()) return fail(ErrorCode::empty, "empty entry");
  if (text.size() > kMaxEntryLength) {
    return fail(ErrorCode::too_large, "entry longer than " + std::to_string(kMaxEntryLength) +
                                          " characters: " + quote(text));
  }

  if (text.find("://") != std::string_view::npos) {
    return fail(ErrorCode::bad_url,
                "an allowlist entry is a host, address or block with an optional port, not a "
                "URL: write \"api.example.com:443\" instead of " + quote(text));
  }

  // "[v6]" / "[v6]:port" / "[v6/len]:port"
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return fail(ErrorCode::bad_address, "unclosed '[' in " + quote(text));
    }
    const std::string_view inside = text.substr(1, close - 1);
    const std::string_view after = text.substr(close + 1);
    if (inside.find(':') == std::string_view::npos) {
      return fail(ErrorCode::bad_address,
                  "brackets are only for IPv6 addresses: " + quote(text));
    }
    std::optional<std::string_view> port;
    if (!after.empty()) {
      if (after.front() != ':') {
        return fail(ErrorCode::bad_port, "expected ':port' after ']' in " + quote(text));
      }
      port = after.substr(1);
    }
    return with_port(parse_allowed_block(inside, text, options), port);
  }

  // "addr/len" or "addr/len:port", for either family: the prefix length has
  // no colon, so the first colon after the slash starts the port.
  if (const auto slash = text.find('/'); slash != std::string_view::npos) {
    const std::string_view before = text.substr(0, slash);
    if (!looks_like_ipv4(before) && before.find(':') == std::string_view::npos) {
      return fail(ErrorCode::bad_prefix,
                  "'/' only separates an address from its prefix length; host names take no "
                  "path: " + quote(text));
    }
    const auto colon = text.find(':', slash);
    if (colon == std::string_view::npos) {
      return with_port(parse_allowed_block(text, text, options), {});
    }
    return with_port(parse_allowed_block(text.substr(0, colon), text, options),
                     text.substr(colon + 1));
  }

  const auto colons = std::count(text.begin(), text.end(), ':');
  if (colons >= 2) {
    // A bare IPv6 address; a port needs brackets to be unambiguous.
    return with_port(parse_allowed_block(text, text, options), {});
  }
  std::string_view host = text;
  std::optional<std::string_view> port_text;
  if (colons == 1) {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (looks_like_ipv4(host)) {
    return with_port(parse_allowed_block(host, text, options), port_text);
  }

  auto pattern = parse_host_pattern(host);
  if (!pattern) return tl::unexpected(pattern.error());
  Entry e{std::move(*pattern), std::nullopt};
  if (port_text) {
    auto port = parse_port(*port_text);
    if (!port) return tl::unexpected(port.error());
    e.port = *port;
  }
  return e;
}

std::string Entry::to_string() const {
  std::string out;
  if (const HostPattern* h = host()) {
    out = h->to_string();
  } else {
    const Cidr& c = *cidr();
    out = c.to_string();
    if (port && c.addr.family == Family::v6) out = "[" + out + "]";
  }
  if (port) out += ":" + std::to_string(*port);
  return out;
}

}  // namespace sluice::policy
