// The admin API over HTTPS (same keys, role-checked) and the local admin
// socket's operations. Admins act within their own tenant; only
// super_admin crosses tenants.
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "app.h"
#include "sluice/policy/policy.h"
#include "text.h"

namespace sluice::mcpd {
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

std::optional<std::int64_t> number(const std::string& s, std::int64_t max) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const std::int64_t v = std::stoll(s);
  if (v > max) return std::nullopt;
  return v;
}

json key_json(const KeyRecord& k) {
  json j = {{"id", k.id}, {"name", k.name}, {"scopes", scopes_to_string(k.scopes)},
            {"user", k.user.name}, {"user_id", k.user.id}, {"tenant", k.tenant},
            {"created_ms", k.created_ms}};
  j["expires_ms"] = k.expires_ms ? json(*k.expires_ms) : json(nullptr);
  j["revoked_ms"] = k.revoked_ms ? json(*k.revoked_ms) : json(nullptr);
  j["minted_with"] = k.parent_id.empty() ? json(nullptr) : json(k.parent_id);
  return j;
}

json user_json(const User& u) {
  return {{"id", u.id}, {"tenant_id", u.tenant_id}, {"name", u.name},
          {"role", std::string(to_string(u.role))}, {"disabled", u.disabled}};
}

// Why a user of role `actor`, of tenant `actor_tenant`, may not make this
// change to `target`, or nullopt: another tenant's user only for a
// super_admin (404 to others, as an id nobody has); only users below one's
// own role (as for minting keys: peers cannot disable each other), to a
// role not above it; a disabled user enabled again only by a super_admin
// (an admin cannot undo an offboarding decided above it).
std::optional<std::pair<unsigned, std::string>> refuse_user_change(Role actor, std::int64_t actor_tenant,
                                                                   const User& target, std::optional<Role> role,
                                                                   std::optional<bool> disabled) {
  if (actor != Role::super_admin && target.tenant_id != actor_tenant) {
    return std::pair<unsigned, std::string>{404, "no such user"};
  }
  if (!allowed(actor, Action::manage_users)) return std::pair<unsigned, std::string>{403, "not permitted"};
  if (target.role >= actor) return std::pair<unsigned, std::string>{403, "cannot change a user not below your own role"};
  if (role && *role > actor) return std::pair<unsigned, std::string>{403, "cannot grant a role above your own"};
  if (disabled && !*disabled && target.disabled && actor != Role::super_admin) {
    return std::pair<unsigned, std::string>{403, "only a super_admin (or the operator) enables a disabled user"};
  }
  return std::nullopt;
}

// A positive decimal id of at most 18 digits (a path segment), or nullopt.
std::optional<std::int64_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v > 0 ? std::optional<std::int64_t>(v) : std::nullopt;
}

// The body as a JSON object, or why not.
std::variant<json, std::string> body_object(const HttpRequest& req) {
  auto doc = parse_json(req.body());
  if (!doc) return "the body is " + doc.error().what;
  if (!doc->is_object()) return std::string("the body must be a JSON object");
  return std::move(*doc);
}

// An admin change by `who`, filed under the tenant it changes (whose
// admins read it in /api/audit); a super_admin acting on another tenant
// is named with its own.
json admin_record(const Principal& who, const std::string& tenant, std::string_view action) {
  json r = {{"kind", "admin"}, {"tenant", tenant}, {"user", who.user}, {"action", action}};
  if (tenant != who.tenant) r["actor_tenant"] = who.tenant;
  return r;
}

}  // namespace

void App::discard_key(const std::string& key_id) {
  (void)store_->revoke_key(key_id);
  keys_->drop(key_id);  // refused whatever the store did
}

Result<App::Revoked> App::revoke(const std::string& key_id, json record) {
  auto ids = store_->revoke_key(key_id);  // one statement: all of them or none
  if (!ids) return tl::unexpected(ids.error());
  for (const auto& id : *ids) {
    keys_->drop(id);               // refused from now on, whatever a reload does
    sessions_->end_credential(credential_name(kApiKeyCredential, id));  // and its sessions and open streams end now
  }
  Revoked out;
  out.cache_refreshed = static_cast<bool>(keys_->reload());
  out.self = std::erase(*ids, key_id) > 0;
  out.also = std::move(*ids);
  // Keys minted from it (a super_admin mints in any tenant) may belong to
  // other tenants: each of those is told too, under its own tenant, so its
  // admins read why its keys died. A record without a tenant (the local
  // socket's: the operator names only the key) is filed under the key's.
  std::map<std::string, std::vector<std::string>> elsewhere;
  bool told_all = true;
  if (!out.also.empty() || !record.contains("tenant")) {
    auto all = store_->keys();
    // Other tenants not told, for want of the lookup: not acknowledged as audited.
    told_all = all || out.also.empty();
    std::map<std::string, std::string> tenant_of;
    if (all) {
      for (const KeyRecord& k : *all) tenant_of[k.id] = k.tenant;
    }
    if (!record.contains("tenant")) record["tenant"] = all && tenant_of.contains(key_id) ? tenant_of[key_id] : "";
    const std::string here = record["tenant"].get<std::string>();
    for (const auto& id : out.also) {
      if (auto t = tenant_of.find(id); t != tenant_of.end() && t->second != here) elsewhere[t->second].push_back(id);
    }
  }
  record["key"] = key_id;
  record["minted_from_it"] = out.also;
  // Who acted, and from which tenant: the actor's own (a super_admin's
  // record names it as actor_tenant when it files under another), none for
  // the local socket's operator.
  json base = record;
  out.audited = audited(std::move(record)) && told_all;
  for (auto& [tenant, ids_there] : elsewhere) {
    json r = {{"kind", "admin"},  {"tenant", tenant},         {"user", base["user"]}, {"action", "revoke_key_cascade"},
              {"key", key_id}, {"revoked", std::move(ids_there)}};
    if (base["user"] != "local") r["actor_tenant"] = base.contains("actor_tenant") ? base["actor_tenant"] : base["tenant"];
    out.audited = audited(std::move(r)) && out.audited;
  }
  return out;
}

