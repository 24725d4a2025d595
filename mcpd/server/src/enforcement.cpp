#include "enforcement.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "agent_client.h"
#include "sluice/policy/rules.h"

namespace sluice::mcpd {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxDetail = 300;

std::string bounded(std::string text) {
  if (text.size() > kMaxDetail) text = text.substr(0, kMaxDetail) + "...";
  return text;
}

std::string agent_error(const json& reply) {
  const std::string code = reply.value("code", json()).is_string() ? reply["code"].get<std::string>() : "failed";
  const std::string error = reply.value("error", json()).is_string() ? reply["error"].get<std::string>() : "";
  return bounded("sluice-agent refused the policy (" + code + "): " + error);
}

}  // namespace

json to_json(const KernelEnforcement& k) {
  static constexpr const char* kNames[] = {"absent", "pending", "enforced"};
  json out = {{"kernel", kNames[static_cast<int>(k.state)]}};
  if (!k.detail.empty()) out["detail"] = k.detail;
  out["applied_version"] = k.version ? json(*k.version) : json(nullptr);
  if (!k.layers.is_null()) out["layers"] = k.layers;
  return out;
}

policy::TenantPolicy stricter(const policy::TenantPolicy& a, const policy::TenantPolicy& b) {
  policy::TenantPolicy out;
  out.allow_llm_egress = a.allow_llm_egress && b.allow_llm_egress;
  out.allow_prospecting = a.allow_prospecting && b.allow_prospecting;
  out.discovery_samples = a.discovery_samples && b.discovery_samples;
  if (!a.egress_allowlist) {
    out.egress_allowlist = b.egress_allowlist;
  } else if (!b.egress_allowlist) {
    out.egress_allowlist = a.egress_allowlist;
  } else {
    // Entries both name, exactly. A pattern in one and a name it covers in
    // the other drop out: stricter than the true intersection, never wider.
    std::vector<policy::Entry> both;
    for (const policy::Entry& e : *a.egress_allowlist) {
      if (std::find(b.egress_allowlist->begin(), b.egress_allowlist->end(), e) != b.egress_allowlist->end()) {
        both.push_back(e);
      }
    }
    out.egress_allowlist = std::move(both);
  }
  return out;
}

policy::TenantPolicy deny_all() {
  policy::TenantPolicy p;
  p.egress_allowlist = std::vector<policy::Entry>{};
  return p;
}

Enforcer::Enforcer(const McpdConfig& config, Store& store)
    : socket_(config.agent_socket),
      timeout_ms_(static_cast<int>(config.agent_timeout.count())),
      deny_{.allow_loopback = config.allow_loopback},
      store_(store) {}

Result<std::unique_ptr<Enforcer>> Enforcer::open(const McpdConfig& config, Store& store) {
  std::unique_ptr<Enforcer> e(new Enforcer(config, store));
  if (!e->configured()) return e;
  std::ifstream in(config.endpoints_file);
  if (!in) return fail("config: agent.endpoints_file: cannot read " + config.endpoints_file);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = policy::parse_endpoints(text.str(), e->deny_);
  if (!parsed) {
    const policy::Error& first = parsed.error().front();
    return fail("config: agent.endpoints_file " + config.endpoints_file + ": " + first.path + ": " + first.message);
  }
  e->endpoints_ = std::move(*parsed);
  return e;
}

Result<json> Enforcer::agent_status() {
  std::string why;
  auto reply = ctl::agent_call(socket_, {{"op", "status"}}, timeout_ms_, &why);
  if (!reply) return fail(bounded(why));
  if (reply->fd >= 0) ::close(reply->fd);
  if (!reply->body.value("ok", false)) return fail(agent_error(reply->body));
  return reply->body;
}

KernelEnforcement Enforcer::judge(const json& status, const Tenant& tenant,
                                  std::optional<std::int64_t> desired) const {
  KernelEnforcement k;
  k.state = KernelEnforcement::State::pending;
  k.layers = status.value("layers", json());
  const json tenants = status.value("tenants", json::object());
  if (tenants.is_object() && tenants.contains(tenant.name) && tenants[tenant.name].value("version", json()).is_number_unsigned()) {
    k.version = static_cast<std::int64_t>(tenants[tenant.name]["version"].get<std::uint64_t>());
  }
  const bool layers_ok = k.layers.is_object() && k.layers.value("bpf", "") == "enforcing" &&
                         k.layers.value("nftables", "") == "enforcing";
  if (!desired) {
    k.detail = "no policy stored for this tenant; nothing is allowed";
  } else if (!layers_ok) {
    k.detail = "sluice-agent reports a kernel layer degraded (it repairs and re-applies on its own)";
  } else if (!k.version) {
    k.detail = "sluice-agent does not enforce any version of this tenant's policy yet";
  } else if (*k.version < *desired) {
    k.detail = "sluice-agent enforces version " + std::to_string(*k.version) + ", not yet " + std::to_string(*desired);
  } else if (*k.version > *desired) {
    k.detail = "sluice-agent enforces version " + std::to_string(*k.version) +
               ", newer than any stored here (was mcpd's database restored?)";
  } else {
    k.state = KernelEnforcement::State::enforced;
  }
  return k;
}

