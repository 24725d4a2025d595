#include "audit.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <systemd/sd-journal.h>

#include "audit_chain.h"
#include "identity.h"
#include "sql.h"
#include "store.h"

namespace sluice::mcpd {
namespace {

// (Without a journald at all sd_journal_send succeeds silently.)
int send_to_journal(std::int64_t seq, const std::string& hash_hex, const std::string& text) {
  return sd_journal_send("MESSAGE=audit %lld", static_cast<long long>(seq), "PRIORITY=6",
                         "SYSLOG_IDENTIFIER=sluice-mcpd", "SLUICE_AUDIT_SEQ=%lld", static_cast<long long>(seq),
                         "SLUICE_AUDIT_HASH=%s", hash_hex.c_str(), "SLUICE_AUDIT_RECORD=%s", text.c_str(), nullptr);
}

constexpr char kLastRecord[] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
constexpr char kRecordHash[] = "SELECT hash FROM audit WHERE seq = ?";
constexpr char kInsert[] =
    "INSERT INTO audit(seq, ts_ms, kind, tenant, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)";
constexpr char kRead[] =
    "SELECT seq, record, hash FROM audit WHERE (?1 = '' OR tenant = ?1) AND (?2 = 0 OR seq < ?2) "
    "AND (?3 = '' OR kind = ?3) ORDER BY seq DESC LIMIT ?4";

}  // namespace

struct AuditLog::JournalQueue {
  struct Copy {
    std::int64_t seq;
    std::string hash_hex;
    std::string text;
  };
  std::size_t capacity;
  std::function<int(std::int64_t, const std::string&, const std::string&)> send;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Copy> copies;
  bool stopping = false;
  bool finished = false;
  std::atomic<std::uint64_t> dropped{0};

  static void run(const std::shared_ptr<JournalQueue>& q) {
    std::vector<Copy> batch;
    while (true) {
      {
        std::unique_lock lock(q->mu);
        q->cv.wait(lock, [&] { return q->stopping || !q->copies.empty(); });
        if (q->copies.empty()) {
          q->finished = true;
          q->cv.notify_all();
          return;
        }
        batch.assign(std::make_move_iterator(q->copies.begin()), std::make_move_iterator(q->copies.end()));
        q->copies.clear();
      }
      for (const Copy& c : batch) {
        if (q->send(c.seq, c.hash_hex, c.text) < 0) ++q->dropped;
      }
      batch.clear();
    }
  }
};

struct AuditLog::Impl {
  Db db;
  // Reads (/api/audit, /api/traffic) on a connection of their own: WAL
  // lets them run beside the writer, without opening a file per request.
  std::mutex reader_mu;
  Db reader;
  Stmt insert;
  std::int64_t last_seq = 0;
  KeyHash last_hash{};
};

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path, AuditOptions options) {
  auto db = Db::open(path, /*create=*/false);
  if (!db) return tl::unexpected(db.error());
  std::unique_ptr<AuditLog> log(new AuditLog());
  log->options_ = options;
  log->impl_ = std::make_unique<Impl>();
  log->impl_->db = std::move(*db);
  auto last = log->impl_->db.prepare(kLastRecord);
  if (!last) return tl::unexpected(last.error());
  auto row = last->step();
  if (!row) return tl::unexpected(row.error());
  if (*row) {
    log->impl_->last_seq = last->int64(0);
    const auto h = last->blob(1);
    if (h.size() != 32) return fail("audit: the last record's hash is malformed");
    std::copy(h.begin(), h.end(), log->impl_->last_hash.begin());
  }
  if (auto s = log->open_anchors(); !s) return tl::unexpected(s.error());
  auto reader = Db::open(path, /*create=*/false);
  if (!reader) return tl::unexpected(reader.error());
  log->impl_->reader = std::move(*reader);
  auto insert = log->impl_->db.prepare(kInsert);
  if (!insert) return tl::unexpected(insert.error());
  log->impl_->insert = std::move(*insert);
  if (options.journal) {
    log->journal_ = std::make_shared<JournalQueue>();
    log->journal_->capacity = options.journal_queue;
    log->journal_->send = options.journal_sender ? options.journal_sender : send_to_journal;
    log->journal_thread_ = std::thread([q = log->journal_] { JournalQueue::run(q); });
  }
  log->writer_ = std::thread([p = log.get()] { p->run(); });
  return log;
}

