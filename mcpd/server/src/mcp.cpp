#include "mcp.h"

#include <algorithm>

// GCC 12 reports a mismatched new/delete inside Asio's awaitable frames
// when a coroutine is spawned from another one here: Asio allocates and
// frees the frame with its own matching operators (awaitable_frame_base);
// the warning is a known false positive of that GCC's inliner.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"


#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "audit_chain.h"
#include "jsonrpc.h"
#include "keys.h"
#include "store.h"
#include "text.h"

namespace sluice::mcpd {
namespace {

namespace asio = boost::asio;
using nlohmann::json;

constexpr std::size_t kPageSize = 50;
constexpr const char* kLogLevels[] = {"debug", "info", "notice", "warning",
                                      "error", "critical", "alert", "emergency"};

McpResponse text_reply(int status, std::string body) {
  McpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

McpResponse json_reply(int status, const json& body) { return text_reply(status, to_text(body)); }

const json& empty_object() {
  static const json empty = json::object();
  return empty;
}

McpResponse empty_reply(int status) {
  McpResponse r;
  r.status = status;
  return r;
}

// Clients of 2025-11-25 and later understand priming events (an id and
// no data) and resume a response the server ended (SEP-1699).
bool resumable(const Session& s) { return s.protocol >= std::string_view("2025-11-25"); }

// A streamed response never outlives its credential: one whose key
// expires within the hold ends at the expiry (revocation ends it at once,
// through Sessions::end_credential). Zero (run to the end) stays zero: the
// tool's own time bounds that response.
std::chrono::milliseconds hold_for(const Principal& who, std::chrono::milliseconds hold) {
  if (hold.count() == 0 || !who.expires_ms) return hold;
  return std::clamp(std::chrono::milliseconds(*who.expires_ms - now_ms()), std::chrono::milliseconds(1), hold);
}

// 429: the credential (or its tenant) holds StreamLimits::max_open_per_credential
// (max_open_per_tenant) streamed responses already.
McpResponse too_many_streams(bool tenant) {
  McpResponse r = json_reply(
      429, rpc::error(nullptr, rpc::kServerError, tenant ? "too many open streams for this tenant" : "too many open streams for this key"));
  r.headers.emplace_back("Retry-After", "5");
  return r;
}

// A 2025-03-26 batch answers in one body: once its tool answers hold this
// much, its remaining tool calls are refused unrun (each answer may add
// about twice max_result_bytes).
constexpr std::size_t kMaxBatchReplyBytes = 16 << 20;
constexpr const char* kParamsObject = "params must be an object";

bool accepts(const std::string& accept, std::string_view type) {
  return accept.find(type) != std::string::npos || accept.find("*/*") != std::string::npos;
}

// One page of `items` from an opaque cursor (an offset as text).
std::optional<json> page(const json& items, const json& params, const char* key) {
  std::size_t from = 0;
  if (auto c = params.find("cursor"); c != params.end() && !c->is_null()) {
    if (!c->is_string()) return std::nullopt;
    const std::string& text = c->get_ref<const std::string&>();
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    from = std::stoul(text);
    if (from >= items.size() && !(from == 0 && items.empty())) return std::nullopt;
  }
  json out = {{key, json::array()}};
  for (std::size_t i = from; i < items.size() && i < from + kPageSize; ++i) out[key].push_back(items[i]);
  if (from + kPageSize < items.size()) out["nextCursor"] = std::to_string(from + kPageSize);
  return out;
}

}  // namespace

// A plain coroutine, not a lambda: GCC 12 miscompiles coroutine lambdas.
asio::awaitable<bool> send_event(std::shared_ptr<EventStream> stream, std::string text) {
  co_return stream->push(text);
}

AuditEntry McpServer::audit_record(const Principal& who, const Session& s, const McpRequest& req,
                                   const std::string& tool, const json& args, const ToolOutcome& outcome,
                                   std::chrono::steady_clock::time_point started) const {
  AuditEntry e;
  e.kind = "tool_call";
  e.tenant = who.tenant;
  e.text.reserve(512);
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  const std::string nonce = nonces_.next();
  const std::string credential = who.credential();
  const std::string tool_name = clean_text(tool, 128);
  JsonObject record(e.text);
  record.str("kind", e.kind)
      .str("tenant", who.tenant)
      .str("user", who.user)
      .str("credential", credential)
      .str("tool", tool_name)
      .str("args_nonce", nonce)
      .str("args_hmac", digest_arguments(digest_key_, nonce, {who.tenant, credential, tool_name}, args))
      .num("rows", outcome.rows)
      .str("status", outcome.status)
      .num("latency_us", latency.count())
      .raw("client", s.client_info_text)
      .str("user_agent", clean_text(req.user_agent, 256))
      .str("client_addr", req.client_addr)
      .str("session", std::string_view(s.id).substr(0, 8));
  if (!outcome.detail.empty()) record.str("detail", clean_text(outcome.detail, 512));
  record.close();
  return e;
}

bool McpServer::deliver(const std::string& session, const json& message) {
  auto id = message.find("id");
  if (id == message.end()) return false;
  std::shared_ptr<PendingReply> p;
  {
    std::lock_guard lock(pending_mu_);
    auto it = pending_.find(session + "|" + to_text(*id));
    if (it == pending_.end()) return false;
    p = it->second;
    pending_.erase(it);
  }
  return p->answer.try_send(boost::system::error_code{}, message);
}

asio::awaitable<std::optional<json>> McpServer::ask_client(std::shared_ptr<EventStream> stream, std::string session,
                                                           std::string method, json params) {
  auto ex = co_await asio::this_coro::executor;
  auto pending = std::make_shared<PendingReply>(ex);
  const json rid = "sluice-" + std::to_string(next_request_++);
  const std::string key = session + "|" + to_text(rid);
  {
    std::lock_guard lock(pending_mu_);
    pending_[key] = pending;
  }
  json request = {{"jsonrpc", "2.0"}, {"id", rid}, {"method", std::move(method)}, {"params", std::move(params)}};
  std::optional<json> answer;
  if (stream->push(to_text(request))) {
    // Bounded: a client that never answers costs this call 30 s, no more.
    asio::steady_timer deadline(ex, std::chrono::seconds(30));
    deadline.async_wait([pending](boost::system::error_code ec) {
      if (!ec) pending->answer.close();
    });
    auto [closed, message] = co_await pending->answer.async_receive(asio::as_tuple(asio::use_awaitable));
    deadline.cancel();
    if (!closed) answer = std::move(message);
  }
  std::lock_guard lock(pending_mu_);
  pending_.erase(key);
  co_return answer;
}

asio::awaitable<void> McpServer::run_streamed(std::shared_ptr<EventStream> stream, const ToolDef* tool, json id,
                                              json params, Session s, Principal who, McpRequest req) {
  const auto started = std::chrono::steady_clock::now();
  json args = params.value("arguments", json::object());
  if (!args.is_object()) args = json::object();
  ToolContext ctx;
  ctx.who = who;
  if (auto meta = params.find("_meta"); meta != params.end() && meta->is_object()) {
    if (auto token = meta->find("progressToken");
        token != meta->end() && (token->is_string() || token->is_number_integer())) {
      ctx.progress_token = *token;
    }
  }
  ctx.client_capabilities = s.client_capabilities;
  ctx.log_level = s.log_level;
  ctx.notify = [stream](json note) { return send_event(stream, to_text(note)); };
  ctx.request = [this, stream, sid = s.id](std::string method, json p) {
    return ask_client(stream, sid, std::move(method), std::move(p));
  };
  ctx.disconnect = [stream] { stream->disconnect(); };
  ToolOutcome outcome;
  try {
    outcome = co_await tool->run_async(ctx, args);
  } catch (const std::exception& e) {
    outcome = internal_error(e.what());
  }
  ++counters_.tool_calls;
  if (outcome.status != "ok") ++counters_.tool_errors;
  const auto seq = co_await audit_.async_append(audit_record(who, s, req, tool->name, args, outcome, started),
                                                asio::use_awaitable);
  std::string reply;
  if (seq) {
    reply = rpc::result_text(id, result_text(outcome, s.protocol != "2025-03-26"));
  } else {
    ++counters_.audit_failures;
    reply = to_text(rpc::error(id, rpc::kInternalError, "the call could not be audited; nothing was returned"));
  }
  stream->push(reply);
  stream->finish();
}

bool supported_protocol(const std::string& v) {
  for (const char* p : kProtocolVersions) {
    if (v == p) return true;
  }
  return false;
}

std::shared_ptr<const Session> Sessions::create(const Principal& who, const std::string& protocol,
                                                json client_info, json client_capabilities) {
  const std::string credential = who.credential();
  auto session = std::make_shared<Session>();
  Session& s = *session;
  s.id = random_hex(32);
  s.credential = credential;
  s.tenant_id = who.tenant_id;
  s.protocol = protocol;
  s.client_info = std::move(client_info);
  s.client_info_text = to_text(s.client_info);
  s.client_capabilities = std::move(client_capabilities);
  std::lock_guard lock(mu_);
  // One credential holds at most kPerCredential sessions: past that its
  // own least recently used one goes, so no key can push out others'.
  if (auto own = per_credential_.find(credential); own != per_credential_.end() && own->second.size() >= kPerCredential) {
    erase_locked(map_.find(own->second.back()));
  }
  // Full: the tenant holding the most sessions loses its least recently
  // used one (its client re-initializes after a 404, as the transport
  // specifies). Tenants are few: a walk over them is cheap.
  while (map_.size() >= max_ && !per_tenant_.empty()) {
    auto largest = per_tenant_.begin();
    for (auto t = per_tenant_.begin(); t != per_tenant_.end(); ++t) {
      if (t->second.size() > largest->second.size()) largest = t;
    }
    erase_locked(map_.find(largest->second.back()));
  }
  lru_.push_front(s.id);
  std::list<std::string>& own = per_credential_[credential];
  own.push_front(s.id);
  std::list<std::string>& tenant = per_tenant_[s.tenant_id];
  tenant.push_front(s.id);
  map_.emplace(s.id, Entry{session, std::chrono::steady_clock::now(), lru_.begin(), own.begin(), tenant.begin()});
  return session;
}

std::shared_ptr<const Session> Sessions::use(const std::string& id, const std::string& credential,
                                             const std::function<void(const Session&)>& then) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = find_live_locked(id, now);
  if (it == map_.end()) return nullptr;
  Entry& e = it->second;
  // Another credential presenting this id learns nothing: the same 404 as
  // for an id that never existed.
  if (e.session->credential != credential) return nullptr;
  e.last_used = now;
  lru_.splice(lru_.begin(), lru_, e.lru);
  std::list<std::string>& own = per_credential_[credential];
  own.splice(own.begin(), own, e.own_lru);
  std::list<std::string>& tenant = per_tenant_[e.session->tenant_id];
  tenant.splice(tenant.begin(), tenant, e.tenant_lru);
  if (then) then(*e.session);
  return e.session;
}

bool Sessions::set_log_level(const std::string& id, const std::string& level) {
  std::lock_guard lock(mu_);
  auto it = map_.find(id);
  if (it == map_.end()) return false;
  // Calls in progress keep the session they started with.
  auto changed = std::make_shared<Session>(*it->second.session);
  changed->log_level = level;
  it->second.session = std::move(changed);
  return true;
}

bool Sessions::remove(const std::string& id, const std::string& credential) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = find_live_locked(id, now);
  if (it == map_.end() || it->second.session->credential != credential) return false;
  erase_locked(it);
  return true;
}

