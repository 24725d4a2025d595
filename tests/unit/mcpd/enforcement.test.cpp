// The application layer's half of policy enforcement: the stricter of two
// policies, what a tenant gets before the kernel has anything, and the
// configuration that ties mcpd to sluice-agent. The push itself runs
// against a real agent in tests/interop/policy_push.sh.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "agent_client.h"
#include "config.h"
#include "enforcement.h"
#include "store.h"
#include "temp_dir.h"

namespace {

using sluice::mcpd::Enforcer;
using sluice::mcpd::McpdConfig;
using sluice::mcpd::Store;
using sluice::testing::TempDir;
namespace sp = sluice::policy;

sp::TenantPolicy parse(const char* text) {
  auto p = sp::parse_policy(text);
  REQUIRE(p);
  return *p;
}

// A stand-in for sluice-agent's control socket that answers every request
// with the same bytes: how mcpd copes with an agent it cannot trust.
class FakeAgent {
 public:
  // `apply_delay`: how long an `apply` takes to be answered.
  FakeAgent(std::string path, std::string reply, std::chrono::milliseconds apply_delay = {})
      : path_(std::move(path)), reply_(std::move(reply)), apply_delay_(apply_delay) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAgent() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
  }

 private:
  void serve() {
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[65536];
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);  // the request: only whether it applies matters
      if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find(R"("op":"apply")") != std::string_view::npos) {
        {
          std::lock_guard lock(mu_);
          const std::string_view req(buf, static_cast<std::size_t>(n));
          const auto at = req.find(R"("tenant":")");
          if (at != std::string_view::npos) {
            const auto name = req.substr(at + 10);
            applied_.emplace_back(name.substr(0, name.find('"')));
          }
        }
        std::this_thread::sleep_for(apply_delay_);
      }
      const std::uint32_t len = htonl(static_cast<std::uint32_t>(reply_.size()));
      std::string frame(reinterpret_cast<const char*>(&len), 4);
      frame += reply_;
      (void)::send(c, frame.data(), frame.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  std::string path_, reply_;
  std::chrono::milliseconds apply_delay_;
  std::mutex mu_;
  std::vector<std::string> applied_;  // the tenants of the applies received, in order

 public:
  std::vector<std::string> applied() {
    std::lock_guard lock(mu_);
    return applied_;
  }

 private:
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// mcpd's database with one tenant, "acme", and an endpoints file.
struct AcmeStore {
  explicit AcmeStore(const char* endpoints) {
    auto opened = Store::open(dir.file("mcpd.db"));
    REQUIRE(opened);
    store = std::move(*opened);
    auto id = store->create_tenant("acme", "/nonexistent.db");
    REQUIRE(id);
    tenant = {*id, "acme", "/nonexistent.db"};
    std::ofstream(dir.file("endpoints.json")) << endpoints;
  }
  // mcpd's configuration for an agent at `socket` in this directory.
  [[nodiscard]] McpdConfig agent_config(std::chrono::milliseconds timeout, const char* socket = "agent.sock") const {
    McpdConfig c;
    c.agent_socket = dir.file(socket);
    c.endpoints_file = dir.file("endpoints.json");
    c.agent_timeout = timeout;
    return c;
  }
  TempDir dir;
  std::unique_ptr<Store> store;
  sluice::mcpd::Tenant tenant;
};

}  // namespace

