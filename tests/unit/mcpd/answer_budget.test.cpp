#include "answer_budget.h"

#include <memory>

#include <catch2/catch.hpp>

using sluice::mcpd::AnswerBudget;
using sluice::mcpd::AnswerLimits;

namespace {

constexpr std::size_t kKiB = 1024;

AnswerLimits small_limits() {
  AnswerLimits l;
  l.total = 1000 * kKiB;
  l.per_tenant = 400 * kKiB;
  l.uncounted_below = 64 * kKiB;
  return l;
}

}  // namespace

TEST_CASE("mcpd::AnswerBudget: answers under the floor are never counted nor refused", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto big = budget.reserve(1, 400 * kKiB);  // the tenant's whole share
  REQUIRE(big);
  for (int i = 0; i < 1000; ++i) {
    auto small = budget.reserve(1, 64 * kKiB - 1);
    REQUIRE(small);
    CHECK(*small == nullptr);
  }
  CHECK(budget.held() == 400 * kKiB);
  CHECK(budget.refused() == 0);
}

TEST_CASE("mcpd::AnswerBudget: a tenant past its share is refused; another tenant is not", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto a = budget.reserve(1, 300 * kKiB);
  REQUIRE(a);
  CHECK(budget.held(1) == 300 * kKiB);
  CHECK_FALSE(budget.reserve(1, 101 * kKiB));  // 401 KiB > 400
  CHECK(budget.refused() == 1);
  auto exact = budget.reserve(1, 100 * kKiB);  // exactly the share
  REQUIRE(exact);
  CHECK(budget.held(1) == 400 * kKiB);
  auto other = budget.reserve(2, 300 * kKiB);
  REQUIRE(other);
  CHECK(budget.held() == 700 * kKiB);
  CHECK(budget.held(2) == 300 * kKiB);
}

TEST_CASE("mcpd::AnswerBudget: the total binds across tenants", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  std::vector<AnswerBudget::Keep> kept;
  for (std::int64_t t = 1; t <= 3; ++t) {
    auto k = budget.reserve(t, 300 * kKiB);
    REQUIRE(k);
    kept.push_back(std::move(*k));
  }
  // 900 KiB held: a fourth tenant, well inside its own share, still does not fit.
  CHECK_FALSE(budget.reserve(4, 101 * kKiB));
  CHECK(budget.held(4) == 0);  // a refused tenant leaves no entry behind
  auto fits = budget.reserve(4, 100 * kKiB);
  CHECK(fits);
}

TEST_CASE("mcpd::AnswerBudget: bytes come back when the last copy of a hold is dropped", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto k = budget.reserve(1, 400 * kKiB);
  REQUIRE(k);
  AnswerBudget::Keep copy = *k;
  CHECK_FALSE(budget.reserve(1, 100 * kKiB));
  k.reset();
  CHECK(budget.held(1) == 400 * kKiB);  // the copy still holds them
  copy.reset();
  CHECK(budget.held() == 0);
  CHECK(budget.held(1) == 0);
  CHECK(budget.reserve(1, 400 * kKiB));
}

TEST_CASE("mcpd::AnswerBudget: a hold may outlive the budget", "[mcpd][answers]") {
  AnswerBudget::Keep kept;
  {
    AnswerBudget budget(small_limits());
    kept = *budget.reserve(1, 200 * kKiB);
    REQUIRE(kept);
  }
  kept.reset();  // gives back to state the budget no longer owns: no use after free (ASan, valgrind)
}

TEST_CASE("mcpd::AnswerBudget: sizes near the limits do not wrap", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  CHECK_FALSE(budget.reserve(1, SIZE_MAX));
  CHECK_FALSE(budget.reserve(1, SIZE_MAX - 100 * kKiB));
  auto k = budget.reserve(1, 350 * kKiB);
  REQUIRE(k);
  CHECK_FALSE(budget.reserve(1, SIZE_MAX - 10));
  CHECK(budget.held() == 350 * kKiB);
}
