#include "auth.h"

#include <catch2/catch.hpp>

#include "temp_dir.h"

using namespace sluice::mcpd;
using sluice::testing::TempDir;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  TempDir dir;
  std::unique_ptr<Store> store;
  std::int64_t tenant = 0, user = 0;
  Fixture() {
    store = std::move(*Store::open(dir.file("mcpd.db")));
    tenant = *store->create_tenant("acme", "/nonexistent.db");
    user = *store->create_user(tenant, "alice", Role::editor);
  }
};

std::string bearer(const std::string& token) { return "Bearer " + token; }

}  // namespace

TEST_CASE("mcpd::ApiKeyAuthenticator admits live keys and names every refusal", "[mcpd][auth]") {
  Fixture f;
  ApiKeyAuthenticator keys(*f.store);
  const NewKey k = *f.store->create_key(f.user, "laptop", kScopeRead | kScopeQuery, std::nullopt);
  REQUIRE(keys.reload());
  const std::vector<const Authenticator*> chain{&keys};

  SECTION("a valid key yields its user, tenant, role and scopes") {
    const AuthOutcome out = authenticate(chain, bearer(k.token));
    REQUIRE(out.principal);
    CHECK(out.principal->tenant == "acme");
    CHECK(out.principal->user == "alice");
    CHECK(out.principal->role == Role::editor);
    CHECK(out.principal->scopes == (kScopeRead | kScopeQuery));
    CHECK(out.principal->credential_id == k.id);
    CHECK(out.principal->credential_type == "api_key");
  }
  SECTION("the scheme is case-insensitive") {
    CHECK(authenticate(chain, "bearer " + k.token).principal);
    CHECK(authenticate(chain, "BEARER " + k.token).principal);
  }
  SECTION("no header, another scheme or a foreign token shape are refused") {
    CHECK(authenticate(chain, "").failure == AuthFailure::missing);
    CHECK(authenticate(chain, "Basic YWxpY2U6c2VjcmV0").failure == AuthFailure::malformed);
    CHECK(authenticate(chain, "Bearer eyJhbGciOi.x.y").failure == AuthFailure::malformed);
    CHECK(authenticate(chain, "Bearer").failure == AuthFailure::malformed);
  }
  SECTION("a wrong secret for a real id is unknown, and names the id for the audit") {
    std::string wrong = k.token;
    wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
    const AuthOutcome out = authenticate(chain, bearer(wrong));
    CHECK_FALSE(out.principal);
    CHECK(out.failure == AuthFailure::unknown);
    CHECK(out.credential_id == k.id);
  }
  SECTION("a revoked key is refused once the cache reloads") {
    REQUIRE(f.store->revoke_key(k.id)->size() == 1);
    REQUIRE(keys.reload());
    CHECK(authenticate(chain, bearer(k.token)).failure == AuthFailure::revoked);
  }
  SECTION("an expired key is refused") {
    const NewKey old = *f.store->create_key(f.user, "old", kScopeRead, now_ms() - 1);
    REQUIRE(keys.reload());
    CHECK(authenticate(chain, bearer(old.token)).failure == AuthFailure::expired);
  }
}

TEST_CASE("mcpd::ApiKeyAuthenticator::current tells a key's standing and its user's role as they are now",
          "[mcpd][auth]") {
  Fixture f;
  ApiKeyAuthenticator keys(*f.store);
  const NewKey k = *f.store->create_key(f.user, "laptop", kScopeRead, std::nullopt);
  REQUIRE(keys.reload());
  const auto standing = [&] { return keys.current(k.id); };
  REQUIRE(std::holds_alternative<Role>(standing()));
  CHECK(std::get<Role>(standing()) == Role::editor);
  const User alice = **f.store->user(f.user);
  // Refused while its user changes, until the reload has the change: as
  // `changing`, which no one counts as a failed credential.
  CHECK(keys.hold_user(f.user) == std::vector<std::string>{k.id});
  CHECK(std::get<AuthFailure>(standing()) == AuthFailure::changing);
  std::string wrong = k.token;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  CHECK(keys.authenticate(wrong).failure == AuthFailure::unknown);  // a wrong secret is still that
  CHECK(keys.authenticate(k.token).failure == AuthFailure::changing);
  REQUIRE(*f.store->update_user(alice, Role::viewer, std::nullopt));
  REQUIRE(keys.reload());
  CHECK(std::get<Role>(standing()) == Role::viewer);
  REQUIRE(*f.store->update_user(**f.store->user(f.user), std::nullopt, true));
  REQUIRE(keys.reload());
  CHECK(std::get<AuthFailure>(standing()) == AuthFailure::disabled);
  CHECK(std::get<AuthFailure>(keys.current("nokey")) == AuthFailure::revoked);
}

TEST_CASE("mcpd::Lockout locks an address after too many failures within the window", "[mcpd][auth]") {
  Lockout lock({3, 60s, 4});
  const auto t0 = Clock::now();
  SECTION("below the threshold nothing is locked") {
    CHECK_FALSE(lock.failure("10.0.0.1", t0));
    CHECK_FALSE(lock.failure("10.0.0.1", t0 + 1s));
    CHECK(lock.locked_for("10.0.0.1", t0 + 1s) == 0);
  }
  SECTION("the third failure locks until the window has passed since the last one") {
    lock.failure("10.0.0.1", t0);
    lock.failure("10.0.0.1", t0 + 1s);
    CHECK(lock.failure("10.0.0.1", t0 + 2s));
    CHECK(lock.locked_for("10.0.0.1", t0 + 2s) == 60);
    CHECK(lock.locked_for("10.0.0.1", t0 + 61s) == 1);
    CHECK(lock.locked_for("10.0.0.1", t0 + 62s) == 0);
    CHECK(lock.locked_for("10.0.0.2", t0 + 2s) == 0);  // other addresses unaffected
  }
  SECTION("failures older than the window do not count") {
    lock.failure("10.0.0.1", t0);
    lock.failure("10.0.0.1", t0 + 1s);
    CHECK_FALSE(lock.failure("10.0.0.1", t0 + 70s));
    CHECK(lock.locked_for("10.0.0.1", t0 + 70s) == 0);
  }
  SECTION("a burst across a window's edge is caught") {
    lock.failure("10.0.0.1", t0);
    lock.failure("10.0.0.1", t0 + 59500ms);
    CHECK_FALSE(lock.failure("10.0.0.1", t0 + 60500ms));  // 2 within the last minute
    CHECK(lock.failure("10.0.0.1", t0 + 61s));            // 3 within the last minute
  }
  SECTION("memory is bounded: the least recently seen address is forgotten") {
    for (int i = 0; i < 10; ++i) lock.failure("10.0.1." + std::to_string(i), t0);
    CHECK(lock.tracked() == 4);
  }
}

TEST_CASE("mcpd::RateLimiter is a token bucket per key", "[mcpd][auth]") {
  RateLimiter limit(2.0, 3.0);
  const auto t0 = Clock::now();
  SECTION("a burst is allowed, then refused with a wait") {
    CHECK(limit.take("acme", t0) == 0);
    CHECK(limit.take("acme", t0) == 0);
    CHECK(limit.take("acme", t0) == 0);
    CHECK(limit.take("acme", t0) >= 1);
    CHECK(limit.take("other", t0) == 0);  // buckets are per tenant
  }
  SECTION("tokens come back at the configured rate") {
    for (int i = 0; i < 3; ++i) limit.take("acme", t0);
    CHECK(limit.take("acme", t0 + 100ms) >= 1);
    CHECK(limit.take("acme", t0 + 600ms) == 0);
  }
}
