// MCP over Streamable HTTP (revisions 2025-11-25, 2025-06-18, 2025-03-26):
// sessions bound to the credential that created them, protocol version
// negotiation, JSON-RPC dispatch, and an audit record for every
// tools/call written before its answer leaves. HTTP-agnostic: the server
// (http.h) hands over the few headers that matter.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "answer_budget.h"
#include "audit.h"
#include "event_stream.h"
#include "fair_pool.h"
#include "identity.h"
#include "keys.h"
#include "offload.h"
#include "tools.h"

namespace sluice::mcpd {

inline constexpr const char* kProtocolVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};
inline constexpr char kLatestProtocol[] = "2025-11-25";
bool supported_protocol(const std::string& v);

struct McpRequest {
  std::string method;  // HTTP method
  std::string accept;
  std::string content_type;
  std::string session_id;
  std::string protocol_version;  // MCP-Protocol-Version, "" when absent
  std::string user_agent;
  std::string client_addr;
  std::string last_event_id;  // Last-Event-ID, "" when absent
  std::string body;
  // Charges the rate limit for each message of a batch after the first
  // (the HTTP layer charged the request itself); false when over it.
  std::function<bool()> charge;
};

struct McpResponse {
  int status = 200;
  std::string content_type;  // "" for no body
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<StreamReader> stream;  // set: the body is these SSE events
  // Kept until the body is written: the answers' hold on the answer budget.
  std::shared_ptr<const void> keep;
};

// What a session is, fixed at initialize (the log level aside, which
// Sessions replaces with a new copy): shared by its calls, never copied
// per call.
struct Session {
  std::string id;
  std::string credential;  // credential_name(type, id): what it is bound to
  std::int64_t tenant_id = 0;
  std::string protocol;
  nlohmann::json client_info;
  std::string client_info_text;  // client_info as JSON text, for audit records
  nlohmann::json client_capabilities;  // {"sampling": bool, "elicitation": bool, "roots": bool}
  std::string log_level = "info";
  // Set when the session ends (its key revoked, deleted, idle, evicted): a
  // call queued for a worker before then does not run after it.
  // Shared by its copies (a streamed call keeps one).
  std::shared_ptr<std::atomic<bool>> ended = std::make_shared<std::atomic<bool>>(false);
};

class Sessions {
 public:
  Sessions(std::size_t max, std::chrono::seconds idle) : max_(max), idle_(idle) {}
  std::shared_ptr<const Session> create(const Principal& who, const std::string& protocol,
                                       nlohmann::json client_info, nlohmann::json client_capabilities);
  // `credential` is a credential_name (Principal::credential()).
  // Null: unknown, expired, or bound to another credential (all 404).
  // `then`, when set, runs with the session while it cannot end (under the
  // sessions' lock: it must not call back into Sessions): what it makes
  // for the session is dropped by on_end's hook, never left behind.
  std::shared_ptr<const Session> use(const std::string& id, const std::string& credential,
                                     const std::function<void(const Session&)>& then = nullptr);
  bool set_log_level(const std::string& id, const std::string& level);
  bool remove(const std::string& id, const std::string& credential);
  // Ends the sessions idle past the limit.
  void sweep();
  // Ends every session of a credential (revoked): its open streams end too.
  void end_credential(const std::string& credential);
  // Called with a session's id when it ends, however (under the sessions'
  // lock: it must not call back into Sessions).
  void on_end(std::function<void(const std::string&)> hook) { on_end_ = std::move(hook); }
  [[nodiscard]] std::size_t size() const;

 private:
  static constexpr std::size_t kPerCredential = 32;
  struct Entry {
    std::shared_ptr<const Session> session;
    std::chrono::steady_clock::time_point last_used;
    std::list<std::string>::iterator lru;
    std::list<std::string>::iterator own_lru;     // in its credential's list
    std::list<std::string>::iterator tenant_lru;  // in its tenant's list
  };
  using Map = std::unordered_map<std::string, Entry>;
  void erase_locked(Map::iterator it);
  [[nodiscard]] bool idle_past(const Entry& e, std::chrono::steady_clock::time_point now) const {
    return now - e.last_used > idle_;
  }
  // The session `id` if it is live; one idle past its time has ended (the
  // sweep had not come to it yet) and goes now. map_.end() for neither.
  Map::iterator find_live_locked(const std::string& id, std::chrono::steady_clock::time_point now);

