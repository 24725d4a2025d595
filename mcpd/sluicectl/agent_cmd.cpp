// sluicectl agent status|events|apply|remove|resolve: operator access to
// sluice-agent's control socket.
#include <iostream>

#include "agent_client.h"
#include "cli.h"
#include "sluice/policy/rules.h"

namespace sluice::ctl {
namespace {

namespace sp = sluice::policy;

struct AgentOptions {
  std::string socket;
  std::string instance = "sluice";
  std::string tenant;
  std::uint64_t version = 0;
  std::string policy_file, endpoints_file, rules_file;
  std::string purpose = "llm";
  std::string host;
  std::uint16_t port = 443;
  std::uint64_t cursor = 0;
  std::size_t max = 100;
  bool allow_loopback = false;
};

std::string socket_of(const AgentOptions& o) {
  return o.socket.empty() ? "/run/" + o.instance + "/agent.sock" : o.socket;
}

// Prints the reply; exit 0 when ok, 1 when the agent refused or failed.
int call(const AgentOptions& o, const nlohmann::json& request) {
  auto reply = agent_call(socket_of(o), request);
  if (!reply) return kExitFailure;
  std::cout << reply->body.dump(2) << "\n";
  return reply->body.value("ok", false) ? kExitOk : kExitFailure;
}

std::optional<nlohmann::json> rules_for(const AgentOptions& o) {
  const sp::DenyOptions deny{.allow_loopback = o.allow_loopback};
  if (!o.rules_file.empty()) {
    auto text = read_input(o.rules_file, 64 * 1024 * 1024);
    if (!text) return std::nullopt;
    auto doc = sp::parse_json_strictly(*text, 64 * 1024 * 1024);
    if (!doc) {
      std::cerr << o.rules_file << ": " << doc.error().to_string() << "\n";
      return std::nullopt;
    }
    auto rules = sp::rules_from_json(*doc, deny);
    if (!rules) {
      for (const auto& e : rules.error()) std::cerr << o.rules_file << ": " << e.to_string() << "\n";
      return std::nullopt;
    }
    return sp::to_json(*rules);
  }
  auto ptext = read_input(o.policy_file, sp::kMaxPolicyBytes);
  auto etext = read_input(o.endpoints_file, sp::kMaxPolicyBytes);
  if (!ptext || !etext) return std::nullopt;
  auto policy = sp::parse_policy(*ptext, deny);
  auto endpoints = sp::parse_endpoints(*etext, deny);
  if (!policy) {
    for (const auto& e : policy.error()) std::cerr << o.policy_file << ": " << e.to_string() << "\n";
  }
  if (!endpoints) {
    for (const auto& e : endpoints.error()) {
      std::cerr << o.endpoints_file << ": " << e.to_string() << "\n";
    }
  }
  if (!policy || !endpoints) return std::nullopt;
  return sp::to_json(sp::compile(*policy, *endpoints));
}

}  // namespace

void add_agent_commands(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<AgentOptions>();
  CLI::App* agent = app.add_subcommand("agent", "Talk to sluice-agent (kernel enforcement)");
  agent->require_subcommand(1);
  agent->add_option("--socket", o->socket, "Control socket (default /run/<instance>/agent.sock)");
  agent->add_option("--instance", o->instance, "Instance name");

  agent->add_subcommand("status", "Layers, generation, counters, tenants")->callback([o, &exit_code] {
    exit_code = call(*o, {{"op", "status"}});
  });

  CLI::App* events = agent->add_subcommand("events", "Deny, tamper and revoke events since a cursor");
  events->add_option("--cursor", o->cursor, "Last sequence number already seen");
  events->add_option("--max", o->max, "At most this many events (1-1000)")
      ->check(CLI::Range(1, 1000));
  events->callback([o, &exit_code] {
    exit_code = call(*o, {{"op", "events"}, {"cursor", o->cursor}, {"max", o->max}});
  });

  CLI::App* apply = agent->add_subcommand(
      "apply", "Apply a tenant's rules: compiled from --policy and --endpoints, or --rules JSON");
  apply->add_option("--tenant", o->tenant, "Tenant name")->required();
  apply->add_option("--version", o->version, "Policy version (monotonic)")->required();
  auto* pf = apply->add_option("--policy", o->policy_file, "Policy JSON");
  auto* ef = apply->add_option("--endpoints", o->endpoints_file, "Endpoints configuration JSON");
  auto* rf = apply->add_option("--rules", o->rules_file, "Effective rules JSON");
  pf->needs(ef);
  ef->needs(pf);
  rf->excludes(pf)->excludes(ef);
  apply->add_flag("--allow-loopback", o->allow_loopback, "Accept loopback (test set-ups only)");
  apply->callback([o, &exit_code] {
    if (o->rules_file.empty() && o->policy_file.empty()) {
      std::cerr << "sluicectl: apply needs --policy and --endpoints, or --rules\n";
      exit_code = kExitInvalid;
      return;
    }
    auto rules = rules_for(*o);
    if (!rules) {
      exit_code = kExitInvalid;
      return;
    }
    exit_code = call(*o, {{"op", "apply"}, {"tenant", o->tenant}, {"version", o->version},
                          {"rules", *rules}});
  });

  CLI::App* remove = agent->add_subcommand("remove", "Remove a tenant: rules, pins and cgroups");
  remove->add_option("--tenant", o->tenant, "Tenant name")->required();
  remove->callback([o, &exit_code] { exit_code = call(*o, {{"op", "remove"}, {"tenant", o->tenant}}); });

  CLI::App* resolve = agent->add_subcommand(
      "resolve", "Resolve a name for a tenant and purpose, pinned in both layers");
  resolve->add_option("--tenant", o->tenant, "Tenant name")->required();
  resolve->add_option("--purpose", o->purpose, "llm, embeddings or prospecting")
      ->check(CLI::IsMember({"llm", "embeddings", "prospecting"}));
  resolve->add_option("--port", o->port, "Destination port")->check(CLI::Range(1, 65535));
  resolve->add_option("HOST", o->host, "Host name")->required();
  resolve->callback([o, &exit_code] {
    exit_code = call(*o, {{"op", "resolve"}, {"tenant", o->tenant}, {"purpose", o->purpose},
                          {"host", o->host}, {"port", o->port}});
  });
}

}  // namespace sluice::ctl
