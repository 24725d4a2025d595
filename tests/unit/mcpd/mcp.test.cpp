#include "mcp.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <numeric>
#include <set>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include "audit_chain.h"
#include "demo_data.h"
#include "jsonrpc.h"
#include "power_cut.h"
#include "sql.h"
#include "sqlite_files.h"
#include "temp_dir.h"
#include "temp_files.h"

using namespace sluice::mcpd;
using sluice::testing::PowerCut;
using sluice::testing::TempDir;
using sluice::testing::exec_sql;
using sluice::testing::heavy_triggers;
using nlohmann::json;

namespace {

struct World {
  TempDir dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<Sources> sources;
  std::unique_ptr<Toolbox> tools;
  std::unique_ptr<Sessions> sessions;
  McpCounters counters;
  const KeyHash digest_key = random_key();
  AnswerBudget answers;
  std::unique_ptr<McpServer> mcp;
  boost::asio::io_context io;
  boost::asio::thread_pool workers{2};

  // No journal; `max_pending` records at most in the audit queue.
  explicit World(std::size_t max_pending = 65536, std::chrono::seconds session_idle = std::chrono::seconds(3600),
                 StreamLimits stream_limits = {}, AnswerLimits answer_limits = {})
      : answers(answer_limits) {
    AuditOptions audit_options;
    audit_options.max_batch = 64;
    audit_options.max_pending = max_pending;
    audit_options.journal = false;
    DemoOptions demo;
    demo.customers = 50;
    demo.transactions = 500;
    REQUIRE(generate_demo_bank(dir.file("bank.db"), demo));
    store = std::move(*Store::open(dir.file("mcpd.db")));
    REQUIRE(store->create_tenant("acme", dir.file("bank.db")));
    REQUIRE(store->create_user(1, "alice", Role::editor));
    auto a = AuditLog::open(dir.file("mcpd.db"), audit_options);
    REQUIRE(a);
    audit = std::move(*a);
    sources = std::make_unique<Sources>(*store, QueryLimits{});
    tools = std::make_unique<Toolbox>(*store, *sources, false);
    sessions = std::make_unique<Sessions>(100, session_idle);
    mcp = std::make_unique<McpServer>(*tools, *sessions, *audit, counters, workers.get_executor(), 2, digest_key,
                                      answers, stream_limits);
    sessions->on_end([m = mcp.get()](const std::string& id) { m->session_ended(id); });
  }

  // acme's audit records of `kind`, newest first (the read itself must work).
  std::vector<json> audited(const std::string& kind) {
    auto records = audit->read("acme", 10, 0, kind);
    REQUIRE(records);
    return std::move(*records);
  }

  McpResponse get(const Principal& who, const std::string& session, const std::string& last_event_id = "",
                  const std::string& accept = "text/event-stream") {
    McpRequest r;
    r.method = "GET";
    r.accept = accept;
    r.session_id = session;
    r.last_event_id = last_event_id;
    return send(std::move(r), who);
  }

  McpResponse send(McpRequest req, const Principal& who) {
    auto f = boost::asio::co_spawn(io, mcp->handle(std::move(req), who), boost::asio::use_future);
    io.restart();
    io.run();
    return f.get();
  }

  McpResponse post(const json& body, const Principal& who, const std::string& session = "",
                   const std::string& version = "") {
    McpRequest r;
    r.method = "POST";
    r.accept = "application/json, text/event-stream";
    r.content_type = "application/json";
    r.session_id = session;
    r.protocol_version = version;
    r.body = body.dump();
    return send(std::move(r), who);
  }

  std::string open_session(const Principal& who, const std::string& version = "2025-11-25") {
    auto r = post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                   {"params", {{"protocolVersion", version}, {"capabilities", json::object()},
                               {"clientInfo", {{"name", "test"}, {"version", "1"}}}}}},
                  who);
    REQUIRE(r.status == 200);
    for (auto& [k, v] : r.headers) {
      if (k == "Mcp-Session-Id") return v;
    }
    FAIL("no session id");
    return "";
  }
};

Principal principal(const std::string& key_id, unsigned scopes) {
  Principal p;
  p.credential_type = "api_key";
  p.credential_id = key_id;
  p.tenant_id = 1;
  p.tenant = "acme";
  p.user_id = 1;
  p.user = "alice";
  p.role = Role::viewer;
  p.scopes = scopes;
  return p;
}

json body(const McpResponse& r) { return json::parse(r.body); }

json call(const std::string& tool, json args, int id = 7) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", tool}, {"arguments", args}}}};
}

}  // namespace

TEST_CASE("mcpd::McpServer negotiates the protocol and binds sessions to credentials", "[mcpd][mcp]") {
  World w;
  const Principal alice = principal("aaaa", kAllScopes), mallory = principal("bbbb", kAllScopes);

  SECTION("initialize echoes a supported revision and opens a session") {
    for (const char* v : {"2025-11-25", "2025-06-18", "2025-03-26"}) {
      auto r = w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                       {"params", {{"protocolVersion", v}, {"capabilities", json::object()}}}},
                      alice);
      REQUIRE(r.status == 200);
      CHECK(body(r)["result"]["protocolVersion"] == v);
      CHECK(body(r)["result"]["serverInfo"]["name"] == "sluice-mcpd");
      REQUIRE(r.headers.size() == 1);
      CHECK(r.headers[0].first == "Mcp-Session-Id");
      CHECK(r.headers[0].second.size() == 64);
    }
  }
  SECTION("an unknown revision is answered with the latest") {
    auto r = w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                     {"params", {{"protocolVersion", "1999-01-01"}}}},
                    alice);
    CHECK(body(r)["result"]["protocolVersion"] == "2025-11-25");
  }
  SECTION("a request without a session is a 400, an unknown session a 404") {
    const json ping = {{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}};
    CHECK(w.post(ping, alice).status == 400);
    CHECK(w.post(ping, alice, std::string(64, 'a')).status == 404);
  }
  SECTION("another credential presenting the session id gets 404") {
    const std::string sid = w.open_session(alice);
    const json ping = {{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}};
    CHECK(w.post(ping, alice, sid).status == 200);
    CHECK(w.post(ping, mallory, sid).status == 404);
  }
  SECTION("a credential of another type with the same id is another credential") {
    const std::string sid = w.open_session(alice);
    Principal grant = alice;
    grant.credential_type = "oauth";  // a second type may issue any id
    const json ping = {{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}};
    CHECK(w.post(ping, grant, sid).status == 404);
    McpRequest del;
    del.method = "DELETE";
    del.session_id = sid;
    CHECK(w.send(del, grant).status == 404);
    w.sessions->end_credential(grant.credential());
    CHECK(w.post(ping, alice, sid).status == 200);
  }
  SECTION("DELETE ends the session for its owner only") {
    const std::string sid = w.open_session(alice);
    McpRequest del;
    del.method = "DELETE";
    del.session_id = sid;
    CHECK(w.send(del, mallory).status == 404);
    del.protocol_version = "2024-01-01";
    CHECK(w.send(del, alice).status == 400);  // checked as on POST and GET
    del.protocol_version = "2025-11-25";
    CHECK(w.send(del, alice).status == 200);
    CHECK(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}}, alice, sid).status == 404);
    CHECK(w.send(del, alice).status == 404);
  }
  SECTION("one credential's many sessions never push out another's") {
    const std::string sid = w.open_session(alice);
    for (int i = 0; i < 200; ++i) w.open_session(mallory);
    CHECK(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}}, alice, sid).status == 200);
    CHECK(w.sessions->size() <= 33);
  }
  SECTION("only short identifying strings of clientInfo are kept") {
    auto r = w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                     {"params", {{"protocolVersion", "2025-11-25"},
                                 {"clientInfo", {{"name", std::string(1000, 'n')}, {"version", "1"}, {"blob", std::string(5000, 'x')}}}}}},
                    alice);
    const std::string sid = r.headers[0].second;
    auto s = w.sessions->use(sid, "api_key:aaaa");
    REQUIRE(s);
    CHECK(s->client_info["name"].get<std::string>().size() == 128);
    CHECK_FALSE(s->client_info.contains("blob"));
  }
  SECTION("an unsupported MCP-Protocol-Version header is a 400") {
    const std::string sid = w.open_session(alice);
    CHECK(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}}, alice, sid, "2024-01-01").status == 400);
    CHECK(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}}, alice, sid, "2025-06-18").status == 200);
  }
  SECTION("initialize within a session is refused") {
    const std::string sid = w.open_session(alice);
    auto r = w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"}, {"params", {{"protocolVersion", "2025-11-25"}}}},
                    alice, sid);
    CHECK(r.status == 400);
  }
}

