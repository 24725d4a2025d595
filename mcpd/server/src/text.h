// Untrusted text bound for audit records and replies: valid UTF-8, cut to
// a byte budget on a character boundary. (nlohmann::json refuses to dump
// invalid UTF-8; a header byte 0xFF must never be able to stop the audit.)
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sluice::mcpd {

// `s` with every invalid UTF-8 sequence replaced by U+FFFD, then cut to at
// most `max_bytes` without splitting a character.
std::string clean_text(std::string_view s, std::size_t max_bytes);

// Compact JSON text that never throws: invalid UTF-8 in a string (from a
// client or a data source) becomes U+FFFD.
std::string to_text(const nlohmann::json& j);

}  // namespace sluice::mcpd
