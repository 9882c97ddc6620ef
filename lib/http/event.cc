#include "lib/http/event.h"

namespace weft::http::detail {

asio::awaitable<void> Event::wait() {
  while (!set_) {
    timer_.expires_at(asio::steady_timer::time_point::max());
    co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

}  // namespace weft::http::detail