TEST_CASE("mcpd::McpServer serves GET streams to the session's owner, resumable where they left off",
          "[mcpd][mcp]") {
  World w;
  const Principal alice = principal("aaaa", kAllScopes), mallory = principal("bbbb", kAllScopes);
  const std::string sid = w.open_session(alice);

  SECTION("refusals: no session, unknown session, another credential, wrong Accept, bad Last-Event-ID") {
    CHECK(w.get(alice, "").status == 400);
    CHECK(w.get(alice, std::string(64, 'a')).status == 404);
    CHECK(w.get(mallory, sid).status == 404);
    CHECK(w.get(alice, sid, "", "application/json").status == 406);
    CHECK(w.get(alice, sid, "not-an-event-id").status == 400);
    CHECK(w.get(alice, sid, std::string(300, '1')).status == 400);
    // The session is fine, the stream is not: 409, not the 404 that tells
    // a client its session is gone.
    CHECK(w.get(alice, sid, "0123456789abcdef-1").status == 409);
    McpRequest put;
    put.method = "PUT";
    put.session_id = sid;
    CHECK(w.send(put, alice).status == 405);
  }
  SECTION("a 2025-11-25 session's stream is primed, with the retry field, and hears of resource changes") {
    auto r = w.get(alice, sid);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/event-stream");
    REQUIRE(r.stream);
    CHECK(r.stream->hold() == StreamLimits{}.hold);
    auto first = r.stream->take();
    CHECK(first.text.find("retry: 2000\ndata: \n\n") != std::string::npos);
    const std::string priming = first.text.substr(4, first.text.find('\n') - 4);
    REQUIRE(parse_event_id(priming));

    w.mcp->resources_changed(1);
    w.mcp->resources_changed(2);  // another tenant's: not ours
    auto next = r.stream->take();
    CHECK(next.text.find(R"("method":"notifications/resources/list_changed")") != std::string::npos);
    CHECK(next.text.find("list_changed", next.text.find("list_changed") + 1) == std::string::npos);

    // The connection broke after the priming event: the change is replayed
    // on resumption, to the owner only.
    CHECK(w.get(mallory, sid, priming).status == 404);
    const std::string other = w.open_session(alice);
    CHECK(w.get(alice, other, priming).status == 409);  // another session's stream
    auto resumed = w.get(alice, sid, priming);
    REQUIRE(resumed.status == 200);
    CHECK(resumed.stream->take().text.find("list_changed") != std::string::npos);
    // The first response was taken over.
    CHECK(r.stream->take().state == StreamReader::State::detached);
  }
  SECTION("older sessions get no priming event; their GET responses end after the hold too") {
    const std::string old = w.open_session(alice, "2025-06-18");
    auto r = w.get(alice, old);
    REQUIRE(r.status == 200);
    CHECK(r.stream->take().text.empty());
    CHECK(r.stream->hold() == StreamLimits{}.hold);
  }
  SECTION("a response ends no later than its key expires") {
    Principal expiring = alice;
    expiring.expires_ms = now_ms() + 5000;
    auto r = w.get(expiring, sid);
    REQUIRE(r.stream);
    CHECK(r.stream->hold() > std::chrono::milliseconds(4000));
    CHECK(r.stream->hold() <= std::chrono::milliseconds(5000));
    expiring.expires_ms = now_ms() + 24 * 3600 * 1000;  // beyond the hold: the hold
    CHECK(w.get(expiring, sid).stream->hold() == StreamLimits{}.hold);
  }
  SECTION("a key that may not read resources is neither offered nor told of their changes") {
    const Principal runner = principal("cccc", kScopeQuery);
    auto init = w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                        {"params", {{"protocolVersion", "2025-11-25"}, {"capabilities", json::object()}}}},
                       runner);
    CHECK_FALSE(body(init)["result"]["capabilities"].contains("resources"));
    CHECK_FALSE(body(init)["result"]["capabilities"].contains("completions"));
    CHECK(body(init)["result"]["capabilities"].contains("tools"));
    CHECK(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"},
                  {"params", {{"protocolVersion", "2025-11-25"}, {"capabilities", json::object()}}}},
                 alice)
              .body.find(R"("listChanged":true)") != std::string::npos);
    auto r = w.get(runner, init.headers[0].second);
    REQUIRE(r.stream);
    r.stream->take();  // the priming event
    w.mcp->resources_changed(1);
    CHECK(r.stream->take().text.empty());
  }
  SECTION("revoking a credential ends its sessions and their streams, not others'") {
    auto r = w.get(alice, sid);
    REQUIRE(r.stream);
    const std::string theirs = w.open_session(mallory);
    w.sessions->end_credential("api_key:aaaa");
    CHECK(r.stream->take().state == StreamReader::State::detached);
    CHECK(w.get(alice, sid).status == 404);
    CHECK(w.get(mallory, theirs).status == 200);
  }
  SECTION("an idle session has ended before its sweep: DELETE gets 404, as a POST would") {
    World quick(65536, std::chrono::seconds(1));
    const std::string s = quick.open_session(alice);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    McpRequest del;
    del.method = "DELETE";
    del.session_id = s;
    CHECK(quick.send(del, alice).status == 404);
    CHECK(quick.sessions->size() == 0);
  }
  SECTION("an idle session's sweep ends its streams") {
    World quick(65536, std::chrono::seconds(1));
    const std::string s = quick.open_session(alice);
    auto r = quick.get(alice, s);
    REQUIRE(r.stream);
    quick.sessions->sweep();
    CHECK(quick.mcp->streams().size() == 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    quick.sessions->sweep();
    CHECK(quick.sessions->size() == 0);
    CHECK(quick.mcp->streams().size() == 0);
    CHECK(r.stream->take().state == StreamReader::State::detached);
  }
  SECTION("one key holds a bounded number of open streams; a refused GET takes over nothing") {
    StreamLimits limits;
    limits.max_open_per_credential = 2;
    World small(65536, std::chrono::seconds(3600), limits);
    const std::string s1 = small.open_session(alice), s2 = small.open_session(alice);
    auto first = small.get(alice, s1);
    auto second = small.get(alice, s2);
    REQUIRE(first.stream);
    REQUIRE(second.stream);
    const std::string priming = first.stream->take().text.substr(4, 18);  // "id: <16hex>-<n>"
    auto refused = small.get(alice, s1, priming.substr(0, priming.find('\n')));
    CHECK(refused.status == 429);
    CHECK(first.stream->take().state == StreamReader::State::more);  // not taken over
    CHECK(small.get(mallory, small.open_session(mallory)).status == 200);  // another key's own places
    second.stream.reset();  // a response ended
    CHECK(small.get(alice, s2).status == 200);
  }
  SECTION("one tenant holds a bounded number of open streams over all its keys") {
    StreamLimits limits;
    limits.max_open_per_credential = 5;
    limits.max_open_per_tenant = 2;
    World small(65536, std::chrono::seconds(3600), limits);
    auto first = small.get(alice, small.open_session(alice));
    auto second = small.get(mallory, small.open_session(mallory));
    REQUIRE(first.stream);
    REQUIRE(second.stream);
    const Principal carol = principal("cccc", kAllScopes);  // a third key of the same tenant
    auto refused = small.get(carol, small.open_session(carol));
    CHECK(refused.status == 429);
    CHECK_THAT(refused.body, Catch::Contains("too many open streams for this tenant"));
    Principal other = principal("dddd", kAllScopes);
    other.tenant_id = 2;
    other.tenant = "beta";
    CHECK(small.get(other, small.open_session(other)).status == 200);  // another tenant's own places
    first.stream.reset();  // a response ended
    CHECK(small.get(carol, small.open_session(carol)).status == 200);
  }
  SECTION("ending the session ends its streams") {
    auto r = w.get(alice, sid);
    REQUIRE(r.stream);
    McpRequest del;
    del.method = "DELETE";
    del.session_id = sid;
    CHECK(w.send(del, alice).status == 200);
    CHECK(r.stream->take().state == StreamReader::State::detached);
    CHECK(w.mcp->streams().size() == 0);
  }
}

