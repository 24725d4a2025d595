#include "fair_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
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
  // Acme has had the worker (the job holding it): globex's one goes
  // first, then acme's in order.
  CHECK(order[0] == "globex");
  for (int i = 0; i < 10; ++i) CHECK(order[static_cast<std::size_t>(i) + 1] == "acme" + std::to_string(i));
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

namespace {

// One worker held by a job of `holder` until released; the jobs posted
// meanwhile queue, and the order they run in is recorded.
struct Recorder {
  boost::asio::thread_pool threads{1};
  FairPool pool{threads.get_executor(), 1};
  std::mutex mu;
  std::vector<std::string> order;
  std::promise<void> release;

  void hold(std::int64_t holder) {
    pool.post(holder, [f = release.get_future().share()] { f.wait(); });
  }
  void post(std::int64_t tenant, std::string name, std::chrono::milliseconds takes) {
    pool.post(tenant, [this, name, takes] {
      std::this_thread::sleep_for(takes);
      std::lock_guard lock(mu);
      order.push_back(name);
    });
  }
  std::ptrdiff_t at(const std::string& name) {
    return std::find(order.begin(), order.end(), name) - order.begin();
  }
};

// The order jobs start in (and markers the test thread puts between them).
struct StartLog {
  std::mutex mu;
  std::vector<std::string> started;

  void mark(const std::string& what) {
    std::lock_guard lock(mu);
    started.push_back(what);
  }
  // A job that marks its start, then holds its worker for `takes`.
  std::function<void()> job(std::string name, std::chrono::milliseconds takes) {
    return [this, name = std::move(name), takes] {
      mark(name);
      std::this_thread::sleep_for(takes);
    };
  }
  std::ptrdiff_t at(const std::string& what) {
    return std::find(started.begin(), started.end(), what) - started.begin();
  }
};

}  // namespace

TEST_CASE("mcpd::FairPool: turns are weighted by worker time, not by calls", "[mcpd][fair]") {
  Recorder r;
  r.hold(3);
  // Acme's calls each hold the worker 60 ms; globex's take next to nothing.
  for (int i = 0; i < 4; ++i) r.post(1, "slow" + std::to_string(i), std::chrono::milliseconds(60));
  for (int i = 0; i < 10; ++i) r.post(2, "quick" + std::to_string(i), std::chrono::milliseconds(0));
  r.release.set_value();
  r.threads.join();
  REQUIRE(r.order.size() == 14);
  CHECK(r.order[0] == "slow0");  // a tie at first: the tenant that came first
  // Turn by turn (a call each) they would alternate; by time, all of
  // globex's quick calls fit in the time acme's first one took.
  for (int i = 0; i < 10; ++i) CHECK(r.at("quick" + std::to_string(i)) < r.at("slow1"));
}

