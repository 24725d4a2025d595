#include "keys.h"

#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <stdexcept>

namespace sluice::mcpd {
namespace {

constexpr std::string_view kPrefix = "slk_";
constexpr std::size_t kIdHex = 16;
constexpr std::size_t kSecretBytes = 32;
constexpr std::size_t kSecretChars = 43;  // base64url of 32 bytes, unpadded

void fill_random(std::uint8_t* out, std::size_t len) {
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = ::getrandom(out + done, len - done, 0);
    // getrandom only fails for a bad buffer or before the pool is ready;
    // a key from anything weaker must never be issued.
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string base64url(const std::uint8_t* data, std::size_t len) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < len; ++i) {
    acc = (acc << 8) | data[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool is_b64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

}  // namespace

std::string to_hex(const std::uint8_t* data, std::size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (std::size_t i = 0; i < len; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  fill_random(reinterpret_cast<std::uint8_t*>(raw.data()), bytes);
  return to_hex(reinterpret_cast<const std::uint8_t*>(raw.data()), bytes);
}

KeyHash sha256(std::string_view data) {
  // Fetched once, never freed: it lives as long as the process.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  KeyHash h{};
  unsigned int len = 0;
  if (!md || EVP_Digest(data.data(), data.size(), h.data(), &len, md, nullptr) != 1 || len != h.size()) {
    // Without a working SHA-256 nothing here can be trusted.
    std::abort();
  }
  return h;
}

KeyHash hash_secret(std::string_view secret) { return sha256(secret); }

KeyHash hmac_sha256(const KeyHash& key, std::string_view data) {
  // The key is shorter than SHA-256's 64-byte block: zero-padded to it.
  constexpr std::size_t kBlock = 64;
  std::string inner(kBlock, '\x36'), outer(kBlock, '\x5c');
  for (std::size_t i = 0; i < key.size(); ++i) {
    inner[i] = static_cast<char>(inner[i] ^ key[i]);
    outer[i] = static_cast<char>(outer[i] ^ key[i]);
  }
  inner.append(data);
  const KeyHash h = sha256(inner);
  outer.append(reinterpret_cast<const char*>(h.data()), h.size());
  return sha256(outer);
}

KeyHash random_key() {
  KeyHash k{};
  fill_random(k.data(), k.size());
  return k;
}

bool same_hash(const KeyHash& a, const KeyHash& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

NewKey generate_key() {
  std::uint8_t secret[kSecretBytes];
  fill_random(secret, sizeof secret);
  NewKey k;
  k.id = random_hex(kIdHex / 2);
  const std::string s = base64url(secret, sizeof secret);
  k.token = std::string(kPrefix) + k.id + "_" + s;
  k.hash = hash_secret(s);
  OPENSSL_cleanse(secret, sizeof secret);
  return k;
}

std::optional<ParsedKey> parse_key(std::string_view token) {
  if (token.size() != kPrefix.size() + kIdHex + 1 + kSecretChars) return std::nullopt;
  if (!token.starts_with(kPrefix)) return std::nullopt;
  std::string_view id = token.substr(kPrefix.size(), kIdHex);
  if (token[kPrefix.size() + kIdHex] != '_') return std::nullopt;
  std::string_view secret = token.substr(kPrefix.size() + kIdHex + 1);
  for (char c : id) {
    if (!is_hex(c)) return std::nullopt;
  }
  for (char c : secret) {
    if (!is_b64url(c)) return std::nullopt;
  }
  return ParsedKey{std::string(id), std::string(secret)};
}

}  // namespace sluice::mcpd