TEST_CASE("mcpd::McpServer answers malformed input with the JSON-RPC codes of the spec", "[mcpd][mcp]") {
  World w;
  const Principal alice = principal("aaaa", kAllScopes);
  const std::string sid = w.open_session(alice);
  McpRequest raw;
  raw.method = "POST";
  raw.accept = "application/json, text/event-stream";
  raw.content_type = "application/json";
  raw.session_id = sid;

  SECTION("unparseable JSON is -32700") {
    raw.body = "{\"jsonrpc\": ";
    auto r = w.send(raw, alice);
    CHECK(r.status == 400);
    CHECK(body(r)["error"]["code"] == rpc::kParseError);
  }
  SECTION("JSON nested past the bound is -32700, not a stack overflow in a copy or dump") {
    raw.body = R"({"jsonrpc":"2.0","id":1,"method":)" + std::string(500000, '[') + std::string(500000, ']') + "}";
    auto r = w.send(raw, alice);
    CHECK(r.status == 400);
    CHECK(body(r)["error"]["code"] == rpc::kParseError);
    CHECK(body(r)["error"]["message"].get<std::string>().find("nested deeper") != std::string::npos);
  }
  SECTION("an error response whose request id could not be read, with no id or a null one, is accepted") {
    for (const char* ok : {R"({"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"}})",
                           R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request"}})"}) {
      raw.body = ok;
      INFO(ok);
      CHECK(w.send(raw, alice).status == 202);
    }
  }
  SECTION("a message that is not JSON-RPC is -32600") {
    for (const char* bad : {R"({"jsonrpc":"2.0","id":null,"method":"ping"})", R"({"jsonrpc":"2.0","result":{}})",
                            R"({"jsonrpc":"2.0","id":null,"result":{}})",
                            R"({"jsonrpc":"1.0","id":1,"method":"ping"})", R"({"id":1,"method":"ping"})",
                            R"({"jsonrpc":"2.0","id":{},"method":"ping"})", R"({"jsonrpc":"2.0","id":1,"method":5})",
                            R"({"jsonrpc":"2.0","id":1,"method":"ping","params":"x"})",
                            R"({"jsonrpc":"2.0","id":1,"method":"ping","params":5})", R"([1,2])", R"("x")"}) {
      raw.body = bad;
      auto r = w.send(raw, alice);
      INFO(bad);
      CHECK(r.status == 400);
      CHECK(body(r)["error"]["code"] == rpc::kInvalidRequest);
    }
  }
  SECTION("an unknown method is -32601") {
    auto r = w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "nope/nothing"}}, alice, sid);
    CHECK(r.status == 200);
    CHECK(body(r)["error"]["code"] == rpc::kMethodNotFound);
    CHECK(body(r)["id"] == 3);
  }
  SECTION("bad params are -32602") {
    CHECK(body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "tools/call"}, {"params", json::object()}}, alice, sid))["error"]["code"] == rpc::kInvalidParams);
    CHECK(body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "tools/list"}, {"params", {{"cursor", "zz"}}}}, alice, sid))["error"]["code"] == rpc::kInvalidParams);
    CHECK(body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "logging/setLevel"}, {"params", {{"level", "loud"}}}}, alice, sid))["error"]["code"] == rpc::kInvalidParams);
    // An array is a valid JSON-RPC params, but no MCP method takes one.
    for (const char* method : {"ping", "tools/list", "tools/call", "resources/read"}) {
      INFO(method);
      auto r = w.post({{"jsonrpc", "2.0"}, {"id", 4}, {"method", method}, {"params", {1, "x"}}}, alice, sid);
      CHECK(r.status == 200);
      CHECK(body(r)["error"]["code"] == rpc::kInvalidParams);
      CHECK(body(r)["id"] == 4);
    }
    auto init = w.post({{"jsonrpc", "2.0"}, {"id", 5}, {"method", "initialize"}, {"params", json::array()}}, alice);
    CHECK(body(init)["error"]["code"] == rpc::kInvalidParams);
    // A tools/call is audited whatever its shape, this one as invalid.
    const auto calls = w.audited("tool_call");
    REQUIRE(calls.size() == 2);
    CHECK(calls[0]["status"] == "invalid");
    CHECK(calls[0]["detail"] == "params must be an object");
    // A notification is never answered, its params an array or not.
    auto n = w.post({{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}, {"params", {1}}}, alice, sid);
    CHECK(n.status == 202);
    CHECK(n.body.empty());
  }
  SECTION("notifications are accepted with 202 and no body") {
    auto r = w.post({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, alice, sid);
    CHECK(r.status == 202);
    CHECK(r.body.empty());
  }
  SECTION("the wrong content type is 415, a missing Accept 406") {
    raw.body = R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
    raw.content_type = "text/plain";
    CHECK(w.send(raw, alice).status == 415);
    raw.content_type = "application/json";
    raw.accept = "text/html";
    CHECK(w.send(raw, alice).status == 406);
  }
  SECTION("batches only in 2025-03-26") {
    raw.body = R"([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}])";
    CHECK(w.send(raw, alice).status == 400);
    raw.session_id = w.open_session(alice, "2025-03-26");
    auto r = w.send(raw, alice);
    CHECK(r.status == 200);
    REQUIRE(body(r).is_array());
    CHECK(body(r).size() == 2);
  }
  SECTION("a batch's answer is bounded: past 16 MiB of tool answers, its calls are refused unrun") {
    raw.session_id = w.open_session(alice, "2025-03-26");
    json batch = json::array();
    for (int i = 0; i < 12; ++i) {
      batch.push_back({{"jsonrpc", "2.0"}, {"id", i}, {"method", "tools/call"},
                       {"params", {{"name", "run_query"},
                                   {"arguments", {{"sql", "SELECT printf('%.*c', 950000, 'x') AS a, "
                                                          "printf('%.*c', 950000, 'y') AS b"}}}}}});
    }
    raw.body = batch.dump();
    auto r = w.send(raw, alice);
    REQUIRE(r.status == 200);
    CHECK(r.body.size() < (20u << 20));
    const json answers = body(r);
    REQUIRE(answers.size() == 12);
    CHECK(answers[0].contains("result"));
    CHECK(answers[11]["error"]["message"] == "the batch's answer is full: send this call on its own");
  }
}

namespace {
// Answer limits small enough for a test to fill: a tenant's `share` of a `total`.
AnswerLimits small_answer_limits(std::size_t share, std::size_t total = 4 << 20) {
  AnswerLimits limits;
  limits.total = total;
  limits.per_tenant = share;
  limits.uncounted_below = 64 << 10;
  return limits;
}
}  // namespace

TEST_CASE("mcpd::McpServer: a call whose key expired while it waited for a worker does not run", "[mcpd][mcp]") {
  // Expiry ends no session (revocation does): the worker looks at it when
  // the call's turn comes, as it would after a batch or a queue.
  World w;
  Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  querier.expires_ms = now_ms() + 3600 * 1000;
  const std::string sid = w.open_session(querier);
  querier.expires_ms = now_ms() - 1;  // as its admission saw it, the moment the worker takes it
  const json r = body(w.post(call("run_query", {{"sql", "SELECT full_name FROM customers"}}), querier, sid));
  CHECK(r["result"]["isError"] == true);
  CHECK(r["result"]["content"][0]["text"] == "the key expired before the call ran");
  CHECK(r.dump().find("structuredContent") == std::string::npos);
  const auto records = w.audited("tool_call");
  REQUIRE(records.size() == 1);
  CHECK(records[0]["status"] == "cancelled");
  CHECK(records[0]["rows"] == 0);
}

TEST_CASE("mcpd::McpServer: answers not yet written hold the answer budget; past it a call is told to retry",
          "[mcpd][mcp][answers]") {
  World w(65536, std::chrono::seconds(3600), {}, small_answer_limits(2 << 20));
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  const std::string sid = w.open_session(querier);
  // About 1.2 MB of answer: the value once as text, once as structuredContent.
  const json big = call("run_query", {{"sql", "SELECT printf('%.*c', 600000, 'x') AS a"}});

  McpResponse first = w.post(big, querier, sid);  // not yet written: the client reads slowly
  CHECK(body(first)["result"]["isError"] == false);
  REQUIRE(first.keep);
  CHECK(w.answers.held(1) >= 1200000);
  CHECK(w.answers.held(1) <= first.body.size());

  // A second one would pass the tenant's 2 MiB: not kept, and the caller told why.
  McpResponse second = w.post(big, querier, sid);
  const json refused = body(second);
  CHECK(refused["result"]["isError"] == true);
  CHECK(refused["result"]["content"][0]["text"] ==
        kAnswersFull);
  CHECK(second.body.size() < 1000);
  CHECK_FALSE(second.keep);
  CHECK(w.answers.refused() == 1);
  // Small answers are not counted: they still pass.
  CHECK(body(w.post(call("run_query", {{"sql", "SELECT 1 AS one"}}), querier, sid))["result"]["isError"] == false);

  first = McpResponse{};  // written: its bytes come back
  CHECK(w.answers.held() == 0);
  McpResponse third = w.post(big, querier, sid);
  CHECK(body(third)["result"]["isError"] == false);
  CHECK(third.keep);

  const auto records = w.audited("tool_call");
  REQUIRE(records.size() == 4);
  int busy = 0;
  for (const json& rec : records) {
    if (rec["status"] != "busy") continue;
    ++busy;
    CHECK(rec["rows"] == 0);
    CHECK(rec["detail"].get<std::string>().find("past the answer budget") != std::string::npos);
  }
  CHECK(busy == 1);
}

