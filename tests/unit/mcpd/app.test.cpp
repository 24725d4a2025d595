// The App in-process: local administration and the admin API driven as
// the socket and the HTTP server drive them, with the audit log failing on
// demand (a failed fsync, through the power-cut VFS) where a rule depends
// on whether a record could be written.
#include "app.h"

#include <algorithm>
#include <exception>
#include <functional>
#include <future>
#include <tuple>
#include <optional>
#include <thread>
#include <string>
#include <variant>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "audit_chain.h"
#include "power_cut.h"
#include "temp_dir.h"
#include "temp_files.h"

using namespace sluice::mcpd;
using sluice::testing::PowerCut;
using sluice::testing::TempDir;
using nlohmann::json;
namespace http = boost::beast::http;

namespace {

// An App on a private data directory, bootstrapped: tenant "acme", its
// super_admin "root" and root's key.
struct Appliance {
  TempDir dir;
  std::unique_ptr<App> app;
  // The requests' context, as the server's: it goes before the App and
  // after the App's threads are joined (~Appliance), which may still hold
  // a request's channel when the request's run returns.
  boost::asio::io_context io;
  std::string root_token;
  std::int64_t root_id = 0;

  explicit Appliance(const std::function<void(McpdConfig&)>& tune = {}) {
    McpdConfig c;
    c.data_dir = dir.path();
    c.runtime_dir = dir.path();
    c.journal = false;
    if (tune) tune(c);
    auto opened = App::open(c);
    REQUIRE(opened);
    app = std::move(*opened);
    const json boot = local({{"op", "bootstrap"}, {"tenant", "acme"}, {"user", "root"}, {"data_source", dir.file("acme.db")}});
    REQUIRE(boot["ok"] == true);
    root_token = boot["token"].get<std::string>();
    root_id = boot["user_id"].get<std::int64_t>();
  }
  ~Appliance() {
    if (app) app->shutdown();
  }
  Appliance(const Appliance&) = delete;
  Appliance& operator=(const Appliance&) = delete;

  json local(const json& request) { return app->local_admin(request); }

  std::int64_t user(std::int64_t tenant_id, const char* name, const char* role) {
    const json r = local({{"op", "create_user"}, {"tenant_id", tenant_id}, {"user", name}, {"role", role}});
    REQUIRE(r["ok"] == true);
    return r["user_id"].get<std::int64_t>();
  }

  // A request through the header check and the handler, as the HTTP
  // server makes it; the response, and its body parsed when it is JSON.
  std::pair<unsigned, json> api(http::verb verb, const std::string& target, const std::string& token,
                                const std::optional<json>& body = std::nullopt) {
    auto [status, parsed, failed] = request(verb, target, token, body);
    REQUIRE_FALSE(failed);
    return {status, std::move(parsed)};
  }
  // The same without assertions, for other threads than the test's
  // (Catch 2 is not thread-safe), one at a time; `failed`: the handler threw.
  std::tuple<unsigned, json, std::exception_ptr> request(http::verb verb, const std::string& target,
                                                         const std::string& token, const std::optional<json>& body) {
    HttpRequest req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1:8443");
    req.set(http::field::authorization, "Bearer " + token);
    if (body) {
      req.set(http::field::content_type, "application/json");
      req.body() = body->dump();
    }
    req.prepare_payload();
    Admission admission = app->check_header(req.base(), "127.0.0.1");
    HttpResponse response;
    if (auto* refused = std::get_if<HttpResponse>(&admission)) {
      response = std::move(*refused);
    } else {
      io.restart();
      std::exception_ptr failed;
      boost::asio::co_spawn(io, app->handle(std::move(req), std::get<std::any>(std::move(admission))),
                            [&](std::exception_ptr e, HttpReply reply) {
                              failed = e;
                              response = std::move(reply.response);
                            });
      io.run();
      if (failed) return {0, json(), failed};
    }
    return {response.result_int(), json::parse(response.body(), nullptr, false), nullptr};
  }

