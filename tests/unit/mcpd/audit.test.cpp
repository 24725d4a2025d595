#include "audit.h"

#include <sqlite3.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <memory>
#include <catch2/catch.hpp>

#include "power_cut.h"
#include "refusals.h"
#include "sql.h"
#include "store.h"
#include "sqlite_files.h"
#include "temp_dir.h"
#include "temp_files.h"

using namespace sluice::mcpd;
using sluice::testing::PowerCut;
using sluice::testing::TempDir;
using sluice::testing::exec_sql;

namespace {

AuditOptions opts(std::size_t max_batch, std::size_t max_pending) {
  AuditOptions o;
  o.max_batch = max_batch;
  o.max_pending = max_pending;
  o.journal = false;
  return o;
}

// Writes n records and waits until all are durable.
void write(AuditLog& log, int n, const std::string& tenant = "acme") {
  std::vector<std::future<std::optional<std::int64_t>>> done;
  for (int i = 0; i < n; ++i) {
    auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
    done.push_back(p->get_future());
    log.append({{"kind", "tool_call"}, {"tenant", tenant}, {"tool", "run_query"}, {"i", i}},
               [p](std::optional<std::int64_t> seq) { p->set_value(seq); });
  }
  for (auto& f : done) REQUIRE(f.get());
}

}  // namespace

TEST_CASE("mcpd::AuditLog chains records and verify_audit finds any tampering", "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  {
    auto log = AuditLog::open(db, opts(64, 65536));
    REQUIRE(log);
    write(**log, 20);
  }
  auto clean = verify_audit(db);
  REQUIRE(clean);
  REQUIRE(clean->ok);
  CHECK(clean->records == 20);

  SECTION("an edited record breaks the chain at that record") {
    exec_sql(db, "UPDATE audit SET record = replace(record, 'run_query', 'list_entities') WHERE seq = 7");
    auto v = verify_audit(db);
    REQUIRE(v);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 7);
    CHECK(v->records == 6);
  }
  SECTION("an edited indexed column is caught too") {
    exec_sql(db, "UPDATE audit SET tenant = 'other' WHERE seq = 3");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 3);
  }
  SECTION("a deleted record leaves a gap") {
    exec_sql(db, "DELETE FROM audit WHERE seq = 11");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 11);
  }
  SECTION("an inserted record does not link") {
    exec_sql(db, "UPDATE audit SET seq = seq + 100 WHERE seq >= 5");
    exec_sql(db, "UPDATE audit SET seq = seq - 99 WHERE seq >= 105");
    exec_sql(db, "INSERT INTO audit(seq, ts_ms, kind, tenant, record, prev_hash, hash) "
             "SELECT 5, ts_ms, kind, tenant, record, prev_hash, hash FROM audit WHERE seq = 4");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 5);
  }
  SECTION("two records swapped are out of chain") {
    exec_sql(db, "UPDATE audit SET seq = -1 WHERE seq = 9");
    exec_sql(db, "UPDATE audit SET seq = 9 WHERE seq = 10");
    exec_sql(db, "UPDATE audit SET seq = 10 WHERE seq = -1");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 9);
  }
  SECTION("a recomputed hash for an edit still breaks the next link") {
    exec_sql(db, "UPDATE audit SET record = replace(record, 'acme', 'evil'), tenant = 'evil' WHERE seq = 12");
    // The attacker cannot produce hash_12 without rewriting every later
    // record; rewriting hash_12 alone breaks record 13's link.
    exec_sql(db, "UPDATE audit SET hash = zeroblob(32) WHERE seq = 12");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 12);
  }
  SECTION("a column retyped to hide a record from filtered reads is caught") {
    // The table is STRICT; an attacker with the file rebuilds it without.
    exec_sql(db, "CREATE TABLE loose AS SELECT * FROM audit; DROP TABLE audit; ALTER TABLE loose RENAME TO audit");
    exec_sql(db, "UPDATE audit SET tenant = CAST(tenant AS BLOB) WHERE seq = 4");
    auto v = verify_audit(db);
    CHECK_FALSE(v->ok);
    CHECK(v->bad_seq == 4);
  }
  SECTION("a record dropped from the tenant index, hidden from tenants' reads, is caught") {
    // The index rebuilt as a partial one without seq 7, then declared whole
    // again: the table (and so the chain) is untouched.
    const std::string index = "CREATE INDEX audit_tenant ON audit(tenant, seq)";
    exec_sql(db, "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = '" + index +
                     " WHERE seq <> 7' WHERE name = 'audit_tenant'");
    exec_sql(db, "REINDEX audit_tenant");
    exec_sql(db, "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = '" + index + "' WHERE name = 'audit_tenant'");
    auto log = AuditLog::open(db, opts(64, 65536));
    REQUIRE(log);
    CHECK((*log)->read("acme", 100, 0, "")->size() == 20);  // a full scan still sees it...
    auto v = verify_audit(db);
    REQUIRE(v);
    CHECK_FALSE(v->ok);
    CHECK(v->records == 20);  // ...and the chain is whole
    CHECK(v->problem.find("indexes are damaged") != std::string::npos);
    CHECK(v->problem.find("audit_tenant") != std::string::npos);
  }
  SECTION("a damaged index whose name holds terminal escapes is named in printable text only") {
    // Whoever writes the database names its indexes; root reads the verdict.
    const std::string name = "evil\x1b[2Jintact";
    const std::string index = "CREATE INDEX \"" + name + "\" ON audit(kind, seq)";
    exec_sql(db, index);
    exec_sql(db, "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = '" + index + " WHERE seq <> 3' WHERE type = 'index' AND name = '" + name + "'");
    exec_sql(db, "REINDEX \"" + name + "\"");
    exec_sql(db, "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = '" + index + "' WHERE type = 'index' AND name = '" + name + "'");
    auto v = verify_audit(db);
    REQUIRE(v);
    CHECK_FALSE(v->ok);
    CHECK(v->problem.find("evil?[2Jintact") != std::string::npos);
    CHECK(v->problem.find('\x1b') == std::string::npos);
  }
  SECTION("a reopened log continues the same chain") {
    auto log = AuditLog::open(db, opts(64, 65536));
    REQUIRE(log);
    write(**log, 5);
    log->reset();
    auto v = verify_audit(db);
    REQUIRE(v->ok);
    CHECK(v->records == 25);
  }
}