void Sessions::erase_locked(Map::iterator it) {
  it->second.session->ended->store(true, std::memory_order_release);
  if (auto own = per_credential_.find(it->second.session->credential); own != per_credential_.end()) {
    own->second.erase(it->second.own_lru);
    if (own->second.empty()) per_credential_.erase(own);
  }
  if (auto tenant = per_tenant_.find(it->second.session->tenant_id); tenant != per_tenant_.end()) {
    tenant->second.erase(it->second.tenant_lru);
    if (tenant->second.empty()) per_tenant_.erase(tenant);
  }
  if (on_end_) on_end_(it->first);
  lru_.erase(it->second.lru);
  map_.erase(it);
}

void Sessions::end_credential(const std::string& credential) {
  std::lock_guard lock(mu_);
  // Its own list, not every session: erasing the last removes the list.
  while (true) {
    auto own = per_credential_.find(credential);
    if (own == per_credential_.end()) return;
    erase_locked(map_.find(own->second.back()));
  }
}

Sessions::Map::iterator Sessions::find_live_locked(const std::string& id, std::chrono::steady_clock::time_point now) {
  auto it = map_.find(id);
  if (it == map_.end() || !idle_past(it->second, now)) return it;
  erase_locked(it);
  return map_.end();
}

void Sessions::sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  // The least recently used are at the back: stop at the first live one.
  while (!lru_.empty()) {
    auto it = map_.find(lru_.back());
    if (!idle_past(it->second, now)) break;
    erase_locked(it);
  }
}

