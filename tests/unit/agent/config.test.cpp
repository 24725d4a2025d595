// sluice-agent's TOML configuration: a full file parses into every field,
// omitted keys take their documented defaults, and every bad file is
// refused with a message naming the offending key.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../policy/test_support.h"
#include "config.h"
#include "sluice_abi.h"

using namespace sluice::agent;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;
using sluice::policy::testing::cidr;
using sluice::policy::testing::ip;

namespace {

constexpr char kFull[] = R"(
instance = "edge-1"
cgroup_subtree = "system.slice/edge"
allowed_peer_uids = [1000, 1001]
runtime_dir = "/run/edge"
bpffs = "/sys/fs/bpf/custom"
broker_path = "/usr/libexec/sluice/sluice-broker"
broker_uid = 900
broker_gid = 901
allow_loopback = true
tamper_check_ms = 500

[dns]
servers = ["10.0.0.2", "127.0.0.1:5353", "[::1]:53", "2001:db8::53"]
min_ttl_seconds = 10
max_ttl_seconds = 3600
timeout_ms = 1500

[dns.static_hosts]
"api.example.com" = ["203.0.113.7", "2001:db8::7"]
"Ollama.Corp.Example." = ["10.1.2.3"]

[network]
internal_networks = ["10.0.0.0/8", "10.1.0.0/16", "fd00::/8"]
always_deny = ["192.0.2.0/24"]
)";

AgentConfig parsed(std::string_view text) {
  auto c = parse_config(text);
  if (!c) FAIL("config did not parse: " << c.error().to_string());
  return *c;
}

struct BadConfig {
  std::string what;
  std::string toml;
  std::string fragment;  // must appear in the message: the offending key
};

