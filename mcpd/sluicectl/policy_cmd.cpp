// sluicectl policy validate|explain: the policy library on the command line.
#include <iostream>

#include "cli.h"
#include "sluice/policy/rules.h"

namespace sluice::ctl {
namespace {

namespace sp = sluice::policy;

void print_errors(const std::string& file, const std::vector<sp::Error>& errors) {
  for (const sp::Error& e : errors) {
    std::cerr << file << ": " << e.to_string() << " [" << sp::to_string(e.code) << "]\n";
  }
}

std::optional<sp::TenantPolicy> load_policy(const std::string& file,
                                            const sp::DenyOptions& options) {
  auto text = read_input(file, sp::kMaxPolicyBytes);
  if (!text) return std::nullopt;
  auto policy = sp::parse_policy(*text, options);
  if (!policy) {
    print_errors(file, policy.error());
    return std::nullopt;
  }
  return *policy;
}

struct Options {
  std::string policy_file;
  std::string endpoints_file;
  bool allow_loopback = false;
  bool json = false;
};

}  // namespace

void add_policy_commands(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<Options>();
  CLI::App* policy = app.add_subcommand("policy", "Validate and explain tenant policies");
  policy->require_subcommand(1);

  CLI::App* validate = policy->add_subcommand(
      "validate", "Check a policy file; print it normalised, or every error with its field path");
  validate->add_option("FILE", options->policy_file, "Policy JSON file, - for stdin")->required();
  validate->add_flag("--allow-loopback", options->allow_loopback,
                     "Accept loopback destinations (test set-ups only)");
  validate->callback([options, &exit_code] {
    sp::DenyOptions deny{.allow_loopback = options->allow_loopback};
    auto p = load_policy(options->policy_file, deny);
    if (!p) {
      exit_code = kExitInvalid;
      return;
    }
    std::cout << sp::to_json(*p).dump(2) << "\n";
  });

  CLI::App* explain = policy->add_subcommand(
      "explain", "Print the effective kernel rules per purpose and why each endpoint is allowed");
  explain->add_option("FILE", options->policy_file, "Policy JSON file, - for stdin")->required();
  explain->add_option("--endpoints", options->endpoints_file,
                      "Endpoints configuration JSON (endpoints per purpose, internal networks)")
      ->required();
  explain->add_flag("--json", options->json, "Machine-readable output");
  explain->add_flag("--allow-loopback", options->allow_loopback,
                    "Accept loopback destinations (test set-ups only)");
  explain->callback([options, &exit_code] {
    sp::DenyOptions deny{.allow_loopback = options->allow_loopback};
    auto p = load_policy(options->policy_file, deny);
    auto text = read_input(options->endpoints_file, sp::kMaxPolicyBytes);
    std::optional<sp::EndpointsConfig> config;
    if (text) {
      auto parsed = sp::parse_endpoints(*text, deny);
      if (parsed) {
        config = std::move(*parsed);
      } else {
        print_errors(options->endpoints_file, parsed.error());
      }
    }
    if (!p || !config) {
      exit_code = kExitInvalid;
      return;
    }
    const sp::EffectiveRules rules = sp::compile(*p, *config);
    if (options->json) {
      nlohmann::json out = {{"policy", sp::to_json(*p)},
                            {"egresses", sp::egresses(rules, config->internal_networks)},
                            {"rules", sp::to_json(rules)}};
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << sp::explain(*p, *config, rules);
    }
  });
}

}  // namespace sluice::ctl
