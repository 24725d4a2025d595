#include "agent.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <linux/magic.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

#include "bpf_keys.h"
#include "destroy.h"
#include "nft_text.h"

namespace sluice::agent {
namespace {

constexpr std::size_t kMaxEvents = 10000;
constexpr std::size_t kMaxPinsPerPurpose = 4096;
constexpr std::size_t kMaxTenants = SL_MAX_CGROUPS / 3;
// Range-set element changes above which rebuilding the table is cheaper.
constexpr std::size_t kMaxRangeChanges = 160;

std::string value_bytes(std::uint32_t v) { return std::string(reinterpret_cast<char*>(&v), 4); }

int depth(const std::string& relative) {
  return static_cast<int>(std::count(relative.begin(), relative.end(), '/')) + 1;
}

// Process names are chosen by the process: keep them printable ASCII.
std::string printable(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return s;
}

bool rule_allows(const policy::PurposeRules& rules, const PinKey& k, const Pin& pin,
                 const policy::DenyOptions& deny, const std::vector<policy::Cidr>& internal_bound) {
  return policy::pin_allowed(rules, pin.host, k.addr, k.port, deny, internal_bound);
}

}  // namespace

// Pin changes of one ruleset, split by family into its two pin sets.
static std::vector<SetDelta> pin_deltas(std::uint32_t ruleset, const std::vector<NftBlock>& pins, bool add) {
  std::vector<SetDelta> out;
  for (policy::Family f : {policy::Family::v4, policy::Family::v6}) {
    SetDelta d{pin_set_name(ruleset, f), false, {}, {}};
    for (const NftBlock& p : pins) {
      if (p.block.addr.family == f) (add ? d.added : d.removed).push_back(p);
    }
    if (!d.added.empty() || !d.removed.empty()) out.push_back(std::move(d));
  }
  return out;
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t boottime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string Agent::cgroup_path(const std::string& tenant, policy::Purpose p) const {
  return tenants_ + "/" + tenant + "/" + std::string(policy::to_string(p));
}

std::vector<policy::Cidr> Agent::deny_ranges() const {
  std::vector<policy::Cidr> out;
  for (const policy::DeniedRange& d : policy::always_denied(deny_options())) out.push_back(d.range);
  out.insert(out.end(), config_.extra_deny.begin(), config_.extra_deny.end());
  return policy::normalize(std::move(out));
}

namespace {
Status broker_unreadable(const AgentConfig& c) {
  // Root's, and neither readable nor writable by group or others (the
  // group bits are also an ACL's mask, so no ACL entry grants more); in a
  // directory only root may change (else it could be swapped after this).
  const auto mode_text = [](mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return std::string(buf);
  };
  struct stat st{};
  if (::stat(c.broker_path.c_str(), &st) != 0) return errno_error("broker " + c.broker_path);
  if (st.st_uid != 0 || (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0) {
    return error("broker " + c.broker_path + " is owned by uid " + std::to_string(st.st_uid) + " with mode " +
                 mode_text(st.st_mode) + ": others than root may read or write it, and a broker whose uid (" +
                 std::to_string(c.broker_uid) + ") may read it is dumpable (ptrace-able by that uid) until it "
                 "confines itself; chown root and chmod 0711 it");
  }
  const std::string dir = parent_directory(c.broker_path);
  if (::stat(dir.c_str(), &st) != 0) return errno_error("broker directory " + dir);
  if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return error("broker directory " + dir + " is owned by uid " + std::to_string(st.st_uid) + " with mode " +
                 mode_text(st.st_mode) + ": others than root could replace the broker; it must be root's and "
                 "writable by root only");
  }
  return {};
}
}  // namespace

Result<std::unique_ptr<Agent>> Agent::start(AgentConfig config) {
  std::unique_ptr<Agent> a(new Agent());
  a->config_ = std::move(config);
  // Pins outside a bpffs would not outlive this process, and the kernel
  // would stop enforcing with it: refuse to start, before creating anything.
  if (struct statfs fs{}; ::statfs(a->config_.bpffs.c_str(), &fs) != 0 ||
                          static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC) {
    return error("bpffs: " + a->config_.bpffs + " is not a mounted BPF filesystem (mount -t bpf bpf " +
                a->config_.bpffs + ")");
  }
  // A broker runs as broker_uid from its exec until it confines itself; if
  // that uid may read its binary, the kernel makes it dumpable for that
  // while, and any process of the uid could ptrace it and act in the
  // tenant's cgroup. Unreadable (root's, 0711), it is never dumpable.
  if (auto s = broker_unreadable(a->config_); !s) return tl::unexpected(s.error());
  auto mount = find_cgroup2_mount();
  if (!mount) return tl::unexpected(mount.error());
  a->mount_ = *mount;
  a->subtree_ = a->mount_.mountpoint + "/" + a->config_.cgroup_subtree;
  a->tenants_ = a->subtree_ + "/tenants";
  a->tenants_level_ = depth(a->config_.cgroup_subtree) + 1;
  if (auto s = make_cgroup(a->tenants_); !s) return tl::unexpected(s.error());
  if (::mkdir(a->config_.runtime_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_error("mkdir " + a->config_.runtime_dir);
  }

  auto state = load_state(a->config_.runtime_dir + "/state.json", a->deny_options());
  if (!state) return tl::unexpected(state.error());
  a->state_ = std::move(*state);

  auto bpf = BpfLayer::open(a->config_.pin_dir(), a->tenants_);
  if (!bpf) return tl::unexpected(bpf.error());
  a->bpf_ = std::move(*bpf);
  auto nft = NftLayer::open();
  if (!nft) return tl::unexpected(nft.error());
  a->nft_ = std::move(*nft);
  a->brokers_ = std::make_unique<Brokers>(BrokerSettings{
      a->config_.broker_path, a->config_.broker_uid, a->config_.broker_gid});

  // Ruleset ids are never reused while sockets may still carry them in
  // their storage: if the saved state was lost but the pinned maps were
  // not, continue above every id the kernel still knows.
  if (auto keys = a->bpf_->keys(BpfMap::cgroups)) {
    for (const std::string& k : *keys) {
      if (auto v = a->bpf_->lookup(BpfMap::cgroups, k); v && v->size() == sizeof(sl_cgroup_val)) {
        sl_cgroup_val cv{};
        std::memcpy(&cv, v->data(), sizeof cv);
        if (cv.ruleset >= a->state_.next_ruleset && cv.ruleset < 0xffffffffu) {
          a->state_.next_ruleset = cv.ruleset + 1;
        }
      }
    }
  }
  // Pins the (possibly changed) deny list or internal networks forbid go
  // (the hooks trust pins), and pins that expired while no agent ran.
  // Then both layers are made to hold exactly the saved state.
  const std::vector<policy::Cidr> denied = a->deny_ranges();
  const policy::DenyOptions deny = a->deny_options();
  for (auto& [name, t] : a->state_.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      PurposeState& ps = t.of(p);
      std::erase_if(ps.pins, [&](const auto& kv) {
        return policy::covered_by(policy::Cidr::host(kv.first.addr), denied) ||
               !rule_allows(ps.rules, kv.first, kv.second, deny, a->config_.internal_networks);
      });
    }
  }
  // Connections made through a pin outlive its expiry (as while the agent
  // runs): the cut below judges by the pins as saved.
  const AgentState saved = a->state_;
  a->expire_pins();
  if (auto s = a->reconcile_all(); !s) return tl::unexpected(s.error());
  a->kernel_unsure_ = false;  // whatever expire_pins met, both layers are the state's now
  // A previous agent may have saved a revocation and died before cutting
  // the live connections it revoked: cut against the saved state now.
  for (const auto& [name, t] : saved.tenants) {
    if (auto cut = a->cut_revoked(name, t); !cut) return tl::unexpected(cut.error());
  }
  return a;
}

Status Agent::refresh_cgroups(const AgentState& s, bool create) {
  for (const auto& [name, t] : s.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      const std::string path = cgroup_path(name, p);
      if (create) {
        if (auto made = make_cgroup(path); !made) return made;
      }
      auto id = cgroup_id(path);
      if (!id) return tl::unexpected(id.error());
      // A cgroup removed and recreated has a new id, which no delta moves
      // the rules to (both sides of one read this map): until both layers
      // are rebuilt, the kernel may not hold the state.
      auto [known, added] = cgroup_ids_.try_emplace(path, *id);
      if (!added && known->second != *id) {
        known->second = *id;
        kernel_unsure_ = true;
      }
    }
  }
  return {};
}

Result<std::map<std::string, MapContent>> Agent::bpf_content(const AgentState& s) {
  std::map<std::string, MapContent> c;
  for (const auto& [name, t] : s.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      const PurposeState& ps = t.of(p);
      const auto id = cgroup_ids_.find(cgroup_path(name, p));
      if (id == cgroup_ids_.end()) return error("no cgroup id for " + cgroup_path(name, p));
      sl_cgroup_val v{ps.ruleset, 0};
      c["cgroups"][key_bytes(id->second)] = key_bytes(v);
      for (const policy::CidrRule& r : ps.rules.cidrs) {
        const bool v4 = r.block.addr.family == policy::Family::v4;
        c[v4 ? "blocks4" : "blocks6"][v4 ? key_bytes(block4_key(ps.ruleset, r.block, r.port))
                                         : key_bytes(block6_key(ps.ruleset, r.block, r.port))] =
            value_bytes(1);
      }
      for (const auto& [k, pin] : ps.pins) {
        const bool v4 = k.addr.family == policy::Family::v4;
        sl_pin_val pv{pin.expires_ns};
        c[v4 ? "pins4" : "pins6"][v4 ? key_bytes(pin4_key(ps.ruleset, k.addr, k.port))
                                     : key_bytes(pin6_key(ps.ruleset, k.addr, k.port))] =
            key_bytes(pv);
      }
    }
  }
  for (const policy::Cidr& d : deny_ranges()) {
    const bool v4 = d.addr.family == policy::Family::v4;
    c[v4 ? "deny4" : "deny6"][v4 ? key_bytes(deny4_key(d)) : key_bytes(deny6_key(d))] =
        value_bytes(1);
  }
  return c;
}

