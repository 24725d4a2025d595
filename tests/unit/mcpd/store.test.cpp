// mcpd's own database: the bootstrap is all or nothing.
#include "store.h"

#include <sqlite3.h>

#include <algorithm>

#include <catch2/catch.hpp>

#include "power_cut.h"
#include "temp_dir.h"
#include "temp_files.h"

using sluice::mcpd::Store;
using sluice::testing::TempDir;

TEST_CASE("mcpd::Store::bootstrap is one transaction, once", "[mcpd][store]") {
  TempDir dir;
  auto store = Store::open(dir.file("mcpd.db"));
  REQUIRE(store);

  // A failure midway (the user name is invalid) leaves no tenant behind.
  auto bad = (*store)->bootstrap("acme", "/srv/acme.db", "no spaces allowed");
  REQUIRE_FALSE(bad);
  auto tenants = (*store)->tenants();
  REQUIRE(tenants);
  CHECK(tenants->empty());

  // So a retry works, and yields a super-admin with a key.
  auto good = (*store)->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(good);
  CHECK(good->key.token.rfind("slk_", 0) == 0);
  auto keys = (*store)->keys();
  REQUIRE(keys);
  REQUIRE(keys->size() == 1);
  CHECK(keys->front().user.role == sluice::mcpd::Role::super_admin);
  CHECK(keys->front().tenant == "acme");

  // Once only.
  auto again = (*store)->bootstrap("other", "/srv/other.db", "bob");
  REQUIRE_FALSE(again);
  CHECK_THAT(again.error().what, Catch::Contains("already bootstrapped"));

  // Undone (it could not be audited): nothing left, and it can happen again.
  REQUIRE((*store)->undo_bootstrap(*good));
  tenants = (*store)->tenants();
  REQUIRE(tenants);
  CHECK(tenants->empty());
  keys = (*store)->keys();
  REQUIRE(keys);
  CHECK(keys->empty());
  CHECK((*store)->bootstrap("acme", "/srv/acme.db", "alice"));
}

TEST_CASE("mcpd::Store::revoke_key revokes every key minted from the key, transitively", "[mcpd][store]") {
  using sluice::mcpd::kScopeRead;
  TempDir dir;
  auto store = std::move(*Store::open(dir.file("mcpd.db")));
  auto boot = store->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(boot);
  const auto mint = [&](const std::string& parent) {
    if (parent.empty()) {
      auto k = store->create_key(boot->user_id, "k", kScopeRead, std::nullopt);
      REQUIRE(k);
      return k->id;
    }
    auto k = store->mint_key(parent, boot->user_id, "k", kScopeRead, std::nullopt, 100);
    REQUIRE(k);
    REQUIRE(std::holds_alternative<sluice::mcpd::NewKey>(*k));
    return std::get<sluice::mcpd::NewKey>(*k).id;
  };
  const std::string stolen = mint(""), child = mint(stolen), grandchild = mint(child), other = mint("");
  const std::string sibling = mint(boot->key.id);
  // A child revoked alone first: its own child still goes with the root.
  REQUIRE(store->revoke_key(child)->size() == 2);  // child and grandchild
  const std::string late = mint(stolen);
  auto revoked = store->revoke_key(stolen);
  REQUIRE(revoked);
  std::sort(revoked->begin(), revoked->end());
  std::vector<std::string> expected = {stolen, late};
  std::sort(expected.begin(), expected.end());
  CHECK(*revoked == expected);
  CHECK(store->revoke_key(stolen)->empty());  // already revoked
  CHECK(store->revoke_key("no-such-key")->empty());
  auto keys = store->keys();
  REQUIRE(keys);
  for (const auto& k : *keys) {
    INFO(k.id);
    CHECK(k.revoked_ms.has_value() == (k.id != other && k.id != sibling && k.id != boot->key.id));
    if (k.id == late) CHECK(k.parent_id == stolen);
    if (k.id == other) CHECK(k.parent_id.empty());
  }
}

TEST_CASE("mcpd::Store::mint_key mints only from a live key, up to a user's key limit", "[mcpd][store]") {
  using sluice::mcpd::kScopeRead;
  using sluice::mcpd::NewKey;
  using Refusal = Store::MintRefusal;
  TempDir dir;
  auto store = std::move(*Store::open(dir.file("mcpd.db")));
  auto boot = store->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(boot);
  const auto outcome = [&](const std::string& parent, std::size_t max_live) -> std::variant<NewKey, Refusal> {
    auto k = store->mint_key(parent, boot->user_id, "k", kScopeRead, std::nullopt, max_live);
    REQUIRE(k);
    return *k;
  };
  const auto refused = [](const std::variant<NewKey, Refusal>& v) -> std::optional<Refusal> {
    if (const auto* r = std::get_if<Refusal>(&v)) return *r;
    return std::nullopt;
  };
  const auto count_keys = [&] {
    auto keys = store->keys();
    REQUIRE(keys);
    return keys->size();
  };
  // The bootstrap key is alice's one live key: a limit of 1 refuses.
  CHECK(refused(outcome(boot->key.id, 1)) == Refusal::too_many_keys);
  const auto live = outcome(boot->key.id, 100);
  REQUIRE_FALSE(refused(live));
  const std::string parent = std::get<NewKey>(live).id;
  CHECK(count_keys() == 2);
  // Revoked keys do not count against the limit; revoked parents mint nothing.
  REQUIRE(store->revoke_key(parent)->size() == 1);
  CHECK(refused(outcome(parent, 100)) == Refusal::parent_not_live);
  CHECK(refused(outcome("no-such-key", 100)) == Refusal::parent_not_live);
  CHECK(count_keys() == 2);  // nothing stored
  CHECK_FALSE(refused(outcome(boot->key.id, 2)));
  // An expired parent mints nothing either.
  auto old = store->create_key(boot->user_id, "old", kScopeRead, sluice::mcpd::now_ms() - 1);
  REQUIRE(old);
  CHECK(refused(outcome(old->id, 100)) == Refusal::parent_not_live);
  CHECK_FALSE(store->mint_key("", boot->user_id, "k", kScopeRead, std::nullopt, 100));
}