  std::size_t max_;
  std::chrono::seconds idle_;
  mutable std::mutex mu_;
  Map map_;
  std::list<std::string> lru_;  // most recent first
  // Each credential's sessions, most recent first: its oldest is found at
  // once when it reaches kPerCredential (not by walking everyone's).
  std::unordered_map<std::string, std::list<std::string>> per_credential_;
  // Each tenant's, most recent first: when the table is full, the tenant
  // holding the most sessions loses its oldest, so a tenant that opens
  // sessions by the thousand pushes out its own, not everyone's.
  std::unordered_map<std::int64_t, std::list<std::string>> per_tenant_;
  std::function<void(const std::string&)> on_end_;
};

struct McpCounters {
  std::atomic<std::uint64_t> tool_calls{0}, tool_errors{0}, tool_denied{0}, audit_failures{0};
};

class McpServer {
 public:
  // `workers` (a pool of `worker_threads`) run the data tools: a query
  // may take up to its timeout, and must not hold an I/O thread that long.
  // Tenants take turns at them (FairPool).
  // `digest_key`: the key of the arguments digest in tool-call records
  // (load_digest_key). `answers`: what tool answers may hold until written.
  McpServer(Toolbox& tools, Sessions& sessions, AuditLog& audit, McpCounters& counters,
            boost::asio::any_io_executor workers, std::size_t worker_threads, const KeyHash& digest_key,
            AnswerBudget& answers, StreamLimits stream_limits = {})
      : tools_(tools),
        sessions_(sessions),
        audit_(audit),
        counters_(counters),
        fair_(std::move(workers), worker_threads),
        digest_key_(digest_key),
        answers_(answers),
        streams_(stream_limits) {}

  boost::asio::awaitable<McpResponse> handle(McpRequest req, Principal who);
  // Shutting down: every running call's query stops at its next check,
  // and no call waiting for a worker starts any more.
  void cancel_all();
  // The tenant's resources changed (a saved query was stored or deleted):
  // its sessions' GET streams get notifications/resources/list_changed.
  void resources_changed(std::int64_t tenant_id);
  // A session ended (its key revoked, deleted, idle, evicted): its streams
  // end, and its calls running on a worker stop (their queries cancelled).
  void session_ended(const std::string& id);
  StreamRegistry& streams() { return streams_; }