TEST_CASE("mcpd::McpServer: every answer of a batch counts against the budget; a refusal stops the batch",
          "[mcpd][mcp][answers]") {
  World w(65536, std::chrono::seconds(3600), {}, small_answer_limits(2 << 20));
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  McpRequest raw;
  raw.method = "POST";
  raw.accept = "application/json, text/event-stream";
  raw.content_type = "application/json";
  raw.session_id = w.open_session(querier, "2025-03-26");  // batches exist only there

  // Small answers, each uncounted on its own: in a batch (up to 64 of them
  // per connection) they count.
  raw.body = json::array({call("run_query", {{"sql", "SELECT 1 AS one"}}),
                          json{{"jsonrpc", "2.0"}, {"id", 7}, {"method", "tools/list"}}})
                 .dump();
  McpResponse small = w.send(raw, querier);
  REQUIRE(small.status == 200);
  REQUIRE(body(small).size() == 2);
  CHECK(small.keep);
  CHECK(w.answers.held(1) > 0);
  CHECK(w.answers.held(1) < 64 << 10);
  small = McpResponse{};
  CHECK(w.answers.held() == 0);

  // A large answer held; then a batch whose first call's answer does not
  // fit: its second call is not run. (1.2 MB each: 2025-03-26 answers
  // carry no structuredContent.)
  const json big = call("run_query", {{"sql", "SELECT printf('%.*c', 600000, 'x') AS a, printf('%.*c', 600000, 'y') AS b"}});
  McpResponse first = w.send([&] { McpRequest r = raw; r.body = big.dump(); return r; }(), querier);
  REQUIRE(first.keep);
  raw.body = json::array({big, call("run_query", {{"sql", "SELECT 2 AS two"}}),
                          json{{"jsonrpc", "2.0"}, {"id", 8}, {"method", "resources/list"}}})
                 .dump();
  const json answers = body(w.send(raw, querier));
  REQUIRE(answers.size() == 3);
  CHECK(answers[0]["result"]["isError"] == true);
  CHECK(answers[0]["result"]["content"][0]["text"] == kAnswersFull);
  CHECK(answers[1]["error"]["message"] == kAnswersFull);
  CHECK(answers[2]["error"]["message"] == kAnswersFull);
  const auto records = w.audited("tool_call");
  // The small batch's call, the big one held, the refused one, and the
  // call after it, audited though never run.
  REQUIRE(records.size() == 4);
  CHECK(records[0]["status"] == "not_run");
  CHECK(records[0]["detail"] == "not run: an earlier answer of its batch was past the answer budget");
  CHECK(records[1]["status"] == "busy");
  CHECK(records[1]["detail"].get<std::string>().find("ended ok with 1 rows") != std::string::npos);
}

TEST_CASE("mcpd::McpServer: a resource read past the answer budget is audited busy, not ok", "[mcpd][mcp][answers]") {
  // A share of 512 bytes: less than any entity's description.
  World w(65536, std::chrono::seconds(3600), {}, small_answer_limits(512, 1 << 20));
  const Principal reader = principal("rrrr", kScopeRead);
  const std::string sid = w.open_session(reader, "2025-03-26");
  const json read = {{"jsonrpc", "2.0"}, {"id", 9}, {"method", "resources/read"},
                     {"params", {{"uri", "sluice://entities/customers"}}}};
  // On its own it is under the floor: not counted, answered.
  CHECK(body(w.post(read, reader, sid)).contains("result"));
  // In a batch it counts, and does not fit.
  const json answers = body(w.post(json::array({read}), reader, sid));
  REQUIRE(answers.size() == 1);
  CHECK(answers[0]["error"]["message"] == kAnswersFull);
  const auto reads = w.audited("resource_read");
  REQUIRE(reads.size() == 2);
  CHECK(reads[0]["status"] == "busy");
  CHECK(reads[1]["status"] == "ok");
}

TEST_CASE("mcpd::McpServer shows and runs only what the key's scopes allow, and audits every call",
          "[mcpd][mcp]") {
  World w;
  const Principal reader = principal("rrrr", kScopeRead), querier = principal("qqqq", kScopeRead | kScopeQuery);

  SECTION("tools/list follows the scopes") {
    const std::string sid = w.open_session(reader);
    auto list = body(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}}, reader, sid));
    std::set<std::string> names;
    for (const auto& t : list["result"]["tools"]) names.insert(t["name"]);
    CHECK(names == std::set<std::string>{"describe_entity", "list_entities", "list_saved_queries"});
    const std::string qsid = w.open_session(querier);
    list = body(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}}, querier, qsid));
    CHECK(list["result"]["tools"].size() == 5);
  }
  SECTION("a tool outside the key's scopes is refused and the refusal audited") {
    const std::string sid = w.open_session(reader);
    auto r = body(w.post(call("run_query", {{"sql", "SELECT 1"}}), reader, sid));
    CHECK(r["error"]["code"] == rpc::kInvalidParams);
    const auto records = w.audited("tool_call");
    REQUIRE(records.size() == 1);
    CHECK(records[0]["status"] == "denied");
    CHECK(records[0]["tool"] == "run_query");
  }
  SECTION("a malformed call is refused with -32602 and audited as invalid") {
    const std::string sid = w.open_session(querier);
    for (const json& params : {json{{"name", 5}}, json{{"name", "run_query"}, {"arguments", json::array({1})}}}) {
      auto r = body(w.post({{"jsonrpc", "2.0"}, {"id", 9}, {"method", "tools/call"}, {"params", params}}, querier, sid));
      CHECK(r["error"]["code"] == rpc::kInvalidParams);
    }
    const auto records = w.audited("tool_call");
    REQUIRE(records.size() == 2);
    for (const auto& rec : records) CHECK(rec["status"] == "invalid");
  }
  SECTION("run_query returns rows, and the audit record names the call without its arguments") {
    const std::string sid = w.open_session(querier);
    auto r = body(w.post(call("run_query", {{"sql", "SELECT id FROM customers WHERE id = ?"}, {"params", {3}}}), querier, sid));
    REQUIRE(r.contains("result"));
    CHECK(r["result"]["isError"] == false);
    CHECK(r["result"]["structuredContent"]["rows"] == json::array({json::array({3})}));
    const auto records = w.audited("tool_call");
    REQUIRE(records.size() == 1);
    const json& rec = records[0];
    CHECK(rec["rows"] == 1);
    CHECK(rec["status"] == "ok");
    CHECK(rec["user"] == "alice");
    CHECK(rec["credential"] == "api_key:qqqq");
    CHECK(rec["client"]["name"] == "test");
    // A keyed digest under the record's own nonce: the key holder
    // reproduces it; a plain hash of the arguments (a guess anyone reading
    // the log could test) is not it, and neither is the digest another
    // record of the same call carries (a tenant admin could otherwise make
    // the call and compare).
    const json args = {{"sql", "SELECT id FROM customers WHERE id = ?"}, {"params", {3}}};
    REQUIRE(rec["args_nonce"].is_string());
    const DigestContext ctx{"acme", "api_key:qqqq", "run_query"};
    CHECK(rec["args_hmac"] == digest_arguments(w.digest_key, rec["args_nonce"].get<std::string>(), ctx, args));
    CHECK(rec["args_hmac"] != digest_arguments(w.digest_key, "", ctx, args));
    body(w.post(call("run_query", args), querier, sid));
    const auto both = w.audited("tool_call");
    REQUIRE(both.size() == 2);
    CHECK(both[0]["args_nonce"] != both[1]["args_nonce"]);
    CHECK(both[0]["args_hmac"] != both[1]["args_hmac"]);
    const KeyHash plain = sha256(args.dump());
    CHECK(rec["args_hmac"] != to_hex(plain.data(), plain.size()));
    CHECK_FALSE(rec.contains("args_sha256"));
    CHECK(rec.dump().find("SELECT") == std::string::npos);
  }
  SECTION("a write is an isError result with a sanitised message, audited as denied") {
    const std::string sid = w.open_session(querier);
    auto r = body(w.post(call("run_query", {{"sql", "DELETE FROM customers"}}), querier, sid));
    CHECK(r["result"]["isError"] == true);
    const std::string text = r["result"]["content"][0]["text"];
    CHECK(text.find(w.dir.path()) == std::string::npos);
    const auto records = w.audited("tool_call");
    REQUIRE_FALSE(records.empty());
    CHECK(records[0]["status"] == "denied");
  }
  SECTION("2025-03-26 sessions get no structuredContent") {
    const std::string sid = w.open_session(querier, "2025-03-26");
    auto r = body(w.post(call("list_entities", json::object()), querier, sid));
    CHECK_FALSE(r["result"].contains("structuredContent"));
  }
}