std::vector<BadConfig> bad_configs() {
  return {
      // Keys nobody reads are typos: refuse them rather than run with defaults.
      {"an unknown top-level key", "instance = \"a\"\ncolour = \"blue\"\n", "unknown key colour"},
      {"an unknown dns key", "[dns]\nserver = [\"10.0.0.2\"]\n", "unknown key dns.server"},
      {"an unknown network key", "[network]\ninternal = []\n", "unknown key network.internal"},
      {"an unknown key in a network table", "[network]\nalways_deny = []\nmode = 1\n",
       "network.mode"},

      // Types.
      {"instance as a number", "instance = 7\n", "instance has the wrong type"},
      {"allow_loopback as a string", "allow_loopback = \"yes\"\n",
       "allow_loopback has the wrong type"},
      {"runtime_dir as an array", "runtime_dir = [\"/run/x\"]\n", "runtime_dir has the wrong type"},
      {"broker_uid as a string", "broker_uid = \"65534\"\n", "broker_uid must be an integer"},
      {"broker_gid as a float", "broker_gid = 100.0\n", "broker_gid must be an integer"},
      {"dns as a string", "dns = \"10.0.0.2\"\n", "dns must be a table"},
      {"network as an array", "network = []\n", "network must be a table"},
      {"dns.servers as a string", "[dns]\nservers = \"10.0.0.2\"\n",
       "dns.servers must be an array"},
      {"a number in dns.servers", "[dns]\nservers = [53]\n", "dns.servers[0] must be a string"},
      {"dns.static_hosts as an array", "[dns]\nstatic_hosts = []\n",
       "dns.static_hosts must be a table"},
      {"network.internal_networks as a string", "[network]\ninternal_networks = \"10.0.0.0/8\"\n",
       "network.internal_networks must be an array"},
      {"a number in network.always_deny", "[network]\nalways_deny = [\"10.0.0.0/8\", 1]\n",
       "network.always_deny[1] must be a string"},

      // instance names the cgroup subtree, bpffs dir, nft table and run dir.
      {"an uppercase instance", "instance = \"Sluice\"\n", "instance must be"},
      {"an empty instance", "instance = \"\"\n", "instance must be"},
      {"an instance with a slash", "instance = \"a/b\"\n", "instance must be"},
      {"an instance of 25 characters", "instance = \"" + std::string(25, 'a') + "\"\n",
       "instance must be 1-24 characters"},

      // Paths.
      {"an absolute cgroup_subtree", "cgroup_subtree = \"/sluice\"\n", "cgroup_subtree"},
      {"a cgroup_subtree with '..'", "cgroup_subtree = \"a/../b\"\n", "cgroup_subtree"},
      {"an empty cgroup_subtree", "cgroup_subtree = \"\"\n", "cgroup_subtree"},
      {"a cgroup_subtree with a trailing slash", "cgroup_subtree = \"sluice/\"\n",
       "cgroup_subtree"},
      {"a cgroup_subtree with an empty component", "cgroup_subtree = \"a//b\"\n", "cgroup_subtree"},
      {"a cgroup_subtree with a '.' component", "cgroup_subtree = \"./sluice\"\n",
       "cgroup_subtree"},
      {"a cgroup_subtree with a double quote", "cgroup_subtree = 'a\" accept'\n", "cgroup_subtree"},
      {"a cgroup_subtree with a newline", "cgroup_subtree = \"a\\nb\"\n", "cgroup_subtree"},
      {"a relative runtime_dir", "runtime_dir = \"run/sluice\"\n",
       "runtime_dir must be an absolute"},
      {"an empty runtime_dir", "runtime_dir = \"\"\n", "runtime_dir must be an absolute"},
      {"a relative bpffs", "bpffs = \"sys/fs/bpf\"\n", "bpffs must be an absolute"},

      // Ranges.
      {"tamper_check_ms below 50", "tamper_check_ms = 10\n",
       "tamper_check_ms must be an integer from 50"},
      {"tamper_check_ms above 600000", "tamper_check_ms = 600001\n", "tamper_check_ms"},
      {"tamper_check_ms negative", "tamper_check_ms = -1\n", "tamper_check_ms"},
      {"broker_uid 0 (root)", "broker_uid = 0\n", "broker_uid"},
      {"broker_gid beyond 32 bits", "broker_gid = 4294967296\n", "broker_gid"},
      {"dns.timeout_ms below 100", "[dns]\ntimeout_ms = 50\n", "dns.timeout_ms"},
      {"dns.min_ttl_seconds 0", "[dns]\nmin_ttl_seconds = 0\n", "dns.min_ttl_seconds"},
      {"dns.max_ttl_seconds above a week", "[dns]\nmax_ttl_seconds = 604801\n",
       "dns.max_ttl_seconds"},
      {"dns.min_ttl_seconds above dns.max_ttl_seconds",
       "[dns]\nmin_ttl_seconds = 600\nmax_ttl_seconds = 60\n",
       "dns.min_ttl_seconds exceeds dns.max_ttl_seconds"},

      // DNS servers are addresses: a name would need a resolver to find the resolver.
      {"a host name in dns.servers", "[dns]\nservers = [\"dns.example.com\"]\n", "dns.servers[0]"},
      {"a CIDR in dns.servers", "[dns]\nservers = [\"10.0.0.2\", \"10.0.0.0/8\"]\n",
       "dns.servers[1] must be an IP address"},
      {"port 0 in dns.servers", "[dns]\nservers = [\"10.0.0.2:0\"]\n", "dns.servers[0]"},
      {"an unclosed IPv6 bracket", "[dns]\nservers = [\"[::1:53\"]\n", "dns.servers[0]"},

      // Static hosts.
      {"a static host with an invalid name",
       "[dns.static_hosts]\n\"bad_name.example\" = [\"10.0.0.1\"]\n",
       "dns.static_hosts.\"bad_name.example\""},
      {"a wildcard static host", "[dns.static_hosts]\n\"*.example.com\" = [\"10.0.0.1\"]\n",
       "dns.static_hosts.\"*.example.com\""},
      {"a static host with an empty list", "[dns.static_hosts]\n\"api.example.com\" = []\n",
       "dns.static_hosts.\"api.example.com\" must be a non-empty array"},
      {"a static host with a string, not a list",
       "[dns.static_hosts]\n\"api.example.com\" = \"10.0.0.1\"\n",
       "dns.static_hosts.\"api.example.com\" must be a non-empty array"},
      {"a static host mapped to a name",
       "[dns.static_hosts]\n\"api.example.com\" = [\"10.0.0.1\", \"other.example.com\"]\n",
       "dns.static_hosts.\"api.example.com\" holds a value that is not an IP address"},
      {"a static host mapped to a CIDR",
       "[dns.static_hosts]\n\"api.example.com\" = [\"10.0.0.0/8\"]\n",
       "dns.static_hosts.\"api.example.com\" holds a value"},
      {"a static host mapped to a number", "[dns.static_hosts]\n\"api.example.com\" = [1]\n",
       "dns.static_hosts.\"api.example.com\" holds a value"},

      // Networks.
      {"internal_networks with host bits", "[network]\ninternal_networks = [\"10.0.0.1/8\"]\n",
       "network.internal_networks[0]: host bits set"},
      {"internal_networks with a bad prefix",
       "[network]\ninternal_networks = [\"fd00::/8\", \"10.0.0.0/33\"]\n",
       "network.internal_networks[1]"},
      {"always_deny with a name", "[network]\nalways_deny = [\"evil.example.com\"]\n",
       "network.always_deny[0]"},

      // Peer uids.
      {"a negative allowed_peer_uids entry", "allowed_peer_uids = [1000, -1]\n",
       "allowed_peer_uids holds a value that is not a uid"},
      {"a string allowed_peer_uids entry", "allowed_peer_uids = [\"1000\"]\n",
       "allowed_peer_uids holds a value"},
      {"allowed_peer_uids as a number", "allowed_peer_uids = 1000\n",
       "allowed_peer_uids must be an array"},
      {"allowed_peer_uids beyond 32 bits", "allowed_peer_uids = [4294967295]\n",
       "allowed_peer_uids holds a value"},

      // TOML itself.
      {"invalid TOML syntax", "instance = \"a\"\nruntime_dir = /run/a\n", "invalid TOML at line 2"},
      {"a duplicate TOML key", "instance = \"a\"\n\ninstance = \"b\"\n", "invalid TOML at line 3"},
      {"an unterminated string", "instance = \"a\n", "invalid TOML at line 1"},
  };
}

}  // namespace