std::optional<std::pair<unsigned, std::string>> App::user_change_problem(
    const Result<std::optional<UserUpdated>>& updated) {
  using Problem = std::pair<unsigned, std::string>;
  if (!updated) return Problem{500, "the user could not be changed"};
  if (!*updated) return Problem{409, "the user was changed meanwhile: read it again"};
  const UserUpdated& u = **updated;
  if (u.forbidden) return u.forbidden;
  if (u.refused) return Problem{503, "the change could not be audited: nothing was changed"};
  if (!u.not_revoked.empty()) {
    return Problem{500, "the change is made, but keys others have seen could not be revoked: " +
                            clean_text(json(u.not_revoked).dump(), 1024) + " (revoked: " +
                            clean_text(json(u.revoked).dump(), 1024) + ")"};
  }
  if (!u.audited) return Problem{503, "the change was made but could not be audited"};
  if (!u.cache_refreshed) {
    return Problem{500, "the change is made and the user's keys are refused; the key cache could not be refreshed"};
  }
  return std::nullopt;
}

Result<std::optional<App::UserUpdated>> App::update_user(const User& before, std::optional<Role> role,
                                                         std::optional<bool> disabled, json record,
                                                         const Principal* actor) {
  // Mints and user changes one at a time, whichever thread asks: a key
  // minted while a user changes is either seen below or refused.
  std::lock_guard users(users_mu_);
  // Under the lock, as they are now: the user (changed meanwhile over the
  // other thread: a 409 before anything is recorded) and the actor (its
  // role or standing may have changed since its request was admitted).
  auto current = store_->user(before.id);
  if (!current) return tl::unexpected(current.error());
  if (!*current || (*current)->tenant_id != before.tenant_id || (*current)->role != before.role ||
      (*current)->disabled != before.disabled) {
    return std::optional<UserUpdated>();
  }
  UserUpdated out;
  if (actor) {
    const auto standing = keys_->current(actor->credential_id);
    if (std::holds_alternative<AuthFailure>(standing)) {
      out.forbidden = std::pair<unsigned, std::string>{403, "the key can no longer make this change"};
    } else {
      out.forbidden = refuse_user_change(std::get<Role>(standing), actor->tenant_id, before, role, disabled);
    }
    if (out.forbidden) {
      out.user = before;
      return std::optional<UserUpdated>(std::move(out));
    }
  }
  if ((!role || *role == before.role) && (!disabled || *disabled == before.disabled)) {
    out.user = before;  // nothing to change: nothing done, no sessions ended
    out.audited = out.cache_refreshed = true;
    return std::optional<UserUpdated>(std::move(out));
  }
  const bool enabling = disabled && !*disabled && before.disabled;
  const bool raising = role && *role > before.role;
  const bool lowering = role && *role < before.role;
  const bool disabling = disabled && *disabled && !before.disabled;
  // Recorded as requested before anything changes: a grant (a higher
  // role, an enabling) nobody could read about later is not made; a
  // restriction is made all the same, and the caller told.
  record["target_user"] = before.name;
  record["target_user_id"] = before.id;
  record["role"] = std::string(to_string(role.value_or(before.role)));
  record["disabled"] = disabled.value_or(before.disabled);
  if (role && *role != before.role) record["role_before"] = std::string(to_string(before.role));
  const json base = record;
  out.audited = audited(std::move(record));
  if (!out.audited && (raising || enabling)) {
    out.user = before;
    out.refused = true;
    return std::optional<UserUpdated>(std::move(out));
  }
  auto after = store_->update_user(before, role, disabled);
  if (!after) return tl::unexpected(after.error());
  if (!*after) return std::optional<UserUpdated>();
  out.user = std::move(**after);
  // Refused from now on, whatever a reload does, until one has read the
  // change; and nothing they opened goes on under the old standing.
  for (const std::string& id : keys_->hold_user(before.id)) sessions_->end_credential(credential_name(kApiKeyCredential, id));
  // Keys whose tokens someone else has seen, where the change would hand
  // that someone a key they could not mint (minting is for users below
  // one's role): looked for after the change, which a mint by a disabled
  // user's key can no longer pass.
  auto keys = store_->keys();
  if (!keys) {
    out.not_revoked.push_back("(the keys could not be read)");
  } else {
    std::map<std::string, const KeyRecord*> by_id;
    for (const KeyRecord& k : *keys) by_id[k.id] = &k;
    for (const KeyRecord& k : *keys) {
      if (k.revoked_ms || k.parent_id.empty()) continue;
      const auto parent = by_id.find(k.parent_id);
      if (parent == by_id.end()) continue;
      const User& minter = parent->second->user;
      const bool by_user = minter.id == before.id && k.user.id != before.id;
      const bool for_user = k.user.id == before.id && minter.id != before.id;
      const char* reason = nullptr;
      if (disabling && by_user) reason = "minted by a user now disabled";
      else if (lowering && by_user &&
               (k.user.role >= *role || (*role != Role::super_admin && k.user.tenant_id != before.tenant_id))) {
        reason = "minted for a user its minter could not mint for with its new role";
      }
      else if (raising && for_user && minter.role <= *role) reason = "minted by a user not above the new role";
      if (!reason) continue;
      json why = {{"kind", "admin"}, {"tenant", k.tenant}, {"user", base["user"]}, {"action", "revoke_key"},
                  {"reason", reason}, {"target_user_id", before.id}};
      const json actor_tenant = base.contains("actor_tenant") ? base["actor_tenant"] : base["tenant"];
      if (base["user"] != "local" && actor_tenant != k.tenant) why["actor_tenant"] = actor_tenant;
      auto r = revoke(k.id, std::move(why));
      if (!r) {
        out.not_revoked.push_back(k.id);
        continue;
      }
      out.audited = out.audited && r->audited;
      if (r->self) out.revoked.push_back(k.id);
      out.revoked.insert(out.revoked.end(), r->also.begin(), r->also.end());
    }
  }
  out.cache_refreshed = static_cast<bool>(keys_->reload());
  return std::optional<UserUpdated>(std::move(out));
}