TEST_CASE("mcpd::Enforcer never reports enforced on an agent's word alone, and survives any reply",
          "[mcpd][enforcement]") {
  AcmeStore acme(R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})");
  Store& store = *acme.store;
  const sluice::mcpd::Tenant& tenant = acme.tenant;
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(500));
  auto enforcer = Enforcer::open(c, store);
  REQUIRE(enforcer);
  const std::string text = R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false})";
  auto v1 = store.put_policy(tenant.id, text, std::nullopt);
  REQUIRE(v1);
  using State = sluice::mcpd::KernelEnforcement::State;

  const std::string truthful =
      R"({"ok":true,"generation":3,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{"acme":{"version":1}}})";
  // The truthful-looking reply first: nothing was acknowledged yet. (The
  // reconcile after it records the fake's "acknowledgement"; every reply
  // after that is wrong in another way: layers or fields.)
  for (const std::string& reply :
       {truthful, std::string("[]"), std::string("\"x\""), std::string("null"), std::string("{\"ok\":1}"), std::string("not json"),
        std::string(R"({"ok":true,"layers":[],"tenants":{"acme":5}})"),
        std::string(R"({"ok":true,"layers":{"bpf":7,"nftables":"enforcing"},"tenants":{"acme":{"version":"1"}}})"),
        std::string(R"({"ok":false,"code":["x"],"error":{"deep":true}})"),
        // Nested past any stack (the JSON library copies recursively): refused unparsed.
        R"({"ok":false,"code":)" + std::string(200000, '[') + std::string(200000, ']') + "}"}) {
    CAPTURE(reply.substr(0, 200));
    FakeAgent agent(c.agent_socket, reply);
    auto fresh = Enforcer::open(c, store);  // no status cached from the previous reply
    REQUIRE(fresh);
    const auto k = (*fresh)->state(tenant, *v1);
    CHECK(k.state == State::pending);
    // Reconcile pushes (the fake "acknowledges" only the truthful reply's
    // way) and must never throw whatever comes back.
    CHECK_NOTHROW((*fresh)->reconcile());
  }

  // An apply the agent acknowledges, then a status that agrees: enforced.
  {
    FakeAgent agent(c.agent_socket, truthful);
    const auto k = (*enforcer)->push(tenant, *v1, parse(text.c_str()));
    CHECK(k.state == State::enforced);
    CHECK(k.version == std::optional<std::int64_t>(1));
  }
  // The endpoints change under the same version: no longer the rules the
  // agent acknowledged, so pending again (and reconcile would re-push).
  std::ofstream(acme.dir.file("endpoints.json")) << R"({"endpoints": {"llm": ["https://api.openai.com"]}})";
  auto reopened = Enforcer::open(c, store);
  REQUIRE(reopened);
  {
    FakeAgent agent(c.agent_socket, truthful);
    CHECK((*reopened)->state(tenant, *v1).state == State::pending);
  }
  // The new rules' push reaches the agent, which takes them and then
  // fails (its state file could not be written, say): the kernel may hold
  // them now. The endpoints reverted, the record of the old rules must not
  // read as enforced again: nothing would push them back.
  {
    FakeAgent fails(c.agent_socket, R"({"ok":false,"code":"persist","error":"state not saved"})");
    CHECK((*reopened)->push(tenant, *v1, parse(text.c_str())).state == State::pending);
  }
  std::ofstream(acme.dir.file("endpoints.json")) << R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})";
  auto reverted = Enforcer::open(c, store);
  REQUIRE(reverted);
  FakeAgent agent(c.agent_socket, truthful);
  CHECK((*reverted)->state(tenant, *v1).state == State::pending);
  // Pushed again and acknowledged: enforced.
  CHECK((*reverted)->push(tenant, *v1, parse(text.c_str())).state == State::enforced);
}

TEST_CASE("mcpd::Enforcer asks a hung agent once per five seconds, not once per caller", "[mcpd][enforcement]") {
  AcmeStore acme(R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})");
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(300));
  // Listening, never accepting: connect and send succeed, the answer never comes.
  const int hung = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", c.agent_socket.c_str());
  REQUIRE(::bind(hung, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(hung, 8) == 0);
  auto enforcer = Enforcer::open(c, *acme.store);
  REQUIRE(enforcer);
  using State = sluice::mcpd::KernelEnforcement::State;
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  CHECK((*enforcer)->state(acme.tenant, std::nullopt).state == State::pending);
  CHECK(Clock::now() - t0 >= std::chrono::milliseconds(250));  // it waited for the agent
  t0 = Clock::now();
  for (int i = 0; i < 5; ++i) CHECK((*enforcer)->state(acme.tenant, std::nullopt).state == State::pending);
  CHECK(Clock::now() - t0 < std::chrono::milliseconds(300));  // not one more wait: the failure was remembered
  ::close(hung);
}

