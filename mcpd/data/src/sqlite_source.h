// A tenant's read-only SQLite data source.
//
// Read-only is enforced in layers, each sufficient for writes on its own:
// the file is opened SQLITE_OPEN_READONLY, the connection is `query_only`
// and DEFENSIVE, and an authorizer (authorizer.h) allows nothing but SELECTs
// that read the tenant's tables and views and call allowlisted pure
// functions. A statement must also be a single statement that SQLite
// reports as read-only. Every query runs under a deadline, a row cap and a
// result-size cap.
//
// Thread safety: all methods are const and may be called from any number of
// threads. Queries run on a small pool of connections; each connection is
// used by one thread at a time and keeps a cache of prepared statements.
//
// entities(), describe() and the set of tables a query may read all come
// from a snapshot of the schema, read at open() and read again when the
// file's schema_version has moved: looked at, at most once per
// `schema_check_interval`, by entities(), describe(), and by a query the
// authorizer refused (which then runs once more if the schema changed). A
// table created since the snapshot is denied until then (fail closed), and
// each connection takes up a new snapshot when next handed out.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "result.h"
#include "temp_files.h"

namespace sluice::mcpd {

class Connection;

struct QueryLimits {
  std::size_t max_rows = 1000;
  std::chrono::milliseconds timeout{2000};
  // An entity's statistics, per statement (the first describe of a big
  // table reads it whole).
  std::chrono::milliseconds stats_timeout{10000};
  // The rows as written into an answer (values.h, cell_to_json).
  std::size_t max_result_bytes = 4 << 20;
  std::size_t max_sql_bytes = 64 << 10;
  std::size_t max_params = 32;
  std::size_t pool = 4;  // connections
  // The bytes of temporary files (in memory: temp_files.h) one statement
  // may hold: sort runs and temporary tables. Past it the query fails
  // (too_large).
  std::size_t temp_budget = std::size_t{256} << 20;
  // The memory the file's parsed schema may take, per connection
  // (Connection::check_schema_memory); a file over it is not served.
  std::size_t schema_memory = std::size_t{16} << 20;
  // How often, at most, the file's schema is looked at for changes.
  std::chrono::milliseconds schema_check_interval{1000};
  // Statistics older than this are computed again (rows change).
  std::chrono::milliseconds stats_max_age{std::chrono::minutes(10)};
};

// The application_id that sluice-mcpd's own database carries ("Slmd"):
// a data source with it is refused, checked through each connection's own
// file (no rename race can slip mcpd's database, with its audit log and
// key hashes, under a tenant's path).
inline constexpr std::int32_t kMcpdApplicationId = 0x536C6D64;

// Cells are JSON: null, integer, float, string (invalid UTF-8 replaced by
// U+FFFD) or, for a BLOB, {"$blob_base64": "<RFC 4648 base64>"}.
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<nlohmann::json> rows;  // each row a JSON array, one cell per column
  bool truncated = false;            // max_rows or max_result_bytes was reached
};

struct Column {
  std::string name;
  std::string type;  // declared type, as written ("" when none)
  bool not_null = false;
  bool primary_key = false;
  bool operator==(const Column&) const = default;
};

struct EntityInfo {
  std::string name;
  std::string kind;  // "table" | "view"
  std::vector<Column> columns;
  // The CREATE statement (never shown to clients: a view's may name what
  // it hides), telling one entity from another of the same name and columns.
  std::string definition;
  bool operator==(const EntityInfo&) const = default;
};

// Statistics never carry a cell value, a minimum or a maximum.
struct ColumnStats {
  Column column;
  double null_fraction = 0;  // 0 for an empty entity
  std::int64_t distinct_count = 0;
};

struct EntityStats {
  EntityInfo info;
  std::int64_t row_count = 0;  // always exact
  std::vector<ColumnStats> columns;
  // True when row_count exceeds kStatsSampleRows: null fractions and
  // distinct counts then describe the first kStatsSampleRows rows in scan
  // (rowid) order, and distinct counts are lower bounds.
  bool approximate = false;
};