Status AuditLog::open_anchors() {
  if (options_.anchors.empty()) return {};
  const std::string& path = options_.anchors;
  // Never through a link planted in data_dir, never a FIFO (a full pipe
  // would block the writer, and every audited call with it).
  anchors_fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0640);
  if (anchors_fd_ < 0) return fail("audit anchors: cannot open " + path + ": " + std::strerror(errno));
  int flags = 0;
  anchors_append_only_ = ::ioctl(anchors_fd_, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_APPEND_FL) != 0;
  // Every line, not just the last: a line appended by someone else (an
  // older head, after the log was cut back to it) must not pass for the
  // last anchor. Streams the file once, at start-up.
  auto reader = AnchorReader::over(anchors_fd_);
  if (!reader) return fail("audit anchors: " + path + ": " + reader.error().what);
  std::optional<AuditAnchor> last;
  while (true) {
    auto a = reader->next();
    if (!a) return fail("audit anchors: " + path + ": " + a.error().what + "; investigate before starting");
    if (!*a) break;
    last = *a;
  }
  if (!last) {
    // A log with records and a file with no anchor: the file was deleted,
    // emptied or replaced (or anchoring was only now turned on). Started
    // on it, a log cut short would never show; an operator who knows the
    // log is intact seeds the file (sluicectl audit anchor).
    if (impl_->last_seq > 0) {
      return fail("audit anchors: " + path + " holds no anchor but the log holds records up to seq " +
                  std::to_string(impl_->last_seq) +
                  ": the file was deleted, emptied or replaced; investigate, then seed it from an intact log "
                  "with sluicectl audit anchor before starting");
    }
    return {};
  }
  // The log must still hold the anchored head: started on a log that was
  // cut short or rewritten, new records would only bury the evidence.
  const AuditAnchor& a = *last;
  if (a.seq > impl_->last_seq) {
    return fail("audit: the log ends at seq " + std::to_string(impl_->last_seq) + " but seq " + std::to_string(a.seq) +
                " was anchored in " + path + ": records were cut off; investigate before starting");
  }
  auto st = impl_->db.prepare(kRecordHash);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, a.seq);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  const auto h = *row ? st->blob(0) : std::vector<std::uint8_t>{};
  if (h.size() != 32 || !std::equal(h.begin(), h.end(), a.hash.begin())) {
    return fail("audit: record " + std::to_string(a.seq) + " differs from its anchor in " + path +
                ": the log was rewritten; investigate before starting");
  }
  anchored_seq_ = a.seq;
  unanchored_at_open_ = impl_->last_seq - a.seq;
  return {};
}

void AuditLog::anchor(bool force) {
  const std::int64_t seq = impl_->last_seq;
  if (anchors_fd_ < 0 || seq == anchored_seq_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - anchored_at_ < options_.anchor_interval) return;
  anchored_at_ = now;  // a failing file is retried once per interval, not in a loop
  const std::string line = anchor_line(seq, impl_->last_hash);
  // One write of one line to an O_APPEND file: never interleaved. Synced,
  // so a crash leaves no torn line behind a durable record.
  const ssize_t n = ::write(anchors_fd_, line.data(), line.size());
  if (n == static_cast<ssize_t>(line.size())) {
    // A failed sync is counted and the head is not anchored: the next
    // interval writes the line again (readers skip an exact repeat), and
    // that write's sync takes this page with it, while the page cache still
    // holds it. (Linux reports a failed writeback once and marks the page
    // clean: a sync that merely retried would report success.)
    if (::fdatasync(anchors_fd_) != 0) {
      ++anchor_failures_;
      return;
    }
    anchored_seq_ = seq;
    return;
  }
  ++anchor_failures_;
  if (n > 0) {
    // Part of a line is in the file, and an append-only file cannot lose
    // it: anything appended now would fuse with it. Stop anchoring; the
    // torn line is what verify reports.
    ::close(anchors_fd_);
    anchors_fd_ = -1;
  }
}

