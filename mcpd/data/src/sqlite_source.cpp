#include "sqlite_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <exception>
#include <string_view>
#include <utility>

#include "connection.h"
#include "schema.h"
#include "values.h"

namespace sluice::mcpd {
namespace {

using Kind = DataError::Kind;
using Json = nlohmann::json;

constexpr std::size_t kMaxPool = 64;
constexpr std::size_t kMinSqlBytes = 1024;

// No exception leaves the data layer: the likely ones (bad_alloc, a
// system_error from a mutex) become an internal error at the API boundary.
template <class F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return data_error(Kind::internal, "internal error", e.what());
  }
}

DataResult<void> check_limits(const QueryLimits& l) {
  if (l.pool == 0 || l.pool > kMaxPool || l.max_rows == 0 || l.timeout.count() <= 0 ||
      l.max_result_bytes == 0 || l.max_sql_bytes < kMinSqlBytes || l.max_params == 0 || l.temp_budget == 0 ||
      l.schema_memory == 0) {
    return data_error(Kind::internal, "invalid query limits",
                      "pool 1-64, max_rows/max_result_bytes/max_params/temp_budget/schema_memory >= 1, timeout > 0, "
                      "max_sql_bytes >= 1024");
  }
  return {};
}

}  // namespace

struct SqliteSource::Snapshot {
  std::uint64_t generation = 1;
  std::int64_t version = 0;                  // the file's schema_version when read
  std::vector<EntityInfo> entities;          // sorted by name
  std::shared_ptr<const Authorizer::NameSet> readable, hidden;
};

class SqliteSource::Lease {
 public:
  Lease(const SqliteSource* source, Connection* conn) : source_(source), conn_(conn) {}
  Lease(Lease&& o) noexcept
      : source_(std::exchange(o.source_, nullptr)), conn_(std::exchange(o.conn_, nullptr)) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (!source_) return;
    {
      const std::lock_guard lock(source_->pool_mu_);
      source_->idle_.push_back(conn_);
    }
    source_->pool_cv_.notify_one();
  }
  Connection* operator->() const { return conn_; }
  Connection& operator*() const { return *conn_; }

 private:
  const SqliteSource* source_;
  Connection* conn_;
};

DataResult<std::unique_ptr<SqliteSource>> SqliteSource::open(const std::string& path,
                                                             const QueryLimits& limits) {
  return guarded([&]() -> DataResult<std::unique_ptr<SqliteSource>> {
    if (auto ok = check_limits(limits); !ok) return tl::unexpected(ok.error());
    // Every connection on the same file, the one the path names before and
    // after they are opened: each connection's own descriptor is looked at
    // (a path swapped to another file and back while they opened would
    // pass two looks at the path alone); else again. All of it within one
    // query timeout, however many connections read the header of a file a
    // loader keeps locked.
    const auto deadline = Clock::now() + limits.timeout;
    FileId file;
    std::vector<std::unique_ptr<Connection>> pool;
    for (int attempt = 0;; ++attempt) {
      file = file_at(path);
      pool.clear();
      bool same = file != FileId{};
      for (std::size_t i = 0; i < limits.pool; ++i) {
        auto c = Connection::open(path, limits, deadline);
        if (!c) return tl::unexpected(std::move(c.error()));
        const auto opened = (*c)->file_identity();
        if (!opened) return data_error(Kind::internal, "data source could not be opened", "the opened file of " + path + " cannot be identified");
        same = same && *opened == file;
        pool.push_back(std::move(*c));
      }
      if (same && file_at(path) == file) break;
      if (attempt == 2) {
        return data_error(Kind::timeout, "data source busy", "the file at " + path + " kept changing while opened");
      }
    }
    // The first read of the file: a file that is not a database fails here.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    auto schema = left.count() > 0 ? load_schema(*pool.front(), left)
                                   : data_error(Kind::timeout, "data source busy", "opening took longer than the query timeout");
    if (!schema) {
      DataError e = std::move(schema.error());
      if (e.kind != Kind::timeout) e.message = "data source could not be opened";
      e.detail = "reading the schema of " + path + ": " + e.detail;
      return tl::unexpected(std::move(e));
    }
    auto snapshot = std::make_shared<Snapshot>(
        Snapshot{1, schema->version, std::move(schema->entities), schema->readable, schema->hidden});
    for (auto& c : pool) c->set_names(snapshot->readable, snapshot->hidden, snapshot->generation);
    // (The first connection's schema, measured by load_schema, stands for all.)
    return std::unique_ptr<SqliteSource>(new SqliteSource(limits, std::move(pool), std::move(snapshot), path, file));
  });
}

