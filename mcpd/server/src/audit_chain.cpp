#include "audit_chain.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "keys.h"
#include "sql.h"

namespace sluice::mcpd {
namespace {
constexpr char kWalk[] = "SELECT seq, ts_ms, kind, tenant, record, prev_hash, hash FROM audit ORDER BY seq";
}  // namespace

KeyHash chain_hash(const KeyHash& prev, std::int64_t seq, const std::string& record) {
  std::string buf(prev.begin(), prev.end());
  for (int i = 0; i < 8; ++i) {
    buf += static_cast<char>(static_cast<std::uint64_t>(seq) >> (56 - 8 * i));
  }
  buf += record;
  return sha256(buf);
}

namespace {
// The directory part of a path, with its slash ("" for a bare name).
std::string_view directory_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash + 1);
}

std::string beside(std::string_view database_path, std::string_view name) {
  return std::string(directory_of(database_path)).append(name);
}

// Hands a file that root made (or found) beside mcpd's database to the
// owner of their directory (mcpd's user: StateDirectory), so that mcpd can
// open it; the directory's owner, not the database's, which that user
// could point elsewhere with a link. Only a regular file with a single
// link: a hard link the user planted there to a file of root's
// (/etc/sudoers) must never change hands.
Status give_to_directory_owner(int fd, const std::string& path) {
  if (::geteuid() != 0) return {};
  const std::string_view in = directory_of(path);
  const std::string dir = in.empty() ? "." : std::string(in);
  struct stat owner {}, st {};
  if (::stat(dir.c_str(), &owner) != 0 || !S_ISDIR(owner.st_mode)) {
    return fail("cannot look at the directory of " + path + ": " + std::strerror(errno));
  }
  if (::fstat(fd, &st) != 0) return fail("cannot look at " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
    return fail(path + " is not a plain file with a single link: refused (a link planted there?)");
  }
  if (st.st_uid == owner.st_uid && st.st_gid == owner.st_gid) return {};
  if (::fchown(fd, owner.st_uid, owner.st_gid) != 0) {
    return fail("cannot give " + path + " to its directory's owner: " + std::strerror(errno));
  }
  return {};
}
}  // namespace

std::string anchors_beside(std::string_view database_path) { return beside(database_path, kAnchorsFileName); }

std::string digest_key_beside(std::string_view database_path) { return beside(database_path, kDigestKeyFileName); }

Result<KeyHash> load_digest_key(const std::string& path, bool create) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    // Written whole to a file of its own, then linked in under the name:
    // a crash leaves no half key behind, and two starts cannot both make one.
    const std::string temp = path + ".new";
    ::unlink(temp.c_str());
    const int out = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) return fail("cannot create " + temp + ": " + std::strerror(errno));
    const KeyHash fresh = random_key();
    const std::string text = to_hex(fresh.data(), fresh.size()) + "\n";
    const bool written = ::write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(out) == 0;
    ::close(out);
    if (!written || ::link(temp.c_str(), path.c_str()) != 0) {
      const int error = errno;
      ::unlink(temp.c_str());
      if (written && error == EEXIST) return load_digest_key(path, false);  // made meanwhile
      return fail("cannot write " + path + ": " + std::strerror(error));
    }
    ::unlink(temp.c_str());
    const std::string dir(directory_of(path));
    if (const int d = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
      ::fsync(d);
      ::close(d);
    }
    fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  }
  if (fd < 0) return fail("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  char buf[66] = {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const ssize_t n = regular ? ::read(fd, buf, sizeof buf) : -1;
  ::close(fd);
  if (!regular) return fail(path + " is not a regular file");
  if (n != 65 || buf[64] != '\n') return fail(path + " does not hold one key (64 hex digits and a newline)");
  KeyHash key{};
  for (std::size_t i = 0; i < key.size(); ++i) {
    unsigned v = 0;
    const auto [end, err] = std::from_chars(buf + 2 * i, buf + 2 * i + 2, v, 16);
    if (err != std::errc() || end != buf + 2 * i + 2) return fail(path + " does not hold one key (64 hex digits and a newline)");
    key[i] = static_cast<std::uint8_t>(v);
  }
  return key;
}

