// A minimal client of sluice-agent's control socket (framing: 4-byte
// big-endian length + JSON). sluicectl links no daemon code: the protocol
// is small enough to speak here, and its tests keep both ends honest.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace sluice::ctl {

struct AgentReply {
  nlohmann::json body;
  int fd = -1;  // passed with SCM_RIGHTS, if any
};

// Sends one request and waits (bounded) for the reply. On failure returns
// nullopt and puts why in `*why`, or prints it to stderr when `why` is null.
// `*connected`, if given, says whether a peer accepted the connection (and
// so may have acted on the request even without a reply).
std::optional<AgentReply> agent_call(const std::string& socket_path, const nlohmann::json& request,
                                     int timeout_ms = 30000, std::string* why = nullptr,
                                     bool* connected = nullptr);

}  // namespace sluice::ctl
