// The bounded replacements of instr, replace, trim, like and glob answer
// what SQLite's built-ins answer: the same inputs through both, compared.
#include "functions.h"

#include <sqlite3.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace {

using sluice::mcpd::install_bounded_functions;

struct Db {
  sqlite3* h = nullptr;
  explicit Db(const std::function<bool()>* bounded) {
    REQUIRE(sqlite3_open(":memory:", &h) == SQLITE_OK);
    if (bounded) REQUIRE(install_bounded_functions(h, bounded));
  }
  ~Db() { sqlite3_close(h); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
};

// One argument: text, a blob, an integer or NULL.
struct Arg {
  enum Kind { text, blob, integer, null } kind = text;
  std::string bytes;
  sqlite3_int64 number = 0;
};

// typeof(result) and its bytes, or the error message.
std::string eval(sqlite3* db, const std::string& sql, const std::vector<Arg>& args) {
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const int at = static_cast<int>(i) + 1;
    const Arg& a = args[i];
    switch (a.kind) {
      case Arg::text: sqlite3_bind_text(st, at, a.bytes.data(), static_cast<int>(a.bytes.size()), SQLITE_TRANSIENT); break;
      case Arg::blob: sqlite3_bind_blob(st, at, a.bytes.data(), static_cast<int>(a.bytes.size()), SQLITE_TRANSIENT); break;
      case Arg::integer: sqlite3_bind_int64(st, at, a.number); break;
      case Arg::null: sqlite3_bind_null(st, at); break;
    }
  }
  std::string out;
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    out = std::to_string(sqlite3_column_type(st, 0)) + ":";
    const auto* p = static_cast<const char*>(sqlite3_column_blob(st, 0));
    out.append(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
  } else {
    out = "error: " + std::string(sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  return out;
}

std::string show(const std::vector<Arg>& args) {
  std::string s;
  for (const Arg& a : args) {
    s += a.kind == Arg::null ? "NULL" : a.kind == Arg::integer ? std::to_string(a.number) : "";
    for (const unsigned char c : a.bytes) {
      static constexpr char kHex[] = "0123456789abcdef";
      s += kHex[c >> 4];
      s += kHex[c & 15];
    }
    s += a.kind == Arg::blob ? "(blob) " : " ";
  }
  return s;
}

}  // namespace

TEST_CASE("mcpd bounded SQL functions answer as SQLite's built-ins do", "[mcpd][functions]") {
  const std::function<bool()> never = [] { return false; };
  Db builtin(nullptr), bounded(&never);
  // Pieces that find the edge cases: multi-byte characters, a lone lead
  // byte, a stray continuation byte, a NUL, LIKE and GLOB wildcards,
  // escapes, case.
  const std::vector<std::string> pieces = {"a", "b", "A", "%", "_", "*", "?", "[", "]", "\\", "é", "\xc3",
                                           "\xa9", "€", std::string(1, '\0'), " ", "ab", "aab", "x"};
  std::mt19937 rng(20261206);
  const auto random_text = [&](int max_pieces) {
    std::string s;
    const int n = static_cast<int>(rng() % static_cast<unsigned>(max_pieces + 1));
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  const auto random_arg = [&](int max_pieces) {
    Arg a;
    const unsigned k = rng() % 16;
    a.kind = k < 11 ? Arg::text : k < 13 ? Arg::blob : k < 15 ? Arg::integer : Arg::null;
    if (a.kind == Arg::integer) {
      a.number = static_cast<sqlite3_int64>(rng() % 200) - 50;
    } else if (a.kind != Arg::null) {
      a.bytes = random_text(max_pieces);
    }
    return a;
  };
  const std::vector<std::pair<std::string, int>> calls = {
      {"SELECT instr(?1, ?2)", 2},   {"SELECT replace(?1, ?2, ?3)", 3}, {"SELECT trim(?1, ?2)", 2},
      {"SELECT ltrim(?1, ?2)", 2},   {"SELECT rtrim(?1, ?2)", 2},       {"SELECT ?1 LIKE ?2", 2},
      {"SELECT like(?1, ?2, ?3)", 3}, {"SELECT ?1 GLOB ?2", 2}};
  int compared = 0;
  for (const auto& [sql, arity] : calls) {
    for (int i = 0; i < 3000; ++i) {
      std::vector<Arg> args;
      for (int j = 0; j < arity; ++j) args.push_back(random_arg(j == 0 ? 8 : 3));
      if (sql.find("like(") != std::string::npos && args[2].kind == Arg::text && (rng() % 2)) {
        args[2].bytes = pieces[rng() % pieces.size()];  // often one character: a real escape
      }
      const std::string want = eval(builtin.h, sql, args);
      // The one deliberate difference: an escape that is itself a wildcard.
      const auto c_string = [](const std::string& b) { return b.substr(0, b.find('\0')); };
      if (sql.find("like(") != std::string::npos && args[2].kind != Arg::null && args[2].kind != Arg::integer &&
          (c_string(args[2].bytes) == "%" || c_string(args[2].bytes) == "_") && args[0].kind != Arg::blob &&
          args[1].kind != Arg::blob) {
        CHECK(eval(bounded.h, sql, args) == "error: ESCAPE may not be % or _ here");
        continue;
      }
      INFO(sql << " with " << show(args));
      CHECK(eval(bounded.h, sql, args) == want);
      ++compared;
    }
  }
  CHECK(compared > 22000);
}

TEST_CASE("mcpd bounded SQL functions end their statement when told to stop", "[mcpd][functions]") {
  bool stop = false;
  const std::function<bool()> told = [&stop] { return stop; };
  Db db(&told);
  const std::vector<Arg> none;
  for (const char* sql : {"SELECT instr('abc', 'c')", "SELECT replace('abc', 'b', 'x')", "SELECT trim('xax', 'x')",
                          "SELECT 'abc' LIKE 'a%'", "SELECT 'abc' GLOB 'a*'"}) {
    INFO(sql);
    stop = false;
    CHECK(eval(db.h, sql, none).rfind("error", 0) != 0);
    stop = true;
    CHECK(eval(db.h, sql, none) == "error: interrupted");
  }
  // The long ones look again while they work, not only on entry.
  int calls = 0;
  const std::function<bool()> later = [&calls] { return ++calls > 1; };
  Db slow(&later);
  const std::string big(200000, 'a');
  const std::vector<Arg> args = {{Arg::text, big, 0}, {Arg::text, std::string(100000, 'a') + "b", 0}};
  CHECK(eval(slow.h, "SELECT instr(?1, ?2)", args) == "error: interrupted");
  calls = 0;
  CHECK(eval(slow.h, "SELECT replace(?1, ?2, 'x')", args) == "error: interrupted");
  calls = 0;
  CHECK(eval(slow.h, "SELECT trim(?1, ?2)", {{Arg::text, big, 0}, {Arg::text, std::string(100000, 'b') + "a", 0}}) ==
        "error: interrupted");
}
