// The MCP conformance suite's fixtures: the tools, resources and prompts
// its server scenarios call by name. Enabled only by `[testing] fixtures`
// (the suite's own configuration); they return fixed content and never
// touch tenant data. Sampling and elicitation exist here only: the data
// tools never ask a client's LLM anything.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tools.h"

namespace sluice::mcpd {
namespace {

namespace asio = boost::asio;
using nlohmann::json;

constexpr char kPng[] =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
constexpr char kWav[] = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";
constexpr char kSchema2020[] = "https://json-schema.org/draft/2020-12/schema";

json empty_schema() { return {{"type", "object"}, {"properties", json::object()}}; }

asio::awaitable<void> pause(std::chrono::milliseconds ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, ms);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

// RFC 5424 severities in MCP's order: a message goes out when at or above
// the session's level.
int severity(const std::string& level) {
  static const char* kLevels[] = {"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"};
  for (int i = 0; i < 8; ++i) {
    if (level == kLevels[i]) return i;
  }
  return 1;
}

// GCC 12 mishandles braced initialiser lists inside coroutines: every
// JSON value below is built by a plain function, the coroutines only call.
ToolOutcome text_outcome(const std::string& text) {
  ToolOutcome o;
  o.result = json{{"content", {{{"type", "text"}, {"text", text}}}}};
  return o;
}

ToolOutcome failed(const std::string& why) {
  ToolOutcome o;
  o.result = text_result(why, true);
  o.status = "error";
  return o;
}

json log_note(const std::string& text) {
  return {{"jsonrpc", "2.0"}, {"method", "notifications/message"},
          {"params", {{"level", "info"}, {"logger", "conformance"}, {"data", text}}}};
}

json progress_note(const json& token, int progress) {
  return {{"jsonrpc", "2.0"}, {"method", "notifications/progress"},
          {"params", {{"progressToken", token}, {"progress", progress}, {"total", 100}}}};
}

json sampling_params(const json& prompt) {
  return {{"messages", {{{"role", "user"}, {"content", {{"type", "text"}, {"text", prompt}}}}}}, {"maxTokens", 100}};
}

json elicitation_params(const std::string& message, const json& schema) {
  return {{"message", message}, {"requestedSchema", schema}};
}

bool capable(const ToolContext& ctx, const char* what) {
  auto it = ctx.client_capabilities.find(what);
  return it != ctx.client_capabilities.end() && *it == true;
}

// The text of a CreateMessageResult, "" when absent.
std::string sampled_text(const json& reply) {
  auto result = reply.find("result");
  if (result == reply.end() || !result->is_object()) return "";
  auto content = result->find("content");
  if (content == result->end() || !content->is_object()) return "";
  auto text = content->find("text");
  return text != content->end() && text->is_string() ? text->get<std::string>() : "";
}

// "action=<action>, content=<content>" of an ElicitResult; nullopt if malformed.
std::optional<std::string> elicited(const json& reply) {
  auto result = reply.find("result");
  if (result == reply.end() || !result->is_object()) return std::nullopt;
  auto action = result->find("action");
  auto content = result->find("content");
  return "action=" + (action != result->end() && action->is_string() ? action->get<std::string>() : "unknown") +
         ", content=" +
         (content != result->end() ? content->dump(-1, ' ', false, json::error_handler_t::replace) : "{}");
}

json string_arg_schema(const char* name) {
  return {{"type", "object"}, {"properties", {{name, {{"type", "string"}}}}}, {"required", {name}}};
}

json contact_schema() {
  return {{"type", "object"},
          {"properties", {{"username", {{"type", "string"}, {"description", "User's response"}}},
                          {"email", {{"type", "string"}, {"description", "User's email address"}}}}},
          {"required", {"username", "email"}}};
}

json defaults_schema() {
  return {{"type", "object"},
          {"properties",
           {{"name", {{"type", "string"}, {"description", "User name"}, {"default", "John Doe"}}},
            {"age", {{"type", "integer"}, {"description", "User age"}, {"default", 30}}},
            {"score", {{"type", "number"}, {"description", "User score"}, {"default", 95.5}}},
            {"status", {{"type", "string"}, {"description", "User status"},
                        {"enum", {"active", "inactive", "pending"}}, {"default", "active"}}},
            {"verified", {{"type", "boolean"}, {"description", "Verification status"}, {"default", true}}}}}};
}

json enums_schema() {
  return {
      {"type", "object"},
      {"properties",
       {{"untitledSingle", {{"type", "string"}, {"enum", {"option1", "option2", "option3"}}}},
        {"titledSingle", {{"type", "string"},
                          {"oneOf", {{{"const", "value1"}, {"title", "First Option"}},
                                     {{"const", "value2"}, {"title", "Second Option"}},
                                     {{"const", "value3"}, {"title", "Third Option"}}}}}},
        {"legacyEnum", {{"type", "string"}, {"enum", {"opt1", "opt2", "opt3"}},
                        {"enumNames", {"Option One", "Option Two", "Option Three"}}}},
        {"untitledMulti", {{"type", "array"}, {"items", {{"type", "string"}, {"enum", {"option1", "option2", "option3"}}}}}},
        {"titledMulti", {{"type", "array"},
                         {"items", {{"anyOf", {{{"const", "value1"}, {"title", "First Choice"}},
                                               {{"const", "value2"}, {"title", "Second Choice"}},
                                               {{"const", "value3"}, {"title", "Third Choice"}}}}}}}}}}};
}

asio::awaitable<ToolOutcome> with_logging(ToolContext& ctx, json) {
  const bool shown = severity("info") >= severity(ctx.log_level);
  if (shown && !co_await ctx.notify(log_note("Tool execution started"))) co_return failed("client gone");
  co_await pause(std::chrono::milliseconds(50));
  if (shown && !co_await ctx.notify(log_note("Tool processing data"))) co_return failed("client gone");
  co_await pause(std::chrono::milliseconds(50));
  if (shown && !co_await ctx.notify(log_note("Tool execution completed"))) co_return failed("client gone");
  co_return text_outcome("Tool with logging executed successfully");
}

asio::awaitable<ToolOutcome> with_progress(ToolContext& ctx, json) {
  const bool wanted = !ctx.progress_token.is_null();
  for (int progress = 0; progress <= 100; progress += 50) {
    if (wanted && !co_await ctx.notify(progress_note(ctx.progress_token, progress))) co_return failed("client gone");
    if (progress < 100) co_await pause(std::chrono::milliseconds(50));
  }
  co_return text_outcome("Tool with progress executed successfully");
}

asio::awaitable<ToolOutcome> sampling(ToolContext& ctx, json args) {
  if (!capable(ctx, "sampling")) co_return failed("the client does not support sampling");
  auto prompt = args.find("prompt");
  if (prompt == args.end() || !prompt->is_string()) co_return failed("\"prompt\" must be a string");
  auto reply = co_await ctx.request("sampling/createMessage", sampling_params(*prompt));
  if (!reply || !reply->contains("result")) co_return failed("sampling failed");
  co_return text_outcome("LLM response: " + sampled_text(*reply));
}

asio::awaitable<ToolOutcome> elicit(ToolContext& ctx, std::string message, json schema, std::string prefix) {
  if (!capable(ctx, "elicitation")) co_return failed("the client does not support elicitation");
  auto reply = co_await ctx.request("elicitation/create", elicitation_params(message, schema));
  if (!reply) co_return failed("elicitation failed");
  auto answer = elicited(*reply);
  if (!answer) co_return failed("elicitation failed");
  co_return text_outcome(prefix + *answer);
}

asio::awaitable<ToolOutcome> elicitation(ToolContext& ctx, json args) {
  auto message = args.find("message");
  if (message == args.end() || !message->is_string()) co_return failed("\"message\" must be a string");
  co_return co_await elicit(ctx, message->get<std::string>(), contact_schema(), "User response: ");
}

asio::awaitable<ToolOutcome> elicitation_defaults(ToolContext& ctx, json) {
  co_return co_await elicit(ctx, "Please review and update the form fields with defaults", defaults_schema(),
                            "Elicitation completed: ");
}

asio::awaitable<ToolOutcome> elicitation_enums(ToolContext& ctx, json) {
  co_return co_await elicit(ctx, "Please select options from the enum fields", enums_schema(), "Elicitation completed: ");
}

// Ends the call's response before answering (SEP-1699 polling): a
// 2025-11-25 client reconnects with GET and Last-Event-ID and gets the
// answer there.
asio::awaitable<ToolOutcome> reconnection(ToolContext& ctx, json) {
  if (ctx.disconnect) ctx.disconnect();
  co_await pause(std::chrono::milliseconds(100));
  co_return text_outcome("Reconnection test completed successfully");
}

}  // namespace

void Toolbox::add_fixture_tools() {
  const auto sync = [this](const char* name, const char* description, json result, bool error = false) {
    ToolDef t{name, "", description, empty_schema(), kScopeRead, true,
              [result, error](const Principal&, const json&) {
                ToolOutcome o;
                o.result = result;
                if (error) o.status = "error";
                return o;
              }};
    tools_.push_back(std::move(t));
  };
  const auto async = [this](const char* name, const char* description, json schema,
                            std::function<asio::awaitable<ToolOutcome>(ToolContext&, json)> run) {
    ToolDef t{name, "", description, std::move(schema), kScopeRead, true, nullptr};
    t.run_async = std::move(run);
    tools_.push_back(std::move(t));
  };
  sync("test_simple_text", "Returns simple text content",
       {{"content", {{{"type", "text"}, {"text", "This is a simple text response for testing."}}}}});
  sync("test_image_content", "Returns image content",
       {{"content", {{{"type", "image"}, {"data", kPng}, {"mimeType", "image/png"}}}}});
  sync("test_audio_content", "Returns audio content",
       {{"content", {{{"type", "audio"}, {"data", kWav}, {"mimeType", "audio/wav"}}}}});
  sync("test_embedded_resource", "Returns an embedded resource",
       {{"content", {{{"type", "resource"},
                      {"resource", {{"uri", "test://embedded-resource"}, {"mimeType", "text/plain"},
                                    {"text", "This is an embedded resource content."}}}}}}});
  sync("test_multiple_content_types", "Returns text, image and resource content",
       {{"content", {{{"type", "text"}, {"text", "Multiple content types test:"}},
                     {{"type", "image"}, {"data", kPng}, {"mimeType", "image/png"}},
                     {{"type", "resource"},
                      {"resource", {{"uri", "test://mixed-content-resource"}, {"mimeType", "application/json"},
                                    {"text", R"({"test":"data","value":123})"}}}}}}});
  sync("test_error_handling", "Always fails with an error result",
       text_result("This tool intentionally returns an error for testing", true), true);
  tools_.push_back({"json_schema_2020_12_tool", "", "Tool with JSON Schema 2020-12 features",
                    {{"$schema", kSchema2020},
                     {"type", "object"},
                     {"$defs", {{"address", {{"type", "object"},
                                             {"properties", {{"street", {{"type", "string"}}}, {"city", {{"type", "string"}}}}}}}}},
                     {"properties", {{"name", {{"type", "string"}}}, {"address", {{"$ref", "#/$defs/address"}}}}},
                     {"additionalProperties", false}},
                    kScopeRead, true,
                    [](const Principal&, const json& args) {
                      ToolOutcome o;
                      o.result = text_result("Received: " + args.dump(-1, ' ', false, json::error_handler_t::replace), false);
                      return o;
                    }});
  async("test_tool_with_logging", "Sends three log notifications while it runs", empty_schema(), with_logging);
  async("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", empty_schema(), with_progress);
  async("test_sampling", "Asks the client's LLM (sampling/createMessage)",
        string_arg_schema("prompt"), sampling);
  async("test_elicitation", "Asks the user (elicitation/create)",
        string_arg_schema("message"), elicitation);
  async("test_elicitation_sep1034_defaults", "Elicitation with defaults for every primitive type", empty_schema(),
        elicitation_defaults);
  async("test_elicitation_sep1330_enums", "Elicitation with the five enum schema forms", empty_schema(),
        elicitation_enums);
  async("test_reconnection", "Answers after a pause (SSE polling)", empty_schema(), reconnection);
}

json Toolbox::fixture_resources() {
  return json::array(
      {{{"uri", "test://static-text"}, {"name", "static-text"}, {"description", "A static text resource"}, {"mimeType", "text/plain"}},
       {{"uri", "test://static-binary"}, {"name", "static-binary"}, {"description", "A static binary resource"}, {"mimeType", "image/png"}},
       {{"uri", "test://watched-resource"}, {"name", "watched-resource"}, {"description", "A resource to subscribe to"}, {"mimeType", "text/plain"}}});
}

json Toolbox::fixture_templates() {
  return json::array({{{"uriTemplate", "test://template/{id}/data"}, {"name", "template"},
                       {"description", "A templated resource"}, {"mimeType", "application/json"}}});
}

std::optional<json> Toolbox::read_fixture(const std::string& uri) {
  const auto text = [&](const std::string& mime, const std::string& body) {
    return json{{"contents", {{{"uri", uri}, {"mimeType", mime}, {"text", body}}}}};
  };
  if (uri == "test://static-text") return text("text/plain", "This is the content of the static text resource.");
  if (uri == "test://watched-resource") return text("text/plain", "Watched resource content.");
  if (uri == "test://static-binary") {
    return json{{"contents", {{{"uri", uri}, {"mimeType", "image/png"}, {"blob", kPng}}}}};
  }
  constexpr std::string_view kPrefix = "test://template/", kSuffix = "/data";
  if (uri.starts_with(kPrefix) && uri.ends_with(kSuffix) && uri.size() > kPrefix.size() + kSuffix.size()) {
    const std::string id = uri.substr(kPrefix.size(), uri.size() - kPrefix.size() - kSuffix.size());
    if (id.size() > 64 || id.find('/') != std::string::npos) return std::nullopt;
    return text("application/json",
                json{{"id", id}, {"templateTest", true}, {"data", "Data for ID: " + id}}.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  return std::nullopt;
}

json Toolbox::fixture_prompts() {
  return json::array(
      {{{"name", "test_simple_prompt"}, {"description", "A simple prompt without arguments"}},
       {{"name", "test_prompt_with_arguments"}, {"description", "A prompt with two arguments"},
        {"arguments", {{{"name", "arg1"}, {"description", "First test argument"}, {"required", true}},
                       {{"name", "arg2"}, {"description", "Second test argument"}, {"required", true}}}}},
       {{"name", "test_prompt_with_embedded_resource"}, {"description", "A prompt embedding a resource"},
        {"arguments", {{{"name", "resourceUri"}, {"description", "URI of the resource to embed"}, {"required", true}}}}},
       {{"name", "test_prompt_with_image"}, {"description", "A prompt with an image"}}});
}

std::variant<std::monostate, std::string, json> Toolbox::get_fixture_prompt(const std::string& name, const json& args) {
  const auto user = [](json content) { return json{{"role", "user"}, {"content", std::move(content)}}; };
  const auto arg = [&](const char* k) -> std::optional<std::string> {
    auto it = args.find(k);
    if (it == args.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  if (name == "test_simple_prompt") {
    return json{{"messages", {user({{"type", "text"}, {"text", "This is a simple prompt for testing."}})}}};
  }
  if (name == "test_prompt_with_arguments") {
    auto a1 = arg("arg1"), a2 = arg("arg2");
    if (!a1 || !a2) return std::string("arguments \"arg1\" and \"arg2\" are required");
    return json{{"messages", {user({{"type", "text"}, {"text", "Prompt with arguments: arg1='" + *a1 + "', arg2='" + *a2 + "'"}})}}};
  }
  if (name == "test_prompt_with_embedded_resource") {
    auto uri = arg("resourceUri");
    if (!uri) return std::string("argument \"resourceUri\" is required");
    return json{{"messages",
                 {user({{"type", "resource"},
                        {"resource", {{"uri", *uri}, {"mimeType", "text/plain"}, {"text", "Embedded resource content for testing."}}}}),
                  user({{"type", "text"}, {"text", "Please process the embedded resource above."}})}}};
  }
  if (name == "test_prompt_with_image") {
    return json{{"messages", {user({{"type", "image"}, {"data", kPng}, {"mimeType", "image/png"}}),
                              user({{"type", "text"}, {"text", "Please analyze the image above."}})}}};
  }
  return std::monostate{};
}

}  // namespace sluice::mcpd