TEST_CASE("mcpd::FairPool: time away is no credit", "[mcpd][fair]") {
  Recorder r;
  // Acme alone first: five calls of 20 ms, nobody else waiting.
  for (int i = 0; i < 5; ++i) r.post(1, "alone" + std::to_string(i), std::chrono::milliseconds(20));
  const auto alone_done = [&r] {
    std::lock_guard lock(r.mu);
    return r.order.size() == 5;
  };
  for (int i = 0; i < 500 && !alone_done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(alone_done());
  // Then globex arrives while acme goes on. Had globex banked acme's
  // 100 ms alone, all four of its calls would run before acme's next.
  r.hold(3);
  for (int i = 0; i < 4; ++i) r.post(1, "acme" + std::to_string(i), std::chrono::milliseconds(20));
  for (int i = 0; i < 4; ++i) r.post(2, "globex" + std::to_string(i), std::chrono::milliseconds(20));
  r.release.set_value();
  r.threads.join();
  REQUIRE(r.order.size() == 13);
  CHECK(r.at("acme0") < r.at("globex2"));
  CHECK(r.at("globex0") < r.at("acme1"));  // and globex is not held back either
}

TEST_CASE("mcpd::FairPool: a tenant's call still running is charged once, not again when it calls meanwhile",
          "[mcpd][fair]") {
  boost::asio::thread_pool threads(2);
  FairPool pool(threads.get_executor(), 2);
  StartLog log;
  // Globex runs an 800 ms report on one worker; acme keeps the other busy
  // with 20 ms calls, more than it can finish.
  pool.post(2, log.job("report", std::chrono::milliseconds(800)));
  for (int i = 0; i < 100; ++i) pool.post(1, log.job("a", std::chrono::milliseconds(20)));
  // Halfway through the report globex makes a quick call: its report is
  // running, so it is not "back from idle" and its time is not lifted.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  pool.post(2, log.job("q1", std::chrono::milliseconds(0)));
  // After the report, another quick call. Globex has had about 800 ms of
  // the workers, acme more: globex's call goes next. (Lifted at q1 and
  // then charged the report, globex would be 400 ms further on, and q2
  // would wait behind about a dozen of acme's calls.)
  std::this_thread::sleep_for(std::chrono::milliseconds(460));
  log.mark("posted q2");
  pool.post(2, log.job("q2", std::chrono::milliseconds(0)));
  threads.join();
  REQUIRE(log.at("q2") < static_cast<std::ptrdiff_t>(log.started.size()));
  const auto a_between = std::count(log.started.begin() + log.at("posted q2"), log.started.begin() + log.at("q2"), "a");
  CHECK(a_between <= 5);  // charged twice, about 13
}

TEST_CASE("mcpd::FairPool: a tenant that always has a call running banks no credit", "[mcpd][fair]") {
  boost::asio::thread_pool threads(3);
  FairPool pool(threads.get_executor(), 3);
  StartLog log;
  // Acme keeps the workers busy with 10 ms calls, more than it can finish.
  for (int i = 0; i < 300; ++i) pool.post(1, log.job("a", std::chrono::milliseconds(10)));
  // Globex keeps one 1 ms call running at all times, each posting the
  // next just before it ends: it never has nothing running, and uses one
  // of the three workers while acme uses the other two. It goes on through
  // the burst below, so globex never stops having a call running.
  std::atomic<bool> chain{true};
  std::function<void()> link = [&] {
    log.mark("c");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (chain) pool.post(2, link);
  };
  pool.post(2, link);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Then a burst. Had globex banked the worker time it left to acme (about
  // 300 ms), its burst would take every worker until it caught up: its
  // calls first, thirty of them.
  log.mark("burst");
  for (int i = 0; i < 20; ++i) pool.post(2, log.job("x", std::chrono::milliseconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  chain = false;
  threads.join();
  const auto from = log.started.begin() + log.at("burst");
  REQUIRE(from != log.started.end());
  int seen = 0, acme = 0;
  for (auto it = from + 1; it != log.started.end() && seen < 10; ++it) {
    if (*it == "c") continue;
    ++seen;
    if (*it == "a") ++acme;
  }
  REQUIRE(seen == 10);
  CHECK(acme >= 2);  // turn about, about 4; banked, none
}

TEST_CASE("mcpd::FairPool: once stopped, nothing waiting starts; what runs finishes", "[mcpd][fair]") {
  boost::asio::thread_pool threads(1);
  FairPool pool(threads.get_executor(), 1);
  std::promise<void> release;
  std::atomic<bool> finished{false};
  std::atomic<int> started_after{0};
  pool.post(1, [f = release.get_future().share(), &finished] {
    f.wait();
    finished = true;
  });
  // What a waiting job holds goes at stop(), not when the pool does (in
  // mcpd: its caller's channel, on an I/O context gone by then).
  auto held = std::make_shared<int>(0);
  for (int i = 0; i < 3; ++i) pool.post(2, [&, held] { ++started_after; });
  CHECK(held.use_count() == 4);
  CHECK(pool.waiting() == 3);
  pool.stop();
  CHECK(held.use_count() == 1);
  CHECK(pool.waiting() == 0);
  pool.post(3, [&, held] { ++started_after; });  // nor anything posted after, which is not kept
  CHECK(held.use_count() == 1);
  release.set_value();
  threads.join();
  CHECK(finished);
  CHECK(started_after == 0);
}

namespace {

// The scheduler's clock in the test below: set by the test thread only.
std::atomic<std::int64_t> fake_now{0};
std::int64_t fake_clock() { return fake_now.load(); }
constexpr std::int64_t kMs = 1'000'000;

// Jobs that hold their worker until the test lets them go.
struct Gates {
  std::mutex mu;
  std::vector<std::promise<void>> gates;
  std::vector<bool> opened;

  std::function<void()> job() {
    std::lock_guard lock(mu);
    opened.push_back(false);
    return [f = gates.emplace_back().get_future().share()] { f.wait(); };
  }
  void open(std::size_t i) {
    std::lock_guard lock(mu);
    if (!opened.at(i)) gates.at(i).set_value();
    opened.at(i) = true;
  }
  void open_all() {
    for (std::size_t i = 0; i < gates.size(); ++i) open(i);
  }
};

// Waits (up to 5 s of real time) until `tenant` has `running` jobs running.
bool settles(const FairPool& pool, std::int64_t tenant, std::size_t running) {
  for (int i = 0; i < 5000; ++i) {
    if (pool.account(tenant).running == running) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace

TEST_CASE("mcpd::FairPool: a lift while a call runs credits that call's work so far, never more",
          "[mcpd][fair]") {
  // Time is the test's (fake_clock), so every figure below is exact.
  Gates gates;
  boost::asio::thread_pool threads(3);
  FairPool pool(threads.get_executor(), 3, &fake_clock);
  // However the test ends (a failed REQUIRE throws), every job is let go
  // and has finished before the pool it reports to is destroyed.
  struct Finish {
    Gates& gates;
    boost::asio::thread_pool& threads;
    ~Finish() {
      gates.open_all();
      threads.join();
    }
  } finish{gates, threads};
  constexpr std::int64_t acme = 1, globex = 2;
  fake_now = 0;
  pool.post(acme, gates.job());    // 0: acme's long call, charged the 1 ms minimum at t=0
  pool.post(globex, gates.job());  // 1, 2: globex's two calls, on the other two workers
  pool.post(globex, gates.job());
  // At t=100 ms globex's calls end: 2 x 100 ms of worker time charged to it.
  fake_now = 100 * kMs;
  gates.open(1);
  REQUIRE(settles(pool, globex, 1));
  gates.open(2);
  REQUIRE(settles(pool, globex, 0));
  CHECK(pool.account(globex).vtime == 200 * kMs);
  pool.post(globex, gates.job());  // 3: its next call starts at its virtual time
  CHECK(pool.floor() == 200 * kMs);
  CHECK(pool.account(acme).vtime == 1 * kMs);
  // Acme calls again while its long call runs: lifted from 1 ms to the
  // floor, 199 ms. Its long call has worked 100 ms, 1 of them charged: the
  // lift pays for those 99 ms, and that is all it may credit.
  pool.post(acme, gates.job());  // 4: starts on the third worker
  CHECK(pool.account(acme).lifted == 99 * kMs);
  CHECK(pool.account(acme).vtime == 201 * kMs);  // the floor, and the new call's 1 ms
  gates.open(4);                                 // which ends at once (took 0: 1 ms back)
  REQUIRE(settles(pool, acme, 1));
  CHECK(pool.account(acme).vtime == 200 * kMs);
  CHECK(pool.account(acme).lifted == 99 * kMs);
  // The long call ends at t=350 ms, having worked 350 ms: 1 charged at its
  // start, 99 paid by the lift, the 250 it worked after the lift charged
  // now. (Had the lift credited all 199 ms, acme would stand at 350 ms, as
  // if never lifted: the lift undone, the time it left to globex banked.)
  fake_now = 350 * kMs;
  gates.open(0);
  REQUIRE(settles(pool, acme, 0));
  CHECK(pool.account(acme).vtime == 450 * kMs);
  CHECK(pool.account(acme).lifted == 0);
}
