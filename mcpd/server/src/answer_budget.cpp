#include "answer_budget.h"

namespace sluice::mcpd {

// What a Keep points at: gives its bytes back when the last copy goes.
struct AnswerBudget::Hold {
  std::shared_ptr<State> state;
  std::int64_t tenant = 0;
  std::size_t bytes = 0;
  Hold(std::shared_ptr<State> s, std::int64_t t) : state(std::move(s)), tenant(t) {}
  ~Hold() {
    if (bytes != 0) state->release(tenant, bytes);
  }
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
};

void AnswerBudget::State::release(std::int64_t tenant, std::size_t bytes) {
  const std::lock_guard lock(mu);
  total -= bytes;
  auto it = tenants.find(tenant);
  it->second -= bytes;
  if (it->second == 0) tenants.erase(it);
}

AnswerBudget::AnswerBudget(AnswerLimits limits) : limits_(limits) {}

std::optional<AnswerBudget::Keep> AnswerBudget::reserve(std::int64_t tenant, std::size_t bytes, bool whatever_size) {
  if (bytes == 0 || (bytes < limits_.uncounted_below && !whatever_size)) return Keep{};
  auto hold = std::make_shared<Hold>(state_, tenant);  // before anything is counted: it may throw
  const std::lock_guard lock(state_->mu);
  std::size_t& own = state_->tenants[tenant];
  // Large answers may fill seven eighths of the share and of the total;
  // the rest is kept for the small answers of batches, so a share (or the
  // total) full of large answers stops no small ones.
  const bool large = bytes >= limits_.uncounted_below;
  const std::size_t share = large ? limits_.per_tenant - limits_.per_tenant / 8 : limits_.per_tenant;
  const std::size_t total = large ? limits_.total - limits_.total / 8 : limits_.total;
  // Written so neither sum can wrap: each side is at most its limit (own
  // and the total may be above a large answer's part of it: then refused).
  if (own > share || state_->total > total || bytes > share - own || bytes > total - state_->total) {
    if (own == 0) state_->tenants.erase(tenant);
    ++state_->refused;
    return std::nullopt;
  }
  own += bytes;
  state_->total += bytes;
  hold->bytes = bytes;
  return Keep(std::move(hold));
}

std::size_t AnswerBudget::held() const {
  const std::lock_guard lock(state_->mu);
  return state_->total;
}

std::size_t AnswerBudget::held(std::int64_t tenant) const {
  const std::lock_guard lock(state_->mu);
  auto it = state_->tenants.find(tenant);
  return it == state_->tenants.end() ? 0 : it->second;
}

std::uint64_t AnswerBudget::refused() const {
  const std::lock_guard lock(state_->mu);
  return state_->refused;
}

}  // namespace sluice::mcpd
