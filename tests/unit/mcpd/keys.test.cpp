#include "keys.h"

#include <cstring>
#include <set>

#include <catch2/catch.hpp>

#include "identity.h"

using namespace sluice::mcpd;

TEST_CASE("mcpd::keys are random, shaped, and stored only as a hash", "[mcpd][keys]") {
  SECTION("a new key parses back to its id and a secret whose hash is stored") {
    const NewKey k = generate_key();
    CHECK(k.token.size() == 4 + 16 + 1 + 43);
    auto parsed = parse_key(k.token);
    REQUIRE(parsed);
    CHECK(parsed->id == k.id);
    CHECK(same_hash(hash_secret(parsed->secret), k.hash));
    CHECK(k.token.find(to_hex(k.hash.data(), k.hash.size())) == std::string::npos);
  }
  SECTION("keys do not repeat") {
    std::set<std::string> ids, tokens;
    for (int i = 0; i < 200; ++i) {
      const NewKey k = generate_key();
      ids.insert(k.id);
      tokens.insert(k.token);
    }
    CHECK(ids.size() == 200);
    CHECK(tokens.size() == 200);
  }
  SECTION("a different secret does not match") {
    const NewKey k = generate_key();
    std::string other = k.token;
    other.back() = other.back() == 'A' ? 'B' : 'A';
    auto parsed = parse_key(other);
    REQUIRE(parsed);
    CHECK_FALSE(same_hash(hash_secret(parsed->secret), k.hash));
  }
  SECTION("anything not shaped like a key is refused") {
    const NewKey k = generate_key();
    for (const std::string& bad :
         {std::string(), std::string("slk_"), k.token + "x", k.token.substr(1), "SLK" + k.token.substr(3),
          k.token.substr(0, 20) + "-" + k.token.substr(21), "slk_0123456789abcdeG_" + k.token.substr(21),
          k.token.substr(0, 30) + "+" + k.token.substr(31), k.token.substr(0, 30) + std::string(1, '\0') + k.token.substr(31)}) {
      CHECK_FALSE(parse_key(bad));
    }
  }
}

TEST_CASE("mcpd::identity parses scopes and roles strictly", "[mcpd][identity]") {
  SECTION("scopes are a comma-separated subset of read, query, flows, admin") {
    CHECK(parse_scopes("read") == kScopeRead);
    CHECK(parse_scopes("read,query") == (kScopeRead | kScopeQuery));
    CHECK(parse_scopes("flows,read,admin,query") == kAllScopes);
    CHECK(scopes_to_string(kScopeQuery | kScopeRead) == "read,query");
    CHECK(scopes_to_string(kAllScopes) == "read,query,flows,admin");
    for (const char* bad : {"", "root", "read,", ",read", "read,,query", "READ", "read query", "Admin"}) {
      CHECK_FALSE(parse_scopes(bad));
    }
  }
  SECTION("roles are the four of the matrix") {
    CHECK(parse_role("viewer") == Role::viewer);
    CHECK(parse_role("super_admin") == Role::super_admin);
    CHECK_FALSE(parse_role("root"));
    CHECK(to_string(Role::editor) == "editor");
  }
  SECTION("the permission matrix") {
    CHECK(allowed(Role::viewer, Action::read_meta));
    CHECK(allowed(Role::viewer, Action::manage_own_keys));
    CHECK_FALSE(allowed(Role::viewer, Action::manage_saved_query));
    CHECK(allowed(Role::editor, Action::manage_saved_query));
    CHECK_FALSE(allowed(Role::editor, Action::read_audit));
    CHECK_FALSE(allowed(Role::editor, Action::write_policy));
    CHECK(allowed(Role::admin, Action::read_audit));
    CHECK(allowed(Role::admin, Action::manage_users));
    CHECK(allowed(Role::admin, Action::write_policy));
    CHECK_FALSE(allowed(Role::admin, Action::manage_tenants));
    CHECK(allowed(Role::super_admin, Action::manage_tenants));
  }
}

TEST_CASE("mcpd::hmac_sha256 is RFC 4231's HMAC-SHA-256", "[mcpd][keys]") {
  // Test case 2: key "Jefe" (HMAC pads a short key with zeros, as a
  // 32-byte key holding "Jefe" and zeros is padded).
  KeyHash key{};
  std::memcpy(key.data(), "Jefe", 4);
  const KeyHash mac = hmac_sha256(key, "what do ya want for nothing?");
  CHECK(to_hex(mac.data(), mac.size()) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 1: twenty 0x0b bytes, "Hi There".
  KeyHash k1{};
  std::memset(k1.data(), 0x0b, 20);
  const KeyHash mac1 = hmac_sha256(k1, "Hi There");
  CHECK(to_hex(mac1.data(), mac1.size()) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(random_key() != random_key());
}
