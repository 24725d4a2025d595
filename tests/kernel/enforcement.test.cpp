// Kernel enforcement, end to end: a real agent, real hooks and nftables,
// real processes in tenant cgroups. Runs inside a private network
// namespace with only `lo` (run-in-netns.sh).
#include <grp.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "agent_client.h"
#include "harness.h"

using namespace sluice::testing;

namespace {

constexpr char kOpen[] =
    R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
constexpr char kClosed[] =
    R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";

// Loopback stands in for "outside": internal networks are 10/8 only.
std::string endpoints(const Listener& allowed) {
  return R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":["127.0.0.1:)" +
         allowed.port_text() + R"(", "[::1]:)" + allowed.port_text() + R"("]}})";
}

InstanceOptions tamper_every(std::uint32_t ms) {
  InstanceOptions o;
  o.tamper_check_ms = ms;
  return o;
}

const std::string kOk = "ok";
const std::string kEperm = "errno 1 EPERM";

template <class Pred>
bool eventually(Pred pred, int timeout_ms = 8000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

bool has_event(Instance& inst, const std::string& kind) {
  auto reply = inst.call({{"op", "events"}, {"cursor", 0}, {"max", 1000}});
  for (const auto& e : reply["events"]) {
    if (e["kind"] == kind) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("kernel: every way a tenant process can send is judged by its policy", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed, denied;
  const std::string a = allowed.port_text(), d = denied.port_text();
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  struct Row {
    const char* what;
    std::vector<std::string> allow, deny;
  };
  const std::vector<Row> rows = {
      {"TCP over IPv4", {"tcp", "127.0.0.1", a}, {"tcp", "127.0.0.1", d}},
      {"TCP over IPv6", {"tcp", "::1", a}, {"tcp", "::1", d}},
      {"AF_INET6 to a v4-mapped address", {"tcp6", "127.0.0.1", a}, {"tcp6", "127.0.0.1", d}},
      {"UDP sendto over IPv4", {"udp", "127.0.0.1", a}, {"udp", "127.0.0.1", d}},
      {"UDP sendto over IPv6", {"udp", "::1", a}, {"udp", "::1", d}},
      {"UDP sendto v4-mapped", {"udp6", "127.0.0.1", a}, {"udp6", "127.0.0.1", d}},
      {"connected UDP, then sendto elsewhere",
       {"udp-connected", "127.0.0.1", a, "127.0.0.1", a},
       {"udp-connected", "127.0.0.1", a, "127.0.0.1", d}},
      {"TCP Fast Open", {"tfo", "127.0.0.1", a}, {"tfo", "127.0.0.1", d}},
      {"io_uring connect", {"uring", "127.0.0.1", a}, {"uring", "127.0.0.1", d}},
      {"MPTCP", {"mptcp", "127.0.0.1", a}, {"mptcp", "127.0.0.1", d}},
  };
  for (const Row& row : rows) {
    INFO(row.what);
    CHECK(probe(cg, row.allow).out == kOk);
    CHECK(probe(cg, row.deny).out == kEperm);
  }

  SECTION("source routing (IP options) cannot be set on a tenant socket") {
    CHECK(probe(cg, {"ipopts"}).out == kEperm);
    CHECK(run({netprobe_binary(), "ipopts"}).out == kOk);
  }
  SECTION("ICMP ping and raw sockets cannot even be created in a tenant cgroup") {
    CHECK(probe(cg, {"ping"}).out == kEperm);
    CHECK(probe(cg, {"raw"}).out == kEperm);
    // The same process outside the tenant cgroups can: the hook made the difference.
    CHECK(run({netprobe_binary(), "ping"}).out == kOk);
    CHECK(run({netprobe_binary(), "raw"}).out == kOk);
  }
  SECTION("another purpose of the same tenant has its own (empty) rules") {
    CHECK(probe(inst.cgroup("t1", "embeddings"), {"tcp", "127.0.0.1", a}).out == kEperm);
  }
  SECTION("processes outside the tenant cgroups are not affected") {
    CHECK(run({netprobe_binary(), "tcp", "127.0.0.1", d}).out == kOk);
  }
  SECTION("denies are reported as events naming the tenant and destination") {
    REQUIRE(probe(cg, {"tcp", "127.0.0.1", d}).out == kEperm);
    auto reply = inst.call({{"op", "events"}, {"cursor", 0}, {"max", 1000}});
    bool found = false;
    for (const auto& e : reply["events"]) {
      const auto& det = e["detail"];
      if (e["kind"] == "deny" && det.value("tenant", "") == "t1" &&
          det.value("purpose", "") == "llm" && det.value("port", 0) == denied.port() &&
          det.value("hook", "") == "connect4" && det.value("comm", "") == "netprobe") {
        found = true;
      }
    }
    CHECK(found);
  }
}

TEST_CASE("kernel: each layer blocks on its own", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed, denied;
  const std::string a = allowed.port_text(), d = denied.port_text();
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  SECTION("element changes reach nftables on their own") {
    // Version 2 moves the allowed port: a binary element transaction, not
    // a table rebuild. With BPF detached, nftables alone must agree.
    REQUIRE(inst.apply("t1", 2, kOpen, endpoints(denied))["ok"] == true);
    inst.kill9();
    REQUIRE(inst.detach_links() == 6);
    CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kOk);
    CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == "errno 113 EHOSTUNREACH");
    CHECK(probe(cg, {"tcp", "::1", d}).out == kOk);
    CHECK(probe(cg, {"tcp", "::1", a}).out == "errno 13 EACCES");
  }
  SECTION("a range replacing an address reaches nftables on its own") {
    // Single addresses live in hash sets, wider blocks in interval sets:
    // version 2 moves the rule from one to the other, by element changes.
    const std::string range =
        R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":["127.0.0.0/24:)" + d + R"("]}})";
    REQUIRE(inst.apply("t1", 2, kOpen, range)["ok"] == true);
    inst.kill9();
    REQUIRE(inst.detach_links() == 6);
    CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kOk);
    CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == "errno 113 EHOSTUNREACH");
    CHECK(probe(cg, {"tcp", "::1", d}).out == "errno 13 EACCES");
  }
  inst.kill9();  // no agent to repair what we break

  SECTION("with the BPF links detached, nftables still rejects") {
    REQUIRE(inst.detach_links() == 6);
    CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kOk);
    CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == "errno 113 EHOSTUNREACH");
    CHECK(probe(cg, {"tcp", "::1", d}).out == "errno 13 EACCES");
    CHECK(probe(cg, {"udp", "127.0.0.1", d}).out == kEperm);
    CHECK(probe(cg, {"raw"}).out == kOk);  // only the BPF layer refuses socket types

    // A restarted agent finds the defunct links and attaches new ones.
    inst.start();
    CHECK(probe(cg, {"raw"}).out == kEperm);
    CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kEperm);
  }
  SECTION("with the nftables table removed, BPF still denies") {
    REQUIRE(run({"/usr/sbin/nft", "delete", "table", "inet", inst.name()}).status == 0);
    CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kOk);
    CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kEperm);
    CHECK(probe(cg, {"tcp", "::1", d}).out == kEperm);
    CHECK(probe(cg, {"udp", "127.0.0.1", d}).out == kEperm);

    // A restarted agent restores the table.
    inst.start();
    CHECK(run({"/usr/sbin/nft", "list", "table", "inet", inst.name()}).status == 0);
  }
}

