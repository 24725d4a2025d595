// The audit log's hash chain, on its own so that `sluicectl audit verify`
// can check a database without linking the daemon:
//   hash_n = SHA-256(hash_{n-1} || seq_n as 8 bytes big-endian || record_n)
// with hash_0 = 32 zero bytes.
#pragma once

#include <cstdint>
#include <string>

#include "keys.h"
#include "status.h"

namespace sluice::mcpd {

KeyHash chain_hash(const KeyHash& prev, std::int64_t seq, const std::string& record);

struct AuditVerdict {
  bool ok = false;
  std::int64_t records = 0;
  std::int64_t bad_seq = 0;  // first record that fails, 0 when ok
  std::string problem;
  std::string head_hash;  // hex hash of the last good record
};

// Walks the whole chain of the database at `path` (opened read-only).
Result<AuditVerdict> verify_audit(const std::string& path);

}  // namespace sluice::mcpd
