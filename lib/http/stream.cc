#include "weft/http/stream.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "weft/net/socket.h"

namespace weft::http {

namespace {
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

void closeSocket(asio::ip::tcp::socket& s, bool reset) {
  if (reset) net::setResetOnClose(s);
  asio::error_code ignored;
  s.close(ignored);
}
}  // namespace

asio::awaitable<IoResult> PlainStream::readSome(char* buf, std::size_t len) {
  auto [ec, n] = co_await s_.async_read_some(asio::buffer(buf, len), kAwait);
  countRead(n);
  co_return IoResult{ec, n};
}

asio::awaitable<IoResult> PlainStream::writeAll(const char* buf, std::size_t len) {
  auto [ec, n] = co_await asio::async_write(s_, asio::buffer(buf, len), kAwait);
  countWrite(n);
  co_return IoResult{ec, n};
}

void PlainStream::shutdownWrite() {
  asio::error_code ignored;
  s_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

void PlainStream::close(bool reset) { closeSocket(s_, reset); }

asio::awaitable<IoResult> TlsStream::readSome(char* buf, std::size_t len) {
  auto r = co_await t_.readSome(buf, len);
  countRead(r.second);
  co_return r;
}

asio::awaitable<IoResult> TlsStream::writeAll(const char* buf, std::size_t len) {
  auto r = co_await t_.writeAll(buf, len);
  countWrite(r.second);
  co_return r;
}

void TlsStream::shutdownWrite() { t_.shutdownWrite(); }

void TlsStream::close(bool reset) { closeSocket(t_.socket(), reset); }

}  // namespace weft::http
