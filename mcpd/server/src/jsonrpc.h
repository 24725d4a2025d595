// JSON-RPC 2.0 as MCP uses it: message classification and error replies
// with the codes of the specification.
#pragma once

#include <optional>
#include <string>

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
  nlohmann::json params;  // object or null
  std::string problem;    // why it is invalid
};

// Classifies one decoded JSON value. Strict: "jsonrpc" must be "2.0", an
// id must be a string or an integer, params an object when present, a
// response needs exactly one of result/error.
Message classify(const nlohmann::json& v);

nlohmann::json error(const nlohmann::json& id, int code, const std::string& message,
                     const nlohmann::json& data = nullptr);
nlohmann::json result(const nlohmann::json& id, nlohmann::json result);

}  // namespace sluice::mcpd::rpc
