// Name resolution for pinning: the static hosts map first (air-gapped
// sites), then c-ares against the configured upstreams only — never
// /etc/hosts, never search domains. TTL-aware: the answer's TTL is the
// smallest along the CNAME chain, floored and capped by the configuration.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "config.h"
#include "result.h"

namespace sluice::agent {

struct Answer {
  std::vector<policy::IpAddr> addresses;
  std::uint32_t ttl_s = 0;
  std::vector<std::string> cnames;  // the chain followed, in order
};

class Resolver {
 public:
  static Result<std::unique_ptr<Resolver>> create(boost::asio::io_context& io,
                                                  const AgentConfig& config);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // `host` must be canonical. Fails when the name does not exist, has no
  // address, or no upstream answers within the configured timeout.
  boost::asio::awaitable<Result<Answer>> resolve(std::string host);

  struct Impl;

 private:
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::agent