SqliteSource::SqliteSource(QueryLimits limits, std::vector<std::unique_ptr<Connection>> pool,
                           std::shared_ptr<const Snapshot> snapshot, std::string path, FileId file)
    : limits_(limits),
      pool_(std::move(pool)),
      path_(std::move(path)),
      file_(file),
      path_checked_(Clock::now().time_since_epoch().count()),
      schema_memory_checked_(Clock::now().time_since_epoch().count()),
      snapshot_(std::move(snapshot)),
      checked_at_(Clock::now()) {
  for (const auto& c : pool_) idle_.push_back(c.get());
}

SqliteSource::FileId SqliteSource::file_at(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? FileId{st.st_dev, st.st_ino} : FileId{};
}

namespace {

// An O_PATH descriptor of the directory an absolute, lexically normal
// `path` names its file in, reached from the root one real directory at a
// time (a link anywhere on the way fails it: a loader that can write an
// ancestor cannot swap a directory for a link). -1 if there is none.
int open_directory_of(const std::string& path, std::string* name) {
  if (path.size() < 2 || path.front() != '/' || path.find("//") != std::string::npos) return -1;
  const std::size_t slash = path.rfind('/');
  *name = path.substr(slash + 1);
  int dir = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  std::string_view rest = std::string_view(path).substr(1, slash == 0 ? 0 : slash - 1);
  while (dir >= 0 && !rest.empty()) {
    const std::size_t cut = rest.find('/');
    const std::string part(rest.substr(0, cut));
    rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
    const int next = part.empty() || part == "." || part == ".."
                         ? -1
                         : ::openat(dir, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ::close(dir);
    dir = next;
  }
  return dir;
}

// Whether the kernel refuses hard links to files the linker could not
// read and write (fs.protected_hardlinks, on by default).
bool hard_links_protected() {
  char c = 0;
  const int fd = ::open("/proc/sys/fs/protected_hardlinks", O_RDONLY | O_CLOEXEC);
  const bool on = fd >= 0 && ::read(fd, &c, 1) == 1 && c == '1';
  if (fd >= 0) ::close(fd);
  return on;
}

}  // namespace

bool SqliteSource::directory_is_real(const std::string& path) {
  std::string name;
  const int dir = open_directory_of(path, &name);
  if (dir < 0) return false;
  ::close(dir);
  return true;
}

SqliteSource::FileId SqliteSource::file_within_directory(const std::string& path) {
  std::string name;
  const int dir = open_directory_of(path, &name);
  if (dir < 0) return {};
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_dir{dir};
  for (int hop = 0; hop <= 8; ++hop) {
    if (name.empty() || name == "." || name == "..") return {};
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
    if (S_ISREG(st.st_mode)) {
      // A second name elsewhere could be a link to another tenant's file,
      // where the kernel lets anyone make one.
      if (st.st_nlink != 1 && !hard_links_protected()) return {};
      return FileId{st.st_dev, st.st_ino};
    }
    if (!S_ISLNK(st.st_mode)) return {};
    char target[256];
    const ssize_t n = ::readlinkat(dir, name.c_str(), target, sizeof target);
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof target) return {};
    name.assign(target, static_cast<std::size_t>(n));
    if (name.find('/') != std::string::npos) return {};  // out of the directory (or deeper): refused
  }
  return {};
}

bool SqliteSource::due(std::atomic<Clock::rep>& last_look) const {
  const auto now = Clock::now().time_since_epoch().count();
  auto last = last_look.load(std::memory_order_relaxed);
  const auto interval = std::chrono::duration_cast<Clock::duration>(limits_.schema_check_interval).count();
  // One caller looks; the others go on with what was seen last.
  return now - last >= interval && last_look.compare_exchange_strong(last, now);
}

std::size_t SqliteSource::schema_footprint() const {
  std::size_t each = 0;
  for (const auto& c : pool_) each = std::max(each, c->schema_seen());
  return each > SIZE_MAX / pool_.size() ? SIZE_MAX : each * pool_.size();
}

void SqliteSource::retire_if_oversized(Connection& c) const {
  if (c.check_schema_memory()) return;  // (measured, for schema_footprint, either way)
  retired_.store(true, std::memory_order_release);
  c.release_memory();
}

void SqliteSource::measure_schema() const {
  const std::lock_guard lock(pool_mu_);
  for (Connection* c : idle_) {
    if (retired()) return;  // one is enough: each measure walks the whole schema
    retire_if_oversized(*c);
  }
}

