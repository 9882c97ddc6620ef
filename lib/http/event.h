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
  // Defined in event.cc, not here: GCC gives an inline coroutine's frame a type whose members
  // differ between translation units, which link-time optimisation reports as an ODR violation.
  asio::awaitable<void> wait();

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace weft::http::detail