 private:
  boost::asio::awaitable<McpResponse> post(const McpRequest& req, const Principal& who);
  // GET: the session's stream of server-initiated messages, or with
  // Last-Event-ID the rest of the stream that event belongs to.
  McpResponse get(const McpRequest& req, const Principal& who, const boost::asio::any_io_executor& ex);
  // What a reply did with the answer budget, when its method counts it
  // itself (a resource read: before its audit record, which then says
  // whether it was answered); otherwise the caller counts the reply.
  struct Budgeted {
    bool counted = false;
    bool refused = false;
    AnswerBudget::Keep keep;
    std::string text;  // set with `counted`: the reply as text (made once)
  };
  // Counts a reply's `text` against the answer budget (whatever its size
  // `in_batch`), its hold into `keep`; when it does not fit, `text` becomes
  // the -32000 error saying so, and false.
  bool hold_reply(std::int64_t tenant, const nlohmann::json& id, bool in_batch, std::string& text,
                  AnswerBudget::Keep& keep);
  // One JSON-RPC request of an initialized session; the reply object.
  // `in_batch`: its answer counts whatever its size.
  boost::asio::awaitable<nlohmann::json> dispatch(const nlohmann::json& id, const std::string& method,
                                                  const nlohmann::json& params, const Session& s,
                                                  const Principal& who, const McpRequest& req, bool in_batch,
                                                  Budgeted& budget);
  // tools/call: the response's JSON text (a data answer is written as
  // text from the start, never as a tree) and its hold on the answer
  // budget, to keep until it is written; `refused`: the budget could not
  // hold it. `in_batch`: counted whatever its size. `skip`: not run, only
  // audited (`not_run`, with its detail) and answered with its message.
  struct ToolAnswer {
    std::string text;
    AnswerBudget::Keep keep;
    bool refused = false;
  };
  struct Skip {
    const char* message;
    const char* detail;
  };
  boost::asio::awaitable<ToolAnswer> call_tool(const nlohmann::json& id, const nlohmann::json& params,
                                                const Session& s, const Principal& who,
                                                const McpRequest& req, bool in_batch,
                                                std::optional<Skip> skip = std::nullopt);
  nlohmann::json initialize(const nlohmann::json& id, const nlohmann::json& params,
                            const Principal& who, McpResponse& out);
  std::vector<const ToolDef*> visible_tools(const Principal& who) const;
  // Runs `work` on a worker thread; the coroutine waits on its own executor.
  template <class T>
  boost::asio::awaitable<T> on_worker(std::int64_t tenant, std::function<T()> work);
  // A tool that talks to the client runs on its own, its answer streamed.
  boost::asio::awaitable<void> run_streamed(std::shared_ptr<EventStream> stream, const ToolDef* tool,
                                            nlohmann::json id, nlohmann::json params, Session s, Principal who,
                                            McpRequest req);
  boost::asio::awaitable<std::optional<nlohmann::json>> ask_client(std::shared_ptr<EventStream> stream,
                                                                   std::string session, std::string method,
                                                                   nlohmann::json params);
  // A client's answer to one of our requests; false when none is awaited.
  bool deliver(const std::string& session, const nlohmann::json& message);
  // notifications/cancelled: flags the session's request `request_id` if
  // it is still running (a query stops at its next progress check).
  void cancel(const std::string& session, const nlohmann::json& request_id);

  // A running tools/call that notifications/cancelled can reach; removed
  // from the registry when destroyed.
  class InFlight {
   public:
    InFlight(McpServer& server, std::string key);
    ~InFlight();
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    [[nodiscard]] const std::atomic<bool>* flag() const { return flag_.get(); }
    [[nodiscard]] bool cancelled() const { return flag_->load(); }

   private:
    McpServer& server_;
    std::string key_;
    std::shared_ptr<std::atomic<bool>> flag_;
  };
  AuditEntry audit_record(const Principal& who, const Session& s, const McpRequest& req,
                          const std::string& tool, const nlohmann::json& args, const ToolOutcome& outcome,
                          std::chrono::steady_clock::time_point started) const;

  struct PendingReply {
    explicit PendingReply(const boost::asio::any_io_executor& ex) : answer(ex, 1) {}
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, nlohmann::json)> answer;
  };

  Toolbox& tools_;
  Sessions& sessions_;
  AuditLog& audit_;
  McpCounters& counters_;
  FairPool fair_;  // the workers, taken in turns by tenant
  KeyHash digest_key_;
  AnswerBudget& answers_;
  mutable DigestNonces nonces_;  // one per record (audit_record is const)
  StreamRegistry streams_;
  std::mutex pending_mu_;
  std::unordered_map<std::string, std::shared_ptr<PendingReply>> pending_;  // "<session>|<id>"
  std::mutex running_mu_;
  // "<session>|<id as JSON>": running tools/calls, each with its cancel flag.
  std::unordered_map<std::string, std::shared_ptr<std::atomic<bool>>> running_;
  std::atomic<std::uint64_t> next_request_{1};
};

template <class T>
boost::asio::awaitable<T> McpServer::on_worker(std::int64_t tenant, std::function<T()> work) {
  return run_via<T>([this, tenant](std::function<void()> f) { fair_.post(tenant, std::move(f)); }, std::move(work));
}


}  // namespace sluice::mcpd
