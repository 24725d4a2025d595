// mcpd's own database: the bootstrap is all or nothing.
#include "store.h"

#include <catch2/catch.hpp>

#include "temp_dir.h"

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
