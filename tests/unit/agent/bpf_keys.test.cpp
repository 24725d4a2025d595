// The BPF map keys, byte for byte: the kernel side (bpf/sluice.bpf.c) reads
// these layouts, so a difference here is a rule that silently never matches.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../policy/test_support.h"
#include "bpf_keys.h"

using namespace sluice::agent;
using sluice::policy::testing::cidr;
using sluice::policy::testing::ip;

namespace {

using Bytes = std::vector<std::uint8_t>;

template <class T>
Bytes bytes_of(const T& key) {
  const std::string s = key_bytes(key);
  return Bytes(s.begin(), s.end());
}

// A u32 as the host stores it: the fields the kernel reads natively.
Bytes host_u32(std::uint32_t v) {
  Bytes out(4);
  std::memcpy(out.data(), &v, 4);
  return out;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("agent::key_bytes copies exactly the struct", "[agent][bpf]") {
  SECTION("each key's bytes are as long as its struct") {
    CHECK(key_bytes(pin4_key(1, ip("192.0.2.1"), 443)).size() == sizeof(sl_pin4_key));
    CHECK(key_bytes(pin6_key(1, ip("2001:db8::1"), 443)).size() == sizeof(sl_pin6_key));
    CHECK(key_bytes(block4_key(1, cidr("10.0.0.0/8"), 443)).size() == sizeof(sl_block4_key));
    CHECK(key_bytes(block6_key(1, cidr("2001:db8::/32"), 443)).size() == sizeof(sl_block6_key));
    CHECK(key_bytes(deny4_key(cidr("169.254.0.0/16"))).size() == sizeof(sl_deny4_key));
    CHECK(key_bytes(deny6_key(cidr("fe80::/10"))).size() == sizeof(sl_deny6_key));
    CHECK(key_bytes(std::uint64_t{7}).size() == 8);
  }
  SECTION("the sizes are those the ABI asserts") {
    CHECK(sizeof(sl_pin4_key) == 12);
    CHECK(sizeof(sl_pin6_key) == 24);
    CHECK(sizeof(sl_block4_key) == 16);
    CHECK(sizeof(sl_block6_key) == 28);
    CHECK(sizeof(sl_deny4_key) == 8);
    CHECK(sizeof(sl_deny6_key) == 20);
  }
  SECTION("equal inputs give identical bytes, padding included") {
    CHECK(key_bytes(pin4_key(9, ip("192.0.2.1"), 53)) ==
          key_bytes(pin4_key(9, ip("192.0.2.1"), 53)));
    CHECK(key_bytes(block6_key(9, cidr("2001:db8::/32"), 53)) ==
          key_bytes(block6_key(9, cidr("2001:db8::/32"), 53)));
  }
}

TEST_CASE("agent::pin keys hold the ruleset in host order, address and port in network order",
          "[agent][bpf]") {
  SECTION("an IPv4 pin") {
    CHECK(bytes_of(pin4_key(0x01020304, ip("203.0.113.7"), 443)) ==
          cat({host_u32(0x01020304), {203, 0, 113, 7}, {0x01, 0xbb}, {0, 0}}));
  }
  SECTION("an IPv4-mapped address is keyed as IPv4") {
    CHECK(bytes_of(pin4_key(5, ip("::ffff:203.0.113.7"), 443)) ==
          bytes_of(pin4_key(5, ip("203.0.113.7"), 443)));
  }
  SECTION("an IPv6 pin") {
    CHECK(bytes_of(pin6_key(0xa0b0c0d0, ip("2001:db8::7"), 8080)) ==
          cat({host_u32(0xa0b0c0d0),
               {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07},
               {0x1f, 0x90},
               {0, 0}}));
  }
  SECTION("the struct fields read back as the kernel reads them") {
    const sl_pin4_key k = pin4_key(77, ip("198.51.100.1"), 53);
    CHECK(k.ruleset == 77);
    CHECK(ntohs(k.dport_be) == 53);
    CHECK(ntohl(k.daddr_be) == 0xc6336401u);
    CHECK(k.pad0 == 0);
  }
}

TEST_CASE("agent::block keys are LPM keys over ruleset, port and address", "[agent][bpf]") {
  SECTION("an IPv4 block matches 48 fixed bits plus its prefix") {
    CHECK(bytes_of(block4_key(0x01020304, cidr("10.1.0.0/16"), 8080)) ==
          cat({host_u32(48 + 16), {0x01, 0x02, 0x03, 0x04}, {0x1f, 0x90}, {10, 1, 0, 0}, {0, 0}}));
  }
  SECTION("a single IPv4 address matches all 80 bits") {
    const sl_block4_key k = block4_key(1, cidr("192.0.2.1"), 443);
    CHECK(k.prefixlen == 80);
    CHECK(bytes_of(k) == cat({host_u32(80), {0, 0, 0, 1}, {0x01, 0xbb}, {192, 0, 2, 1}, {0, 0}}));
  }
  SECTION("an IPv6 block") {
    CHECK(bytes_of(block6_key(7, cidr("2001:db8::/32"), 443)) ==
          cat({host_u32(48 + 32),
               {0, 0, 0, 7},
               {0x01, 0xbb},
               {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
               {0, 0}}));
  }
  SECTION("a single IPv6 address matches all 176 bits") {
    CHECK(block6_key(1, cidr("2001:db8::1"), 443).prefixlen == 48 + 128);
  }
  SECTION("the ruleset and port lead the data big-endian, whatever the host order") {
    const sl_block4_key k = block4_key(0x00000100, cidr("10.0.0.0/8"), 0x0102);
    CHECK(k.data[0] == 0x00);
    CHECK(k.data[2] == 0x01);
    CHECK(k.data[3] == 0x00);
    CHECK(k.data[4] == 0x01);
    CHECK(k.data[5] == 0x02);
    CHECK(k.prefixlen == SL_LPM_FIXED_BITS + 8);
  }
}

TEST_CASE("agent::deny keys are plain LPM keys over the address", "[agent][bpf]") {
  SECTION("an IPv4 range") {
    CHECK(bytes_of(deny4_key(cidr("169.254.0.0/16"))) == cat({host_u32(16), {169, 254, 0, 0}}));
  }
  SECTION("an IPv4 address") {
    CHECK(bytes_of(deny4_key(cidr("100.100.100.200"))) ==
          cat({host_u32(32), {100, 100, 100, 200}}));
  }
  SECTION("an IPv6 range") {
    CHECK(bytes_of(deny6_key(cidr("fe80::/10"))) ==
          cat({host_u32(10), {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}));
  }
  SECTION("an IPv6 address") {
    CHECK(bytes_of(deny6_key(cidr("fd00:ec2::254"))) ==
          cat({host_u32(128), {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}}));
  }
}
