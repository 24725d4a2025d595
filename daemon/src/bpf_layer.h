// The BPF layer: one object (connect4/6, sendmsg4/6, sock_create, setsockopt) attached
// to <subtree>/tenants through pinned links, maps pinned beside them.
// A restarted or upgraded agent reopens both, so enforcement has no gap.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "result.h"
#include "sluice_abi.h"

struct sluice_bpf;
struct ring_buffer;

namespace sluice::agent {

// Desired content of one map: key bytes -> value bytes.
using MapContent = std::map<std::string, std::string>;

enum class BpfMap { cgroups, pins4, pins6, blocks4, blocks6, deny4, deny6 };

struct BpfCounters {
  std::uint64_t allowed = 0;
  std::uint64_t denied = 0;
  std::uint64_t events_dropped = 0;
};

class BpfLayer {
 public:
  // Opens the object, reusing pinned maps under `pin_dir` (created when
  // absent) and reusing or creating the pinned links on `tenants_cgroup`.
  static Result<std::unique_ptr<BpfLayer>> open(const std::string& pin_dir,
                                                 const std::string& tenants_cgroup);
  ~BpfLayer();
  BpfLayer(const BpfLayer&) = delete;
  BpfLayer& operator=(const BpfLayer&) = delete;

  Status update(BpfMap map, const std::string& key, const std::string& value);
  Status erase(BpfMap map, const std::string& key);  // absent is success
  std::optional<std::string> lookup(BpfMap map, const std::string& key);
  // Makes the map hold exactly `want`: deletes every other key first, so a
  // reconcile never widens what is allowed beyond old ∪ want.
  Status reconcile(BpfMap map, const MapContent& want);
  // Every key currently in the map.
  Result<std::vector<std::string>> keys(BpfMap map);

  // True when every pinned link exists and is attached to the tenants
  // cgroup. A link detached by someone else is "defunct": its pin remains
  // but it enforces nothing.
  Result<bool> links_intact();
  // Re-creates and re-pins any link that is missing or defunct.
  Status repair_links();

  // The ruleset recorded in a socket's storage at creation, if any (used to
  // check that a socket from a broker really was created in its cgroup).
  std::optional<std::uint32_t> socket_ruleset(int socket_fd);

  BpfCounters counters();
  // Deny events: poll with the fd, then drain() calls `on_event` for each.
  int events_fd() const;
  int drain_events(const std::function<void(const sl_event&)>& on_event);

  // Removes the links (detaching the programs) and every pinned map.
  static Status uninstall(const std::string& pin_dir);

 private:
  BpfLayer() = default;
  Status attach_all();
  int map_fd(BpfMap map) const;

  sluice_bpf* skel_ = nullptr;
  std::string pin_dir_;
  std::string tenants_cgroup_;
  int cgroup_fd_ = -1;
  ring_buffer* events_ = nullptr;
  std::function<void(const sl_event&)> on_event_;
};

}  // namespace sluice::agent
