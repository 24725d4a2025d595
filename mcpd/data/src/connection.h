// One hardened, read-only SQLite connection to a tenant's file, used by one
// thread at a time (SQLITE_OPEN_NOMUTEX): SqliteSource pools them.
//
// Hardening, applied before any statement: query_only; DEFENSIVE; no
// extension loading; untrusted schema (views and defaults may only use
// innocuous functions); no triggers; no double-quoted string literals (an
// unknown "name" is an error, not a string); tight limits (no ATTACH, SQL
// length, parameters, value length, expression depth, compound SELECTs,
// LIKE pattern length); the authorizer; a progress handler that interrupts
// a statement at its deadline. Statements are compiled with
// SQLITE_PREPARE_NO_VTAB: no virtual-table module (pragma_*, dbstat,
// json_each, or one the tenant's schema declares) runs for any of them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "authorizer.h"
#include "result.h"
#include "sqlite_source.h"
#include "statement_cache.h"
#include "temp_files.h"
#include "watchdog.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sluice::mcpd {

struct RunOptions {
  Authorizer::Mode mode = Authorizer::Mode::user;
  std::chrono::microseconds timeout{2000000};
  std::size_t max_rows = 1000;
  std::size_t max_bytes = 4 << 20;
  // Only user-mode statements are ever cached (statement_cache.h).
  bool cache = true;
};

// The message of a statement refused for its temporary files (temp_files.h).
inline constexpr char kTooMuchMemory[] = "query needs too much memory";
// ... and of one refused because other statements' files fill the process's cap.
inline constexpr char kTempStorageBusy[] = "server busy: temporary storage full, try again";

class Connection {
 public:
  // Opens and hardens a connection; reading the file's header (its
  // application_id) waits for a writer's lock until `deadline`.
  [[nodiscard]] static DataResult<std::unique_ptr<Connection>> open(const std::string& path,
                                                                    const QueryLimits& limits,
                                                                    std::chrono::steady_clock::time_point deadline);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The tables and views user statements may read, and the rest, from
  // the schema snapshot numbered `generation`. Cached statements were
  // authorized against the names before: they are dropped.
  void set_names(std::shared_ptr<const Authorizer::NameSet> readable,
                 std::shared_ptr<const Authorizer::NameSet> hidden, std::uint64_t generation = 0);
  [[nodiscard]] std::uint64_t names_generation() const { return names_generation_; }

  // Gives back what the connection holds while idle: its compiled
  // statements and its page cache (SQLite's heap is every tenant's).
  void release_memory();

  // Fails when the file's parsed schema, which every connection keeps in
  // SQLite's heap (shared by all tenants) while it is open, takes more
  // than QueryLimits::schema_memory: a file of a few MB can hold triggers,
  // views or CHECK expressions that parse into hundreds of MiB.
  [[nodiscard]] DataResult<void> check_schema_memory() const;
  // What the parsed schema takes now (bytes; a walk of the whole schema),
  // kept as schema_seen().
  [[nodiscard]] std::size_t schema_memory() const;
  // What schema_memory() found last (0 before it was called); any thread.
  [[nodiscard]] std::size_t schema_seen() const { return schema_seen_.load(std::memory_order_relaxed); }

  // The file this connection reads (through its descriptor; temp_files.h
  // opened_main_file), or nothing (fail closed).
  [[nodiscard]] std::optional<FileId> file_identity() const { return opened_main_file(db_); }

  // Compiles (or reuses) exactly one read-only statement, binds `params`
  // and reads its rows within the options' deadline and caps.
  [[nodiscard]] DataResult<QueryResult> run(std::string_view sql,
                                            const std::vector<nlohmann::json>& params,
                                            const RunOptions& o);

  // Compiles `sql` as a user statement, without running or caching it;
  // it must take exactly `params` `?` parameters. Waiting for a writer's
  // lock at most `timeout` (default: the query timeout).
  [[nodiscard]] DataResult<void> check(std::string_view sql, std::size_t params,
                                       std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // Options for a user query under the connection's limits.
  [[nodiscard]] RunOptions user_options() const;

 private:
  // A statement in use: reset and unbound (cached) or finalized (not
  // cached) when the run ends, on every path.
  class Active;

  Connection(sqlite3* db, const QueryLimits& limits, std::string path);
  [[nodiscard]] DataResult<void> harden(std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] DataResult<Active> prepare(std::string_view sql, bool cache);
  [[nodiscard]] DataResult<QueryResult> collect(sqlite3_stmt* stmt, const RunOptions& o);
  // Classifies a failed prepare or step into what the client may see.
  [[nodiscard]] DataError failure(int rc) const;
  [[nodiscard]] std::string client_message(const char* sqlite_message) const;
  static int on_progress(void* self);
  static int on_busy(void* self, int count);

  sqlite3* db_;
  const QueryLimits limits_;
  const std::string path_;  // to keep it out of client messages
  Authorizer auth_;
  TempBudget temp_;  // the temporary files of the statement running (outlives sqlite3_close in the destructor)
  std::uint64_t names_generation_ = 0;
  mutable std::atomic<std::size_t> schema_seen_{0};
  StatementCache cache_;
  std::chrono::steady_clock::time_point deadline_;
  const std::atomic<bool>* cancel_ = nullptr;  // the caller's, during run()
  // Whether the running statement must end now (cancelled, or past its
  // deadline): the progress handler and the bounded functions ask it.
  std::function<bool()> stop_;
  Watchdog::Watch watch_{db_};
};

}  // namespace sluice::mcpd
