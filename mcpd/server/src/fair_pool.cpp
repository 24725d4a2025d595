#include "fair_pool.h"

#include <algorithm>
#include <chrono>

#include <boost/asio/post.hpp>

namespace sluice::mcpd {

std::int64_t FairPool::steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

FairPool::FairPool(boost::asio::any_io_executor pool, std::size_t capacity, Clock clock)
    : pool_(std::move(pool)), capacity_(capacity == 0 ? 1 : capacity), clock_(clock) {}

FairPool::Ns FairPool::start_locked(Tenant& t, Ns now) {
  floor_ = std::max(floor_, t.vtime);
  const Ns charge = std::max(t.estimate, kMinCharge);
  t.vtime += charge;
  ++t.running;
  t.began_sum += now;
  t.charged_sum += charge;
  return charge;
}

FairPool::Ns FairPool::unpaid(const Tenant& t, Ns now) {
  // Sum over running jobs of (now - began - charged), in 128 bits: no
  // product of a count and a clock reading can wrap.
  const __int128 owed = static_cast<__int128>(t.running) * now - t.began_sum - t.charged_sum;
  return owed <= 0 ? 0 : owed >= INT64_MAX ? INT64_MAX : static_cast<Ns>(owed);
}

void FairPool::post(std::int64_t tenant, std::function<void()> job) {
  Start start;
  {
    std::lock_guard lock(mu_);
    // Stopped: the job is dropped (on return, outside the lock), never kept
    // to be destroyed after what it holds is gone (the I/O context of the
    // channel its caller waits on).
    if (stopped_) return;
    Tenant& t = tenants_[tenant];
    const Ns now = clock_();
    // Nothing of its own waiting: no credit for time it left to others.
    // What the lift pays for work its running jobs have done is taken off
    // their charge when they end (finished), never more than that work.
    if (t.jobs.empty() && t.vtime < floor_) {
      if (t.running > 0) t.lifted = std::min(t.lifted + (floor_ - t.vtime), unpaid(t, now));
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
    start = Start{tenant, start_locked(t, now), now, std::move(job)};
  }
  const Start begun{start.tenant, start.charged, start.began, nullptr};
  try {
    run(std::move(start));
  } catch (...) {
    // The slot is not lost (the caller hears of the failure). The charge
    // stays: the tenant may have jobs waiting by now, under that time.
    std::lock_guard lock(mu_);
    --running_;
    Tenant& t = tenants_.find(begun.tenant)->second;
    --t.running;
    t.began_sum -= begun.began;
    t.charged_sum -= begun.charged;
    t.lifted = t.running == 0 ? 0 : std::min(t.lifted, unpaid(t, clock_()));
    throw;
  }
}

void FairPool::run(Start first) {
  boost::asio::post(pool_, [this, first = std::move(first)]() mutable {
    for (Start s = std::move(first); s.job;) {
      try {
        s.job();
      } catch (...) {
        // Nothing may leave a pool thread; the job's own code reports.
      }
      s.job = nullptr;  // what it captured goes now, not with the next job
      s = finished(s, clock_());
    }
  });
}

FairPool::Start FairPool::finished(const Start& done_job, Ns ended) {
  // Nothing here allocates (turns move as node handles, never new nodes):
  // nothing throws on the pool thread.
  std::lock_guard lock(mu_);
  Tenant& done = tenants_.find(done_job.tenant)->second;
  const Ns took = ended - done_job.began;
  --done.running;
  done.began_sum -= done_job.began;
  done.charged_sum -= done_job.charged;
  // Set right: charged the estimate, it took `took`, less what a lift
  // while it ran paid already. Its turn, if it has jobs waiting, moves
  // with its virtual time.
  Ns correction = took - done_job.charged;
  if (correction > 0 && done.lifted > 0) {
    const Ns used = std::min(correction, done.lifted);
    correction -= used;
    done.lifted -= used;
  }
  // What is left of the lift never covers more than the jobs still running have done.
  done.lifted = done.running == 0 ? 0 : std::min(done.lifted, unpaid(done, ended));
  auto turn = done.jobs.empty() ? decltype(ready_)::node_type()
                                : ready_.extract(Turn{done.vtime, done.ready_since, done_job.tenant});
  done.vtime += correction;
  done.estimate += (took - done.estimate) / 8;
  if (turn) {
    turn.value() = Turn{done.vtime, done.ready_since, done_job.tenant};
    ready_.insert(std::move(turn));
  }
  if (ready_.empty() || stopped_) {
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
  next.began = ended;
  next.charged = start_locked(t, ended);  // the freed slot goes to it: running_ unchanged
  if (!t.jobs.empty()) {
    // Its next job waits at its new virtual time, behind those tied with it.
    t.ready_since = ++arrivals_;
    first.value() = Turn{t.vtime, t.ready_since, next.tenant};
    ready_.insert(std::move(first));
  }
  return next;
}

void FairPool::stop() {
  // The jobs waiting are destroyed now, while what they hold still exists
  // (their callers' channels, on the I/O context that main destroys before
  // the App). Destroying one calls nothing back here: its caller's frame
  // still holds the channel too.
  std::lock_guard lock(mu_);
  stopped_ = true;
  for (auto& [id, t] : tenants_) t.jobs.clear();
  ready_.clear();
  waiting_ = 0;
}

std::size_t FairPool::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

FairPool::Account FairPool::account(std::int64_t tenant) const {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) return {};
  const Tenant& t = it->second;
  return {t.vtime, t.lifted, t.running, t.jobs.size()};
}

std::int64_t FairPool::floor() const {
  std::lock_guard lock(mu_);
  return floor_;
}

}  // namespace sluice::mcpd