TEST_CASE("mcpd::AuditLog commits concurrent appends in groups, each acknowledged once durable",
          "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  auto log = AuditLog::open(db, opts(256, 65536));
  REQUIRE(log);
  // Catch's assertions are for the test's own thread: the writers only
  // count what was acknowledged.
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::future<std::optional<std::int64_t>>> done;
      for (int i = 0; i < 250; ++i) {
        auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
        done.push_back(p->get_future());
        (*log)->append({{"kind", "tool_call"}, {"tenant", "t" + std::to_string(t)}, {"tool", "run_query"}, {"i", i}},
                       [p](std::optional<std::int64_t> seq) { p->set_value(seq); });
      }
      for (auto& f : done) acknowledged += f.get() ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(acknowledged == 1000);
  CHECK((*log)->committed() == 1000);
  auto records = (*log)->read("t2", 1000, 0, "");
  REQUIRE(records);
  CHECK(records->size() == 250);
  CHECK((*records)[0]["seq"].get<std::int64_t>() > (*records)[1]["seq"].get<std::int64_t>());
  log->reset();
  auto v = verify_audit(db);
  REQUIRE(v->ok);
  CHECK(v->records == 1000);
}

TEST_CASE("mcpd::AuditLog loses no acknowledged record to a power cut, and opens again after one",
          "[mcpd][audit]") {
  // Four threads append as fast as the log takes them; the power goes at
  // a random moment. What comes back must hold every record acknowledged
  // by then, intact and chained, and the log must open on it and go on.
  // Torn: any subset of the writes no sync covered made it to the disk.
  std::random_device seeds;
  for (const bool torn : {false, true}) {
    for (int round = 0; round < 3; ++round) {
      const std::uint32_t seed = seeds();
      INFO("torn " << torn << ", seed " << seed);
      TempDir dir;
      PowerCut power([] { (void)memory_temp_vfs(); });  // the data sources' VFS keeps the real default VFS
      const std::string db = dir.file("mcpd.db");
      REQUIRE(Store::open(db));
      auto log = AuditLog::open(db, opts(64, 65536));
      REQUIRE(log);
      std::map<std::int64_t, std::string> acked;  // seq -> the record's "who", under power.locked
      std::atomic<bool> go{true};
      std::vector<std::thread> writers;
      for (int t = 0; t < 4; ++t) {
        writers.emplace_back([&, t] {
          for (int i = 0; go; ++i) {
            auto p = std::make_shared<std::promise<void>>();
            auto done = p->get_future();
            const std::string who = std::to_string(t) + ":" + std::to_string(i);
            (*log)->append({{"kind", "tool_call"}, {"tenant", "acme"}, {"who", who}},
                           [&, p, who](std::optional<std::int64_t> seq) {
                             if (seq) power.locked([&] { acked.emplace(*seq, who); });
                             p->set_value();
                           });
            done.wait();
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + seed % 200));
      std::map<std::int64_t, std::string> acked_at_cut;
      const auto files = power.cut(torn, seed, [&] { acked_at_cut = acked; });
      go = false;
      for (auto& w : writers) w.join();
      log->reset();
      REQUIRE(acked_at_cut.size() > 0);

      TempDir after;
      PowerCut::restore(files, after.path());
      const std::string copy = after.file("mcpd.db");
      {
        auto reopened = AuditLog::open(copy, opts(64, 65536));  // recovers the WAL, as mcpd's restart would
        REQUIRE(reopened);
        write(**reopened, 3);
      }
      auto v = verify_audit(copy);
      REQUIRE(v);
      INFO(v->problem << " at " << v->bad_seq << " of " << v->records);
      REQUIRE(v->ok);
      CHECK(v->records >= static_cast<std::int64_t>(acked_at_cut.size()) + 3);
      auto records = Db::open(copy, false);
      REQUIRE(records);
      auto stmt = records->prepare("SELECT record FROM audit WHERE seq = ?");
      REQUIRE(stmt);
      std::size_t missing = 0;
      for (const auto& [seq, who] : acked_at_cut) {
        stmt->reset();
        stmt->bind(1, seq);
        auto row = stmt->step();
        REQUIRE(row);
        if (!*row || nlohmann::json::parse(stmt->text(0)).value("who", "") != who) ++missing;
      }
      CHECK(missing == 0);
      CHECK(power.syncs() > 0);
    }
  }
}

TEST_CASE("mcpd::AuditLog fails the records of a commit whose sync failed, and the chain goes on without them",
          "[mcpd][audit]") {
  TempDir dir;
  PowerCut power([] { (void)memory_temp_vfs(); });
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  auto log = AuditLog::open(db, opts(64, 65536));
  REQUIRE(log);
  const auto append = [&](const std::string& who) {
    std::promise<std::optional<std::int64_t>> p;
    auto done = p.get_future();
    (*log)->append({{"kind", "tool_call"}, {"tenant", "acme"}, {"who", who}},
                   [&p](std::optional<std::int64_t> seq) { p.set_value(seq); });
    return done.get();
  };
  // The first commit into a fresh WAL (its header written anew), then one
  // later on: each failed sync loses what it was to cover.
  power.fail_syncs(1);
  CHECK_FALSE(append("lost first"));
  REQUIRE(append("before") == 1);
  power.fail_syncs(1);
  CHECK_FALSE(append("lost"));  // its call fails closed
  CHECK((*log)->failed() == 2);
  REQUIRE(append("after") == 2);  // the seq the failed record would have had
  // What the disk holds after a cut now, and what the log reads: the
  // failed record in neither.
  TempDir after;
  PowerCut::restore(power.cut(false, 1), after.path());
  log->reset();
  for (const std::string& path : {db, after.file("mcpd.db")}) {
    INFO(path);
    auto v = verify_audit(path);
    REQUIRE(v);
    CHECK(v->ok);
    CHECK(v->records == 2);
    auto reopened = AuditLog::open(path, opts(64, 65536));
    REQUIRE(reopened);
    auto records = (*reopened)->read("acme", 10, 0, "");
    REQUIRE(records);
    REQUIRE(records->size() == 2);
    CHECK((*records)[0]["who"] == "after");
    CHECK((*records)[1]["who"] == "before");
  }
}

TEST_CASE("mcpd::AuditLog holds a commit back for announced calls, never for others",
          "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  AuditOptions options;
  options.journal = false;
  options.coalesce = std::chrono::seconds(30);  // only the announcements end the wait
  auto log = AuditLog::open(db, options);
  REQUIRE(log);
  const auto record = [](int i) {
    return nlohmann::json{{"kind", "tool_call"}, {"tenant", "t"}, {"i", i}};
  };
  std::vector<std::future<std::optional<std::int64_t>>> acks;
  const auto append = [&](int i, AuditLog::Expected* e) {
    auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
    acks.push_back(p->get_future());
    (*log)->append(record(i), [p](std::optional<std::int64_t> seq) { p->set_value(seq); }, e);
  };
  {
    AuditLog::Expected a(**log), b(**log), c(**log);
    append(0, &a);
    append(1, &b);
    append(2, &c);  // the last announced record: the group goes out
  }
  for (auto& f : acks) REQUIRE(f.get());
  CHECK((*log)->committed() == 3);
  CHECK((*log)->commits() == 1);

  // An announced call that ends without a record releases the writer too.
  acks.clear();
  {
    AuditLog::Expected gone(**log);
    append(3, nullptr);
  }
  REQUIRE(acks[0].wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(acks[0].get());
  CHECK((*log)->commits() == 2);
}

TEST_CASE("mcpd::verify_audit refuses what is not an audit database", "[mcpd][audit]") {
  TempDir dir;
  CHECK_FALSE(verify_audit(dir.file("missing.db")));
  exec_sql(dir.file("other.db"), "CREATE TABLE x(a)");
  CHECK_FALSE(verify_audit(dir.file("other.db")));
}

TEST_CASE("mcpd::AuditLog survives hostile text in a record", "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  auto log = AuditLog::open(db, opts(64, 65536));
  REQUIRE(log);
  auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
  auto done = p->get_future();
  (*log)->append({{"kind", "auth_failure"}, {"tenant", ""}, {"user_agent", std::string("\xff\xfe")}},
                 [p](std::optional<std::int64_t> seq) { p->set_value(seq); });
  CHECK(done.get());
  write(**log, 3);  // and the writer is still there
  log->reset();
  CHECK(verify_audit(db)->ok);
}

TEST_CASE("mcpd::AuditLog keeps best-effort records out of a crowded queue", "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  SECTION("with room they are written like any other") {
    auto log = AuditLog::open(db, opts(64, 65536));
    REQUIRE(log);
    (*log)->append_best_effort({{"kind", "auth_failure"}, {"tenant", ""}});
    write(**log, 1);  // the writer is FIFO: once this is durable, so is the one before
    CHECK((*log)->dropped() == 0);
    auto records = (*log)->read("", 10, 0, "auth_failure");
    REQUIRE(records);
    CHECK(records->size() == 1);
  }
  SECTION("past half the queue they are dropped and counted, never blocking a call's record") {
    auto log = AuditLog::open(db, opts(64, 1));  // half of 1 is 0: no room for best effort
    REQUIRE(log);
    (*log)->append_best_effort({{"kind", "auth_failure"}, {"tenant", ""}});
    CHECK((*log)->dropped() == 1);
    write(**log, 1);
    CHECK((*log)->read("", 10, 0, "auth_failure")->empty());
  }
}

namespace {

// Every anchor of a file, read as mcpd and verify read it.
Result<std::vector<AuditAnchor>> read_anchors(AnchorReader reader) {
  std::vector<AuditAnchor> out;
  while (true) {
    auto a = reader.next();
    if (!a) return tl::unexpected(a.error());
    if (!*a) return out;
    out.push_back(**a);
  }
}

Result<std::vector<AuditAnchor>> read_anchors(const std::string& path) {
  auto r = AnchorReader::open(path);
  if (!r) return tl::unexpected(r.error());
  return read_anchors(std::move(*r));
}

// The anchors in `text`, as if it were an anchor file's whole content.
Result<std::vector<AuditAnchor>> anchors_in(const std::string& text) {
  const int fd = ::memfd_create("anchors", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  auto r = AnchorReader::over(fd);
  auto out = r ? read_anchors(std::move(*r)) : tl::unexpected(r.error());
  ::close(fd);
  return out;
}

AuditOptions anchored(const std::string& anchors, std::chrono::milliseconds interval = std::chrono::seconds(60)) {
  AuditOptions o = opts(64, 65536);
  o.anchors = anchors;
  o.anchor_interval = interval;
  return o;
}

// A database whose log holds `records` records, written through an
// anchored AuditLog that has stopped (which anchored its head).
struct AnchoredLog {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  const std::string anchors = dir.file("audit.anchors");
  explicit AnchoredLog(int records) {
    REQUIRE(Store::open(db));
    auto log = AuditLog::open(db, anchored(anchors));
    REQUIRE(log);
    write(**log, records);
  }
};

// Tampering from record `from` on that the chain alone cannot show:
// verify names the first anchor it reaches (the log anchors its first
// commit at once, then every minute and at its stop, so which one that is
// depends on how the writes were grouped), and the log will not open on
// it (new records would bury the evidence).
void expect_caught(const std::string& db, const std::string& anchors, std::int64_t from, std::string_view verdict,
                   std::string_view refusal) {
  CHECK(verify_audit(db)->ok);
  auto lines = read_anchors(anchors);
  REQUIRE(lines);
  const auto first = std::find_if(lines->begin(), lines->end(), [from](const auto& a) { return a.seq >= from; });
  REQUIRE(first != lines->end());
  auto v = verify_audit(db, anchors);
  REQUIRE(v);
  CHECK_FALSE(v->ok);
  CHECK(v->bad_seq == first->seq);
  CHECK(v->problem.find(verdict) != std::string::npos);
  auto reopened = AuditLog::open(db, anchored(anchors));
  REQUIRE_FALSE(reopened);
  CHECK(reopened.error().what.find(refusal) != std::string::npos);
}

// What an attacker with the database file does to hide a record: edit it
// and recompute every hash from there on, leaving a valid chain.
void rewrite_and_rechain(const std::string& db, std::int64_t seq) {
  exec_sql(db, "UPDATE audit SET record = replace(record, 'run_query', 'list_entities') WHERE seq = " +
               std::to_string(seq));
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_stmt* rows = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT seq, record, prev_hash FROM audit WHERE seq >= ? ORDER BY seq", -1, &rows,
                             nullptr) == SQLITE_OK);
  sqlite3_bind_int64(rows, 1, seq);
  std::vector<std::pair<std::int64_t, std::string>> tail;
  KeyHash prev{};
  while (sqlite3_step(rows) == SQLITE_ROW) {
    if (tail.empty()) std::memcpy(prev.data(), sqlite3_column_blob(rows, 2), 32);
    tail.emplace_back(sqlite3_column_int64(rows, 0), reinterpret_cast<const char*>(sqlite3_column_text(rows, 1)));
  }
  sqlite3_finalize(rows);
  for (const auto& [s, record] : tail) {
    const KeyHash hash = chain_hash(prev, s, record);
    sqlite3_stmt* up = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", -1, &up, nullptr) ==
            SQLITE_OK);
    sqlite3_bind_blob(up, 1, prev.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(up, 2, hash.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up, 3, s);
    REQUIRE(sqlite3_step(up) == SQLITE_DONE);
    sqlite3_finalize(up);
    prev = hash;
  }
  sqlite3_close(h);
}

}  // namespace

TEST_CASE("mcpd::verify_audit refuses a link or a FIFO where mcpd's user put one, without waiting on it",
          "[mcpd][audit]") {
  // sluicectl runs as root on files in a directory mcpd's user owns: a
  // FIFO at the database, its -wal or its -shm would hang it for good.
  const AnchoredLog written(3);  // its anchors are not read here
  const TempDir& dir = written.dir;
  const std::string& db = written.db;
  REQUIRE(verify_audit(db));
  REQUIRE(::symlink(db.c_str(), dir.file("link.db").c_str()) == 0);
  auto linked = verify_audit(dir.file("link.db"));
  REQUIRE_FALSE(linked);
  for (const std::string suffix : {"-wal", "-shm"}) {
    INFO(suffix);
    ::unlink((db + suffix).c_str());
    REQUIRE(::mkfifo((db + suffix).c_str(), 0600) == 0);
    auto v = verify_audit(db);
    REQUIRE_FALSE(v);
    CHECK(v.error().what.find("not a plain file") != std::string::npos);
    CHECK_FALSE(read_audit_record(db, 1));
    ::unlink((db + suffix).c_str());
  }
  REQUIRE(::mkfifo(dir.file("fifo.db").c_str(), 0600) == 0);
  CHECK_FALSE(verify_audit(dir.file("fifo.db")));
}

TEST_CASE("mcpd::AnchorReader reads only well-formed, increasing anchor lines", "[mcpd][audit]") {
  const std::string h(64, 'a');
  SECTION("good lines parse") {
    auto a = anchors_in("1 " + h + "\n17 " + std::string(64, '0') + "\n");
    REQUIRE(a);
    REQUIRE(a->size() == 2);
    CHECK((*a)[1].seq == 17);
    CHECK((*a)[0].hash[0] == 0xaa);
    CHECK(anchors_in("")->empty());
    // A line repeated exactly is a write retried after its sync failed.
    auto repeated = anchors_in("2 " + h + "\n2 " + h + "\n3 " + h + "\n");
    REQUIRE(repeated);
    CHECK(repeated->size() == 2);
  }
  SECTION("anything else is refused, with its line number") {
    for (const std::string& bad :
         {"1 " + h, "0 " + h + "\n", "01 " + h + "\n", "-1 " + h + "\n", "x " + h + "\n", "1  " + h + "\n",
          "1 " + std::string(64, 'A') + "\n", "1 " + h.substr(1) + "\n", "1 " + h + "0\n", "1 " + h + "\r\n",
          "2 " + h + "\n2 " + std::string(64, 'b') + "\n", "3 " + h + "\n2 " + h + "\n",
          "99999999999999999999 " + h + "\n", "+1 " + h + "\n"}) {
      INFO(bad);
      CHECK_FALSE(anchors_in(bad));
    }
    auto e = anchors_in("1 " + h + "\n2 zz\n");
    REQUIRE_FALSE(e);
    CHECK(e.error().what.find("line 2") != std::string::npos);
  }
  SECTION("a line is what anchor_line writes") {
    KeyHash k{};
    k[31] = 0x0f;
    auto a = anchors_in(anchor_line(42, k));
    REQUIRE(a);
    CHECK((*a)[0].seq == 42);
    CHECK((*a)[0].hash == k);
  }
}

TEST_CASE("mcpd::AuditLog anchors its head outside the database, and a log cut short is caught",
          "[mcpd][audit]") {
  const AnchoredLog logged(20);
  const std::string& db = logged.db;
  const std::string& anchors = logged.anchors;
  auto lines = read_anchors(anchors);
  REQUIRE(lines);
  REQUIRE_FALSE(lines->empty());
  CHECK(lines->back().seq == 20);
  auto clean = verify_audit(db, anchors);
  REQUIRE(clean);
  CHECK(clean->ok);
  CHECK(clean->anchors == static_cast<std::int64_t>(lines->size()));
  CHECK(clean->last_anchored == 20);

  SECTION("records cut off the end: the chain alone looks intact, the anchors do not") {
    exec_sql(db, "DELETE FROM audit WHERE seq > 15");
    expect_caught(db, anchors, 16, "cut short", "cut off");
  }
  SECTION("a record rewritten and the chain recomputed behind an anchor") {
    rewrite_and_rechain(db, 12);
    expect_caught(db, anchors, 12, "differs from its anchor", "rewritten");
  }
  SECTION("a reopened log goes on anchoring the same chain") {
    {
      auto log = AuditLog::open(db, anchored(anchors));
      REQUIRE(log);
      CHECK((*log)->unanchored_at_open() == 0);  // a clean stop anchored the head
      write(**log, 5);
    }
    auto v = verify_audit(db, anchors);
    REQUIRE(v);
    CHECK(v->ok);
    CHECK(read_anchors(anchors)->back().seq == 25);
  }
  SECTION("a record added after the last anchor while the log was closed is reported, not hidden") {
    // A chain cannot tell it from one committed just before a crash; what
    // the log can do is say how many records no anchor covered.
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT hash FROM audit WHERE seq = 20", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    KeyHash prev{};
    std::memcpy(prev.data(), sqlite3_column_blob(st, 0), 32);
    sqlite3_finalize(st);
    const std::string record = R"({"ts_ms":1,"kind":"tool_call","tenant":"acme","tool":"run_query"})";
    const KeyHash h21 = chain_hash(prev, 21, record);
    REQUIRE(sqlite3_prepare_v2(h, "INSERT INTO audit(seq, ts_ms, kind, tenant, record, prev_hash, hash) "
                                  "VALUES (21, 1, 'tool_call', 'acme', ?, ?, ?)", -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, record.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, prev.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, h21.data(), 32, SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
    auto v = verify_audit(db, anchors);
    REQUIRE(v);
    CHECK(v->ok);
    CHECK(v->records == 21);
    CHECK(v->last_anchored == 20);
    auto log = AuditLog::open(db, anchored(anchors));
    REQUIRE(log);
    CHECK((*log)->unanchored_at_open() == 1);
  }
  SECTION("a torn last line keeps the log closed and fails verify") {
    std::ofstream(anchors, std::ios::app) << "21 " << std::string(10, 'a');
    CHECK_FALSE(AuditLog::open(db, anchored(anchors)));
    auto v = verify_audit(db, anchors);
    REQUIRE(v);  // a verdict, not an unreadable file
    CHECK_FALSE(v->ok);
    CHECK(v->problem.find("torn") != std::string::npos);
  }
  SECTION("an older head appended after cutting the log back to it is caught") {
    // The attacker may append: cut the log to 15, then append 15's own
    // anchor so that the last line names a record that exists.
    exec_sql(db, "DELETE FROM audit WHERE seq > 15");
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT hash FROM audit WHERE seq = 15", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    KeyHash k{};
    std::memcpy(k.data(), sqlite3_column_blob(st, 0), 32);
    sqlite3_finalize(st);
    sqlite3_close(h);
    std::ofstream(anchors, std::ios::app) << anchor_line(15, k);
    auto reopened = AuditLog::open(db, anchored(anchors));
    REQUIRE_FALSE(reopened);
    CHECK(reopened.error().what.find("anchors must increase") != std::string::npos);
    auto v = verify_audit(db, anchors);
    REQUIRE(v);
    CHECK_FALSE(v->ok);
  }
}

TEST_CASE("mcpd::AuditLog refuses a log with records whose anchor file holds none, until it is seeded",
          "[mcpd][audit]") {
  const auto refused = [](const Result<AuditAnchor>& r, std::string_view why) {
    REQUIRE_FALSE(r);
    CHECK(r.error().what.find(why) != std::string::npos);
  };
  {
    const AnchoredLog empty(0);
    refused(seed_anchors(empty.db, empty.anchors), "holds no record");
  }
  const AnchoredLog logged(10);
  const std::string& db = logged.db;
  const std::string& anchors = logged.anchors;
  refused(seed_anchors(db, anchors), "holds anchors already");
  // The file deleted (where it was not append-only), the log cut short:
  // mcpd would make a new empty file and start; it refuses instead.
  REQUIRE(std::remove(anchors.c_str()) == 0);
  exec_sql(db, "DELETE FROM audit WHERE seq > 7");
  auto reopened = AuditLog::open(db, anchored(anchors));
  REQUIRE_FALSE(reopened);
  CHECK(reopened.error().what.find("holds no anchor") != std::string::npos);
  // An operator who knows the log (now 7 records) is intact seeds the file.
  auto seeded = seed_anchors(db, anchors);
  REQUIRE(seeded);
  CHECK(seeded->seq == 7);
  auto log = AuditLog::open(db, anchored(anchors));
  REQUIRE(log);
  write(**log, 1);
  log->reset();
  auto v = verify_audit(db, anchors);
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->records == 8);
  // A broken chain is never anchored.
  REQUIRE(std::remove(anchors.c_str()) == 0);
  exec_sql(db, "UPDATE audit SET record = replace(record, 'acme', 'evil') WHERE seq = 3");
  refused(seed_anchors(db, anchors), "broken at seq 3");
}

TEST_CASE("mcpd::DatabaseLock: one holder per database; seeding anchors waits for none", "[mcpd][audit]") {
  const AnchoredLog logged(3);
  REQUIRE(std::remove(logged.anchors.c_str()) == 0);
  {
    auto held = DatabaseLock::take(logged.db);
    REQUIRE(held);
    auto second = DatabaseLock::take(logged.db);
    REQUIRE_FALSE(second);
    CHECK(second.error().what.find("mcpd.lock is held") != std::string::npos);
    auto seeded = seed_anchors(logged.db, logged.anchors);
    REQUIRE_FALSE(seeded);
    CHECK(seeded.error().what.find("not seeded") != std::string::npos);
    // The lock is the database's, not the process's: another database is free.
    const AnchoredLog other(1);
    CHECK(DatabaseLock::take(other.db));
  }
  // Released with its holder.
  CHECK(DatabaseLock::take(logged.db));
  {
    // A FIFO planted at the lock's name neither blocks nor passes.
    const AnchoredLog fifo(1);
    REQUIRE(::mkfifo(fifo.dir.file("mcpd.lock").c_str(), 0600) == 0);
    auto refused = DatabaseLock::take(fifo.db);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().what.find("not a regular file") != std::string::npos);
  }
  // Made by root (sluicectl) in a directory of mcpd's user, the lock is
  // that user's (the directory's owner: the database's could be a link's
  // choosing): mcpd must be able to open it.
  if (::geteuid() == 0) {
    const AnchoredLog theirs(1);
    const std::string lock = theirs.dir.file("mcpd.lock");
    REQUIRE(::chown(theirs.dir.path().c_str(), 65534, 65534) == 0);  // the directory is mcpd's user's
    REQUIRE(DatabaseLock::take(theirs.db));
    struct stat st {};
    REQUIRE(::stat(lock.c_str(), &st) == 0);
    CHECK(st.st_uid == 65534);
    CHECK((st.st_mode & 0777) == 0600);
    // Nor does a database that is a link to a file of someone else's.
    const AnchoredLog linked(1);
    REQUIRE(::chown(linked.dir.path().c_str(), 65534, 65534) == 0);
    const std::string elsewhere = linked.dir.file("elsewhere");
    std::ofstream(elsewhere) << "x";
    REQUIRE(::chown(elsewhere.c_str(), 4242, 4242) == 0);
    REQUIRE(std::remove(linked.db.c_str()) == 0);
    REQUIRE(::symlink(elsewhere.c_str(), linked.db.c_str()) == 0);
    REQUIRE(DatabaseLock::take(linked.db));
    REQUIRE(::stat(linked.dir.file("mcpd.lock").c_str(), &st) == 0);
    CHECK(st.st_uid == 65534);
    // A hard link the directory's owner planted there, to a file of
    // root's, never changes hands.
    const AnchoredLog planted(1);
    const std::string victim = planted.dir.file("roots-file");
    std::ofstream(victim) << "root's\n";
    REQUIRE(::chown(planted.dir.path().c_str(), 65534, 65534) == 0);
    REQUIRE(::link(victim.c_str(), planted.dir.file("mcpd.lock").c_str()) == 0);
    auto refused = DatabaseLock::take(planted.db);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().what.find("single link") != std::string::npos);
    REQUIRE(::stat(victim.c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
  }
  auto seeded = seed_anchors(logged.db, logged.anchors);
  REQUIRE(seeded);
  CHECK(seeded->seq == 3);
}

TEST_CASE("mcpd::AuditLog anchors a quiet head once its interval ends", "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  const std::string anchors = dir.file("audit.anchors");
  REQUIRE(Store::open(db));
  // An interval far longer than seven commits take, even on a busy machine.
  auto log = AuditLog::open(db, anchored(anchors, std::chrono::milliseconds(1500)));
  REQUIRE(log);
  write(**log, 3);
  write(**log, 4);
  // Inside the first interval: no commit anchored the head (seq 7), so only
  // the writer's timer can.
  {
    auto a = read_anchors(anchors);
    REQUIRE(a);
    REQUIRE((a->empty() || a->back().seq < 7));
  }
  // Bounded wait for the writer's timer, no fixed sleep.
  std::int64_t last = 0;
  for (int i = 0; i < 500 && last != 7; ++i) {
    auto a = read_anchors(anchors);
    REQUIRE(a);
    last = a->empty() ? 0 : a->back().seq;
    if (last != 7) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(last == 7);
  CHECK((*log)->anchor_failures() == 0);
}

TEST_CASE("mcpd::AnchorReader streams a long file as it was when opened, and refuses what is not one",
          "[mcpd][audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.anchors");
  KeyHash k{};
  {
    std::ofstream out(path);
    for (int i = 1; i <= 3000; ++i) {  // ~260 KB: several read chunks, lines across their edges
      k[0] = static_cast<std::uint8_t>(i);
      out << anchor_line(i, k);
    }
  }
  auto r = AnchorReader::open(path);
  REQUIRE(r);
  // A running mcpd anchors a record committed after verify's walk began
  // (its snapshot ends before it): read, it would say "cut short".
  {
    std::ofstream out(path, std::ios::app);
    k[0] = 0xab;
    out << anchor_line(3001, k);
  }
  std::int64_t n = 0, last = 0;
  while (true) {
    auto a = r->next();
    REQUIRE(a);
    if (!*a) break;
    ++n;
    last = (*a)->seq;
    CHECK((*a)->hash[0] == static_cast<std::uint8_t>(last));
  }
  CHECK(n == 3000);
  CHECK(last == 3000);
  CHECK_FALSE(AnchorReader::open(dir.path()));  // a directory
  CHECK_FALSE(AnchorReader::open(dir.file("missing")));
  const std::string fifo = dir.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_FALSE(AnchorReader::open(fifo));  // refused, not waited on for a writer
}

TEST_CASE("mcpd::AuditLog refuses a record that is not a JSON object's text", "[mcpd][audit]") {
  TempDir dir;
  const std::string db = dir.file("mcpd.db");
  REQUIRE(Store::open(db));
  auto log = AuditLog::open(db, opts(64, 65536));
  REQUIRE(log);
  for (const std::string& text : {std::string(), std::string("x"), std::string("{ }"), std::string("[1]")}) {
    AuditEntry e;
    e.kind = "tool_call";
    e.text = text;
    auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
    auto done = p->get_future();
    (*log)->append(std::move(e), [p](std::optional<std::int64_t> seq) { p->set_value(seq); });
    CHECK_FALSE(done.get());
  }
  write(**log, 1);
  log->reset();
  CHECK(verify_audit(db)->ok);
}

TEST_CASE("mcpd::load_digest_key makes a key once, reads it back, and refuses anything else", "[mcpd][audit]") {
  TempDir dir;
  const std::string path = digest_key_beside(dir.file("mcpd.db"));
  CHECK(path == dir.file("audit-digest.key"));
  CHECK_FALSE(load_digest_key(path, /*create=*/false));  // none yet, and not made
  auto made = load_digest_key(path, true);
  REQUIRE(made);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto again = load_digest_key(path, true);
  REQUIRE(again);
  CHECK(*again == *made);  // kept, never remade
  const nlohmann::json args = {{"sql", "SELECT 1"}, {"params", nlohmann::json::array()}};
  const DigestContext ctx{"acme", "api_key:0123", "run_query"};
  CHECK(digest_arguments(*made, "n1", ctx, args) == digest_arguments(*again, "n1", ctx, args));
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(random_key(), "n1", ctx, args));
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(*made, "n2", ctx, args));
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(*made, "", ctx, args));
  // Bound to the record's tenant, key and tool: copied onto another
  // record's, it vouches for nothing there.
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(*made, "n1", {"beta", "api_key:0123", "run_query"}, args));
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(*made, "n1", {"acme", "api_key:4567", "run_query"}, args));
  CHECK(digest_arguments(*made, "n1", ctx, args) != digest_arguments(*made, "n1", {"acme", "api_key:0123", "describe_entity"}, args));
  // Fields length-prefixed: moving a boundary changes the digest.
  CHECK(digest_arguments(*made, "n1", {"ab", "c", "t"}, args) != digest_arguments(*made, "n1", {"a", "bc", "t"}, args));
  // Key order does not matter: the text is canonical.
  CHECK(digest_arguments(*made, "n", ctx, nlohmann::json::parse(R"({"b":1,"a":2})")) ==
        digest_arguments(*made, "n", ctx, nlohmann::json::parse(R"({"a":2,"b":1})")));
  // Nonces never repeat, across threads and across processes' draws.
  DigestNonces a, b;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    CHECK(seen.insert(a.next()).second);
    CHECK(seen.insert(b.next()).second);
  }
  SECTION("a link is refused") {
    const std::string link = dir.file("link.key");
    REQUIRE(::symlink(path.c_str(), link.c_str()) == 0);
    CHECK_FALSE(load_digest_key(link, true));
  }
  SECTION("a file that does not hold one key is refused") {
    std::ofstream(path, std::ios::trunc) << "not a key\n";
    auto bad = load_digest_key(path, true);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().what.find("does not hold one key") != std::string::npos);
  }
}

