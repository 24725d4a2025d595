// Server-Sent Event streams that outlive their connection (MCP
// resumability, SEP-1699 polling). Every event carries the id
// "<stream>-<n>" and stays held, bounded, after it was sent: a client
// whose connection broke, or that the server told to poll by ending the
// response, reconnects with GET and Last-Event-ID and gets what followed
// that event, then the rest as it comes. The producer never waits for a
// reader: it appends. At most one reader (the HTTP response being written)
// is attached at a time; a new one takes over.
//
// Only what the protocol layer streams is held here: notifications, the
// requests a tool sends the client and the answers of tools that talk to
// the client. Data tools answer with plain JSON, so query results never
// sit in these buffers.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>

namespace sluice::mcpd {

struct StreamLimits {
  std::size_t max_events = 256;          // held per stream (the newest always is)
  std::size_t max_bytes = 1 << 20;       // held per stream
  std::size_t max_streams_per_session = 32;
  std::chrono::seconds retention{60};    // a finished stream stays resumable this long
  std::chrono::milliseconds retry{2000}; // the SSE retry field of priming events
  std::chrono::seconds hold{300};        // a GET (or resumable POST) response ends after this; the client polls
  std::chrono::seconds keepalive{15};    // an SSE comment on a response idle this long
  // Streamed responses open at once for one credential (GET streams and
  // streamed POST answers): one key cannot hold the server's connections;
  // nor can one tenant, with many keys.
  std::size_t max_open_per_credential = 64;
  std::size_t max_open_per_tenant = 256;
};

class EventStream;

// One HTTP response's view of a stream: what it has not sent yet.
class StreamReader {
 public:
  enum class State { more, done, detached };
  struct Chunk {
    std::string text;  // SSE text of every event not yet sent here (may be empty)
    State state = State::more;
  };
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // Everything new since the last take. `done`: the stream is finished
  // and all of it was taken; `detached`: this response should end now
  // (another took over, the stream was dropped, or the producer asked the
  // client to poll) after sending `text`.
  Chunk take();
  // Until the stream has something new or `until`; false on timeout.
  boost::asio::awaitable<bool> wait(std::chrono::steady_clock::time_point until);
  // How long this response may last (zero: until the stream is done), and
  // after how long idle a keep-alive comment goes out.
  [[nodiscard]] std::chrono::milliseconds hold() const { return hold_; }
  [[nodiscard]] std::chrono::seconds keepalive() const { return keepalive_; }
  // Ends a wait() early, from any thread, even after this reader is gone
  // (the HTTP layer's way to say its client left).
  [[nodiscard]] std::function<void()> waker() const;
  // Keeps `ticket` (StreamRegistry::admit) for as long as this response lasts.
  void keep(std::shared_ptr<void> ticket) { ticket_ = std::move(ticket); }

 private:
  friend class EventStream;
  using Bell = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;
  StreamReader(std::shared_ptr<EventStream> stream, std::uint64_t generation, std::uint64_t cursor,
               std::shared_ptr<Bell> bell, std::chrono::milliseconds hold, std::chrono::seconds keepalive);
  std::shared_ptr<EventStream> stream_;
  std::uint64_t generation_;
  std::uint64_t cursor_;  // the last event sent here
  std::shared_ptr<Bell> bell_;
  std::chrono::milliseconds hold_;
  std::chrono::seconds keepalive_;
  std::shared_ptr<void> ticket_;
};

class EventStream : public std::enable_shared_from_this<EventStream> {
 public:
  // `resumable`: the client understands priming events and polling
  // (protocol 2025-11-25 and later).
  EventStream(std::string id, const StreamLimits& limits, bool resumable);

  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] bool resumable() const { return resumable_; }

  // Appends one JSON-RPC message (compact JSON, no newline); false once
  // the stream was dropped (nobody can ever read it).
  bool push(std::string_view message_json);
  // The same, unless that very message is already waiting unsent (a
  // list_changed told twice says nothing more).
  bool push_coalesced(std::string_view message_json);
  // A priming event: an id, the retry field and empty data, so the client
  // holds a resumption point before anything else. Only when resumable.
  void prime();
  // The last event is in: readers end once they sent everything.
  void finish();
  // Ends the attached response after what it has (the client polls and
  // resumes with GET); nothing happens unless resumable.
  void disconnect();
  // Session gone or stream evicted: readers end, pushes are refused.
  void drop();
  // When the stream finished; nullopt while it is running.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> finished_at() const;