TEST_CASE("mcpd::Store opens a database from before keys recorded their parent", "[mcpd][store]") {
  TempDir dir;
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(dir.file("mcpd.db").c_str(), &h) == SQLITE_OK);
    const char* old_schema =
        "CREATE TABLE api_keys(id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL, "
        "hash BLOB NOT NULL CHECK (length(hash) = 32), scopes TEXT NOT NULL, created_ms INTEGER NOT NULL, "
        "expires_ms INTEGER, revoked_ms INTEGER)";
    REQUIRE(sqlite3_exec(h, old_schema, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
  }
  auto store = Store::open(dir.file("mcpd.db"));
  REQUIRE(store);
  auto boot = (*store)->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(boot);
  REQUIRE((*store)->mint_key(boot->key.id, boot->user_id, "k", sluice::mcpd::kScopeRead, std::nullopt, 100));
  CHECK((*store)->revoke_key(boot->key.id)->size() == 2);
  REQUIRE(Store::open(dir.file("mcpd.db")));  // and again, with the column there
}

TEST_CASE("mcpd::Store: a revocation or a policy it has returned survives a power cut the moment after",
          "[mcpd][store]") {
  // A revoked key that came back to life after a crash would be a key the
  // operator believes dead.
  using sluice::mcpd::kScopeRead;
  TempDir dir;
  sluice::testing::PowerCut power([] { (void)sluice::mcpd::memory_temp_vfs(); });
  auto store = std::move(*Store::open(dir.file("mcpd.db")));
  auto boot = store->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(boot);
  auto key = store->create_key(boot->user_id, "k", kScopeRead, std::nullopt);
  REQUIRE(key);
  // What a restart after a cut the moment after the last step finds.
  const auto after_cut = [&](std::uint32_t seed) {
    TempDir after;
    sluice::testing::PowerCut::restore(power.cut(false, seed), after.path());
    auto copy = Store::open(after.file("mcpd.db"));
    REQUIRE(copy);
    auto keys = (*copy)->keys();
    auto policies = (*copy)->policies(boot->tenant_id, 10);
    REQUIRE(keys);
    REQUIRE(policies);
    return std::make_pair(std::move(*keys), std::move(*policies));
  };
  const auto revoked = [&](const std::vector<sluice::mcpd::KeyRecord>& keys) {
    for (const auto& k : keys) {
      if (k.id == key->id) return k.revoked_ms.has_value();
    }
    FAIL("the key did not survive the cut");
    return false;
  };
  CHECK_FALSE(revoked(after_cut(1).first));
  REQUIRE(store->revoke_key(key->id)->size() == 1);
  CHECK(revoked(after_cut(2).first));
  REQUIRE(store->put_policy(boot->tenant_id, R"({"allow_llm_egress": false})", boot->user_id));
  const auto policies = after_cut(3).second;
  REQUIRE(policies.size() == 1);
  CHECK(policies[0].policy == R"({"allow_llm_egress": false})");
}

TEST_CASE("mcpd::Store::update_user changes what it is given, only while the user is as read", "[mcpd][store]") {
  using sluice::mcpd::Role;
  using sluice::mcpd::User;
  TempDir dir;
  auto store = std::move(*Store::open(dir.file("mcpd.db")));
  auto boot = store->bootstrap("acme", "/srv/acme.db", "alice");
  REQUIRE(boot);
  auto id = store->create_user(boot->tenant_id, "dee", Role::editor);
  REQUIRE(id);
  const auto read = [&] { return **store->user(*id); };
  const User first = read();
  auto u = store->update_user(first, Role::viewer, std::nullopt);
  REQUIRE(u);
  REQUIRE(*u);
  CHECK((*u)->role == Role::viewer);
  CHECK_FALSE((*u)->disabled);
  // `first` is stale now: a check made on it no longer holds, nothing changes.
  auto stale = store->update_user(first, Role::admin, true);
  REQUIRE(stale);
  CHECK_FALSE(*stale);
  CHECK(read().role == Role::viewer);
  CHECK_FALSE(read().disabled);
  u = store->update_user(read(), std::nullopt, true);
  REQUIRE(*u);
  CHECK((*u)->role == Role::viewer);
  CHECK((*u)->disabled);
  u = store->update_user(read(), Role::admin, false);
  REQUIRE(*u);
  CHECK((*u)->role == Role::admin);
  CHECK_FALSE((*u)->disabled);
  User nobody = read();
  nobody.id = 999999;
  auto none = store->update_user(nobody, std::nullopt, true);
  REQUIRE(none);
  CHECK_FALSE(*none);
  CHECK((*store->user(boot->user_id))->role == Role::super_admin);  // no one else changed
}
