// The MCP surface over a tenant's data: tools, resources and prompts. Pure
// request -> result functions; the protocol layer (mcp.h) decides who may
// call what and audits every call.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "identity.h"
#include "sqlite_source.h"
#include "store.h"

namespace sluice::mcpd {

// What a tool call produced: the CallToolResult, and for the audit log its
// status ("ok", "error", "denied", "timeout"), the rows returned and an
// unsanitised detail (never sent to the client).
struct ToolOutcome {
  nlohmann::json result;
  std::string status = "ok";
  std::int64_t rows = 0;
  std::string detail;
  // Set instead of `result` by a successful data tool: its answer as JSON
  // text, sent both as the text block and as structuredContent (written
  // once, never parsed back into a tree).
  std::string body;
};

// The outcome's CallToolResult as JSON text; without structuredContent
// when `structured` is false (protocol 2025-03-26 has none).
std::string result_text(const ToolOutcome& outcome, bool structured);

// What a tool that talks to the client during a call may do: its
// answer then travels as an SSE stream with notifications (and requests
// to the client) before it.
struct ToolContext {
  Principal who;
  nlohmann::json progress_token;       // null: the caller asked for no progress
  nlohmann::json client_capabilities;  // {"sampling": bool, "elicitation": bool, "roots": bool}
  std::string log_level;               // the session's logging/setLevel
  // Sends a notification on the call's stream; false once the client is gone.
  std::function<boost::asio::awaitable<bool>(nlohmann::json notification)> notify;
  // Asks the client (sampling/createMessage, elicitation/create) and waits,
  // bounded, for its whole JSON-RPC response; nullopt when none came.
  std::function<boost::asio::awaitable<std::optional<nlohmann::json>>(std::string method, nlohmann::json params)>
      request;
  // Ends the HTTP response carrying the call's stream now; a client that
  // polls (protocol 2025-11-25) resumes it with GET and Last-Event-ID.
  // Nothing happens for older clients.
  std::function<void()> disconnect;
};

struct ToolDef {
  std::string name;
  std::string title;
  std::string description;
  nlohmann::json input_schema;
  unsigned scope = kScopeRead;  // the key scope needed to see and call it
  bool read_only = true;
  std::function<ToolOutcome(const Principal&, const nlohmann::json& args)> run;
  // Set instead of `run` for tools that talk to the client during a call.
  std::function<boost::asio::awaitable<ToolOutcome>(ToolContext&, nlohmann::json args)> run_async = {};
};

// Each tenant's data source, opened read-only on first use.
class Sources {
 public:
  // `schema_budget`: what the parsed schemas of all open sources may take
  // in SQLite's heap together (each source's SqliteSource::schema_footprint).
  static constexpr std::size_t kSchemaBudget = std::size_t{256} << 20;
  Sources(Store& store, QueryLimits limits, std::chrono::milliseconds remember_failure = std::chrono::seconds(5),
          std::size_t schema_budget = kSchemaBudget)
      : store_(store), limits_(limits), remember_failure_(remember_failure), schema_budget_(schema_budget) {}
  // The tenant's source, opened on first use, and again once another file
  // was renamed over its path (SqliteSource::path_state; until the new one
  // opens, the old one answers) or the file was deleted (then no more). Opening (the schema read may wait for a
  // writer's lock up to the query timeout) holds up only that tenant's
  // callers, each at most the query timeout ("busy" after it); a failure is
  // remembered for `remember_failure` (a missing file no longer than the
  // schema_check_interval), not retried by every call meanwhile.
  DataResult<std::shared_ptr<SqliteSource>> of(std::int64_t tenant_id);

  // Called every few seconds: the sources not handed out since the call
  // `idle_calls` calls ago give back their connections' page caches and
  // compiled statements (SqliteSource::release_memory), once until used
  // again. Memory then follows the tenants in use, not every tenant ever
  // read. Counting calls, not reading a clock, keeps of() as cheap as it was.
  // Also drops every retired source (SqliteSource::retired: its schema
  // grew too large in place), used or not: only closing its connections
  // gives that memory back; and, while the schemas of all open sources
  // take more than the schema budget (grown in place since they opened),
  // retires and drops the largest.
  void release_idle(std::uint64_t idle_calls);