AuditLog::~AuditLog() {
  stop();
  if (anchors_fd_ >= 0) ::close(anchors_fd_);
}

void AuditLog::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (journal_thread_.joinable()) {
    // What is queued goes to the journal, within a bound: a journald that
    // never answers must not hold up the stop (the thread keeps its queue).
    std::unique_lock lock(journal_->mu);
    journal_->stopping = true;
    journal_->cv.notify_all();
    const bool finished = journal_->cv.wait_for(lock, std::chrono::seconds(2), [&] { return journal_->finished; });
    lock.unlock();
    if (finished) {
      journal_thread_.join();
    } else {
      journal_thread_.detach();
    }
  }
}

AuditEntry audit_entry(nlohmann::json record) {
  AuditEntry e;
  if (!record.is_object()) record = nlohmann::json::object();
  record.erase("ts_ms");  // the log's own, added on append
  const auto text_of = [&](const char* k) {
    auto it = record.find(k);
    return it != record.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  e.kind = text_of("kind");
  e.tenant = text_of("tenant");
  record["kind"] = e.kind;
  record["tenant"] = e.tenant;
  e.text = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return e;
}

bool AuditLog::well_formed(const AuditEntry& e) {
  // Compact object text, as audit_entry() and JsonObject write it: the
  // writer splices "ts_ms" in after the brace.
  const std::string_view t = e.text;
  return t == "{}" || (t.size() > 2 && t.starts_with("{\"") && t.back() == '}');
}

void AuditLog::append(AuditEntry entry, std::function<void(std::optional<std::int64_t>)> done,
                      Expected* expected) {
  const std::int64_t ts = now_ms();
  {
    std::lock_guard lock(mu_);
    if (expected && expected->log_ == this) {
      --expected_;
      expected->log_ = nullptr;
    }
    if (!stopping_ && queue_.size() < options_.max_pending && well_formed(entry)) {
      queue_.push_back({std::move(entry), ts, std::move(done)});
      if (should_wake_locked()) cv_.notify_one();
      return;
    }
    ++failed_;
  }
  done(std::nullopt);  // full, stopping or malformed: the caller fails closed
}

void AuditLog::append_best_effort(AuditEntry entry) {
  const std::int64_t ts = now_ms();
  std::lock_guard lock(mu_);
  if (stopping_ || queue_.size() >= options_.max_pending / 2 || !well_formed(entry)) {
    ++dropped_;
    return;
  }
  queue_.push_back({std::move(entry), ts, [](std::optional<std::int64_t>) {}});
  if (should_wake_locked()) cv_.notify_one();
}

bool AuditLog::should_wake_locked() const {
  // A writer that is committing looks at the queue when it is done; one
  // gathering a group only needs to hear that nothing more is coming or
  // that the group is full. Waking it for every record would cost a
  // context switch per record.
  switch (writer_state_) {
    case WriterState::idle: return true;
    case WriterState::gathering: return expected_ == 0 || queue_.size() >= options_.max_batch;
    case WriterState::committing: return false;
  }
  return true;
}

void AuditLog::expect(int delta) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    expected_ += delta;
    // The writer may be holding a commit back for this call.
    wake = expected_ == 0 && writer_state_ == WriterState::gathering;
  }
  if (wake) cv_.notify_one();
}