  User stored(std::int64_t id) {
    auto u = app->store().user(id);
    REQUIRE(u);
    REQUIRE(*u);
    return **u;
  }

  bool live(const std::string& key_id) { return std::holds_alternative<Role>(app->keys().current(key_id)); }

  // The admin records of one action, newest first.
  std::vector<json> records(const std::string& action) {
    auto all = app->audit().read("", 1000, 0, "admin");
    REQUIRE(all);
    std::vector<json> out;
    std::copy_if(all->begin(), all->end(), std::back_inserter(out), [&](const json& r) { return r["action"] == action; });
    return out;
  }
};

// `f` and `g` started together on two threads (no Catch assertions in
// them); their results.
template <typename F, typename G>
auto at_once(F f, G g) {
  std::promise<void> go;
  std::shared_future<void> start = go.get_future().share();
  auto first = std::async(std::launch::async, [&] {
    start.wait();
    return f();
  });
  auto second = std::async(std::launch::async, [&] {
    start.wait();
    return g();
  });
  go.set_value();
  auto a = first.get();
  return std::make_pair(std::move(a), second.get());
}

}  // namespace

TEST_CASE("mcpd::App: a user change whose record cannot be written is not made when it grants, made when it restricts",
          "[mcpd][app][audit]") {
  PowerCut power([] { (void)memory_temp_vfs(); });  // first: every connection of the App goes through it
  Appliance a;
  const std::int64_t vic = a.user(1, "vic", "viewer");
  const std::int64_t ada = a.user(1, "ada", "admin");
  const json vic_key = a.local({{"op", "create_key"}, {"user_id", vic}, {"scopes", "read"}});
  REQUIRE(vic_key["ok"] == true);

  SECTION("over the local socket") {
    power.fail_syncs(1);
    json r = a.local({{"op", "update_user"}, {"user_id", vic}, {"role", "editor"}});
    CHECK(r["ok"] == false);
    CHECK(r["error"] == "the change could not be audited: nothing was changed");
    CHECK(a.stored(vic).role == Role::viewer);

    power.fail_syncs(1);
    r = a.local({{"op", "update_user"}, {"user_id", vic}, {"disabled", true}});
    CHECK(r["error"] == "the change was made but could not be audited");
    CHECK(a.stored(vic).disabled);
    CHECK_FALSE(a.live(vic_key["key_id"].get<std::string>()));

    power.fail_syncs(1);
    r = a.local({{"op", "update_user"}, {"user_id", vic}, {"disabled", false}});
    CHECK(r["error"] == "the change could not be audited: nothing was changed");
    CHECK(a.stored(vic).disabled);
    CHECK_FALSE(a.live(vic_key["key_id"].get<std::string>()));

    power.fail_syncs(1);
    r = a.local({{"op", "update_user"}, {"user_id", ada}, {"role", "viewer"}});
    CHECK(r["error"] == "the change was made but could not be audited");
    CHECK(a.stored(ada).role == Role::viewer);
  }
  SECTION("over the admin API") {
    const std::string vic_path = "/api/users/" + std::to_string(vic);
    power.fail_syncs(1);
    auto [status, body] = a.api(http::verb::patch, vic_path, a.root_token, json{{"role", "admin"}});
    CHECK(status == 503);
    CHECK(body["error"] == "the change could not be audited: nothing was changed");
    CHECK(a.stored(vic).role == Role::viewer);

    power.fail_syncs(1);
    std::tie(status, body) = a.api(http::verb::patch, vic_path, a.root_token, json{{"disabled", true}});
    CHECK(status == 503);
    CHECK(body["error"] == "the change was made but could not be audited");
    CHECK(a.stored(vic).disabled);
    CHECK_FALSE(a.live(vic_key["key_id"].get<std::string>()));

    // A mixed request grants as well: all or nothing.
    power.fail_syncs(1);
    std::tie(status, body) = a.api(http::verb::patch, vic_path, a.root_token, json{{"disabled", false}, {"role", "viewer"}});
    CHECK(status == 503);
    CHECK(a.stored(vic).disabled);

    power.fail_syncs(1);
    std::tie(status, body) =
        a.api(http::verb::patch, "/api/users/" + std::to_string(ada), a.root_token, json{{"role", "editor"}});
    CHECK(status == 503);
    CHECK(body["error"] == "the change was made but could not be audited");
    CHECK(a.stored(ada).role == Role::editor);
  }
  // None of the failed records is in the log, and it goes on whole: the
  // failed commits left no gap in the chain.
  CHECK(a.records("update_user").empty());
  const json enabled = a.local({{"op", "update_user"}, {"user_id", vic}, {"disabled", false}});
  CHECK(enabled["ok"] == true);
  CHECK_FALSE(a.stored(vic).disabled);
  CHECK(a.records("update_user").size() == 1);
  auto verdict = verify_audit(a.dir.file("mcpd.db"));
  REQUIRE(verdict);
  CHECK(verdict->ok);
}