namespace {
const std::pair<const char*, BpfMap> kMaps[] = {
    {"cgroups", BpfMap::cgroups}, {"pins4", BpfMap::pins4},     {"pins6", BpfMap::pins6},
    {"blocks4", BpfMap::blocks4}, {"blocks6", BpfMap::blocks6}, {"deny4", BpfMap::deny4},
    {"deny6", BpfMap::deny6}};
}  // namespace

NftTable Agent::nft_table(const AgentState& to) const {
  NftTable t;
  t.name = config_.instance;
  t.generation = to.generation;
  const std::string prefix = mount_.nft_prefix.empty() ? "" : mount_.nft_prefix + "/";
  t.tenants_path = prefix + config_.cgroup_subtree + "/tenants";
  t.tenants_level = tenants_level_;
  t.deny = deny_ranges();
  for (const auto& [name, ts] : to.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      const PurposeState& ps = ts.of(p);
      NftRuleset r;
      r.id = ps.ruleset;
      r.cgroup_path = t.tenants_path + "/" + name + "/" + std::string(policy::to_string(p));
      r.level = tenants_level_ + 2;
      for (const policy::CidrRule& c : ps.rules.cidrs) r.blocks.push_back({c.block, c.port});
      for (const auto& [k, pin] : ps.pins) r.pins.push_back({k.addr, k.port});
      t.rulesets.push_back(std::move(r));
    }
  }
  return t;
}

