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
    // Back from idle (nothing of its own waiting or running): no credit
    // for the time away.
    if (t.jobs.empty() && t.running == 0) t.vtime = std::max(t.vtime, floor_);
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
    run(tenant, charged, std::move(job));
  } catch (...) {
    // The slot is not lost (the caller hears of the failure). The charge
    // stays: the tenant may have jobs waiting by now, under that time.
    std::lock_guard lock(mu_);
    --running_;
    --tenants_.find(tenant)->second.running;
    throw;
  }
}

void FairPool::run(std::int64_t tenant, Ns charged, std::function<void()> job) {
  boost::asio::post(pool_, [this, tenant, charged, job = std::move(job)] {
    const Ns began = now_ns();
    try {
      job();
    } catch (...) {
      // Nothing may leave a pool thread; the job's own code reports.
    }
    finished(tenant, charged, now_ns() - began);
  });
}

void FairPool::finished(std::int64_t tenant, Ns charged, Ns took) {
  // Nothing here allocates (turns move as node handles, never new nodes),
  // so nothing can throw on the pool thread but posting the next job.
  std::function<void()> next;
  std::int64_t next_tenant = 0;
  Ns next_charged = 0;
  {
    std::lock_guard lock(mu_);
    Tenant& done = tenants_.find(tenant)->second;
    --done.running;
    // Set right: charged the estimate, it took `took`. Its turn, if it has
    // jobs waiting, moves with its virtual time.
    auto turn = done.jobs.empty() ? decltype(ready_)::node_type()
                                  : ready_.extract(Turn{done.vtime, done.ready_since, tenant});
    done.vtime += took - charged;
    done.estimate += (took - done.estimate) / 8;
    if (turn) {
      turn.value() = Turn{done.vtime, done.ready_since, tenant};
      ready_.insert(std::move(turn));
    }
    if (ready_.empty()) {
      --running_;
      return;
    }
    auto first = ready_.extract(ready_.begin());
    next_tenant = std::get<2>(first.value());
    Tenant& t = tenants_.find(next_tenant)->second;
    next = std::move(t.jobs.front());
    t.jobs.pop_front();
    --waiting_;
    next_charged = start_locked(t);
    if (!t.jobs.empty()) {
      // Its next job waits at its new virtual time, behind those tied with it.
      t.ready_since = ++arrivals_;
      first.value() = Turn{t.vtime, t.ready_since, next_tenant};
      ready_.insert(std::move(first));
    }
  }
  try {
    run(next_tenant, next_charged, std::move(next));  // the freed slot goes to it: running_ unchanged
  } catch (...) {
    // Out of memory posting it: the slot is given back (that job's caller
    // waits until shutdown), and nothing leaves the pool thread.
    std::lock_guard lock(mu_);
    --running_;
    --tenants_.find(next_tenant)->second.running;
  }
}

std::size_t FairPool::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

}  // namespace sluice::mcpd
