#include "refusals.h"

#include <algorithm>
#include <tuple>

namespace sluice::mcpd {

nlohmann::json RefusalLedger::take(const std::string& tenant, Tally& t, std::int64_t now_ms) {
  nlohmann::json refused = nlohmann::json::array();
  for (const auto& [key, count] : t.entries) {
    const auto& [credential, user, limit] = key;
    refused.push_back({{"credential", credential}, {"user", user}, {"limit", limit}, {"count", count}});
  }
  nlohmann::json rec = {{"kind", "rate_limited"}, {"tenant", tenant}, {"count", t.pending},
                        {"refused", std::move(refused)}, {"others", t.others},
                        {"interval_ms", t.interval_ms}};
  t.entries.clear();
  t.pending = 0;
  t.others = 0;
  t.next_ms = now_ms + t.interval_ms;
  t.interval_ms = std::min(t.interval_ms * 2, kLongestIntervalMs);
  return rec;
}

nlohmann::json RefusalLedger::note(const std::string& tenant, const std::string& credential, const std::string& user,
                                   std::string_view limit, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  Tally& t = tenants_[tenant];
  // A whole interval without a refusal: the tenant starts over.
  if (t.pending == 0 && now_ms >= t.next_ms + t.interval_ms) t.interval_ms = kFirstIntervalMs;
  ++t.pending;
  auto key = std::make_tuple(credential, user, std::string(limit));
  if (auto it = t.entries.find(key); it != t.entries.end()) {
    ++it->second;
  } else if (t.entries.size() < kMaxEntries) {
    t.entries.emplace(std::move(key), 1);
  } else {
    ++t.others;
  }
  if (now_ms < t.next_ms) return nullptr;
  return take(tenant, t, now_ms);
}

std::vector<nlohmann::json> RefusalLedger::due(std::int64_t now_ms) {
  std::vector<nlohmann::json> out;
  std::lock_guard lock(mu_);
  for (auto it = tenants_.begin(); it != tenants_.end();) {
    Tally& t = it->second;
    if (t.pending > 0 && now_ms >= t.next_ms) {
      out.push_back(take(it->first, t, now_ms));
    } else if (t.pending == 0 && now_ms >= t.next_ms + t.interval_ms) {
      it = tenants_.erase(it);  // quiet: forgotten, its interval back to the first
      continue;
    }
    ++it;
  }
  return out;
}

std::vector<nlohmann::json> RefusalLedger::drain() {
  std::vector<nlohmann::json> out;
  std::lock_guard lock(mu_);
  for (auto& [tenant, t] : tenants_) {
    if (t.pending > 0) out.push_back(take(tenant, t, 0));
  }
  tenants_.clear();
  return out;
}

}  // namespace sluice::mcpd
