// A watchdog for statements that never call back. Some of SQLite's work
// happens inside one VM instruction that neither calls the progress
// handler nor, once its pages are cached, allocates: count(*) walks every
// page of a table in one OP_Count. The deadline and the cancellation,
// checked only there (connection.cpp), reach such a statement late: a
// SELECT of eighty count(*) on a 100 MB table ran seconds past a 50 ms
// deadline. SQLite checks sqlite3_interrupt's flag in those loops too, so
// one thread for the process interrupts any connection whose statement is
// past its deadline or whose caller cancelled, within kPoll.
#pragma once

#include <atomic>
#include <chrono>

struct sqlite3;

namespace sluice::mcpd {

class Watchdog {
 public:
  // How often a running statement's cancellation flag is looked at, and
  // the most a deadline is overshot by.
  static constexpr std::chrono::milliseconds kPoll{10};

  // A connection's place with the watchdog: only while armed is `db`
  // interrupted, so never once closed.
  class Watch {
   public:
    explicit Watch(sqlite3* db) : db_(db) {}
    ~Watch() = default;
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    // While the returned Armed lives (one at a time), the connection is
    // interrupted, at every look, once `deadline` has passed or `*cancel`
    // (may be null) is true. Destroy it only once the statement is reset:
    // an interruption that comes after the statement's last step is then
    // spent by the next statement's first (SQLite clears the flag when a
    // statement starts with none running).
    class Armed {
     public:
      ~Armed();
      Armed(const Armed&) = delete;
      Armed& operator=(const Armed&) = delete;

     private:
      friend class Watch;
      explicit Armed(Watch& w) : watch_(w) {}
      Watch& watch_;
    };
    [[nodiscard]] Armed arm(std::chrono::steady_clock::time_point deadline, const std::atomic<bool>* cancel);

   private:
    friend class Watchdog;
    void disarm();
    sqlite3* db_;
    // Under the watchdog's lock.
    std::chrono::steady_clock::time_point deadline_;
    const std::atomic<bool>* cancel_ = nullptr;
  };

 private:
  struct State;  // the process's one (watchdog.cpp)
  static State& state();
  static void loop(State& s);
};

}  // namespace sluice::mcpd