Result<json> App::security_state(const Tenant& tenant, const KernelEnforcement* known) {
  auto newest = store_->policies(tenant.id, 1);
  if (!newest) return tl::unexpected(newest.error());
  const std::optional<std::int64_t> desired =
      newest->empty() ? std::nullopt : std::optional<std::int64_t>(newest->front().version);
  const KernelEnforcement kernel = known ? *known : enforcer_->state(tenant, desired);
  auto effective = enforcer_->effective(tenant);
  if (!effective) return tl::unexpected(effective.error());
  json enforcement = to_json(kernel);
  enforcement["desired_version"] = desired ? json(*desired) : json(nullptr);
  // Honest about the application layer: mcpd opens no outbound connection
  // yet (no planner, no brokered sockets), so there is nothing for
  // application_policy to gate today; it is what that code must consult.
  enforcement["application"] = "no_egress_path";
  // What may leave is known only while the kernel enforces the desired
  // version: pending, it may hold the last acknowledged one (allowing more
  // than the desired), or a failed push's rules: unknown, never "none".
  const auto egress = kernel.state == KernelEnforcement::State::enforced ? enforcer_->egresses(*effective)
                                                                         : std::optional<bool>();
  json out = {{"tenant", tenant.name},
              {"enforcement", enforcement},
              // What mcpd itself holds the tenant to meanwhile: the stricter
              // of the desired and the applied version.
              {"application_policy", policy::to_json(*effective)},
              {"egress", egress ? json(*egress ? "external" : "none") : json("unknown")}};
  out["current"] = newest->empty() ? json(nullptr)
                                   : json{{"version", newest->front().version},
                                          {"policy", json::parse(newest->front().policy, nullptr, false)},
                                          {"by", newest->front().user},
                                          {"created_ms", newest->front().created_ms}};
  return out;
}

std::pair<unsigned, json> App::change_policy(const Tenant& tenant, std::optional<std::int64_t> user_id,
                                             const std::string& user, std::string_view text) {
  auto parsed = policy::parse_policy(text, enforcer_->deny());
  if (!parsed) {
    json errors = json::array();
    for (const policy::Error& e : parsed.error()) errors.push_back({{"path", e.path}, {"message", e.message}});
    return {400, {{"error", "invalid policy"}, {"errors", errors}}};
  }
  const json normalised = policy::to_json(*parsed);
  const KeyHash policy_hash = sha256(to_text(normalised));  // sorted keys: one text per policy
  const std::string digest = to_hex(policy_hash.data(), policy_hash.size());
  // On record before anything changes: the kernel may change next, and a
  // crash after that must not leave it unexplained.
  if (!audited({{"kind", "admin"}, {"tenant", tenant.name}, {"user", user}, {"action", "put_policy_requested"},
                {"policy_sha256", digest}})) {
    return {503, {{"error", "nothing was changed: the audit log is unavailable"}}};
  }
  // Stored as desired first: from here on the application layer holds the
  // tenant to the stricter of this and what the kernel has.
  std::unique_lock in_order(policy_mu_);
  auto version = store_->put_policy(tenant.id, to_text(normalised), user_id);
  if (!version) return {500, {{"error", "the policy could not be stored"}}};
  const KernelEnforcement k = enforcer_->push(tenant, *version, *parsed);
  in_order.unlock();
  if (!audited({{"kind", "admin"}, {"tenant", tenant.name}, {"user", user}, {"action", "put_policy"},
                {"version", *version}, {"policy_sha256", digest}, {"kernel", to_json(k)["kernel"]}})) {
    return {503, {{"error", "the change was made but could not be audited"}}};
  }
  auto out = security_state(tenant, &k);
  if (!out) return {500, {{"error", "policy state unavailable"}}};
  (*out)["version"] = *version;
  (*out)["policy"] = normalised;
  (*out)["stored"] = true;
  // 200 only when both kernel layers enforce this very version; 202 says it
  // is stored and the kernel is not there yet (pending, or no agent).
  return {k.state == KernelEnforcement::State::enforced ? 200u : 202u, *out};
}

