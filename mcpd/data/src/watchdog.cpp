#include "watchdog.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <sqlite3.h>

namespace sluice::mcpd {
namespace {

using Clock = std::chrono::steady_clock;

// Polls while statements run, and for a second after the last: a busy
// server's next statement then needs no wake-up of this thread; an idle
// one's thread sleeps until one comes.
constexpr int kIdlePolls = 100;

}  // namespace

struct Watchdog::State {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Watch*> armed;  // the statements running now: a few per worker
  bool sleeping = false;
};

// Never destroyed: its thread lives as long as the process.
Watchdog::State& Watchdog::state() {
  static State* s = [] {
    auto* created = new State;
    std::thread([created] { loop(*created); }).detach();
    return created;
  }();
  return *s;
}

void Watchdog::loop(State& s) {
  std::unique_lock lock(s.mu);
  int idle = 0;
  while (true) {
    if (s.armed.empty()) {
      if (idle >= kIdlePolls) {
        s.sleeping = true;
        s.cv.wait(lock, [&s] { return !s.armed.empty(); });
        s.sleeping = false;
        idle = 0;
      } else {
        ++idle;
        s.cv.wait_for(lock, kPoll);
      }
      continue;
    }
    idle = 0;
    const auto now = Clock::now();
    auto next = now + kPoll;
    for (Watch* w : s.armed) {
      if (now >= w->deadline_ || (w->cancel_ && w->cancel_->load(std::memory_order_relaxed))) {
        // Armed, so open: its statement has not returned. Again at every
        // look while it runs: SQLite clears the flag when a statement
        // starts (or re-prepares) with none running, so one that came
        // before the first step would be lost.
        sqlite3_interrupt(w->db_);
      } else {
        next = std::min(next, w->deadline_);
      }
    }
    s.cv.wait_until(lock, next);
  }
}

Watchdog::Watch::Armed Watchdog::Watch::arm(Clock::time_point deadline, const std::atomic<bool>* cancel) {
  State& s = state();
  std::lock_guard lock(s.mu);
  deadline_ = deadline;
  cancel_ = cancel;
  s.armed.push_back(this);
  if (s.sleeping) s.cv.notify_one();
  return Armed(*this);
}

void Watchdog::Watch::disarm() {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (auto it = std::find(s.armed.begin(), s.armed.end(), this); it != s.armed.end()) {
    *it = s.armed.back();
    s.armed.pop_back();
  }
}

Watchdog::Watch::Armed::~Armed() { watch_.disarm(); }

}  // namespace sluice::mcpd
