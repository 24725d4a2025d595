// GCC 12 reports -Wmismatched-new-delete for coroutine frames awaited from
// another coroutine (run_on below); Asio allocates and frees them with its
// own matching operators. A known false positive; see mcp.cpp.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "app.h"

#include <algorithm>
#include <future>
#include <iomanip>
#include <sstream>

#include <boost/asio/ip/address.hpp>

#include <boost/asio/use_awaitable.hpp>

#include "jsonrpc.h"
#include "temp_files.h"
#include "text.h"

namespace sluice::mcpd {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

App::App(const McpdConfig& c) : config_(c) {}

App::~App() { shutdown(); }

void App::shutdown() {
  // A push in progress finishes (bounded by the agent timeout), a query
  // in progress too (bounded by its timeout); nothing new starts.
  for (auto* pool : {local_pool_.get(), admin_pool_.get(), timer_pool_.get(), reconcile_pool_.get()}) {
    if (!pool) continue;
    pool->stop();
    pool->join();
  }
  if (workers_) {
    // Running queries stop now, not at their timeout, and the calls
    // waiting for a worker are dropped. Joined, not stopped: a handler
    // posted but not started would otherwise stay in the pool until the
    // App goes, after the I/O context its job's channel belongs to.
    if (mcp_) mcp_->cancel_all();
    workers_->join();
  }
  if (audit_) {
    for (json& rec : refusals_.drain()) audit_->append_best_effort(std::move(rec));
    audit_->stop();
  }
}

Result<std::unique_ptr<App>> App::open(const McpdConfig& c) {
  std::unique_ptr<App> app(new App(c));
  // First: one mcpd per database (two would each think they hold the
  // audit chain's head).
  auto locked = DatabaseLock::take(c.database());
  if (!locked) return tl::unexpected(locked.error());
  app->lock_.emplace(std::move(*locked));
  auto store = Store::open(c.database());
  if (!store) return tl::unexpected(store.error());
  app->store_ = std::move(*store);
  AuditOptions ao;
  ao.journal = c.journal;
  ao.coalesce = c.audit_group_wait;
  if (c.audit_anchors) ao.anchors = c.anchors();
  ao.anchor_interval = c.audit_anchor_interval;
  auto audit = AuditLog::open(c.database(), ao);
  if (!audit) return tl::unexpected(audit.error());
  app->audit_ = std::move(*audit);
  app->keys_ = std::make_unique<ApiKeyAuthenticator>(*app->store_);
  if (auto s = app->keys_->reload(); !s) return tl::unexpected(s.error());
  app->lockout_ = std::make_unique<Lockout>(Lockout::Options{c.lockout_failures, c.lockout_window, 100000});
  app->mcp_rate_ = std::make_unique<RateLimiter>(c.tenant_rate, c.tenant_burst);
  app->admin_rate_ = std::make_unique<RateLimiter>(c.admin_rate, c.admin_burst);
  app->admin_light_rate_ = std::make_unique<RateLimiter>(c.admin_light_rate, c.admin_light_burst);
  app->sessions_ = std::make_unique<Sessions>(c.max_sessions, c.session_idle);
  QueryLimits limits;
  limits.max_rows = c.max_rows;
  limits.timeout = c.query_timeout;
  // As many workers as data-source connections: more would only queue.
  const std::size_t workers = std::max<std::size_t>(2, c.threads);
  limits.pool = workers;
  // Each connection holds the file's schema: one tenant's schemas take at
  // most a quarter of the budget of all (Sources::kSchemaBudget).
  limits.schema_memory = std::min(c.query_schema_memory, Sources::kSchemaBudget / 4 / workers);
  // Per statement, and every worker's statement at its budget at once
  // within kTempMemoryCap (temp_files.h; outside SQLite's heap): one
  // tenant's sorts never fill the cap that the others' need.
  limits.temp_budget = std::min(c.query_temp_memory, kTempMemoryCap / workers);
  app->temp_budget_ = limits.temp_budget;
  app->schema_memory_ = limits.schema_memory;
  app->workers_count_ = workers;
  app->sources_ = std::make_unique<Sources>(*app->store_, limits);
  app->toolbox_ = std::make_unique<Toolbox>(*app->store_, *app->sources_, c.fixtures);
  app->workers_ = std::make_unique<boost::asio::thread_pool>(workers);
  StreamLimits streams;
  streams.hold = c.stream_hold;
  streams.retry = c.stream_retry;
  streams.max_open_per_credential = c.streams_per_key;
  streams.max_open_per_tenant = c.streams_per_tenant;
  auto digest_key = load_digest_key(digest_key_beside(c.database()), /*create=*/true);
  if (!digest_key) return tl::unexpected(digest_key.error());
  AnswerLimits answers = c.answers;
  answers.per_tenant = std::min(answers.per_tenant, answers.total);
  app->answers_ = std::make_unique<AnswerBudget>(answers);
  app->mcp_ = std::make_unique<McpServer>(*app->toolbox_, *app->sessions_, *app->audit_, app->counters_,
                                          app->workers_->get_executor(), workers, *digest_key, *app->answers_, streams);
  app->sessions_->on_end([m = app->mcp_.get()](const std::string& id) { m->session_ended(id); });
  auto enforcer = Enforcer::open(c, *app->store_);
  if (!enforcer) return tl::unexpected(enforcer.error());
  app->enforcer_ = std::move(*enforcer);
  app->admin_pool_ = std::make_unique<boost::asio::thread_pool>(1);
  app->local_pool_ = std::make_unique<boost::asio::thread_pool>(1);
  app->sweep_timer_ = std::make_unique<boost::asio::steady_timer>(app->admin_pool_->get_executor());
  app->schedule_sweep();
  app->timer_pool_ = std::make_unique<boost::asio::thread_pool>(1);
  app->second_timer_ = std::make_unique<boost::asio::steady_timer>(app->timer_pool_->get_executor());
  app->schedule_second_tick();
  if (app->enforcer_->configured()) {
    // On a thread of its own: a round may wait on a silent agent for
    // several timeout_ms, which the admin API's requests (a key revoked
    // in a hurry) must not queue behind.
    app->reconcile_pool_ = std::make_unique<boost::asio::thread_pool>(1);
    app->reconcile_timer_ = std::make_unique<boost::asio::steady_timer>(app->reconcile_pool_->get_executor());
    // Versions left pending by an earlier run (or an agent that lost its
    // state) are pushed at once, then on every tick.
    boost::asio::post(*app->reconcile_pool_, [a = app.get()] {
      a->reconcile_now();
      a->schedule_reconcile();
    });
  }
  return app;
}

namespace {

// 401 with the challenge RFC 6750 asks for; `invalid_token` once a
// credential was presented. The connection closes after it: a client
// without a valid credential does not keep a connection slot by sending a
// request now and then.
HttpResponse unauthorized(unsigned version, bool invalid_token) {
  HttpResponse r = json_response(401, rpc::error(nullptr, -32001, "Unauthorized"), version);
  r.set(http::field::www_authenticate,
        invalid_token ? "Bearer realm=\"sluice-mcpd\", error=\"invalid_token\"" : "Bearer realm=\"sluice-mcpd\"");
  r.keep_alive(false);
  return r;
}

}  // namespace

namespace {
// Lockout's unit: one IPv6 host usually holds a whole /64.
std::string lockout_block(const std::string& peer) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(peer, ec);
  return ec ? peer : client_block(address);
}
}  // namespace