TEST_CASE("kernel: a running agent repairs tampering and reports it", "[netns]") {
  Instance inst(tamper_every(100));
  inst.start();
  Listener allowed, denied;
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  SECTION("a deleted table comes back") {
    REQUIRE(run({"/usr/sbin/nft", "delete", "table", "inet", inst.name()}).status == 0);
    CHECK(eventually([&] {
      return run({"/usr/sbin/nft", "list", "table", "inet", inst.name()}).status == 0;
    }));
    CHECK(eventually([&] { return has_event(inst, "tamper"); }));
    CHECK(inst.call({{"op", "status"}})["layers"]["nftables"] == "enforcing");
  }
  SECTION("detached links are re-attached") {
    REQUIRE(inst.detach_links() == 6);
    CHECK(eventually([&] { return probe(cg, {"raw"}).out == kEperm; }));
    CHECK(eventually([&] { return has_event(inst, "tamper"); }));
    CHECK(inst.call({{"op", "status"}})["layers"]["bpf"] == "enforcing");
  }
}

TEST_CASE("kernel: revoking allow_llm_egress cuts new and established connections", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed;
  const std::string a = allowed.port_text();
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  Background held({netprobe_binary(), "--cgroup", cg, "hold", "127.0.0.1", a});
  REQUIRE(held.read_line() == "connected");

  auto reply = inst.apply("t1", 2, kClosed, endpoints(allowed));
  REQUIRE(reply["ok"] == true);
  CHECK(reply["destroyed"].get<int>() >= 1);
  // The established connection is aborted, not left to hang.
  CHECK(held.wait().out == "errno 103 ECONNABORTED");
  CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kEperm);
  CHECK(probe(cg, {"tcp", "::1", a}).out == kEperm);

  SECTION("an older version is refused") {
    CHECK(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == false);
    CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kEperm);
  }
}