HttpResponse App::handle_api(const HttpRequest& req, const Principal& who) {
  const unsigned v = req.version();
  const std::string path = request_path(req);
  const auto verb = req.method();
  const bool super = who.role == Role::super_admin;

  if (path == "/api/meta" && verb == http::verb::get) {
    json out = {{"server", "sluice-mcpd"}, {"version", "0.1.0"}, {"tenant", who.tenant},
                {"user", who.user}, {"role", std::string(to_string(who.role))},
                {"scopes", scopes_to_string(who.scopes)}, {"backend", "sqlite"}};
    auto tenant = store_->tenant(who.tenant_id);
    if (!tenant || !*tenant) return problem(500, "tenant unavailable", v);
    auto security = security_state(**tenant);
    if (!security) return problem(500, "policy state unavailable", v);
    out["egress"] = (*security)["egress"];
    out["enforcement"] = (*security)["enforcement"];
    // Why the kernel lags (socket paths, the agent's words) is for admins.
    if (!allowed(who.role, Action::write_policy)) out["enforcement"].erase("detail");
    return json_response(200, out, v);
  }

  if (path == "/api/keys" && verb == http::verb::get) {
    auto keys = store_->keys();
    if (!keys) return problem(500, "keys unavailable", v);
    json out = json::array();
    for (const KeyRecord& k : *keys) {
      const bool mine = k.user.id == who.user_id;
      // An admin sees the keys it may revoke: its tenant's, up to its own role.
      const bool tenant_admin = allowed(who.role, Action::manage_users) && k.user.tenant_id == who.tenant_id &&
                                k.user.role <= who.role;
      if (mine || tenant_admin || super) out.push_back(key_json(k));
    }
    return json_response(200, {{"keys", out}}, v);
  }
  if (path == "/api/keys" && verb == http::verb::post) {
    auto body = body_object(req);
    if (auto* why = std::get_if<std::string>(&body)) return problem(400, *why, v);
    const json& b = std::get<json>(body);
    const std::string name = b.value("name", json()).is_string() ? b["name"].get<std::string>() : "";
    if (!valid_name(name)) return problem(400, "\"name\": 1-64 characters of [A-Za-z0-9_.-]", v);
    const auto scopes = b.contains("scopes") && b["scopes"].is_string() ? parse_scopes(b["scopes"].get<std::string>()) : std::nullopt;
    if (!scopes) return problem(400, "\"scopes\": a comma-separated list of read, query, flows, admin", v);
    std::optional<std::int64_t> expires;
    if (b.contains("expires_in_seconds")) {
      if (!b["expires_in_seconds"].is_number_unsigned() || b["expires_in_seconds"].get<std::uint64_t>() == 0 ||
          b["expires_in_seconds"].get<std::uint64_t>() > 10ull * 365 * 86400) {
        return problem(400, "\"expires_in_seconds\": 1 to 10 years in seconds", v);
      }
      expires = now_ms() + static_cast<std::int64_t>(b["expires_in_seconds"].get<std::uint64_t>()) * 1000;
    }
    // A key never mints a stronger or longer-lived one: a leaked
    // read-only key that expires tomorrow cannot become a permanent
    // query key.
    if ((*scopes & ~who.scopes) != 0) return problem(403, "a key can only grant scopes it holds", v);
    if (who.expires_ms && (!expires || *expires > *who.expires_ms)) expires = who.expires_ms;
    std::int64_t for_user = who.user_id;
    if (b.contains("user_id")) {
      if (!b["user_id"].is_number_integer()) return problem(400, "\"user_id\" must be an integer", v);
      for_user = b["user_id"].get<std::int64_t>();
    }
    // Minted from the caller's key: revoking that key revokes this one,
    // and a key revoked by now mints nothing. Checked, and minted, under
    // the lock user changes take (update_user, on either thread): the
    // caller and the target as they are then.
    std::unique_lock users(users_mu_);
    const auto standing = keys_->current(who.credential_id);
    if (std::holds_alternative<AuthFailure>(standing)) return problem(403, "the key can no longer mint", v);
    const Role caller = std::get<Role>(standing);
    std::string for_tenant = who.tenant;
    if (for_user != who.user_id) {
      auto target = store_->user(for_user);
      if (!target) return problem(500, "users unavailable", v);
      // Another tenant's user is "no such user" to all but a super_admin:
      // a 403 would tell which ids exist elsewhere.
      if (!*target || (caller != Role::super_admin && (*target)->tenant_id != who.tenant_id)) {
        return problem(404, "no such user", v);
      }
      // Never for a peer or a superior, super_admins included: that would
      // let one act, and be audited, as the other.
      if ((*target)->role >= caller || !allowed(caller, Action::manage_users)) return problem(403, "not permitted", v);
      // A key for a disabled user would come alive with whoever enabled them.
      if ((*target)->disabled) return problem(409, "the user is disabled", v);
      auto tenant = store_->tenant((*target)->tenant_id);
      if (!tenant || !*tenant) return problem(500, "tenant unavailable", v);
      for_tenant = (*tenant)->name;
    }
    auto minted = store_->mint_key(who.credential_id, for_user, name, *scopes, expires, config_.keys_per_user);
    if (!minted) return problem(500, "the key could not be created", v);
    if (const auto* refused = std::get_if<Store::MintRefusal>(&*minted)) {
      if (*refused == Store::MintRefusal::too_many_keys) {
        return problem(409, "the user holds as many live keys as allowed ([limits] keys_per_user); revoke one first", v);
      }
      return problem(401, "the key making this request is no longer valid", v);
    }
    const NewKey* key = &std::get<NewKey>(*minted);
    if (!keys_->reload()) {
      // Not left to go live at a later reload, unrecorded, its token lost.
      discard_key(key->id);
      return problem(500, "the key was not issued: the key cache could not be reloaded", v);
    }
    json record = admin_record(who, for_tenant, "create_key");
    record["key"] = key->id;
    record["for_user"] = for_user;
    record["scopes"] = scopes_to_string(*scopes);
    if (expires) record["expires_ms"] = *expires;
    if (!audited(std::move(record))) {
      discard_key(key->id);
      return problem(503, "the key was not issued: the audit log is unavailable", v);
    }
    return json_response(201, {{"id", key->id}, {"token", key->token}, {"scopes", scopes_to_string(*scopes)},
                       {"note", "the token is shown once; only its hash is stored"}},
                 v);
  }
  if (path.starts_with("/api/keys/") && verb == http::verb::delete_) {
    const std::string id = path.substr(10);
    auto keys = store_->keys();
    if (!keys) return problem(500, "keys unavailable", v);
    auto it = std::find_if(keys->begin(), keys->end(), [&](const KeyRecord& k) { return k.id == id; });
    const bool visible = it != keys->end() &&
                         (it->user.id == who.user_id || super ||
                          (allowed(who.role, Action::manage_users) && it->user.tenant_id == who.tenant_id &&
                           it->user.role <= who.role));
    if (!visible) return problem(404, "no such key", v);
    auto revoked = revoke(id, admin_record(who, it->tenant, "revoke_key"));
    if (!revoked) return problem(500, "the key could not be revoked", v);
    if (!revoked->audited) return problem(503, "the change was made but could not be audited", v);
    if (!revoked->cache_refreshed) {
      return problem(500, "the key is revoked and refused; the key cache could not be refreshed", v);
    }
    return json_response(200, {{"revoked", revoked->self}, {"also_revoked", revoked->also}}, v);
  }

  if (path == "/api/users") {
    if (!allowed(who.role, Action::manage_users)) return problem(403, "not permitted", v);
    if (verb == http::verb::get) {
      auto users = store_->users(super ? std::nullopt : std::optional<std::int64_t>(who.tenant_id));
      if (!users) return problem(500, "users unavailable", v);
      json out = json::array();
      for (const User& u : *users) out.push_back(user_json(u));
      return json_response(200, {{"users", out}}, v);
    }
    if (verb == http::verb::post) {
      auto body = body_object(req);
      if (auto* why = std::get_if<std::string>(&body)) return problem(400, *why, v);
      const json& b = std::get<json>(body);
      const std::string name = b.value("name", json()).is_string() ? b["name"].get<std::string>() : "";
      if (!valid_name(name)) return problem(400, "\"name\": 1-64 characters of [A-Za-z0-9_.-]", v);
      const auto role = b.value("role", json()).is_string() ? parse_role(b["role"].get<std::string>()) : std::nullopt;
      if (!role) return problem(400, "\"role\": viewer, editor, admin or super_admin", v);
      if (*role > who.role) return problem(403, "cannot grant a role above your own", v);
      std::int64_t tenant = who.tenant_id;
      std::string tenant_name = who.tenant;
      if (b.contains("tenant_id")) {
        if (!b["tenant_id"].is_number_integer()) return problem(400, "\"tenant_id\" must be an integer", v);
        if (!super && b["tenant_id"].get<std::int64_t>() != who.tenant_id) return problem(403, "not permitted", v);
        tenant = b["tenant_id"].get<std::int64_t>();
        auto t = store_->tenant(tenant);
        if (!t) return problem(500, "tenant unavailable", v);
        if (!*t) return problem(404, "no such tenant", v);
        tenant_name = (*t)->name;
      }
      auto id = store_->create_user(tenant, name, *role);
      if (!id) return problem(409, "the user could not be created (duplicate name)", v);
      json record = admin_record(who, tenant_name, "create_user");
      record["new_user"] = name;
      record["role"] = std::string(to_string(*role));
      if (!audited(std::move(record))) return problem(503, "the change was made but could not be audited", v);
      return json_response(201, {{"id", *id}, {"name", name}, {"role", std::string(to_string(*role))}}, v);
    }
    return problem(405, "method not allowed", v);
  }
  if (path.starts_with("/api/users/")) {
    if (!allowed(who.role, Action::manage_users)) return problem(403, "not permitted", v);
    if (verb != http::verb::patch) return problem(405, "method not allowed", v);
    const auto id = parse_id(path.substr(11));
    if (!id) return problem(400, "invalid user id", v);
    auto target = store_->user(*id);
    if (!target) return problem(500, "users unavailable", v);
    // Another tenant's user is no one's business but a super_admin's: as
    // for an id nobody has, 404 (the ids in use elsewhere stay unknown).
    if (!*target || (!super && (*target)->tenant_id != who.tenant_id)) return problem(404, "no such user", v);
    const User& before = **target;
    if (before.id == who.user_id) return problem(409, "you cannot change your own user", v);
    auto body = body_object(req);
    if (auto* why = std::get_if<std::string>(&body)) return problem(400, *why, v);
    const json& b = std::get<json>(body);
    for (const auto& [k, val] : b.items()) {
      if (k != "role" && k != "disabled") return problem(400, "unknown field \"" + clean_text(k, 64) + "\"", v);
    }
    std::optional<Role> role;
    if (b.contains("role")) {
      role = b["role"].is_string() ? parse_role(b["role"].get<std::string>()) : std::nullopt;
      if (!role) return problem(400, "\"role\": viewer, editor, admin or super_admin", v);
    }
    std::optional<bool> disabled;
    if (b.contains("disabled")) {
      if (!b["disabled"].is_boolean()) return problem(400, "\"disabled\" must be true or false", v);
      disabled = b["disabled"].get<bool>();
    }
    if (!role && !disabled) return problem(400, "nothing to change: give \"role\" or \"disabled\"", v);
    std::string tenant_name = who.tenant;
    if (before.tenant_id != who.tenant_id) {
      auto t = store_->tenant(before.tenant_id);
      if (!t || !*t) return problem(500, "tenant unavailable", v);
      tenant_name = (**t).name;
    }
    auto updated = update_user(before, role, disabled, admin_record(who, tenant_name, "update_user"), &who);
    if (auto why = user_change_problem(updated)) return problem(why->first, why->second, v);
    json out = user_json((*updated)->user);
    out["revoked_keys"] = (*updated)->revoked;
    return json_response(200, out, v);
  }

  if (path == "/api/saved-queries" && verb == http::verb::get) {
    auto list = store_->saved_queries(who.tenant_id);
    if (!list) return problem(500, "saved queries unavailable", v);
    json out = json::array();
    for (const SavedQuery& q : *list) out.push_back(to_json(q));
    return json_response(200, {{"saved_queries", out}}, v);
  }
  if (path.starts_with("/api/saved-queries/")) {
    const std::string name = path.substr(19);
    if (!valid_name(name)) return problem(400, "invalid saved query name", v);
    if (!allowed(who.role, Action::manage_saved_query)) return problem(403, "editors and admins manage saved queries", v);
    if (verb == http::verb::delete_) {
      auto gone = store_->delete_saved_query(who.tenant_id, name);
      if (!gone) return problem(500, "saved queries unavailable", v);
      if (!*gone) return problem(404, "no such saved query", v);
      mcp_->resources_changed(who.tenant_id);  // the change is made, audited or not
      if (!audited({{"kind", "admin"}, {"tenant", who.tenant}, {"user", who.user}, {"action", "delete_saved_query"},
                      {"name", name}})) {
      return problem(503, "the change was made but could not be audited", v);
    }
      return json_response(200, {{"deleted", name}}, v);
    }
    if (verb != http::verb::put) return problem(405, "method not allowed", v);
    auto body = body_object(req);
    if (auto* why = std::get_if<std::string>(&body)) return problem(400, *why, v);
    const json& b = std::get<json>(body);
    SavedQuery q;
    q.tenant_id = who.tenant_id;
    q.name = name;
    if (!b.value("sql", json()).is_string() || b["sql"].get<std::string>().empty() || b["sql"].get<std::string>().size() > 65536) {
      return problem(400, "\"sql\": one read-only statement, at most 64 KiB", v);
    }
    q.sql = b["sql"].get<std::string>();
    q.description = b.value("description", json()).is_string() ? b["description"].get<std::string>() : "";
    if (q.description.size() > 4096) return problem(400, "\"description\": at most 4096 bytes", v);
    const json params = b.value("params", json::array());
    if (!params.is_array() || params.size() > 32) return problem(400, "\"params\": an array of at most 32", v);
    for (const json& p : params) {
      const bool ok = p.is_object() && p.value("name", json()).is_string() && valid_name(p["name"].get<std::string>()) &&
                      p.value("type", json()).is_string() &&
                      std::set<std::string>{"string", "integer", "number", "boolean"}.contains(p["type"].get<std::string>());
      if (!ok) return problem(400, "each param: {\"name\": ..., \"type\": string|integer|number|boolean}", v);
      q.params.push_back({p["name"].get<std::string>(), p["type"].get<std::string>(),
                          p.value("description", json()).is_string() ? p["description"].get<std::string>() : ""});
    }
    // The statement must be one the data source would run: check it now,
    // not when an assistant first calls it.
    auto src = sources_->of(who.tenant_id);
    if (!src) return problem(503, "the data source is unavailable: the statement cannot be checked now", v);
    if (auto check = (*src)->check(q.sql, q.params.size()); !check) {
      return problem(400, "\"sql\": " + check.error().message, v);
    }
    if (auto s = store_->put_saved_query(q, who.user_id); !s) return problem(500, "the saved query could not be stored", v);
    mcp_->resources_changed(who.tenant_id);
    const KeyHash sql_hash = sha256(q.sql);  // which statement, without its text in the log
    if (!audited({{"kind", "admin"}, {"tenant", who.tenant}, {"user", who.user}, {"action", "put_saved_query"},
                    {"name", name}, {"sql_sha256", to_hex(sql_hash.data(), sql_hash.size())}})) {
      return problem(503, "the change was made but could not be audited", v);
    }
    return json_response(200, to_json(q), v);
  }

  if (path == "/api/meta/security") {
    auto tenant = store_->tenant(who.tenant_id);
    if (!tenant || !*tenant) return problem(500, "tenant unavailable", v);
    if (verb == http::verb::get) {
      auto out = security_state(**tenant);
      if (!out) return problem(500, "policy state unavailable", v);
      if (!allowed(who.role, Action::write_policy)) (*out)["enforcement"].erase("detail");
      if (query_value(req, "history") == "1") {
        auto versions = store_->policies(who.tenant_id, 50);
        if (!versions) return problem(500, "policies unavailable", v);
        json history = json::array();
        for (const PolicyVersion& p : *versions) {
          history.push_back({{"version", p.version}, {"policy", json::parse(p.policy, nullptr, false)},
                             {"by", p.user}, {"created_ms", p.created_ms}});
        }
        (*out)["history"] = history;
      }
      return json_response(200, *out, v);
    }
    if (verb != http::verb::put) return problem(405, "method not allowed", v);
    if (!allowed(who.role, Action::write_policy)) return problem(403, "admins change the policy", v);
    auto [status, body] = change_policy(**tenant, who.user_id, who.user, req.body());
    return json_response(status, body, v);
  }

  if (path == "/api/traffic" && verb == http::verb::get) {
    if (!allowed(who.role, Action::read_audit)) return problem(403, "not permitted", v);
    const std::string since_text = query_value(req, "since_ms");
    const auto since = since_text.empty() ? std::optional<std::int64_t>(now_ms() - 24 * 3600 * 1000)
                                          : number(since_text, INT64_MAX / 2);
    if (!since) return problem(400, "since_ms must be a timestamp in milliseconds", v);
    auto keys = store_->keys();
    if (!keys) return problem(500, "keys unavailable", v);
    std::vector<std::string> ids;
    for (const KeyRecord& k : *keys) {
      if (k.user.tenant_id == who.tenant_id) ids.push_back(k.id);
    }
    auto t = audit_->traffic(who.tenant, *since, ids);
    if (!t) return problem(500, "traffic unavailable", v);
    return json_response(200, *t, v);
  }

  if (path == "/api/audit" && verb == http::verb::get) {
    if (!allowed(who.role, Action::read_audit)) return problem(403, "not permitted", v);
    const std::string limit_text = query_value(req, "limit");
    const auto limit = limit_text.empty() ? std::optional<std::int64_t>(100) : number(limit_text, 1000);
    const std::string before_text = query_value(req, "before");
    const auto before = before_text.empty() ? std::optional<std::int64_t>(0) : number(before_text, INT64_MAX / 2);
    const std::string kind = query_value(req, "kind");
    if (!limit || *limit == 0 || !before || kind.size() > 32) return problem(400, "limit 1-1000, before a seq, kind a word", v);
    std::string tenant = who.tenant;
    if (super) tenant = query_value(req, "tenant");  // "" = all tenants
    auto records = audit_->read(tenant, static_cast<std::size_t>(*limit), *before, kind);
    if (!records) return problem(500, "audit unavailable", v);
    return json_response(200, {{"records", *records}}, v);
  }
  return problem(404, "not found", v);
}