TEST_CASE("agent::parse_config reads every field of a full configuration", "[agent][config]") {
  const AgentConfig c = parsed(kFull);

  SECTION("the top-level keys are taken as written") {
    CHECK(c.instance == "edge-1");
    CHECK(c.cgroup_subtree == "system.slice/edge");
    CHECK(c.allowed_peer_uids == std::vector<std::uint32_t>{1000, 1001});
    CHECK(c.runtime_dir == "/run/edge");
    CHECK(c.bpffs == "/sys/fs/bpf/custom");
    CHECK(c.broker_path == "/usr/libexec/sluice/sluice-broker");
    CHECK(c.broker_uid == 900);
    CHECK(c.broker_gid == 901);
    CHECK(c.allow_loopback);
    CHECK(c.tamper_check_ms == 500);
  }
  SECTION("derived paths follow the runtime dir, bpffs, instance and ABI version") {
    CHECK(c.control_socket() == "/run/edge/agent.sock");
    CHECK(c.pin_dir() == "/sys/fs/bpf/custom/edge-1/v" + std::to_string(SL_ABI_VERSION));
  }
  SECTION("dns servers keep their order and their ports, 53 when none is given") {
    REQUIRE(c.dns_servers.size() == 4);
    CHECK(c.dns_servers[0].addr == ip("10.0.0.2"));
    CHECK(c.dns_servers[0].port == 53);
    CHECK(c.dns_servers[1].addr == ip("127.0.0.1"));
    CHECK(c.dns_servers[1].port == 5353);
    CHECK(c.dns_servers[2].addr == ip("::1"));
    CHECK(c.dns_servers[2].port == 53);
    CHECK(c.dns_servers[3].addr == ip("2001:db8::53"));
    CHECK(c.dns_servers[3].port == 53);
  }
  SECTION("dns timing values are read") {
    CHECK(c.min_ttl_s == 10);
    CHECK(c.max_ttl_s == 3600);
    CHECK(c.dns_timeout_ms == 1500);
  }
  SECTION("static host names are canonicalised and keep every address") {
    REQUIRE(c.static_hosts.size() == 2);
    CHECK(c.static_hosts.at("api.example.com") ==
          std::vector<sluice::policy::IpAddr>{ip("203.0.113.7"), ip("2001:db8::7")});
    CHECK(c.static_hosts.at("ollama.corp.example") ==
          std::vector<sluice::policy::IpAddr>{ip("10.1.2.3")});
  }
  SECTION("network blocks are normalised: a block inside another is dropped") {
    CHECK(c.internal_networks ==
          std::vector<sluice::policy::Cidr>{cidr("10.0.0.0/8"), cidr("fd00::/8")});
    CHECK(c.extra_deny == std::vector<sluice::policy::Cidr>{cidr("192.0.2.0/24")});
  }
}

