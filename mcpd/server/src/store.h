// mcpd's own database (one SQLite file, WAL): tenants, users, API keys
// (hashes only) and saved queries. The audit log has its own writer
// (audit.h) on the same file. Calls are serialised by a mutex: none of
// them is on the per-request hot path (keys are served from a cache,
// see auth.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "identity.h"
#include "keys.h"
#include "sql.h"

namespace sluice::mcpd {

struct Tenant {
  std::int64_t id = 0;
  std::string name;
  std::string data_source;  // path of the tenant's SQLite file
};

struct User {
  std::int64_t id = 0;
  std::int64_t tenant_id = 0;
  std::string name;
  Role role = Role::viewer;
  bool disabled = false;
};

// What authentication needs of a key, joined with its user and tenant.
struct KeyRecord {
  std::string id;
  std::string name;
  KeyHash hash{};
  unsigned scopes = 0;
  std::int64_t created_ms = 0;
  std::optional<std::int64_t> expires_ms;
  std::optional<std::int64_t> revoked_ms;
  User user;
  std::string tenant;
  std::string parent_id;  // the key it was minted with through the API, "" for none
};

struct SavedParam {
  std::string name;
  std::string type;  // "string" | "integer" | "number" | "boolean"
  std::string description;
};

struct SavedQuery {
  std::int64_t tenant_id = 0;
  std::string name;
  std::string description;
  std::string sql;
  std::vector<SavedParam> params;
  std::int64_t updated_ms = 0;
};

// One stored version of a tenant's egress policy (normalised JSON).
struct PolicyVersion {
  std::int64_t version = 0;
  std::string policy;
  std::string user;  // who stored it
  std::int64_t created_ms = 0;
};

struct AppliedPolicy {
  std::int64_t version = 0;
  std::string rules_sha256;  // hex
};

std::int64_t now_ms();

// Names of tenants, users, keys and saved queries: 1-64 of [A-Za-z0-9_.-],
// not starting with '.' or '-'.
bool valid_name(std::string_view s);
// Tenant names are also cgroup and nftables names in sluice-agent: 1-63 of
// [a-z0-9_-], not starting with '-' or '_' (the agent's own rule).
bool valid_tenant_name(std::string_view s);

struct Bootstrapped {
  std::int64_t tenant_id = 0;
  std::int64_t user_id = 0;
  NewKey key;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path);

  Result<std::int64_t> create_tenant(const std::string& name, const std::string& data_source);
  Result<std::vector<Tenant>> tenants();
  Result<std::optional<Tenant>> tenant(std::int64_t id);

  Result<std::int64_t> create_user(std::int64_t tenant_id, const std::string& name, Role role);
  // The first tenant, its super-admin and that user's key: all or nothing,
  // refused once any tenant exists.
  Result<Bootstrapped> bootstrap(const std::string& tenant, const std::string& data_source,
                                 const std::string& user);
  // Takes a bootstrap back (it could not be audited): as if it never was.
  Status undo_bootstrap(const Bootstrapped& b);
  Result<std::vector<User>> users(std::optional<std::int64_t> tenant_id);
  Result<std::optional<User>> user(std::int64_t id);
  // Sets the user's role and/or disabled flag (nullopt: left as it is),
  // only while the user is still `expected` (tenant, role, flag): the user
  // as it is now, or nullopt when there is no such user any more or it
  // changed since `expected` was read.
  Result<std::optional<User>> update_user(const User& expected, std::optional<Role> role,
                                          std::optional<bool> disabled);

  // A key made over the local admin socket: no parent.
  Result<NewKey> create_key(std::int64_t user_id, const std::string& name, unsigned scopes,
                            std::optional<std::int64_t> expires_ms);
  // A key minted through the API by the holder of `parent_id`: revoking
  // the parent revokes it too. Refused, nothing stored, when the parent is
  // no longer live (revoked, expired, its user disabled) at the moment of
  // the insert (a request authenticated before a revocation cannot mint a
  // key that survives it), or when the user already holds `max_live` live
  // keys.
  enum class MintRefusal { parent_not_live, too_many_keys };
  Result<std::variant<NewKey, MintRefusal>> mint_key(const std::string& parent_id, std::int64_t user_id,
                                                     const std::string& name, unsigned scopes,
                                                     std::optional<std::int64_t> expires_ms,
                                                     std::size_t max_live);
  // Revokes the key and every live key minted from it, transitively (a key
  // a thief minted with a stolen one dies with it). Returns the ids revoked
  // now; `id` is among them unless it was already revoked or never was.
  Result<std::vector<std::string>> revoke_key(const std::string& id);
  Result<std::vector<KeyRecord>> keys();            // every key, joined

  Result<std::vector<SavedQuery>> saved_queries(std::int64_t tenant_id);
  Result<std::optional<SavedQuery>> saved_query(std::int64_t tenant_id, const std::string& name);
  Status put_saved_query(const SavedQuery& q, std::int64_t user_id);
  Result<bool> delete_saved_query(std::int64_t tenant_id, const std::string& name);

  // Stores the next version of the tenant's policy; returns its number.
  // `user_id` nullopt: changed over the local admin socket.
  Result<std::int64_t> put_policy(std::int64_t tenant_id, const std::string& policy, std::optional<std::int64_t> user_id);
  // Newest first.
  Result<std::vector<PolicyVersion>> policies(std::int64_t tenant_id, std::size_t limit);
  Result<std::optional<PolicyVersion>> policy(std::int64_t tenant_id, std::int64_t version);
  // The newest version sluice-agent acknowledged as applied in both
  // layers, with the SHA-256 of the rules it was sent.
  Status set_policy_applied(std::int64_t tenant_id, std::int64_t version, std::uint64_t generation,
                            const std::string& rules_sha256);
  Result<std::optional<AppliedPolicy>> policy_applied(std::int64_t tenant_id);

 private:
  explicit Store(Db db) : db_(std::move(db)) {}
  Status migrate();
  // The inserts alone, under mu_ held by the caller.
  Result<std::int64_t> insert_tenant(const std::string& name, const std::string& data_source);
  Result<std::int64_t> insert_user(std::int64_t tenant_id, const std::string& name, Role role);
  // nullopt when `parent_id` is set and that key is not live.
  Result<std::optional<NewKey>> insert_key(std::int64_t user_id, const std::string& name, unsigned scopes,
                                           std::optional<std::int64_t> expires_ms, const std::string& parent_id);

  std::mutex mu_;
  Db db_;
};

nlohmann::json to_json(const SavedQuery& q);

}  // namespace sluice::mcpd
