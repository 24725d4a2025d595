// API keys: "slk_<id>_<secret>". The id (16 hex digits) names the key in
// logs, audit records and the admin API; the secret (32 random bytes,
// base64url) is shown once at creation and stored only as its SHA-256.
// A plain hash suffices: the secret has 256 bits of entropy, so there is
// nothing to brute-force that a slow hash would protect.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::mcpd {

using KeyHash = std::array<std::uint8_t, 32>;

struct ParsedKey {
  std::string id;      // 16 lowercase hex digits
  std::string secret;  // 43 base64url characters
};

struct NewKey {
  std::string id;
  std::string token;  // the whole "slk_..." string, shown once
  KeyHash hash{};
};

// A fresh key from the kernel's CSPRNG (getrandom).
NewKey generate_key();

// Parses a presented token; nullopt for anything not shaped like a key.
// Never echoes the token anywhere.
std::optional<ParsedKey> parse_key(std::string_view token);

KeyHash hash_secret(std::string_view secret);

// SHA-256 of `data` with the digest fetched from OpenSSL once (the one-shot
// SHA256() fetches it on every call, a lock and a lookup each time).
KeyHash sha256(std::string_view data);

// HMAC-SHA-256 (RFC 2104) of `data` under a 32-byte key, on sha256().
KeyHash hmac_sha256(const KeyHash& key, std::string_view data);

// Constant-time equality of two hashes (CRYPTO_memcmp).
bool same_hash(const KeyHash& a, const KeyHash& b);

// Random bytes as lowercase hex (session ids, key ids).
std::string random_hex(std::size_t bytes);

// A key of 32 random bytes (getrandom).
KeyHash random_key();

std::string to_hex(const std::uint8_t* data, std::size_t len);

}  // namespace sluice::mcpd
