#include "event_stream.h"

#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

using namespace sluice::mcpd;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using State = StreamReader::State;

namespace {

StreamLimits small() {
  StreamLimits l;
  l.max_events = 4;
  l.max_bytes = 1 << 20;
  l.max_streams_per_session = 3;
  l.retention = 1s;
  l.retry = 1500ms;
  return l;
}

// The event ids in an SSE text, in order.
std::vector<std::string> ids(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t at = text.find("id: "); at != std::string::npos; at = text.find("id: ", at + 1)) {
    out.push_back(text.substr(at + 4, text.find('\n', at) - at - 4));
  }
  return out;
}

std::uint64_t seq_of(const std::string& id) { return parse_event_id(id)->seq; }

}  // namespace

TEST_CASE("event ids: ours parse, anything else does not", "[streams]") {
  auto id = parse_event_id("0123456789abcdef-42");
  REQUIRE(id);
  CHECK(id->stream == "0123456789abcdef");
  CHECK(id->seq == 42);
  for (const char* bad : {"", "-1", "0123456789abcdef", "0123456789abcdef-", "0123456789ABCDEF-1",
                          "0123456789abcde-1", "0123456789abcdef0-1", "0123456789abcdef--1", "0123456789abcdef-1x",
                          "0123456789abcdef-99999999999999999999", "0123456789abcdef-+1", "x0123456789abcde-1"}) {
    INFO(bad);
    CHECK_FALSE(parse_event_id(bad));
  }
}

TEST_CASE("a reader gets every event once, in order, then done", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  s->prime();
  auto r = s->attach(0, io.get_executor(), 0s);
  REQUIRE(r);
  auto c = r->take();
  CHECK(c.state == State::more);
  CHECK(c.text == "id: 0123456789abcdef-1\nretry: 1500\ndata: \n\n");
  CHECK(s->push(R"({"a":1})"));
  CHECK(s->push(R"({"a":2})"));
  c = r->take();
  CHECK(c.text == "id: 0123456789abcdef-2\nevent: message\ndata: {\"a\":1}\n\n"
                  "id: 0123456789abcdef-3\nevent: message\ndata: {\"a\":2}\n\n");
  CHECK(r->take().text.empty());
  s->finish();
  CHECK_FALSE(s->push(R"({"late":1})"));
  c = r->take();
  CHECK(c.text.empty());
  CHECK(c.state == State::done);
}

TEST_CASE("resumption replays what followed the last event seen, and only that", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  auto first = s->attach(0, io.get_executor(), 0s);
  s->push(R"({"n":1})");
  s->push(R"({"n":2})");
  CHECK(ids(first->take().text) == std::vector<std::string>{"0123456789abcdef-1", "0123456789abcdef-2"});
  s->push(R"({"n":3})");
  // The client saw event 1 only (2 was lost with its connection).
  auto second = s->attach(1, io.get_executor(), 0s);
  REQUIRE(second);
  // The first reader was taken over: it ends without sending anything more.
  auto old = first->take();
  CHECK(old.state == State::detached);
  CHECK(old.text.empty());
  CHECK(ids(second->take().text) == std::vector<std::string>{"0123456789abcdef-2", "0123456789abcdef-3"});
  // Never issued, or past the end: refused.
  CHECK_FALSE(s->attach(4, io.get_executor(), 0s));
  CHECK_FALSE(s->attach(99, io.get_executor(), 0s));
  // Resuming at the newest event is fine: nothing to replay.
  auto third = s->attach(3, io.get_executor(), 0s);
  REQUIRE(third);
  CHECK(third->take().text.empty());
}

TEST_CASE("held events are bounded; a resumption from before them is refused", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  for (int i = 1; i <= 10; ++i) s->push(R"({"n":)" + std::to_string(i) + "}");
  // max_events = 4: events 7..10 are held.
  CHECK_FALSE(s->attach(0, io.get_executor(), 0s));
  CHECK_FALSE(s->attach(5, io.get_executor(), 0s));
  auto r = s->attach(6, io.get_executor(), 0s);
  REQUIRE(r);
  auto c = r->take();
  REQUIRE(ids(c.text).size() == 4);
  CHECK(seq_of(ids(c.text).front()) == 7);
  // A reader that fell behind the held window ends rather than skip events.
  auto slow = s->attach(10, io.get_executor(), 0s);
  for (int i = 11; i <= 20; ++i) s->push(R"({"n":)" + std::to_string(i) + "}");
  CHECK(slow->take().state == State::detached);

  // Bytes bound too; the newest event is always held, however large.
  StreamLimits tiny = small();
  tiny.max_bytes = 100;
  auto b = std::make_shared<EventStream>("0123456789abcdef", tiny, true);
  b->push(R"({"x":")" + std::string(300, 'x') + "\"}");
  auto rb = b->attach(0, io.get_executor(), 0s);
  REQUIRE(rb);
  CHECK(rb->take().text.size() > 300);
}

