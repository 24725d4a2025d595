// sluice-mcpd's request handling: origin check, lockout, authentication,
// rate limits, then /mcp (mcp.h), the admin API, /healthz and /metrics.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include "audit.h"
#include "audit_chain.h"
#include "auth.h"
#include "config.h"
#include "enforcement.h"
#include "http_server.h"
#include "mcp.h"
#include "refusals.h"
#include "store.h"
#include "tools.h"

namespace sluice::mcpd {

// Whether an Origin names this machine's loopback (any port).
bool loopback_origin(std::string_view origin);

class App {
 public:
  static Result<std::unique_ptr<App>> open(const McpdConfig& config);
  ~App();
  // Before the io_context goes: no thread of ours runs or posts into it
  // afterwards (admin thread, workers, audit writer stopped and joined).
  // The App itself must outlive the io_context: coroutine frames it
  // destroys still refer to the App's parts.
  void shutdown();

  // The server's HeaderCheck: an answer decided before the body is read
  // (anything a request without a valid key gets), or an Admitted.
  Admission check_header(const RequestHeader& req, const std::string& client_addr);
  // The server's handler, for what check_header admitted.
  boost::asio::awaitable<HttpReply> handle(HttpRequest req, std::any admitted);

  // Local administration (admin socket, sluicectl): a JSON request, a JSON
  // reply. Trusted by peer uid, not by key.
  nlohmann::json local_admin(const nlohmann::json& request);

  Store& store() { return *store_; }
  AuditLog& audit() { return *audit_; }
  ApiKeyAuthenticator& keys() { return *keys_; }
  void set_connections(const HttpServer* http) { http_ = http; }
  // What the operator should hear at start, as lines: a [query]
  // temp_memory_mb lowered to fit the process's cap shared by the
  // workers; tenants whose data source path breaks the rules a source is
  // opened under (SqliteSource::file_within_directory), or whose file is
  // another tenant's too, refused until it is fixed.
  [[nodiscard]] std::vector<std::string> startup_warnings();
  // Where the local socket's requests run: a thread of their own, so an
  // operator's sluicectl (a key revoked in a hurry) never queues behind
  // the admin API's requests or a policy push waiting for the agent.
  boost::asio::any_io_executor local_admin_executor() { return local_pool_->get_executor(); }

 private:
  explicit App(const McpdConfig& c);
  boost::asio::awaitable<HttpReply> handle_mcp(HttpRequest req, const std::string& client, Principal who);
  HttpResponse handle_api(const HttpRequest& req, const Principal& who);
  // 503, Retry-After: the key's user is being changed (AuthFailure::changing).
  static HttpResponse changing_user(unsigned version);
  // The tenant's policy state: what the kernel enforces (asked of the
  // agent unless `known`), what the application layer enforces, egress.
  Result<nlohmann::json> security_state(const Tenant& tenant, const KernelEnforcement* known = nullptr);
  // A new policy version (PUT /api/meta/security, `sluicectl tenant-policy
  // set`): validated, stored as desired, pushed, audited. Status and body.
  std::pair<unsigned, nlohmann::json> change_policy(const Tenant& tenant, std::optional<std::int64_t> user_id,
                                                    const std::string& user, std::string_view text);
  // Re-pushes pending policy versions every agent.retry_ms.
  void schedule_reconcile();
  // Every 10 s: idle sessions and finished streams past retention go.
  void schedule_sweep();
  void reconcile_now() noexcept;
  HttpResponse metrics() const;
  [[nodiscard]] bool origin_allowed(const std::string& origin) const;
  // Appends an admin record and waits until it is durable: an admin
  // change is acknowledged only once audited. (A short block of the
  // calling thread on the audit writer, which never waits on it.)
  bool audited(nlohmann::json record);
  // Revokes a key and every key minted from it (Store::revoke_key), cuts
  // them off at once (refused from now on, whatever a reload does; their
  // sessions and open streams end), and audits it: `record` (kind,
  // tenant, user, action; without a tenant, filed under the key's) with
  // the key and those minted from it added, and a revoke_key_cascade record
  // under each other tenant the cascade reached. An error only when
  // nothing was revoked.
  struct Revoked {
    bool self = false;              // key_id itself was live and is revoked now
    std::vector<std::string> also;  // keys minted from it, revoked with it
    bool audited = false;
    bool cache_refreshed = false;   // the reload after it (the keys are refused either way)
  };
  Result<Revoked> revoke(const std::string& key_id, nlohmann::json record);
  // A key just minted and not to be issued (its record or the cache
  // reload failed): revoked, and refused from now on whatever the store did.
  void discard_key(const std::string& key_id);
  struct UserUpdated {
    User user;                              // as it is now
    std::vector<std::string> revoked;       // keys others had seen the tokens of, revoked with the change
    std::vector<std::string> not_revoked;   // such keys whose revocation failed (still live)
    bool audited = false;
    bool refused = false;                   // a grant whose record could not be written: not made
    // The actor may not (any more) make it: status and why; nothing done.
    std::optional<std::pair<unsigned, std::string>> forbidden;
    bool cache_refreshed = false;           // the reload after it (the keys are refused until then)
  };
  // Sets a user's role and/or disabled flag (nullopt: unchanged), only
  // while the user is still `before`: nullopt when it changed meanwhile or
  // is gone. The change is recorded first (`record`): a grant (a higher
  // role, an enabling) whose record cannot be written is not made. The
  // user's keys are refused until the key cache has been read again, and
  // their sessions end now: a user disabled or given a lower role acts no
  // more as it was. Keys whose tokens someone else has seen go too, where
  // the change would leave that someone a key they could not mint: those
  // the user minted for others when the user is disabled, those it minted
  // for users not below its new role when its role is lowered, those
  // minted for it by a user not above its new role when its role rises.
  // `actor`: the API caller, checked under the lock with the standing and
  // role it has then (refuse_user_change; `forbidden` says why not);
  // nullptr: the operator over the local socket, who may change anyone.
  Result<std::optional<UserUpdated>> update_user(const User& before, std::optional<Role> role,
                                                 std::optional<bool> disabled, nlohmann::json record,
                                                 const Principal* actor = nullptr);
  // What update_user's caller is told when the change did not end well:
  // status and message (the local socket gives the message), or nullopt.
  static std::optional<std::pair<unsigned, std::string>> user_change_problem(
      const Result<std::optional<UserUpdated>>& updated);
  // Authenticates, honouring the lockout; a response when refused.
  std::variant<Principal, HttpResponse> admit(const RequestHeader& req, const std::string& client);
  // A credential that failed (not a missing one): counted towards the
  // client's lockout, audited, answered 401 (closing).
  HttpResponse refuse_credential(const RequestHeader& req, const std::string& client, AuthFailure failure,
                                 const std::string& credential_id);
  // What the header alone decides: /healthz, /metrics, 404, a refused
  // Origin, then admission (lockout, credential). A principal to go on with.
  std::variant<Principal, HttpResponse> front(const RequestHeader& req, const std::string& client);
  // Who check_header admitted, and from where (the forwarded client).
  struct Admitted {
    Principal who;
    std::string client;
  };
  // A request (or a batch's message) of `who` refused by a rate limit:
  // counted, and audited best-effort as `rate_limited` records folded per
  // tenant (see RefusalLedger).
  // `limit`: "mcp", "admin" or "admin_light".
  void note_rate_limited(const Principal& who, std::string_view limit);
  // Once a second, on timer_pool_: the folded refusal records due, and a
  // key-cache reload while a user change's own failed (keys held).
  void schedule_second_tick();

