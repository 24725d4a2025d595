// Bounds what compiling one statement may cost.
//
// SQLite calls no progress handler while it prepares a statement, so
// neither the query's deadline nor a client's cancellation reaches it
// there, and some short statements cost exponential time and memory to
// compile: a chain of common table expressions, each naming the one
// before twice, is copied at every mention (17 levels: about 30 s and
// 0.3 GB, then an error). A worker held that long is every tenant's
// worker, and SQLite's heap is every tenant's heap.
//
// So every allocation SQLite makes goes through this guard (installed as
// SQLite's allocator before SQLite starts). On a thread inside a
// CompileScope an allocation fails once the scope's deadline has passed,
// its cancellation flag is set, or what the thread holds has grown by more
// than the scope's budget; the prepare fails with it (SQLITE_NOMEM, which
// SQLite handles on every path and after which the connection is usable).
// Elsewhere the guard only forwards to SQLite's own allocator.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace sluice::mcpd {

// Whether the guard is SQLite's allocator in this process. Installed by a
// static initialiser, before any code can start SQLite; false only if
// something started SQLite first. Connections refuse to open without it.
[[nodiscard]] bool compile_guard_installed();

class CompileScope {
 public:
  enum class Tripped { no, deadline, cancelled, memory };

  CompileScope(std::chrono::steady_clock::time_point deadline, const std::atomic<bool>* cancel,
               std::size_t max_growth);
  ~CompileScope();
  CompileScope(const CompileScope&) = delete;
  CompileScope& operator=(const CompileScope&) = delete;

  // Why an allocation in the scope was refused, if one was.
  [[nodiscard]] Tripped tripped() const { return tripped_; }

 private:
  friend struct CompileGuardAccess;
  std::chrono::steady_clock::time_point deadline_;
  const std::atomic<bool>* cancel_;
  std::int64_t budget_;      // bytes the thread's holdings may still grow by
  unsigned countdown_;       // allocations until the clock is read again
  Tripped tripped_ = Tripped::no;
  CompileScope* outer_;
};

}  // namespace sluice::mcpd