std::size_t Sessions::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

std::vector<const ToolDef*> McpServer::visible_tools(const Principal& who) const {
  std::vector<const ToolDef*> out;
  for (const ToolDef& t : tools_.tools()) {
    if ((who.scopes & t.scope) == t.scope) out.push_back(&t);
  }
  return out;
}

asio::awaitable<McpResponse> McpServer::handle(McpRequest req, Principal who) {
  if (req.method == "DELETE") {
    if (!req.protocol_version.empty() && !supported_protocol(req.protocol_version)) {
      co_return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "unsupported MCP-Protocol-Version"));
    }
    if (req.session_id.empty()) co_return json_reply(400, rpc::error(nullptr, rpc::kServerError, "Mcp-Session-Id header is required"));
    co_return sessions_.remove(req.session_id, who.credential())
        ? empty_reply(200)
        : json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));
  }
  if (req.method == "GET") {
    const auto ex = co_await asio::this_coro::executor;
    co_return get(req, who, ex);
  }
  if (req.method != "POST") {
    McpResponse r = empty_reply(405);
    r.headers.emplace_back("Allow", "GET, POST, DELETE");
    co_return r;
  }
  co_return co_await post(req, who);
}

McpResponse McpServer::get(const McpRequest& req, const Principal& who, const asio::any_io_executor& ex) {
  if (!accepts(req.accept, "text/event-stream")) {
    return json_reply(406, rpc::error(nullptr, rpc::kInvalidRequest, "Accept must list text/event-stream"));
  }
  if (!req.protocol_version.empty() && !supported_protocol(req.protocol_version)) {
    return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "unsupported MCP-Protocol-Version"));
  }
  if (req.session_id.empty()) {
    return json_reply(400, rpc::error(nullptr, rpc::kServerError, "Mcp-Session-Id header is required"));
  }
  std::optional<EventId> event;
  if (!req.last_event_id.empty()) {
    event = parse_event_id(req.last_event_id);
    if (!event) return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "malformed Last-Event-ID"));
  }
  // Before anything is attached: a refused GET takes over no response.
  const std::string credential = who.credential();
  bool tenant_full = false;
  auto ticket = streams_.admit(credential, who.tenant_id, &tenant_full);
  if (!ticket) return too_many_streams(tenant_full);
  // Found or made while the session cannot end: its end drops it.
  std::shared_ptr<EventStream> stream;
  const std::shared_ptr<const Session> session =
      sessions_.use(req.session_id, credential, [&](const Session& s) {
        stream = event ? streams_.find(s.id, event->stream)
                       : streams_.standalone(s.id, s.tenant_id, resumable(s), (who.scopes & kScopeRead) != 0);
      });
  // 404 says "this session is gone" (the client initializes anew): only then.
  if (!session) return json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));
  McpResponse r;
  r.status = 200;
  r.content_type = "text/event-stream";
  // A GET response always ends after the hold, whatever the revision: the
  // stream stays, and the client comes back for the rest.
  const auto hold = hold_for(who, streams_.limits().hold);
  if (event) {
    // Only this session's streams, only where that event left off.
    if (stream) r.stream = stream->attach(event->seq, ex, hold);
    if (!r.stream) {
      return json_reply(409, rpc::error(nullptr, rpc::kInvalidRequest, "the stream cannot be resumed at that Last-Event-ID"));
    }
    r.stream->keep(std::move(ticket));
    return r;
  }
  if (stream) {
    stream->prime();
    r.stream = stream->attach(std::nullopt, ex, hold);
  }
  if (!r.stream) return json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));
  r.stream->keep(std::move(ticket));
  return r;
}

