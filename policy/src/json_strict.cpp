// A validating first pass over JSON text. nlohmann's DOM parser keeps the
// last of duplicate keys without a word and has no nesting bound; this pass
// refuses both before the DOM is built.
#include <string>
#include <unordered_set>
#include <vector>

#include "sluice/policy/policy.h"

namespace sluice::policy {
namespace {

using Json = nlohmann::json;

class StrictSax final : public nlohmann::json_sax<Json> {
 public:
  explicit StrictSax(std::size_t max_values) : values_left_(max_values) {}
  std::optional<Error> error;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }

  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return value() && enter();
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      error = Error{ErrorCode::duplicate_key, "",
                    "duplicate key " + quote(k) + " in a JSON object"};
      return false;
    }
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return value() && enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }

  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    // what() is "[json.exception.parse_error.101] parse error at line 1,
    // column 4: syntax error ...; last read: '<token>'". Keep the middle;
    // the token is untrusted input and is quoted with a bound instead.
    std::string what = ex.what();
    if (auto close = what.find("] "); close != std::string::npos) what.erase(0, close + 2);
    if (auto last = what.find("; last read"); last != std::string::npos) what.erase(last);
    error = Error{ErrorCode::syntax, "",
                  "invalid JSON at byte " + std::to_string(position) + ": " + what +
                      (last_token.empty() ? "" : " near " + quote(last_token))};
    return false;
  }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) {
      error = Error{ErrorCode::too_large, "",
                    "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
      return false;
    }
    return true;
  }

  bool value() {
    if (values_left_ == 0) {
      error = Error{ErrorCode::too_large, "", "JSON with more values than allowed"};
      return false;
    }
    --values_left_;
    return true;
  }

  int depth_ = 0;
  std::size_t values_left_;
  std::vector<std::unordered_set<std::string>> keys_;
};

}  // namespace

Result<Json> parse_json_strictly(std::string_view text, std::size_t max_bytes, std::size_t max_values) {
  if (text.size() > max_bytes) {
    return fail(ErrorCode::too_large, "document larger than " + std::to_string(max_bytes) +
                                          " bytes");
  }
  StrictSax sax(max_values);
  const bool ok = Json::sax_parse(text.begin(), text.end(), &sax, Json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || sax.error) {
    if (sax.error) return tl::unexpected(*sax.error);
    return fail(ErrorCode::syntax, "invalid JSON");
  }
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(ErrorCode::syntax, "invalid JSON");
  return doc;
}

}  // namespace sluice::policy
