#include "store.h"

#include "sqlite_source.h"
#include "text.h"

#include <chrono>
#include <climits>

namespace sluice::mcpd {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS tenants(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  data_source TEXT NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users(
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'super_admin')),
  disabled INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  UNIQUE (tenant_id, name));
CREATE TABLE IF NOT EXISTS api_keys(
  id TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id),
  name TEXT NOT NULL,
  hash BLOB NOT NULL CHECK (length(hash) = 32),
  scopes TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER,
  revoked_ms INTEGER,
  parent_id TEXT);
CREATE TABLE IF NOT EXISTS saved_queries(
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  sql TEXT NOT NULL,
  params TEXT NOT NULL,
  updated_by INTEGER REFERENCES users(id),
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name));
CREATE TABLE IF NOT EXISTS policies(
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  version INTEGER NOT NULL,
  policy TEXT NOT NULL,
  user_id INTEGER REFERENCES users(id),
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, version));
CREATE TABLE IF NOT EXISTS policy_applied(
  tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id),
  version INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  rules_sha256 TEXT NOT NULL,
  applied_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit(
  seq INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  tenant TEXT NOT NULL,
  record TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL) STRICT;
CREATE INDEX IF NOT EXISTS audit_tenant ON audit(tenant, seq);
)sql";

constexpr char kInsertTenant[] =
    "INSERT INTO tenants(name, data_source, created_ms) VALUES (?, ?, ?)";
constexpr char kSelectTenants[] = "SELECT id, name, data_source FROM tenants ORDER BY id";
constexpr char kSelectTenant[] = "SELECT id, name, data_source FROM tenants WHERE id = ?";
constexpr char kInsertUser[] =
    "INSERT INTO users(tenant_id, name, role, created_ms) VALUES (?, ?, ?, ?)";
constexpr char kSelectUsers[] =
    "SELECT id, tenant_id, name, role, disabled FROM users "
    "WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY id";
constexpr char kSelectUser[] = "SELECT id, tenant_id, name, role, disabled FROM users WHERE id = ?";
// NULL leaves a field as it is. Only while the user is as it was read
// (?4-?6): a check made on that reading still holds.
constexpr char kUpdateUser[] =
    "UPDATE users SET role = coalesce(?2, role), disabled = coalesce(?3, disabled) "
    "WHERE id = ?1 AND tenant_id = ?4 AND role = ?5 AND disabled = ?6";
constexpr char kInsertKey[] =
    "INSERT INTO api_keys(id, user_id, name, hash, scopes, created_ms, expires_ms, parent_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kCountLiveKeys[] =
    "SELECT count(*) FROM api_keys WHERE user_id = ?1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2)";
// Minted from a key only while that key is live: checked in the insert
// itself, under the store's lock, so a revocation is either before it (no
// key) or after it (the new key is among those it revokes), never between
// a check and the insert.
constexpr char kMintKey[] =
    "INSERT INTO api_keys(id, user_id, name, hash, scopes, created_ms, expires_ms, parent_id) "
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM api_keys p JOIN users u ON u.id = p.user_id "
    "WHERE p.id = ?8 AND p.revoked_ms IS NULL AND (p.expires_ms IS NULL OR p.expires_ms > ?6) AND u.disabled = 0)";
// The key and every key minted from it, transitively (revoked ones too: a
// child revoked alone may have children of its own).
constexpr char kRevokeKey[] =
    "WITH RECURSIVE tree(id) AS (SELECT ?2 UNION SELECT k.id FROM api_keys k JOIN tree ON k.parent_id = tree.id) "
    "UPDATE api_keys SET revoked_ms = ?1 WHERE id IN (SELECT id FROM tree) AND revoked_ms IS NULL RETURNING id";
constexpr char kSelectKeys[] =
    "SELECT k.id, k.name, k.hash, k.scopes, k.created_ms, k.expires_ms, k.revoked_ms, "
    "u.id, u.tenant_id, u.name, u.role, u.disabled, t.name, k.parent_id "
    "FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = u.tenant_id "
    "ORDER BY k.created_ms, k.id";
constexpr char kSelectSaved[] =
    "SELECT tenant_id, name, description, sql, params, updated_ms FROM saved_queries "
    "WHERE tenant_id = ? AND (?2 IS NULL OR name = ?2) ORDER BY name";
constexpr char kUpsertSaved[] =
    "INSERT INTO saved_queries(tenant_id, name, description, sql, params, updated_by, updated_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET "
    "description = excluded.description, sql = excluded.sql, params = excluded.params, "
    "updated_by = excluded.updated_by, updated_ms = excluded.updated_ms";
constexpr char kDeleteSaved[] = "DELETE FROM saved_queries WHERE tenant_id = ? AND name = ?";
constexpr char kInsertPolicy[] =
    "INSERT INTO policies(tenant_id, version, policy, user_id, created_ms) "
    "SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4 FROM policies WHERE tenant_id = ?1 "
    "RETURNING version";