std::variant<Principal, HttpResponse> App::admit(const RequestHeader& req, const std::string& peer) {
  const auto now = Clock::now();
  const std::string client = lockout_block(peer);
  // A locked-out address is refused before its credential is looked at,
  // valid or not.
  if (const auto wait = lockout_->locked_for(client, now); wait > 0) {
    HttpResponse r = problem(429, "too many failed authentications; try again later", req.version());
    r.set(http::field::retry_after, std::to_string(wait));
    r.keep_alive(false);
    return r;
  }
  const AuthOutcome out = authenticate({keys_.get()}, header_value(req, "Authorization"));
  if (out.principal) return *out.principal;
  if (out.failure == AuthFailure::missing) {
    // A client's first, credential-less probe is how MCP clients discover
    // they need auth: counted, neither locked out nor audited one by one.
    ++auth_failures_;
    return unauthorized(req.version(), false);
  }
  if (out.failure == AuthFailure::changing) return changing_user(req.version());
  return refuse_credential(req, client, out.failure, out.credential_id);
}

HttpResponse App::changing_user(unsigned version) {
  // A key whose secret matched, its user in the middle of a change: no
  // failed credential (nothing counted against the address, no record),
  // and no answer yet under the standing that is going.
  HttpResponse r = problem(503, "this key's user is being changed; retry", version);
  r.set(http::field::retry_after, "1");
  return r;
}