namespace {
// A data source path as the rules a source is opened under see it: an
// absolute, normal path whose directories are real ones (no link), naming
// (when anything is there) a regular file in that directory
// (SqliteSource::file_within_directory); `problem` says which rule it
// breaks, `file` is the file ({} when none is there yet).
struct SourcePath {
  std::optional<std::string> problem;
  SqliteSource::FileId file;
};
SourcePath examine_source_path(const std::string& p) {
  if (p.empty() || p.front() != '/' || p.size() > 4096 || p.find('\0') != std::string::npos) {
    return {"data_source must be an absolute path (at most 4096 bytes, no NUL)", {}};
  }
  if (std::filesystem::path(p).lexically_normal().string() != p || p.back() == '/') {
    return {"data_source must be a normal path (no //, . or .. components, no trailing /)", {}};
  }
  if (!SqliteSource::directory_is_real(p)) {
    return {"data_source: its directory must exist, reached through real directories only (no links)", {}};
  }
  const auto file = SqliteSource::file_within_directory(p);
  struct stat st {};
  if (file == SqliteSource::FileId{} && ::lstat(p.c_str(), &st) == 0) {
    return {"data_source: not a regular file in its own directory (a link there may name only a file beside it)", {}};
  }
  return {std::nullopt, file};
}
}  // namespace

