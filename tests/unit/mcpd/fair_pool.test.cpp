#include "fair_pool.h"

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/thread_pool.hpp>
#include <catch2/catch.hpp>

using sluice::mcpd::FairPool;

TEST_CASE("mcpd::FairPool: a tenant's burst does not hold another tenant's job behind all of it", "[mcpd][fair]") {
  boost::asio::thread_pool threads(1);
  FairPool pool(threads.get_executor(), 1);
  std::mutex mu;
  std::vector<std::string> order;
  const auto job = [&](std::string name) {
    return [&, name] {
      std::lock_guard lock(mu);
      order.push_back(name);
    };
  };
  // The one worker busy until released; then acme queues ten, globex one.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  pool.post(1, [released] { released.wait(); });
  for (int i = 0; i < 10; ++i) pool.post(1, job("acme" + std::to_string(i)));
  pool.post(2, job("globex"));
  CHECK(pool.waiting() == 11);
  release.set_value();
  threads.join();
  REQUIRE(order.size() == 11);
  // Turns: acme's first, then globex's, then the rest of acme's in order.
  CHECK(order[0] == "acme0");
  CHECK(order[1] == "globex");
  for (int i = 1; i < 10; ++i) CHECK(order[static_cast<std::size_t>(i) + 1] == "acme" + std::to_string(i));
  CHECK(pool.waiting() == 0);
}

TEST_CASE("mcpd::FairPool keeps every worker busy while there is work, and survives a throwing job", "[mcpd][fair]") {
  boost::asio::thread_pool threads(2);
  FairPool pool(threads.get_executor(), 2);
  std::atomic<int> together{0}, most{0}, done{0};
  for (int i = 0; i < 40; ++i) {
    pool.post(i % 3, [&, i] {
      const int now = ++together;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      --together;
      ++done;
      if (i == 7) throw std::runtime_error("a job's bug");
    });
  }
  threads.join();
  CHECK(done == 40);
  CHECK(most <= 2);  // never more than the workers at once
  CHECK(pool.waiting() == 0);
}