Status Agent::write_nft(const AgentState& to) {
  if (auto s = nft_->run(nft_replace_table(nft_table(to))); !s) return s;
  nft_generation_ = to.generation;
  return {};
}

// Brings both layers from `from` to `to`. BPF first, by delta, deleting
// before adding; then one nft transaction. Each layer alone only ever holds
// rules of `from` or `to`, so the pair never allows more than their union
// and ends allowing exactly `to`.
Status Agent::write_kernel(const AgentState& from, const AgentState& to) {
  auto before = bpf_content(from);
  auto after = bpf_content(to);
  if (!before) return tl::unexpected(before.error());
  if (!after) return tl::unexpected(after.error());
  for (const auto& [name, map] : kMaps) {
    const MapContent& old_c = (*before)[name];
    const MapContent& new_c = (*after)[name];
    for (const auto& [k, v] : old_c) {
      if (!new_c.contains(k)) {
        if (auto s = bpf_->erase(map, k); !s) return s;
      }
    }
    for (const auto& [k, v] : new_c) {
      auto it = old_c.find(k);
      if (it == old_c.end() || it->second != v) {
        if (auto s = bpf_->update(map, k, v); !s) return s;
      }
    }
  }
  // Same tenants as before: one binary transaction of element changes,
  // unless many ranges change: the kernel's range sets (pipapo) cost about
  // 50 µs per range inserted or deleted here, so past a few hundred a
  // rebuilt table (8 ms per 1000 ranges) is cheaper. Should the element
  // transaction fail (say, the table was tampered with and an element to
  // delete is gone), the whole table is rebuilt instead: also atomic.
  if (auto deltas = element_deltas(nft_table(from), nft_table(to))) {
    std::size_t ranges = 0;
    for (const SetDelta& d : *deltas) {
      if (d.interval) ranges += d.removed.size() + d.added.size();
    }
    if (ranges <= kMaxRangeChanges && nft_->apply_elements(config_.instance, *deltas)) return {};
  }
  return write_nft(to);
}