TEST_CASE("mcpd::Enforcer reconciles within a time budget, resumes where it stopped, and backs off failed pushes",
          "[mcpd][enforcement]") {
  AcmeStore acme(R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})");
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(500));  // a reconcile starts no push after 1 s
  c.agent_retry = std::chrono::minutes(1);
  const std::string text = R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false})";
  std::vector<sluice::mcpd::Tenant> tenants{acme.tenant};
  for (const char* name : {"t2", "t3", "t4", "t5"}) {
    auto id = acme.store->create_tenant(name, std::string("/nonexistent-") + name + ".db");
    REQUIRE(id);
    tenants.push_back({*id, name, ""});
  }
  for (const auto& t : tenants) REQUIRE(acme.store->put_policy(t.id, text, std::nullopt));
  // Takes every apply (slowly) but never reports enforcing any tenant:
  // every push stays pending, a failure.
  const std::string never_enforces =
      R"({"ok":true,"generation":1,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{}})";
  std::optional<FakeAgent> agent;
  agent.emplace(c.agent_socket, never_enforces, std::chrono::milliseconds(400));
  auto enforcer = Enforcer::open(c, *acme.store);
  REQUIRE(enforcer);
  using State = sluice::mcpd::KernelEnforcement::State;

  // Each push takes 400 ms: at most three start within the budget.
  auto first = (*enforcer)->reconcile();
  REQUIRE(!first.empty());
  CHECK(first.size() <= 3);
  for (const auto& p : first) {
    CHECK(p.outcome.state == State::pending);
    CHECK(p.version == 1);
  }
  // The next calls start where the first stopped, and push none twice: the
  // failed ones wait for their back-off.
  std::vector<std::string> order;
  for (const auto& p : first) order.push_back(p.tenant.name);
  for (int i = 0; i < 5 && order.size() < tenants.size(); ++i) {
    for (const auto& p : (*enforcer)->reconcile()) order.push_back(p.tenant.name);
  }
  CHECK(order == std::vector<std::string>{"acme", "t2", "t3", "t4", "t5"});
  CHECK(agent->applied() == order);
  CHECK((*enforcer)->reconcile().empty());  // all backing off
  // A new version is other rules: pushed at once, whatever the back-off.
  REQUIRE(acme.store->put_policy(tenants[3].id, R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false})",
                                 std::nullopt));
  auto again = (*enforcer)->reconcile();
  REQUIRE(again.size() == 1);
  CHECK(again[0].tenant.name == "t4");
  CHECK(again[0].version == 2);
  CHECK(agent->applied().size() == 6);
  // The agent away for a round and back (restarted, perhaps): every
  // back-off ends, each tenant is pushed again at once.
  agent.reset();
  CHECK((*enforcer)->reconcile().empty());
  agent.emplace(c.agent_socket, never_enforces);
  CHECK((*enforcer)->reconcile().size() == 5);
  CHECK((*enforcer)->reconcile().empty());
  // Restarted between two rounds, never seen away: its status names
  // another process, and that too ends every back-off.
  const std::string restarted =
      R"({"ok":true,"process":"4242-1796600000","generation":1,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{}})";
  agent.reset();
  agent.emplace(c.agent_socket, restarted);
  CHECK((*enforcer)->reconcile().size() == 5);
  CHECK((*enforcer)->reconcile().empty());
}

TEST_CASE("mcpd::Enforcer backs off a push the agent took and never answered, not one that found no agent",
          "[mcpd][enforcement]") {
  AcmeStore acme(R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})");
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(300));
  c.agent_retry = std::chrono::minutes(1);
  REQUIRE(acme.store->put_policy(acme.tenant.id, R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false})",
                                 std::nullopt));
  auto enforcer = Enforcer::open(c, *acme.store);
  REQUIRE(enforcer);
  {
    // Answers status at once, stalls on apply past the timeout.
    FakeAgent stalls(c.agent_socket,
                     R"({"ok":true,"generation":1,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{}})",
                     std::chrono::milliseconds(600));
    auto first = (*enforcer)->reconcile();
    REQUIRE(first.size() == 1);
    CHECK(first[0].outcome.state == sluice::mcpd::KernelEnforcement::State::pending);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));  // the fake finishes its stall
    CHECK((*enforcer)->reconcile().empty());                        // backed off: no second stall
    CHECK(stalls.applied().size() == 1);
  }
}

