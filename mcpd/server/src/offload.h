// Running blocking work off the I/O threads.
#pragma once

#include <exception>
#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::mcpd {

// Runs `work` through `post` (which runs what it is given on a pool
// thread, now or later); the awaiting coroutine resumes on its own
// executor with the result, or with what `work` threw, rethrown there (an
// exception must never leave a pool thread: that terminates the process).
template <class T, class Post>
boost::asio::awaitable<T> run_via(Post post, std::function<T()> work) {
  auto done = std::make_shared<boost::asio::experimental::concurrent_channel<void(boost::system::error_code, T)>>(
      co_await boost::asio::this_coro::executor, 1);
  auto thrown = std::make_shared<std::exception_ptr>();
  post([done, thrown, work = std::move(work)] {
    // Capacity 1, one send: never blocks, never fails.
    try {
      done->try_send(boost::system::error_code{}, work());
    } catch (...) {
      *thrown = std::current_exception();  // read after the receive, which orders it
      done->try_send(boost::system::error_code{}, T{});
    }
  });
  auto [ec, result] = co_await done->async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
  if (*thrown) std::rethrow_exception(*thrown);
  co_return std::move(result);
}

// The same on an executor's pool, in arrival order.
template <class T>
boost::asio::awaitable<T> run_on(boost::asio::any_io_executor pool, std::function<T()> work) {
  return run_via<T>([pool](std::function<void()> f) { boost::asio::post(pool, std::move(f)); }, std::move(work));
}

}  // namespace sluice::mcpd