// Rows read, at most, to compute per-column statistics.
inline constexpr std::int64_t kStatsSampleRows = 200'000;

// The caller's cancellation, for the length of its scope on this thread:
// a query running meanwhile stops at its next progress check once `flag`
// turns true (kind cancelled).
class CancelScope {
 public:
  explicit CancelScope(const std::atomic<bool>* flag);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  // The flag in scope on this thread, if any.
  static const std::atomic<bool>* current();

 private:
  const std::atomic<bool>* outer_;
};

class SqliteSource {
 public:
  // Opens an existing SQLite file read-only (never creates one) with
  // `limits.pool` connections and reads its schema.
  [[nodiscard]] static DataResult<std::unique_ptr<SqliteSource>> open(const std::string& path,
                                                                      const QueryLimits& limits);
  ~SqliteSource();
  SqliteSource(const SqliteSource&) = delete;
  SqliteSource& operator=(const SqliteSource&) = delete;

  // Runs exactly one read-only statement with `?` parameters bound in order.
  // Parameters are JSON null, booleans (bound as 0/1), integers, floats or
  // strings; never spliced into the SQL.
  [[nodiscard]] DataResult<QueryResult> query(std::string_view sql,
                                              const std::vector<nlohmann::json>& params) const;

  // Whether `sql` would be accepted by query() with `params` parameters,
  // without running it (saved queries are checked when stored).
  [[nodiscard]] DataResult<void> check(std::string_view sql, std::size_t params) const;

  // Tables and views of the schema snapshot (never sqlite_* or virtual
  // tables), sorted by name.
  [[nodiscard]] DataResult<std::vector<EntityInfo>> entities() const;

  // Schema and statistics of one entity, computed once and cached. The name
  // must be that of an entity (ASCII case-insensitive), else not_found.
  [[nodiscard]] DataResult<EntityStats> describe(const std::string& entity) const;

  [[nodiscard]] const QueryLimits& limits() const { return limits_; }

  // Gives back the memory of the connections idle now: their page caches
  // and compiled statements (a source nobody has used for a while should
  // not hold SQLite's heap, which is every tenant's). Statistics and the
  // schema snapshot are kept.
  void release_memory() const;
  // Measures the parsed schema of the connections idle now (the largest
  // stands for all: each parses the same file) and retires the source if
  // it is over QueryLimits::schema_memory: a schema grown in place since
  // the last call's look is found without another call.
  void measure_schema() const;

  // What the path the source was opened from names, as last seen: the
  // file the connections read, another (a new export renamed over it), or
  // none (deleted). The connections go on reading the one they opened;
  // only a new SqliteSource reads another. Looked at (a stat) at most once
  // per schema_check_interval; cheap otherwise. Also none once the file's
  // schema changed in place to one over QueryLimits::schema_memory
  // (retired()): the source must go, its connections with it.
  enum class PathState { same, other, none };
  [[nodiscard]] PathState path_state() const;
  // Whether a schema change made the file's schema too large to serve:
  // every connection parses it again, so only closing them gives the
  // memory back.
  [[nodiscard]] bool retired() const { return retired_.load(std::memory_order_acquire); }
  // Retires the source from outside (its owner's budget of all sources'
  // schemas is spent).
  void retire() const { retired_.store(true, std::memory_order_release); }
  // What the file's parsed schema takes in SQLite's heap: the largest
  // last measured on any connection (at open, by the once-a-second look of
  // a call, by measure_schema), times the connections, each of which holds
  // a copy once it has read the file since.
  [[nodiscard]] std::size_t schema_footprint() const;

  using FileId = mcpd::FileId;
  // The regular file an absolute, lexically normal `path` names within
  // its own directory: every directory on the way a real one (no link),
  // and the file the path itself, or where links there lead while every
  // link names a file beside it (a target without a slash; at most 8). {}
  // if none, if anything on the way is a link that leads elsewhere, or if
  // the file has other names while the kernel lets anyone make hard links
  // (fs.protected_hardlinks off).
  [[nodiscard]] static FileId file_within_directory(const std::string& path);
  // Whether every directory of an absolute, lexically normal `path` is a
  // real one (no link), whether or not its file exists.
  [[nodiscard]] static bool directory_is_real(const std::string& path);
  // The file every pooled connection reads (each by its descriptor).
  [[nodiscard]] FileId file() const { return file_; }