void McpServer::resources_changed(std::int64_t tenant_id) {
  streams_.broadcast(tenant_id, R"({"jsonrpc":"2.0","method":"notifications/resources/list_changed"})");
}

json McpServer::initialize(const json& id, const json& params, const Principal& who, McpResponse& out) {
  const auto version = params.find("protocolVersion");
  if (version == params.end() || !version->is_string()) {
    return rpc::error(id, rpc::kInvalidParams, "protocolVersion must be a string");
  }
  // A version we speak is echoed; otherwise we answer with our latest and
  // the client decides whether to continue.
  const std::string asked = version->get<std::string>();
  const std::string chosen = supported_protocol(asked) ? asked : kLatestProtocol;
  // Only the short identifying strings of clientInfo are kept: they go
  // into every audit record of the session.
  json client = json::object();
  if (auto info = params.find("clientInfo"); info != params.end() && info->is_object()) {
    for (const char* k : {"name", "version", "title"}) {
      if (auto v = info->find(k); v != info->end() && v->is_string()) {
        client[k] = clean_text(v->get_ref<const std::string&>(), 128);
      }
    }
  }
  // What the client can answer when asked: booleans, nothing else kept.
  json caps = {{"sampling", false}, {"elicitation", false}, {"roots", false}};
  if (auto c = params.find("capabilities"); c != params.end() && c->is_object()) {
    for (const char* k : {"sampling", "elicitation", "roots"}) caps[k] = c->contains(k);
  }
  const auto s = sessions_.create(who, chosen, client, caps);
  out.headers.emplace_back("Mcp-Session-Id", s->id);
  json offered = {{"tools", {{"listChanged", false}}}, {"prompts", {{"listChanged", false}}}, {"logging", json::object()}};
  // Resources and completions (which name entities) only to a key that
  // may read them: one that may not is not offered what it would be refused.
  if ((who.scopes & kScopeRead) != 0) {
    // Subscriptions only with the conformance fixtures: nothing of a
    // tenant's schema snapshot changes while it is served. The list
    // changes with the saved queries (told on the GET stream).
    offered["resources"] = {{"subscribe", tools_.fixtures()}, {"listChanged", true}};
    offered["completions"] = json::object();
  }
  return rpc::result(
      id, {{"protocolVersion", chosen},
           {"capabilities", std::move(offered)},
           {"serverInfo", {{"name", "sluice-mcpd"}, {"title", "Sluice"}, {"version", "0.1.0"}}},
           {"instructions",
            "Tools over the tenant's local data. Query results come back to you only; call "
            "list_entities and describe_entity first, then run_query with ? placeholders."}});
}

