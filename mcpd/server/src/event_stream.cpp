#include "event_stream.h"

// GCC 12 reports a mismatched new/delete inside Asio's awaitable frames
// (a known false positive of its inliner; see mcp.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <algorithm>
#include <charconv>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "keys.h"

namespace sluice::mcpd {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kStreamIdBytes = 8;  // 16 hex digits
}  // namespace

// --- StreamReader ---

StreamReader::StreamReader(std::shared_ptr<EventStream> stream, std::uint64_t generation, std::uint64_t cursor,
                           std::shared_ptr<Bell> bell, std::chrono::milliseconds hold, std::chrono::seconds keepalive)
    : stream_(std::move(stream)),
      generation_(generation),
      cursor_(cursor),
      bell_(std::move(bell)),
      hold_(hold),
      keepalive_(keepalive) {}

StreamReader::~StreamReader() {
  std::lock_guard lock(stream_->mu_);
  if (stream_->generation_ == generation_) stream_->bell_.reset();
}

StreamReader::Chunk StreamReader::take() {
  Chunk out;
  EventStream& s = *stream_;
  std::lock_guard lock(s.mu_);
  if (s.dropped_ || s.generation_ != generation_) {
    out.state = State::detached;
    return out;
  }
  // Events this reader never saw were evicted under it: it cannot go on
  // without a gap, and ends (the client's resumption is then refused).
  if (!s.events_.empty() && s.events_.front().seq > cursor_ + 1) {
    out.state = State::detached;
    return out;
  }
  for (const auto& e : s.events_) {
    if (e.seq <= cursor_) continue;
    out.text += e.text;
    cursor_ = e.seq;
  }
  s.delivered_ = std::max(s.delivered_, cursor_);
  if (s.ending_ == generation_) {
    out.state = State::detached;
  } else if (s.finished_ && cursor_ + 1 == s.next_) {
    out.state = State::done;
  }
  return out;
}

asio::awaitable<bool> StreamReader::wait(Clock::time_point until) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, until);
  auto woken = co_await (bell_->async_receive(asio::as_tuple(asio::use_awaitable)) ||
                         timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  co_return woken.index() == 0;
}

std::function<void()> StreamReader::waker() const {
  return [bell = bell_] { bell->try_send(boost::system::error_code{}); };
}

// --- EventStream ---

EventStream::EventStream(std::string id, const StreamLimits& limits, bool resumable)
    : id_(std::move(id)), limits_(limits), resumable_(resumable) {}

void EventStream::ring_locked() {
  // Capacity 1: a pending ring already says "look again".
  if (bell_) bell_->try_send(boost::system::error_code{});
}

std::string EventStream::id_line_locked() const { return "id: " + id_ + "-" + std::to_string(next_) + "\n"; }

void EventStream::append_locked(std::string text) {
  bytes_ += text.size();
  events_.push_back({next_++, std::move(text)});
  // Held within bounds, the newest event always.
  while (events_.size() > 1 && (events_.size() > limits_.max_events || bytes_ > limits_.max_bytes)) {
    bytes_ -= events_.front().text.size();
    events_.pop_front();
  }
  ring_locked();
}

bool EventStream::push(std::string_view message_json) {
  std::lock_guard lock(mu_);
  if (dropped_ || finished_) return false;
  std::string text = id_line_locked() + "event: message\ndata: ";
  text += message_json;
  text += "\n\n";
  append_locked(std::move(text));
  return true;
}

bool EventStream::push_coalesced(std::string_view message_json) {
  {
    std::lock_guard lock(mu_);
    if (!dropped_ && !events_.empty() && events_.back().seq > delivered_) {
      const std::string_view last = events_.back().text;
      const auto data = last.find("\ndata: ");
      const std::string_view body = data == std::string_view::npos ? std::string_view() : last.substr(data + 7);
      if (body.size() == message_json.size() + 2 && body.starts_with(message_json)) return true;
    }
  }
  return push(message_json);
}

void EventStream::prime() {
  if (!resumable_) return;
  std::lock_guard lock(mu_);
  if (dropped_ || finished_) return;
  append_locked(id_line_locked() + "retry: " + std::to_string(limits_.retry.count()) + "\ndata: \n\n");
}

void EventStream::finish() {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  finished_at_ = Clock::now();
  ring_locked();
}

void EventStream::disconnect() {
  if (!resumable_) return;
  std::lock_guard lock(mu_);
  if (!bell_) return;
  ending_ = generation_;
  ring_locked();
}

void EventStream::drop() {
  std::lock_guard lock(mu_);
  dropped_ = true;
  events_.clear();
  bytes_ = 0;
  if (bell_) bell_->close();
  bell_.reset();
}

std::optional<Clock::time_point> EventStream::finished_at() const {
  std::lock_guard lock(mu_);
  if (!finished_) return std::nullopt;
  return finished_at_;
}

std::shared_ptr<StreamReader> EventStream::attach(std::optional<std::uint64_t> after,
                                                  const asio::any_io_executor& ex, std::chrono::milliseconds hold) {
  std::lock_guard lock(mu_);
  if (dropped_) return nullptr;
  std::uint64_t from = after.value_or(delivered_);
  // No resumption point given: what is still held and was never sent.
  if (!after && !events_.empty()) from = std::max(from, events_.front().seq - 1);
  if (from >= next_) return nullptr;  // never issued
  // Everything after `from` must still be here.
  if (!events_.empty() && events_.front().seq > from + 1) return nullptr;
  if (events_.empty() && from + 1 != next_) return nullptr;
  // The reader attached before ends at its next look.
  if (bell_) bell_->close();
  bell_ = std::make_shared<StreamReader::Bell>(ex, 1);
  ++generation_;
  bell_->try_send(boost::system::error_code{});  // look at once
  return std::shared_ptr<StreamReader>(
      new StreamReader(shared_from_this(), generation_, from, bell_, hold, limits_.keepalive));
}