HttpResponse App::refuse_credential(const RequestHeader& req, const std::string& client, AuthFailure failure,
                                    const std::string& credential_id) {
  ++auth_failures_;
  const bool locks = lockout_->failure(client, Clock::now());
  json rec = {{"kind", "auth_failure"}, {"tenant", ""}, {"reason", std::string(to_string(failure))},
              {"client_addr", client}, {"path", clean_text(request_path(req), 128)},
              {"user_agent", clean_text(header_value(req, "User-Agent"), 256)}};
  // A key's own failure (expired, revoked, disabled: its secret matched)
  // is the key's; an id named with a wrong secret is only a claim, which
  // anyone can make: kept apart, so nobody adds to a key's failures.
  if (!credential_id.empty()) {
    rec[failure == AuthFailure::unknown ? "claimed_credential" : "credential"] = credential_name(kApiKeyCredential, credential_id);
  }
  audit_->append_best_effort(std::move(rec));
  if (locks) {
    ++lockouts_;
    audit_->append_best_effort({{"kind", "lockout"}, {"tenant", ""}, {"client_addr", client},
                    {"seconds", config_.lockout_window.count()}});
  }
  return unauthorized(req.version(), true);
}

namespace {
// The ledger's intervals: immune to the wall clock being set.
std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void App::note_rate_limited(const Principal& who, std::string_view limit) {
  ++rate_limited_;
  json rec = refusals_.note(who.tenant, who.credential(), who.user, limit, steady_ms());
  if (!rec.is_null()) audit_->append_best_effort(std::move(rec));
}

void App::schedule_second_tick() {
  second_timer_->expires_after(std::chrono::seconds(1));
  second_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    // Counts left pending when the refusals stopped are written now, not
    // at the next refusal (which may never come).
    for (json& rec : refusals_.due(steady_ms())) audit_->append_best_effort(std::move(rec));
    // A user change whose reload failed leaves its keys refused as
    // changing: read the keys again (on the admin thread: it reads the
    // store) until that works, rather than at the next admin change.
    if (keys_->changing()) boost::asio::post(*admin_pool_, [this] { (void)keys_->reload(); });
    schedule_second_tick();
  });
}

bool loopback_origin(std::string_view origin) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!origin.starts_with(scheme)) continue;
    std::string_view host = origin.substr(scheme.size());
    for (std::string_view name : {"localhost", "127.0.0.1", "[::1]"}) {
      if (host == name) return true;
      if (host.starts_with(name) && host.size() > name.size() + 1 && host[name.size()] == ':' &&
          host.substr(name.size() + 1).find_first_not_of("0123456789") == std::string_view::npos &&
          host.size() - name.size() - 1 <= 5) {
        return true;
      }
    }
  }
  return false;
}

bool App::origin_allowed(const std::string& origin) const {
  // Pages served from this machine's loopback are this machine's; any
  // other site must be listed (a page of evil.example whose name was
  // rebound to 127.0.0.1 still says Origin: http://evil.example).
  return loopback_origin(origin) ||
         std::find(config_.allowed_origins.begin(), config_.allowed_origins.end(), origin) !=
             config_.allowed_origins.end();
}