TEST_CASE("without a resumption point a reader gets what no reader was given", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), false);
  s->prime();  // not resumable: no priming event
  s->push(R"({"n":1})");
  auto a = s->attach(std::nullopt, io.get_executor(), 0s);
  CHECK(seq_of(ids(a->take().text).at(0)) == 1);
  s->push(R"({"n":2})");
  s->push(R"({"n":3})");
  auto b = s->attach(std::nullopt, io.get_executor(), 0s);
  auto got = ids(b->take().text);
  REQUIRE(got.size() == 2);
  CHECK(seq_of(got[0]) == 2);
  // More than the window was pushed while nobody read: the oldest held.
  for (int i = 4; i <= 12; ++i) s->push(R"({"n":)" + std::to_string(i) + "}");
  b.reset();
  auto c = s->attach(std::nullopt, io.get_executor(), 0s);
  REQUIRE(c);
  CHECK(seq_of(ids(c->take().text).at(0)) == 9);
}

TEST_CASE("disconnect ends the response after what it has, only for resumable streams", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  s->prime();
  auto r = s->attach(0, io.get_executor(), 0s);
  s->disconnect();
  auto c = r->take();
  CHECK(ids(c.text).size() == 1);  // the priming event still goes out
  CHECK(c.state == State::detached);
  s->push(R"({"result":1})");
  s->finish();
  // The client comes back with the priming event's id.
  auto back = s->attach(1, io.get_executor(), 0s);
  c = back->take();
  CHECK(ids(c.text).size() == 1);
  CHECK(c.state == State::done);

  auto old = std::make_shared<EventStream>("0123456789abcdef", small(), false);
  auto ro = old->attach(0, io.get_executor(), 0s);
  old->push(R"({"n":1})");
  old->disconnect();
  CHECK(ro->take().state == State::more);
}

TEST_CASE("a dropped stream ends its reader and refuses pushes and readers", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  auto r = s->attach(0, io.get_executor(), 0s);
  s->push(R"({"n":1})");
  s->drop();
  CHECK(r->take().state == State::detached);
  CHECK_FALSE(s->push(R"({"n":2})"));
  CHECK_FALSE(s->attach(0, io.get_executor(), 0s));
}

TEST_CASE("a waiting reader wakes on a push from another thread, or at its deadline", "[streams]") {
  boost::asio::io_context io;
  auto s = std::make_shared<EventStream>("0123456789abcdef", small(), true);
  auto r = s->attach(0, io.get_executor(), 0s);
  // The attach itself rings once: the first look is immediate.
  auto first = boost::asio::co_spawn(io, r->wait(Clock::now() + 5s), boost::asio::use_future);
  io.run();
  io.restart();
  CHECK(first.get());

  const auto started = Clock::now();
  auto timed = boost::asio::co_spawn(io, r->wait(Clock::now() + 50ms), boost::asio::use_future);
  io.run();
  io.restart();
  CHECK_FALSE(timed.get());
  CHECK(Clock::now() - started >= 50ms);

  auto woken = boost::asio::co_spawn(io, r->wait(Clock::now() + 10s), boost::asio::use_future);
  std::thread producer([s] {
    std::this_thread::sleep_for(20ms);
    s->push(R"({"n":1})");
  });
  io.run();
  producer.join();
  CHECK(woken.get());
  CHECK(ids(r->take().text).size() == 1);
}

TEST_CASE("the registry finds streams only within their session", "[streams]") {
  StreamRegistry reg(small());
  auto a = reg.open("session-a", 1, true);
  auto b = reg.open("session-b", 1, true);
  CHECK(reg.find("session-a", a->id()) == a);
  CHECK_FALSE(reg.find("session-b", a->id()));
  CHECK_FALSE(reg.find("session-c", a->id()));
  auto g = reg.standalone("session-a", 1, true, true);
  CHECK(reg.standalone("session-a", 1, true, true) == g);
  CHECK(reg.find("session-a", g->id()) == g);
  CHECK(reg.size() == 3);
  reg.drop_session("session-a");
  CHECK_FALSE(reg.find("session-a", a->id()));
  CHECK_FALSE(a->push("{}"));
  CHECK_FALSE(g->push("{}"));
  CHECK(b->push("{}"));
  CHECK(reg.size() == 1);
}

