// The nftables layer as text (native syntax: libnftables 1.0.6's JSON parser
// rejects `socket cgroupv2`). Pure: every command the agent sends is built
// here and unit-tested without a kernel. Only IP literals appear: a host
// name in a batch would make nft resolve it, blocking and unpinned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/policy/address.h"

namespace sluice::agent {

struct NftBlock {
  policy::Cidr block;
  std::uint16_t port = 0;
};

struct NftPin {
  policy::IpAddr addr;
  std::uint16_t port = 0;
};

struct NftRuleset {
  std::uint32_t id = 0;
  std::string cgroup_path;  // relative to /sys/fs/cgroup, as nft resolves it
  int level = 0;            // depth of the cgroup in the cgroup2 hierarchy
  std::vector<NftBlock> blocks;
  std::vector<NftPin> pins;
};

struct NftTable {
  std::string name;  // the instance: table inet <name>
  std::uint64_t generation = 0;
  std::string tenants_path;  // relative to /sys/fs/cgroup
  int tenants_level = 0;
  std::vector<policy::Cidr> deny;
  std::vector<NftRuleset> rulesets;
};

// One transaction that replaces the whole table atomically: create (so the
// delete cannot fail), delete, define.
std::string nft_replace_table(const NftTable& table);

// One transaction turning table `from` into `to` element by element, when
// only pin elements differ (same rulesets, cgroups, deny list and static
// blocks); nullopt when the table must be replaced. "" when nothing differs.
std::optional<std::string> nft_delta(const NftTable& from, const NftTable& to);

// One transaction adding or deleting pins of one ruleset.
std::string nft_pin_elements(const std::string& table, std::uint32_t ruleset,
                             const std::vector<NftPin>& pins, bool add);

// Blocks overlapping within one interval set are an nft error: keep only
// the widest per port.
std::vector<NftBlock> normalize_blocks(std::vector<NftBlock> blocks);

std::string nft_generation_comment(std::uint64_t generation);

}  // namespace sluice::agent
