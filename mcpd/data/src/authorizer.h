// The SQLite authorizer of a tenant connection: the allowlist that decides,
// while a statement is compiled, which actions it may contain.
//
// Default deny: an action code not named here (including any a future SQLite
// adds) is refused. In `user` mode a statement may only SELECT, read columns
// of the tenant's tables and views (the schema snapshot: never sqlite_* or
// virtual tables), call allowlisted pure functions and use recursive CTEs.
// `metadata` mode is for the data layer's own SQL (listing entities,
// statistics): it may also read sqlite_schema, run the table_info pragma
// and read schema_version; no other pragma, and no other function.
//
// One subtlety: for `SELECT count(*) FROM x`, where no column of x is read,
// SQLite asks for a read of x with an empty column name, and x may then be
// a CTE, whose name no schema holds. Such a read is allowed unless x names
// a schema object that is not readable (or starts with sqlite_), or a table
// the file holds now that the snapshot did not (created since it was taken:
// its row count would show): a CTE that shadows one of those is refused
// too, which is safe.
//
// The first refusal of a compilation is recorded ("denied: ATTACH",
// "denied: function load_extension", "denied: write to customers") so the
// audit log can say why a statement was refused.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>

namespace sluice::mcpd {

class Authorizer {
 public:
  enum class Mode { user, metadata };
  // Lower-case names of the tables and views a user statement may read.
  using NameSet = std::set<std::string, std::less<>>;

  // For sqlite3_set_authorizer, with `self` an Authorizer*.
  static int callback(void* self, int action, const char* arg3, const char* arg4,
                      const char* db, const char* inner);

  // Functions a statement may call, by lower-case name.
  [[nodiscard]] static bool function_allowed(std::string_view name);

  // Returns SQLITE_OK or SQLITE_DENY (recording why).
  int decide(int action, const char* arg3, const char* arg4, const char* db);

  void set_mode(Mode m) { mode_ = m; }
  [[nodiscard]] Mode mode() const { return mode_; }
  // `readable`: what user statements may read; `hidden`: every other table
  // or view of the schema. Both lower case.
  void set_names(std::shared_ptr<const NameSet> readable, std::shared_ptr<const NameSet> hidden) {
    readable_ = std::move(readable);
    hidden_ = std::move(hidden);
  }

  // Whether the database holds a table of that name now (set by the
  // connection; unset, nothing is known beyond the snapshot).
  void set_table_exists(std::function<bool(const std::string&)> exists) { table_exists_ = std::move(exists); }

  // Why the last compilation was refused; empty if it was not.
  [[nodiscard]] const std::string& denial() const { return denial_; }
  void clear_denial() { denial_.clear(); }

 private:
  int deny(std::string reason);
  int decide_read(std::string_view table, std::string_view column, const char* db);

  Mode mode_ = Mode::user;
  std::shared_ptr<const NameSet> readable_;
  std::shared_ptr<const NameSet> hidden_;
  std::function<bool(const std::string&)> table_exists_;
  std::string denial_;
};

// Sets a mode for one statement, compilation and execution (SQLite may
// recompile while stepping), and restores user mode whatever happens, so no
// user statement ever compiles in metadata mode.
class ModeScope {
 public:
  ModeScope(Authorizer& a, Authorizer::Mode m) : auth_(a) { auth_.set_mode(m); }
  ~ModeScope() { auth_.set_mode(Authorizer::Mode::user); }
  ModeScope(const ModeScope&) = delete;
  ModeScope& operator=(const ModeScope&) = delete;

 private:
  Authorizer& auth_;
};

// ASCII lower case: SQLite identifiers compare case-insensitively in ASCII.
std::string ascii_lower(std::string_view s);

}  // namespace sluice::mcpd
