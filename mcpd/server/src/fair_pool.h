// Work for the worker threads, shared fairly between tenants.
//
// The workers are every tenant's. Posted straight to the pool, jobs run in
// arrival order, so one tenant's burst of slow queries (each bounded by the
// query timeout, but many) holds every other tenant's calls behind it. Here
// at most as many jobs as there are workers are in the pool at once; the
// rest wait in a queue per tenant, and a freed worker takes the next job of
// the tenant that has had the least of the workers' time. No tenant is
// held back while the others are idle: the scheduler only decides whose
// job goes next.
//
// Weighted by work, not by calls (start-time fair queueing on worker time):
// each tenant has a virtual time, the worker time charged to it. A job is
// charged when it starts what the tenant's jobs have taken on average
// lately (at least kMinCharge, so work still running counts), and set
// right when it ends. So a tenant whose every call runs to the query
// timeout gets a worker about as much of the time as one whose calls are
// point lookups, not as often: the lookups of the one go ahead of the slow
// queries of the other. A tenant with nothing waiting that calls starts no
// earlier than the time of the last job started: time spent idle, or with
// one call always running while others had the workers, is no credit to
// spend later. Such a lift while its calls run pays, at most, for the
// worker time they have used so far and not been charged; that much is
// taken off what they are charged when they end, so no work is charged
// twice, and nothing beyond the work done is ever credited. Ties go to
// the tenant that has waited longest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>

namespace sluice::mcpd {

class FairPool {
 public:
  // A monotonic clock, in nanoseconds (tests give one of their own).
  using Clock = std::int64_t (*)();
  static std::int64_t steady_ns();

  // `capacity`: the pool's threads (jobs in it at once).
  FairPool(boost::asio::any_io_executor pool, std::size_t capacity, Clock clock = &steady_ns);
  // Runs `job` on the pool, now or in the tenant's turn. A job must not
  // throw (one that does is stopped here, never let out of a pool thread).
  void post(std::int64_t tenant, std::function<void()> job);
  [[nodiscard]] std::size_t waiting() const;
  // One tenant's account, as the scheduler keeps it (for tests).
  struct Account {
    std::int64_t vtime = 0;   // worker time charged (ns)
    std::int64_t lifted = 0;  // credit a lift gave for its running jobs' work, not yet used
    std::size_t running = 0;
    std::size_t waiting = 0;
  };
  [[nodiscard]] Account account(std::int64_t tenant) const;
  // The virtual time of the last job started (ns).
  [[nodiscard]] std::int64_t floor() const;
  // Shutting down: the jobs waiting are dropped now, and so is any job
  // posted later; those running finish.
  void stop();

 private:
  using Ns = std::int64_t;
  static constexpr Ns kMinCharge = 1'000'000;  // 1 ms
  // Ready tenants in turn order: virtual time, then when they became ready.
  using Turn = std::tuple<Ns, std::uint64_t, std::int64_t>;
  struct Tenant {
    std::deque<std::function<void()>> jobs;  // waiting
    std::size_t running = 0;                 // on a worker now
    Ns vtime = 0;                            // worker time charged to it (ns)
    Ns estimate = kMinCharge;                // what its jobs take lately (a moving average)
    Ns lifted = 0;      // what lifts paid for its running jobs' work, not yet set against them
    __int128 began_sum = 0;  // of its running jobs: when each started (wide: up to 64 clock readings)...
    Ns charged_sum = 0; // ...and what each was charged
    std::uint64_t ready_since = 0;           // its place among ties while it has jobs waiting (ready_'s key)
  };
  // Under mu_: a job of `t` goes to a worker now (`now`); returns what it is charged.
  Ns start_locked(Tenant& t, Ns now);
  // Under mu_: the work `t`'s running jobs have done by `now` and not been charged.
  static Ns unpaid(const Tenant& t, Ns now);
  struct Start {
    std::int64_t tenant = 0;
    Ns charged = 0;
    Ns began = 0;  // when it was given its worker
    std::function<void()> job;
  };
  // Posts a worker that runs `first`, then (on the same thread, nothing
  // posted or allocated) every job finished() hands it.
  void run(Start first);
  // Sets a finished job's tenant right; the next job to run in its place,
  // if any is waiting (empty job: none, the worker is given back).
  Start finished(const Start& done, Ns ended);

  boost::asio::any_io_executor pool_;
  std::size_t capacity_;
  Clock clock_;
  mutable std::mutex mu_;
  std::size_t running_ = 0;
  std::size_t waiting_ = 0;
  std::unordered_map<std::int64_t, Tenant> tenants_;
  std::set<Turn> ready_;  // tenants with jobs waiting
  Ns floor_ = 0;          // the virtual time of the last job started
  std::uint64_t arrivals_ = 0;
  bool stopped_ = false;
};

}  // namespace sluice::mcpd