TEST_CASE("mcpd::McpServer lists and queries a table made in the tenant's file while it runs", "[mcpd][mcp]") {
  World w;
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  const std::string sid = w.open_session(querier);
  const auto entity_names = [&] {
    std::set<std::string> names;
    auto r = body(w.post(call("list_entities", json::object()), querier, sid));
    for (const auto& e : r["result"]["structuredContent"]["entities"]) names.insert(e["name"]);
    return names;
  };
  REQUIRE_FALSE(entity_names().contains("branches"));
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(w.dir.file("bank.db").c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db, "CREATE TABLE branches(city TEXT); INSERT INTO branches VALUES ('Lyon')", nullptr,
                              nullptr, nullptr);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
  // The schema is looked at once a second at most (QueryLimits).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(entity_names().contains("branches"));
  auto r = body(w.post(call("run_query", {{"sql", "SELECT city FROM branches"}}), querier, sid));
  CHECK(r["result"]["structuredContent"]["rows"] == json::array({json::array({"Lyon"})}));
}

TEST_CASE("mcpd::McpServer answers nothing it could not audit", "[mcpd][mcp]") {
  World w(0);  // the audit queue accepts nothing
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  const std::string sid = w.open_session(querier);
  auto r = body(w.post(call("run_query", {{"sql", "SELECT full_name FROM customers"}}), querier, sid));
  CHECK(r["error"]["code"] == rpc::kInternalError);
  CHECK_FALSE(r.contains("result"));
  CHECK(w.counters.audit_failures == 1);
}

TEST_CASE("mcpd::McpServer: an answered call's audit record survives a power cut the moment after",
          "[mcpd][mcp][audit]") {
  // "Durable before acknowledged", end to end: once handle() has given an
  // answer to the HTTP layer, the disk holds the call's record.
  PowerCut power([] { (void)memory_temp_vfs(); });  // before World: its connections use it
  World w;
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  const std::string sid = w.open_session(querier);
  for (int k = 1; k <= 4; ++k) {
    INFO("call " << k);
    const std::string sql = "SELECT id FROM customers ORDER BY id LIMIT " + std::to_string(k);
    const json answer = body(w.post(call("run_query", {{"sql", sql}}), querier, sid));
    REQUIRE(answer["result"]["isError"] == false);
    const auto files = power.cut(false, static_cast<std::uint32_t>(k));

    TempDir after;
    PowerCut::restore(files, after.path());
    std::vector<std::int64_t> rows;  // of each tool_call record that came back, oldest first
    {
      auto db = Db::open(after.file("mcpd.db"), false);  // recovers the WAL, as mcpd's restart would
      REQUIRE(db);
      auto stmt = db->prepare("SELECT record FROM audit WHERE kind = 'tool_call' ORDER BY seq");
      REQUIRE(stmt);
      while (true) {
        auto row = stmt->step();
        REQUIRE(row);
        if (!*row) break;
        rows.push_back(json::parse(stmt->text(0))["rows"].get<std::int64_t>());
      }
    }
    std::vector<std::int64_t> expected(static_cast<std::size_t>(k));
    std::iota(expected.begin(), expected.end(), 1);
    CHECK(rows == expected);
    auto v = verify_audit(after.file("mcpd.db"));
    REQUIRE(v);
    CHECK(v->ok);
  }
}

TEST_CASE("mcpd::McpServer serves entities and saved queries as resources, and a prompt", "[mcpd][mcp]") {
  World w;
  const Principal reader = principal("rrrr", kScopeRead);
  SavedQuery q;
  q.tenant_id = 1;
  q.name = "by_city";
  q.description = "customers in a city";
  q.sql = "SELECT id FROM customers WHERE city = ?";
  q.params = {{"city", "string", ""}};
  REQUIRE(w.store->put_saved_query(q, 1));
  const std::string sid = w.open_session(reader);
  auto list = body(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "resources/list"}}, reader, sid));
  std::set<std::string> uris;
  for (const auto& r : list["result"]["resources"]) uris.insert(r["uri"]);
  CHECK(uris.contains("sluice://entities/customers"));
  CHECK(uris.contains("sluice://saved-queries/by_city"));
  auto read = body(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "resources/read"}, {"params", {{"uri", "sluice://entities/accounts"}}}}, reader, sid));
  const json stats = json::parse(read["result"]["contents"][0]["text"].get<std::string>());
  CHECK(stats["row_count"].get<std::int64_t>() > 0);
  auto missing = body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "resources/read"}, {"params", {{"uri", "sluice://entities/nope"}}}}, reader, sid));
  CHECK(missing["error"]["code"] == -32002);
  auto prompt = body(w.post({{"jsonrpc", "2.0"}, {"id", 4}, {"method", "prompts/get"}, {"params", {{"name", "explore_entity"}, {"arguments", {{"entity", "cards"}}}}}}, reader, sid));
  CHECK(prompt["result"]["messages"].size() == 1);
  auto bad = body(w.post({{"jsonrpc", "2.0"}, {"id", 5}, {"method", "prompts/get"}, {"params", {{"name", "explore_entity"}}}}, reader, sid));
  CHECK(bad["error"]["code"] == rpc::kInvalidParams);
}

TEST_CASE("mcpd::McpServer runs a saved query with its declared parameters, and never echoes a caller's name",
          "[mcpd][mcp]") {
  World w;
  const Principal caller = principal("qqqq", kScopeRead | kScopeQuery);
  SavedQuery q;
  q.tenant_id = 1;
  q.name = "by_city";
  q.sql = "SELECT id FROM customers WHERE city = ?";
  q.params = {{"city", "string", ""}};
  REQUIRE(w.store->put_saved_query(q, 1));
  const std::string sid = w.open_session(caller);
  auto ok = body(w.post(call("run_saved_query", {{"name", "by_city"}, {"params", {{"city", "Lyon"}}}}), caller, sid));
  CHECK(ok["result"]["isError"] == false);
  // A name the query does not declare: refused, and the caller's text
  // (which may be anything, a secret too) is neither answered nor audited:
  // the record keeps arguments only as a digest.
  auto bad = body(w.post(call("run_saved_query", {{"name", "by_city"}, {"params", {{"city", "Lyon"}, {"ssn 123-45-6789", 1}}}}),
                         caller, sid));
  REQUIRE(bad["result"]["isError"] == true);
  const std::string text = bad["result"]["content"][0]["text"];
  CHECK(text.find("123-45-6789") == std::string::npos);
  CHECK(text.find("declares \"city\"") != std::string::npos);
  auto records = w.audit->read("acme", 10, 0, "tool_call");
  REQUIRE(records);
  REQUIRE(records->size() >= 2);
  for (const auto& r : *records) CHECK(r.dump().find("123-45-6789") == std::string::npos);
}

TEST_CASE("mcpd::McpServer keeps the conformance fixtures off unless configured", "[mcpd][mcp]") {
  World w;
  const Principal reader = principal("rrrr", kScopeRead);
  const std::string sid = w.open_session(reader);
  auto tools = body(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}}, reader, sid));
  for (const auto& t : tools["result"]["tools"]) CHECK_FALSE(t["name"].get<std::string>().starts_with("test_"));
  CHECK(body(w.post(call("test_sampling", {{"prompt", "x"}}), reader, sid))["error"]["code"] == rpc::kInvalidParams);
  auto sub = body(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "resources/subscribe"}, {"params", {{"uri", "test://watched-resource"}}}}, reader, sid));
  CHECK(sub["error"]["code"] == rpc::kMethodNotFound);
  auto read = body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "resources/read"}, {"params", {{"uri", "test://static-text"}}}}, reader, sid));
  CHECK(read["error"]["code"] == -32002);
}