asio::awaitable<McpResponse> McpServer::post(const McpRequest& req, const Principal& who) {
  if (req.content_type.find("application/json") == std::string::npos) {
    co_return json_reply(415, rpc::error(nullptr, rpc::kInvalidRequest, "Content-Type must be application/json"));
  }
  if (!accepts(req.accept, "application/json") || !accepts(req.accept, "text/event-stream")) {
    co_return json_reply(406, rpc::error(nullptr, rpc::kInvalidRequest,
                                         "Accept must list application/json and text/event-stream"));
  }
  if (!req.protocol_version.empty() && !supported_protocol(req.protocol_version)) {
    co_return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "unsupported MCP-Protocol-Version"));
  }
  auto parsed = parse_json(req.body);
  if (!parsed) co_return json_reply(400, rpc::error(nullptr, rpc::kParseError, "Parse error: " + parsed.error().what));
  const json doc = std::move(*parsed);

  // initialize: always alone, never within a session.
  if (doc.is_object() && doc.value("method", json()) == "initialize") {
    const rpc::Message m = rpc::classify(doc);
    if (m.kind != rpc::Kind::request) {
      co_return json_reply(400, rpc::error(m.id, rpc::kInvalidRequest, m.problem.empty() ? "initialize must be a request" : m.problem));
    }
    if (!req.session_id.empty()) {
      co_return json_reply(400, rpc::error(m.id, rpc::kInvalidRequest, "already initialized: a session exists"));
    }
    if (m.params_array) co_return json_reply(200, rpc::error(m.id, rpc::kInvalidParams, kParamsObject));
    McpResponse out;
    json reply = initialize(m.id, *m.params, who, out);
    McpResponse r = json_reply(200, reply);
    r.headers = std::move(out.headers);
    co_return r;
  }

  if (req.session_id.empty()) {
    co_return json_reply(400, rpc::error(nullptr, rpc::kServerError, "Mcp-Session-Id header is required"));
  }
  const std::string credential = who.credential();
  const std::shared_ptr<const Session> session = sessions_.use(req.session_id, credential);
  if (!session) co_return json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));

  // A single call of a tool that talks to the client: answered as a
  // stream, the tool running on its own.
  if (doc.is_object()) {
    const rpc::Message m = rpc::classify(doc);
    if (m.kind == rpc::Kind::request && m.method == "tools/call") {
      auto name = m.params->find("name");
      const ToolDef* tool = name != m.params->end() && name->is_string() ? tools_.find(name->get<std::string>()) : nullptr;
      if (tool && tool->run_async && (who.scopes & tool->scope) == tool->scope) {
        auto ex = co_await asio::this_coro::executor;
        bool tenant_full = false;
        auto ticket = streams_.admit(credential, who.tenant_id, &tenant_full);
        if (!ticket) co_return too_many_streams(tenant_full);
        std::shared_ptr<EventStream> stream;
        const bool live = sessions_.use(session->id, credential, [&](const Session& s) {
          stream = streams_.open(s.id, s.tenant_id, resumable(s));
        }) != nullptr;
        if (!live) co_return json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));
        if (!stream) {
          co_return json_reply(429, rpc::error(m.id, rpc::kServerError, "too many streamed calls in progress in this session"));
        }
        stream->prime();
        McpResponse r;
        r.status = 200;
        r.content_type = "text/event-stream";
        // Attached before the tool starts: nothing it sends is missed.
        r.stream = stream->attach(0, ex, stream->resumable() ? hold_for(who, streams_.limits().hold)
                                                               : std::chrono::milliseconds(0));
        if (!r.stream) co_return json_reply(404, rpc::error(nullptr, rpc::kServerError, "session not found"));
        r.stream->keep(std::move(ticket));
        // Whatever happens in it (out of memory, say), the stream ends with
        // an answer: an unfinished one would hold its slot and connection,
        // kept alive by comments, until its session went idle.
        asio::co_spawn(ex, run_streamed(stream, tool, m.id, *m.params, *session, who, req),
                       [stream, id = m.id](const std::exception_ptr& e) {
                         if (!e) return;
                         try {
                           stream->push(to_text(rpc::error(id, rpc::kInternalError, "internal error")));
                         } catch (const std::exception&) {
                         }
                         stream->finish();
                       });
        co_return r;
      }
    }
  }

  std::vector<const json*> messages;
  const bool batch = doc.is_array();
  if (batch) {
    // JSON-RPC batches exist only in 2025-03-26.
    if (session->protocol != "2025-03-26") {
      co_return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "batches are not supported in this protocol revision"));
    }
    if (doc.empty() || doc.size() > 64) {
      co_return json_reply(400, rpc::error(nullptr, rpc::kInvalidRequest, "a batch holds 1 to 64 messages"));
    }
    for (const json& msg : doc) messages.push_back(&msg);
  } else {
    messages.push_back(&doc);
  }

  // Each reply as JSON text; whether one is an invalid-request error.
  std::vector<std::string> replies;
  std::size_t reply_bytes = 0;  // of the answers so far
  std::vector<AnswerBudget::Keep> keeps;  // their holds on the answer budget
  bool budget_full = false;               // an answer of the batch was not kept
  bool invalid_request = false;
  bool first = true;
  for (const json* msg : messages) {
    const rpc::Message m = rpc::classify(*msg);
    if (!first && req.charge && !req.charge()) {
      if (m.kind == rpc::Kind::request) replies.push_back(to_text(rpc::error(m.id, rpc::kServerError, "rate limit exceeded")));
      continue;
    }
    first = false;
    if (m.kind == rpc::Kind::invalid) {
      replies.push_back(to_text(rpc::error(m.id, rpc::kInvalidRequest, m.problem)));
      invalid_request = true;
      continue;
    }
    if (m.kind == rpc::Kind::response) {
      deliver(session->id, *msg);
      continue;
    }
    if (m.kind == rpc::Kind::notification) {
      if (m.method == "notifications/cancelled") cancel(session->id, m.params->value("requestId", json()));
      continue;  // every notification is accepted (never answered); others change nothing
    }
    if (m.params_array && m.method != "tools/call") {
      replies.push_back(to_text(rpc::error(m.id, rpc::kInvalidParams, kParamsObject)));
      continue;
    }
    if (m.method == "initialize") {
      replies.push_back(to_text(rpc::error(m.id, rpc::kInvalidRequest, "initialize may not be batched")));
      invalid_request = true;
      continue;
    }
    if (m.method == "tools/call") {
      // A call the batch has no room for is not run, but audited as every
      // tools/call is.
      std::optional<Skip> skip;
      if (budget_full) {
        skip = Skip{kAnswersFull, "not run: an earlier answer of its batch was past the answer budget"};
      } else if (reply_bytes >= kMaxBatchReplyBytes) {
        skip = Skip{"the batch's answer is full: send this call on its own", "not run: its batch's answers reached 16 MiB"};
      }
      // Params as an array: malformed, and audited as such.
      ToolAnswer a = co_await call_tool(m.id, m.params_array ? msg->at("params") : *m.params, *session, who, req, batch, skip);
      replies.push_back(std::move(a.text));
      reply_bytes += replies.back().size();
      if (a.keep) keeps.push_back(std::move(a.keep));
      budget_full = budget_full || a.refused;
    } else if (budget_full) {
      // Nothing more of a batch runs once an answer of it was not kept.
      replies.push_back(to_text(rpc::error(m.id, rpc::kServerError, kAnswersFull)));
    } else {
      Budgeted b;
      json value = co_await dispatch(m.id, m.method, *m.params, *session, who, req, batch, b);
      std::string reply = b.counted ? std::move(b.text) : to_text(value);
      // Counted like a tool's answer (in a batch the connections bound
      // nothing). (Unaudited replies: nothing to set right.)
      if (!b.counted) b.refused = !hold_reply(who.tenant_id, m.id, batch, reply, b.keep);
      if (b.keep) keeps.push_back(std::move(b.keep));
      budget_full = budget_full || b.refused;
      reply_bytes += reply.size();
      replies.push_back(std::move(reply));
    }
  }
  if (replies.empty()) co_return empty_reply(202);
  // A lone invalid message is a 400; any other answer is a 200.
  McpResponse out;
  if (!batch) {
    out = text_reply(invalid_request ? 400 : 200, std::move(replies[0]));
  } else {
    std::string all = "[";
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (i) all += ',';
      all += replies[i];
    }
    all += ']';
    out = text_reply(200, std::move(all));
  }
  if (keeps.size() == 1) out.keep = std::move(keeps[0]);
  else if (!keeps.empty()) out.keep = std::make_shared<const std::vector<AnswerBudget::Keep>>(std::move(keeps));
  co_return out;
}

