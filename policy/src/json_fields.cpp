#include "json_fields.h"

#include <algorithm>

namespace sluice::policy::detail {

std::string path_key(std::string_view key) {
  const bool plain = !key.empty() && key.size() <= 64 &&
                     std::all_of(key.begin(), key.end(), [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '_' || c == '-';
                     });
  return plain ? std::string(key) : quote(key);
}

std::string join_path(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return path_key(key);
  return std::string(prefix) + "." + path_key(key);
}

std::string_view type_name(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

void check_known_fields(const nlohmann::json& object, std::initializer_list<std::string_view> known,
                        std::string_view prefix, ErrorSink& errors) {
  std::string expected;
  for (std::string_view k : known) expected += (expected.empty() ? "" : ", ") + std::string(k);
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      errors.add(Error{ErrorCode::unknown_field, join_path(prefix, key),
                       "unknown field (expected one of: " + expected + ")"});
    }
  }
}

bool read_required_bool(const nlohmann::json& object, std::string_view key,
                        std::string_view prefix, ErrorSink& errors) {
  const auto it = object.find(key);
  if (it == object.end()) {
    errors.add(Error{ErrorCode::missing_field, join_path(prefix, key), "required field missing"});
    return false;
  }
  if (!it->is_boolean()) {
    errors.add(Error{ErrorCode::wrong_type, join_path(prefix, key),
                     "expected true or false, got " + std::string(type_name(*it))});
    return false;
  }
  return it->get<bool>();
}

}  // namespace sluice::policy::detail
