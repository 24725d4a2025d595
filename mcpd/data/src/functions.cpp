#include "functions.h"

#include <sqlite3.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace sluice::mcpd {
namespace {

using Stop = std::function<bool()>;

// Byte comparisons between two looks at the deadline (counted at their
// worst: a memcmp as long as its pattern): about a millisecond of work.
constexpr std::size_t kWorkPerLook = std::size_t{1} << 22;

// What each registration carries.
struct Fn {
  const Stop* stop;
  int flags = 0;  // trim: 1 left, 2 right; like: 1 = glob, 2 = a blob matches nothing
};

// Past the deadline, or cancelled: the statement ends here, as the
// progress handler would have ended it.
bool interrupted(sqlite3_context* ctx) {
  if (!(*static_cast<const Fn*>(sqlite3_user_data(ctx))->stop)()) return false;
  sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
  return true;
}

// Counts comparison work; every kWorkPerLook bytes of it, looks at the
// deadline.
class Budget {
 public:
  explicit Budget(sqlite3_context* ctx) : ctx_(ctx) {}
  // False once the statement must end (the error is set).
  bool spend(std::size_t bytes) {
    work_ += bytes;
    if (work_ < kWorkPerLook) return true;
    work_ = 0;
    return !interrupted(ctx_);
  }