constexpr char kSelectPolicies[] =
    "SELECT p.version, p.policy, COALESCE(u.name, 'local admin'), p.created_ms FROM policies p "
    "LEFT JOIN users u ON u.id = p.user_id WHERE p.tenant_id = ? ORDER BY p.version DESC LIMIT ?";
constexpr char kSelectPolicy[] =
    "SELECT p.version, p.policy, COALESCE(u.name, 'local admin'), p.created_ms FROM policies p "
    "LEFT JOIN users u ON u.id = p.user_id WHERE p.tenant_id = ? AND p.version = ?";
// Never moves backwards: a late report of an older apply changes nothing.
constexpr char kUpsertApplied[] =
    "INSERT INTO policy_applied(tenant_id, version, generation, rules_sha256, applied_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT(tenant_id) DO UPDATE SET version = excluded.version, generation = excluded.generation, "
    "rules_sha256 = excluded.rules_sha256, applied_ms = excluded.applied_ms "
    "WHERE excluded.version >= policy_applied.version";
constexpr char kSelectApplied[] = "SELECT version, rules_sha256 FROM policy_applied WHERE tenant_id = ?";

User user_from(const Stmt& s, int at) {
  User u;
  u.id = s.int64(at);
  u.tenant_id = s.int64(at + 1);
  u.name = s.text(at + 2);
  u.role = parse_role(s.text(at + 3)).value_or(Role::viewer);
  u.disabled = s.int64(at + 4) != 0;
  return u;
}

SavedQuery saved_from(const Stmt& s) {
  SavedQuery q;
  q.tenant_id = s.int64(0);
  q.name = s.text(1);
  q.description = s.text(2);
  q.sql = s.text(3);
  const auto params = parse_json(s.text(4));
  if (params && params->is_array()) {
    for (const auto& p : *params) {
      if (!p.is_object()) continue;
      q.params.push_back({p.value("name", ""), p.value("type", "string"), p.value("description", "")});
    }
  }
  q.updated_ms = s.int64(5);
  return q;
}

}  // namespace

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '.' || s.front() == '-') return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_tenant_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.front() == '_') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

nlohmann::json to_json(const SavedQuery& q) {
  nlohmann::json params = nlohmann::json::array();
  for (const SavedParam& p : q.params) {
    params.push_back({{"name", p.name}, {"type", p.type}, {"description", p.description}});
  }
  return {{"name", q.name}, {"description", q.description}, {"sql", q.sql}, {"params", params},
          {"updated_ms", q.updated_ms}};
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  auto db = Db::open(path, /*create=*/true);
  if (!db) return tl::unexpected(db.error());
  std::unique_ptr<Store> s(new Store(std::move(*db)));
  if (auto m = s->migrate(); !m) return tl::unexpected(m.error());
  // Marked as mcpd's: no tenant's data source may be this file.
  if (auto m = s->db_.exec(("PRAGMA application_id=" + std::to_string(kMcpdApplicationId)).c_str()); !m) {
    return tl::unexpected(m.error());
  }
  // Into the main file now, not only the WAL: a hard link to mcpd.db read
  // without its WAL must show the mark too.
  if (auto m = s->db_.exec("PRAGMA wal_checkpoint(TRUNCATE)"); !m) return tl::unexpected(m.error());
  return s;
}

Status Store::migrate() {
  std::lock_guard lock(mu_);
  if (auto s = db_.exec(kSchema); !s) return s;
  // Databases from before keys recorded the key that minted them.
  auto has = db_.prepare("SELECT 1 FROM pragma_table_info('api_keys') WHERE name = 'parent_id'");
  if (!has) return tl::unexpected(has.error());
  auto row = has->step();
  if (!row) return tl::unexpected(row.error());
  if (*row) return {};
  has->reset();
  return db_.exec("ALTER TABLE api_keys ADD COLUMN parent_id TEXT");
}

Result<std::int64_t> Store::create_tenant(const std::string& name, const std::string& data_source) {
  std::lock_guard lock(mu_);
  return insert_tenant(name, data_source);
}

Result<std::int64_t> Store::insert_tenant(const std::string& name, const std::string& data_source) {
  if (!valid_tenant_name(name)) return fail("invalid tenant name");
  auto st = db_.prepare(kInsertTenant);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, name).bind(2, data_source).bind(3, now_ms());
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  return db_.last_rowid();
}

Result<std::vector<Tenant>> Store::tenants() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectTenants);
  if (!st) return tl::unexpected(st.error());
  std::vector<Tenant> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back({st->int64(0), st->text(1), st->text(2)});
  }
  return out;
}

