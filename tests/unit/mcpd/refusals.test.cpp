#include <catch2/catch.hpp>

#include "refusals.h"

using sluice::mcpd::RefusalLedger;

namespace {

std::uint64_t counted(const nlohmann::json& rec) { return rec.at("count").get<std::uint64_t>(); }

}  // namespace

TEST_CASE("mcpd::RefusalLedger records the first refusal at once and folds a flood into intervals that grow",
          "[mcpd][refusals]") {
  RefusalLedger ledger;
  std::int64_t t = 1'000'000;
  auto first = ledger.note("acme", "api_key:a", "ann", "mcp", t);
  REQUIRE(first.is_object());
  CHECK(first["kind"] == "rate_limited");
  CHECK(first["tenant"] == "acme");
  CHECK(counted(first) == 1);
  REQUIRE(first["refused"].size() == 1);
  CHECK(first["refused"][0] == nlohmann::json{{"credential", "api_key:a"}, {"user", "ann"}, {"limit", "mcp"}, {"count", 1}});

  // A flood of 100 refusals a second for two minutes, from two keys: every
  // one counted, in records at most once an interval of 1, 2, 4 ... 60 s.
  std::uint64_t total = 1;
  std::vector<std::int64_t> written_at;
  for (int i = 1; i <= 12000; ++i) {
    t += 10;
    auto rec = ledger.note("acme", i % 2 ? "api_key:a" : "api_key:b", i % 2 ? "ann" : "bob", "mcp", t);
    if (i % 100 == 0) {
      for (auto& due : ledger.due(t)) {
        total += counted(due);
        written_at.push_back(t);
      }
    }
    if (!rec.is_null()) {
      total += counted(rec);
      written_at.push_back(t);
    }
  }
  // Gaps between records: 1 s, 2 s, 4 s, ... then 60 s.
  REQUIRE(written_at.size() >= 6);
  CHECK(written_at.size() <= 10);
  std::int64_t previous = 1'000'000;
  std::int64_t gap_wanted = RefusalLedger::kFirstIntervalMs;
  for (auto at : written_at) {
    CHECK(at - previous >= gap_wanted);
    gap_wanted = std::min(gap_wanted * 2, RefusalLedger::kLongestIntervalMs);
    previous = at;
  }
  // What is still pending is written once its interval ends, with no
  // further refusal; and nothing is lost.
  CHECK(ledger.due(t).empty());
  auto tail = ledger.due(t + RefusalLedger::kLongestIntervalMs);
  REQUIRE(tail.size() == 1);
  total += counted(tail[0]);
  CHECK(total == 12001);
  std::uint64_t by_entries = 0;
  for (const auto& e : tail[0]["refused"]) by_entries += e["count"].get<std::uint64_t>();
  CHECK(by_entries == counted(tail[0]));
  CHECK(tail[0]["refused"].size() == 2);

  // Quiet for a whole interval: the next refusal is recorded at once
  // again, and the interval starts over at a second.
  t += 5 * RefusalLedger::kLongestIntervalMs;
  CHECK(ledger.due(t).empty());
  auto again = ledger.note("acme", "api_key:a", "ann", "mcp", t);
  REQUIRE(again.is_object());
  CHECK(again["interval_ms"] == RefusalLedger::kFirstIntervalMs);
  CHECK(ledger.note("acme", "api_key:a", "ann", "mcp", t + 500).is_null());
  CHECK(ledger.due(t + 999).empty());
  CHECK(ledger.due(t + 1000).size() == 1);
}

TEST_CASE("mcpd::RefusalLedger keeps tenants apart and bounds the entries of a record", "[mcpd][refusals]") {
  RefusalLedger ledger;
  const std::int64_t t = 5'000;
  REQUIRE(ledger.note("acme", "api_key:a", "ann", "mcp", t).is_object());
  // Another tenant's refusal is its own first: recorded at once.
  auto other = ledger.note("globex", "api_key:g", "gus", "admin", t);
  REQUIRE(other.is_object());
  CHECK(other["tenant"] == "globex");
  // Within acme's interval, many keys: the entries stop at the bound, the
  // rest are counted as `others`, none lost.
  const std::size_t n = RefusalLedger::kMaxEntries + 44;
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(ledger.note("acme", "api_key:k" + std::to_string(i), "ann", "mcp", t + 1).is_null());
  }
  auto due = ledger.due(t + RefusalLedger::kFirstIntervalMs);
  REQUIRE(due.size() == 1);
  CHECK(due[0]["tenant"] == "acme");
  CHECK(counted(due[0]) == n);
  CHECK(due[0]["refused"].size() == RefusalLedger::kMaxEntries);
  CHECK(due[0]["others"] == 44);
  // drain: whatever is pending, at once (shutdown).
  CHECK(ledger.note("acme", "api_key:a", "ann", "mcp", t + 1001).is_null());
  auto drained = ledger.drain();
  REQUIRE(drained.size() == 1);
  CHECK(counted(drained[0]) == 1);
  CHECK(ledger.drain().empty());
}
