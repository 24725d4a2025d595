#include "connection.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>

#include <sqlite3.h>

#include "compile_guard.h"
#include "functions.h"
#include "temp_files.h"
#include "values.h"
#include "watchdog.h"

namespace sluice::mcpd {
namespace {

using Kind = DataError::Kind;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kStatementCacheSize = 64;
// VM instructions between deadline checks: a clock read per ~10 µs of work.
constexpr int kProgressOps = 1000;
// What compiling one statement may add to SQLite's heap (schema included,
// on a connection's first statement). A tenant's largest real statements
// need well under a megabyte; SQLite's heap is every tenant's.
constexpr std::size_t kMaxCompileGrowth = std::size_t{64} << 20;
// What running one statement may add to SQLite's heap on its thread: the
// heap is every tenant's (and the audit log's), and a crafted SELECT of
// 2000 one-MiB expressions would hold 2 GB of it. Sorts and DISTINCT spill
// to the temporary-file budget, but each temporary b-tree keeps a page
// cache of about 2 MiB here first: room for a score of them.
constexpr std::size_t kMaxStepGrowth = std::size_t{64} << 20;
// A statement that holds more than this once compiled is run, not kept:
// the cache is bounded in count, and 64 statements of a crafted 30 MB
// each would hold the heap down for every tenant.
constexpr sqlite3_int64 kMaxCachedStatementBytes = 256 * 1024;
// Result column names are cut to this (SQLite copies whatever the
// statement says, 2000 times over) and count against the byte cap.
constexpr std::size_t kMaxColumnNameBytes = 256;
constexpr std::size_t kMaxClientMessage = 200;
constexpr char kNoSuchTable[] = "no such table: ";
constexpr char kNoSuchPragmaTable[] = "no such table: pragma_";

constexpr int kMaxValueBytes = 1 << 20;
constexpr int kMaxExprDepth = 100;
constexpr int kMaxCompoundSelect = 50;
constexpr int kMaxLikePattern = 1000;

// SQLite's message about a statement, as the audit log keeps it: its
// shape without the statement's words. The caller sees the message whole
// (its own SQL), but the log must not learn the arguments it keeps only as
// a digest, and a message quotes them: `unrecognized token: "'123-45-6789"`,
// `near "Smith": syntax error`, and with double-quoted strings off a
// literal in double quotes is a name: `no such column: John Smith`. SQLite
// quotes a token without escaping it (`near ""x"": syntax error`), so
// everything from the first quote to the last is one span, "…"; then what
// follows a leading "words: " goes too.
std::string message_shape(std::string_view m) {
  constexpr std::string_view kOpen = "\"'`[", kClose = "\"'`]";
  const std::size_t first = m.find_first_of(kOpen);
  std::string out(m.substr(0, first));
  if (first != std::string_view::npos) {
    const std::size_t last = m.find_last_of(kClose);
    out += "\"…\"";
    if (last != std::string_view::npos && last > first) out += m.substr(last + 1);
  }
  std::size_t words = 0;
  while (words < out.size() && ((out[words] >= 'a' && out[words] <= 'z') || out[words] == ' ' || out[words] == '_')) ++words;
  if (words > 0 && out.compare(words, 2, ": ") == 0) out = out.substr(0, words + 2) + "…";
  if (out.size() > 200) out.resize(200);  // a template's words, never the statement's
  return out;
}

// Whitespace, semicolons and comments: what may follow the one statement.
bool only_trivia(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';') {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      const std::size_t nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl + 1;
    } else if (s.substr(i, 2) == "/*") {
      // SQLite accepts an unterminated block comment at the end.
      const std::size_t end = s.find("*/", i + 2);
      i = end == std::string_view::npos ? s.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

std::string base_name(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

class Connection::Active {
 public:
  Active(sqlite3_stmt* stmt, bool owned) : stmt_(stmt), owned_(owned) {}
  Active(Active&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)), owned_(o.owned_) {}
  Active& operator=(Active&&) = delete;
  ~Active() {
    if (!stmt_) return;
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else {
      // Also drops the pointers to the caller's parameter strings.
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  [[nodiscard]] sqlite3_stmt* get() const { return stmt_; }
  void release_to_cache() { owned_ = false; }

 private:
  sqlite3_stmt* stmt_;
  bool owned_;
};

DataResult<std::unique_ptr<Connection>> Connection::open(const std::string& path, const QueryLimits& limits,
                                                         Clock::time_point deadline) {
  // Never create: a missing file is an error, reported without the path.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return data_error(err == ENOENT ? Kind::not_found : Kind::internal,
                      err == ENOENT ? "data source not found" : "data source could not be opened",
                      "stat " + path + ": " + std::strerror(err));
  }
  // SQLite here is built with SQLITE_USE_URI: a relative name such as
  // "file:x?mode=rwc" would be read as a URI. "./" makes it a plain name.
  const std::string name = path.starts_with('/') ? path : "./" + path;
  sqlite3* db = nullptr;
  // Temporary files (sorts, temporary tables) in memory, within the
  // budget: a tenant's rows never reach a disk through mcpd.
  const char* vfs = memory_temp_vfs();
  if (!vfs) return data_error(Kind::internal, "data source could not be opened", "temporary-file VFS not registered");
  if (!compile_guard_installed()) {
    return data_error(Kind::internal, "data source could not be opened", "SQLite started before the compile guard");
  }
  const int rc = sqlite3_open_v2(name.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, vfs);
  if (rc != SQLITE_OK) {
    std::string detail = "sqlite3_open_v2 " + path + ": " + sqlite3_errstr(rc);
    sqlite3_close(db);
    return data_error(Kind::internal, "data source could not be opened", std::move(detail));
  }
  std::unique_ptr<Connection> c(new Connection(db, limits, path));
  if (auto h = c->harden(deadline); !h) {
    DataError e = std::move(h.error());
    e.detail = path + ": " + e.detail;  // for the audit log and the operator only
    return tl::unexpected(std::move(e));
  }
  return c;
}

Connection::Connection(sqlite3* db, const QueryLimits& limits, std::string path)
    : db_(db), limits_(limits), path_(std::move(path)), temp_{limits.temp_budget}, cache_(kStatementCacheSize), stop_([this] {
        if (cancel_ && cancel_->load(std::memory_order_relaxed)) return true;
        return Clock::now() >= deadline_;
      }) {}

std::size_t Connection::schema_memory() const {
  int used = 0, highest = 0;
  // Unreadable counts as too much (fail closed).
  const std::size_t bytes =
      sqlite3_db_status(db_, SQLITE_DBSTATUS_SCHEMA_USED, &used, &highest, 0) != SQLITE_OK || used < 0
          ? SIZE_MAX
          : static_cast<std::size_t>(used);
  schema_seen_.store(bytes, std::memory_order_relaxed);
  return bytes;
}

DataResult<void> Connection::check_schema_memory() const {
  const std::size_t used = schema_memory();
  if (used > limits_.schema_memory) {
    return data_error(Kind::too_large, "the data source's schema is too large",
                      "its schema takes " + (used == SIZE_MAX ? std::string("an unknown amount") : std::to_string(used >> 20) + " MiB") +
                          " of memory per connection, over the " + std::to_string(limits_.schema_memory >> 20) +
                          " MiB limit ([query] schema_memory_mb, or less with many workers)");
  }
  return {};
}

void Connection::release_memory() {
  cache_.clear();
  sqlite3_db_release_memory(db_);
}

void Connection::set_names(std::shared_ptr<const Authorizer::NameSet> readable,
                           std::shared_ptr<const Authorizer::NameSet> hidden, std::uint64_t generation) {
  cache_.clear();
  auth_.set_names(std::move(readable), std::move(hidden));
  names_generation_ = generation;
}

Connection::~Connection() {
  cache_.clear();  // statements first: sqlite3_close refuses while any live
  sqlite3_close(db_);
}

DataResult<void> Connection::harden(Clock::time_point deadline) {
  sqlite3_extended_result_codes(db_, 1);
  // Before the authorizer, which refuses every pragma.
  if (char* err = nullptr; sqlite3_exec(db_, "PRAGMA query_only=1", nullptr, nullptr, &err)) {
    std::string detail = "query_only: " + std::string(err ? err : "");
    sqlite3_free(err);
    return data_error(Kind::internal, "data source could not be opened", std::move(detail));
  }
  const std::pair<int, int> configs[] = {
      {SQLITE_DBCONFIG_DEFENSIVE, 1},       {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0},
      {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0},  {SQLITE_DBCONFIG_ENABLE_TRIGGER, 0},
      {SQLITE_DBCONFIG_ENABLE_VIEW, 1},     {SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0},
      {SQLITE_DBCONFIG_DQS_DML, 0},         {SQLITE_DBCONFIG_DQS_DDL, 0},
  };
  for (const auto& [op, value] : configs) {
    // Fail closed: a setting that did not take means an unexpected SQLite.
    int now = -1;
    if (sqlite3_db_config(db_, op, value, &now) != SQLITE_OK || now != value) {
      return data_error(Kind::internal, "data source could not be opened",
                        "sqlite3_db_config " + std::to_string(op) + " did not apply");
    }
  }
  const auto clamp = [](std::size_t v) { return static_cast<int>(v < INT_MAX ? v : INT_MAX); };
  sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
  // No helper threads: a sort's files are opened on the statement's thread,
  // where its temporary-file budget is in scope (temp_files.h).
  sqlite3_limit(db_, SQLITE_LIMIT_WORKER_THREADS, 0);
  sqlite3_limit(db_, SQLITE_LIMIT_SQL_LENGTH, clamp(limits_.max_sql_bytes));
  sqlite3_limit(db_, SQLITE_LIMIT_VARIABLE_NUMBER, clamp(limits_.max_params));
  sqlite3_limit(db_, SQLITE_LIMIT_LENGTH, kMaxValueBytes);
  sqlite3_limit(db_, SQLITE_LIMIT_EXPR_DEPTH, kMaxExprDepth);
  sqlite3_limit(db_, SQLITE_LIMIT_COMPOUND_SELECT, kMaxCompoundSelect);
  sqlite3_limit(db_, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, kMaxLikePattern);
  // instr, replace, trim, like and glob that stop at the deadline too.
  if (!install_bounded_functions(db_, &stop_)) {
    return data_error(Kind::internal, "data source could not be opened", "bounded SQL functions not registered");
  }
  // A writer of the file (outside sluice) may hold a lock for a moment:
  // wait for it, but never past the statement's deadline.
  sqlite3_busy_handler(db_, &Connection::on_busy, this);
  // Never mcpd's own database, read through this connection's own file
  // descriptor: whatever the path led to when it was opened, this is what
  // the connection reads. Before the authorizer, which refuses pragmas; a
  // file that cannot be read fails here (closed).
  deadline_ = deadline;
  sqlite3_stmt* id = nullptr;
  const bool read = sqlite3_prepare_v2(db_, "PRAGMA main.application_id", -1, &id, nullptr) == SQLITE_OK &&
                    sqlite3_step(id) == SQLITE_ROW;
  const int application_id = read ? sqlite3_column_int(id, 0) : 0;
  sqlite3_finalize(id);
  if (!read) {
    // A loader's lock held past the deadline says nothing about the file.
    if ((sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY) {
      return data_error(Kind::timeout, "data source busy", std::string("application_id: ") + sqlite3_errmsg(db_));
    }
    return data_error(Kind::internal, "data source could not be opened",
                      std::string("application_id: ") + sqlite3_errmsg(db_));
  }
  if (application_id == kMcpdApplicationId) {
    return data_error(Kind::denied, "data source could not be opened", "the file is sluice-mcpd's own database");
  }
  // A lookup in the schema SQLite already holds while it compiles: no
  // statement runs (views are not tables to it, and their reads are
  // checked one by one anyway).
  auth_.set_table_exists([db = db_](const std::string& name) {
    return sqlite3_table_column_metadata(db, "main", name.c_str(), nullptr, nullptr, nullptr, nullptr, nullptr,
                                         nullptr) == SQLITE_OK;
  });
  sqlite3_set_authorizer(db_, &Authorizer::callback, &auth_);
  sqlite3_progress_handler(db_, kProgressOps, &Connection::on_progress, this);
  return {};
}

int Connection::on_progress(void* self) { return static_cast<Connection*>(self)->stop_() ? 1 : 0; }

int Connection::on_busy(void* self, int /*count*/) {
  const auto left = static_cast<Connection*>(self)->deadline_ - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  std::this_thread::sleep_for(std::min<Clock::duration>(left, std::chrono::milliseconds(1)));
  return 1;
}

RunOptions Connection::user_options() const {
  return RunOptions{Authorizer::Mode::user, limits_.timeout, limits_.max_rows,
                    limits_.max_result_bytes, true};
}

DataResult<QueryResult> Connection::run(std::string_view sql,
                                        const std::vector<nlohmann::json>& params,
                                        const RunOptions& o) {
  if (sql.size() > limits_.max_sql_bytes || sql.size() > INT_MAX) {
    return data_error(Kind::too_large, "the statement exceeds " +
                                           std::to_string(limits_.max_sql_bytes) + " bytes");
  }
  if (sql.find('\0') != std::string_view::npos) {
    return data_error(Kind::invalid_sql, "the statement contains a NUL byte");
  }
  if (params.size() > limits_.max_params) {
    return data_error(Kind::too_large,
                      "more than " + std::to_string(limits_.max_params) + " parameters");
  }
  const ModeScope scope(auth_, o.mode);
  deadline_ = Clock::now() + o.timeout;  // locks, compilation and steps alike
  temp_.exceeded = false;
  temp_.process_full = false;
  const TempScope temp(&temp_);
  cancel_ = CancelScope::current();
  struct Forget {
    const std::atomic<bool>*& flag;
    ~Forget() { flag = nullptr; }
  } forget{cancel_};
  // Past the deadline or cancelled, interrupted even inside an instruction
  // that never calls back (watchdog.h); armed before the statement is
  // taken, so disarmed only once it is reset.
  const auto armed = watch_.arm(deadline_, cancel_);
  auto active = prepare(sql, o.cache && o.mode == Authorizer::Mode::user);
  if (!active) return tl::unexpected(std::move(active.error()));
  if (auto b = bind_params(active->get(), params); !b) return tl::unexpected(std::move(b.error()));
  return collect(active->get(), o);
}

DataResult<void> Connection::check(std::string_view sql, std::size_t params,
                                   std::optional<std::chrono::milliseconds> timeout) {
  const ModeScope scope(auth_, Authorizer::Mode::user);
  deadline_ = Clock::now() + timeout.value_or(limits_.timeout);
  auto active = prepare(sql, false);
  if (!active) return tl::unexpected(std::move(active.error()));
  if (auto p = positional_only(active->get()); !p) return p;  // as run() will require
  const int declared = sqlite3_bind_parameter_count(active->get());
  if (declared < 0 || static_cast<std::size_t>(declared) != params) {
    return data_error(Kind::invalid_sql, "the statement takes " + std::to_string(declared) +
                                             " parameters, " + std::to_string(params) + " declared");
  }
  return {};
}

DataResult<Connection::Active> Connection::prepare(std::string_view sql, bool cache) {
  if (cache) {
    if (sqlite3_stmt* s = cache_.find(sql)) return Active(s, false);
  }
  auth_.clear_denial();
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  const unsigned flags = SQLITE_PREPARE_NO_VTAB | (cache ? SQLITE_PREPARE_PERSISTENT : 0);
  CompileScope::Tripped tripped;
  int rc;
  {
    // The progress handler is not called while compiling: the deadline,
    // the cancellation and a memory bound reach it through the allocator.
    const CompileScope scope(deadline_, cancel_, kMaxCompileGrowth);
    rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &stmt, &tail);
    tripped = scope.tripped();
  }
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    switch (tripped) {
      case CompileScope::Tripped::no: break;
      case CompileScope::Tripped::deadline:
        return data_error(Kind::timeout, "query exceeded the time limit", "compiling the statement passed the deadline");
      case CompileScope::Tripped::cancelled:
        return data_error(Kind::cancelled, "the request was cancelled", "cancelled by the client while compiling");
      case CompileScope::Tripped::memory:
        return data_error(Kind::too_large, "the statement needs too much memory to compile",
                          "compiling took more than " + std::to_string(kMaxCompileGrowth >> 20) + " MiB");
    }
    return tl::unexpected(failure(rc));
  }
  if (!stmt) return data_error(Kind::invalid_sql, "the statement is empty");
  Active active(stmt, true);
  if (!only_trivia(sql.substr(static_cast<std::size_t>(tail - sql.data())))) {
    return data_error(Kind::invalid_sql, "exactly one statement is allowed");
  }
  // The authorizer has no action code for everything (VACUUM INTO writes a
  // new file without asking it); SQLite's own verdict covers the rest.
  if (!sqlite3_stmt_readonly(stmt)) {
    return data_error(Kind::denied, "statement not permitted", "denied: not read-only");
  }
  // EXPLAIN lists the program SQLite compiled, views expanded: a view's
  // literals and the names of what it reads, which clients never see
  // otherwise. EXPLAIN QUERY PLAN names indexes and hidden tables alike.
  if (sqlite3_stmt_isexplain(stmt) != 0) {
    return data_error(Kind::denied, "statement not permitted", "denied: EXPLAIN");
  }
  if (cache && sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_MEMUSED, 0) <= kMaxCachedStatementBytes) {
    cache_.insert(std::string(sql), stmt);
    active.release_to_cache();
  }
  return active;
}

DataResult<QueryResult> Connection::collect(sqlite3_stmt* stmt, const RunOptions& o) {
  QueryResult r;
  const int n = sqlite3_column_count(stmt);
  r.columns.reserve(static_cast<std::size_t>(n));
  std::size_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    const char* name = sqlite3_column_name(stmt, i);
    std::string_view raw(name ? name : "");
    r.columns.push_back(valid_utf8(raw.substr(0, kMaxColumnNameBytes)));
    bytes += r.columns.back().size();
  }
  if (bytes > o.max_bytes) {
    return data_error(Kind::too_large, "the result's column names exceed the size limit");
  }
  auth_.clear_denial();  // a step may recompile after a schema change
  // The steps' growth of SQLite's heap, bounded (and the deadline and the
  // cancellation reach allocations too, as when compiling).
  const CompileScope scope(deadline_, cancel_, kMaxStepGrowth);
  // Once the scope refused an allocation, the result is not trusted, even
  // if SQLite went on (some allocations it may do without, and a value read
  // after it could come back empty): the refusal is the answer.
  const auto refused = [&]() -> std::optional<DataError> {
    switch (scope.tripped()) {
      case CompileScope::Tripped::memory:
        return DataError{Kind::too_large, kTooMuchMemory,
                         "running took more than " + std::to_string(kMaxStepGrowth >> 20) + " MiB of SQLite's heap"};
      case CompileScope::Tripped::deadline:
        return DataError{Kind::timeout, "query exceeded the time limit", "an allocation passed the deadline"};
      case CompileScope::Tripped::cancelled:
        return DataError{Kind::cancelled, "the request was cancelled", "cancelled by the client"};
      case CompileScope::Tripped::no: break;
    }
    return std::nullopt;
  };
  while (true) {
    const int rc = sqlite3_step(stmt);
    if (auto e = refused()) return tl::unexpected(std::move(*e));
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return tl::unexpected(failure(rc));
    // One row past the cap tells a complete result from a truncated one.
    if (r.rows.size() >= o.max_rows) {
      r.truncated = true;
      break;
    }
    nlohmann::json row = nlohmann::json::array();
    row.get_ref<nlohmann::json::array_t&>().reserve(static_cast<std::size_t>(n));
    std::size_t row_bytes = 0;
    bool fits = true;
    for (int i = 0; i < n && fits; ++i) {
      // Known too big before a byte of it is copied: SQLite may hold a
      // row of 2000 one-MiB values; this side never copies past the cap.
      fits = bytes + row_bytes + cell_floor(stmt, i) <= o.max_bytes;
      if (fits) row.push_back(cell_to_json(stmt, i, row_bytes));
    }
    if (!fits || bytes + row_bytes > o.max_bytes) {
      r.truncated = true;
      break;
    }
    if (auto e = refused()) return tl::unexpected(std::move(*e));  // while reading its values
    bytes += row_bytes;
    r.rows.push_back(std::move(row));
  }
  return r;
}