Result<std::optional<Tenant>> Store::tenant(std::int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectTenant);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, id);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<Tenant>();
  return Tenant{st->int64(0), st->text(1), st->text(2)};
}

Result<std::int64_t> Store::create_user(std::int64_t tenant_id, const std::string& name, Role role) {
  std::lock_guard lock(mu_);
  return insert_user(tenant_id, name, role);
}

Result<std::int64_t> Store::insert_user(std::int64_t tenant_id, const std::string& name, Role role) {
  if (!valid_name(name)) return fail("invalid user name");
  auto st = db_.prepare(kInsertUser);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, name).bind(3, std::string(to_string(role))).bind(4, now_ms());
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  return db_.last_rowid();
}

Result<std::vector<User>> Store::users(std::optional<std::int64_t> tenant_id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectUsers);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id);
  std::vector<User> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back(user_from(*st, 0));
  }
  return out;
}

Result<std::optional<User>> Store::user(std::int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectUser);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, id);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<User>();
  return user_from(*st, 0);
}

Result<std::optional<User>> Store::update_user(const User& expected, std::optional<Role> role,
                                               std::optional<bool> disabled) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kUpdateUser);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, expected.id);
  if (role) st->bind(2, std::string(to_string(*role)));
  st->bind(3, disabled ? std::optional<std::int64_t>(*disabled ? 1 : 0) : std::nullopt);
  st->bind(4, expected.tenant_id).bind(5, std::string(to_string(expected.role)));
  st->bind(6, std::int64_t{expected.disabled ? 1 : 0});
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  if (db_.changes() == 0) return std::optional<User>();
  auto get = db_.prepare(kSelectUser);
  if (!get) return tl::unexpected(get.error());
  get->bind(1, expected.id);
  auto row = get->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<User>();
  return user_from(*get, 0);
}

Result<NewKey> Store::create_key(std::int64_t user_id, const std::string& name, unsigned scopes,
                                 std::optional<std::int64_t> expires_ms) {
  std::lock_guard lock(mu_);
  auto k = insert_key(user_id, name, scopes, expires_ms, "");
  if (!k) return tl::unexpected(k.error());
  return std::move(**k);
}

Result<std::variant<NewKey, Store::MintRefusal>> Store::mint_key(const std::string& parent_id, std::int64_t user_id,
                                                                  const std::string& name, unsigned scopes,
                                                                  std::optional<std::int64_t> expires_ms,
                                                                  std::size_t max_live) {
  if (parent_id.empty()) return fail("a minted key needs the key it is minted from");
  std::lock_guard lock(mu_);
  auto count = db_.prepare(kCountLiveKeys);
  if (!count) return tl::unexpected(count.error());
  count->bind(1, user_id).bind(2, now_ms());
  auto row = count->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return fail("store: no key count");
  if (static_cast<std::uint64_t>(count->int64(0)) >= max_live) return MintRefusal::too_many_keys;
  auto k = insert_key(user_id, name, scopes, expires_ms, parent_id);
  if (!k) return tl::unexpected(k.error());
  if (!*k) return MintRefusal::parent_not_live;
  return std::move(**k);
}

Result<Bootstrapped> Store::bootstrap(const std::string& tenant, const std::string& data_source,
                                      const std::string& user) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.began()) return fail("store: cannot begin a transaction");
  // Checked inside the transaction: two bootstraps cannot both pass.
  auto any = db_.prepare("SELECT 1 FROM tenants LIMIT 1");
  if (!any) return tl::unexpected(any.error());
  auto row = any->step();
  if (!row) return tl::unexpected(row.error());
  if (*row) return fail("already bootstrapped: tenants exist");
  any->reset();
  Bootstrapped b;
  auto tid = insert_tenant(tenant, data_source);
  if (!tid) return tl::unexpected(tid.error());
  auto uid = insert_user(*tid, user, Role::super_admin);
  if (!uid) return tl::unexpected(uid.error());
  auto key = insert_key(*uid, "bootstrap", kAllScopes, std::nullopt, "");
  if (!key) return tl::unexpected(key.error());
  if (auto s = tx.commit(); !s) return tl::unexpected(s.error());
  return Bootstrapped{*tid, *uid, std::move(**key)};
}

Status Store::undo_bootstrap(const Bootstrapped& b) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.began()) return fail("store: cannot begin a transaction");
  for (const char* sql : {"DELETE FROM api_keys WHERE user_id = ?", "DELETE FROM users WHERE id = ?"}) {
    auto st = db_.prepare(sql);
    if (!st) return tl::unexpected(st.error());
    st->bind(1, b.user_id);
    if (auto r = st->run(); !r) return tl::unexpected(r.error());
  }
  auto st = db_.prepare("DELETE FROM tenants WHERE id = ?");
  if (!st) return tl::unexpected(st.error());
  st->bind(1, b.tenant_id);
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  return tx.commit();
}