Status Agent::reconcile_all() {
  if (auto s = refresh_cgroups(state_, /*create=*/true); !s) return s;
  auto content = bpf_content(state_);
  if (!content) return tl::unexpected(content.error());
  for (const auto& [name, map] : kMaps) {
    if (auto s = bpf_->reconcile(map, (*content)[name]); !s) return s;
  }
  return write_nft(state_);
}

void Agent::rollback(const AgentState& from, const AgentState& to) {
  if (write_kernel(from, to)) return;
  // Neither the new nor the old state is certain in the kernel now: say
  // so, and rebuild both layers from the acknowledged state (the tamper
  // check tries again while that fails).
  record("rollback_failed", {{"generation", to.generation}});
  kernel_unsure_ = true;
  if (auto s = reconcile_all(); !s) {
    record("reconcile_failed", {{"error", s.error().to_string()}});
  } else {
    kernel_unsure_ = false;
  }
}

Status Agent::persist() { return save_state(config_.runtime_dir + "/state.json", state_); }

Result<ApplyResult> Agent::apply(const std::string& tenant, std::uint64_t version,
                                 const policy::EffectiveRules& rules) {
  if (!valid_tenant_name(tenant)) return error("invalid tenant name");
  AgentState next = state_;
  auto [it, created] = next.tenants.try_emplace(tenant);
  if (created && next.tenants.size() > kMaxTenants) return error("too many tenants");
  TenantState& t = it->second;
  if (!created && version < t.version) {
    return error("stale version " + std::to_string(version) + " < applied " +
                 std::to_string(t.version));
  }
  t.version = version;
  const auto deny = deny_options();
  // Live sockets need checking only when something was taken away.
  bool revokes = false;
  for (policy::Purpose p : policy::kPurposes) {
    PurposeState& ps = t.of(p);
    policy::EffectiveRules before, after;
    before.of(p) = ps.rules;
    after.of(p) = rules.of(p);
    revokes = revokes || policy::diff(before, after).revokes();
    if (ps.ruleset == 0) {
      if (next.next_ruleset == 0xffffffffu) return error("ruleset ids exhausted");
      ps.ruleset = next.next_ruleset++;
    }
    ps.rules = rules.of(p);
    ps.rules.decisions.clear();
    // Pins the new rules no longer allow go with the old rules.
    revokes = std::erase_if(ps.pins, [&](const auto& kv) {
                return !rule_allows(ps.rules, kv.first, kv.second, deny, config_.internal_networks);
              }) > 0 || revokes;
  }
  ++next.generation;

  // A cgroup found recreated here (or a failure before) leaves the kernel
  // unsure: the tamper check rebuilds it if this apply does not get as far.
  if (auto s = refresh_cgroups(next, /*create=*/true); !s) return tl::unexpected(s.error());
  if (auto s = write_kernel(state_, next); !s) {
    // Put back what was acknowledged before; report the failure either way.
    rollback(next, state_);
    return tl::unexpected(s.error());
  }
  state_ = std::move(next);
  // Noted before anything else can fail: a revocation's cut is owed until
  // made, even if this answer is an error and the retry finds nothing revoked.
  if (revokes) cut_pending_.insert(tenant);
  // Saved, rebuilt (when unsure: a recreated cgroup gets this apply's rules
  // at once) and cut, each whether or not the one before failed; the first
  // failure is the answer.
  Status done = persist();
  if (kernel_unsure_) {
    if (auto s = reconcile_all(); !s) {
      if (done) done = std::move(s);
    } else {
      kernel_unsure_ = false;
    }
  }
  int destroyed = 0;
  // A cut that failed before is retried, whatever this change revokes.
  if (cut_pending_.contains(tenant)) {
    auto cut = cut_revoked(tenant, state_.tenants.at(tenant));
    if (!cut) return tl::unexpected(cut.error());
    cut_pending_.erase(tenant);
    destroyed = *cut;
  }
  if (!done) return tl::unexpected(done.error());
  return ApplyResult{state_.generation, destroyed};
}