std::vector<std::string> App::startup_warnings() {
  std::vector<std::string> out;
  if (temp_budget_ < config_.query_temp_memory) {
    out.push_back("[query] temp_memory_mb lowered to " + std::to_string(temp_budget_ >> 20) + " MiB per statement (" +
                  std::to_string(kTempMemoryCap >> 20) + " MiB shared by " + std::to_string(workers_count_) +
                  " workers)");
  }
  if (schema_memory_ < config_.query_schema_memory) {
    out.push_back("[query] schema_memory_mb lowered to " + std::to_string(schema_memory_ >> 20) +
                  " MiB per connection (a tenant's " + std::to_string(workers_count_) + " connections take at most " +
                  std::to_string(Sources::kSchemaBudget / 4 >> 20) + " MiB, a quarter of the schema budget)");
  }
  if (const std::int64_t n = audit_->unanchored_at_open(); n > 0) {
    out.push_back("audit: " + std::to_string(n) +
                  " records follow the last anchor: committed before an unclean stop, or added while sluice-mcpd "
                  "was stopped (the chain cannot tell which; compare them with the journal's copy); anchored now");
  }
  auto tenants = store_->tenants();
  if (!tenants) {
    out.push_back("the tenant list could not be read: " + tenants.error().what);
    return out;
  }
  std::map<SqliteSource::FileId, std::vector<std::string>> by_file;
  for (const Tenant& t : *tenants) {
    const SourcePath path = examine_source_path(t.data_source);
    if (path.problem) out.push_back("tenant " + t.name + ": " + *path.problem + ": refused until fixed");
    if (path.file != SqliteSource::FileId{}) by_file[path.file].push_back(t.name);  // a missing file: said when called
  }
  for (const auto& [file, names] : by_file) {
    if (names.size() < 2) continue;
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    out.push_back("tenants " + list + ": one file is the data source of each: refused to all until fixed");
  }
  return out;
}

