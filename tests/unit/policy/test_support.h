// Helpers for policy tests: build inputs from literals, failing loudly.
#pragma once

#include <catch2/catch.hpp>

#include "sluice/policy/rules.h"

namespace sluice::policy::testing {

inline TenantPolicy policy_of(std::string_view json, DenyOptions options = {}) {
  auto p = parse_policy(json, options);
  if (!p) FAIL("policy did not parse: " << p.error().front().to_string());
  return *p;
}

inline EndpointsConfig config_of(std::string_view json, DenyOptions options = {}) {
  auto c = parse_endpoints(json, options);
  if (!c) FAIL("endpoints did not parse: " << c.error().front().to_string());
  return *c;
}

inline IpAddr ip(std::string_view text) {
  auto a = parse_ip(text);
  if (!a) FAIL("bad address literal " << text);
  return *a;
}

inline Cidr cidr(std::string_view text) {
  auto c = parse_cidr(text);
  if (!c) FAIL("bad cidr literal " << text);
  return *c;
}

inline HostPattern host(std::string_view text) {
  auto h = parse_host_pattern(text);
  if (!h) FAIL("bad host literal " << text);
  return *h;
}

}  // namespace sluice::policy::testing
