#include "sluice/policy/hostname.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace sluice::policy {
namespace {

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// RFC 3492 decoding, reduced to the question "is this a well-formed
// punycode string encoding at least one non-ASCII code point?".
bool valid_punycode(std::string_view s) {
  constexpr std::uint32_t kBase = 36, kTMin = 1, kTMax = 26, kSkew = 38, kDamp = 700;
  constexpr std::uint32_t kMax = std::numeric_limits<std::uint32_t>::max();
  const auto adapt = [](std::uint32_t delta, std::uint32_t points, bool first) {
    delta = first ? delta / kDamp : delta / 2;
    delta += delta / points;
    std::uint32_t k = 0;
    while (delta > ((kBase - kTMin) * kTMax) / 2) {
      delta /= kBase - kTMin;
      k += kBase;
    }
    return k + (kBase - kTMin + 1) * delta / (delta + kSkew);
  };
  const auto digit_of = [](char c) -> std::uint32_t {
    if (c >= 'a' && c <= 'z') return static_cast<std::uint32_t>(c - 'a');
    if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0' + 26);
    return kBase;  // invalid
  };

  const auto delim = s.rfind('-');
  std::uint32_t out = 0;
  std::size_t in = 0;
  // A delimiter in first position copies nothing and is not consumed
  // (RFC 3492 6.2): "-abc" then fails on '-' as a digit.
  if (delim != std::string_view::npos && delim > 0) {
    out = static_cast<std::uint32_t>(delim);
    in = delim + 1;
  }
  if (in >= s.size()) return false;  // nothing encoded: not an A-label

  std::uint32_t n = 128, i = 0, bias = 72;
  while (in < s.size()) {
    const std::uint32_t old_i = i;
    std::uint32_t w = 1;
    for (std::uint32_t k = kBase;; k += kBase) {
      if (in >= s.size()) return false;
      const std::uint32_t digit = digit_of(s[in++]);
      if (digit >= kBase) return false;
      if (digit > (kMax - i) / w) return false;
      i += digit * w;
      const std::uint32_t t = k <= bias ? kTMin : (k >= bias + kTMax ? kTMax : k - bias);
      if (digit < t) break;
      if (w > kMax / (kBase - t)) return false;
      w *= kBase - t;
    }
    ++out;
    bias = adapt(i - old_i, out, old_i == 0);
    if (i / out > kMax - n) return false;
    n += i / out;
    i %= out;
    if (n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF)) return false;
    ++i;
  }
  return true;
}

Result<std::string> validate_labels(std::string_view original, std::string name) {
  if (name.size() > kMaxHostnameLength) {
    return fail(ErrorCode::bad_hostname, "host name longer than 253 characters: " +
                                             quote(original));
  }
  std::size_t start = 0;
  std::string_view last;
  while (true) {
    const auto dot = name.find('.', start);
    const std::string_view label =
        std::string_view(name).substr(start, dot == std::string::npos ? std::string::npos
                                                                      : dot - start);
    if (label.empty()) {
      return fail(ErrorCode::bad_hostname, "empty label in host name " + quote(original));
    }
    if (label.size() > kMaxLabelLength) {
      return fail(ErrorCode::bad_hostname,
                  "label longer than 63 characters in host name " + quote(original));
    }
    for (char c : label) {
      if (c == '*') {
        return fail(ErrorCode::bad_wildcard,
                    "'*' is only allowed as the whole leftmost label (\"*.example.com\"): " +
                        quote(original));
      }
      if (!is_ldh(c)) {
        return fail(ErrorCode::bad_hostname, "invalid character " + quote(std::string(1, c)) +
                                                 " in host name " + quote(original) +
                                                 " (letters, digits and '-' only)");
      }
    }
    if (label.size() >= 4 && label[2] == '-' && label[3] == '-') {
      if (label.substr(0, 2) != "xn") {
        return fail(ErrorCode::bad_hostname,
                    "label with '--' in positions 3-4 is reserved (only xn-- is valid): " +
                        quote(original));
      }
      if (!valid_punycode(label.substr(4))) {
        return fail(ErrorCode::bad_punycode,
                    "label " + quote(label) + " is not valid punycode in " + quote(original));
      }
    }
    // After the xn-- check, so that "xn--" is reported as bad punycode.
    if (label.front() == '-' || label.back() == '-') {
      return fail(ErrorCode::bad_hostname,
                  "label starts or ends with '-' in host name " + quote(original));
    }
    last = label;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail(ErrorCode::bad_hostname,
                "numeric top-level label: " + quote(original) +
                    " is neither a host name nor a valid IP address");
  }
  return name;
}

}  // namespace

Result<std::string> canonical_hostname(std::string_view text) {
  if (text.empty()) return fail(ErrorCode::empty, "empty host name");
  // Bound the work before copying; validate_labels gives the precise error.
  if (text.size() > kMaxHostnameLength + 1) {
    return fail(ErrorCode::bad_hostname,
                "host name longer than 253 characters: " + quote(text));
  }
  std::string name;
  name.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      return fail(ErrorCode::non_ascii,
                  "non-ASCII host name " + quote(text) +
                      ": write internationalised names in punycode (xn--...)");
    }
    name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  if (name.size() > 1 && name.back() == '.') name.pop_back();  // absolute form
  return validate_labels(text, std::move(name));
}

Result<HostPattern> parse_host_pattern(std::string_view text) {
  if (text.size() >= 2 && text[0] == '*' && text[1] == '.') {
    auto name = canonical_hostname(text.substr(2));
    if (!name) {
      Error e = name.error();
      if (e.code == ErrorCode::empty) {
        return fail(ErrorCode::bad_wildcard, "wildcard without a domain: " + quote(text));
      }
      return tl::unexpected(e);
    }
    if (std::count(name->begin(), name->end(), '.') < 1) {
      return fail(ErrorCode::bad_wildcard,
                  "wildcard too broad: " + quote(text) +
                      " would match a whole top-level domain; name at least two labels");
    }
    return HostPattern{std::move(*name), true};
  }
  if (text == "*") {
    return fail(ErrorCode::bad_wildcard, "a bare '*' would allow every host; list hosts");
  }
  auto name = canonical_hostname(text);
  if (!name) return tl::unexpected(name.error());
  return HostPattern{std::move(*name), false};
}

bool HostPattern::matches(std::string_view host) const {
  if (!wildcard) return host == name;
  return host.size() > name.size() + 1 && host.ends_with(name) &&
         host[host.size() - name.size() - 1] == '.';
}

bool HostPattern::within(const HostPattern& outer) const {
  if (!outer.wildcard) return !wildcard && name == outer.name;
  if (wildcard && name == outer.name) return true;
  return outer.matches(name);
}

std::string HostPattern::to_string() const { return wildcard ? "*." + name : name; }

std::optional<HostPattern> intersect(const HostPattern& a, const HostPattern& b) {
  if (a.within(b)) return a;
  if (b.within(a)) return b;
  return std::nullopt;
}

}  // namespace sluice::policy
