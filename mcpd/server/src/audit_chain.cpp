#include "audit_chain.h"

#include <sqlite3.h>

#include <algorithm>

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

Result<AuditVerdict> verify_audit(const std::string& path) {
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(raw);
    return fail("cannot open " + path);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(raw, kWalk, -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(raw);
    sqlite3_close_v2(raw);
    return fail("not an audit database: " + msg);
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
    if (!row) {
      sqlite3_close_v2(raw);
      return tl::unexpected(row.error());
    }
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
        } else {
          prev = h;
          ++expect;
          ++v.records;
          continue;
        }
      }
    }
    sqlite3_close_v2(raw);
    out.records = v.records;
    out.head_hash = to_hex(prev.data(), prev.size());
    return out;
  }
  sqlite3_close_v2(raw);
  v.ok = true;
  v.head_hash = to_hex(prev.data(), prev.size());
  return v;
}

}  // namespace sluice::mcpd
