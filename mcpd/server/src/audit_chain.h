// The audit log's hash chain, on its own so that `sluicectl audit verify`
// can check a database without linking the daemon:
//   hash_n = SHA-256(hash_{n-1} || seq_n as 8 bytes big-endian || record_n)
// with hash_0 = 32 zero bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// Every line must parse and seqs must increase: a malformed or
// out-of-order line is itself evidence of tampering.
Result<std::vector<AuditAnchor>> parse_anchors(std::string_view text);
std::string anchor_line(std::int64_t seq, const KeyHash& hash);

struct AuditVerdict {
  bool ok = false;
  std::int64_t records = 0;
  std::int64_t bad_seq = 0;  // first record that fails, 0 when ok
  std::string problem;
  std::string head_hash;  // hex hash of the last good record
  std::int64_t anchors = 0;  // anchors checked and matched
};

// Walks the whole chain of the database at `path` (opened read-only).
// With `anchors_path`, every anchor must name a record of the chain with
// that exact hash: a log cut short or rewritten behind an anchor fails.
Result<AuditVerdict> verify_audit(const std::string& path, const std::string& anchors_path = {});

}  // namespace sluice::mcpd