void AuditLog::run() {
  std::vector<Pending> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      writer_state_ = WriterState::idle;
      const auto has_work = [&] { return stopping_ || !queue_.empty(); };
      while (!has_work()) {
        // A head committed but not yet anchored is anchored when its
        // interval ends, even if no record follows it.
        if (anchors_fd_ >= 0 && anchored_seq_ != impl_->last_seq) {
          if (cv_.wait_until(lock, anchored_at_ + options_.anchor_interval, has_work)) break;
          lock.unlock();
          anchor(false);
          lock.lock();
        } else {
          cv_.wait(lock, has_work);
        }
      }
      // Calls still running will append within moments: one commit (one
      // fsync) for them all rather than one each. Bounded: coalesce at most.
      writer_state_ = WriterState::gathering;
      const auto until = std::chrono::steady_clock::now() + options_.coalesce;
      while (!stopping_ && expected_ > 0 && queue_.size() < options_.max_batch &&
             cv_.wait_until(lock, until) == std::cv_status::no_timeout) {
      }
      writer_state_ = WriterState::committing;
      // Drain before stopping: everything accepted gets an answer.
      if (queue_.empty()) {
        lock.unlock();
        anchor(/*force=*/true);
        return;
      }
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const std::int64_t first = impl_->last_seq + 1;
    const KeyHash head = impl_->last_hash;
    bool ok = false;
    std::vector<std::pair<std::string, KeyHash>> written;  // record texts and hashes, once durable
    try {
      ok = commit(batch, written);
    } catch (const std::exception&) {
      // Whatever went wrong, these records are not durable (the
      // transaction rolled back): their calls fail closed, the chain head
      // stays where the database has it, and the writer goes on.
      impl_->last_seq = first - 1;
      impl_->last_hash = head;
      ok = false;
    }
    {
      std::lock_guard lock(mu_);
      (ok ? committed_ : failed_) += batch.size();
      if (ok) ++commits_;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i].done(ok ? std::optional<std::int64_t>(first + static_cast<std::int64_t>(i))
                       : std::nullopt);
    }
    batch.clear();
    // After the answers: the journal copy and the anchor's own sync never
    // delay a call, and neither can undo a commit (the head stays).
    if (ok && options_.journal) {
      try {
        journal(first, written);
      } catch (const std::exception&) {
        // A copy only; the records are durable in the log.
      }
    }
    if (ok) anchor(false);
  }
}

bool AuditLog::commit(std::vector<Pending>& batch, std::vector<std::pair<std::string, KeyHash>>& written) {
  Impl& m = *impl_;
  const std::int64_t seq0 = m.last_seq;
  const KeyHash hash0 = m.last_hash;
  written.clear();
  written.reserve(batch.size());
  {
    Transaction tx(m.db);
    if (!tx.began()) return false;
    for (Pending& p : batch) {
      // {"ts_ms":N, then the entry's own members.
      std::string text = "{\"ts_ms\":" + std::to_string(p.ts_ms);
      const std::string_view members = std::string_view(p.entry.text).substr(1);  // well_formed()
      if (members != "}") text += ',';
      text += members;
      const std::int64_t seq = m.last_seq + 1;
      const KeyHash h = chain_hash(m.last_hash, seq, text);
      m.insert.reset();
      m.insert.bind(1, seq).bind(2, p.ts_ms);
      m.insert.bind(3, p.entry.kind).bind(4, p.entry.tenant);
      m.insert.bind(5, text).bind_blob(6, m.last_hash.data(), 32).bind_blob(7, h.data(), 32);
      if (!m.insert.run()) {
        m.last_seq = seq0;
        m.last_hash = hash0;
        return false;
      }
      m.last_seq = seq;
      m.last_hash = h;
      written.emplace_back(text, h);
    }
    if (!tx.commit()) {
      m.last_seq = seq0;
      m.last_hash = hash0;
      return false;
    }
  }
  return true;
}

void AuditLog::journal(std::int64_t first, const std::vector<std::pair<std::string, KeyHash>>& written) {
  if (!journal_) return;
  std::int64_t seq = first - 1;
  {
    std::lock_guard lock(journal_->mu);
    for (const auto& [text, h] : written) {
      ++seq;
      if (journal_->copies.size() >= journal_->capacity) {
        ++journal_->dropped;
        continue;
      }
      journal_->copies.push_back({seq, to_hex(h.data(), h.size()), text});
    }
  }
  journal_->cv.notify_one();
}

std::uint64_t AuditLog::journal_dropped() const { return journal_ ? journal_->dropped.load() : 0; }