TEST_CASE("mcpd::McpServer completes entity names, and ignores answers nobody awaits", "[mcpd][mcp]") {
  World w;
  const Principal reader = principal("rrrr", kScopeRead);
  const std::string sid = w.open_session(reader);
  auto done = body(w.post({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "completion/complete"},
                           {"params", {{"ref", {{"type", "ref/prompt"}, {"name", "explore_entity"}}},
                                       {"argument", {{"name", "entity"}, {"value", "c"}}}}}},
                          reader, sid));
  CHECK(done["result"]["completion"]["values"] == json::array({"cards", "customers"}));
  auto unknown = body(w.post({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "completion/complete"},
                              {"params", {{"ref", {{"type", "ref/prompt"}, {"name", "nope"}}},
                                          {"argument", {{"name", "x"}, {"value", ""}}}}}},
                             reader, sid));
  CHECK(unknown["error"]["code"] == rpc::kInvalidParams);
  // Entity names are for keys that may read them.
  const Principal runner = principal("qqqq", kScopeQuery);
  const std::string rsid = w.open_session(runner);
  auto refused = body(w.post({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "completion/complete"},
                              {"params", {{"ref", {{"type", "ref/prompt"}, {"name", "explore_entity"}}},
                                          {"argument", {{"name", "entity"}, {"value", "c"}}}}}},
                             runner, rsid));
  CHECK(refused["error"]["code"] == rpc::kInvalidParams);
  CHECK_FALSE(refused.contains("result"));
  // A response to a request mcpd never sent is accepted and dropped.
  auto stray = w.post({{"jsonrpc", "2.0"}, {"id", "sluice-999"}, {"result", json::object()}}, reader, sid);
  CHECK(stray.status == 202);
}

TEST_CASE("mcpd::Sources: a source nobody used for a while gives back its page caches", "[mcpd][mcp][memory]") {
  World w;
  DemoOptions demo;
  demo.customers = 200;
  demo.transactions = 40000;  // a few MB: a connection's page cache fills (2 MiB)
  REQUIRE(generate_demo_bank(w.dir.file("big.db"), demo));
  const auto beta = w.store->create_tenant("beta", w.dir.file("big.db"));
  REQUIRE(beta);
  Sources sources(*w.store, QueryLimits{});
  const auto scan = [&] {
    auto src = sources.of(*beta);
    REQUIRE(src);
    REQUIRE((*src)->query("SELECT sum(amount_cents), count(DISTINCT merchant) FROM transactions", {}));
  };
  constexpr sqlite3_int64 kMiB = 1 << 20;
  scan();
  const sqlite3_int64 cached = sqlite3_memory_used();
  sources.release_idle(2);  // one round without a call: kept
  CHECK(sqlite3_memory_used() > cached - kMiB / 4);
  sources.release_idle(2);  // two: given back
  const sqlite3_int64 released = sqlite3_memory_used();
  CHECK(cached - released >= kMiB);
  scan();  // used again: the cache fills again, and is kept while in use
  const sqlite3_int64 refilled = sqlite3_memory_used();
  CHECK(refilled - released >= kMiB);
  sources.release_idle(2);
  CHECK(sqlite3_memory_used() > refilled - kMiB / 4);
  sources.release_idle(2);
  CHECK(refilled - sqlite3_memory_used() >= kMiB);
}

TEST_CASE("mcpd::Sources remembers a failed open for a while, per tenant", "[mcpd][mcp]") {
  World w;
  const auto beta = w.store->create_tenant("beta", w.dir.file("late.db"));
  REQUIRE(beta);
  // A window far longer than making the file takes, even on a busy machine.
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  Sources sources(*w.store, limits, std::chrono::milliseconds(1000));
  // A missing file is remembered no longer than a path's look is apart
  // (here: not at all), so the next call looks for it again.
  CHECK_FALSE(sources.of(*beta));
  std::ofstream(w.dir.file("late.db")) << std::string(8192, 'x');  // not a database
  auto first = sources.of(*beta);
  REQUIRE_FALSE(first);
  CHECK(first.error().message == "the data source is unavailable");
  DemoOptions demo;
  demo.customers = 10;
  demo.transactions = 10;
  REQUIRE(std::remove(w.dir.file("late.db").c_str()) == 0);
  REQUIRE(generate_demo_bank(w.dir.file("late.db"), demo));
  CHECK_FALSE(sources.of(*beta));  // not retried by every call meanwhile
  CHECK(sources.of(1));            // another tenant's source opens all the same
  std::this_thread::sleep_for(std::chrono::milliseconds(1050));
  CHECK(sources.of(*beta));        // tried again once the failure is old
}

TEST_CASE("mcpd::Sources opens a tenant's file again once a new one is renamed over it", "[mcpd][mcp]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  Sources sources(*w.store, limits, std::chrono::seconds(5));  // failures remembered as in mcpd
  const auto customers = [](const std::shared_ptr<SqliteSource>& s) {
    auto r = s->query("SELECT count(*) FROM customers", {});
    REQUIRE(r);
    return r->rows.at(0)[0].get<int>();
  };
  auto before = sources.of(1);
  REQUIRE(before);
  CHECK(customers(*before) == 50);
  CHECK(*sources.of(1) == *before);  // the same file: the same source
  DemoOptions demo;
  demo.customers = 20;
  demo.transactions = 100;
  REQUIRE(generate_demo_bank(w.dir.file("next.db"), demo));
  REQUIRE(std::rename(w.dir.file("next.db").c_str(), w.dir.file("bank.db").c_str()) == 0);
  auto after = sources.of(1);
  REQUIRE(after);
  CHECK(*after != *before);
  CHECK(customers(*after) == 20);
  CHECK(customers(*before) == 50);  // a call holding the old one still reads the old file
  // A replacement that does not open: the last good one goes on answering.
  std::ofstream(w.dir.file("junk.db")) << std::string(8192, 'x');
  REQUIRE(std::rename(w.dir.file("junk.db").c_str(), w.dir.file("bank.db").c_str()) == 0);
  auto kept = sources.of(1);
  REQUIRE(kept);
  CHECK(*kept == *after);
  CHECK(customers(*kept) == 20);
  // Deleted: the file it had open answers no more (an erasure is one),
  // though the failed replacement is still remembered.
  REQUIRE(std::remove(w.dir.file("bank.db").c_str()) == 0);
  auto gone = sources.of(1);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().message == "the data source is unavailable");
  // A file put back is opened at once (rm then cp), not after 5 s.
  REQUIRE(generate_demo_bank(w.dir.file("bank.db"), demo));
  auto back = sources.of(1);
  REQUIRE(back);
  CHECK(customers(*back) == 20);
}

TEST_CASE("mcpd::Sources drops a source whose schema grew past its memory limit in place, and serves it once it shrinks",
          "[mcpd][mcp][memory]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  limits.schema_memory = std::size_t{1} << 20;
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  auto before = sources.of(1);
  REQUIRE(before);
  exec_sql(w.dir.file("bank.db"), heavy_triggers());
  (void)(*before)->query("SELECT count(*) FROM customers", {});  // the call that finds it
  CHECK((*before)->retired());
  SECTION("the tenant's next call drops it and is refused") {
    auto refused = sources.of(1);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message == "the data source is unavailable");
    CHECK_THAT(refused.error().detail, Catch::Matchers::Contains("schema_memory_mb"));
    exec_sql(w.dir.file("bank.db"), "DROP TRIGGER t1; DROP TRIGGER t2;");
    auto back = sources.of(1);
    REQUIRE(back);
    CHECK(*back != *before);
  }
  SECTION("with no call after, the periodic sweep drops it (only closing its connections frees the schema)") {
    CHECK(before->use_count() == 2);  // this test's, and the tenant's slot
    sources.release_idle(1000);       // (nothing idle long enough: only the retired source goes)
    CHECK(before->use_count() == 1);
  }
}

TEST_CASE("mcpd::Sources: the sweep finds a schema grown in place that no call looked at", "[mcpd][mcp][memory]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::hours(1);  // no call's look comes
  limits.schema_memory = std::size_t{1} << 20;
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  auto source = sources.of(1);
  REQUIRE(source);
  exec_sql(w.dir.file("bank.db"), heavy_triggers());
  // The tenant's calls make its connections parse the new schema, then stop.
  CHECK((*source)->query("SELECT count(*) FROM customers", {}));
  CHECK_FALSE((*source)->retired());
  sources.release_idle(1000);
  CHECK((*source)->retired());
  CHECK(source->use_count() == 1);  // dropped by the tenant's slot
}