TEST_CASE("mcpd::AuditLog sends journal copies from a thread of its own: a stalled journald holds up no commit",
          "[mcpd][audit]") {
  TempDir dir;
  REQUIRE(Store::open(dir.file("mcpd.db")));
  // A journald that takes the first copy and then never answers.
  struct Stall {
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    std::vector<std::int64_t> sent;
    std::string first_hash, first_text;
  };
  auto stall = std::make_shared<Stall>();
  AuditOptions o = opts(64, 1024);
  o.journal = true;
  o.journal_queue = 5;
  o.journal_sender = [stall](std::int64_t seq, const std::string& hash, const std::string& text) {
    std::unique_lock lock(stall->mu);
    stall->sent.push_back(seq);
    if (stall->sent.size() == 1) {
      stall->first_hash = hash;
      stall->first_text = text;
    }
    stall->cv.wait(lock, [&] { return stall->released; });
    return 0;
  };
  auto log = AuditLog::open(dir.file("mcpd.db"), o);
  REQUIRE(log);
  write(**log, 1);
  const auto taken = [&] {
    std::lock_guard lock(stall->mu);
    return stall->sent.size();
  };
  for (int i = 0; i < 500 && taken() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(taken() == 1);  // the first copy is stuck in journald
  {
    std::lock_guard lock(stall->mu);
    CHECK(stall->sent[0] == 1);
    CHECK(stall->first_hash.size() == 64);
    CHECK(stall->first_text.find("\"kind\":\"tool_call\"") != std::string::npos);
  }
  for (int i = 0; i < 3; ++i) write(**log, 13);  // all durable all the same
  CHECK((*log)->committed() == 40);
  // Five copies wait; the other 34 were dropped, counted. (Copies are
  // queued just after the calls are answered: a moment after write().)
  for (int i = 0; i < 500 && (*log)->journal_dropped() < 34; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK((*log)->journal_dropped() == 34);
  const auto start = std::chrono::steady_clock::now();
  (*log)->stop();  // bounded, though journald never answers
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  {
    std::lock_guard lock(stall->mu);
    stall->released = true;  // the detached thread sends what it holds and ends
  }
  stall->cv.notify_all();
  auto v = verify_audit(dir.file("mcpd.db"));
  REQUIRE(v);
  CHECK(v->ok);
}

TEST_CASE("mcpd::AuditLog::traffic counts rate-limit refusals by key and user, from folded and older records",
          "[mcpd][audit]") {
  TempDir dir;
  REQUIRE(Store::open(dir.file("mcpd.db")));
  auto log = AuditLog::open(dir.file("mcpd.db"), opts(64, 1024));
  REQUIRE(log);
  const auto durable = [&](nlohmann::json rec) {
    auto p = std::make_shared<std::promise<std::optional<std::int64_t>>>();
    auto f = p->get_future();
    (*log)->append(std::move(rec), [p](std::optional<std::int64_t> seq) { p->set_value(seq); });
    REQUIRE(f.get());
  };
  RefusalLedger ledger;
  // Folded records, as RefusalLedger writes them.
  durable(ledger.note("acme", "api_key:a", "ann", "mcp", 1000));
  for (int i = 0; i < 7; ++i) REQUIRE(ledger.note("acme", "api_key:a", "ann", "mcp", 1001).is_null());
  for (int i = 0; i < 3; ++i) REQUIRE(ledger.note("acme", "api_key:b", "bob", "admin", 1001).is_null());
  for (auto& rec : ledger.due(2000)) durable(std::move(rec));
  // One of the day before, a key's count at the top level.
  durable({{"kind", "rate_limited"}, {"tenant", "acme"}, {"user", "ann"}, {"credential", "api_key:a"},
           {"path", "/mcp"}, {"count", 5}});
  // Past a record's entries: counted, attributed to no key.
  durable({{"kind", "rate_limited"}, {"tenant", "acme"}, {"count", 4}, {"refused", nlohmann::json::array()}, {"others", 4}});
  // Another tenant's: not acme's business.
  durable(ledger.note("globex", "api_key:g", "gus", "mcp", 1000));

  auto t = (*log)->traffic("acme", 0, {"a", "b"});
  REQUIRE(t);
  INFO(t->dump());
  CHECK((*t)["keys"]["api_key:a"]["rate_limited"] == 1 + 7 + 5);
  CHECK((*t)["keys"]["api_key:b"]["rate_limited"] == 3);
  CHECK((*t)["users"]["ann"]["rate_limited"] == 13);
  CHECK((*t)["users"]["bob"]["rate_limited"] == 3);
  CHECK_FALSE((*t)["keys"].contains("api_key:g"));
  CHECK((*t)["rate_limited_unattributed"] == 4);
}