SqliteSource::PathState SqliteSource::path_state() const {
  if (retired()) return PathState::none;
  if (due(path_checked_)) {
    const FileId there = file_at(path_);
    path_state_.store(there == file_ ? PathState::same : there == FileId{} ? PathState::none : PathState::other);
  }
  return path_state_.load();
}

SqliteSource::~SqliteSource() = default;

void SqliteSource::release_memory() const {
  const std::lock_guard lock(pool_mu_);
  for (Connection* c : idle_) c->release_memory();
}

namespace {
thread_local const std::atomic<bool>* t_cancel = nullptr;
}  // namespace

CancelScope::CancelScope(const std::atomic<bool>* flag) : outer_(t_cancel) { t_cancel = flag; }
CancelScope::~CancelScope() { t_cancel = outer_; }
const std::atomic<bool>* CancelScope::current() { return t_cancel; }


DataResult<SqliteSource::Lease> SqliteSource::acquire(bool wait) const {
  std::unique_lock lock(pool_mu_);
  // Waiting is bounded like the query itself: a pool busy for longer than
  // a query may run is overloaded, and the caller should hear so.
  if (!pool_cv_.wait_for(lock, wait ? limits_.timeout : std::chrono::milliseconds(0),
                         [&] { return !idle_.empty(); })) {
    return data_error(Kind::timeout, "data source busy", "no idle connection in time");
  }
  // Last in, first out: the warmest statement cache.
  Lease lease(this, idle_.back());  // from here on, back in the pool on every path
  idle_.pop_back();
  lock.unlock();
  // Handed out, the connection is this thread's alone: it can take up
  // the names of a newer snapshot (the counter spares each query a copy
  // of the snapshot's pointer).
  if (lease->names_generation() != generation_.load(std::memory_order_acquire)) {
    const auto snap = current();
    lease->set_names(snap->readable, snap->hidden, snap->generation);
  }
  return lease;
}