 private:
  // Hands out one idle connection and takes it back when destroyed.
  class Lease;

  // One reading of the schema; never changed once made.
  struct Snapshot;
  using Clock = std::chrono::steady_clock;

  SqliteSource(QueryLimits limits, std::vector<std::unique_ptr<Connection>> pool,
               std::shared_ptr<const Snapshot> snapshot, std::string path, FileId file);
  // An idle connection, holding the current snapshot's names; without
  // `wait`, only if one is idle now.
  [[nodiscard]] DataResult<Lease> acquire(bool wait = true) const;
  [[nodiscard]] std::shared_ptr<const Snapshot> current() const;
  // The file at `path` now (followed through links); {} if none.
  [[nodiscard]] static FileId file_at(const std::string& path);
  // The current snapshot, read again first if the schema changed (looked
  // at no more often than schema_check_interval; never waits for another
  // thread looking).
  [[nodiscard]] std::shared_ptr<const Snapshot> refreshed() const;
  [[nodiscard]] DataResult<EntityStats> describe_uncached(const EntityInfo& info) const;
  // f(connection) on a leased connection; once more if the authorizer
  // refused it and the schema has changed since.
  template <class T, class F>
  [[nodiscard]] DataResult<T> authorized(F&& f) const;

  const QueryLimits limits_;
  const std::vector<std::unique_ptr<Connection>> pool_;
  const std::string path_;
  const FileId file_;  // what every connection reads, and the path named when they opened
  mutable std::atomic<Clock::rep> path_checked_;  // when path_state() last looked
  mutable std::atomic<PathState> path_state_{PathState::same};
  mutable std::atomic<bool> retired_{false};
  mutable std::atomic<Clock::rep> schema_memory_checked_;  // when a call last looked at the schema's size
  // Whether a look timed by `last_look` is due (once per
  // schema_check_interval, for one caller): then it is taken.
  [[nodiscard]] bool due(std::atomic<Clock::rep>& last_look) const;
  // Retires the source (retired()) if `c`'s parsed schema is over the limit.
  void retire_if_oversized(Connection& c) const;

  mutable std::mutex pool_mu_;
  mutable std::condition_variable pool_cv_;
  mutable std::vector<Connection*> idle_;

  mutable std::mutex snapshot_mu_;
  mutable std::shared_ptr<const Snapshot> snapshot_;
  mutable std::atomic<std::uint64_t> generation_{1};  // snapshot_'s, read without the lock
  mutable std::mutex refresh_mu_;
  mutable Clock::time_point checked_at_;  // under refresh_mu_

  // Statistics are computed one entity at a time (they are expensive, and a
  // burst of describe() calls must not occupy the whole pool; a caller
  // waits for its turn no longer than a query may run) and kept for
  // stats_max_age, while the entity stays as it was (its statistics say
  // which it was: stats.info).
  struct CachedStats {
    Clock::time_point at;
    EntityStats stats;
  };
  mutable std::timed_mutex stats_compute_mu_;
  mutable std::mutex stats_mu_;
  mutable std::map<std::string, CachedStats, std::less<>> stats_;
  // Statistics that could not be computed in time or within the
  // temporary-storage budget, and when: asked again within
  // kStatsRetryAfter, the same answer, not another 10 s of a worker.
  mutable std::map<std::string, std::pair<DataError, Clock::time_point>, std::less<>> stats_failed_;
};

// The wire form of the public types.
void to_json(nlohmann::json& j, const Column& c);
void to_json(nlohmann::json& j, const EntityInfo& e);
void to_json(nlohmann::json& j, const ColumnStats& c);
void to_json(nlohmann::json& j, const EntityStats& s);
void to_json(nlohmann::json& j, const QueryResult& r);

}  // namespace sluice::mcpd
