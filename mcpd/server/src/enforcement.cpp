#include "enforcement.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "agent_client.h"
#include "keys.h"
#include "text.h"
#include "sluice/policy/rules.h"

namespace sluice::mcpd {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxDetail = 300;
// GET /api/meta from any user asks the agent: not more than once a second.
constexpr std::chrono::seconds kStatusCacheFor{1};
constexpr std::chrono::seconds kFailureCacheFor{5};

std::string bounded(std::string text) {
  if (text.size() > kMaxDetail) text = text.substr(0, kMaxDetail) + "...";
  return text;
}

bool is_true(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
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
      store_(store),
      retry_(config.agent_retry) {}

Result<policy::EndpointsConfig> read_endpoints(const McpdConfig& config) {
  std::ifstream in(config.endpoints_file);
  if (!in) return fail("config: agent.endpoints_file: cannot read " + config.endpoints_file);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = policy::parse_endpoints(text.str(), policy::DenyOptions{.allow_loopback = config.allow_loopback});
  if (!parsed) {
    const policy::Error& first = parsed.error().front();
    return fail("config: agent.endpoints_file " + config.endpoints_file + ": " + first.path + ": " + first.message);
  }
  return std::move(*parsed);
}

Result<std::unique_ptr<Enforcer>> Enforcer::open(const McpdConfig& config, Store& store) {
  std::unique_ptr<Enforcer> e(new Enforcer(config, store));
  if (!e->configured()) return e;
  auto endpoints = read_endpoints(config);
  if (!endpoints) return tl::unexpected(endpoints.error());
  e->endpoints_ = std::move(*endpoints);
  return e;
}

Result<Enforcer::AgentView> Enforcer::agent_status() {
  if (cached_ && std::chrono::steady_clock::now() - cached_at_ < (*cached_ ? kStatusCacheFor : kFailureCacheFor)) {
    return *cached_;
  }
  cached_ = ask_agent_status();
  cached_at_ = std::chrono::steady_clock::now();  // after the answer: a timeout is not counted in
  return *cached_;
}

Result<Enforcer::AgentView> Enforcer::ask_agent_status() {
  std::string why;
  auto reply = ctl::agent_call(socket_, {{"op", "status"}}, timeout_ms_, &why);
  if (!reply) return fail(bounded(why));
  if (reply->fd >= 0) ::close(reply->fd);
  const json& body = reply->body;
  // Nothing of the reply is used unchecked: a malformed one is "pending".
  if (!body.is_object()) return fail("sluice-agent's status reply is malformed");
  if (!is_true(body, "ok")) return fail(agent_error(body));
  AgentView view;
  const auto layer = [&](const char* name) -> std::string {
    const auto layers = body.find("layers");
    if (layers == body.end() || !layers->is_object()) return "unknown";
    const auto it = layers->find(name);
    if (it == layers->end() || !it->is_string()) return "unknown";
    const std::string v = it->get<std::string>();
    return v == "enforcing" || v == "degraded" ? v : "unknown";
  };
  if (const auto p = body.find("process"); p != body.end() && p->is_string() && p->size() <= 64) {
    view.process = p->get<std::string>();
  }
  view.bpf = layer("bpf");
  view.nftables = layer("nftables");
  if (const auto tenants = body.find("tenants"); tenants != body.end() && tenants->is_object()) {
    for (const auto& [name, t] : tenants->items()) {
      if (!t.is_object()) continue;
      const auto v = t.find("version");
      if (v != t.end() && v->is_number_unsigned()) view.versions[name] = v->get<std::uint64_t>();
    }
  }
  return view;
}

namespace {
// The rules digest of a record voided by a push of other rules under its
// version: matches no digest (they are hex).
constexpr char kUnconfirmed[] = "unconfirmed";
// How long a read of the state waits for another exchange with the agent.
constexpr std::chrono::milliseconds kStateWait{250};
}  // namespace

KernelEnforcement Enforcer::judge(const AgentView& view, const Tenant& tenant,
                                  const std::optional<Desired>& desired) const {
  KernelEnforcement k;
  k.state = KernelEnforcement::State::pending;
  k.layers = {{"bpf", view.bpf}, {"nftables", view.nftables}};
  if (auto it = view.versions.find(tenant.name); it != view.versions.end()) {
    k.version = static_cast<std::int64_t>(std::min<std::uint64_t>(it->second, INT64_MAX));
  }
  auto applied = store_.policy_applied(tenant.id);
  if (!desired) {
    k.detail = "no policy stored for this tenant; nothing is allowed";
  } else if (!desired->digest) {
    k.detail = desired->digest.error().what;
  } else if (view.bpf != "enforcing" || view.nftables != "enforcing") {
    k.detail = "sluice-agent reports a kernel layer not enforcing (it repairs and re-applies on its own)";
  } else if (!k.version) {
    k.detail = "sluice-agent does not enforce any version of this tenant's policy yet";
  } else if (*k.version < desired->version) {
    k.detail = "sluice-agent enforces version " + std::to_string(*k.version) + ", not yet " +
               std::to_string(desired->version);
  } else if (*k.version > desired->version) {
    k.detail = "sluice-agent enforces version " + std::to_string(*k.version) +
               ", newer than any stored here (was mcpd's database restored?)";
  } else if (!applied || !*applied || (*applied)->version != desired->version ||
             (*applied)->rules_sha256 != *desired->digest) {
    // The version number alone proves nothing: an apply that failed after
    // the agent took it, or endpoints edited since, leave the same number
    // over different rules. Only rules acknowledged by this mcpd count.
    k.detail = "version " + std::to_string(desired->version) +
               " was not acknowledged by sluice-agent with these rules yet; it is pushed again";
  } else {
    k.state = KernelEnforcement::State::enforced;
  }
  return k;
}

std::string Enforcer::rules_digest(const policy::EffectiveRules& rules) {
  const KeyHash h = sha256(to_text(policy::to_json(rules)));
  return to_hex(h.data(), h.size());
}

std::optional<Enforcer::Desired> Enforcer::desired(const Tenant& tenant, std::optional<std::int64_t> version) {
  if (!version) return std::nullopt;
  Desired d{*version, fail("")};
  auto p = stored(tenant, *version);
  d.digest = p ? Result<std::string>(rules_digest(policy::compile(*p, endpoints_)))
                : Result<std::string>(tl::unexpected(p.error()));
  return d;
}

KernelEnforcement Enforcer::state(const Tenant& tenant, std::optional<std::int64_t> version) {
  if (!configured()) {
    return {KernelEnforcement::State::absent,
            "no sluice-agent is configured ([agent] socket): the kernel enforces nothing for this tenant",
            std::nullopt, nullptr};
  }
  // A push in progress (reconcile's, up to twice timeout_ms each, on a
  // thread of its own) is not waited for: a reader on the admin thread
  // would hold up everything behind it, key revocations included. What
  // the kernel holds is unknown until the agent answers: pending. (A
  // status question, milliseconds from a live agent, is waited out.)
  std::unique_lock lock(mu_, kStateWait);
  if (!lock.owns_lock()) {
    return {KernelEnforcement::State::pending, "sluice-agent is busy with a push of mcpd's; asked again on the next read",
            std::nullopt, nullptr};
  }
  auto view = agent_status();
  if (!view) return {KernelEnforcement::State::pending, view.error().what, std::nullopt, nullptr};
  return judge(*view, tenant, desired(tenant, version));
}

KernelEnforcement Enforcer::push(const Tenant& tenant, std::int64_t version, const policy::TenantPolicy& p) {
  if (!configured()) return state(tenant, version);
  std::lock_guard lock(mu_);
  return push_locked(tenant, version, p);
}

KernelEnforcement Enforcer::push_locked(const Tenant& tenant, std::int64_t version, const policy::TenantPolicy& p,
                                        bool* reached) {
  if (reached) *reached = false;
  const policy::EffectiveRules rules = policy::compile(p, endpoints_);
  const std::string digest = rules_digest(rules);
  // Other rules under the version recorded (the endpoints changed): once
  // they may reach the agent, the record of the old ones proves nothing.
  // An apply the agent takes and then fails (its state not saved, the
  // answer late) leaves the kernel holding the new rules unrecorded; were
  // the endpoints reverted, the old record would match again and read as
  // enforced, and nothing would push. Voided first, it reads as pending
  // until a push of whichever rules is acknowledged.
  auto recorded = store_.policy_applied(tenant.id);
  if (!recorded) return {KernelEnforcement::State::pending, "not pushed: " + recorded.error().what, std::nullopt, nullptr};
  if (*recorded && (*recorded)->version == version && (*recorded)->rules_sha256 != digest) {
    if (auto s = store_.set_policy_applied(tenant.id, version, 0, kUnconfirmed); !s) {
      return {KernelEnforcement::State::pending, "not pushed: " + s.error().what, std::nullopt, nullptr};
    }
  }
  std::string why;
  cached_.reset();  // whatever happens next, the agent's state is news
  bool connected = false;
  auto reply = ctl::agent_call(
      socket_,
      {{"op", "apply"}, {"tenant", tenant.name}, {"version", version}, {"rules", policy::to_json(rules)}},
      timeout_ms_, &why, &connected);
  if (reached) *reached = connected;
  if (!reply) return {KernelEnforcement::State::pending, bounded(why), std::nullopt, nullptr};
  if (reply->fd >= 0) ::close(reply->fd);
  const json& body = reply->body;
  if (!body.is_object() || !is_true(body, "ok")) {
    return {KernelEnforcement::State::pending,
            body.is_object() ? agent_error(body) : "sluice-agent's reply is malformed", std::nullopt, nullptr};
  }
  // Acknowledged in both layers: these rules are the agent's now.
  const auto gen = body.find("generation");
  const std::uint64_t generation = gen != body.end() && gen->is_number_unsigned() ? gen->get<std::uint64_t>() : 0;
  if (auto s = store_.set_policy_applied(tenant.id, version, generation, digest); !s) {
    return {KernelEnforcement::State::pending, "applied, but not recorded here: " + s.error().what, std::nullopt,
            nullptr};
  }
  // Believe it once the agent also reports both layers enforcing this
  // version (a detached link would make it a half-truth).
  auto view = agent_status();
  if (!view) return {KernelEnforcement::State::pending, view.error().what, std::nullopt, nullptr};
  return judge(*view, tenant, Desired{version, digest});
}

Result<policy::TenantPolicy> Enforcer::stored(const Tenant& tenant, std::int64_t version) {
  auto v = store_.policy(tenant.id, version);
  if (!v) return tl::unexpected(v.error());
  if (!*v) return fail("policy version " + std::to_string(version) + " is not stored");
  auto parsed = policy::parse_policy((*v)->policy, deny_);
  if (!parsed) {
    return fail("stored policy version " + std::to_string(version) +
                " no longer passes validation (was [agent] allow_loopback turned off?)");
  }
  return std::move(*parsed);
}

std::vector<Enforcer::Pushed> Enforcer::reconcile() {
  std::vector<Pushed> pushed;
  if (!configured()) return pushed;
  std::lock_guard lock(mu_);
  auto tenants = store_.tenants();
  if (!tenants) return pushed;
  cached_.reset();
  auto view = agent_status();
  if (!view) {
    agent_process_.reset();
    return pushed;
  }
  if (agent_process_ != view->process) {
    backoff_.clear();  // back, or restarted: whatever it refused may go through now
    agent_process_ = view->process;
  }
  const auto started = std::chrono::steady_clock::now();
  const auto budget = 2 * std::chrono::milliseconds(timeout_ms_);
  // In id order, starting after the tenant the last call stopped after:
  // a slow agent cannot starve the tenants at the end of the list.
  std::sort(tenants->begin(), tenants->end(), [](const Tenant& a, const Tenant& b) { return a.id < b.id; });
  const auto first = std::find_if(tenants->begin(), tenants->end(), [&](const Tenant& t) { return t.id > resume_after_; });
  std::rotate(tenants->begin(), first, tenants->end());
  resume_after_ = 0;
  for (const Tenant& t : *tenants) {
    const auto now = std::chrono::steady_clock::now();
    if (now - started >= budget) {
      resume_after_ = t.id - 1;  // t comes first next time
      break;
    }
    // One tenant's trouble (a store error, an exception) is its own: the
    // others are still reconciled, and the pushes made are still reported.
    try {
      reconcile_one(t, *view, now, pushed);
    } catch (const std::exception&) {
    }
  }
  return pushed;
}

void Enforcer::reconcile_one(const Tenant& t, const AgentView& view, std::chrono::steady_clock::time_point now,
                             std::vector<Pushed>& pushed) {
  auto newest = store_.policies(t.id, 1);
  if (!newest || newest->empty()) return;
  const auto d = desired(t, newest->front().version);
  if (!d->digest) return;  // reported by GET; pushing it would fail the same way
  const KernelEnforcement k = judge(view, t, d);
  if (k.state == KernelEnforcement::State::enforced) {
    backoff_.erase(t.id);
    return;
  }
  if (k.version && *k.version > d->version) return;  // the agent refuses older versions
  // A degraded layer is the agent's to repair; re-pushing the same rules
  // to it every tick would only add work.
  auto applied = store_.policy_applied(t.id);
  const bool acknowledged = applied && *applied && (*applied)->version == d->version &&
                            (*applied)->rules_sha256 == *d->digest && k.version == d->version;
  if (acknowledged) return;
  auto b = backoff_.find(t.id);
  if (b != backoff_.end() && (b->second.version != d->version || b->second.digest != *d->digest)) {
    backoff_.erase(b);  // other rules now: tried at once
    b = backoff_.end();
  }
  if (b != backoff_.end() && now < b->second.next) return;
  auto p = stored(t, d->version);
  if (!p) return;
  bool reached = false;
  KernelEnforcement outcome = push_locked(t, d->version, *p, &reached);
  if (outcome.state == KernelEnforcement::State::enforced || !reached) {
    backoff_.erase(t.id);  // enforced, or no agent there to refuse it: next round as usual
  } else {
    Backoff& f = backoff_[t.id];
    f.version = d->version;
    f.digest = *d->digest;
    f.failures = std::min(f.failures + 1, 11u);  // 2^10 retries: past ten minutes anyway
    const auto wait = std::min<std::chrono::milliseconds>(retry_ * (1LL << (f.failures - 1)), std::chrono::minutes(10));
    f.next = std::chrono::steady_clock::now() + wait;
  }
  pushed.push_back({t, d->version, std::move(outcome)});
}

Result<policy::TenantPolicy> Enforcer::effective(const Tenant& tenant) {
  auto newest = store_.policies(tenant.id, 1);
  if (!newest) return tl::unexpected(newest.error());
  if (newest->empty()) return deny_all();
  auto applied = store_.policy_applied(tenant.id);
  if (!applied) return tl::unexpected(applied.error());
  if (!*applied) return deny_all();
  // A stored version that no longer validates allows nothing.
  auto desired = stored(tenant, newest->front().version);
  if (!desired) return deny_all();
  if ((*applied)->version == newest->front().version) return desired;
  auto old = stored(tenant, (*applied)->version);
  if (!old) return deny_all();
  return stricter(*desired, *old);
}

std::optional<bool> Enforcer::egresses(const policy::TenantPolicy& p) const {
  if (!configured()) return std::nullopt;
  return policy::egresses(policy::compile(p, endpoints_), endpoints_.internal_networks);
}

}  // namespace sluice::mcpd