std::string digest_arguments(const KeyHash& key, std::string_view nonce, const DigestContext& context,
                             const nlohmann::json& args) {
  // Canonical: nlohmann keeps object keys sorted; invalid UTF-8 replaced.
  const std::string canonical = args.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string text;
  if (nonce.empty()) {
    text = canonical;
  } else {
    // Length-prefixed fields: no two different tuples give one text.
    for (std::string_view field : {nonce, context.tenant, context.credential, context.tool,
                                   std::string_view(canonical)}) {
      text += std::to_string(field.size());
      text.push_back(':');
      text.append(field);
    }
  }
  const KeyHash h = hmac_sha256(key, text);
  return to_hex(h.data(), h.size());
}

DigestNonces::DigestNonces() {
  const KeyHash r = random_key();
  prefix_ = to_hex(r.data(), 8);
}

std::string DigestNonces::next() {
  const std::uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(n));
  return prefix_ + "." + buf;
}

namespace {
// A root-run sluicectl reads a database in a directory mcpd's user owns:
// the file, its -wal and -shm (which SQLite opens blocking) must be plain
// files, not FIFOs that would hang it (opened non-blocking here), and the
// database no link (SQLITE_OPEN_NOFOLLOW too, below). Files swapped after
// this look are the gap left: run sluicectl while mcpd's user cannot.
Status plain_database(const std::string& path) {
  for (const std::string& p : {path, path + "-wal", path + "-shm"}) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT && p != path) continue;
      return fail("cannot open " + p + ": " + std::strerror(errno));
    }
    struct stat st{};
    const bool plain = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(fd);
    if (!plain) return fail(p + " is not a plain file: refused");
  }
  return {};
}
}  // namespace

Result<nlohmann::json> read_audit_record(const std::string& database_path, std::int64_t seq) {
  if (auto s = plain_database(database_path); !s) return tl::unexpected(s.error());
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(database_path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, nullptr);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
  if (rc != SQLITE_OK) return fail("cannot open " + database_path);
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db.get(), "SELECT record FROM audit WHERE seq = ?1", -1, &st, nullptr) != SQLITE_OK) {
    return fail(database_path + " holds no audit log");
  }
  Stmt stmt(st);
  stmt.bind(1, seq);
  const auto row = stmt.step();
  if (!row) return fail("cannot read the audit log of " + database_path);
  if (!*row) return fail("no audit record " + std::to_string(seq));
  auto record = nlohmann::json::parse(stmt.text(0), nullptr, false);
  if (record.is_discarded() || !record.is_object()) return fail("audit record " + std::to_string(seq) + " is not a JSON object");
  return record;
}

Result<DatabaseLock> DatabaseLock::take(std::string_view database_path) {
  const std::string path = beside(database_path, kLockFileName);
  // Never through a symbolic link planted beside the database, never
  // blocked by a FIFO. Read-only: flock needs no more.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot open the lock " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("the lock " + path + " is not a regular file");
  }
  // Made by root (sluicectl) beside mcpd's database: mcpd's.
  if (auto given = give_to_directory_owner(fd, path); !given) {
    ::close(fd);
    return tl::unexpected(given.error());
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return fail(path + " is held: a sluice-mcpd (or sluicectl audit anchor) is using this database now; stop it first");
    }
    return fail("cannot lock " + path + ": " + std::strerror(err));
  }
  return DatabaseLock(fd);
}

DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::string anchor_line(std::int64_t seq, const KeyHash& hash) {
  return std::to_string(seq) + " " + to_hex(hash.data(), hash.size()) + "\n";
}

