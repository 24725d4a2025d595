#include "fair_pool.h"

#include <algorithm>
#include <chrono>

#include <boost/asio/post.hpp>

namespace sluice::mcpd {

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

FairPool::FairPool(boost::asio::any_io_executor pool, std::size_t capacity)
    : pool_(std::move(pool)), capacity_(capacity == 0 ? 1 : capacity) {}

FairPool::Ns FairPool::start_locked(Tenant& t) {
  floor_ = std::max(floor_, t.vtime);
  const Ns charge = std::max(t.estimate, kMinCharge);
  t.vtime += charge;
  ++t.running;
  return charge;
}

void FairPool::post(std::int64_t tenant, std::function<void()> job) {
  Ns charged = 0;
  {
    std::lock_guard lock(mu_);
    Tenant& t = tenants_[tenant];
    // Nothing of its own waiting: no credit for time it left to others. A
    // lift while its jobs run is set against their corrections (finished).
    if (t.jobs.empty() && t.vtime < floor_) {
      if (t.running > 0) t.lifted += floor_ - t.vtime;
      t.vtime = floor_;
    }
    // (A tenant with jobs waiting while a worker is free happens only after
    // a failed post below: its job then queues, keeping its turn's key.)
    if (running_ >= capacity_ || !t.jobs.empty()) {
      // The job first, then its turn: if either throws, nothing is left half done.
      t.jobs.push_back(std::move(job));
      if (t.jobs.size() == 1) {
        try {
          t.ready_since = ++arrivals_;
          ready_.emplace(t.vtime, t.ready_since, tenant);
        } catch (...) {
          t.jobs.pop_back();
          throw;
        }
      }
      ++waiting_;
      return;
    }
    ++running_;
    charged = start_locked(t);
  }
  try {
    run(Start{tenant, charged, std::move(job)});
  } catch (...) {
    // The slot is not lost (the caller hears of the failure). The charge
    // stays: the tenant may have jobs waiting by now, under that time.
    std::lock_guard lock(mu_);
    --running_;
    --tenants_.find(tenant)->second.running;
    throw;
  }
}

void FairPool::run(Start first) {
  boost::asio::post(pool_, [this, first = std::move(first)]() mutable {
    for (Start s = std::move(first); s.job;) {
      const Ns began = now_ns();
      try {
        s.job();
      } catch (...) {
        // Nothing may leave a pool thread; the job's own code reports.
      }
      s.job = nullptr;  // what it captured goes now, not with the next job
      s = finished(s.tenant, s.charged, now_ns() - began);
    }
  });
}

FairPool::Start FairPool::finished(std::int64_t tenant, Ns charged, Ns took) {
  // Nothing here allocates (turns move as node handles, never new nodes):
  // nothing throws on the pool thread.
  std::lock_guard lock(mu_);
  Tenant& done = tenants_.find(tenant)->second;
  --done.running;
  // Set right: charged the estimate, it took `took`, less what a lift
  // while it ran already charged. Its turn, if it has jobs waiting, moves
  // with its virtual time.
  Ns correction = took - charged;
  if (correction > 0 && done.lifted > 0) {
    const Ns used = std::min(correction, done.lifted);
    correction -= used;
    done.lifted -= used;
  }
  if (done.running == 0) done.lifted = 0;
  auto turn = done.jobs.empty() ? decltype(ready_)::node_type()
                                : ready_.extract(Turn{done.vtime, done.ready_since, tenant});
  done.vtime += correction;
  done.estimate += (took - done.estimate) / 8;
  if (turn) {
    turn.value() = Turn{done.vtime, done.ready_since, tenant};
    ready_.insert(std::move(turn));
  }
  if (ready_.empty()) {
    --running_;
    return {};
  }
  auto first = ready_.extract(ready_.begin());
  Start next;
  next.tenant = std::get<2>(first.value());
  Tenant& t = tenants_.find(next.tenant)->second;
  next.job = std::move(t.jobs.front());
  t.jobs.pop_front();
  --waiting_;
  next.charged = start_locked(t);  // the freed slot goes to it: running_ unchanged
  if (!t.jobs.empty()) {
    // Its next job waits at its new virtual time, behind those tied with it.
    t.ready_since = ++arrivals_;
    first.value() = Turn{t.vtime, t.ready_since, next.tenant};
    ready_.insert(std::move(first));
  }
  return next;
}

std::size_t FairPool::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

}  // namespace sluice::mcpd