TEST_CASE("kernel: enforcement survives kill -9 and a restart without a gap", "[netns]") {
  Listener allowed, denied;
  const std::string a = allowed.port_text(), d = denied.port_text();
  InstanceOptions options;
  options.static_hosts = {{"llm.test", "127.0.0.1"}};
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":["llm.test:)" +
                          a + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kOpen, eps)["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  // A name rule allows nothing until the agent resolves and pins it.
  CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kEperm);
  auto resolved = inst.call(
      {{"op", "resolve"}, {"tenant", "t1"}, {"purpose", "llm"}, {"host", "llm.test"}, {"port", allowed.port()}});
  REQUIRE(resolved["ok"] == true);
  CHECK(resolved["addresses"] == nlohmann::json::array({"127.0.0.1"}));
  CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kOk);

  // A tight loop of denied connects runs across the kill and the restart.
  Background loop({netprobe_binary(), "--cgroup", cg, "loop", "127.0.0.1", d, "3000"});
  inst.kill9();
  CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kEperm);  // deny still denies
  CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kOk);     // allow still allows
  inst.start();
  const auto status = inst.call({{"op", "status"}});
  CHECK(status["counters"]["pins"] == 1);  // the pin was reused, not lost
  CHECK(status["layers"]["bpf"] == "enforcing");
  CHECK(status["layers"]["nftables"] == "enforcing");
  CHECK(probe(cg, {"tcp", "127.0.0.1", a}).out == kOk);

  const RunResult looped = loop.wait();
  INFO(looped.out);
  CHECK(looped.out.ends_with("succeeded 0"));
  CHECK(looped.status == 0);
}

namespace {

// t1's llm cgroup, enforced with `allowed`'s port open, then removed and
// made anew behind the agent's back (a new id).
std::string recreated_cgroup(Instance& inst, const Listener& allowed) {
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");
  REQUIRE(probe(cg, {"tcp", "127.0.0.1", allowed.port_text()}).out == kOk);
  REQUIRE(::rmdir(cg.c_str()) == 0);
  REQUIRE(::mkdir(cg.c_str(), 0755) == 0);
  return cg;
}

}  // namespace

TEST_CASE("kernel: a tenant cgroup removed and recreated is enforced again", "[netns]") {
  Instance inst(tamper_every(100));
  inst.start();
  Listener allowed, denied;
  const std::string a = allowed.port_text(), d = denied.port_text();
  const std::string cg = recreated_cgroup(inst, allowed);
  // Until the agent re-binds it, the new cgroup has no ruleset: denied.
  CHECK(eventually([&] { return probe(cg, {"tcp", "127.0.0.1", a}).out == kOk; }));
  CHECK(probe(cg, {"tcp", "127.0.0.1", d}).out == kEperm);
  CHECK(probe(cg, {"tcp", "::1", a}).out == kOk);
}

TEST_CASE("kernel: a tenant cgroup recreated just before an apply gets that apply's rules", "[netns]") {
  Instance inst;  // no tamper check in the test's time: only the apply can re-bind
  inst.start();
  Listener first, second;
  const std::string p1 = first.port_text(), p2 = second.port_text();
  const std::string cg = recreated_cgroup(inst, first);
  REQUIRE(inst.apply("t1", 2, kOpen, endpoints(second))["ok"] == true);
  CHECK(probe(cg, {"tcp", "127.0.0.1", p2}).out == kOk);  // both layers bound to the new cgroup
  CHECK(probe(cg, {"tcp", "127.0.0.1", p1}).out == kEperm);
  const auto layers = inst.call({{"op", "status"}})["layers"];
  CHECK(layers["bpf"] == "enforcing");
  CHECK(layers["nftables"] == "enforcing");
}