bool McpServer::hold_reply(std::int64_t tenant, const json& id, bool in_batch, std::string& text,
                           AnswerBudget::Keep& keep) {
  if (auto kept = answers_.reserve(tenant, text.size(), in_batch)) {
    keep = std::move(*kept);
    return true;
  }
  text = to_text(rpc::error(id, rpc::kServerError, kAnswersFull));
  return false;
}

asio::awaitable<json> McpServer::dispatch(const json& id, const std::string& method, const json& params,
                                          const Session& s, const Principal& who, const McpRequest& req,
                                          bool in_batch, Budgeted& budget) {
  if (method == "ping") co_return rpc::result(id, json::object());
  if (method == "tools/list") {
    json items = json::array();
    for (const ToolDef* t : visible_tools(who)) {
      json tool = {{"name", t->name}, {"description", t->description}, {"inputSchema", t->input_schema}};
      if (!t->title.empty()) tool["title"] = t->title;
      tool["annotations"] = {{"readOnlyHint", t->read_only}, {"openWorldHint", false}};
      items.push_back(std::move(tool));
    }
    auto out = page(items, params, "tools");
    if (!out) co_return rpc::error(id, rpc::kInvalidParams, "invalid cursor");
    co_return rpc::result(id, *out);
  }
  const bool can_read = (who.scopes & kScopeRead) != 0;
  if (method == "resources/list" || method == "resources/templates/list" || method == "resources/read") {
    if (!can_read) co_return rpc::error(id, rpc::kInvalidParams, "this key may not read resources");
    if (method == "resources/list") {
      // Opening the tenant's source may wait on its file: a worker's.
      std::function<json()> work = [this, &who] { return tools_.list_resources(who); };
      const json resources = co_await on_worker<json>(who.tenant_id, std::move(work));
      auto out = page(resources, params, "resources");
      if (!out) co_return rpc::error(id, rpc::kInvalidParams, "invalid cursor");
      co_return rpc::result(id, *out);
    }
    if (method == "resources/templates/list") {
      auto out = page(tools_.resource_templates(), params, "resourceTemplates");
      if (!out) co_return rpc::error(id, rpc::kInvalidParams, "invalid cursor");
      co_return rpc::result(id, *out);
    }
    auto uri = params.find("uri");
    if (uri == params.end() || !uri->is_string()) co_return rpc::error(id, rpc::kInvalidParams, "uri must be a string");
    const std::string target = uri->get<std::string>();
    // An entity's statistics may take seconds the first time: a worker's.
    std::function<std::optional<json>()> work = [this, who, target] { return tools_.read_resource(who, target); };
    auto read = co_await on_worker<std::optional<json>>(who.tenant_id, std::move(work));
    // Counted before the record, which then says whether it was answered.
    budget.counted = true;
    budget.text = to_text(read ? rpc::result(id, *read)
                               : rpc::error(id, -32002, "Resource not found", {{"uri", clean_text(target, 256)}}));
    budget.refused = !hold_reply(who.tenant_id, id, in_batch, budget.text, budget.keep);
    // Reading an entity resource returns what describe_entity does: audited alike.
    json record = {{"kind", "resource_read"}, {"tenant", who.tenant}, {"user", who.user},
                   {"credential", who.credential()},
                   {"uri", clean_text(target, 256)},
                   {"status", budget.refused ? "busy" : read ? "ok" : "not_found"},
                   {"client", s.client_info}, {"client_addr", req.client_addr}};
    const auto seq = co_await audit_.async_append(std::move(record), asio::use_awaitable);
    if (!seq) {
      ++counters_.audit_failures;
      budget.keep.reset();
      budget.text = to_text(rpc::error(id, rpc::kInternalError, "the read could not be audited; nothing was returned"));
    }
    co_return json();  // the reply is budget.text
  }
  if (method == "prompts/list") {
    auto out = page(tools_.list_prompts(), params, "prompts");
    if (!out) co_return rpc::error(id, rpc::kInvalidParams, "invalid cursor");
    co_return rpc::result(id, *out);
  }
  if (method == "prompts/get") {
    auto name = params.find("name");
    if (name == params.end() || !name->is_string()) co_return rpc::error(id, rpc::kInvalidParams, "name must be a string");
    json args = params.value("arguments", json::object());
    if (!args.is_object()) co_return rpc::error(id, rpc::kInvalidParams, "arguments must be an object");
    auto got = tools_.get_prompt(name->get<std::string>(), args);
    if (std::holds_alternative<std::monostate>(got)) co_return rpc::error(id, rpc::kInvalidParams, "unknown prompt");
    if (auto* why = std::get_if<std::string>(&got)) co_return rpc::error(id, rpc::kInvalidParams, *why);
    co_return rpc::result(id, std::get<json>(got));
  }
  if (method == "completion/complete") {
    // Completions name entities: what list_entities shows, to read keys.
    if (!can_read) co_return rpc::error(id, rpc::kInvalidParams, "this key may not read entity names");
    std::function<std::optional<json>()> work = [this, &who, &params] { return tools_.complete(who, params); };
    auto out = co_await on_worker<std::optional<json>>(who.tenant_id, std::move(work));
    if (!out) co_return rpc::error(id, rpc::kInvalidParams, "unknown reference or argument");
    co_return rpc::result(id, *out);
  }
  if ((method == "resources/subscribe" || method == "resources/unsubscribe") && tools_.fixtures()) {
    auto uri = params.find("uri");
    if (uri == params.end() || !uri->is_string()) co_return rpc::error(id, rpc::kInvalidParams, "uri must be a string");
    co_return rpc::result(id, json::object());
  }
  if (method == "logging/setLevel") {
    auto level = params.find("level");
    bool known = false;
    if (level != params.end() && level->is_string()) {
      for (const char* l : kLogLevels) known = known || *level == l;
    }
    if (!known) co_return rpc::error(id, rpc::kInvalidParams, "unknown log level");
    sessions_.set_log_level(s.id, level->get<std::string>());
    co_return rpc::result(id, json::object());
  }
  co_return rpc::error(id, rpc::kMethodNotFound, "Method not found");
}

