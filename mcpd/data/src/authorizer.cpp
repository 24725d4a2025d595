#include "authorizer.h"

#include <algorithm>
#include <array>

#include <sqlite3.h>

namespace sluice::mcpd {
namespace {

// Pure functions: their result depends only on their arguments (and, for the
// date functions, the clock), they touch no file, no extension, no
// connection state, and their cost is bounded by the size of their inputs.
// Refused on purpose, among others: load_extension, readfile, writefile,
// edit, fts3_tokenizer (code execution or file access); randomblob and
// zeroblob (a few bytes of SQL manufacture up to SQLITE_LIMIT_LENGTH bytes
// per call, which no read-only analysis needs); random (results should be
// reproducible for the audit log); sqlite_version, sqlite_source_id,
// sqlite_compileoption_* (fingerprinting); changes, last_insert_rowid
// (meaningless here); the json_* family (not needed yet; easy to add).
// Operators such as CAST, CASE, IN, BETWEEN and COLLATE are not functions.
// Keep sorted: looked up by binary search.
constexpr auto kAllowedFunctions = std::to_array<std::string_view>({
    "abs",       "avg",        "ceil",         "ceiling",      "char",      "coalesce",
    "count",     "cume_dist",  "date",         "datetime",     "dense_rank", "exp",
    "first_value", "floor",    "format",       "glob",         "group_concat", "hex",
    "ifnull",    "iif",        "instr",        "julianday",    "lag",       "last_value",
    "lead",      "length",     "like",         "ln",           "log",       "log10",
    "log2",      "lower",      "ltrim",        "max",          "min",       "mod",
    "nth_value", "ntile",      "nullif",       "percent_rank", "pi",        "pow",
    "power",     "printf",     "quote",        "rank",         "replace",   "round",
    "row_number", "rtrim",     "sqrt",         "strftime",     "substr",    "substring",
    "sum",       "time",       "total",        "trim",         "typeof",    "unicode",
    "unixepoch", "upper",
});
static_assert(std::is_sorted(kAllowedFunctions.begin(), kAllowedFunctions.end()),
              "kAllowedFunctions must stay sorted");

bool is_internal_table(std::string_view lower_name) {
  return lower_name.starts_with("sqlite_");
}

// Names in the audit detail are bounded: they come from the statement.
std::string shown(const char* name) {
  constexpr std::size_t kMax = 128;
  std::string s = name ? name : "";
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

const char* action_name(int action) {
  switch (action) {
    case SQLITE_CREATE_INDEX: return "CREATE INDEX";
    case SQLITE_CREATE_TABLE: return "CREATE TABLE";
    case SQLITE_CREATE_TEMP_INDEX: return "CREATE TEMP INDEX";
    case SQLITE_CREATE_TEMP_TABLE: return "CREATE TEMP TABLE";
    case SQLITE_CREATE_TEMP_TRIGGER: return "CREATE TEMP TRIGGER";
    case SQLITE_CREATE_TEMP_VIEW: return "CREATE TEMP VIEW";
    case SQLITE_CREATE_TRIGGER: return "CREATE TRIGGER";
    case SQLITE_CREATE_VIEW: return "CREATE VIEW";
    case SQLITE_CREATE_VTABLE: return "CREATE VIRTUAL TABLE";
    case SQLITE_DROP_INDEX: return "DROP INDEX";
    case SQLITE_DROP_TABLE: return "DROP TABLE";
    case SQLITE_DROP_TEMP_INDEX: return "DROP TEMP INDEX";
    case SQLITE_DROP_TEMP_TABLE: return "DROP TEMP TABLE";
    case SQLITE_DROP_TEMP_TRIGGER: return "DROP TEMP TRIGGER";
    case SQLITE_DROP_TEMP_VIEW: return "DROP TEMP VIEW";
    case SQLITE_DROP_TRIGGER: return "DROP TRIGGER";
    case SQLITE_DROP_VIEW: return "DROP VIEW";
    case SQLITE_DROP_VTABLE: return "DROP VIRTUAL TABLE";
    case SQLITE_ALTER_TABLE: return "ALTER TABLE";
    case SQLITE_TRANSACTION: return "TRANSACTION";
    case SQLITE_SAVEPOINT: return "SAVEPOINT";
    case SQLITE_ATTACH: return "ATTACH";
    case SQLITE_DETACH: return "DETACH";
    case SQLITE_REINDEX: return "REINDEX";
    case SQLITE_ANALYZE: return "ANALYZE";
    case SQLITE_COPY: return "COPY";
    default: return nullptr;
  }
}

}  // namespace

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool Authorizer::function_allowed(std::string_view name) {
  return std::binary_search(kAllowedFunctions.begin(), kAllowedFunctions.end(), name);
}

int Authorizer::callback(void* self, int action, const char* arg3, const char* arg4,
                         const char* db, const char* /*inner: trigger or view*/) {
  // Called from SQLite's C frames: nothing may unwind through them (a
  // bad_alloc building a reason would). Whatever fails here refuses.
  try {
    return static_cast<Authorizer*>(self)->decide(action, arg3, arg4, db);
  } catch (...) {
    return SQLITE_DENY;
  }
}

int Authorizer::deny(std::string reason) {
  // The first refusal is the cause; SQLite stops compiling after it anyway.
  if (denial_.empty()) denial_ = "denied: " + std::move(reason);
  return SQLITE_DENY;
}

int Authorizer::decide_read(std::string_view table, std::string_view column, const char* db) {
  // Without a schema name the read is unqualified; with ATTACH refused,
  // "main" is the tenant's file and "temp" could only hold what this
  // connection made, which is nothing.
  if (db && std::string_view(db) != "main") {
    return deny("read of " + shown(db) + "." + std::string(table));
  }
  if (mode_ == Mode::metadata) return SQLITE_OK;
  const std::string lower = ascii_lower(table);
  if (!is_internal_table(lower)) {
    if (readable_ && readable_->contains(lower)) return SQLITE_OK;
    // No column read: possibly a CTE (see the header), unless it is a table
    // made since the snapshot.
    if (column.empty() && hidden_ && !hidden_->contains(lower) &&
        !(table_exists_ && table_exists_(std::string(table)))) {
      return SQLITE_OK;
    }
  }
  return deny("read of " + std::string(table));
}

int Authorizer::decide(int action, const char* arg3, const char* arg4, const char* db) {
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_RECURSIVE:
      return SQLITE_OK;
    case SQLITE_READ:
      return decide_read(arg3 ? arg3 : "", arg4 ? arg4 : "", db);
    case SQLITE_FUNCTION: {
      // arg4 is the name the function is registered under.
      const std::string name = ascii_lower(arg4 ? arg4 : "");
      if (function_allowed(name)) return SQLITE_OK;
      return deny("function " + shown(arg4));
    }
    case SQLITE_PRAGMA:
      // table_info is how the data layer lists columns, and schema_version
      // (read, never set: no argument) how it notices a changed schema; a
      // user statement may not run any pragma, not even one that only reads.
      if (mode_ == Mode::metadata) {
        const std::string pragma = ascii_lower(arg3 ? arg3 : "");
        if (pragma == "table_info" || (pragma == "schema_version" && arg4 == nullptr)) return SQLITE_OK;
      }
      return deny("PRAGMA " + shown(arg3));
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE: {
      // CREATE, DROP and ALTER first ask to write the schema table.
      if (is_internal_table(ascii_lower(arg3 ? arg3 : ""))) {
        return deny("schema change (write to " + shown(arg3) + ")");
      }
      return deny("write to " + shown(arg3));
    }
    default:
      break;
  }
  if (const char* name = action_name(action)) {
    std::string reason = name;
    if (arg3 && *arg3) reason += " " + shown(arg3);
    return deny(std::move(reason));
  }
  return deny("action " + std::to_string(action));
}

}  // namespace sluice::mcpd