namespace {

// Calls the control socket as `uid` from a child process; the reply's code.
std::string call_as(const Instance& inst, uid_t uid) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(3);
    auto reply = sluice::ctl::agent_call(inst.socket_path(), {{"op", "status"}}, 5000);
    std::string code = !reply ? "no-reply" : reply->body.value("ok", false) ? "ok" : reply->body.value("code", "?");
    (void)!::write(fds[1], code.data(), code.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[64] = {};
  const ssize_t n = ::read(fds[0], buf, sizeof buf - 1);
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

}  // namespace

TEST_CASE("kernel: control peers are checked by uid", "[netns]") {
  SECTION("a peer whose uid is not allowed is refused and logged") {
    Instance inst;
    inst.start();
    CHECK(call_as(inst, 65534) == "forbidden");
    CHECK(has_event(inst, "peer_refused"));
  }
  SECTION("a configured uid is served") {
    InstanceOptions options;
    options.allowed_peer_uids = {65534};
    Instance inst(options);
    inst.start();
    CHECK(call_as(inst, 65534) == "ok");
  }
  SECTION("malformed and oversized requests get an error reply, and the agent lives on") {
    Instance inst;
    inst.start();
    CHECK(inst.call({{"op", "frobnicate"}})["code"] == "bad_request");
    CHECK(inst.call({{"op", "apply"}, {"tenant", "../x"}, {"version", 1}, {"rules", {}}})["code"] ==
          "bad_request");
    CHECK(inst.call({{"op", "resolve"}, {"tenant", "t1"}, {"purpose", "llm"}, {"host", "a b"},
                     {"port", 443}})["code"] == "bad_request");
    CHECK(inst.call({{"op", "status"}, {"extra", 1}})["code"] == "bad_request");
    CHECK(inst.call({{"op", "status"}})["ok"] == true);
  }
}

namespace {

int connect_fd(int fd, const std::string& host, std::uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (host.find(':') == std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &a->sin_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  }
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  return rc == 0 ? 0 : errno;
}

int brokered(const Instance& inst, const std::string& purpose, int family) {
  auto reply = sluice::ctl::agent_call(
      inst.socket_path(), {{"op", "socket"}, {"tenant", "t1"}, {"purpose", purpose}, {"family", family}});
  REQUIRE(reply);
  INFO(reply->body.dump());
  REQUIRE(reply->body["ok"] == true);
  REQUIRE(reply->fd >= 0);
  return reply->fd;
}

std::string proc_field(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":")) {
      std::string v = line.substr(field.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

}  // namespace

TEST_CASE("kernel: a brokered socket carries its tenant's policy to whoever connects it", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed, denied;
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);

  // This test process is outside every tenant cgroup; the sockets are not.
  const int a4 = brokered(inst, "llm", 4);
  CHECK(connect_fd(a4, "127.0.0.1", allowed.port()) == 0);
  const int d4 = brokered(inst, "llm", 4);
  CHECK(connect_fd(d4, "127.0.0.1", denied.port()) == EPERM);
  const int a6 = brokered(inst, "llm", 6);
  CHECK(connect_fd(a6, "::1", allowed.port()) == 0);
  const int e4 = brokered(inst, "embeddings", 4);
  CHECK(connect_fd(e4, "127.0.0.1", allowed.port()) == EPERM);
  for (int fd : {a4, d4, a6, e4}) ::close(fd);

  SECTION("the broker is unprivileged, no_new_privs, seccomp-confined, in the tenant cgroup") {
    const auto brokers = inst.call({{"op", "status"}})["brokers"];
    REQUIRE(brokers.contains("t1/llm"));
    const pid_t pid = brokers["t1/llm"]["pid"].get<pid_t>();
    CHECK(proc_field(pid, "Uid").starts_with("65534"));
    CHECK(proc_field(pid, "NoNewPrivs") == "1");
    CHECK(proc_field(pid, "Seccomp") == "2");
    CHECK(proc_field(pid, "CapEff") == "0000000000000000");
    std::ifstream cgroup("/proc/" + std::to_string(pid) + "/cgroup");
    std::string text((std::istreambuf_iterator<char>(cgroup)), std::istreambuf_iterator<char>());
    CHECK_THAT(text, Catch::Contains("/" + inst.name() + "/tenants/t1/llm"));
  }
  SECTION("an unknown tenant gets no socket") {
    auto reply = sluice::ctl::agent_call(
        inst.socket_path(), {{"op", "socket"}, {"tenant", "nobody"}, {"purpose", "llm"}, {"family", 4}});
    REQUIRE(reply);
    CHECK(reply->body["ok"] == false);
    CHECK(reply->fd < 0);
  }
  SECTION("removing the tenant stops its brokers") {
    const pid_t pid = inst.call({{"op", "status"}})["brokers"]["t1/llm"]["pid"].get<pid_t>();
    REQUIRE(inst.call({{"op", "remove"}, {"tenant", "t1"}})["ok"] == true);
    CHECK(::kill(pid, 0) != 0);
  }
}

TEST_CASE("kernel: removing a tenant removes its cgroups and rules", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed;
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");
  // A connection held by a process outside the cgroup (as mcpd holds
  // brokered sockets) must not outlive its tenant.
  const int fd = brokered(inst, "llm", 4);
  REQUIRE(connect_fd(fd, "127.0.0.1", allowed.port()) == 0);
  auto reply = inst.call({{"op", "remove"}, {"tenant", "t1"}});
  REQUIRE(reply["ok"] == true);
  CHECK(reply["destroyed"] == 1);
  char c;
  CHECK(::recv(fd, &c, 1, 0) == -1);
  CHECK(errno == ECONNABORTED);
  ::close(fd);
  struct stat st {};
  CHECK(::stat(cg.c_str(), &st) != 0);
  CHECK(inst.call({{"op", "status"}})["tenants"].empty());
}

TEST_CASE("kernel: ruleset ids are not reused when the saved state is lost", "[netns]") {
  Instance inst;
  inst.start();
  Listener allowed;
  REQUIRE(inst.apply("t1", 1, kOpen, endpoints(allowed))["ok"] == true);
  const auto first = inst.call({{"op", "status"}})["tenants"]["t1"]["purposes"]["llm"]["ruleset"];
  // A socket created now carries t1/llm's id in its storage.
  const int fd = brokered(inst, "llm", 4);
  inst.kill9();
  REQUIRE(::unlink(("/dev/shm/" + inst.name() + "/state.json").c_str()) == 0);
  inst.start();
  REQUIRE(inst.apply("t2", 1, kOpen, endpoints(allowed))["ok"] == true);
  const auto status = inst.call({{"op", "status"}});
  for (const char* p : {"llm", "embeddings", "prospecting"}) {
    CHECK(status["tenants"]["t2"]["purposes"][p]["ruleset"].get<std::uint32_t>() >
          first.get<std::uint32_t>());
  }
  // The old socket's id names nothing now: it is denied, not given t2's rights.
  CHECK(connect_fd(fd, "127.0.0.1", allowed.port()) == EPERM);
  ::close(fd);
}

namespace {

// An agent started once, from a config of its own in a directory of its
// own, expected to refuse to start. Whatever it made, should it start
// after all (the check under test broken), goes with the directory.
struct RefusedStart {
  std::string dir, instance, config;
  RefusedStart(const std::string& prefix, const std::string& name) {
    char tmpl[64];
    std::snprintf(tmpl, sizeof tmpl, "/tmp/%s-XXXXXX", prefix.c_str());
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    instance = name + std::to_string(::getpid());
    config = dir + "/agent.toml";
  }
  ~RefusedStart() {
    run({agent_binary(), "--config", config, "--uninstall"});
    run({"/bin/rm", "-rf", dir});
  }
  RefusedStart(const RefusedStart&) = delete;
  RefusedStart& operator=(const RefusedStart&) = delete;
  // Its output; `extra`: config lines after the instance and runtime_dir.
  RunResult start(const std::string& extra) const {
    {
      std::ofstream cfg(config);
      cfg << "instance = \"" << instance << "\"\nruntime_dir = \"" << dir << "/run\"\n" << extra;
    }
    const RunResult r = run({"/bin/sh", "-c", "exec \"$0\" --config \"$1\" 2>&1", agent_binary(), config});
    CHECK(r.status != 0);
    // Nothing was created on the way out.
    struct stat st{};
    CHECK(::stat((cgroup2_mount() + "/" + instance).c_str(), &st) != 0);
    CHECK(::stat((dir + "/run").c_str(), &st) != 0);
    return r;
  }
};

}  // namespace

TEST_CASE("kernel: the agent refuses to start without a mounted bpffs", "[netns]") {
  // A plain directory where bpffs should be: pins there would die with the
  // agent, and enforcement with them.
  RefusedStart agent("sluice-nobpffs", "slnobpf");
  const RunResult r = agent.start("bpffs = \"" + agent.dir + "\"\n");
  CHECK(r.out.find("is not a mounted BPF filesystem") != std::string::npos);
}

TEST_CASE("kernel: the agent refuses a broker binary the broker's uid can read", "[netns]") {
  // Readable by its uid, an exec'd broker is dumpable until it confines
  // itself: any process of that uid could attach to it in that window.
  RefusedStart agent("sluice-readable-broker", "slbrk");
  const std::string built = agent_binary().substr(0, agent_binary().rfind('/')) + "/sluice-broker";
  const std::string broker = agent.dir + "/sluice-broker";
  REQUIRE(run({"/bin/cp", built, broker}).status == 0);
  REQUIRE(::chmod(broker.c_str(), 0755) == 0);
  const RunResult r = agent.start("broker_path = \"" + broker + "\"\n");
  CHECK(r.out.find("with mode 0755: others than root may read or write it") != std::string::npos);
  // The build's own broker is not readable by its uid (the kernel tests run it).
  struct stat st{};
  REQUIRE(::stat(built.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0711);
}
