// Folding rate-limit refusals into audit records: a flood of refused
// requests must not become a flood of records, and no refusal may go
// uncounted for long.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::mcpd {

// Refusals are counted per tenant, by credential, user and the limit that
// refused them (`mcp`, `admin`, `admin_light`: a handful, whatever paths a
// client makes up, so a record's size is bounded by the tenant's keys). A
// tenant's first refusal after a quiet spell is recorded at once; those
// after it are folded into one record per interval, the interval doubling
// from one second to a minute while the refusals go on, and back to one
// second once a whole interval passes without any. Counts pending when an
// interval ends are written by `due`, called from a timer, whether or not
// another refusal comes. (Quiet means: no refusal from the end of an
// interval for the whole of the next, doubled one.) Thread-safe.
class RefusalLedger {
 public:
  static constexpr std::int64_t kFirstIntervalMs = 1000;
  static constexpr std::int64_t kLongestIntervalMs = 60000;
  // Entries (credential, user, limit) in one record; refusals past them
  // are counted in its `others`.
  static constexpr std::size_t kMaxEntries = 256;

  // Counts one refusal; a record to write now, or null.
  nlohmann::json note(const std::string& tenant, const std::string& credential, const std::string& user,
                      std::string_view limit, std::int64_t now_ms);
  // The records whose interval has ended with refusals pending.
  std::vector<nlohmann::json> due(std::int64_t now_ms);
  // Every pending count, now (at shutdown).
  std::vector<nlohmann::json> drain();

 private:
  struct Tally {
    std::int64_t next_ms = 0;  // when the next record may be written
    std::int64_t interval_ms = kFirstIntervalMs;
    std::uint64_t pending = 0;
    std::uint64_t others = 0;  // pending refusals past kMaxEntries entries
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> entries;
  };
  static nlohmann::json take(const std::string& tenant, Tally& t, std::int64_t now_ms);

  std::mutex mu_;
  std::map<std::string, Tally> tenants_;  // bounded by the tenants
};

}  // namespace sluice::mcpd