TEST_CASE("agent::parse_config fills in the documented defaults", "[agent][config]") {
  SECTION("an empty file is the default instance") {
    const AgentConfig c = parsed("");
    CHECK(c.instance == "sluice");
    CHECK(c.cgroup_subtree == "sluice");
    CHECK(c.runtime_dir == "/run/sluice");
    CHECK(c.bpffs == "/sys/fs/bpf");
    CHECK(c.control_socket() == "/run/sluice/agent.sock");
    CHECK(c.broker_uid == 65534);
    CHECK(c.broker_gid == 65534);
    CHECK_FALSE(c.allow_loopback);
    CHECK(c.tamper_check_ms == 2000);
    CHECK(c.allowed_peer_uids.empty());
    CHECK(c.dns_servers.empty());
    CHECK(c.static_hosts.empty());
    CHECK(c.min_ttl_s == 30);
    CHECK(c.max_ttl_s == 86400);
    CHECK(c.dns_timeout_ms == 3000);
    CHECK(c.internal_networks.empty());
    CHECK(c.extra_deny.empty());
  }
  SECTION("cgroup_subtree and runtime_dir follow the instance name") {
    const AgentConfig c = parsed("instance = \"tenant-net\"\n");
    CHECK(c.cgroup_subtree == "tenant-net");
    CHECK(c.runtime_dir == "/run/tenant-net");
    CHECK(c.control_socket() == "/run/tenant-net/agent.sock");
  }
  SECTION("the broker is looked for beside the agent binary") {
    const AgentConfig c = parsed("");
    CHECK_THAT(c.broker_path, StartsWith("/"));
    CHECK_THAT(c.broker_path, EndsWith("sluice-broker"));
  }
  SECTION("a 24-character instance is accepted") {
    CHECK(parsed("instance = \"" + std::string(24, 'a') + "\"\n").instance == std::string(24, 'a'));
  }
  SECTION("an empty dns table keeps the dns defaults") {
    const AgentConfig c = parsed("[dns]\n");
    CHECK(c.min_ttl_s == 30);
    CHECK(c.max_ttl_s == 86400);
  }
}

TEST_CASE("agent::parse_config names the offending key", "[agent][config]") {
  const std::vector<BadConfig> rows = bad_configs();
  REQUIRE(rows.size() >= 20);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BadConfig& row = rows[i];
    DYNAMIC_SECTION("#" << i << ": " << row.what) {
      auto c = parse_config(row.toml);
      REQUIRE_FALSE(c);
      CHECK(c.error().err == 0);
      CHECK_THAT(c.error().what, StartsWith("config: "));
      CHECK_THAT(c.error().what, Contains(row.fragment));
    }
  }
}

TEST_CASE("agent::parse_config accepts DNS servers with ports in both families",
          "[agent][config]") {
  SECTION("an IPv4 loopback resolver on a high port") {
    const AgentConfig c = parsed("[dns]\nservers = [\"127.0.0.1:5353\"]\n");
    REQUIRE(c.dns_servers.size() == 1);
    CHECK(c.dns_servers[0].addr == ip("127.0.0.1"));
    CHECK(c.dns_servers[0].port == 5353);
  }
  SECTION("a bracketed IPv6 resolver with a port") {
    const AgentConfig c = parsed("[dns]\nservers = [\"[::1]:53\"]\n");
    REQUIRE(c.dns_servers.size() == 1);
    CHECK(c.dns_servers[0].addr == ip("::1"));
    CHECK(c.dns_servers[0].port == 53);
  }
  SECTION("loopback resolvers are allowed even when tenants may not reach loopback") {
    const AgentConfig c = parsed("allow_loopback = false\n[dns]\nservers = [\"127.0.0.53\"]\n");
    REQUIRE(c.dns_servers.size() == 1);
    CHECK_FALSE(c.allow_loopback);
  }
}