std::optional<EventId> parse_event_id(std::string_view text) {
  const auto dash = text.find('-');
  if (dash != kStreamIdBytes * 2) return std::nullopt;
  const std::string_view stream = text.substr(0, dash);
  if (stream.find_first_not_of("0123456789abcdef") != std::string_view::npos) return std::nullopt;
  const std::string_view number = text.substr(dash + 1);
  if (number.empty() || number.size() > 19) return std::nullopt;
  EventId out;
  out.stream = std::string(stream);
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), out.seq);
  if (ec != std::errc() || end != number.data() + number.size()) return std::nullopt;
  return out;
}

// --- StreamRegistry ---

void StreamRegistry::expire_locked(PerSession& s, Clock::time_point now) {
  std::erase_if(s.streams, [&](const std::shared_ptr<EventStream>& st) {
    const auto at = st->finished_at();
    if (!at || now - *at < limits_.retention) return false;
    st->drop();
    return true;
  });
}

std::shared_ptr<EventStream> StreamRegistry::open(const std::string& session, std::int64_t tenant, bool resumable) {
  auto stream = std::make_shared<EventStream>(random_hex(kStreamIdBytes), limits_, resumable);
  std::lock_guard lock(mu_);
  PerSession& s = sessions_[session];
  s.tenant = tenant;
  expire_locked(s, Clock::now());
  if (s.streams.size() >= limits_.max_streams_per_session) {
    // A running call's stream is never cut: its answer would be lost.
    auto victim = std::find_if(s.streams.begin(), s.streams.end(),
                               [](const auto& st) { return st->finished_at().has_value(); });
    if (victim == s.streams.end()) return nullptr;
    (*victim)->drop();
    s.streams.erase(victim);
  }
  s.streams.push_back(stream);
  return stream;
}

std::shared_ptr<EventStream> StreamRegistry::standalone(const std::string& session, std::int64_t tenant,
                                                        bool resumable, bool listens) {
  std::lock_guard lock(mu_);
  PerSession& s = sessions_[session];
  s.tenant = tenant;
  s.listens = listens;
  if (!s.standalone) s.standalone = std::make_shared<EventStream>(random_hex(kStreamIdBytes), limits_, resumable);
  return s.standalone;
}

std::shared_ptr<EventStream> StreamRegistry::find(const std::string& session, std::string_view stream_id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return nullptr;
  PerSession& s = it->second;
  expire_locked(s, Clock::now());
  if (s.standalone && s.standalone->id() == stream_id) return s.standalone;
  for (const auto& st : s.streams) {
    if (st->id() == stream_id) return st;
  }
  return nullptr;
}

void StreamRegistry::broadcast(std::int64_t tenant, std::string_view message_json) {
  std::vector<std::shared_ptr<EventStream>> targets;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) {
      if (s.tenant == tenant && s.listens && s.standalone) targets.push_back(s.standalone);
    }
  }
  for (const auto& st : targets) st->push_coalesced(message_json);
}

void StreamRegistry::drop_session(const std::string& session) {
  PerSession gone;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    gone = std::move(it->second);
    sessions_.erase(it);
  }
  for (const auto& st : gone.streams) st->drop();
  if (gone.standalone) gone.standalone->drop();
}

void StreamRegistry::sweep() {
  const auto now = Clock::now();
  std::lock_guard lock(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    expire_locked(it->second, now);
    if (it->second.streams.empty() && !it->second.standalone) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

std::size_t StreamRegistry::size() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [id, s] : sessions_) n += s.streams.size() + (s.standalone ? 1 : 0);
  return n;
}

std::shared_ptr<void> StreamRegistry::admit(const std::string& credential, std::int64_t tenant, bool* tenant_full) {
  {
    std::lock_guard lock(open_->mu);
    const auto key = open_->count.find(credential);
    const auto of_tenant = open_->per_tenant.find(tenant);
    const bool key_full = key != open_->count.end() && key->second >= limits_.max_open_per_credential;
    const bool full = of_tenant != open_->per_tenant.end() && of_tenant->second >= limits_.max_open_per_tenant;
    if (tenant_full) *tenant_full = full;
    if (key_full || full || limits_.max_open_per_credential == 0 || limits_.max_open_per_tenant == 0) return nullptr;
    ++open_->count[credential];
    ++open_->per_tenant[tenant];
  }
  // The deleter gives the places back; it holds the counts, not the
  // registry. (The pointer is only a non-null token.)
  static int token = 0;
  return std::shared_ptr<void>(&token, [open = open_, credential, tenant](void*) {
    std::lock_guard lock(open->mu);
    if (auto it = open->count.find(credential); it != open->count.end() && --it->second == 0) open->count.erase(it);
    if (auto it = open->per_tenant.find(tenant); it != open->per_tenant.end() && --it->second == 0) {
      open->per_tenant.erase(it);
    }
  });
}

std::size_t StreamRegistry::open_responses(const std::string& credential) const {
  std::lock_guard lock(open_->mu);
  auto it = open_->count.find(credential);
  return it == open_->count.end() ? 0 : it->second;
}

std::size_t StreamRegistry::open_responses(std::int64_t tenant) const {
  std::lock_guard lock(open_->mu);
  auto it = open_->per_tenant.find(tenant);
  return it == open_->per_tenant.end() ? 0 : it->second;
}

}  // namespace sluice::mcpd