Result<int> Agent::cut_revoked(const std::string& tenant, const TenantState& now) {
  std::set<std::uint64_t> cgroups;
  std::map<std::uint64_t, const PurposeState*> by_cgroup;
  for (policy::Purpose p : policy::kPurposes) {
    const std::uint64_t id = cgroup_ids_.at(cgroup_path(tenant, p));
    cgroups.insert(id);
    by_cgroup[id] = &now.of(p);
  }
  const auto deny = deny_options();
  auto destroyed = destroy_sockets(cgroups, [&](const LiveSocket& s) {
    const PurposeState& ps = *by_cgroup.at(s.cgroup);
    if (ps.pins.contains(PinKey{s.dst, s.dport})) return true;
    return policy::address_allowed(ps.rules, s.dst, s.dport, deny);
  });
  if (destroyed && *destroyed > 0) {
    record("revoke", {{"tenant", tenant}, {"destroyed", *destroyed}});
  }
  return destroyed;
}

Result<int> Agent::cut_removed(std::map<std::string, std::set<std::uint64_t>>::iterator owed) {
  auto cut = destroy_sockets(owed->second, [](const LiveSocket&) { return false; });
  if (!cut) return cut;
  if (*cut > 0) record("revoke", {{"tenant", owed->first}, {"destroyed", *cut}});
  removed_uncut_.erase(owed);
  return cut;
}

Result<ApplyResult> Agent::remove(const std::string& tenant) {
  if (!state_.tenants.contains(tenant)) {
    // Removed before, but its sockets not all cut: try again now.
    const auto uncut = removed_uncut_.find(tenant);
    if (uncut == removed_uncut_.end()) return ApplyResult{state_.generation, 0};
    auto cut = cut_removed(uncut);
    if (!cut) return tl::unexpected(cut.error());
    return ApplyResult{state_.generation, *cut};
  }
  AgentState next = state_;
  next.tenants.erase(tenant);
  ++next.generation;
  if (auto s = write_kernel(state_, next); !s) {
    rollback(next, state_);
    return tl::unexpected(s.error());
  }
  // Every live socket of the tenant is cut while its cgroup ids are still
  // known (mcpd holds them outside the cgroups, where they would live on).
  std::set<std::uint64_t> cgroups;
  for (policy::Purpose p : policy::kPurposes) cgroups.insert(cgroup_ids_.at(cgroup_path(tenant, p)));
  auto cut = destroy_sockets(cgroups, [](const LiveSocket&) { return false; });
  // Owed until made: a retried remove, and the maintenance loop, cut again.
  if (!cut) removed_uncut_[tenant].insert(cgroups.begin(), cgroups.end());  // with any owed from before
  cut_pending_.erase(tenant);
  // The brokers and cgroups go last, with every process in them: nothing
  // of the tenant outlives its rules.
  brokers_->stop(tenant + "/");
  for (policy::Purpose p : policy::kPurposes) cgroup_ids_.erase(cgroup_path(tenant, p));
  state_ = std::move(next);
  if (auto s = persist(); !s) return tl::unexpected(s.error());
  if (auto s = remove_cgroup_tree(tenants_ + "/" + tenant); !s) return tl::unexpected(s.error());
  if (!cut) return tl::unexpected(cut.error());
  if (*cut > 0) record("revoke", {{"tenant", tenant}, {"destroyed", *cut}});
  return ApplyResult{state_.generation, *cut};
}

Status Agent::name_allowed(const std::string& tenant, policy::Purpose purpose,
                           const std::string& host, std::uint16_t port) const {
  auto it = state_.tenants.find(tenant);
  if (it == state_.tenants.end()) return error("unknown tenant");
  if (!policy::name_allowed(it->second.of(purpose).rules, host, port)) {
    return error("name not allowed for this tenant and purpose");
  }
  return {};
}