std::variant<Principal, HttpResponse> App::front(const RequestHeader& req, const std::string& client) {
  const std::string path = request_path(req);
  const unsigned version = req.version();
  // Every answer to a request no credential admitted closes the
  // connection, as a 401 does: nobody keeps a connection slot without a
  // key by asking for /healthz (or anything else) now and then.
  const auto unadmitted = [](HttpResponse r) {
    r.keep_alive(false);
    return r;
  };
  if (path == "/healthz" && req.method() == http::verb::get) {
    return unadmitted(json_response(200, {{"status", "ok"}}, version));
  }
  if (path == "/metrics" && req.method() == http::verb::get) {
    // Counters only, but still nothing for other hosts to read.
    if (client != "127.0.0.1" && client != "::1") return unadmitted(problem(403, "metrics are served to loopback only", version));
    return unadmitted(metrics());
  }
  const bool mcp = path == "/mcp" || path == "/mcp/";
  if (!mcp && !path.starts_with("/api/")) return unadmitted(problem(404, "not found", version));

  // Browsers carry an Origin; a page on another site must not drive a
  // local MCP server (DNS rebinding).
  if (const std::string origin = header_value(req, "Origin"); !origin.empty() && !origin_allowed(origin)) {
    return unadmitted(problem(403, "origin not allowed", version));
  }
  return admit(req, client);
}

Admission App::check_header(const RequestHeader& req, const std::string& peer) {
  ++requests_;
  // Behind a trusted proxy the client is the one it names, for everything
  // below: /metrics, lockout, audit.
  const std::string client = forwarded_client(peer, last_header_value(req, "X-Forwarded-For"), config_.trusted_proxies);
  // Everything that needs no body is decided here, before a byte of the
  // body is read: a refusal, or an answer (/healthz, /metrics).
  auto decided = front(req, client);
  if (auto* answer = std::get_if<HttpResponse>(&decided)) return std::move(*answer);
  return std::any(Admitted{std::get<Principal>(std::move(decided)), client});
}

asio::awaitable<HttpReply> App::handle(HttpRequest req, std::any admission) {
  const std::string path = request_path(req);
  const unsigned version = req.version();
  auto* admitted = std::any_cast<Admitted>(&admission);
  if (!admitted) co_return HttpReply{problem(500, "internal error", version), nullptr, nullptr};  // never admitted: refused
  Principal who = std::move(admitted->who);
  const std::string client = std::move(admitted->client);
  // The body took its time to arrive (up to the request timeout): a key
  // revoked (or expired) meanwhile acts no more, refused as at admission.
  // A role changed meanwhile is the one it acts with.
  const auto standing = keys_->current(who.credential_id);
  if (const auto* failure = std::get_if<AuthFailure>(&standing)) {
    if (*failure == AuthFailure::changing) co_return HttpReply{changing_user(version), nullptr, nullptr};
    co_return HttpReply{refuse_credential(req, lockout_block(client), *failure, who.credential_id), nullptr, nullptr};
  }
  who.role = std::get<Role>(standing);
  const bool mcp = path == "/mcp" || path == "/mcp/";
  // The admin API wants the admin scope besides the role, except the
  // caller's own view of the appliance.
  if (!mcp && (who.scopes & kScopeAdmin) == 0 && !(path == "/api/meta" && req.method() == http::verb::get)) {
    co_return HttpReply{problem(403, "this key lacks the admin scope", version), nullptr, nullptr};
  }
  // Every request counts against its tenant: /mcp calls in one bucket; of
  // the admin API the heavy reads and every write (key minting, users,
  // policy pushes) in another, the light reads (GET /api/meta, which any
  // key may call, keys, users, saved queries) in a third, roomier one. The
  // admin API has one thread for every tenant: no tenant's flood holds it.
  // (The policy history is heavy: up to 50 stored versions, each up to a body's size.)
  const bool heavy = !mcp && (path.starts_with("/api/audit") || path.starts_with("/api/traffic") ||
                              req.method() != http::verb::get ||
                              (path == "/api/meta/security" && req.target().find("history") != std::string_view::npos));
  RateLimiter& limiter = mcp ? *mcp_rate_ : heavy ? *admin_rate_ : *admin_light_rate_;
  {
    if (const auto wait = limiter.take(who.tenant, Clock::now()); wait > 0) {
      note_rate_limited(who, mcp ? "mcp" : heavy ? "admin" : "admin_light");
      HttpResponse r = problem(429, "rate limit exceeded", version);
      r.set(http::field::retry_after, std::to_string(wait));
      co_return HttpReply{r, nullptr, nullptr};
    }
  }
  if (mcp) co_return co_await handle_mcp(std::move(req), client, std::move(who));
  // The admin API blocks (durable audit records, the agent's apply): on
  // its own thread, never an I/O thread.
  std::function<HttpResponse()> work = [this, &req, &who] {
    try {
      // Queued behind other tenants' admin work: a revocation may have
      // overtaken this request since it was admitted. It must not then
      // act (mint a spare key, change a policy) with the revoked key.
      // Likewise a role changed since: the request acts with the role its
      // user has now.
      const auto queued = keys_->current(who.credential_id);
      if (const auto* failure = std::get_if<AuthFailure>(&queued)) {
        return *failure == AuthFailure::changing ? changing_user(req.version()) : unauthorized(req.version(), true);
      }
      who.role = std::get<Role>(queued);
      return handle_api(req, who);
    } catch (const std::exception&) {
      return problem(500, "internal error", req.version());
    }
  };
  HttpResponse res = co_await run_on<HttpResponse>(admin_pool_->get_executor(), std::move(work));
  // A large read (a page of the audit log, traffic) counts against the
  // tenant's answer budget like a tool's answer. Only reads: a write's
  // answer says what was done, and is small.
  AnswerBudget::Keep keep;
  if (req.method() == http::verb::get) {
    if (auto kept = answers_->reserve(who.tenant_id, res.body().size())) {
      keep = std::move(*kept);
    } else {
      res = problem(503, kAnswersFull, version);
      res.set(http::field::retry_after, "1");
    }
  }
  co_return HttpReply{std::move(res), nullptr, std::move(keep)};
}

