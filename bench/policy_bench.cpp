// Policy library cost against a baseline measured in the same run: how
// much does strict validation + compilation cost over merely parsing the
// same JSON document with nlohmann? Printed as ratios, never asserted.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "sluice/policy/rules.h"

namespace sp = sluice::policy;
using Clock = std::chrono::steady_clock;

namespace {

std::string policy_with(std::size_t n) {
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) {
    switch (i % 4) {
      case 0: list.push_back("host" + std::to_string(i) + ".example.com"); break;
      case 1: list.push_back("*.zone" + std::to_string(i) + ".example.net:443"); break;
      case 2:
        list.push_back("10." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) +
                       ".0/24:443");
        break;
      default: list.push_back("[2001:db8:" + std::to_string(i % 65536) + "::1]:8443"); break;
    }
  }
  return nlohmann::json{{"allow_llm_egress", true}, {"allow_prospecting", true},
                        {"discovery_samples", false}, {"egress_allowlist", list}}
      .dump();
}

template <class F>
double median_us(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main() {
  auto config = sp::parse_endpoints(R"({
    "internal_networks": ["10.0.0.0/8"],
    "endpoints": {"llm": ["https://host1.example.com", "https://api.zone1.example.net",
                          "10.0.5.7:443"],
                  "embeddings": ["https://host4.example.com"],
                  "prospecting": ["*.zone5.example.net:443"]}})");
  if (!config) return 1;
  std::printf("%-8s %14s %16s %14s %10s\n", "entries", "json_parse_us", "validate_us",
              "compile_us", "ratio");
  for (std::size_t n : {10u, 1000u, 4096u}) {
    const std::string doc = policy_with(n);
    const int reps = n > 1000 ? 30 : 200;
    const double base = median_us(reps, [&] {
      auto j = nlohmann::json::parse(doc, nullptr, false);
      if (j.is_discarded()) std::abort();
    });
    sp::TenantPolicy policy;
    const double validate = median_us(reps, [&] {
      auto p = sp::parse_policy(doc);
      if (!p) std::abort();
      policy = std::move(*p);
    });
    const double compile = median_us(reps, [&] { (void)sp::compile(policy, *config); });
    std::printf("%-8zu %14.1f %16.1f %14.1f %9.2fx\n", n, base, validate, compile,
                (validate + compile) / base);
  }
  std::printf("ratio = (validate + compile) / plain nlohmann parse of the same document\n");
}
