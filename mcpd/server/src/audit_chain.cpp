#include "audit_chain.h"

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

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

std::string anchor_line(std::int64_t seq, const KeyHash& hash) {
  return std::to_string(seq) + " " + to_hex(hash.data(), hash.size()) + "\n";
}

Result<std::vector<AuditAnchor>> parse_anchors(std::string_view text) {
  std::vector<AuditAnchor> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    const auto where = [&] { return "anchor line " + std::to_string(line_no) + ": "; };
    // A last line without its newline is a write cut short by a crash, or
    // something else: either way not an anchor to trust.
    if (nl == std::string_view::npos) return fail(where() + "not terminated by a newline");
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    const auto space = line.find(' ');
    AuditAnchor a;
    const std::string_view seq = line.substr(0, space);
    const auto [end, err] = std::from_chars(seq.data(), seq.data() + seq.size(), a.seq);
    if (space == std::string_view::npos || err != std::errc() || end != seq.data() + seq.size() || a.seq <= 0 ||
        seq.front() == '0') {
      return fail(where() + "malformed sequence number");
    }
    const std::string_view hex = line.substr(space + 1);
    if (hex.size() != 64) return fail(where() + "malformed hash");
    for (std::size_t i = 0; i < 32; ++i) {
      const auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
      };
      const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return fail(where() + "malformed hash");
      a.hash[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    if (!out.empty() && a.seq <= out.back().seq) return fail(where() + "sequence numbers do not increase");
    out.push_back(a);
  }
  return out;
}

Result<AuditVerdict> verify_audit(const std::string& path, const std::string& anchors_path) {
  std::vector<AuditAnchor> anchors;
  if (!anchors_path.empty()) {
    std::ifstream in(anchors_path, std::ios::binary);
    if (!in) return fail("cannot open " + anchors_path);
    std::ostringstream text;
    text << in.rdbuf();
    auto parsed = parse_anchors(text.str());
    if (!parsed) return fail(anchors_path + ": " + parsed.error().what);
    anchors = std::move(*parsed);
  }
  std::size_t next_anchor = 0;
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
        } else if (next_anchor < anchors.size() && anchors[next_anchor].seq == seq &&
                   !std::equal(h.begin(), h.end(), anchors[next_anchor].hash.begin())) {
          out = bad(seq, "record differs from its anchor (the log was rewritten from here)");
        } else {
          if (next_anchor < anchors.size() && anchors[next_anchor].seq == seq) {
            ++next_anchor;
            ++v.anchors;
          }
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
  v.head_hash = to_hex(prev.data(), prev.size());
  if (next_anchor < anchors.size()) {
    // Anchors are checked in order as the walk passes them, so the first
    // one left names a record the chain ends before.
    const AuditAnchor& missing = anchors[next_anchor];
    v.bad_seq = missing.seq;
    v.problem = "records missing: seq " + std::to_string(missing.seq) + " was anchored but the log ends at seq " +
                std::to_string(expect - 1) + " (cut short)";
    return v;
  }
  v.ok = true;
  return v;
}

}  // namespace sluice::mcpd