TEST_CASE("mcpd::Enforcer: a read of the state does not wait for a push in progress", "[mcpd][enforcement]") {
  // The admin API's reads (GET /api/meta) run on the thread a revocation
  // needs: they must not queue behind a push to a slow agent.
  AcmeStore acme(R"({"endpoints": {"llm": ["https://api.anthropic.com"]}})");
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(2000));
  const char* text = R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false})";
  auto v1 = acme.store->put_policy(acme.tenant.id, text, std::nullopt);
  REQUIRE(v1);
  auto enforcer = Enforcer::open(c, *acme.store);
  REQUIRE(enforcer);
  FakeAgent slow(c.agent_socket,
                 R"({"ok":true,"generation":1,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{"acme":{"version":1}}})",
                 std::chrono::milliseconds(1500));
  auto pushed = std::async(std::launch::async, [&] { return (*enforcer)->push(acme.tenant, *v1, parse(text)); });
  while (slow.applied().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the apply is in
  const auto start = std::chrono::steady_clock::now();
  const auto k = (*enforcer)->state(acme.tenant, *v1);
  // It waits out a status question (250 ms), not the push's 1.5 s.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000));
  CHECK(k.state == sluice::mcpd::KernelEnforcement::State::pending);
  CHECK(k.detail.find("busy with a push") != std::string::npos);
  CHECK(pushed.get().state == sluice::mcpd::KernelEnforcement::State::enforced);
  CHECK((*enforcer)->state(acme.tenant, *v1).state == sluice::mcpd::KernelEnforcement::State::enforced);
}

TEST_CASE("mcpd: a socket served by neither root nor mcpd's own uid is not believed to be sluice-agent",
          "[mcpd][enforcement]") {
  if (::geteuid() != 0) {
    const char* required = std::getenv("SLUICE_REQUIRE_KERNEL");
    if (required && std::string(required) == "1") FAIL("SLUICE_REQUIRE_KERNEL=1 but not root");
    WARN("not root: cannot serve a socket as another uid");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("agent.sock");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // The listener's credentials are taken at listen(): listen as nobody.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0 || ::listen(fd, 8) != 0) ::_exit(1);
    const int c = ::accept(fd, nullptr, nullptr);
    const std::string reply = R"({"ok":true,"generation":1,"layers":{"bpf":"enforcing","nftables":"enforcing"},"tenants":{}})";
    const std::uint32_t len = htonl(static_cast<std::uint32_t>(reply.size()));
    std::string frame(reinterpret_cast<const char*>(&len), 4);
    frame += reply;
    (void)::send(c, frame.data(), frame.size(), MSG_NOSIGNAL);
    ::_exit(0);
  }
  // Until the child listens, connect is refused: retry a little.
  std::string why;
  std::optional<sluice::ctl::AgentReply> reply;
  for (int i = 0; i < 100; ++i) {
    why.clear();
    reply = sluice::ctl::agent_call(path, {{"op", "status"}}, 1000, &why);
    if (why.find("Connection refused") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK_FALSE(reply);
  CHECK(why.find("not served by root") != std::string::npos);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(fd);
}

TEST_CASE("mcpd::stricter keeps only what both policies allow", "[mcpd][enforcement]") {
  const auto open = parse(R"({"allow_llm_egress": true, "allow_prospecting": true, "discovery_samples": true})");
  const auto closed = parse(R"({"allow_llm_egress": false, "allow_prospecting": true, "discovery_samples": false})");
  const auto listed = parse(R"({"allow_llm_egress": true, "allow_prospecting": true, "discovery_samples": true,
                                "egress_allowlist": ["api.anthropic.com", "10.0.0.0/8:443", "*.openai.com"]})");
  const auto other = parse(R"({"allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": true,
                               "egress_allowlist": ["api.openai.com", "10.0.0.0/8:443"]})");

  const auto a = sluice::mcpd::stricter(open, closed);
  CHECK_FALSE(a.allow_llm_egress);
  CHECK(a.allow_prospecting);
  CHECK_FALSE(a.discovery_samples);
  CHECK_FALSE(a.egress_allowlist.has_value());
  CHECK(sluice::mcpd::stricter(closed, open) == a);

  // An absent allowlist imposes nothing: the other side's list stands.
  CHECK(sluice::mcpd::stricter(open, listed).egress_allowlist == listed.egress_allowlist);
  CHECK(sluice::mcpd::stricter(listed, open).egress_allowlist == listed.egress_allowlist);

  // Both listed: only the entries both name. "*.openai.com" and
  // "api.openai.com" drop out, narrower than the true intersection.
  const auto both = sluice::mcpd::stricter(listed, other);
  REQUIRE(both.egress_allowlist);
  REQUIRE(both.egress_allowlist->size() == 1);
  CHECK(both.egress_allowlist->front().to_string() == "10.0.0.0/8:443");
  CHECK_FALSE(both.allow_prospecting);

  const auto none = sluice::mcpd::deny_all();
  CHECK(sluice::mcpd::stricter(listed, none) == none);
  REQUIRE(none.egress_allowlist);
  CHECK(none.egress_allowlist->empty());
}

