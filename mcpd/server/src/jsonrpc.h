// JSON-RPC 2.0 as MCP uses it: message classification and error replies
// with the codes of the specification.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sluice::mcpd::rpc {

inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
// Implementation-defined server errors (-32000 to -32099).
inline constexpr int kServerError = -32000;

enum class Kind { request, notification, response, invalid };

struct Message {
  Kind kind = Kind::invalid;
  nlohmann::json id;  // string or integer for requests; null otherwise
  std::string method;
  // The request's params object (an empty one when absent); points into
  // the classified value, which must outlive the message.
  const nlohmann::json* params = &empty_params();
  // Params given as an array: a valid JSON-RPC request (or notification),
  // but every MCP method takes an object (-32602; `params` stays empty).
  bool params_array = false;
  std::string problem;  // why it is invalid

  static const nlohmann::json& empty_params();
};

// Classifies one decoded JSON value. Strict: "jsonrpc" must be "2.0", an
// id must be a string or an integer, params a structured value (an object,
// or an array: params_array) when present, a response needs exactly one of
// result/error.
Message classify(const nlohmann::json& v);

nlohmann::json error(const nlohmann::json& id, int code, const std::string& message,
                     const nlohmann::json& data = nullptr);
nlohmann::json result(const nlohmann::json& id, nlohmann::json result);
// A response's text around an already serialised result.
std::string result_text(const nlohmann::json& id, std::string_view result_json);

}  // namespace sluice::mcpd::rpc
