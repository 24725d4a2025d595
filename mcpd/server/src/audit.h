// The audit log: every tools/call, refusal and failed authentication, as a
// hash chain in mcpd's database. Record n stores
//   hash_n = SHA-256(hash_{n-1} || seq_n as 8 bytes big-endian || record_n)
// with hash_0 = 32 zero bytes, so editing, deleting, inserting or
// reordering any record breaks the chain at that point (verify_audit).
// Cutting records off the end leaves a valid shorter chain. Two copies of
// the head live outside the database: the anchor file (AuditOptions::
// anchors, meant to be append-only, chattr +a), which gets the head after
// a commit at most once per anchor_interval and at stop; and the systemd
// journal, which gets every record with its seq and hash.
//
// Durable before acknowledged: append() completes only after the
// transaction holding the record has committed (WAL, synchronous=FULL).
// One writer thread commits whatever accumulated while the previous
// commit was in flight (group commit), so one fsync covers many calls.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "audit_chain.h"
#include "keys.h"
#include "status.h"

namespace sluice::mcpd {

// One record on its way into the log: its JSON text (an object holding
// at least "kind" and "tenant", equal to the two fields here; "ts_ms" is
// added on append) and the two indexed fields.
struct AuditEntry {
  // Not an aggregate: a braced JSON object literal passed to append()
  // must always mean the JSON overload.
  AuditEntry() = default;
  std::string kind;
  std::string tenant;
  std::string text;
};

// The entry of a record built as a JSON object (admin changes and other
// rare records; the per-call records are written as text directly).
AuditEntry audit_entry(nlohmann::json record);

struct AuditOptions {
  std::size_t max_batch = 1024;
  std::size_t max_pending = 65536;  // beyond: refused (the call fails closed)
  bool journal = true;
  // Copies waiting for the journal thread; beyond, dropped and counted.
  std::size_t journal_queue = 65536;
  // Sends one copy (seq, hash as hex, record text); < 0 when refused.
  // Empty: sd_journal_send. (Tests put a stalled journald here.)
  std::function<int(std::int64_t, const std::string&, const std::string&)> journal_sender;
  // Group commit: while calls announced with expect() are still running,
  // the writer waits up to this long for their records before committing,
  // so one fsync covers them all. Zero: commit whatever is queued at once.
  std::chrono::microseconds coalesce{250};
  // Anchor file (empty: none). On open, every line must be well formed and
  // increasing, and the last anchor must name a record of the log with
  // that hash, or the log refuses to open (cut short or rewritten since). Records committed after the last anchor, at most
  // anchor_interval's worth, could be cut off undetected by the anchors.
  std::string anchors;
  std::chrono::milliseconds anchor_interval{1000};
};

class AuditLog {
 public:
  // A call that will append a record shortly (a tools/call being run).
  // While any is outstanding the writer holds a commit back a little for
  // it (AuditOptions::coalesce). Ends when passed to append() (atomically
  // with the record's queuing) or when destroyed.
  class Expected {
   public:
    explicit Expected(AuditLog& log) : log_(&log) { log_->expect(+1); }
    ~Expected() {
      if (log_) log_->expect(-1);
    }
    Expected(const Expected&) = delete;
    Expected& operator=(const Expected&) = delete;

   private:
    friend class AuditLog;
    AuditLog* log_;
  };

  static Result<std::unique_ptr<AuditLog>> open(const std::string& path, AuditOptions options);
  ~AuditLog();
  // Commits what is queued, answers every waiter, refuses anything new;
  // the object stays usable for counters and announcements. Idempotent.
  void stop();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // `record` must be an object with string "kind" and "tenant" (the
  // tenant's name, "" for none); "ts_ms" is added, first. `done(seq)` runs on the
  // writer thread once the record is durable, `done(nullopt)` if it could
  // not be written.
  // `expected`, if given, is the record's announcement: it ends as the
  // record is queued.
  void append(AuditEntry entry, std::function<void(std::optional<std::int64_t>)> done,
              Expected* expected = nullptr);
  void append(nlohmann::json record, std::function<void(std::optional<std::int64_t>)> done,
              Expected* expected = nullptr) {
    append(audit_entry(std::move(record)), std::move(done), expected);
  }

  // For records nobody waits on (failed authentications, lockouts): kept
  // only while the queue is under half full, so a flood of them from
  // unauthenticated clients can never crowd out the records that calls
  // wait on. Dropped ones are counted.
  void append_best_effort(AuditEntry entry);
  void append_best_effort(nlohmann::json record) { append_best_effort(audit_entry(std::move(record))); }