Result<AuditAnchor> parse_anchor_line(std::string_view line) {
  const auto space = line.find(' ');
  AuditAnchor a;
  const std::string_view seq = line.substr(0, space);
  const auto [end, err] = std::from_chars(seq.data(), seq.data() + seq.size(), a.seq);
  if (space == std::string_view::npos || seq.empty() || err != std::errc() || end != seq.data() + seq.size() ||
      a.seq <= 0 || seq.front() == '0') {
    return fail("malformed sequence number");
  }
  const std::string_view hex = line.substr(space + 1);
  if (hex.size() != 64) return fail("malformed hash");
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail("malformed hash");
    a.hash[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return a;
}

namespace {
constexpr std::size_t kMaxAnchorLine = 128;  // 20 digits, a space, 64 hex digits
constexpr std::size_t kAnchorChunk = 1 << 16;

// Line `line_no` of an anchor file, read after `prev`: the anchor it adds,
// nullopt for an exact repeat of `prev` (a write retried after its sync
// failed), or why the line is refused. One rule for every reader.
Result<std::optional<AuditAnchor>> accept_anchor_line(std::string_view text, std::int64_t line_no,
                                                      std::optional<AuditAnchor>& prev) {
  const auto where = "anchor line " + std::to_string(line_no) + ": ";
  if (text.size() > kMaxAnchorLine) return fail(where + "overlong");
  auto a = parse_anchor_line(text);
  if (!a) return fail(where + a.error().what);
  if (prev && a->seq == prev->seq && a->hash == prev->hash) return std::optional<AuditAnchor>{};
  if (prev && a->seq <= prev->seq) {
    return fail(where + "seq " + std::to_string(a->seq) + " after seq " + std::to_string(prev->seq) +
                " (anchors must increase)");
  }
  prev = *a;
  return std::optional<AuditAnchor>(*a);
}
}  // namespace

Result<AnchorReader> AnchorReader::open(const std::string& path) {
  // Non-blocking: a FIFO put at the path opens at once, then is refused.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fail("cannot open " + path + ": " + std::strerror(errno));
  AnchorReader r(fd, true, 0);  // closes fd on every path out
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return fail(path + " is not a regular file");
  r.size_ = st.st_size;
  return r;
}

Result<AnchorReader> AnchorReader::over(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return fail("the anchor file is not a regular file");
  return AnchorReader(fd, false, st.st_size);
}

AnchorReader::AnchorReader(AnchorReader&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), owned_(o.owned_), size_(o.size_), offset_(o.offset_), eof_(o.eof_),
      buf_(std::move(o.buf_)), pos_(o.pos_), line_(o.line_), prev_(o.prev_) {}

AnchorReader::~AnchorReader() {
  if (owned_ && fd_ >= 0) ::close(fd_);
}

Result<std::optional<AuditAnchor>> AnchorReader::next() {
  while (true) {
    const auto nl = buf_.find('\n', pos_);
    if (nl == std::string::npos) {
      if (buf_.size() - pos_ > kMaxAnchorLine) return fail("anchor line " + std::to_string(line_ + 1) + ": overlong");
      if (eof_) {
        if (pos_ == buf_.size()) return std::optional<AuditAnchor>{};
        // A write cut short, or something else: no anchor to trust.
        return fail("anchor line " + std::to_string(line_ + 1) + ": torn (no newline at the end of the file)");
      }
      buf_.erase(0, pos_);
      pos_ = 0;
      const std::size_t have = buf_.size();
      const auto want = static_cast<std::size_t>(std::min<std::int64_t>(kAnchorChunk, size_ - offset_));
      buf_.resize(have + want);
      const ssize_t n = want == 0 ? 0 : ::pread(fd_, buf_.data() + have, want, offset_);
      if (n < 0) return fail("reading the anchor file: " + std::string(std::strerror(errno)));
      buf_.resize(have + static_cast<std::size_t>(n));
      offset_ += n;
      eof_ = n == 0;
      continue;
    }
    const std::string_view text(buf_.data() + pos_, nl - pos_);
    pos_ = nl + 1;
    auto a = accept_anchor_line(text, ++line_, prev_);
    if (!a || *a) return a;  // refused, or an anchor; a repeat is skipped
  }
}

Result<AuditAnchor> seed_anchors(const std::string& db_path, const std::string& anchors_path) {
  // A running mcpd appends anchors of its own (to the file it opened,
  // which may be a deleted one): seed only while none runs, and keep one
  // from starting meanwhile.
  auto locked = DatabaseLock::take(db_path);
  if (!locked) return fail("not seeded: " + locked.error().what);
  const int fd = ::open(anchors_path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (fd < 0) return fail("cannot open " + anchors_path + ": " + std::strerror(errno));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_it{fd};
  auto reader = AnchorReader::over(fd);
  if (!reader) return tl::unexpected(reader.error());
  auto first = reader->next();
  if (!first) return fail(anchors_path + ": " + first.error().what);
  if (*first) return fail(anchors_path + " holds anchors already: only a file with none is seeded");
  // Made by root for sluice-mcpd: the file must be mcpd's, or mcpd cannot
  // append to it.
  if (auto given = give_to_directory_owner(fd, anchors_path); !given) return tl::unexpected(given.error());
  auto v = verify_audit(db_path);
  if (!v) return tl::unexpected(v.error());
  if (!v->ok) {
    return fail("the chain is broken at seq " + std::to_string(v->bad_seq) + " (" + v->problem +
                "): a broken log is not anchored");
  }
  if (v->records == 0) return fail("the log holds no record: nothing to anchor");
  // The chain has no gaps from seq 1: its last seq is its record count.
  auto head = parse_anchor_line(std::to_string(v->records) + " " + v->head_hash);
  if (!head) return tl::unexpected(head.error());
  const std::string line = anchor_line(head->seq, head->hash);
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fdatasync(fd) != 0) {
    return fail("cannot write " + anchors_path + ": " + std::strerror(errno));
  }
  return *head;
}

namespace {
// Text the database chose (an index's name in SQLite's messages), made
// safe for root's terminal and for JSON: printable ASCII only.
std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return out;
}

// What `PRAGMA integrity_check` finds wrong with the audit table and its
// indexes ("" when nothing), its first few findings.
std::string index_damage(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(audit)", -1, &st, nullptr) != SQLITE_OK) {
    return "integrity check not run: " + printable(sqlite3_errmsg(db));
  }
  Stmt check(st);
  std::string out;
  for (int n = 0; n < 4; ++n) {
    auto row = check.step();
    if (!row) return "integrity check failed: " + printable(row.error().what);
    if (!*row) break;
    const std::string line = check.text(0);
    if (n == 0 && line == "ok") return "";
    out += (out.empty() ? "" : "; ") + printable(line.substr(0, 200));
  }
  return out.empty() ? "integrity check gave no answer" : out;
}
}  // namespace

