// Work for the worker threads, shared fairly between tenants.
//
// The workers are every tenant's. Posted straight to the pool, jobs run in
// arrival order, so one tenant's burst of slow queries (each bounded by the
// query timeout, but many) holds every other tenant's calls behind it. Here
// at most as many jobs as there are workers are in the pool at once; the
// rest wait in a queue per tenant, and a freed worker takes the next job of
// the next tenant in turn. No tenant is held back while the others are
// idle: the scheduler only decides whose job goes next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>

namespace sluice::mcpd {

class FairPool {
 public:
  // `capacity`: the pool's threads (jobs in it at once).
  FairPool(boost::asio::any_io_executor pool, std::size_t capacity);
  // Runs `job` on the pool, now or in the tenant's turn. A job must not
  // throw (one that does is stopped here, never let out of a pool thread).
  void post(std::int64_t tenant, std::function<void()> job);
  [[nodiscard]] std::size_t waiting() const;

 private:
  void run(std::function<void()> job);
  void finished();

  boost::asio::any_io_executor pool_;
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::size_t running_ = 0;
  std::size_t waiting_ = 0;
  std::unordered_map<std::int64_t, std::deque<std::function<void()>>> queues_;
  std::list<std::int64_t> turn_;  // tenants with jobs waiting, next first
};

}  // namespace sluice::mcpd
