// SQL functions whose one call can outlast any deadline, replaced.
//
// SQLite checks its progress handler (the query deadline, cancellation)
// between VM instructions; a single function call is one instruction. The
// built-in instr(), replace() and two-argument trim()/ltrim()/rtrim()
// compare at every position of their first argument (up to 1 MiB) against
// the whole second (up to 1 MiB): one call can take minutes, and a SELECT
// of 2000 such columns hours, with no check in between. LIKE and GLOB are
// matched by a backtracking routine of the same order.
//
// The replacements registered here do what the built-ins do, byte for
// byte (the same loops, from SQLite 3.40's func.c), and also stop when the
// statement's deadline passes or its caller cancels: instr, replace and
// trim check every few thousand positions; like and glob, which go
// through sqlite3_strlike/sqlite3_strglob, check before each call and
// refuse a call whose pattern-by-text size could run long. Differential
// tests hold them to the built-ins' answers.
#pragma once

#include <functional>

struct sqlite3;

namespace sluice::mcpd {

// The most pattern bytes x text bytes one like() or glob() call may
// match (a backtracking match is at worst of that order): ~0.1 s.
inline constexpr double kMaxPatternWork = 1e8;

// Registers the replacements on `db`. `stop` says whether the running
// statement must end (deadline passed or cancelled); it is called from
// inside sqlite3_step and must outlive the connection. False when SQLite
// refused a registration (the caller fails closed).
bool install_bounded_functions(sqlite3* db, const std::function<bool()>* stop);

}  // namespace sluice::mcpd
