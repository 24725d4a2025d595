// sluice-demo-data: writes the synthetic demo bank (demo_data.h) to a new
// SQLite file. Exit 0 on success, 1 on failure, 2 on bad arguments.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "demo_data.h"

int main(int argc, char** argv) {
  using sluice::mcpd::DemoOptions;
  CLI::App app{"Write the synthetic demo bank (obviously fake data) to a new SQLite file."};
  std::string out;
  DemoOptions o;
  app.add_option("--out", out, "File to create; never overwritten")->required();
  app.add_option("--customers", o.customers, "Number of customers")
      ->check(CLI::Range(std::int64_t{1}, sluice::mcpd::kMaxDemoCustomers))
      ->capture_default_str();
  app.add_option("--transactions", o.transactions, "Number of transactions")
      ->check(CLI::Range(std::int64_t{0}, sluice::mcpd::kMaxDemoTransactions))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed: the same seed gives the same data")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a "parse error" that succeeds
  }

  const auto start = std::chrono::steady_clock::now();
  const auto stats = sluice::mcpd::generate_demo_bank(out, o);
  if (!stats) {
    std::cerr << "sluice-demo-data: " << stats.error().message;
    if (!stats.error().detail.empty()) std::cerr << " (" << stats.error().detail << ")";
    std::cerr << "\n";
    return 1;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::cout << "customers " << stats->customers << "\naccounts " << stats->accounts
            << "\ncards " << stats->cards << "\ntransactions " << stats->transactions << "\n";
  std::cerr << "sluice-demo-data: wrote " << out << " in " << ms << " ms\n";
  return 0;
}