TEST_CASE("mcpd::Sources holds the schemas of all open sources to one budget", "[mcpd][mcp][memory]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  std::size_t one = 0;  // what the demo bank's schema takes, over the pool
  {
    Sources probe(*w.store, limits, std::chrono::milliseconds(0));
    auto s = probe.of(1);
    REQUIRE(s);
    one = (*s)->schema_footprint();
  }
  REQUIRE(one > 0);
  // Room for one such schema and a half.
  Sources sources(*w.store, limits, std::chrono::milliseconds(0), one + one / 2);
  const auto beta = w.store->create_tenant("beta", w.dir.file("beta.db"));
  REQUIRE(beta);
  DemoOptions demo;
  demo.customers = 20;
  demo.transactions = 100;
  REQUIRE(generate_demo_bank(w.dir.file("beta.db"), demo));
  auto acme = sources.of(1);
  REQUIRE(acme);
  auto refused = sources.of(*beta);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message == "the data source is unavailable");
  CHECK_THAT(refused.error().detail, Catch::Matchers::Contains("of at most"));
  SECTION("the same tenant's file, opened again, counts once") {
    REQUIRE(generate_demo_bank(w.dir.file("next.db"), demo));  // the same schema: twice would not fit
    REQUIRE(std::rename(w.dir.file("next.db").c_str(), w.dir.file("bank.db").c_str()) == 0);
    auto again = sources.of(1);
    REQUIRE(again);
    CHECK(*again != *acme);
  }
  SECTION("a tenant no call has used since the last sweep makes room: its source closes, to open again") {
    sources.release_idle(1000);  // a sweep: acme, unused since, is idle now
    auto opened = sources.of(*beta);
    REQUIRE(opened);
    CHECK(acme->use_count() == 1);  // closed as far as the slot goes
    CHECK_FALSE(sources.of(1));     // and acme, used again, now waits for room in turn
  }
  SECTION("a schema grown in place past the budget (under its own limit): the sweep gives it up, room comes back") {
    exec_sql(w.dir.file("bank.db"), heavy_triggers());
    (void)(*acme)->query("SELECT count(*) FROM customers", {});  // measured again: larger now
    CHECK((*acme)->schema_footprint() > one + one / 2);
    CHECK_FALSE((*acme)->retired());  // 2 MiB a connection: under the 16 MiB limit
    sources.release_idle(1000);
    CHECK((*acme)->retired());
    CHECK(sources.of(*beta));  // acme's room is free
    CHECK_FALSE(sources.of(1));  // and acme, too large for what is left, waits
  }
}

