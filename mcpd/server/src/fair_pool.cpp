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
  t.vtime += t.estimate;
  return t.estimate;
}

void FairPool::post(std::int64_t tenant, std::function<void()> job) {
  Ns charged = 0;
  {
    std::lock_guard lock(mu_);
    Tenant& t = tenants_[tenant];
    // Back from idle (nothing of its own waiting): no credit for the time away.
    if (t.jobs.empty()) t.vtime = std::max(t.vtime, floor_);
    if (running_ >= capacity_) {
      if (t.jobs.empty()) ready_.emplace(t.vtime, tenant);
      t.jobs.push_back(std::move(job));
      ++waiting_;
      return;
    }
    ++running_;
    charged = start_locked(t);
  }
  try {
    run(tenant, charged, std::move(job));
  } catch (...) {
    std::lock_guard lock(mu_);
    --running_;  // the slot is not lost (the caller hears of the failure)
    tenants_[tenant].vtime -= charged;
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
  std::function<void()> next;
  std::int64_t next_tenant = 0;
  Ns next_charged = 0;
  {
    std::lock_guard lock(mu_);
    Tenant& done = tenants_[tenant];
    // Set right: charged the estimate, it took `took`. Re-keyed if waiting.
    const bool queued = !done.jobs.empty();
    if (queued) ready_.erase({done.vtime, tenant});
    done.vtime += took - charged;
    done.estimate += (took - done.estimate) / 8;
    if (done.estimate < 1) done.estimate = 1;
    if (queued) ready_.emplace(done.vtime, tenant);
    if (ready_.empty()) {
      --running_;
      return;
    }
    next_tenant = ready_.begin()->second;
    ready_.erase(ready_.begin());
    Tenant& t = tenants_[next_tenant];
    next = std::move(t.jobs.front());
    t.jobs.pop_front();
    --waiting_;
    next_charged = start_locked(t);
    if (!t.jobs.empty()) ready_.emplace(t.vtime, next_tenant);  // its next job, at its new time
  }
  try {
    run(next_tenant, next_charged, std::move(next));  // the freed slot goes to it: running_ unchanged
  } catch (...) {
    // Out of memory posting it: the slot is given back (that job's caller
    // waits until shutdown), and nothing leaves the pool thread.
    std::lock_guard lock(mu_);
    --running_;
  }
}

std::size_t FairPool::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

}  // namespace sluice::mcpd
