// A response delivered as Server-Sent Events: the HTTP session writes the
// head, then each event's text as it is produced, and ends the response
// when the producer closes the channel. Either side may close it: the
// session does when the client goes away, and the producer's next send
// fails.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <nlohmann/json.hpp>

namespace sluice::mcpd {

struct EventStream {
  explicit EventStream(const boost::asio::any_io_executor& ex) : events(ex, kBuffered) {}
  static constexpr std::size_t kBuffered = 16;
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code, std::string)> events;
};

// One SSE "message" event carrying a JSON-RPC message, or its compact
// JSON text (which never holds a newline).
inline std::string sse_text(std::string_view message_json) {
  std::string out = "event: message\ndata: ";
  out += message_json;
  out += "\n\n";
  return out;
}
inline std::string sse_message(const nlohmann::json& message) {
  return sse_text(message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace sluice::mcpd
