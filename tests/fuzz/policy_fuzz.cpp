// Fuzzes the policy parser and the entry grammar with the invariants the
// rest of Sluice relies on:
//  - no input crashes, leaks or trips a sanitizer;
//  - a policy that parses serialises to a document that parses back equal
//    (normalisation is a fixed point);
//  - its compiled rules survive the agent's wire format unchanged, and a
//    rule set never revokes anything from itself.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/policy/rules.h"

namespace sp = sluice::policy;

namespace {

[[noreturn]] void violated() { std::abort(); }

const sp::EndpointsConfig& config() {
  static const sp::EndpointsConfig c = [] {
    auto parsed = sp::parse_endpoints(R"({
      "internal_networks": ["10.0.0.0/8", "fd00::/8"],
      "internal_domains": ["*.corp.example"],
      "endpoints": {
        "llm": ["https://api.anthropic.com", "http://ollama.corp.example:11434",
                "https://x.openai.azure.com", "10.1.2.3:8443"],
        "embeddings": ["https://api.openai.com", "[2001:db8::5]:443", "10.9.0.0/16:8080"],
        "prospecting": ["https://api.apollo.io", "*.clearbit.com:443"]}})");
    if (!parsed) violated();
    return *parsed;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto policy = sp::parse_policy(text)) {
    auto again = sp::parse_policy(sp::to_json(*policy).dump());
    if (!again || !(*again == *policy)) violated();

    const sp::EffectiveRules rules = sp::compile(*policy, config());
    auto wire = sp::rules_from_json(sp::to_json(rules));
    if (!wire) violated();
    for (sp::Purpose p : sp::kPurposes) {
      if (!wire->of(p).same_rules(rules.of(p))) violated();
    }
    if (sp::diff(rules, rules).revokes()) violated();
    (void)sp::egresses(rules, config().internal_networks);
  } else if (policy.error().empty()) {
    violated();  // a failure must say why
  }

  if (auto entry = sp::parse_entry(text, {})) {
    auto again = sp::parse_entry(entry->to_string(), {});
    if (!again || !(*again == *entry)) violated();
  }
  return 0;
}