Result<AuditVerdict> verify_audit(const std::string& path, const std::string& anchors_path) {
  std::optional<AnchorReader> anchors;
  if (!anchors_path.empty()) {
    auto r = AnchorReader::open(anchors_path);
    if (!r) return tl::unexpected(r.error());
    anchors.emplace(std::move(*r));
  }
  // The next anchor not yet matched (anchors are read as the walk reaches them).
  std::optional<AuditAnchor> pending;
  std::string anchor_problem;
  const auto advance = [&] {
    auto n = anchors->next();
    if (!n) {
      anchor_problem = n.error().what;
      pending.reset();
    } else {
      pending = *n;
    }
  };
  if (anchors) advance();
  if (auto s = plain_database(path); !s) return tl::unexpected(s.error());
  sqlite3* raw = nullptr;
  const int opened = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, nullptr);
  // Closed on every path out, after the statements (close_v2 waits for them).
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close_v2);
  if (opened != SQLITE_OK) return fail("cannot open " + path);
  // A running mcpd's checkpoint may hold a lock for a moment. The walk
  // and the index check below read one snapshot: one transaction.
  sqlite3_busy_timeout(raw, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_exec(raw, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(raw, kWalk, -1, &st, nullptr) != SQLITE_OK) {
    return fail("not an audit database: " + printable(sqlite3_errmsg(raw)));
  }
  Stmt walk(st);
  AuditVerdict v;
  KeyHash prev{};
  std::int64_t expect = 1;
  const auto bad = [&](std::int64_t seq, std::string problem) {
    v.ok = false;
    v.bad_seq = seq;
    v.problem = std::move(problem);
    return v;
  };
  while (true) {
    auto row = walk.step();
    if (!row) return fail(printable(row.error().what));
    if (!*row) break;
    const std::int64_t seq = walk.int64(0);
    const std::string record = walk.text(4);
    const auto stored_prev = walk.blob(5);
    const auto stored_hash = walk.blob(6);
    AuditVerdict out;
    if (seq != expect) {
      out = bad(expect, seq > expect ? "records missing before seq " + std::to_string(seq)
                                      : "sequence out of order at " + std::to_string(seq));
    } else if (stored_prev.size() != 32 || !std::equal(prev.begin(), prev.end(), stored_prev.begin())) {
      out = bad(seq, "previous-hash link broken");
    } else if (stored_hash.size() != 32) {
      out = bad(seq, "hash malformed");
    } else {
      const KeyHash h = chain_hash(prev, seq, record);
      if (!std::equal(h.begin(), h.end(), stored_hash.begin())) {
        out = bad(seq, "record does not match its hash (edited)");
      } else {
        // The indexed columns must say what the hashed record says, with
        // their declared types: a tenant stored as a BLOB would compare
        // equal as text here yet vanish from the filtered reads.
        const auto rec = nlohmann::json::parse(record, nullptr, false);
        const auto field = [&](const char* k) -> const nlohmann::json* {
          if (!rec.is_object()) return nullptr;
          auto it = rec.find(k);
          return it == rec.end() ? nullptr : &*it;
        };
        const nlohmann::json* kind = field("kind");
        const nlohmann::json* tenant = field("tenant");
        const nlohmann::json* ts = field("ts_ms");
        const bool typed = walk.type(1) == SQLITE_INTEGER && walk.type(2) == SQLITE_TEXT &&
                           walk.type(3) == SQLITE_TEXT && walk.type(4) == SQLITE_TEXT;
        if (!typed || !kind || !kind->is_string() || !tenant || !tenant->is_string() || !ts ||
            !ts->is_number_integer() || kind->get<std::string>() != walk.text(2) ||
            tenant->get<std::string>() != walk.text(3) || ts->get<std::int64_t>() != walk.int64(1)) {
          out = bad(seq, "indexed columns differ from the record");
        } else if (!anchor_problem.empty()) {
          out = bad(seq, anchor_problem);
        } else if (pending && pending->seq == seq && pending->hash != h) {
          out = bad(seq, "record differs from its anchor (the log was rewritten from here)");
        } else {
          if (pending && pending->seq == seq) {
            ++v.anchors;
            v.last_anchored = seq;
            advance();
          }
          prev = h;
          ++expect;
          ++v.records;
          continue;
        }
      }
    }
    out.records = v.records;
    out.head_hash = to_hex(prev.data(), prev.size());
    return out;
  }
  v.head_hash = to_hex(prev.data(), prev.size());
  if (!anchor_problem.empty()) {
    v.bad_seq = expect;
    v.problem = anchor_problem;
    return v;
  }
  if (pending) {
    // Anchors are checked in order as the walk passes them, so one left
    // names a record the chain ends before.
    v.bad_seq = pending->seq;
    v.problem = "records missing: seq " + std::to_string(pending->seq) + " was anchored but the log ends at seq " +
                std::to_string(expect - 1) + " (cut short)";
    return v;
  }
  // The chain is read from the table in seq order; tenants' reads
  // (/api/traffic) go through its indexes, where a record dropped from an
  // index vanishes from those reads while the chain stays whole.
  if (auto damage = index_damage(raw); !damage.empty()) {
    v.bad_seq = 0;
    v.problem = "the log's table or indexes are damaged (" + damage + "): reads through an index may miss records";
    return v;
  }
  if (anchors && v.anchors == 0 && v.records > 0) {
    // mcpd anchors its first commit at once: a log with records and a
    // file with no anchor is a file deleted, emptied or replaced (as
    // mcpd's start-up judges it too).
    v.bad_seq = v.records;
    v.problem = "the anchor file holds no anchor but the log holds " + std::to_string(v.records) +
                " records (the file was deleted, emptied or replaced; sluicectl audit anchor seeds it once the "
                "log is known intact)";
    return v;
  }
  v.ok = true;
  return v;
}

}  // namespace sluice::mcpd
