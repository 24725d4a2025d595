// Socket brokers: one tiny process per (tenant, purpose), living in that
// cgroup, unprivileged, no_new_privs, seccomp-confined to creating TCP
// sockets. A socket's rights are those of the cgroup it was created in,
// so a socket from the broker carries exactly the tenant's policy for that
// purpose, whoever connects it.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "result.h"

namespace sluice::agent {

struct BrokerSettings {
  std::string binary;
  std::uint32_t uid = 65534;
  std::uint32_t gid = 65534;
};

class Brokers {
 public:
  explicit Brokers(BrokerSettings settings) : settings_(std::move(settings)) {}
  ~Brokers();
  Brokers(const Brokers&) = delete;
  Brokers& operator=(const Brokers&) = delete;

  // A new TCP socket of `family` (4 or 6) created in `cgroup`; the broker
  // for `key` is started on first use and restarted if it died.
  Result<int> socket(const std::string& key, const std::string& cgroup, int family);
  // Stops the brokers whose key starts with `prefix` (a removed tenant).
  void stop(const std::string& prefix);
  // Collects exited brokers.
  void reap();
  nlohmann::json describe() const;

 private:
  struct Broker {
    pid_t pid = -1;
    int channel = -1;
  };
  Result<Broker> spawn(const std::string& cgroup);
  void stop_one(Broker& b);

  BrokerSettings settings_;
  std::map<std::string, Broker> brokers_;
};

}  // namespace sluice::agent
