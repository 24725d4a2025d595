// A response delivered as Server-Sent Events: the HTTP session writes the
// head, then each event's text as it is produced, and ends the response
// when the producer closes the channel. Either side may close it: the
// session does when the client goes away, and the producer's next send
// fails.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <nlohmann/json.hpp>

namespace sluice::mcpd {

struct EventStream {
  explicit EventStream(const boost::asio::any_io_executor& ex) : events(ex, kBuffered) {}
  static constexpr std::size_t kBuffered = 16;
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code, std::string)> events;
};

// One SSE "message" event carrying a JSON-RPC message.
inline std::string sse_message(const nlohmann::json& message) {
  return "event: message\ndata: " +
         message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

}  // namespace sluice::mcpd