TEST_CASE("mcpd::Enforcer: the application layer holds the stricter of desired and applied",
          "[mcpd][enforcement]") {
  AcmeStore acme(R"({"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["https://api.anthropic.com"]}})");
  Store& store = *acme.store;
  const sluice::mcpd::Tenant& tenant = acme.tenant;
  // Nothing listens: every push stays pending.
  McpdConfig c = acme.agent_config(std::chrono::milliseconds(200), "no-agent.sock");
  auto enforcer = Enforcer::open(c, store);
  REQUIRE(enforcer);

  // No policy at all: nothing allowed, nothing egresses.
  auto e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(*e == sluice::mcpd::deny_all());
  CHECK((*enforcer)->egresses(*e) == false);

  // Stored, never applied: still nothing.
  const std::string open = R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
  const std::string closed = R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
  auto v1 = store.put_policy(tenant.id, closed, std::nullopt);
  REQUIRE(v1);
  const auto k = (*enforcer)->push(tenant, *v1, parse(closed.c_str()));
  CHECK(k.state == sluice::mcpd::KernelEnforcement::State::pending);
  CHECK_THAT(k.detail, Catch::Contains("cannot reach the agent"));
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(*e == sluice::mcpd::deny_all());

  // v1 applied, v2 (open) desired: v1 rules.
  REQUIRE(store.set_policy_applied(tenant.id, *v1, 7, "d1"));
  auto v2 = store.put_policy(tenant.id, open, std::nullopt);
  REQUIRE(v2);
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK_FALSE(e->allow_llm_egress);
  CHECK((*enforcer)->egresses(*e) == false);

  // v2 applied: v2 rules; the applied record never moves backwards.
  REQUIRE(store.set_policy_applied(tenant.id, *v2, 8, "d2"));
  REQUIRE(store.set_policy_applied(tenant.id, *v1, 9, "d1"));
  auto applied = store.policy_applied(tenant.id);
  REQUIRE(applied);
  REQUIRE(*applied);
  CHECK((*applied)->version == *v2);
  CHECK((*applied)->rules_sha256 == "d2");
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(e->allow_llm_egress);
  CHECK((*enforcer)->egresses(*e) == true);  // api.anthropic.com is outside 10/8
}