Result<std::vector<nlohmann::json>> AuditLog::read(const std::string& tenant, std::size_t limit,
                                                   std::int64_t before_seq, const std::string& kind) {
  // A connection of its own: readers never wait for the writer (WAL).
  std::lock_guard lock(impl_->reader_mu);
  Db* db = &impl_->reader;
  auto st = db->prepare(kRead);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, tenant).bind(2, before_seq).bind(3, kind).bind(4, static_cast<std::int64_t>(limit));
  std::vector<nlohmann::json> out;
  while (true) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    nlohmann::json rec = nlohmann::json::parse(st->text(1), nullptr, false);
    if (rec.is_discarded()) rec = nlohmann::json::object();
    rec["seq"] = st->int64(0);
    const auto h = st->blob(2);
    rec["hash"] = to_hex(h.data(), h.size());
    out.push_back(std::move(rec));
  }
  return out;
}

namespace {
constexpr char kTrafficCalls[] =
    "SELECT json_extract(record, '$.credential'), json_extract(record, '$.user'), "
    "json_extract(record, '$.status'), count(*) FROM "
    "(SELECT record FROM audit WHERE tenant = ?1 AND kind = 'tool_call' AND ts_ms >= ?2 "
    " ORDER BY seq DESC LIMIT 100000) GROUP BY 1, 2, 3";
constexpr char kTrafficAuth[] =
    "SELECT json_extract(record, '$.credential'), json_extract(record, '$.claimed_credential'), count(*) FROM "
    "(SELECT record FROM audit WHERE kind = 'auth_failure' AND ts_ms >= ?1 "
    " ORDER BY seq DESC LIMIT 100000) GROUP BY 1, 2";
// Rate-limit refusals: each record folds a tenant's refusals by key, user
// and limit (`refused`, RefusalLedger); records of 2026-12-06/07 carry one
// key's count at the top level. One streamed pass (the records are read
// by a co-routine, never copied to a temporary table): per key and user,
// the refusals, and the refusals past a record's entries (`others`,
// attributed to no key), counted once per record.
constexpr char kTrafficRefused[] =
    "SELECT CASE WHEN json_type(r.record, '$.refused') IS NULL THEN json_extract(r.record, '$.credential') "
    "            ELSE json_extract(e.value, '$.credential') END, "
    "       CASE WHEN json_type(r.record, '$.refused') IS NULL THEN json_extract(r.record, '$.user') "
    "            ELSE json_extract(e.value, '$.user') END, "
    "       sum(CASE WHEN json_type(r.record, '$.refused') IS NULL THEN json_extract(r.record, '$.count') "
    "                ELSE json_extract(e.value, '$.count') END), "
    "       sum(CASE WHEN e.key IS NULL OR e.key = 0 THEN coalesce(json_extract(r.record, '$.others'), 0) ELSE 0 END) "
    "FROM (SELECT record FROM audit WHERE tenant = ?1 AND kind = 'rate_limited' AND ts_ms >= ?2 "
    "      ORDER BY seq DESC LIMIT 100000) AS r "
    "LEFT JOIN json_each(r.record, '$.refused') AS e GROUP BY 1, 2";
constexpr char kTrafficRecent[] =
    "SELECT seq, record FROM audit WHERE tenant = ?1 AND kind = 'tool_call' ORDER BY seq DESC LIMIT 20";
}  // namespace