TEST_CASE("mcpd::App: a key whose minting cannot be recorded is not issued, and a policy not stored",
          "[mcpd][app][audit]") {
  PowerCut power([] { (void)memory_temp_vfs(); });
  Appliance a;
  const std::int64_t vic = a.user(1, "vic", "viewer");
  power.fail_syncs(1, 1);  // the key is stored, its record fails
  auto [status, body] = a.api(http::verb::post, "/api/keys", a.root_token,
                              json{{"name", "k"}, {"scopes", "read"}, {"user_id", vic}});
  CHECK(status == 503);
  CHECK_FALSE(body.contains("token"));
  auto keys = a.app->store().keys();
  REQUIRE(keys);
  const auto minted = std::find_if(keys->begin(), keys->end(), [&](const KeyRecord& k) { return k.user.id == vic; });
  REQUIRE(minted != keys->end());  // stored first, then revoked: never usable
  CHECK(minted->revoked_ms);
  CHECK_FALSE(a.live(minted->id));

  power.fail_syncs(1, 1);
  const json r = a.local({{"op", "create_key"}, {"user_id", vic}, {"scopes", "read"}});
  CHECK(r["error"] == "the key was not issued: the audit log is unavailable");
  CHECK_FALSE(r.contains("token"));

  power.fail_syncs(1);  // the request's record, first
  std::tie(status, body) = a.api(http::verb::put, "/api/meta/security", a.root_token,
                                 json{{"allow_llm_egress", true}, {"allow_prospecting", false}, {"discovery_samples", false}});
  CHECK(status == 503);
  auto policies = a.app->store().policies(1, 10);
  REQUIRE(policies);
  CHECK(policies->empty());
  CHECK(a.records("create_key").empty());
}