KernelEnforcement Enforcer::state(const Tenant& tenant, std::optional<std::int64_t> desired) {
  if (!configured()) {
    return {KernelEnforcement::State::absent, "no sluice-agent is configured ([agent] socket): the kernel enforces nothing for this tenant", std::nullopt, nullptr};
  }
  auto status = agent_status();
  if (!status) return {KernelEnforcement::State::pending, status.error().what, std::nullopt, nullptr};
  return judge(*status, tenant, desired);
}

KernelEnforcement Enforcer::push(const Tenant& tenant, std::int64_t version, const policy::TenantPolicy& p) {
  if (!configured()) return state(tenant, version);
  std::lock_guard lock(mu_);
  const policy::EffectiveRules rules = policy::compile(p, endpoints_);
  std::string why;
  auto reply = ctl::agent_call(
      socket_,
      {{"op", "apply"}, {"tenant", tenant.name}, {"version", version}, {"rules", policy::to_json(rules)}},
      timeout_ms_, &why);
  if (!reply) return {KernelEnforcement::State::pending, bounded(why), std::nullopt, nullptr};
  if (reply->fd >= 0) ::close(reply->fd);
  if (!reply->body.value("ok", false)) {
    return {KernelEnforcement::State::pending, agent_error(reply->body), std::nullopt, nullptr};
  }
  // Acknowledged; believe it once the agent also reports both layers
  // enforcing this version (a detached link would make it a half-truth).
  auto status = agent_status();
  if (!status) return {KernelEnforcement::State::pending, status.error().what, std::nullopt, nullptr};
  KernelEnforcement k = judge(*status, tenant, version);
  if (k.state == KernelEnforcement::State::enforced) {
    const std::uint64_t generation = reply->body.value("generation", json()).is_number_unsigned()
                                         ? reply->body["generation"].get<std::uint64_t>()
                                         : 0;
    if (auto s = store_.set_policy_applied(tenant.id, version, generation); !s) {
      // The kernel has it; only our record of it is missing. The next
      // reconcile writes it; meanwhile the application layer stays strict.
      k.detail = "enforced, but not recorded as applied: " + s.error().what;
    }
  }
  return k;
}

Result<policy::TenantPolicy> Enforcer::stored(const Tenant& tenant, std::int64_t version) {
  auto v = store_.policy(tenant.id, version);
  if (!v) return tl::unexpected(v.error());
  if (!*v) return fail("policy version " + std::to_string(version) + " is not stored");
  auto parsed = policy::parse_policy((*v)->policy, deny_);
  if (!parsed) return fail("stored policy version " + std::to_string(version) + " no longer parses");
  return std::move(*parsed);
}

std::size_t Enforcer::reconcile() {
  if (!configured()) return 0;
  auto tenants = store_.tenants();
  if (!tenants) return 0;
  auto status = agent_status();
  if (!status) return 0;
  std::size_t brought = 0;
  for (const Tenant& t : *tenants) {
    auto newest = store_.policies(t.id, 1);
    if (!newest || newest->empty()) continue;
    const std::int64_t desired = newest->front().version;
    KernelEnforcement k = judge(*status, t, desired);
    if (k.state == KernelEnforcement::State::enforced) {
      // Enforced but perhaps never recorded (a crash between the two).
      (void)store_.set_policy_applied(t.id, desired, 0);
      continue;
    }
    if (k.version && *k.version > desired) continue;  // the agent refuses older versions
    auto p = stored(t, desired);
    if (!p) continue;
    if (push(t, desired, *p).state == KernelEnforcement::State::enforced) ++brought;
  }
  return brought;
}

Result<policy::TenantPolicy> Enforcer::effective(const Tenant& tenant) {
  auto newest = store_.policies(tenant.id, 1);
  if (!newest) return tl::unexpected(newest.error());
  if (newest->empty()) return deny_all();
  auto desired = stored(tenant, newest->front().version);
  if (!desired) return tl::unexpected(desired.error());
  auto applied_version = store_.policy_applied(tenant.id);
  if (!applied_version) return tl::unexpected(applied_version.error());
  if (!*applied_version) return deny_all();
  if (**applied_version == newest->front().version) return desired;
  auto applied = stored(tenant, **applied_version);
  if (!applied) return tl::unexpected(applied.error());
  return stricter(*desired, *applied);
}

std::optional<bool> Enforcer::egresses(const policy::TenantPolicy& p) const {
  if (!configured()) return std::nullopt;
  return policy::egresses(policy::compile(p, endpoints_), endpoints_.internal_networks);
}

}  // namespace sluice::mcpd