Result<nlohmann::json> AuditLog::traffic(const std::string& tenant, std::int64_t since_ms,
                                        const std::vector<std::string>& key_ids) {
  std::lock_guard lock(impl_->reader_mu);
  Db* db = &impl_->reader;
  nlohmann::json keys = nlohmann::json::object(), users = nlohmann::json::object();
  const auto bump = [](nlohmann::json& slot, const std::string& status, std::int64_t n) {
    if (!slot.is_object()) {
      slot = {{"calls", 0},       {"errors", 0},
              {"denied", 0},      {"failed_auth", 0},
              {"failed_auth_claimed", 0}, {"rate_limited", 0}};
    }
    slot["calls"] = slot["calls"].get<std::int64_t>() + n;
    if (status == "denied") slot["denied"] = slot["denied"].get<std::int64_t>() + n;
    else if (status != "ok") slot["errors"] = slot["errors"].get<std::int64_t>() + n;
  };
  auto calls = db->prepare(kTrafficCalls);
  if (!calls) return tl::unexpected(calls.error());
  calls->bind(1, tenant).bind(2, since_ms);
  while (true) {
    auto row = calls->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    const std::string credential = calls->text(0), user = calls->text(1), status = calls->text(2);
    bump(keys[credential], status, calls->int64(3));
    bump(users[user], status, calls->int64(3));
  }
  // Requests refused by the tenant's rate limit: not calls (nothing ran),
  // counted apart.
  auto refused = db->prepare(kTrafficRefused);
  if (!refused) return tl::unexpected(refused.error());
  refused->bind(1, tenant).bind(2, since_ms);
  std::int64_t unattributed = 0;
  while (true) {
    auto row = refused->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    unattributed += refused->int64(3);
    if (refused->is_null(0)) continue;
    for (nlohmann::json* slot : {&keys[refused->text(0)], &users[refused->text(1)]}) {
      bump(*slot, "ok", 0);
      (*slot)["rate_limited"] = (*slot)["rate_limited"].get<std::int64_t>() + refused->int64(2);
    }
  }
  auto auth = db->prepare(kTrafficAuth);
  if (!auth) return tl::unexpected(auth.error());
  auth->bind(1, since_ms);
  const std::string key_prefix = credential_name(kApiKeyCredential, "");
  while (true) {
    auto row = auth->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    // Failed authentications carry the key id they named, if any: the
    // key's own (its secret matched: expired, revoked, disabled) or only
    // claimed (a wrong secret; anyone can name an id). Only this tenant's
    // keys are its business.
    const bool claimed = auth->text(0).empty();
    const std::string credential = claimed ? auth->text(1) : auth->text(0);
    const std::string id = credential.starts_with(key_prefix) ? credential.substr(key_prefix.size()) : "";
    if (id.empty() || std::find(key_ids.begin(), key_ids.end(), id) == key_ids.end()) continue;
    nlohmann::json& slot = keys[credential];
    bump(slot, "ok", 0);
    const char* field = claimed ? "failed_auth_claimed" : "failed_auth";
    slot[field] = slot[field].get<std::int64_t>() + auth->int64(2);
  }
  for (auto* table : {&keys, &users}) {
    for (auto& [name, slot] : table->items()) {
      const auto n = slot["calls"].get<std::int64_t>();
      slot["error_rate"] = n ? static_cast<double>(slot["errors"].get<std::int64_t>()) / static_cast<double>(n) : 0.0;
    }
  }
  auto recent = db->prepare(kTrafficRecent);
  if (!recent) return tl::unexpected(recent.error());
  recent->bind(1, tenant);
  nlohmann::json latest = nlohmann::json::array();
  while (true) {
    auto row = recent->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    auto rec = nlohmann::json::parse(recent->text(1), nullptr, false);
    if (!rec.is_object()) continue;
    latest.push_back({{"seq", recent->int64(0)}, {"ts_ms", rec.value("ts_ms", nlohmann::json())},
                      {"user", rec.value("user", nlohmann::json())}, {"credential", rec.value("credential", nlohmann::json())},
                      {"tool", rec.value("tool", nlohmann::json())}, {"status", rec.value("status", nlohmann::json())},
                      {"rows", rec.value("rows", nlohmann::json())}, {"latency_us", rec.value("latency_us", nlohmann::json())}});
  }
  return nlohmann::json{{"since_ms", since_ms},
                        {"keys", keys},
                        {"users", users},
                        {"rate_limited_unattributed", unattributed},
                        {"recent_calls", latest}};
}

std::uint64_t AuditLog::committed() const {
  std::lock_guard lock(mu_);
  return committed_;
}

std::uint64_t AuditLog::commits() const {
  std::lock_guard lock(mu_);
  return commits_;
}

std::uint64_t AuditLog::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

std::uint64_t AuditLog::anchor_failures() const { return anchor_failures_.load(); }

std::uint64_t AuditLog::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

}  // namespace sluice::mcpd
