// Helpers for reading a JSON object field by field with precise errors.
// Private to the library.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sluice/policy/error.h"

namespace sluice::policy::detail {

// A key as it may appear in an error path: itself when short and plain,
// otherwise a bounded quote.
std::string path_key(std::string_view key);

std::string_view type_name(const nlohmann::json& value);

// Reports every key of `object` not in `known` as unknown_field.
void check_known_fields(const nlohmann::json& object, std::initializer_list<std::string_view> known,
                        std::string_view prefix, ErrorSink& errors);

// Reads a required boolean; reports missing_field / wrong_type.
bool read_required_bool(const nlohmann::json& object, std::string_view key,
                        std::string_view prefix, ErrorSink& errors);

std::string join_path(std::string_view prefix, std::string_view key);

}  // namespace sluice::policy::detail

namespace sluice::policy::detail {

// Calls `each(index_path, text)` for every element of the array at
// object[key] after checking it is an array of strings with at most `max`
// elements. Returns false when the field is absent or null (the caller
// decides whether that is an error); true otherwise, even when elements
// were reported as errors.
template <class Each>
bool for_each_string(const nlohmann::json& object, std::string_view key, std::string_view prefix,
                     std::size_t max, ErrorSink& errors, Each&& each) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return false;
  const std::string path = join_path(prefix, key);
  if (!it->is_array()) {
    errors.add(Error{ErrorCode::wrong_type, path,
                     "expected an array of strings, got " + std::string(type_name(*it))});
    return true;
  }
  if (it->size() > max) {
    errors.add(Error{ErrorCode::too_many, path,
                     std::to_string(it->size()) + " entries; at most " + std::to_string(max) +
                         " are allowed"});
    return true;
  }
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& element = (*it)[i];
    const std::string element_path = path + "[" + std::to_string(i) + "]";
    if (!element.is_string()) {
      errors.add(Error{ErrorCode::wrong_type, element_path,
                       "expected a string, got " + std::string(type_name(element))});
      continue;
    }
    each(element_path, element.get_ref<const std::string&>());
  }
  return true;
}

}  // namespace sluice::policy::detail
