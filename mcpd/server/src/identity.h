// Who is calling: tenants, users, roles and key scopes. The permission
// matrix lives in docs/access.md and in `allowed()` below; both say the
// same thing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::mcpd {

// Ordered: each role has every permission of the roles before it.
enum class Role { viewer = 0, editor = 1, admin = 2, super_admin = 3 };

std::string_view to_string(Role r);
std::optional<Role> parse_role(std::string_view s);

// Key scopes (a bit set).
// `admin`: the admin API (/api/*) beyond GET /api/meta, within what the
// key's role allows. A key without it (one handed to an AI client) is an
// MCP credential only, whatever its user's role.
enum Scope : unsigned { kScopeRead = 1, kScopeQuery = 2, kScopeFlows = 4, kScopeAdmin = 8 };
constexpr unsigned kAllScopes = kScopeRead | kScopeQuery | kScopeFlows | kScopeAdmin;
// "read,query" -> bits; nullopt for an unknown or empty scope.
std::optional<unsigned> parse_scopes(std::string_view list);
std::string scopes_to_string(unsigned scopes);

inline constexpr std::string_view kApiKeyCredential = "api_key";

// A credential's name across types: "<type>:<id>". Sessions, streams and
// audit records name a credential by it, so two types' ids never meet
// (an OAuth grant's id may be anything an API key's is).
inline std::string credential_name(std::string_view type, std::string_view id) {
  std::string out;
  out.reserve(type.size() + 1 + id.size());
  out.append(type).append(1, ':').append(id);
  return out;
}

// The authenticated caller of one request. `credential_id` names the
// credential within its type (an API key id today; an OAuth grant later).
struct Principal {
  std::string credential_type;  // kApiKeyCredential
  std::string credential_id;
  std::int64_t tenant_id = 0;
  std::string tenant;
  std::int64_t user_id = 0;
  std::string user;
  Role role = Role::viewer;
  unsigned scopes = 0;
  std::optional<std::int64_t> expires_ms;  // of the credential

  [[nodiscard]] std::string credential() const { return credential_name(credential_type, credential_id); }
};

// Administrative actions, checked against the caller's role (and tenant:
// only super_admin crosses tenants).
enum class Action {
  read_meta,           // GET /api/meta, GET /api/meta/security: viewer+
  write_policy,        // PUT /api/meta/security: admin+
  manage_saved_query,  // create/update/delete saved queries: editor+
  read_audit,          // GET /api/audit, /api/traffic: admin+
  manage_users,        // users and other users' keys: admin+
  manage_own_keys,     // the caller's own keys: viewer+
  manage_tenants,      // create tenants: super_admin
};

bool allowed(Role role, Action action);

}  // namespace sluice::mcpd
