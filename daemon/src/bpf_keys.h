// Encoding of policy values into the BPF map keys of sluice_abi.h. Pure, so
// the layout is unit-tested without a kernel.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include <arpa/inet.h>

#include "sluice/policy/address.h"
#include "sluice_abi.h"

namespace sluice::agent {

template <class T>
std::string key_bytes(const T& key) {
  return std::string(reinterpret_cast<const char*>(&key), sizeof key);
}

inline sl_pin4_key pin4_key(std::uint32_t ruleset, const policy::IpAddr& a, std::uint16_t port) {
  sl_pin4_key k{};
  k.ruleset = ruleset;
  std::memcpy(&k.daddr_be, a.bytes.data(), 4);
  k.dport_be = htons(port);
  return k;
}

inline sl_pin6_key pin6_key(std::uint32_t ruleset, const policy::IpAddr& a, std::uint16_t port) {
  sl_pin6_key k{};
  k.ruleset = ruleset;
  std::memcpy(k.daddr, a.bytes.data(), 16);
  k.dport_be = htons(port);
  return k;
}

// Matched bits: ruleset (32, big endian), port (16, big endian), address.
inline sl_block4_key block4_key(std::uint32_t ruleset, const policy::Cidr& c, std::uint16_t port) {
  sl_block4_key k{};
  k.prefixlen = SL_LPM_FIXED_BITS + c.prefix;
  const std::uint32_t rs = htonl(ruleset);
  const std::uint16_t p = htons(port);
  std::memcpy(k.data, &rs, 4);
  std::memcpy(k.data + 4, &p, 2);
  std::memcpy(k.data + 6, c.addr.bytes.data(), 4);
  return k;
}

inline sl_block6_key block6_key(std::uint32_t ruleset, const policy::Cidr& c, std::uint16_t port) {
  sl_block6_key k{};
  k.prefixlen = SL_LPM_FIXED_BITS + c.prefix;
  const std::uint32_t rs = htonl(ruleset);
  const std::uint16_t p = htons(port);
  std::memcpy(k.data, &rs, 4);
  std::memcpy(k.data + 4, &p, 2);
  std::memcpy(k.data + 6, c.addr.bytes.data(), 16);
  return k;
}

inline sl_deny4_key deny4_key(const policy::Cidr& c) {
  sl_deny4_key k{};
  k.prefixlen = c.prefix;
  std::memcpy(k.addr, c.addr.bytes.data(), 4);
  return k;
}

inline sl_deny6_key deny6_key(const policy::Cidr& c) {
  sl_deny6_key k{};
  k.prefixlen = c.prefix;
  std::memcpy(k.addr, c.addr.bytes.data(), 16);
  return k;
}

}  // namespace sluice::agent
