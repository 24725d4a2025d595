// Memory held by answers until the kernel has taken their last byte.
//
// Each answer is bounded (about twice `max_result_bytes`) and so is the
// number of connections, but not their product: a key holder whose
// clients read slowly could make the server hold a full answer on every
// connection it may open, for as long as a write may take. Here answers
// (tool calls, the other replies of MCP and large admin API reads) are
// counted from the moment they are made until the HTTP layer has written
// them (or dropped the connection), against a total and a share per
// tenant: past either, the answer is not kept, and the caller is told to
// retry. A response's single answer under `uncounted_below` is not counted
// (what those hold is bounded by the connections), so point lookups never
// wait on a lock here; every answer of a batch counts. Large answers may
// fill seven eighths of the share and of the total, so the small answers
// of batches still fit when the rest is full of large ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace sluice::mcpd {

// What a caller whose answer was not kept is told.
inline constexpr char kAnswersFull[] = "the server holds too many answers not yet sent to their clients; retry shortly";

struct AnswerLimits {
  std::size_t total = std::size_t{512} << 20;
  std::size_t per_tenant = std::size_t{64} << 20;
  std::size_t uncounted_below = std::size_t{64} << 10;
};

class AnswerBudget {
 public:
  // What to keep until the answer is written: the bytes return to the
  // budget when its last copy is dropped. Null for an answer not counted.
  using Keep = std::shared_ptr<const void>;

  explicit AnswerBudget(AnswerLimits limits);
  // Counts `bytes` of the tenant's answers; nullopt (refused, counted in
  // refused()) when they would pass the total or the tenant's share.
  // `whatever_size`: counted even under uncounted_below (one of many
  // answers of one response: a batch's bound is not the connections').
  std::optional<Keep> reserve(std::int64_t tenant, std::size_t bytes, bool whatever_size = false);

  [[nodiscard]] std::size_t held() const;
  [[nodiscard]] std::size_t held(std::int64_t tenant) const;
  [[nodiscard]] std::uint64_t refused() const;
  [[nodiscard]] const AnswerLimits& limits() const { return limits_; }

 private:
  // Shared with every hold, so a hold outliving the budget (a response
  // still being written at shutdown) gives its bytes back safely.
  struct State {
    mutable std::mutex mu;
    std::size_t total = 0;
    std::unordered_map<std::int64_t, std::size_t> tenants;  // only those holding bytes
    std::uint64_t refused = 0;
    void release(std::int64_t tenant, std::size_t bytes);
  };
  struct Hold;
  AnswerLimits limits_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace sluice::mcpd
