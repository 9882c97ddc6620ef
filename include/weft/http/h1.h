// HTTP/1.x server and client sides: the strict codec of weft/http1/codec.h driven over a
// ByteStream, mapped to the protocol-neutral Request/Response (message.h).
//
// Server: requests are read one at a time and answered in order (pipelined requests wait in the
// buffer: the next head is parsed only once this exchange is complete). A request the codec
// rejects (request smuggling vectors, limits) is answered with its status (400, 414, 431, 501,
// 505), a `weft-proxy-error` header naming the defect and `connection: close`, and the
// connection is closed: nothing ambiguous is ever forwarded.
//
// Client: one connection to an upstream, one exchange at a time (pools hold several). Requests
// are re-emitted from their heads: method, target in the form it arrived (origin or absolute),
// version, field lines in order and as sent; framing is Content-Length when the head carries it,
// else chunked (HTTP/1.1) when there is a body.
#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "weft/common/result.h"
#include "weft/http/body.h"
#include "weft/http/h2.h"
#include "weft/http/message.h"
#include "weft/http/stream.h"
#include "weft/http1/codec.h"
#include "weft/http/detail/read_buffer.h"

namespace weft::http {

struct H1Settings {
  http1::Limits limits;
  // From a request's first byte until its head is complete (slow-loris defence): 408 and close.
  std::chrono::milliseconds head_timeout{10'000};
};

struct H1Hooks {
  // A handled failure, named as in ParseError::kind or "downstream_io", "upstream_io" ...
  std::function<void(std::string_view error)> error;
};

// Takes over the connection after the head of an Upgrade or CONNECT request: sends `head` on,
// then carries bytes both ways as TCP (`buffered` = bytes already read past the head).
using UpgradeHandler =
    std::function<asio::awaitable<void>(RequestHead head, ByteStream& downstream, std::string buffered)>;

// Serves HTTP/1.x on `stream` until the client closes, asks to close, or a request is rejected.
// `prefix` holds the bytes protocol detection already read.
asio::awaitable<Status> serveH1(ByteStream& stream, std::string prefix, const H1Settings& settings,
                                Handler handler, UpgradeHandler upgrade, H1Hooks hooks = {},
                                std::shared_ptr<DrainSignal> drain = nullptr);

// A whole HTTP/1.1 answer the proxy makes itself: `status` with its reason, a text/plain body,
// `weft-proxy-error: <kind>` and `connection: close`.
std::string errorResponse(int status, std::string_view kind);

// The protocol-neutral head of a parsed HTTP/1 request (moves strings out of `h`): hop-by-hop
// fields (and those Connection names) removed, target split per its form, framing noted.
RequestHead fromHttp1(http1::RequestHead& h);

// The HTTP/1 request line + field section for `head` (exactly what serveH1 would forward).
// `chunked`: add "Transfer-Encoding: chunked" (the body's length is not known). `upgrade`: keep
// the Connection and Upgrade fields (an Upgrade / CONNECT request handed on as it came).
std::string serializeRequestHead(const RequestHead& head, bool chunked, bool upgrade = false);
// The same, appended to `out` (a connection reuses one buffer).
void appendRequestHead(std::string& out, const RequestHead& head, bool chunked, bool upgrade = false);

class H1Client : public std::enable_shared_from_this<H1Client> {
 public:
  explicit H1Client(std::unique_ptr<Transport> transport, const H1Settings& settings);
  ~H1Client();
  H1Client(const H1Client&) = delete;
  H1Client& operator=(const H1Client&) = delete;

  // Sends `req` and completes with the final response head (1xx skipped). The head is only
  // read (a request whose connection turned out stale can be sent again); the body is taken. The response body
  // streams afterwards; the connection becomes idle() again once both bodies are complete and
  // both sides keep it alive. Errors (Error::upstream): "connection_lost" before any response
  // byte (`retryable()` tells whether the request may be sent again elsewhere), "bad_response"
  // (malformed response: the client gets 502).
  asio::awaitable<Result<Response>> send(Request& req);

  [[nodiscard]] bool idle() const { return !busy_ && !broken_; }
  // idle() and, after a second of idleness, not closed by the upstream meanwhile (one peek).
  bool reusable();
  [[nodiscard]] bool broken() const { return broken_; }
  // The last failed send() wrote nothing the upstream could have acted on... conservatively: the
  // connection was reused, no response byte arrived, and the request had no body.
  [[nodiscard]] bool retryable() const { return retryable_; }
  [[nodiscard]] bool reused() const { return exchanges_ > 0; }
  void close();

 private:
  asio::awaitable<void> writeBody(std::shared_ptr<Body> body, bool chunked);
  asio::awaitable<void> readBody(std::shared_ptr<Body> body, http1::BodyFraming framing);
  void exchangeDone();
  asio::awaitable<std::pair<asio::error_code, std::size_t>> fill();

  std::unique_ptr<Transport> t_;
  H1Settings settings_;
  detail::ReadBuffer in_;
  std::string out_;  // the request head (and what body came with it) being written
  bool busy_ = false;
  bool broken_ = false;
  bool retryable_ = false;
  bool request_done_ = false;
  bool response_done_ = false;
  bool keep_alive_ = true;
  std::chrono::steady_clock::time_point idle_since_{};
  uint64_t exchanges_ = 0;
};

}  // namespace weft::http