  McpdConfig config_;
  std::optional<DatabaseLock> lock_;  // declared first: released last
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<ApiKeyAuthenticator> keys_;
  std::unique_ptr<Lockout> lockout_;
  std::unique_ptr<RateLimiter> mcp_rate_, admin_rate_, admin_light_rate_;
  std::unique_ptr<Sessions> sessions_;
  std::unique_ptr<Sources> sources_;
  std::unique_ptr<Toolbox> toolbox_;
  McpCounters counters_;
  std::unique_ptr<AnswerBudget> answers_;  // before mcp_, which uses it
  std::atomic<std::uint64_t> sweep_failures_{0};
  std::unique_ptr<boost::asio::thread_pool> workers_;
  std::unique_ptr<Enforcer> enforcer_;
  // One thread for the admin API (its policy pushes included) and the
  // session sweep: they block (durable audit, the agent's apply) and must
  // not hold an I/O thread.
  std::unique_ptr<boost::asio::thread_pool> admin_pool_;
  // One for the local admin socket (local_admin_executor).
  std::unique_ptr<boost::asio::thread_pool> local_pool_;
  // One for timers that must keep time whatever the admin thread waits
  // for (an agent, a durable record): schedule_second_tick.
  std::unique_ptr<boost::asio::thread_pool> timer_pool_;
  // One for the policy reconciliation (with an agent configured): a round
  // may wait on a silent agent for several timeout_ms.
  std::unique_ptr<boost::asio::thread_pool> reconcile_pool_;
  // A policy version is stored and pushed under it, so versions reach the
  // agent in the order they were stored, whichever thread changes them.
  std::mutex policy_mu_;
  // Key mints and user changes, one at a time (the admin API's thread and
  // the local socket's): a mint's check of its target, and the keys a user
  // change revokes, each see the other whole.
  std::mutex users_mu_;
  std::unique_ptr<boost::asio::steady_timer> reconcile_timer_;
  std::unique_ptr<boost::asio::steady_timer> sweep_timer_;
  std::unique_ptr<McpServer> mcp_;
  const HttpServer* http_ = nullptr;
  std::atomic<std::uint64_t> auth_failures_{0}, lockouts_{0}, rate_limited_{0}, requests_{0};
  RefusalLedger refusals_;
  std::unique_ptr<boost::asio::steady_timer> second_timer_;
  std::size_t temp_budget_ = 0, schema_memory_ = 0, workers_count_ = 0;  // as App::open set them, for startup_warnings
};

}  // namespace sluice::mcpd