asio::awaitable<HttpReply> App::handle_mcp(HttpRequest req, const std::string& client, Principal who) {
  McpRequest m;
  m.method = std::string(req.method_string());
  m.accept = header_value(req, "Accept");
  m.content_type = header_value(req, "Content-Type");
  m.session_id = header_value(req, "Mcp-Session-Id");
  m.protocol_version = header_value(req, "MCP-Protocol-Version");
  m.user_agent = header_value(req, "User-Agent");
  m.last_event_id = header_value(req, "Last-Event-ID");
  m.client_addr = client;
  m.body = std::move(req.body());
  m.charge = [this, who] {
    if (mcp_rate_->take(who.tenant, Clock::now()) == 0) return true;
    note_rate_limited(who, "mcp");
    return false;
  };
  McpResponse out = co_await mcp_->handle(std::move(m), std::move(who));
  HttpResponse res = make_response(static_cast<unsigned>(out.status), std::move(out.body), out.content_type,
                                   req.version());
  for (auto& [k, v] : out.headers) res.set(k, v);
  co_return HttpReply{std::move(res), std::move(out.stream), std::move(out.keep)};
}

void App::reconcile_now() noexcept {
  // On the admin pool: an exception escaping would end the process.
  try {
    // Each push is audited under its tenant: a version reaching the kernel
    // (or failing to) without a request is a change all the same. Pushes
    // back off (Enforcer::reconcile): these records do too.
    for (const Enforcer::Pushed& p : enforcer_->reconcile()) {
      const json k = to_json(p.outcome);
      json rec = {{"kind", "admin"}, {"tenant", p.tenant.name}, {"user", "mcpd"}, {"action", "reconcile_push"},
                  {"version", p.version}, {"kernel", k["kernel"]}};
      if (!p.outcome.detail.empty()) rec["detail"] = clean_text(p.outcome.detail, 256);
      audit_->append_best_effort(std::move(rec));
    }
  } catch (const std::exception&) {
    // The next tick tries again; GET /api/meta/security reports the state.
  }
}

void App::schedule_reconcile() {
  reconcile_timer_->expires_after(config_.agent_retry);
  reconcile_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    reconcile_now();
    schedule_reconcile();
  });
}

namespace {
// Every 10 s; a tenant's source unused for six of them (a minute) gives
// back its page caches and compiled statements.
constexpr auto kSweepInterval = std::chrono::seconds(10);
constexpr std::uint64_t kSourceIdleSweeps = 6;
}  // namespace