  // append() for coroutines: completes on the caller's executor.
  template <class Token>
  auto async_append(nlohmann::json record, Token&& token, Expected* expected = nullptr) {
    return async_append(audit_entry(std::move(record)), std::forward<Token>(token), expected);
  }
  template <class Token>
  auto async_append(AuditEntry record, Token&& token, Expected* expected = nullptr) {
    return boost::asio::async_initiate<Token, void(std::optional<std::int64_t>)>(
        [this, expected](auto handler, AuditEntry rec) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto ex = boost::asio::get_associated_executor(*h);
          append(
              std::move(rec),
              [h, ex](std::optional<std::int64_t> seq) {
                boost::asio::post(ex, [h, seq]() mutable { (*h)(seq); });
              },
              expected);
        },
        token, std::move(record));
  }

  // Newest first; `tenant` empty = every tenant; `before_seq` 0 = newest.
  Result<std::vector<nlohmann::json>> read(const std::string& tenant, std::size_t limit,
                                           std::int64_t before_seq, const std::string& kind);

  // Per key and user since `since_ms`: calls, errors, refusals, failed
  // authentications (of the tenant's `key_ids`), and the latest calls.
  // Bounded: at most the newest 100 000 records are looked at.
  Result<nlohmann::json> traffic(const std::string& tenant, std::int64_t since_ms,
                                 const std::vector<std::string>& key_ids);

  [[nodiscard]] std::uint64_t committed() const;
  [[nodiscard]] std::uint64_t commits() const;  // transactions: committed() / commits() = group size
  [[nodiscard]] std::uint64_t failed() const;
  [[nodiscard]] std::uint64_t dropped() const;
  [[nodiscard]] std::uint64_t anchor_failures() const;
  // Journal copies not sent: their queue was full (journald slower than the
  // log, or stalled) or journald refused them.
  [[nodiscard]] std::uint64_t journal_dropped() const;
  // Whether the anchor file has the append-only attribute (read on open).
  [[nodiscard]] bool anchors_append_only() const { return anchors_append_only_; }
  // Records the log held after its last anchor when it was opened: those
  // committed before an unclean stop, or added while mcpd was stopped (the
  // chain cannot tell them apart; mcpd anchors them as it goes on).
  [[nodiscard]] std::int64_t unanchored_at_open() const { return unanchored_at_open_; }

 private:
  struct Pending {
    AuditEntry entry;
    std::int64_t ts_ms;
    std::function<void(std::optional<std::int64_t>)> done;
  };
  AuditLog() = default;
  void run();
  // One transaction for the batch; on success `written` holds each
  // record's text and hash (for the journal), and the head has moved.
  bool commit(std::vector<Pending>& batch, std::vector<std::pair<std::string, KeyHash>>& written);
  // The journal's copy of durable records, seqs from `first` on: queued
  // for the journal thread, never waited for.
  void journal(std::int64_t first, const std::vector<std::pair<std::string, KeyHash>>& written);
  void expect(int delta);
  // Writer thread only: appends the head if it moved and `force` or the
  // interval has passed since the last anchor.
  void anchor(bool force);
  Status open_anchors();
  static bool well_formed(const AuditEntry& e);

  AuditOptions options_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  // Whether a new record or a finished announcement must wake the writer.
  [[nodiscard]] bool should_wake_locked() const;

  bool stopping_ = false;
  int expected_ = 0;  // outstanding Expected, under mu_
  // What the writer is doing, under mu_: waiting for a first record,
  // waiting for announced ones (group commit), or committing.
  enum class WriterState { idle, gathering, committing };
  WriterState writer_state_ = WriterState::committing;
  std::uint64_t committed_ = 0, commits_ = 0, failed_ = 0, dropped_ = 0;
  std::atomic<std::uint64_t> anchor_failures_{0};
  int anchors_fd_ = -1;
  bool anchors_append_only_ = false;
  std::int64_t unanchored_at_open_ = 0;
  std::int64_t anchored_seq_ = 0;  // writer thread only
  std::chrono::steady_clock::time_point anchored_at_{};
  std::thread writer_;
  // Sends the journal's copies: journald's socket blocks while journald
  // stalls, and the writer, which every call waits on, must not. Shared
  // with its thread, which may outlive the log if journald never answers.
  struct JournalQueue;
  std::shared_ptr<JournalQueue> journal_;
  std::thread journal_thread_;
};

}  // namespace sluice::mcpd
