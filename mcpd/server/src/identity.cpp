#include "identity.h"

#include <array>
#include <utility>

namespace sluice::mcpd {
namespace {
constexpr std::array<std::pair<Role, std::string_view>, 4> kRoles = {{
    {Role::viewer, "viewer"},
    {Role::editor, "editor"},
    {Role::admin, "admin"},
    {Role::super_admin, "super_admin"},
}};
constexpr std::array<std::pair<unsigned, std::string_view>, 4> kScopes = {{
    {kScopeRead, "read"},
    {kScopeQuery, "query"},
    {kScopeFlows, "flows"},
    {kScopeAdmin, "admin"},
}};
}  // namespace

std::string_view to_string(Role r) {
  for (const auto& [role, name] : kRoles) {
    if (role == r) return name;
  }
  return "viewer";
}

std::optional<Role> parse_role(std::string_view s) {
  for (const auto& [role, name] : kRoles) {
    if (name == s) return role;
  }
  return std::nullopt;
}

std::optional<unsigned> parse_scopes(std::string_view list) {
  unsigned out = 0;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    bool known = false;
    for (const auto& [bit, name] : kScopes) {
      if (name == item) {
        out |= bit;
        known = true;
      }
    }
    if (!known) return std::nullopt;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
    if (list.empty()) return std::nullopt;  // trailing comma
  }
  if (out == 0) return std::nullopt;
  return out;
}

std::string scopes_to_string(unsigned scopes) {
  std::string out;
  for (const auto& [bit, name] : kScopes) {
    if (scopes & bit) {
      if (!out.empty()) out += ',';
      out += name;
    }
  }
  return out;
}

bool allowed(Role role, Action action) {
  Role least = Role::super_admin;
  switch (action) {
    case Action::read_meta:
    case Action::manage_own_keys:
      least = Role::viewer;
      break;
    case Action::manage_saved_query:
      least = Role::editor;
      break;
    case Action::write_policy:
    case Action::read_audit:
    case Action::manage_users:
      least = Role::admin;
      break;
    case Action::manage_tenants:
      least = Role::super_admin;
      break;
  }
  return static_cast<int>(role) >= static_cast<int>(least);
}

}  // namespace sluice::mcpd
