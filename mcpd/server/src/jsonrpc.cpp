#include "jsonrpc.h"

namespace sluice::mcpd::rpc {

Message classify(const nlohmann::json& v) {
  Message m;
  const auto invalid = [&](std::string why) {
    m.kind = Kind::invalid;
    m.problem = std::move(why);
    return m;
  };
  if (!v.is_object()) return invalid("a JSON-RPC message must be an object");
  auto version = v.find("jsonrpc");
  if (version == v.end() || *version != "2.0") return invalid("\"jsonrpc\" must be \"2.0\"");
  auto id = v.find("id");
  // An error response whose request's id could not be read has none, or
  // a null one (JSON-RPC 2.0 section 5; MCP 2025-11-25 "id?"); nothing else may.
  const bool no_id = id == v.end() || id->is_null();
  if (!no_id) {
    if (!id->is_string() && !id->is_number_integer()) {
      return invalid("\"id\" must be a string or an integer");
    }
    m.id = *id;
  }
  auto method = v.find("method");
  if (method != v.end()) {
    if (id != v.end() && id->is_null()) return invalid("\"id\" must be a string or an integer");
    if (!method->is_string()) return invalid("\"method\" must be a string");
    m.method = method->get<std::string>();
    auto params = v.find("params");
    if (params != v.end()) {
      if (params->is_array()) {
        m.params_array = true;
      } else if (!params->is_object()) {
        return invalid("\"params\" must be an object or an array");
      } else {
        m.params = &*params;
      }
    }
    if (v.contains("result") || v.contains("error")) return invalid("a request has no result");
    m.kind = id == v.end() ? Kind::notification : Kind::request;
    return m;
  }
  const bool has_result = v.contains("result"), has_error = v.contains("error");
  if (has_result == has_error || (no_id && !has_error)) return invalid("neither a request nor a response");
  m.kind = Kind::response;
  return m;
}

nlohmann::json error(const nlohmann::json& id, int code, const std::string& message,
                     const nlohmann::json& data) {
  nlohmann::json e = {{"code", code}, {"message", message}};
  if (!data.is_null()) e["data"] = data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(e)}};
}

nlohmann::json result(const nlohmann::json& id, nlohmann::json r) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(r)}};
}

std::string result_text(const nlohmann::json& id, std::string_view result_json) {
  std::string out;
  out.reserve(result_json.size() + 48);
  out += R"({"id":)";
  out += id.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += R"(,"jsonrpc":"2.0","result":)";
  out += result_json;
  out += '}';
  return out;
}

const nlohmann::json& Message::empty_params() {
  static const nlohmann::json empty = nlohmann::json::object();
  return empty;
}

}  // namespace sluice::mcpd::rpc