Result<std::optional<NewKey>> Store::insert_key(std::int64_t user_id, const std::string& name, unsigned scopes,
                                                std::optional<std::int64_t> expires_ms,
                                                const std::string& parent_id) {
  if (!valid_name(name)) return fail("invalid key name");
  if (scopes == 0 || (scopes & ~kAllScopes)) return fail("invalid scopes");
  NewKey k = generate_key();
  auto st = db_.prepare(parent_id.empty() ? kInsertKey : kMintKey);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, k.id).bind(2, user_id).bind(3, name).bind_blob(4, k.hash.data(), k.hash.size());
  st->bind(5, scopes_to_string(scopes)).bind(6, now_ms()).bind(7, expires_ms);
  if (parent_id.empty()) {
    st->bind_null(8);
  } else {
    st->bind(8, parent_id);
  }
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  if (db_.changes() != 1) return std::optional<NewKey>();  // the parent is no longer live
  return std::optional<NewKey>(std::move(k));
}

Result<std::vector<std::string>> Store::revoke_key(const std::string& id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kRevokeKey);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, now_ms()).bind(2, id);
  std::vector<std::string> revoked;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    revoked.push_back(st->text(0));
  }
  return revoked;
}

Result<std::vector<KeyRecord>> Store::keys() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectKeys);
  if (!st) return tl::unexpected(st.error());
  std::vector<KeyRecord> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    KeyRecord k;
    k.id = st->text(0);
    k.name = st->text(1);
    const auto hash = st->blob(2);
    if (hash.size() != k.hash.size()) continue;  // the CHECK forbids it; never trust a short hash
    std::copy(hash.begin(), hash.end(), k.hash.begin());
    k.scopes = parse_scopes(st->text(3)).value_or(0);
    k.created_ms = st->int64(4);
    k.expires_ms = st->opt_int64(5);
    k.revoked_ms = st->opt_int64(6);
    k.user = user_from(*st, 7);
    k.tenant = st->text(12);
    k.parent_id = st->text(13);
    out.push_back(std::move(k));
  }
  return out;
}

Result<std::vector<SavedQuery>> Store::saved_queries(std::int64_t tenant_id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectSaved);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind_null(2);
  std::vector<SavedQuery> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back(saved_from(*st));
  }
  return out;
}

Result<std::optional<SavedQuery>> Store::saved_query(std::int64_t tenant_id, const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectSaved);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, name);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<SavedQuery>();
  return saved_from(*st);
}

Status Store::put_saved_query(const SavedQuery& q, std::int64_t user_id) {
  if (!valid_name(q.name)) return fail("invalid saved query name");
  nlohmann::json params = to_json(q)["params"];
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kUpsertSaved);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, q.tenant_id).bind(2, q.name).bind(3, q.description).bind(4, q.sql);
  st->bind(5, to_text(params)).bind(6, user_id).bind(7, now_ms());
  return st->run();
}

Result<std::int64_t> Store::put_policy(std::int64_t tenant_id, const std::string& policy,
                                       std::optional<std::int64_t> user_id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kInsertPolicy);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, policy).bind(3, user_id).bind(4, now_ms());
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return fail("policy version not assigned");
  const std::int64_t version = st->int64(0);
  if (auto done = st->run(); !done) return tl::unexpected(done.error());
  return version;
}

Result<std::vector<PolicyVersion>> Store::policies(std::int64_t tenant_id, std::size_t limit) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectPolicies);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, static_cast<std::int64_t>(limit));
  std::vector<PolicyVersion> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back({st->int64(0), st->text(1), st->text(2), st->int64(3)});
  }
  return out;
}

Result<std::optional<PolicyVersion>> Store::policy(std::int64_t tenant_id, std::int64_t version) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectPolicy);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, version);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<PolicyVersion>();
  return PolicyVersion{st->int64(0), st->text(1), st->text(2), st->int64(3)};
}

Status Store::set_policy_applied(std::int64_t tenant_id, std::int64_t version, std::uint64_t generation,
                                 const std::string& rules_sha256) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kUpsertApplied);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, version).bind(3, static_cast<std::int64_t>(generation & INT64_MAX));
  st->bind(4, rules_sha256).bind(5, now_ms());
  return st->run();
}

Result<std::optional<AppliedPolicy>> Store::policy_applied(std::int64_t tenant_id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kSelectApplied);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<AppliedPolicy>();
  return std::optional<AppliedPolicy>(AppliedPolicy{st->int64(0), st->text(1)});
}

Result<bool> Store::delete_saved_query(std::int64_t tenant_id, const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(kDeleteSaved);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant_id).bind(2, name);
  if (auto r = st->run(); !r) return tl::unexpected(r.error());
  return db_.changes() > 0;
}

}  // namespace sluice::mcpd