TEST_CASE("the registry bounds streams per session, never cutting a running one", "[streams]") {
  StreamRegistry reg(small());  // 3 per session
  auto s1 = reg.open("s", 1, true);
  auto s2 = reg.open("s", 1, true);
  auto s3 = reg.open("s", 1, true);
  s2->finish();
  auto s4 = reg.open("s", 1, true);
  CHECK_FALSE(reg.find("s", s2->id()));
  CHECK(reg.find("s", s1->id()) == s1);
  CHECK_FALSE(reg.open("s", 1, true));  // none finished: refused, nothing cut
  CHECK(reg.find("s", s1->id()) == s1);
  CHECK(s1->push("{}"));
  s3->finish();
  auto s5 = reg.open("s", 1, true);
  REQUIRE(s5);
  CHECK_FALSE(reg.find("s", s3->id()));
  CHECK(reg.find("s", s5->id()) == s5);
  CHECK(reg.open("other", 1, true));  // another session's count is its own
}

TEST_CASE("finished streams stay resumable for their retention, then go", "[streams]") {
  StreamRegistry reg(small());  // retention 1 s
  auto s = reg.open("s", 1, true);
  s->push("{}");
  s->finish();
  reg.sweep();
  CHECK(reg.find("s", s->id()) == s);
  std::this_thread::sleep_for(1100ms);
  reg.sweep();
  CHECK_FALSE(reg.find("s", s->id()));
  CHECK(reg.size() == 0);
}

TEST_CASE("broadcast reaches the GET streams of the tenant's sessions only", "[streams]") {
  boost::asio::io_context io;
  StreamRegistry reg(small());
  auto mine = reg.standalone("s1", 7, true, true);
  auto other = reg.standalone("s2", 8, true, true);
  auto deaf = reg.standalone("s4", 7, true, false);  // a key that may not read resources
  auto post = reg.open("s3", 7, true);
  reg.broadcast(7, R"({"jsonrpc":"2.0","method":"notifications/resources/list_changed"})");
  auto rm = mine->attach(0, io.get_executor(), 0s);
  CHECK(rm->take().text.find("list_changed") != std::string::npos);
  CHECK(other->attach(0, io.get_executor(), 0s)->take().text.empty());
  CHECK(post->attach(0, io.get_executor(), 0s)->take().text.empty());
  CHECK(deaf->attach(0, io.get_executor(), 0s)->take().text.empty());
  // Told many times while unsent: once. Once sent, told again.
  for (int i = 0; i < 100; ++i) reg.broadcast(7, R"({"jsonrpc":"2.0","method":"notifications/resources/list_changed"})");
  CHECK(ids(rm->take().text).size() == 1);
  reg.broadcast(7, R"({"jsonrpc":"2.0","method":"notifications/resources/list_changed"})");
  reg.broadcast(7, R"({"jsonrpc":"2.0","method":"notifications/resources/list_changed"})");
  CHECK(ids(rm->take().text).size() == 1);
}

TEST_CASE("mcpd::StreamRegistry admits a bounded number of open responses per tenant, over all its keys",
          "[mcpd][streams]") {
  StreamLimits limits;
  limits.max_open_per_credential = 2;
  limits.max_open_per_tenant = 3;
  StreamRegistry registry(limits);
  std::vector<std::shared_ptr<void>> held;
  for (const char* key : {"key-a", "key-a", "key-b"}) {
    held.push_back(registry.admit(key, 7));
    REQUIRE(held.back());
  }
  bool tenant_full = false;
  CHECK_FALSE(registry.admit("key-c", 7, &tenant_full));  // a fresh key of the same tenant
  CHECK(tenant_full);
  CHECK(registry.open_responses(std::int64_t{7}) == 3);
  auto other = registry.admit("key-d", 8);  // another tenant's places are its own
  CHECK(other);
  held.erase(held.begin());  // one of key-a's responses ended: the tenant's place and the key's
  CHECK(registry.open_responses(std::int64_t{7}) == 2);
  CHECK(registry.admit("key-c", 7));
}

TEST_CASE("mcpd::StreamRegistry admits a bounded number of open responses per credential", "[mcpd][streams]") {
  StreamLimits limits;
  limits.max_open_per_credential = 3;
  auto registry = std::make_unique<StreamRegistry>(limits);
  std::vector<std::shared_ptr<void>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(registry->admit("key-a", 1));
    REQUIRE(held.back());
  }
  bool tenant_full = true;
  CHECK_FALSE(registry->admit("key-a", 1, &tenant_full));
  CHECK_FALSE(tenant_full);
  CHECK(registry->admit("key-b", 1));  // another credential's places are its own
  CHECK(registry->open_responses("key-a") == 3);
  held.pop_back();  // a response ended
  CHECK(registry->open_responses("key-a") == 2);
  auto again = registry->admit("key-a", 1);
  CHECK(again);
  // A ticket may outlive its registry (a response still being written).
  registry.reset();
  held.clear();
  again.reset();
}
