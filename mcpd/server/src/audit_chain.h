// The audit log's hash chain, on its own so that `sluicectl audit verify`
// can check a database without linking the daemon:
//   hash_n = SHA-256(hash_{n-1} || seq_n as 8 bytes big-endian || record_n)
// with hash_0 = 32 zero bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "keys.h"
#include "status.h"

namespace sluice::mcpd {

KeyHash chain_hash(const KeyHash& prev, std::int64_t seq, const std::string& record);

// A chain head written outside the database: cutting records off the
// end of the log leaves a valid shorter chain, which only a head kept
// elsewhere can expose. The anchor file holds one line per anchor,
//   <seq> <hash as 64 lowercase hex>\n
// with seqs strictly increasing. It is meant to be append-only
// (chattr +a): the mcpd user can add lines but never remove one.
struct AuditAnchor {
  std::int64_t seq = 0;
  KeyHash hash{};
};

// The anchor file's name, in the directory of the database it anchors.
inline constexpr std::string_view kAnchorsFileName = "audit.anchors";
std::string anchors_beside(std::string_view database_path);

// The key of the arguments digest in tool-call records (`args_hmac`): 32
// random bytes, as hex, in a file of its own beside the database (0600),
// made on mcpd's first start. A record's digest is HMAC-SHA-256 under it
// of the record's nonce (`args_nonce`, unique to the record), the record's
// tenant, credential and tool (as the record names them), and the
// arguments as canonical JSON (sorted keys), each length-prefixed: a digest
// copied onto another record (with its nonce) vouches for nothing there
// unless that record names the same tenant, key and tool. Whoever holds the key
// (`sluicectl audit digest`) can confirm that a given record was made with
// given arguments; a reader of the log alone (a tenant admin, the journal,
// a copy of the database) can neither test guesses, as anyone could
// against a plain hash of a customer id, nor tell that two records carry
// the same arguments, nor learn another user's arguments by making the
// same call and comparing digests (each record's nonce differs).
inline constexpr std::string_view kDigestKeyFileName = "audit-digest.key";
std::string digest_key_beside(std::string_view database_path);
// Reads the key; with `create`, makes it first if there is none. Never
// through a link; anything but a regular file of one key is refused.
Result<KeyHash> load_digest_key(const std::string& path, bool create);
// What a digest is bound to besides the arguments.
struct DigestContext {
  std::string_view tenant, credential, tool;
};
// An empty nonce digests the arguments alone (the context unused): records
// written before nonces (2026-12-07) have none.
std::string digest_arguments(const KeyHash& key, std::string_view nonce, const DigestContext& context,
                             const nlohmann::json& args);

// Nonces for args_hmac: a random prefix drawn once per process and a
// counter, so never the same twice (in practice, across restarts too)
// without a getrandom call per record. Thread-safe.
class DigestNonces {
 public:
  DigestNonces();
  std::string next();

 private:
  std::string prefix_;  // 16 hex digits
  std::atomic<std::uint64_t> counter_{0};
};

// One record of the audit log at `seq`, read-only; an error when the
// database or the record cannot be read.
Result<nlohmann::json> read_audit_record(const std::string& database_path, std::int64_t seq);

// The one process that writes the database at a path holds this lock (an
// flock of "mcpd.lock" beside the database) for as long as it does:
// sluice-mcpd while it runs, `sluicectl audit anchor` while it seeds. A
// second mcpd on the same data, or a seeding beside a running mcpd, is
// refused. Released when destroyed (and by the kernel when the holder dies).
inline constexpr std::string_view kLockFileName = "mcpd.lock";
class DatabaseLock {
 public:
  // Refused when another process holds the lock, or the file cannot be made.
  static Result<DatabaseLock> take(std::string_view database_path);
  DatabaseLock(DatabaseLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  DatabaseLock& operator=(DatabaseLock&&) = delete;
  ~DatabaseLock();

 private:
  explicit DatabaseLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// One line's anchor ("<seq> <64 lowercase hex>", no newline).
Result<AuditAnchor> parse_anchor_line(std::string_view line);
std::string anchor_line(std::int64_t seq, const KeyHash& hash);

// Reads an anchor file in order, one line at a time (the file grows for as
// long as the log lives). Every line must parse and seqs must increase: a
// malformed, torn or backward line is itself evidence of tampering. A line
// identical to the one before it (a write retried after its sync failed)
// is skipped.
class AnchorReader {
 public:
  // `path` must name a regular file. A reader reads the file as long as it
  // was when opened: the anchors a running mcpd appends later name
  // records past what a walk begun after the open may see.
  static Result<AnchorReader> open(const std::string& path);
  // Reads the regular file behind `fd` from its start, leaving `fd` open.
  static Result<AnchorReader> over(int fd);
  AnchorReader(AnchorReader&& o) noexcept;
  AnchorReader& operator=(AnchorReader&&) = delete;
  AnchorReader(const AnchorReader&) = delete;
  ~AnchorReader();

  // The next anchor; nullopt at the end of the file. Errors name the line.
  Result<std::optional<AuditAnchor>> next();

 private:
  AnchorReader(int fd, bool owned, std::int64_t size) : fd_(fd), owned_(owned), size_(size) {}
  int fd_ = -1;
  bool owned_ = false;
  std::int64_t size_ = 0;    // of the file when opened: read no further
  std::int64_t offset_ = 0;  // of the file, read so far
  bool eof_ = false;
  std::string buf_;
  std::size_t pos_ = 0;
  std::int64_t line_ = 0;
  std::optional<AuditAnchor> prev_;
};

struct AuditVerdict {
  bool ok = false;
  std::int64_t records = 0;
  std::int64_t bad_seq = 0;  // first record that fails, 0 when ok
  std::string problem;
  std::string head_hash;  // hex hash of the last good record
  std::int64_t anchors = 0;  // anchors checked and matched
  std::int64_t last_anchored = 0;  // seq of the last anchor matched; records after it are covered by none
};

// Seeds an anchor file that holds no anchor (deleted, replaced, or
// anchoring turned on for a log that has records) with the head of the
// log at `db_path`, once its whole chain verifies. Refused when the file
// holds anchors already, the chain is broken, or a sluice-mcpd holds the
// database's lock. The anchor written.
Result<AuditAnchor> seed_anchors(const std::string& db_path, const std::string& anchors_path);

// Walks the whole chain of the database at `path` (opened read-only).
// With `anchors_path`, every anchor must name a record of the chain with
// that exact hash: a log cut short or rewritten behind an anchor fails, and
// so does an anchor file with a bad line (a verdict, not an error; only a
// file that cannot be opened is an error).
Result<AuditVerdict> verify_audit(const std::string& path, const std::string& anchors_path = {});

}  // namespace sluice::mcpd