 private:
  sqlite3_context* ctx_;
  std::size_t work_ = 0;
};

// instr(X, Y): SQLite 3.40's instrFunc, with looks at the deadline.
void instr(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  if (interrupted(ctx)) return;
  const int type_h = sqlite3_value_type(argv[0]);
  const int type_n = sqlite3_value_type(argv[1]);
  if (type_h == SQLITE_NULL || type_n == SQLITE_NULL) return;
  int nh = sqlite3_value_bytes(argv[0]);
  int nn = sqlite3_value_bytes(argv[1]);
  sqlite3_value* c1 = nullptr;
  sqlite3_value* c2 = nullptr;
  struct Free {
    sqlite3_value*& a;
    sqlite3_value*& b;
    ~Free() {
      sqlite3_value_free(a);
      sqlite3_value_free(b);
    }
  } free_copies{c1, c2};
  int n = 1;
  if (nn > 0) {
    const unsigned char* h = nullptr;
    const unsigned char* needle = nullptr;
    bool text = true;
    if (type_h == SQLITE_BLOB && type_n == SQLITE_BLOB) {
      h = static_cast<const unsigned char*>(sqlite3_value_blob(argv[0]));
      needle = static_cast<const unsigned char*>(sqlite3_value_blob(argv[1]));
      text = false;
    } else if (type_h != SQLITE_BLOB && type_n != SQLITE_BLOB) {
      h = sqlite3_value_text(argv[0]);
      needle = sqlite3_value_text(argv[1]);
    } else {
      // One blob, one not: both as text, on copies (the arguments keep
      // their types).
      c1 = sqlite3_value_dup(argv[0]);
      h = sqlite3_value_text(c1);
      if (!h) return sqlite3_result_error_nomem(ctx);
      nh = sqlite3_value_bytes(c1);
      c2 = sqlite3_value_dup(argv[1]);
      needle = sqlite3_value_text(c2);
      if (!needle) return sqlite3_result_error_nomem(ctx);
      nn = sqlite3_value_bytes(c2);
    }
    if (!needle || (nh && !h)) return sqlite3_result_error_nomem(ctx);
    const unsigned char first = needle[0];
    Budget budget(ctx);
    while (nn <= nh && (h[0] != first || std::memcmp(h, needle, static_cast<std::size_t>(nn)) != 0)) {
      if (!budget.spend(h[0] == first ? static_cast<std::size_t>(nn) : 1)) return;
      ++n;
      do {
        --nh;
        ++h;
      } while (text && (h[0] & 0xc0) == 0x80);
    }
    if (nn > nh) n = 0;
  }
  sqlite3_result_int(ctx, n);
}

// replace(X, Y, Z): SQLite 3.40's replaceFunc, with looks at the deadline.
void replace(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  if (interrupted(ctx)) return;
  const unsigned char* str = sqlite3_value_text(argv[0]);
  if (!str) return;
  const int n_str = sqlite3_value_bytes(argv[0]);
  const unsigned char* pattern = sqlite3_value_text(argv[1]);
  if (!pattern) return;
  if (pattern[0] == 0) {
    sqlite3_result_value(ctx, argv[0]);  // as it came, type and all
    return;
  }
  const int n_pattern = sqlite3_value_bytes(argv[1]);
  const unsigned char* rep = sqlite3_value_text(argv[2]);
  if (!rep) return;
  const int n_rep = sqlite3_value_bytes(argv[2]);
  const sqlite3_int64 max_length = sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1);
  sqlite3_int64 n_out = static_cast<sqlite3_int64>(n_str) + 1;
  std::string out;
  out.reserve(static_cast<std::size_t>(n_str));
  const int loop_limit = n_str - n_pattern;
  Budget budget(ctx);
  int i = 0;
  for (; i <= loop_limit; ++i) {
    if (!budget.spend(str[i] == pattern[0] ? static_cast<std::size_t>(n_pattern) : 1)) return;
    if (str[i] != pattern[0] || std::memcmp(&str[i], pattern, static_cast<std::size_t>(n_pattern)) != 0) {
      out.push_back(static_cast<char>(str[i]));
    } else {
      if (n_rep > n_pattern) {
        n_out += n_rep - n_pattern;
        if (n_out - 1 > max_length) return sqlite3_result_error_toobig(ctx);
      }
      out.append(reinterpret_cast<const char*>(rep), static_cast<std::size_t>(n_rep));
      i += n_pattern - 1;
    }
  }
  if (i < n_str) out.append(reinterpret_cast<const char*>(&str[i]), static_cast<std::size_t>(n_str - i));
  sqlite3_result_text64(ctx, out.data(), out.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

// trim/ltrim/rtrim(X, Y): SQLite 3.40's trimFunc with a character set,
// with a look at the deadline per character removed.
void trim(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  if (interrupted(ctx)) return;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  const unsigned char* in = sqlite3_value_text(argv[0]);
  if (!in) return;
  auto n_in = static_cast<unsigned>(sqlite3_value_bytes(argv[0]));
  const unsigned char* set = sqlite3_value_text(argv[1]);
  if (!set) return;
  // The set's characters, as SQLite splits them (SQLITE_SKIP_UTF8: a lead
  // byte from 0xc0 takes every continuation byte after it), with
  // SQLite's one-byte lengths.
  std::vector<std::pair<const unsigned char*, unsigned char>> chars;
  const unsigned char* z = set;
  while (*z) {
    const unsigned char* start = z;
    if (*(z++) >= 0xc0) {
      while ((*z & 0xc0) == 0x80) ++z;
    }
    chars.emplace_back(start, static_cast<unsigned char>(z - start));
  }
  const auto set_bytes = static_cast<std::size_t>(z - set);
  if (!chars.empty()) {
    const int flags = static_cast<const Fn*>(sqlite3_user_data(ctx))->flags;
    Budget budget(ctx);
    const auto strip = [&](bool left) -> bool {
      while (n_in > 0) {
        if (!budget.spend(set_bytes)) return false;  // every character's bytes, at worst
        unsigned len = 0;
        std::size_t i = 0;
        for (; i < chars.size(); ++i) {
          len = chars[i].second;
          if (len <= n_in && std::memcmp(left ? in : in + (n_in - len), chars[i].first, len) == 0) break;
        }
        if (i >= chars.size()) break;
        if (left) in += len;
        n_in -= len;
      }
      return true;
    };
    if ((flags & 1) && !strip(true)) return;
    if ((flags & 2) && !strip(false)) return;
  }
  sqlite3_result_text(ctx, reinterpret_cast<const char*>(in), static_cast<int>(n_in), SQLITE_TRANSIENT);
}

// SQLite's sqlite3Utf8Read: one character's code point.
unsigned read_utf8(const unsigned char*& z) {
  unsigned c = *(z++);
  if (c >= 0xc0) {
    static constexpr unsigned char kLeadMask[] = {0x1f, 0x0f, 0x07, 0x03, 0x01, 0x00};
    c &= c < 0xe0 ? kLeadMask[0] : c < 0xf0 ? kLeadMask[1] : c < 0xf8 ? kLeadMask[2] : c < 0xfc ? kLeadMask[3]
                                                                       : c < 0xfe ? kLeadMask[4] : kLeadMask[5];
    while ((*z & 0xc0) == 0x80) c = (c << 6) + (0x3f & *(z++));
    if (c < 0x80 || (c & 0xFFFFF800) == 0xD800 || (c & 0xFFFFFFFE) == 0xFFFE) c = 0xFFFD;
  }
  return c;
}

// like(P, X[, E]) and glob(P, X): SQLite 3.40's likeFunc around the same
// matcher (sqlite3_strlike, sqlite3_strglob), which cannot be interrupted:
// so a call whose size could run long is refused before it starts.
void like(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (interrupted(ctx)) return;
  const int flags = static_cast<const Fn*>(sqlite3_user_data(ctx))->flags;
  const bool glob = (flags & 1) != 0;
  // As SQLite was built: with LIKE_DOESNT_MATCH_BLOBS (Debian's), a blob
  // on either side matches nothing.
  if ((flags & 2) && (sqlite3_value_type(argv[0]) == SQLITE_BLOB || sqlite3_value_type(argv[1]) == SQLITE_BLOB)) {
    sqlite3_result_int(ctx, 0);
    return;
  }
  const unsigned char* pattern = sqlite3_value_text(argv[0]);
  const unsigned char* str = sqlite3_value_text(argv[1]);
  const int n_pattern = sqlite3_value_bytes(argv[0]);
  if (n_pattern > sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LIKE_PATTERN_LENGTH, -1)) {
    return sqlite3_result_error(ctx, "LIKE or GLOB pattern too complex", -1);
  }
  unsigned escape = 0;
  if (argc == 3) {
    const unsigned char* esc = sqlite3_value_text(argv[2]);
    if (!esc) return;
    int chars = 0;
    for (const unsigned char* z = esc; *z; ++chars) {
      if (*(z++) >= 0xc0) {
        while ((*z & 0xc0) == 0x80) ++z;
      }
    }
    if (chars != 1) return sqlite3_result_error(ctx, "ESCAPE expression must be a single character", -1);
    escape = read_utf8(esc);
    // SQLite then stops treating that wildcard as one; sqlite3_strlike
    // cannot, so such an escape is refused rather than matched otherwise.
    if (escape == '%' || escape == '_') {
      return sqlite3_result_error(ctx, "ESCAPE may not be % or _ here", -1);
    }
  }
  if (!pattern || !str) return;
  const int n_str = sqlite3_value_bytes(argv[1]);
  if (static_cast<double>(n_pattern) * static_cast<double>(n_str) > kMaxPatternWork) {
    return sqlite3_result_error(ctx, "LIKE or GLOB pattern too costly for a value this long", -1);
  }
  const auto* p = reinterpret_cast<const char*>(pattern);
  const auto* s = reinterpret_cast<const char*>(str);
  sqlite3_result_int(ctx, (glob ? sqlite3_strglob(p, s) : sqlite3_strlike(p, s, escape)) == 0);
}

// Nothing thrown may cross SQLite's C frames: an allocation that fails is
// the statement's "out of memory".
template <void (*F)(sqlite3_context*, int, sqlite3_value**)>
void guarded(sqlite3_context* ctx, int argc, sqlite3_value** argv) noexcept {
  try {
    F(ctx, argc, argv);
  } catch (...) {
    sqlite3_result_error_nomem(ctx);
  }
}

bool add(sqlite3* db, const char* name, int args, const Stop* stop, int flags,
         void (*fn)(sqlite3_context*, int, sqlite3_value**)) {
  auto* data = new Fn{stop, flags};
  // SQLite frees `data` (xDestroy) when the function goes, and when this
  // registration fails.
  return sqlite3_create_function_v2(db, name, args, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, data,
                                    fn, nullptr, nullptr, [](void* p) { delete static_cast<Fn*>(p); }) == SQLITE_OK;
}

}  // namespace

bool install_bounded_functions(sqlite3* db, const std::function<bool()>* stop) {
  const int blobs = sqlite3_compileoption_used("LIKE_DOESNT_MATCH_BLOBS") ? 2 : 0;
  return add(db, "instr", 2, stop, 0, guarded<instr>) && add(db, "replace", 3, stop, 0, guarded<replace>) &&
         add(db, "trim", 2, stop, 3, guarded<trim>) && add(db, "ltrim", 2, stop, 1, guarded<trim>) &&
         add(db, "rtrim", 2, stop, 2, guarded<trim>) && add(db, "like", 2, stop, blobs, guarded<like>) &&
         add(db, "like", 3, stop, blobs, guarded<like>) && add(db, "glob", 2, stop, blobs | 1, guarded<like>);
}

}  // namespace sluice::mcpd