Status Agent::pin(const std::string& tenant, policy::Purpose purpose, const std::string& host,
                  std::uint16_t port, const std::vector<policy::IpAddr>& addrs,
                  std::uint32_t ttl_s) {
  if (auto s = name_allowed(tenant, purpose, host, port); !s) return s;
  PurposeState& ps = state_.tenants.at(tenant).of(purpose);
  const auto deny = deny_options();
  const std::vector<policy::Cidr> denied = deny_ranges();  // includes configured extras
  for (const policy::IpAddr& a : addrs) {
    // The BPF hooks trust a pin without a deny check: never pin a denied address.
    if (!policy::pin_allowed(ps.rules, host, a, port, deny, config_.internal_networks) ||
        policy::covered_by(policy::Cidr::host(a), denied)) {
      return error(host + " resolved to " + a.to_string() +
                   ", outside what the policy permits: refused");
    }
  }
  if (ps.pins.size() + addrs.size() > kMaxPinsPerPurpose) return error("too many pins");
  const std::uint64_t expires = monotonic_ns() + std::uint64_t{ttl_s} * 1'000'000'000ull;
  std::vector<NftBlock> fresh;
  Status pinned;
  for (const policy::IpAddr& a : addrs) {
    const PinKey k{a, port};
    const bool v4 = a.family == policy::Family::v4;
    const auto known = ps.pins.find(k);
    // A pin is never shortened: BPF gets the expiry the state keeps.
    const std::uint64_t until = known == ps.pins.end() ? expires : std::max(known->second.expires_ns, expires);
    sl_pin_val pv{until};
    pinned = bpf_->update(v4 ? BpfMap::pins4 : BpfMap::pins6,
                          v4 ? key_bytes(pin4_key(ps.ruleset, a, port)) : key_bytes(pin6_key(ps.ruleset, a, port)),
                          key_bytes(pv));
    if (!pinned) break;
    if (known == ps.pins.end()) fresh.push_back({policy::Cidr::host(a), port});
    auto& pin = ps.pins[k];
    pin.host = host;
    pin.expires_ns = until;
  }
  if (!fresh.empty()) {
    if (auto s = nft_->apply_elements(config_.instance, pin_deltas(ps.ruleset, fresh, true)); !s) {
      // The state and BPF hold these pins and nftables does not: the
      // tamper check writes the whole table from the state.
      kernel_unsure_ = true;
      (void)persist();
      return s;
    }
  }
  if (!pinned) {
    (void)persist();  // the pins made before the failure stand, in both layers
    return pinned;
  }
  return persist();
}