TEST_CASE("mcpd::Sources answers from the old file while one caller opens its replacement", "[mcpd][mcp]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  limits.timeout = std::chrono::milliseconds(2000);
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  auto before = sources.of(1);
  REQUIRE(before);
  DemoOptions demo;
  demo.customers = 20;
  demo.transactions = 100;
  REQUIRE(generate_demo_bank(w.dir.file("next.db"), demo));
  // A writer holds the new file's lock: opening it waits up to the timeout.
  sqlite3* writer = nullptr;
  REQUIRE(sqlite3_open(w.dir.file("next.db").c_str(), &writer) == SQLITE_OK);
  REQUIRE(sqlite3_exec(writer, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(std::rename(w.dir.file("next.db").c_str(), w.dir.file("bank.db").c_str()) == 0);
  std::atomic<bool> opened{false};  // asserted below: Catch's assertions are the test thread's
  std::thread opener([&] { opened = static_cast<bool>(sources.of(1)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto asked = std::chrono::steady_clock::now();
  auto meanwhile = sources.of(1);
  const auto waited = std::chrono::steady_clock::now() - asked;
  REQUIRE(meanwhile);
  CHECK(*meanwhile == *before);
  CHECK(waited < std::chrono::milliseconds(1000));  // not the opener's 2 s
  opener.join();
  CHECK(opened);
  sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(writer);
  auto after = sources.of(1);
  REQUIRE(after);
  CHECK(*after != *before);
}

TEST_CASE("mcpd::Sources never serves mcpd's own database, however a tenant's path leads to it", "[mcpd][mcp]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  const auto beta = w.store->create_tenant("beta", w.dir.file("beta.db"));
  REQUIRE(beta);
  REQUIRE(::symlink(w.dir.file("mcpd.db").c_str(), w.dir.file("beta.db").c_str()) == 0);
  auto refused = sources.of(*beta);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message == "the data source is unavailable");
  CHECK(refused.error().detail.find("mcpd's own database") != std::string::npos);
  // Nor once a link to it is renamed over a tenant's file: the old file answers on.
  auto before = sources.of(1);
  REQUIRE(before);
  REQUIRE(::symlink(w.dir.file("mcpd.db").c_str(), w.dir.file("link.db").c_str()) == 0);
  REQUIRE(std::rename(w.dir.file("link.db").c_str(), w.dir.file("bank.db").c_str()) == 0);
  auto kept = sources.of(1);
  REQUIRE(kept);
  CHECK(*kept == *before);
  auto listed = (*kept)->entities();
  REQUIRE(listed);
  for (const EntityInfo& e : *listed) CHECK(e.name != "audit");
}

TEST_CASE("mcpd::Sources never serves one tenant's file to another, by a link or a second path", "[mcpd][mcp]") {
  World w;  // acme: bank.db (50 customers)
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  const auto beta = w.store->create_tenant("beta", w.dir.file("beta.db"));
  REQUIRE(beta);
  DemoOptions demo;
  demo.customers = 20;
  demo.transactions = 100;
  REQUIRE(generate_demo_bank(w.dir.file("beta.db"), demo));
  const auto customers = [](const std::shared_ptr<SqliteSource>& s) {
    auto r = s->query("SELECT count(*) FROM customers", {});
    REQUIRE(r);
    return r->rows.at(0)[0].get<int>();
  };
  const auto refused_because = [](const DataResult<std::shared_ptr<SqliteSource>>& r, const char* why) {
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "the data source is unavailable");
    CHECK_THAT(r.error().detail, Catch::Contains(why));
    CHECK_THAT(r.error().detail, !Catch::Contains("tenant acme") && !Catch::Contains("tenant beta"));  // never named
  };
  constexpr char kShared[] = "is also another tenant's data source";
  auto own = sources.of(*beta);
  REQUIRE(own);
  CHECK(customers(*own) == 20);
  // A link to acme's file renamed over beta's (both in one directory): the
  // replacement is refused (acme's rows never reach beta); beta's old file
  // answers meanwhile.
  REQUIRE(::symlink("bank.db", w.dir.file("link.db").c_str()) == 0);
  REQUIRE(std::rename(w.dir.file("link.db").c_str(), w.dir.file("beta.db").c_str()) == 0);
  auto kept = sources.of(*beta);
  REQUIRE(kept);
  CHECK(*kept == *own);
  CHECK(customers(*kept) == 20);
  // A fresh start (nothing open yet, as after a restart): neither tenant
  // gets the file two paths lead to, whichever asks first.
  {
    Sources fresh(*w.store, limits, std::chrono::milliseconds(0));
    refused_because(fresh.of(*beta), kShared);
    refused_because(fresh.of(1), kShared);
  }
  // Once the link is gone, acme's file is acme's again; a hard link to
  // the file acme has open is refused even after acme's path is renamed
  // away from it.
  REQUIRE(std::remove(w.dir.file("beta.db").c_str()) == 0);
  Sources fresh(*w.store, limits, std::chrono::milliseconds(0));
  auto back = fresh.of(1);
  REQUIRE(back);
  CHECK(customers(*back) == 50);
  REQUIRE(::link(w.dir.file("bank.db").c_str(), w.dir.file("beta.db").c_str()) == 0);
  REQUIRE(std::rename(w.dir.file("bank.db").c_str(), w.dir.file("moved.db").c_str()) == 0);
  // (Where the kernel lets anyone make hard links, a file with two names
  // is refused before that: fs.protected_hardlinks off.)
  std::ifstream sysctl("/proc/sys/fs/protected_hardlinks");
  const bool protected_links = sysctl.get() == '1';
  refused_because(fresh.of(*beta), protected_links ? kShared : "is not a file in its own directory");
}

TEST_CASE("mcpd::Sources serves only a file in the tenant's own directory", "[mcpd][mcp]") {
  World w;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  REQUIRE(::mkdir(w.dir.file("a").c_str(), 0700) == 0);
  REQUIRE(::mkdir(w.dir.file("b").c_str(), 0700) == 0);
  DemoOptions demo;
  demo.customers = 30;
  demo.transactions = 100;
  const auto a = w.store->create_tenant("a", w.dir.file("a/data.db"));
  const auto b = w.store->create_tenant("b", w.dir.file("b/data.db"));
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(generate_demo_bank(w.dir.file("a/data.db"), demo));
  // a's loader writes its next export beside the current one.
  REQUIRE(generate_demo_bank(w.dir.file("a/data.db.new"), demo));
  // b's path a link out of b's directory: to a's next export (no tenant's
  // current file) and to a's current file. Refused to b; a is served.
  for (const char* target : {"../a/data.db.new", "../a/data.db"}) {
    INFO(target);
    std::remove(w.dir.file("b/data.db").c_str());
    REQUIRE(::symlink(target, w.dir.file("b/data.db").c_str()) == 0);
    Sources sources(*w.store, limits, std::chrono::milliseconds(0));
    auto refused = sources.of(*b);
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().detail, Catch::Contains("is not a file in its own directory"));
    CHECK(sources.of(*a));  // a link of b's leading to a's file does not deny a its own
  }
  // Nor through a directory that is a link (a loader owning an ancestor
  // could swap one in), nor a path with "..".
  REQUIRE(::symlink(w.dir.file("a").c_str(), w.dir.file("via").c_str()) == 0);
  const auto c = w.store->create_tenant("c", w.dir.file("via/data.db"));
  const auto d = w.store->create_tenant("d", w.dir.file("b/../a/data.db"));
  REQUIRE(c);
  REQUIRE(d);
  {
    Sources sources(*w.store, limits, std::chrono::milliseconds(0));
    for (const auto id : {*c, *d}) {
      auto refused = sources.of(id);
      REQUIRE_FALSE(refused);
      CHECK_THAT(refused.error().detail, Catch::Contains("is not a file in its own directory"));
    }
    CHECK(sources.of(*a));
  }
  // A link to a file beside it (a "current" link an operator flips) is fine.
  std::remove(w.dir.file("b/data.db").c_str());
  REQUIRE(generate_demo_bank(w.dir.file("b/2026-12-07.db"), demo));
  REQUIRE(::symlink("2026-12-07.db", w.dir.file("b/data.db").c_str()) == 0);
  Sources sources(*w.store, limits, std::chrono::milliseconds(0));
  CHECK(sources.of(*b));
}

TEST_CASE("mcpd::run_on gives the awaiting coroutine the work's result, or rethrows what it threw",
          "[mcpd][mcp]") {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(1);
  auto ok = boost::asio::co_spawn(io, run_on<int>(pool.get_executor(), [] { return 42; }), boost::asio::use_future);
  auto thrown = boost::asio::co_spawn(
      io, run_on<int>(pool.get_executor(), []() -> int { throw std::runtime_error("boom"); }), boost::asio::use_future);
  io.run();
  CHECK(ok.get() == 42);
  CHECK_THROWS_WITH(thrown.get(), "boom");  // and the pool thread lives on
  auto again = boost::asio::co_spawn(io, run_on<int>(pool.get_executor(), [] { return 7; }), boost::asio::use_future);
  io.restart();
  io.run();
  CHECK(again.get() == 7);
}

TEST_CASE("mcpd::Sessions bounds each credential by its own least recently used session", "[mcpd][mcp]") {
  Sessions sessions(1000, std::chrono::seconds(3600));
  std::vector<std::string> ended;
  sessions.on_end([&](const std::string& id) { ended.push_back(id); });
  const Principal a = principal("aaaa", kScopeRead), b = principal("bbbb", kScopeRead);
  std::vector<std::string> mine, theirs;
  for (int i = 0; i < 32; ++i) {
    mine.push_back(sessions.create(a, "2025-11-25", json::object(), json::object())->id);
    theirs.push_back(sessions.create(b, "2025-11-25", json::object(), json::object())->id);
  }
  CHECK(sessions.size() == 64);
  CHECK(ended.empty());
  // a's oldest, used again, is its newest: the next one pushes out a's second.
  REQUIRE(sessions.use(mine[0], "api_key:aaaa"));
  sessions.create(a, "2025-11-25", json::object(), json::object());
  REQUIRE(ended.size() == 1);
  CHECK(ended[0] == mine[1]);
  CHECK(sessions.use(mine[0], "api_key:aaaa"));
  CHECK_FALSE(sessions.use(mine[1], "api_key:aaaa"));
  for (const auto& id : theirs) CHECK(sessions.use(id, "api_key:bbbb"));  // b's all stay
  // Ending a credential ends exactly its sessions.
  sessions.end_credential("api_key:aaaa");
  CHECK(sessions.size() == 32);
  for (const auto& id : theirs) CHECK(sessions.use(id, "api_key:bbbb"));
  sessions.end_credential("api_key:aaaa");  // nothing left: nothing happens
  CHECK(sessions.size() == 32);
}

TEST_CASE("mcpd::Sessions, full, take the oldest session of the tenant holding the most", "[mcpd][mcp]") {
  Sessions sessions(40, std::chrono::seconds(3600));
  std::vector<std::string> ended;
  sessions.on_end([&](const std::string& id) { ended.push_back(id); });
  Principal quiet = principal("qqqq", kScopeRead);
  quiet.tenant_id = 2;
  quiet.tenant = "quiet";
  std::vector<std::string> kept;
  for (int i = 0; i < 5; ++i) kept.push_back(sessions.create(quiet, "2025-11-25", json::object(), json::object())->id);
  // acme opens sessions by the hundred, over many keys (each below its own
  // bound): the table fills, and acme's oldest go, never quiet's.
  std::vector<std::string> acme;
  for (int i = 0; i < 300; ++i) {
    acme.push_back(sessions.create(principal("k" + std::to_string(i % 20), kScopeRead), "2025-11-25", json::object(),
                                   json::object())->id);
  }
  CHECK(sessions.size() == 40);
  for (const auto& id : kept) CHECK(sessions.use(id, "api_key:qqqq"));
  CHECK(ended.size() == 265);
  CHECK(ended.front() == acme.front());  // acme's oldest first
  // Once quiet holds the most, it is quiet's turn: the rule is the count
  // (its keys all new: no key's own bound is what evicts here).
  for (int i = 0; i < 40; ++i) {
    Principal p = principal("quiet" + std::to_string(i), kScopeRead);
    p.tenant_id = 2;
    p.tenant = "quiet";
    sessions.create(p, "2025-11-25", json::object(), json::object());
  }
  CHECK(sessions.size() == 40);
  CHECK_FALSE(sessions.use(kept[0], "api_key:qqqq"));  // quiet's oldest went too
  // Evicting the larger each time leaves them even: about 20 each.
  std::size_t acme_left = 0;
  for (std::size_t i = 0; i < acme.size(); ++i) acme_left += sessions.use(acme[i], "api_key:k" + std::to_string(i % 20)) ? 1 : 0;
  CHECK(acme_left >= 19);
  CHECK(acme_left <= 21);
}

TEST_CASE("mcpd::McpServer runs no call queued for a worker once its session has ended (a key revoked meanwhile)",
          "[mcpd][mcp]") {
  World w;
  const Principal querier = principal("qqqq", kScopeRead | kScopeQuery);
  const std::string sid = w.open_session(querier);
  // Both workers busy until released: the call waits in their queue.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> blocked{0};
  for (int i = 0; i < 2; ++i) {
    boost::asio::post(w.workers, [released, &blocked] {
      ++blocked;
      released.wait();
    });
  }
  while (blocked.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  McpResponse answer;
  std::thread caller([&] { answer = w.post(call("run_query", {{"sql", "SELECT count(*) FROM customers"}}), querier, sid); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // queued by now
  w.sessions->end_credential("api_key:qqqq");
  release.set_value();
  caller.join();
  auto r = body(answer);
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  CHECK(r["result"]["isError"] == true);
  CHECK(r["result"].dump().find("rows") == std::string::npos);
  const auto records = w.audited("tool_call");
  REQUIRE(records.size() == 1);
  CHECK(records[0]["status"] == "cancelled");
  CHECK(records[0]["rows"] == 0);
}