TEST_CASE("mcpd::App: a super_admin lowered loses the keys it minted that its new role could not mint",
          "[mcpd][app]") {
  Appliance a;
  const json beta = a.local({{"op", "create_tenant"}, {"tenant", "beta"}, {"data_source", a.dir.file("beta.db")}});
  REQUIRE(beta["ok"] == true);
  const std::int64_t bea = a.user(beta["tenant_id"].get<std::int64_t>(), "bea", "viewer");  // another tenant
  const std::int64_t ada = a.user(1, "ada", "admin");   // the new role's peer
  const std::int64_t val = a.user(1, "val", "viewer");  // still below it
  const auto mint = [&](std::int64_t for_user) {
    auto [status, body] =
        a.api(http::verb::post, "/api/keys", a.root_token, json{{"name", "k"}, {"scopes", "read"}, {"user_id", for_user}});
    REQUIRE(status == 201);
    return body["id"].get<std::string>();
  };
  const std::string for_bea = mint(bea), for_ada = mint(ada), for_val = mint(val);
  REQUIRE((a.live(for_bea) && a.live(for_ada) && a.live(for_val)));

  const json r = a.local({{"op", "update_user"}, {"user_id", a.root_id}, {"role", "admin"}});
  REQUIRE(r["ok"] == true);
  std::vector<std::string> revoked = r["revoked_keys"].get<std::vector<std::string>>();
  std::sort(revoked.begin(), revoked.end());
  std::vector<std::string> expected{for_bea, for_ada};
  std::sort(expected.begin(), expected.end());
  CHECK(revoked == expected);
  CHECK_FALSE(a.live(for_bea));
  CHECK_FALSE(a.live(for_ada));
  CHECK(a.live(for_val));
  CHECK(a.stored(a.root_id).role == Role::admin);
  // Each revocation is recorded under the tenant of the key it revoked.
  const auto revocations = a.records("revoke_key");
  REQUIRE(revocations.size() == 2);
  for (const json& rec : revocations) {
    INFO(rec.dump());
    CHECK(rec["tenant"] == (rec["key"] == for_bea ? "beta" : "acme"));
    CHECK(rec["target_user_id"] == a.root_id);
  }
  // And the lowered admin mints no more across tenants.
  auto [status, body] =
      a.api(http::verb::post, "/api/keys", a.root_token, json{{"name", "k2"}, {"scopes", "read"}, {"user_id", bea}});
  CHECK(status == 404);
}

TEST_CASE("mcpd::App: a mint over the API and the minter's disabling over the socket, at once, leave no live key it minted",
          "[mcpd][app]") {
  // Without one lock over both, the mint could check its minter, the
  // disabling look for the keys it minted (finding none yet), and the mint
  // then store a key of a disabled user's making that nobody revokes.
  Appliance a([](McpdConfig& c) {
    c.admin_rate = c.admin_burst = 1000;  // a mint a round
    c.lockout_failures = 1000;            // the disabled minter's 401s
  });
  int minted = 0, refused = 0;
  for (int round = 0; round < 60; ++round) {
    INFO("round " << round);
    const std::string n = std::to_string(round);
    const std::int64_t minter = a.user(1, ("ada" + n).c_str(), "admin");
    const std::int64_t viewer = a.user(1, ("val" + n).c_str(), "viewer");
    const json key = a.local({{"op", "create_key"}, {"user_id", minter}, {"scopes", "read,admin"}});
    REQUIRE(key["ok"] == true);
    const auto [minted_by, disabled] = at_once(
        [&] {
          return a.request(http::verb::post, "/api/keys", key["token"].get<std::string>(),
                           json{{"name", "k"}, {"scopes", "read"}, {"user_id", viewer}});
        },
        [&] { return a.local({{"op", "update_user"}, {"user_id", minter}, {"disabled", true}}); });
    const auto& [status, answer, failed] = minted_by;
    REQUIRE_FALSE(failed);
    REQUIRE(disabled["ok"] == true);
    // 503: admitted while the minter's keys were refused as changing.
    CHECK((status == 201 || status == 401 || status == 403 || status == 503));
    (status == 201 ? minted : refused) += 1;
    auto keys = a.app->store().keys();
    REQUIRE(keys);
    for (const KeyRecord& k : *keys) {
      if (k.user.id == viewer) CHECK_FALSE(a.live(k.id));
    }
  }
  WARN("minted then revoked " << minted << ", refused " << refused);
}