  // A reader positioned after event `after` (nullopt: after everything a
  // reader was already given); it takes over from any attached reader.
  // Null when the events after `after` are no longer all held, `after`
  // was never issued, or the stream was dropped.
  // The response ends after `hold` (zero: when the stream finishes).
  std::shared_ptr<StreamReader> attach(std::optional<std::uint64_t> after, const boost::asio::any_io_executor& ex,
                                       std::chrono::milliseconds hold);

 private:
  friend class StreamReader;
  struct Event {
    std::uint64_t seq;
    std::string text;
  };
  // "id: <stream>-<n>\n" of the next event.
  [[nodiscard]] std::string id_line_locked() const;
  void append_locked(std::string text);
  void ring_locked();

  const std::string id_;
  const StreamLimits limits_;
  const bool resumable_;
  mutable std::mutex mu_;
  std::deque<Event> events_;
  std::size_t bytes_ = 0;
  std::uint64_t next_ = 1;       // the next event's number
  std::uint64_t delivered_ = 0;  // the newest event some reader took
  std::uint64_t generation_ = 0; // of the attached reader
  std::uint64_t ending_ = 0;     // a generation told to end (disconnect); 0: none
  bool finished_ = false;
  bool dropped_ = false;
  std::chrono::steady_clock::time_point finished_at_;
  std::shared_ptr<StreamReader::Bell> bell_;  // the attached reader's
};

// A Last-Event-ID of ours: the stream's id and the event's number.
struct EventId {
  std::string stream;
  std::uint64_t seq = 0;
};
std::optional<EventId> parse_event_id(std::string_view text);

// The streams of every session: one per streamed POST answer, and one per
// session for GET (server-initiated messages).
class StreamRegistry {
 public:
  explicit StreamRegistry(StreamLimits limits) : limits_(limits) {}
  [[nodiscard]] const StreamLimits& limits() const { return limits_; }

  // A new stream for one POST's answer. At max_streams_per_session the
  // oldest finished stream goes; null when all of them are still running.
  std::shared_ptr<EventStream> open(const std::string& session, std::int64_t tenant, bool resumable);
  // The session's stream for GET without Last-Event-ID, made on first use.
  // `listens`: it is told of resource changes (the key may read them).
  std::shared_ptr<EventStream> standalone(const std::string& session, std::int64_t tenant, bool resumable,
                                          bool listens);
  // The stream `stream_id` of this session; null when unknown here.
  std::shared_ptr<EventStream> find(const std::string& session, std::string_view stream_id);
  // Every listening GET stream of the tenant's sessions gets `message_json`.
  void broadcast(std::int64_t tenant, std::string_view message_json);
  void drop_session(const std::string& session);
  // Drops finished streams held past their retention.
  void sweep();
  [[nodiscard]] std::size_t size() const;
  // A place among the credential's and its tenant's open streamed
  // responses; null when either holds its maximum already (`tenant_full`
  // says which). The place is given back when the last copy of the ticket
  // goes (StreamReader::keep).
  std::shared_ptr<void> admit(const std::string& credential, std::int64_t tenant, bool* tenant_full = nullptr);
  [[nodiscard]] std::size_t open_responses(const std::string& credential) const;
  [[nodiscard]] std::size_t open_responses(std::int64_t tenant) const;

 private:
  struct PerSession {
    std::int64_t tenant = 0;
    bool listens = false;
    std::vector<std::shared_ptr<EventStream>> streams;  // POST answers, oldest first
    std::shared_ptr<EventStream> standalone;            // GET, never evicted for them
  };
  void expire_locked(PerSession& s, std::chrono::steady_clock::time_point now);

  const StreamLimits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, PerSession> sessions_;
  // Open streamed responses per credential; shared with the tickets, which
  // may outlive the registry.
  struct Open {
    std::mutex mu;
    std::unordered_map<std::string, std::size_t> count;
    std::unordered_map<std::int64_t, std::size_t> per_tenant;
  };
  std::shared_ptr<Open> open_ = std::make_shared<Open>();
};

}  // namespace sluice::mcpd