DataError Connection::failure(int rc) const {
  const int primary = rc & 0xff;
  const char* raw = sqlite3_errmsg(db_);
  std::string detail = std::string(sqlite3_errstr(primary)) + ": " + (raw ? raw : "");
  if (!auth_.denial().empty() || primary == SQLITE_AUTH) {
    return DataError{Kind::denied, "statement not permitted",
                     auth_.denial().empty() ? "denied: " + detail : auth_.denial()};
  }
  switch (primary) {
    case SQLITE_INTERRUPT:
      if (cancel_ && cancel_->load(std::memory_order_relaxed)) {
        return DataError{Kind::cancelled, "the request was cancelled", "cancelled by the client"};
      }
      return DataError{Kind::timeout, "query exceeded the time limit",
                       "interrupted at the deadline"};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return DataError{Kind::timeout, "data source busy", std::move(detail)};
    case SQLITE_FULL:
      // A temporary file past the budget (temp_files.h); nothing else is written.
      if (temp_.process_full && !temp_.exceeded) {
        // Other statements' files fill the process's cap: a moment's, not this query's size.
        return DataError{Kind::timeout, kTempStorageBusy, "temporary files of all statements at the process's cap"};
      }
      if (temp_.exceeded) {
        return DataError{Kind::too_large, kTooMuchMemory,
                         "temporary files past the budget of " + std::to_string(limits_.temp_budget >> 20) + " MiB"};
      }
      return DataError{Kind::internal, "data source error", std::move(detail)};
    case SQLITE_TOOBIG:
      return DataError{Kind::too_large, "a value or the statement exceeds the size limit",
                       std::move(detail)};
    case SQLITE_READONLY:
      return DataError{Kind::denied, "statement not permitted", "denied: " + detail};
    case SQLITE_ERROR:
      // Under NO_VTAB a pragma table-valued function is "no such table";
      // it is a pragma, and refused as one.
      if (raw && ascii_lower(raw).starts_with(kNoSuchPragmaTable)) {
        return DataError{Kind::denied, "statement not permitted",
                         "denied: PRAGMA function " +
                             client_message(raw + std::strlen(kNoSuchTable))};
      }
      [[fallthrough]];
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      // The statement's own fault: syntax, unknown names, overflow. Useful
      // to the caller; to the log only its shape (message_shape).
      return DataError{Kind::invalid_sql, client_message(raw),
                       std::string(sqlite3_errstr(primary)) + ": " + message_shape(raw ? raw : "")};
    case SQLITE_NOMEM:
      return DataError{Kind::internal, "out of memory", std::move(detail)};
    default:
      // Corrupt file, I/O error, not a database: nothing the client did.
      return DataError{Kind::internal, "data source error", std::move(detail)};
  }
}

