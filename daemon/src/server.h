// The agent's event loop: the control socket, the deny-event ring buffer,
// pin expiry and the tamper check, all on one thread, so calls into the
// Agent are serialised without locks.
#pragma once

#include <memory>

#include <boost/asio/io_context.hpp>

#include "agent.h"
#include "resolver.h"

namespace sluice::agent {

class Server {
 public:
  Server(boost::asio::io_context& io, Agent& agent, Resolver& resolver);
  ~Server();
  // Binds the control socket (replacing a stale one) and starts every loop.
  Status start();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::agent