json App::local_admin(const json& r) {
  const auto err = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = r.value("op", json()).is_string() ? r["op"].get<std::string>() : "";
  const auto str = [&](const char* k) { return r.value(k, json()).is_string() ? r[k].get<std::string>() : std::string(); };
  if (op == "bootstrap") {
    const std::string tenant = str("tenant"), user = str("user"), source = str("data_source");
    if (!valid_tenant_name(tenant)) return err("tenant: 1-63 characters of [a-z0-9_-], not starting with - or _");
    if (!valid_name(user)) return err("user: 1-64 characters of [A-Za-z0-9_.-]");
    if (auto path = examine_source_path(source); path.problem) return err(*path.problem);
    // One transaction: a failure leaves nothing behind, and a retry works.
    auto done = store_->bootstrap(tenant, source, user);
    if (!done) return err(done.error().what);
    const auto undo = [&] {
      // The key first (it must never work), then the rest: a retry works.
      discard_key(done->key.id);
      (void)store_->undo_bootstrap(*done);
    };
    if (!keys_->reload()) {
      // Not left to go live at a later reload, unrecorded, its token lost.
      undo();
      return err("not bootstrapped: the key cache could not be reloaded");
    }
    if (!audited({{"kind", "admin"}, {"tenant", tenant}, {"user", user}, {"action", "bootstrap"}, {"key", done->key.id}})) {
      undo();  // unrecorded, so undone
      return err("not bootstrapped: the audit log is unavailable");
    }
    return {{"ok", true}, {"tenant_id", done->tenant_id}, {"user_id", done->user_id}, {"key_id", done->key.id},
            {"token", done->key.token}};
  }
  if (op == "create_tenant") {
    const std::string tenant = str("tenant"), source = str("data_source");
    if (!valid_tenant_name(tenant)) return err("tenant: 1-63 characters of [a-z0-9_-], not starting with - or _");
    const SourcePath path = examine_source_path(source);
    if (path.problem) return err(*path.problem);
    // A tenant's file is its own: mcpd would refuse it to both at their
    // next opening (Sources::of); said here, before anyone depends on it.
    auto others = store_->tenants();
    if (!others) return err("the tenant could not be created");
    const Tenant* owner = tenant_with_file(*others, path.file, 0);
    for (const Tenant& t : *others) {
      if (t.data_source == source) owner = &t;  // a file that is not there yet
    }
    if (owner) return err("data_source: that file is already the data source of tenant " + owner->name);
    auto tid = store_->create_tenant(tenant, source);
    if (!tid) return err("the tenant could not be created");
    if (!audited({{"kind", "admin"}, {"tenant", tenant}, {"user", "local"}, {"action", "create_tenant"},
                  {"data_source", clean_text(source, 512)}})) {
      return err("the change was made but could not be audited");
    }
    return {{"ok", true}, {"tenant_id", *tid}};
  }
  // A change made here is filed under the tenant it changes, as the API's
  // are, so that tenant's admins read it in /api/audit ("" when it names
  // none that exists: the operation then fails anyway).
  const auto tenant_name = [this](std::int64_t tenant_id) -> std::string {
    auto t = store_->tenant(tenant_id);
    return t && *t ? (*t)->name : std::string();
  };
  const auto tenant_of_user = [this, &tenant_name](std::int64_t user_id) -> std::string {
    auto u = store_->user(user_id);
    return u && *u ? tenant_name((*u)->tenant_id) : std::string();
  };
  if (op == "create_user") {
    const auto role = parse_role(str("role"));
    if (!r.value("tenant_id", json()).is_number_integer() || !role) return err("tenant_id and role required");
    auto uid = store_->create_user(r["tenant_id"].get<std::int64_t>(), str("user"), *role);
    if (!uid) return err("the user could not be created");
    if (!audited({{"kind", "admin"}, {"tenant", tenant_name(r["tenant_id"].get<std::int64_t>())}, {"user", "local"},
                  {"action", "create_user"},
                    {"new_user", clean_text(str("user"), 64)}, {"role", std::string(to_string(*role))}})) {
      return err("the change was made but could not be audited");
    }
    return {{"ok", true}, {"user_id", *uid}};
  }
  if (op == "update_user") {
    if (!r.value("user_id", json()).is_number_integer()) return err("user_id required");
    std::optional<Role> role;
    if (r.contains("role")) {
      role = parse_role(str("role"));
      if (!role) return err("role: viewer, editor, admin or super_admin");
    }
    std::optional<bool> disabled;
    if (r.contains("disabled")) {
      if (!r["disabled"].is_boolean()) return err("disabled must be true or false");
      disabled = r["disabled"].get<bool>();
    }
    if (!role && !disabled) return err("nothing to change: give role or disabled");
    auto before = store_->user(r["user_id"].get<std::int64_t>());
    if (!before) return err("the user could not be changed");
    if (!*before) return err("no such user");
    // Filed under the user's tenant, whose admins read it: not made
    // unless that tenant can be named.
    const std::string tenant = tenant_name((*before)->tenant_id);
    if (tenant.empty()) return err("the user could not be changed");
    auto updated = update_user(**before, role, disabled,
                               {{"kind", "admin"}, {"tenant", tenant}, {"user", "local"}, {"action", "update_user"}});
    if (auto why = user_change_problem(updated)) return err(why->second);
    return {{"ok", true}, {"user", user_json((*updated)->user)}, {"revoked_keys", (*updated)->revoked}};
  }
  if (op == "create_key") {
    const auto scopes = parse_scopes(str("scopes"));
    if (!r.value("user_id", json()).is_number_integer() || !scopes) return err("user_id and scopes required");
    auto key = store_->create_key(r["user_id"].get<std::int64_t>(), str("name").empty() ? "key" : str("name"), *scopes, std::nullopt);
    if (!key) return err("the key could not be created");
    if (!keys_->reload()) {
      // Not left to go live at a later reload, unrecorded, its token lost.
      discard_key(key->id);
      return err("the key was not issued: the key cache could not be reloaded");
    }
    if (!audited({{"kind", "admin"}, {"tenant", tenant_of_user(r["user_id"].get<std::int64_t>())}, {"user", "local"},
                  {"action", "create_key"}, {"key", key->id}, {"for_user", r["user_id"].get<std::int64_t>()},
                  {"scopes", scopes_to_string(*scopes)}})) {
      discard_key(key->id);
      return err("the key was not issued: the audit log is unavailable");
    }
    return {{"ok", true}, {"key_id", key->id}, {"token", key->token}};
  }
  if (op == "revoke_key") {
    auto revoked = revoke(str("key_id"), {{"kind", "admin"}, {"user", "local"}, {"action", "revoke_key"}});
    if (!revoked) return err("the key could not be revoked");
    if (!revoked->audited) return err("the change was made but could not be audited");
    if (!revoked->cache_refreshed) return err("the key is revoked and refused; the key cache could not be refreshed");
    return {{"ok", revoked->self}, {"also_revoked", revoked->also}};
  }
  if (op == "put_policy" || op == "get_policy") {
    auto tenants = store_->tenants();
    if (!tenants) return err("store unavailable");
    const std::string name = str("tenant");
    auto t = std::find_if(tenants->begin(), tenants->end(), [&](const Tenant& x) { return x.name == name; });
    if (t == tenants->end()) return err("no such tenant");
    if (op == "get_policy") {
      auto out = security_state(*t);
      if (!out) return err("policy state unavailable");
      (*out)["ok"] = true;
      return *out;
    }
    if (!r.value("policy", json()).is_string()) return err("policy (the policy's JSON text) required");
    auto [status, body] = change_policy(*t, std::nullopt, "local", r["policy"].get<std::string>());
    if (status >= 400) {
      body["ok"] = false;
      return body;
    }
    // Stored either way; "ok" says whether the kernel enforces it.
    body["ok"] = status == 200;
    return body;
  }
  if (op == "list_tenants") {
    auto tenants = store_->tenants();
    if (!tenants) return err("store unavailable");
    json out = json::array();
    for (const Tenant& t : *tenants) out.push_back({{"id", t.id}, {"name", t.name}, {"data_source", t.data_source}});
    return {{"ok", true}, {"tenants", out}};
  }
  if (op == "list_users") {
    auto users = store_->users(std::nullopt);
    if (!users) return err("store unavailable");
    json out = json::array();
    for (const User& u : *users) out.push_back(user_json(u));
    return {{"ok", true}, {"users", out}};
  }
  if (op == "list_keys") {
    auto keys = store_->keys();
    if (!keys) return err("store unavailable");
    json out = json::array();
    for (const KeyRecord& k : *keys) out.push_back(key_json(k));
    return {{"ok", true}, {"keys", out}};
  }
  return err("unknown op");
}

}  // namespace sluice::mcpd