void App::schedule_sweep() {
  sweep_timer_->expires_after(kSweepInterval);
  sweep_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    // Each step on its own: one that fails (out of memory) neither stops
    // the others nor leaves the admin thread; the next sweep still comes.
    const auto step = [this](auto&& f) {
      try {
        f();
      } catch (...) {
        ++sweep_failures_;
      }
    };
    step([this] { sessions_->sweep(); });  // idle sessions end, and their streams with them
    step([this] { mcp_->streams().sweep(); });
    step([this] { sources_->release_idle(kSourceIdleSweeps); });
    step([this] { schedule_sweep(); });
  });
}

bool App::audited(nlohmann::json record) {
  auto done = std::make_shared<std::promise<bool>>();
  auto durable = done->get_future();
  audit_->append(std::move(record), [done](std::optional<std::int64_t> seq) { done->set_value(seq.has_value()); });
  return durable.get();
}

HttpResponse App::metrics() const {
  std::ostringstream m;
  // Every digit of a count (the default 6 would print 1234567 as 1.23457e+06).
  m << std::setprecision(17);
  const auto line = [&](const char* name, const char* help, const char* type, double v) {
    m << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << v << '\n';
  };
  line("sluice_mcpd_requests_total", "HTTP requests handled", "counter", static_cast<double>(requests_.load()));
  line("sluice_mcpd_tool_calls_total", "tools/call requests", "counter", static_cast<double>(counters_.tool_calls.load()));
  line("sluice_mcpd_tool_errors_total", "tools/call results with isError", "counter", static_cast<double>(counters_.tool_errors.load()));
  line("sluice_mcpd_tool_denied_total", "tools/call refused by scope or authorizer", "counter", static_cast<double>(counters_.tool_denied.load()));
  line("sluice_mcpd_auth_failures_total", "failed authentications", "counter", static_cast<double>(auth_failures_.load()));
  line("sluice_mcpd_lockouts_total", "client addresses locked out", "counter", static_cast<double>(lockouts_.load()));
  line("sluice_mcpd_rate_limited_total", "requests refused by a rate limit", "counter", static_cast<double>(rate_limited_.load()));
  line("sluice_mcpd_audit_records_total", "audit records committed", "counter", static_cast<double>(audit_->committed()));
  line("sluice_mcpd_audit_commits_total", "audit transactions committed (records per commit: the group size)", "counter", static_cast<double>(audit_->commits()));
  line("sluice_mcpd_audit_failures_total", "audit records that could not be written", "counter", static_cast<double>(audit_->failed()));
  line("sluice_mcpd_audit_anchor_failures_total", "audit chain heads that could not be written to the anchor file", "counter", static_cast<double>(audit_->anchor_failures()));
  line("sluice_mcpd_audit_journal_dropped_total", "audit records whose journal copy was not sent (queue full or journald refused)", "counter", static_cast<double>(audit_->journal_dropped()));
  line("sluice_mcpd_audit_anchors_append_only", "1 when the anchor file has the append-only attribute", "gauge", audit_->anchors_append_only() ? 1.0 : 0.0);
  line("sluice_mcpd_audit_dropped_total", "best-effort audit records (failed authentications, lockouts, rate-limit refusals, reconcile pushes) dropped while the audit queue was over half full", "counter", static_cast<double>(audit_->dropped()));
  line("sluice_mcpd_sessions", "live MCP sessions", "gauge", static_cast<double>(sessions_->size()));
  line("sluice_mcpd_event_streams", "SSE streams held for resumption", "gauge", static_cast<double>(mcp_->streams().size()));
  line("sluice_mcpd_answer_bytes", "bytes of answers made and not yet all sent (those counted: answer_budget.h)", "gauge", static_cast<double>(answers_->held()));
  line("sluice_mcpd_answers_refused_total", "answers not kept (tool calls, other MCP replies, admin reads): past the answer budget", "counter", static_cast<double>(answers_->refused()));
  line("sluice_mcpd_sweep_failures_total", "steps of the periodic sweep (sessions, streams, idle sources) that failed", "counter", static_cast<double>(sweep_failures_.load()));
  line("sluice_mcpd_connections", "open HTTPS connections", "gauge", http_ ? static_cast<double>(http_->connections()) : 0.0);
  return make_response(200, m.str(), "text/plain; version=0.0.4");
}

}  // namespace sluice::mcpd
