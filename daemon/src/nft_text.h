// The nftables layer as text (native syntax: libnftables 1.0.6's JSON parser
// rejects `socket cgroupv2`). Pure: every command the agent sends is built
// here and unit-tested without a kernel. Only IP literals appear: a host
// name in a batch would make nft resolve it, blocking and unpinned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

// Set elements to remove and add in one set. Pins are /32 (/128) blocks
// of a hash set ("r<id>_p4"), so are static blocks of one address
// ("r<id>_a4"); wider static blocks are ranges of an interval (pipapo)
// set ("r<id>_b4").
struct SetDelta {
  std::string set;  // "r3_b4"
  bool interval = false;
  std::vector<NftBlock> removed, added;
};

// The element changes turning table `from` into `to` when only set elements
// differ (same rulesets, cgroups, deny list); nullopt when the structure
// changed and the table must be replaced. Empty when nothing differs.
std::optional<std::vector<SetDelta>> element_deltas(const NftTable& from, const NftTable& to);

// The pin set of a ruleset for a family: "r<id>_p4" / "r<id>_p6".
std::string pin_set_name(std::uint32_t ruleset, policy::Family family);

// Key bytes of an element of an `addr . inet_service` set as the kernel
// stores them: each field in a 4-byte register, network byte order,
// the port zero-padded.
std::string nft_element_key(const policy::IpAddr& addr, std::uint16_t port);
// The last address of a block (host bits all ones).
policy::IpAddr last_address(const policy::Cidr& block);

// Blocks overlapping within one interval set are an nft error: keep only
// the widest per port.
std::vector<NftBlock> normalize_blocks(std::vector<NftBlock> blocks);

// The table's comment: kGenerationPrefix followed by the generation.
inline constexpr char kGenerationPrefix[] = "sluice generation ";
std::string nft_generation_comment(std::uint64_t generation);
// The generation in a listing of the table, if it carries the comment.
std::optional<std::uint64_t> parse_generation(std::string_view listing);

}  // namespace sluice::agent