McpServer::InFlight::InFlight(McpServer& server, std::string key)
    : server_(server), key_(std::move(key)), flag_(std::make_shared<std::atomic<bool>>(false)) {
  std::lock_guard lock(server_.running_mu_);
  // A client reusing an id of a call still running: the newer one is the
  // one cancellation reaches.
  server_.running_[key_] = flag_;
}

McpServer::InFlight::~InFlight() {
  std::lock_guard lock(server_.running_mu_);
  auto it = server_.running_.find(key_);
  if (it != server_.running_.end() && it->second == flag_) server_.running_.erase(it);
}

void McpServer::cancel(const std::string& session, const json& request_id) {
  if (!request_id.is_string() && !request_id.is_number_integer()) return;
  std::lock_guard lock(running_mu_);
  if (auto it = running_.find(session + "|" + request_id.dump()); it != running_.end()) it->second->store(true);
}

void McpServer::session_ended(const std::string& id) {
  streams_.drop_session(id);
  const std::string prefix = id + "|";
  std::lock_guard lock(running_mu_);
  for (auto& [key, flag] : running_) {
    if (key.starts_with(prefix)) flag->store(true);
  }
}

void McpServer::cancel_all() {
  fair_.stop();  // first: a worker freed below takes nothing queued
  std::lock_guard lock(running_mu_);
  for (auto& [key, flag] : running_) flag->store(true);
}

