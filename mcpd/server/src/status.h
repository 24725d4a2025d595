// Errors of sluice-mcpd's own machinery (storage, configuration, TLS):
// what was being done, for logs and operators. Never shown to MCP clients:
// they get sanitised messages chosen where the error is turned into a reply.
#pragma once

#include <string>

#include <tl/expected.hpp>

namespace sluice::mcpd {

struct Failure {
  std::string what;
};

template <class T>
using Result = tl::expected<T, Failure>;
using Status = tl::expected<void, Failure>;

inline tl::unexpected<Failure> fail(std::string what) {
  return tl::unexpected(Failure{std::move(what)});
}

}  // namespace sluice::mcpd