std::shared_ptr<const SqliteSource::Snapshot> SqliteSource::current() const {
  const std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

std::shared_ptr<const SqliteSource::Snapshot> SqliteSource::refreshed() const {
  std::unique_lock looking(refresh_mu_, std::try_to_lock);
  if (!looking.owns_lock()) return current();  // another thread is looking
  auto snap = current();
  const auto now = Clock::now();
  if (now - checked_at_ < limits_.schema_check_interval) return snap;
  // Never waits for a connection: with none idle, the next caller looks.
  auto lease = acquire(/*wait=*/false);
  if (!lease) return snap;
  checked_at_ = now;
  // The caller's cancellation is not this look's: cancelled half-way, a
  // reading would fail, and the snapshot stay as it was anyway.
  const CancelScope uncancellable(nullptr);
  // Whatever fails here (a locked file, memory) leaves the snapshot as it
  // is, until the next look.
  auto version = read_schema_version(**lease, limits_.timeout);
  if (!version || *version == snap->version) return snap;
  auto schema = load_schema(**lease, limits_.timeout);
  if (!schema) {
    // Changed in place to a schema too large to hold: the connections
    // parse it whatever the snapshot says. Given up (path_state), so the
    // caller opens the file anew, and is refused until it shrinks.
    retire_if_oversized(**lease);
    return snap;
  }
  auto next = std::make_shared<Snapshot>(Snapshot{snap->generation + 1, schema->version,
                                                  std::move(schema->entities), schema->readable, schema->hidden});
  (*lease)->set_names(next->readable, next->hidden, next->generation);
  {
    const std::lock_guard lock(snapshot_mu_);
    snapshot_ = next;
    generation_.store(next->generation, std::memory_order_release);
  }
  {
    // Statistics of entities that are gone go with them; those of an
    // entity that changed are not answered again (describe compares it).
    const std::lock_guard lock(stats_mu_);
    const auto gone = [&](const std::string& name) { return !find_entity(next->entities, name); };
    std::erase_if(stats_, [&](const auto& kv) { return gone(kv.first); });
    std::erase_if(stats_failed_, [&](const auto& kv) { return gone(kv.first); });
  }
  return next;
}

template <class T, class F>
DataResult<T> SqliteSource::authorized(F&& f) const {
  return guarded([&]() -> DataResult<T> {
    std::uint64_t seen = 0;  // the snapshot the statement was authorized against
    const auto run = [&]() -> DataResult<T> {
      auto lease = acquire();
      if (!lease) return tl::unexpected(std::move(lease.error()));
      seen = (*lease)->names_generation();
      auto out = f(**lease);
      // A schema changed in place is parsed again by each connection as
      // it meets it, whatever the snapshot: its size is looked at here
      // (a walk of the whole schema: once per schema_check_interval, by
      // whichever call comes then).
      if (due(schema_memory_checked_)) retire_if_oversized(**lease);
      return out;
    };
    auto r = run();
    // Refused: perhaps for a table the snapshot does not hold yet. Once
    // more if the schema has changed since (the connection is back in the
    // pool by now: looking may need it).
    if (!r && r.error().kind == Kind::denied && refreshed()->generation != seen) return run();
    return r;
  });
}

DataResult<QueryResult> SqliteSource::query(std::string_view sql,
                                            const std::vector<nlohmann::json>& params) const {
  return authorized<QueryResult>([&](Connection& c) { return c.run(sql, params, c.user_options()); });
}

DataResult<void> SqliteSource::check(std::string_view sql, std::size_t params) const {
  return authorized<void>([&](Connection& c) { return c.check(sql, params); });
}

DataResult<std::vector<EntityInfo>> SqliteSource::entities() const {
  return guarded([&]() -> DataResult<std::vector<EntityInfo>> { return refreshed()->entities; });
}

DataResult<EntityStats> SqliteSource::describe(const std::string& entity) const {
  return guarded([&]() -> DataResult<EntityStats> {
    const auto snap = refreshed();
    // Only names of the snapshot reach SQL, and then only quoted.
    const EntityInfo* info = find_entity(snap->entities, entity);
    if (!info) {
      return data_error(Kind::not_found, "no such entity",
                        "describe: unknown entity " + valid_utf8(entity.substr(0, 64)));
    }
    // Known (of this snapshot, recently), or known to fail lately.
    const auto cached = [&]() -> std::optional<DataResult<EntityStats>> {
      const std::lock_guard lock(stats_mu_);
      const auto now = Clock::now();
      if (auto it = stats_.find(info->name); it != stats_.end() && it->second.stats.info == *info &&
                                             now - it->second.at < limits_.stats_max_age) {
        return it->second.stats;
      }
      if (auto it = stats_failed_.find(info->name);
          it != stats_failed_.end() && now - it->second.second < kStatsRetryAfter) {
        return tl::unexpected(it->second.first);
      }
      return std::nullopt;
    };
    if (auto known = cached()) return *known;
    const std::unique_lock compute(stats_compute_mu_, limits_.timeout);
    if (!compute.owns_lock()) {
      return data_error(Kind::timeout, "data source busy", "statistics of another entity being computed");
    }
    if (auto known = cached()) return *known;  // computed while we waited?
    auto stats = describe_uncached(*info);
    const std::lock_guard lock(stats_mu_);
    if (!stats) {
      // Only what computing again would meet again: too slow, or too big
      // even a column at a time (a busy file or the heap's limit is a moment's).
      if ((stats.error().kind == Kind::timeout || stats.error().kind == Kind::too_large) &&
          stats.error().message != kTempStorageBusy) {
        stats_failed_.insert_or_assign(info->name, std::pair(stats.error(), Clock::now()));
      }
      return stats;
    }
    stats_failed_.erase(info->name);
    stats_.insert_or_assign(info->name, CachedStats{Clock::now(), *stats});
    return stats;
  });
}

DataResult<EntityStats> SqliteSource::describe_uncached(const EntityInfo& info) const {
  auto lease = acquire();
  if (!lease) return tl::unexpected(std::move(lease.error()));
  return compute_stats(**lease, info, limits_.max_sql_bytes, limits_.stats_timeout);
}

void to_json(Json& j, const Column& c) {
  j = Json{{"name", c.name}, {"type", c.type}, {"not_null", c.not_null},
           {"primary_key", c.primary_key}};
}

void to_json(Json& j, const EntityInfo& e) {
  j = Json{{"name", e.name}, {"kind", e.kind}, {"columns", e.columns}};
}

void to_json(Json& j, const ColumnStats& c) {
  j = Json(c.column);
  j["null_fraction"] = c.null_fraction;
  j["distinct_count"] = c.distinct_count;
}

void to_json(Json& j, const EntityStats& s) {
  j = Json{{"name", s.info.name},        {"kind", s.info.kind},
           {"row_count", s.row_count},   {"columns", s.columns},
           {"approximate", s.approximate}};
}

void to_json(Json& j, const QueryResult& r) {
  j = Json{{"columns", r.columns}, {"rows", r.rows}, {"truncated", r.truncated}};
}

}  // namespace sluice::mcpd