asio::awaitable<McpServer::ToolAnswer> McpServer::call_tool(const json& id, const json& params, const Session& s,
                                                           const Principal& who, const McpRequest& req,
                                                           bool in_batch, std::optional<Skip> skip) {
  const auto started = std::chrono::steady_clock::now();
  // A call that is malformed is refused, and audited like any other.
  const char* malformed = params.is_object() ? nullptr : kParamsObject;
  auto name = params.find("name");
  if (!malformed && (name == params.end() || !name->is_string())) malformed = "name must be a string";
  // Absent or null: no arguments. Read in place, never copied.
  const json* args = &empty_object();
  if (auto given = params.find("arguments"); !malformed && given != params.end() && !given->is_null()) {
    if (given->is_object()) {
      args = &*given;
    } else {
      malformed = "arguments must be an object";
    }
  }
  const std::string tool_name = name != params.end() && name->is_string() ? name->get<std::string>() : std::string();

  const ToolDef* tool = malformed ? nullptr : tools_.find(tool_name);  // a malformed call runs nothing
  const bool permitted = tool && (who.scopes & tool->scope) == tool->scope;
  // From here a record is coming: the audit writer may wait for it.
  AuditLog::Expected expected(audit_);
  const InFlight running(*this, s.id + "|" + id.dump());
  ToolOutcome outcome;
  // The CallToolResult's text, made on the worker before the record: an
  // answer the budget cannot hold is not kept, and its record says so.
  std::string answer;
  AnswerBudget::Keep keep;
  bool refused = false;
  const bool structured = s.protocol != "2025-03-26";  // structuredContent exists from 2025-06-18 on
  // The worker runs the tool and hands its record to the audit writer
  // itself; this frame resumes once, when the record is durable (one
  // thread hop fewer than coming back here in between).
  using Durable = asio::experimental::concurrent_channel<void(boost::system::error_code, std::optional<std::int64_t>)>;
  auto durable = std::make_shared<Durable>(co_await asio::this_coro::executor, 1);
  // By reference: this frame waits on `durable` until the writer is done.
  const auto finish = [&, durable] {
    ++counters_.tool_calls;
    if (outcome.status == "denied") ++counters_.tool_denied;
    else if (outcome.status != "ok") ++counters_.tool_errors;
    audit_.append(
        audit_record(who, s, req, tool_name, *args, outcome, started),
        [durable](std::optional<std::int64_t> seq) { durable->try_send(boost::system::error_code{}, seq); },
        &expected);
  };
  if (skip) {
    outcome.status = "not_run";
    outcome.detail = skip->detail;
    finish();
  } else if (malformed) {
    outcome.status = "invalid";
    outcome.detail = malformed;
    finish();
  } else if (!permitted) {
    // Unknown and forbidden look the same to the caller: the key's
    // tools/list never showed it.
    outcome.status = tool ? "denied" : "unknown_tool";
    outcome.detail = tool ? "key lacks scope " + scopes_to_string(tool->scope) : "";
    finish();
  } else {
    fair_.post(who.tenant_id, [&, finish] {
      try {
        if (s.ended->load(std::memory_order_acquire)) {
          // Queued behind other calls while its key was revoked (or its
          // session ended otherwise): nothing runs for it now.
          outcome.result = text_result("the session ended before the call ran", true);
          outcome.status = "cancelled";
          outcome.detail = "the session ended before the call ran";
        } else if (who.expires_ms && now_ms() >= *who.expires_ms) {
          // Its key expired while it waited (a batch, a busy pool):
          // expiry ends no session, so it is looked at here.
          outcome.result = text_result("the key expired before the call ran", true);
          outcome.status = "cancelled";
          outcome.detail = "the key expired before the call ran";
        } else {
          const CancelScope cancellable(running.flag());
          outcome = tool->run(who, *args);
        }
      } catch (const std::exception& e) {
        // A bug, not the caller's doing: still audited, never detailed to them.
        outcome = internal_error(e.what());
      }
      try {
        answer = result_text(outcome, structured);
        if (auto kept = answers_.reserve(who.tenant_id, answer.size(), in_batch)) {
          keep = std::move(*kept);
        } else {
          outcome = answer_not_kept(answer.size(), outcome);
          answer = result_text(outcome, structured);
          refused = true;
        }
        outcome.body = std::string();  // in `answer` now
        finish();
      } catch (...) {
        // Not even queued (out of memory): not audited, so not answered;
        // the frame must still wake, and nothing may leave a pool thread.
        durable->try_send(boost::system::error_code{}, std::nullopt);
      }
    });
  }
  auto [ec, seq] = co_await durable->async_receive(asio::as_tuple(asio::use_awaitable));
  if (!seq) {
    // Not audited, not answered: the rows stay here.
    ++counters_.audit_failures;
    co_return ToolAnswer{to_text(rpc::error(id, rpc::kInternalError, "the call could not be audited; nothing was returned")), {}, false};
  }
  if (skip) co_return ToolAnswer{to_text(rpc::error(id, rpc::kServerError, skip->message)), {}, false};
  if (malformed) co_return ToolAnswer{to_text(rpc::error(id, rpc::kInvalidParams, malformed)), {}, false};
  if (!permitted) {
    co_return ToolAnswer{to_text(rpc::error(id, rpc::kInvalidParams, "Unknown tool: " + clean_text(tool_name, 128))), {}, false};
  }
  co_return ToolAnswer{rpc::result_text(id, answer), std::move(keep), refused};
}

}  // namespace sluice::mcpd