std::string Connection::client_message(const char* sqlite_message) const {
  std::string m = sqlite_message ? sqlite_message : "";
  // Messages that only echo a name or a token pass as they are, whatever
  // that name is: were they hidden when it happens to be the file's name
  // or path, a guess ("bank"."db") would be confirmed by the answer
  // changing. The name is the statement's, or that of a view or trigger
  // in the tenant's own file (which its loader wrote, path and all). Any
  // other message naming the file is hidden.
  static constexpr std::string_view kEchoes[] = {
      "no such table: ", "no such column: ", "no such function: ", "near \"", "unrecognized token: ",
      "ambiguous column name: ", "no such collation sequence: ", "wrong number of arguments to function ",
      "no such index: "};
  const bool echo = std::any_of(std::begin(kEchoes), std::end(kEchoes),
                                [&](std::string_view p) { return std::string_view(m).starts_with(p); });
  const std::string base = base_name(path_);
  if (!echo && (m.find(path_) != std::string::npos || (base.size() >= 4 && m.find(base) != std::string::npos))) {
    return "data source error";
  }
  // Bounds the echo of a long offending token.
  if (m.size() > kMaxClientMessage) m = m.substr(0, kMaxClientMessage) + "...";
  return valid_utf8(m);
}

}  // namespace sluice::mcpd
