// The synthetic demo bank: a new SQLite file of obviously fake customers,
// accounts, cards and transactions, deterministic from a seed.
//
// Fake by construction: names are combinations of two short fixed lists,
// e-mail addresses are at example.com/.org/.net, IBAN-like strings carry the
// non-existent country code "XX", merchants are fictional companies.
//
// Schema:
//   customers(id INTEGER PRIMARY KEY, full_name TEXT NOT NULL, email TEXT,
//             city TEXT, country TEXT, segment TEXT, created_at TEXT)
//   accounts(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES
//            customers, iban TEXT, kind TEXT /* checking|savings|loan */,
//            currency TEXT, balance_cents INTEGER, opened_at TEXT)
//   cards(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES
//         accounts, pan_last4 TEXT, network TEXT, status TEXT,
//         expires TEXT /* YYYY-MM */)
//   transactions(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL
//                REFERENCES accounts, ts TEXT /* YYYY-MM-DD HH:MM:SS UTC */,
//                amount_cents INTEGER, currency TEXT, merchant TEXT,
//                category TEXT, channel TEXT)
//   indexes on accounts(customer_id), cards(account_id),
//   transactions(account_id, ts)
// Dates are ISO 8601 text (SQLite's date functions read them as is).
// Every customer has 1-3 accounts, the first a checking account; checking
// accounts have 1-2 cards; transactions are spread over all accounts.
#pragma once

#include <cstdint>
#include <string>

#include "result.h"

namespace sluice::mcpd {

struct DemoOptions {
  std::int64_t customers = 100000;
  std::int64_t transactions = 1000000;
  std::uint64_t seed = 42;
};

struct DemoStats {
  std::int64_t customers = 0;
  std::int64_t accounts = 0;
  std::int64_t cards = 0;
  std::int64_t transactions = 0;
};

inline constexpr std::int64_t kMaxDemoCustomers = 10'000'000;
inline constexpr std::int64_t kMaxDemoTransactions = 100'000'000;

// Writes a new file at `path`: refuses (kind denied) if anything exists
// there; builds it as path + ".tmp" (a stale one is replaced) and links it
// into place only when complete and synced, so `path` never holds a partial
// database. Customers must be 1..kMaxDemoCustomers and transactions
// 0..kMaxDemoTransactions.
[[nodiscard]] DataResult<DemoStats> generate_demo_bank(const std::string& path,
                                                       const DemoOptions& o);

}  // namespace sluice::mcpd
