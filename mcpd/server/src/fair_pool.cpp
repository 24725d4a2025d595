#include "fair_pool.h"

#include <boost/asio/post.hpp>

namespace sluice::mcpd {

FairPool::FairPool(boost::asio::any_io_executor pool, std::size_t capacity)
    : pool_(std::move(pool)), capacity_(capacity == 0 ? 1 : capacity) {}

void FairPool::post(std::int64_t tenant, std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (running_ >= capacity_) {
      auto& q = queues_[tenant];
      if (q.empty()) turn_.push_back(tenant);
      q.push_back(std::move(job));
      ++waiting_;
      return;
    }
    ++running_;
  }
  try {
    run(std::move(job));
  } catch (...) {
    std::lock_guard lock(mu_);
    --running_;  // the slot is not lost (the caller hears of the failure)
    throw;
  }
}

void FairPool::run(std::function<void()> job) {
  boost::asio::post(pool_, [this, job = std::move(job)] {
    try {
      job();
    } catch (...) {
      // Nothing may leave a pool thread; the job's own code reports.
    }
    finished();
  });
}

void FairPool::finished() {
  std::function<void()> next;
  {
    std::lock_guard lock(mu_);
    if (turn_.empty()) {
      --running_;
      return;
    }
    const std::int64_t tenant = turn_.front();
    turn_.pop_front();
    auto q = queues_.find(tenant);
    next = std::move(q->second.front());
    q->second.pop_front();
    --waiting_;
    if (q->second.empty()) {
      queues_.erase(q);
    } else {
      turn_.push_back(tenant);  // its next job after the others' next
    }
  }
  try {
    run(std::move(next));  // the freed slot goes to it: running_ unchanged
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
