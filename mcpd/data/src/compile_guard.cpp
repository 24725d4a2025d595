#include "compile_guard.h"

#include <sqlite3.h>

#include <algorithm>

namespace sluice::mcpd {
namespace {

// Reading the clock on every allocation would cost more than the
// allocation; compiling makes thousands a millisecond.
constexpr unsigned kCheckEvery = 64;

sqlite3_mem_methods g_base{};  // SQLite's own allocator, which does the work
thread_local CompileScope* t_scope = nullptr;

}  // namespace

struct CompileGuardAccess {
  // Charges `bytes` of growth to the scope, or refuses (and remembers why).
  static bool admit(CompileScope& s, std::int64_t bytes) {
    if (s.tripped_ != CompileScope::Tripped::no) return false;
    if (bytes > s.budget_) {
      s.tripped_ = CompileScope::Tripped::memory;
      return false;
    }
    if (--s.countdown_ == 0) {
      s.countdown_ = kCheckEvery;
      if (s.cancel_ && s.cancel_->load(std::memory_order_relaxed)) {
        s.tripped_ = CompileScope::Tripped::cancelled;
        return false;
      }
      if (std::chrono::steady_clock::now() >= s.deadline_) {
        s.tripped_ = CompileScope::Tripped::deadline;
        return false;
      }
    }
    s.budget_ -= bytes;
    return true;
  }
  static void release(CompileScope& s, std::int64_t bytes) { s.budget_ += bytes; }
  // Settles a difference after the fact: never refuses (the block exists).
  static void charge(CompileScope& s, std::int64_t bytes) { s.budget_ -= bytes; }
};

namespace {

void* guarded_malloc(int n) {
  CompileScope* s = t_scope;
  if (s && !CompileGuardAccess::admit(*s, n)) return nullptr;
  void* p = g_base.xMalloc(n);
  if (!s) return p;
  if (!p) {
    CompileGuardAccess::release(*s, n);
    return nullptr;
  }
  // Charged what the block really holds, as a free will release: the
  // budget must not creep up by the rounding of every allocation.
  CompileGuardAccess::charge(*s, static_cast<std::int64_t>(g_base.xSize(p)) - n);
  return p;
}

void guarded_free(void* p) {
  // Memory freed in a scope makes room in it, whoever allocated it: the
  // budget bounds what the thread's holdings grow by.
  if (CompileScope* s = t_scope; s && p) CompileGuardAccess::release(*s, g_base.xSize(p));
  g_base.xFree(p);
}

void* guarded_realloc(void* p, int n) {
  CompileScope* s = t_scope;
  if (!s) return g_base.xRealloc(p, n);
  const std::int64_t before = p ? g_base.xSize(p) : 0;
  const std::int64_t grows = static_cast<std::int64_t>(n) - before;
  if (grows > 0 && !CompileGuardAccess::admit(*s, grows)) return nullptr;
  void* q = g_base.xRealloc(p, n);
  if (!q) {
    if (grows > 0) CompileGuardAccess::release(*s, grows);
    return nullptr;
  }
  // Settled at what the block really holds now (see guarded_malloc).
  const std::int64_t grew = static_cast<std::int64_t>(g_base.xSize(q)) - before;
  CompileGuardAccess::charge(*s, grew - std::max<std::int64_t>(grows, 0));
  return q;
}

int guarded_size(void* p) { return g_base.xSize(p); }
int guarded_roundup(int n) { return g_base.xRoundup(n); }
int guarded_init(void* app) { return g_base.xInit(app); }
void guarded_shutdown(void* app) { g_base.xShutdown(app); }

bool install() {
  if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_base) != SQLITE_OK || !g_base.xMalloc) return false;
  sqlite3_mem_methods guard{guarded_malloc, guarded_free,  guarded_realloc,  guarded_size,
                            guarded_roundup, guarded_init, guarded_shutdown, g_base.pAppData};
  return sqlite3_config(SQLITE_CONFIG_MALLOC, &guard) == SQLITE_OK;
}

// Before main: SQLite accepts a new allocator only before it starts.
const bool g_installed = install();

}  // namespace

bool compile_guard_installed() { return g_installed; }

CompileScope::CompileScope(std::chrono::steady_clock::time_point deadline, const std::atomic<bool>* cancel,
                           std::size_t max_growth)
    : deadline_(deadline),
      cancel_(cancel),
      budget_(static_cast<std::int64_t>(max_growth)),
      countdown_(1),  // the first allocation looks at the clock: a deadline already past trips at once
      outer_(t_scope) {
  t_scope = this;
}

CompileScope::~CompileScope() { t_scope = outer_; }

}  // namespace sluice::mcpd
