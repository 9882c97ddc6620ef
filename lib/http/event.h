// Event: a one-shot, single-threaded signal a coroutine can wait for (a timer that never expires,
// cancelled to wake the waiter: the usual Asio idiom for a condition variable on one thread).
#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

namespace weft::http::detail {

class Event {
 public:
  explicit Event(const asio::any_io_executor& ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  void set() {
    set_ = true;
    timer_.cancel();
  }
  [[nodiscard]] bool isSet() const { return set_; }
  asio::awaitable<void> wait() {
    while (!set_) {
      timer_.expires_at(asio::steady_timer::time_point::max());
      co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace weft::http::detail