TEST_CASE("mcpd: the [agent] configuration is all or nothing", "[mcpd][enforcement][config]") {
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nsocket = \"/run/sluice/agent.sock\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nendpoints_file = \"/etc/sluice/endpoints.json\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nsocket = \"relative.sock\"\nendpoints_file = \"/e.json\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\ntimeout_ms = 5\n"));
  auto ok = sluice::mcpd::parse_config(
      "[agent]\nsocket = \"/run/sluice/agent.sock\"\nendpoints_file = \"/etc/sluice/endpoints.json\"\nretry_ms = 1000\n");
  REQUIRE(ok);
  CHECK(ok->agent_retry == std::chrono::milliseconds(1000));
  // The group-commit knob: bounded, 0 allowed (off).
  auto knobs = sluice::mcpd::parse_config("[storage]\naudit_group_wait_us = 0\n");
  REQUIRE(knobs);
  CHECK(knobs->audit_group_wait == std::chrono::microseconds(0));
  CHECK_FALSE(sluice::mcpd::parse_config("[storage]\naudit_group_wait_us = 20000\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[storage]\naudit_group_wait_us = -1\n"));
  // Rates: NaN and infinities are no number in range (NaN once turned the
  // rate limit off, or every request into 429).
  CHECK(sluice::mcpd::parse_config("[limits]\ntenant_rate = 2.5\n"));
  for (const char* bad : {"nan", "-nan", "inf", "-inf", "0.0", "\"5\""}) {
    INFO(bad);
    CHECK_FALSE(sluice::mcpd::parse_config(std::string("[limits]\ntenant_rate = ") + bad + "\n"));
    CHECK_FALSE(sluice::mcpd::parse_config(std::string("[limits]\ntenant_burst = ") + bad + "\n"));
  }
  auto streams = sluice::mcpd::parse_config("[limits]\nstreams_per_key = 8\nstreams_per_tenant = 32\n");
  REQUIRE(streams);
  CHECK(streams->streams_per_key == 8);
  CHECK(streams->streams_per_tenant == 32);
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nstreams_per_tenant = 0\n"));
  CHECK(sluice::mcpd::parse_config("")->keys_per_user == 100);
  CHECK(sluice::mcpd::parse_config("[limits]\nkeys_per_user = 5\n")->keys_per_user == 5);
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nkeys_per_user = 0\n"));
  CHECK(sluice::mcpd::parse_config("")->answers.total == std::size_t{512} << 20);
  CHECK(sluice::mcpd::parse_config("")->answers.per_tenant == std::size_t{64} << 20);
  auto answers = sluice::mcpd::parse_config("[limits]\nanswer_memory_mb = 1024\nanswer_memory_per_tenant_mb = 128\n");
  REQUIRE(answers);
  CHECK(answers->answers.total == std::size_t{1024} << 20);
  CHECK(answers->answers.per_tenant == std::size_t{128} << 20);
  CHECK(sluice::mcpd::parse_config("[limits]\nanswer_memory_per_tenant_mb = 1\n")->answers.per_tenant == std::size_t{1} << 20);
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nanswer_memory_mb = 8\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nanswer_memory_per_tenant_mb = 0\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nanswer_memory_per_tenant_mb = -1\n"));
  auto light = sluice::mcpd::parse_config("[limits]\nadmin_light_rate = 2\nadmin_light_burst = 4\n");
  REQUIRE(light);
  CHECK(light->admin_light_rate == 2);
  CHECK(light->admin_light_burst == 4);
  CHECK_FALSE(sluice::mcpd::parse_config("[limits]\nadmin_light_rate = nan\n"));

  // A bad endpoints file refuses start-up, naming the file.
  TempDir dir;
  std::ofstream(dir.file("endpoints.json")) << R"({"endpoints": {"llm": ["http://169.254.169.254"]}})";
  auto store = Store::open(dir.file("mcpd.db"));
  REQUIRE(store);
  McpdConfig c;
  c.agent_socket = "/run/sluice/agent.sock";
  c.endpoints_file = dir.file("endpoints.json");
  auto e = Enforcer::open(c, **store);
  REQUIRE_FALSE(e);
  CHECK_THAT(e.error().what, Catch::Contains("endpoints.json"));
  c.endpoints_file = dir.file("missing.json");
  REQUIRE_FALSE(Enforcer::open(c, **store));
  CHECK(sluice::mcpd::valid_tenant_name("acme-2"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("Acme"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("acme.corp"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("-acme"));
}