 private:
  struct Slot {
    std::atomic<std::uint64_t> used_in{0};  // the release_idle round of its last of()
    std::uint64_t released_in = 0;          // the round it last gave back memory in (release_idle's)
    std::timed_mutex mu;  // held while opening; guards `failed`
    std::mutex source_mu;  // `source` only, never while opening
    std::shared_ptr<SqliteSource> source;
    std::optional<DataError> failed;
    std::chrono::steady_clock::time_point failed_at;
    std::chrono::milliseconds failed_for{0};  // how long `failed` is answered without trying again
  };
  Store& store_;
  QueryLimits limits_;
  std::chrono::milliseconds remember_failure_;
  std::size_t schema_budget_;
  std::atomic<std::uint64_t> round_{0};  // release_idle's calls
  std::mutex release_mu_;                // one release_idle at a time
  std::mutex mu_;  // the map only, never while opening
  std::mutex claim_mu_;  // a file checked as no other tenant's and taken, at once
  std::map<std::int64_t, std::shared_ptr<Slot>> slots_;

  // Why `file` may not be this tenant's (a tenant's file is its own), or
  // nothing: another tenant's path leads there (within its directory)...
  std::optional<std::string> named_elsewhere(std::int64_t tenant_id, SqliteSource::FileId file);
  // ...or another tenant has it open (under claim_mu_).
  std::optional<std::string> open_elsewhere(std::int64_t tenant_id, SqliteSource::FileId file);
  // The schema footprints of every open source but `except`'s, summed.
  std::size_t schemas_held(std::int64_t except);
  // Closes idle sources (none used since the last sweep began; least
  // recently used first) until `needed` more fits the schema budget beside
  // the others; whether it does. Under claim_mu_.
  bool make_room(std::int64_t tenant_id, std::size_t needed);
};

// The tenant other than `except` whose path names `file` within its own
// directory (SqliteSource::file_within_directory), if any; none for {}.
const Tenant* tenant_with_file(const std::vector<Tenant>& tenants, SqliteSource::FileId file, std::int64_t except);

class Toolbox {
 public:
  Toolbox(Store& store, Sources& sources, bool fixtures);

  [[nodiscard]] const std::vector<ToolDef>& tools() const { return tools_; }
  [[nodiscard]] const ToolDef* find(const std::string& name) const;

  // Resources: entities and saved queries of the caller's tenant.
  nlohmann::json list_resources(const Principal& p);
  nlohmann::json resource_templates() const;
  // nullopt: no such resource.
  std::optional<nlohmann::json> read_resource(const Principal& p, const std::string& uri);

  nlohmann::json list_prompts() const;
  // completion/complete: suggestions for a prompt or resource-template
  // argument; nullopt when the reference is unknown.
  std::optional<nlohmann::json> complete(const Principal& p, const nlohmann::json& params);
  [[nodiscard]] bool fixtures() const { return fixtures_; }
  // nullopt: unknown prompt; a string: the arguments are invalid (why).
  std::variant<std::monostate, std::string, nlohmann::json> get_prompt(const std::string& name,
                                                                       const nlohmann::json& args) const;

 private:
  void add_data_tools();
  void add_fixture_tools();
  // The conformance fixtures' resources and prompts (fixtures.cpp).
  static nlohmann::json fixture_resources();
  static nlohmann::json fixture_templates();
  static std::optional<nlohmann::json> read_fixture(const std::string& uri);
  static nlohmann::json fixture_prompts();
  static std::variant<std::monostate, std::string, nlohmann::json> get_fixture_prompt(
      const std::string& name, const nlohmann::json& args);

  Store& store_;
  Sources& sources_;
  bool fixtures_ = false;
  std::vector<ToolDef> tools_;
};

// A CallToolResult with one text block (and structured content).
nlohmann::json text_result(const std::string& text, bool is_error,
                           const nlohmann::json& structured = nullptr);

// A tool that failed by a bug, not by the caller's doing: audited with
// `detail`, answered with nothing but "internal error".
ToolOutcome internal_error(const std::string& detail);
// A tool's answer the answer budget could not hold (answer_budget.h):
// the caller is told to retry; the record says how the call that ran
// (`ran`) ended and how large its answer was.
ToolOutcome answer_not_kept(std::size_t bytes, const ToolOutcome& ran);

}  // namespace sluice::mcpd