TEST_CASE("mcpd::App: while a user changes, its keys are told to retry, with nothing counted against the address",
          "[mcpd][app][auth]") {
  // The moment between a user change and the key cache's reload: the
  // keys' secrets match, their standing is going. Not a failed credential:
  // a client behind a shared address (a hosted connector) must not lock
  // out everyone else there by retrying.
  Appliance a;
  const std::int64_t ada = a.user(1, "ada", "admin");
  const json key = a.local({{"op", "create_key"}, {"user_id", ada}, {"scopes", "read,admin"}});
  REQUIRE(key["ok"] == true);
  const std::string token = key["token"].get<std::string>();
  REQUIRE(a.api(http::verb::get, "/api/meta", token).first == 200);
  auto before = a.app->audit().read("", 1000, 0, "auth_failure");
  REQUIRE(before);
  const std::size_t failures = before->size();

  // Held afresh before each request: mcpd's once-a-second reload (below)
  // may come between two of them.
  int held = 0;
  for (int i = 0; i < 15; ++i) {  // past the lockout's 10 failures
    REQUIRE(a.app->keys().hold_user(ada) == std::vector<std::string>{key["key_id"].get<std::string>()});
    const unsigned status = a.api(http::verb::get, "/api/meta", token).first;
    CHECK((status == 503 || status == 200));  // 200: the reload came in between
    held += status == 503;
  }
  CHECK(held >= 10);
  // Failed authentications are recorded best effort, without waiting; a
  // record that waits (a user created) comes after any of them in the log.
  REQUIRE(a.local({{"op", "create_user"}, {"tenant_id", 1}, {"user", "barrier"}, {"role", "viewer"}})["ok"] == true);
  auto all = a.app->audit().read("", 1000, 0, "auth_failure");
  REQUIRE(all);
  CHECK(all->size() == failures);
  // No reload came (as when the change's own failed): mcpd tries again
  // each second, and then the key works: not locked out either.
  REQUIRE(a.app->keys().hold_user(ada).size() == 1);
  unsigned status = 0;
  for (int i = 0; i < 30 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = a.api(http::verb::get, "/api/meta", token).first;
  }
  CHECK(status == 200);
}

TEST_CASE("mcpd::App: a super_admin lowered over the socket while changing another tenant's user over the API acts as one or not at all",
          "[mcpd][app]") {
  // The change is checked again under the users lock, the tenant included:
  // an admin may not change another tenant's user, even one whose request
  // passed the handler's check while it was still a super_admin.
  Appliance a([](McpdConfig& c) { c.admin_rate = c.admin_burst = 1000; });
  const json beta = a.local({{"op", "create_tenant"}, {"tenant", "beta"}, {"data_source", a.dir.file("beta.db")}});
  REQUIRE(beta["ok"] == true);
  int changed = 0, refused = 0;
  for (int round = 0; round < 60; ++round) {
    INFO("round " << round);
    const std::string n = std::to_string(round);
    const std::int64_t super = a.user(1, ("sam" + n).c_str(), "super_admin");
    const std::int64_t bea = a.user(beta["tenant_id"].get<std::int64_t>(), ("bea" + n).c_str(), "viewer");
    const json key = a.local({{"op", "create_key"}, {"user_id", super}, {"scopes", "read,admin"}});
    REQUIRE(key["ok"] == true);
    const auto [changed_by, lowered] = at_once(
        [&] {
          return a.request(http::verb::patch, "/api/users/" + std::to_string(bea), key["token"].get<std::string>(),
                           json{{"disabled", true}});
        },
        [&] { return a.local({{"op", "update_user"}, {"user_id", super}, {"role", "admin"}}); });
    const auto& [status, answer, failed] = changed_by;
    REQUIRE_FALSE(failed);
    REQUIRE(lowered["ok"] == true);
    if (status != 200) {
      ++refused;
      CHECK_FALSE(a.stored(bea).disabled);
      continue;
    }
    ++changed;
    // Made: then made while its maker was still a super_admin, recorded
    // before the lowering (newest first).
    const auto changes = a.records("update_user");
    const auto at = [&](std::int64_t target) {
      return std::find_if(changes.begin(), changes.end(), [&](const json& r) { return r["target_user_id"] == target; });
    };
    REQUIRE(at(bea) != changes.end());
    REQUIRE(at(super) != changes.end());
    CHECK(at(super) < at(bea));
  }
  WARN("changed " << changed << ", refused " << refused);
}
