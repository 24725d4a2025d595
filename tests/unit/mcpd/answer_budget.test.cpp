#include "answer_budget.h"

#include <cstdint>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

using sluice::mcpd::AnswerBudget;
using sluice::mcpd::AnswerLimits;

namespace {

constexpr std::size_t kKiB = 1024;

// Large answers may fill 7/8: 448 KiB of a share, 896 KiB of the total.
AnswerLimits small_limits() {
  AnswerLimits l;
  l.total = 1024 * kKiB;
  l.per_tenant = 512 * kKiB;
  l.uncounted_below = 64 * kKiB;
  return l;
}

}  // namespace

TEST_CASE("mcpd::AnswerBudget: a response's single small answer is never counted nor refused", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto big = budget.reserve(1, 448 * kKiB);  // all a share's large answers may hold
  REQUIRE(big);
  for (int i = 0; i < 1000; ++i) {
    auto small = budget.reserve(1, 64 * kKiB - 1);
    REQUIRE(small);
    CHECK(*small == nullptr);
  }
  CHECK(budget.held() == 448 * kKiB);
  CHECK(budget.refused() == 0);
}

TEST_CASE("mcpd::AnswerBudget: a tenant past its share is refused; another tenant is not", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto a = budget.reserve(1, 300 * kKiB);
  REQUIRE(a);
  CHECK(budget.held(1) == 300 * kKiB);
  CHECK_FALSE(budget.reserve(1, 149 * kKiB));  // 449 KiB > 448
  CHECK(budget.refused() == 1);
  auto exact = budget.reserve(1, 148 * kKiB);  // exactly the large answers' part of the share
  REQUIRE(exact);
  CHECK(budget.held(1) == 448 * kKiB);
  auto other = budget.reserve(2, 300 * kKiB);
  REQUIRE(other);
  CHECK(budget.held() == 748 * kKiB);
  CHECK(budget.held(2) == 300 * kKiB);
}

TEST_CASE("mcpd::AnswerBudget: the total binds across tenants", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  std::vector<AnswerBudget::Keep> kept;
  for (std::int64_t t = 1; t <= 3; ++t) {
    auto k = budget.reserve(t, 280 * kKiB);
    REQUIRE(k);
    kept.push_back(std::move(*k));
  }
  // 840 KiB held: a fourth tenant, well inside its own share, does not fit 57 KiB more
  // of large answers (896 KiB).
  CHECK_FALSE(budget.reserve(4, 64 * kKiB));
  CHECK(budget.held(4) == 0);  // a refused tenant leaves no entry behind
  CHECK(budget.reserve(4, 56 * kKiB, true));
}

TEST_CASE("mcpd::AnswerBudget: the small answers of batches fit where large ones no longer do", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto full = budget.reserve(1, 448 * kKiB);
  REQUIRE(full);
  CHECK_FALSE(budget.reserve(1, 64 * kKiB));  // the share's large part is full
  // A batch's small answers are counted, and fit in the eighth kept for them.
  std::vector<AnswerBudget::Keep> batch;
  for (int i = 0; i < 64; ++i) {
    auto k = budget.reserve(1, 1000, true);
    REQUIRE(k);
    REQUIRE(*k);
    batch.push_back(std::move(*k));
  }
  CHECK(budget.held(1) == 448 * kKiB + 64000);
  // Until the whole share is held.
  CHECK_FALSE(budget.reserve(1, 64 * kKiB - 1, true));
  // The same across tenants for the total.
  auto other = budget.reserve(2, 385 * kKiB);  // the total's large part nearly full: 916 992 of 917 504
  REQUIRE(other);
  CHECK_FALSE(budget.reserve(3, 64 * kKiB));
  CHECK(budget.reserve(3, 60 * kKiB, true));
}

TEST_CASE("mcpd::AnswerBudget: bytes come back when the last copy of a hold is dropped", "[mcpd][answers]") {
  AnswerBudget budget(small_limits());
  auto k = budget.reserve(1, 448 * kKiB);
  REQUIRE(k);
  AnswerBudget::Keep copy = *k;
  CHECK_FALSE(budget.reserve(1, 100 * kKiB));
  k.reset();
  CHECK(budget.held(1) == 448 * kKiB);  // the copy still holds them
  copy.reset();
  CHECK(budget.held() == 0);
  CHECK(budget.held(1) == 0);
  CHECK(budget.reserve(1, 448 * kKiB));
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
  auto k = budget.reserve(1, 440 * kKiB);
  REQUIRE(k);
  CHECK_FALSE(budget.reserve(1, SIZE_MAX - 10));
  CHECK_FALSE(budget.reserve(1, SIZE_MAX - 10, true));
  auto small = budget.reserve(1, 60 * kKiB, true);  // past the large part (448), within the share
  REQUIRE(small);
  CHECK_FALSE(budget.reserve(1, 64 * kKiB));  // own (500 KiB) already above the large part: no wrap
  CHECK(budget.held() == 500 * kKiB);
}