Result<int> Agent::socket(const std::string& tenant, policy::Purpose purpose, int family) {
  auto it = state_.tenants.find(tenant);
  if (it == state_.tenants.end()) return error("unknown tenant");
  auto fd = brokers_->socket(tenant + "/" + std::string(policy::to_string(purpose)),
                             cgroup_path(tenant, purpose), family);
  if (!fd) return fd;
  // Trust, but verify: the socket must carry this purpose's ruleset (so it
  // was created in its cgroup), be a TCP socket of the family asked for,
  // and not be connected yet. A broker that was tampered with cannot hand
  // out a socket from elsewhere.
  int domain = 0, type = 0, protocol = 0;
  socklen_t len = sizeof(int);
  const bool shape = ::getsockopt(*fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
                     ::getsockopt(*fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                     ::getsockopt(*fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
                     domain == (family == 4 ? AF_INET : AF_INET6) && type == SOCK_STREAM &&
                     protocol == IPPROTO_TCP;
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof peer;
  const bool unconnected =
      ::getpeername(*fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 && errno == ENOTCONN;
  if (!shape || !unconnected || bpf_->socket_ruleset(*fd) != it->second.of(purpose).ruleset) {
    ::close(*fd);
    record("broker_refused", {{"tenant", tenant}, {"purpose", policy::to_string(purpose)}});
    return error("the broker's socket failed verification");
  }
  return fd;
}

int Agent::expire_pins() {
  const std::uint64_t now = monotonic_ns();
  int expired = 0;
  for (auto& [name, t] : state_.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      PurposeState& ps = t.of(p);
      std::vector<NftBlock> gone;
      for (auto it = ps.pins.begin(); it != ps.pins.end();) {
        if (it->second.expires_ns > now) {
          ++it;
          continue;
        }
        const bool v4 = it->first.addr.family == policy::Family::v4;
        if (bpf_) {
          (void)bpf_->erase(v4 ? BpfMap::pins4 : BpfMap::pins6,
                            v4 ? key_bytes(pin4_key(ps.ruleset, it->first.addr, it->first.port))
                               : key_bytes(pin6_key(ps.ruleset, it->first.addr, it->first.port)));
        }
        gone.push_back({policy::Cidr::host(it->first.addr), it->first.port});
        it = ps.pins.erase(it);
        ++expired;
      }
      if (!gone.empty() && nft_) {
        // A failure (one element already gone fails the whole batch) leaves
        // expired elements nftables would go on allowing: the tamper check
        // writes the whole table from the state.
        if (!nft_->apply_elements(config_.instance, pin_deltas(ps.ruleset, gone, false))) kernel_unsure_ = true;
      }
    }
  }
  if (expired > 0 && nft_) (void)persist();
  return expired;
}

Result<std::string> Agent::tamper_check() {
  std::string repaired;
  auto intact = bpf_->links_intact();
  if (!intact) return tl::unexpected(intact.error());
  if (!*intact) {
    if (auto s = bpf_->repair_links(); !s) return tl::unexpected(s.error());
    repaired += "bpf links re-attached; ";
  }
  // A tenant cgroup removed and recreated has a new id: both layers must
  // learn it, or its sockets would match no ruleset (denied, but also not
  // allowed what the policy allows).
  const auto old_ids = cgroup_ids_;
  if (auto s = refresh_cgroups(state_, /*create=*/true); !s) return tl::unexpected(s.error());
  const bool cgroups_changed = old_ids != cgroup_ids_;
  auto gen = nft_->generation(config_.instance);
  if (!gen) return tl::unexpected(gen.error());
  const bool unsure = kernel_unsure_;
  if (cgroups_changed || !*gen || **gen != nft_generation_ || unsure || !*intact) {
    // Links replaced: the maps they read are made whole too. Either layer
    // may be left half written by a failure here: unsure until rebuilt.
    kernel_unsure_ = true;
    if (auto s = reconcile_all(); !s) return tl::unexpected(s.error());
    kernel_unsure_ = false;
    if (cgroups_changed) {
      repaired += "tenant cgroups re-bound; ";
    } else if (!*gen || **gen != nft_generation_) {
      repaired += "nftables table restored; ";
    } else if (unsure) {
      repaired += "both layers rebuilt from the state after a failed update; ";
    }
  }
  if (!repaired.empty()) {
    ++tamper_repairs_;
    record("tamper", {{"repaired", repaired}});
  }
  return repaired;
}

Result<int> Agent::retry_cuts() {
  // Each owed cut is tried, whichever fails: one failing must not starve
  // the others. The first failure is reported.
  int cut = 0;
  Status first;
  for (auto it = cut_pending_.begin(); it != cut_pending_.end();) {
    const auto t = state_.tenants.find(*it);
    if (t == state_.tenants.end()) {
      it = cut_pending_.erase(it);
      continue;
    }
    auto n = cut_revoked(*it, t->second);
    if (!n) {
      if (first) first = tl::unexpected(n.error());
      ++it;
      continue;
    }
    cut += *n;
    it = cut_pending_.erase(it);
  }
  for (auto it = removed_uncut_.begin(); it != removed_uncut_.end();) {
    const auto owed = it++;  // erased once cut
    auto n = cut_removed(owed);
    if (!n) {
      if (first) first = tl::unexpected(n.error());
      continue;
    }
    cut += *n;
  }
  if (!first) return tl::unexpected(first.error());
  return cut;
}

void Agent::record(std::string kind, nlohmann::json detail) {
  events_.push_back(Event{next_event_++, boottime_ns(), std::move(kind), std::move(detail)});
  while (events_.size() > kMaxEvents) events_.pop_front();
}

void Agent::poll_events() {
  std::map<std::uint32_t, std::pair<std::string, std::string>> rulesets;
  for (const auto& [name, t] : state_.tenants) {
    for (policy::Purpose p : policy::kPurposes) {
      rulesets[t.of(p).ruleset] = {name, std::string(policy::to_string(p))};
    }
  }
  bpf_->drain_events([&](const sl_event& e) {
    policy::IpAddr dst;
    if (e.family == 4) {
      dst = policy::IpAddr::v4(e.daddr[0], e.daddr[1], e.daddr[2], e.daddr[3]);
    } else {
      dst.family = policy::Family::v6;
      std::copy(std::begin(e.daddr), std::end(e.daddr), dst.bytes.begin());
    }
    static const char* kHooks[] = {"?", "connect4", "connect6", "sendmsg4", "sendmsg6",
                                   "sock_create"};
    static const char* kReasons[] = {"?", "no_rule", "always_denied", "no_ruleset",
                                     "socket_type"};
    nlohmann::json d = {{"pid", e.pid},
                        {"comm", printable(std::string(e.comm, strnlen(e.comm, sizeof e.comm)))},
                        {"cgroup_id", e.cgroup_id},
                        {"hook", kHooks[e.hook < 6 ? e.hook : 0]},
                        {"reason", kReasons[e.reason < 5 ? e.reason : 0]},
                        {"protocol", e.protocol}};
    if (e.hook != SL_HOOK_SOCK_CREATE) {
      d["destination"] = dst.to_string();
      d["port"] = ntohs(e.dport_be);
    }
    if (auto it = rulesets.find(e.ruleset); it != rulesets.end()) {
      d["tenant"] = it->second.first;
      d["purpose"] = it->second.second;
    }
    record("deny", std::move(d));
  });
}

nlohmann::json Agent::events_since(std::uint64_t cursor, std::size_t max) const {
  nlohmann::json list = nlohmann::json::array();
  std::uint64_t last = cursor;
  for (const Event& e : events_) {
    if (e.seq <= cursor) continue;
    if (list.size() >= max) break;
    list.push_back({{"seq", e.seq}, {"ts_ns", e.ts_ns}, {"kind", e.kind}, {"detail", e.detail}});
    last = e.seq;
  }
  return {{"events", list}, {"cursor", last}};
}

nlohmann::json Agent::status() {
  auto intact = bpf_->links_intact();
  auto gen = nft_->generation(config_.instance);
  const BpfCounters c = bpf_->counters();
  std::size_t pins = 0;
  nlohmann::json tenants = nlohmann::json::object();
  for (const auto& [name, t] : state_.tenants) {
    nlohmann::json purposes = nlohmann::json::object();
    for (policy::Purpose p : policy::kPurposes) {
      const PurposeState& ps = t.of(p);
      pins += ps.pins.size();
      purposes[std::string(policy::to_string(p))] = {{"ruleset", ps.ruleset},
                                                     {"hosts", ps.rules.hosts.size()},
                                                     {"blocks", ps.rules.cidrs.size()},
                                                     {"pins", ps.pins.size()}};
    }
    tenants[name] = {{"version", t.version}, {"purposes", purposes}};
  }
  const bool bpf_ok = intact && *intact && !kernel_unsure_;
  const bool nft_ok = gen && *gen && **gen == nft_generation_ && !kernel_unsure_;
  return {{"instance", config_.instance},
          {"process", process_},
          {"generation", state_.generation},
          {"layers",
           {{"bpf", bpf_ok ? "enforcing" : "degraded"}, {"nftables", nft_ok ? "enforcing" : "degraded"}}},
          {"counters",
           {{"allowed", c.allowed},
            {"denied", c.denied},
            {"events_dropped", c.events_dropped},
            {"tamper_repairs", tamper_repairs_},
            {"pins", pins}}},
          {"tenants", tenants},
          {"brokers", brokers_->describe()}};
}

Status Agent::uninstall(const AgentConfig& config) {
  Status first;
  const auto keep_first = [&](Status s) {
    if (!s && first) first = std::move(s);
  };
  keep_first(BpfLayer::uninstall(config.pin_dir()));
  if (auto nft = NftLayer::open()) keep_first((*nft)->delete_table(config.instance));
  if (auto mount = find_cgroup2_mount()) {
    keep_first(remove_cgroup_tree(mount->mountpoint + "/" + config.cgroup_subtree));
  }
  ::unlink((config.runtime_dir + "/state.json").c_str());
  ::unlink((config.runtime_dir + "/agent.sock").c_str());
  ::rmdir(config.runtime_dir.c_str());
  return first;
}

}  // namespace sluice::agent
