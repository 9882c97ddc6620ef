// HTTP/2 server and client sides, over nghttp2 (Debian libnghttp2), driven by Asio coroutines on
// the worker that owns the connection.
//
// nghttp2 does the framing, HPACK, stream states and flow-control accounting, and enforces most
// of RFC 9113 itself. We add: Body backpressure (DATA is acknowledged with WINDOW_UPDATE only once
// the other side of the proxy has taken it, NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE), limits, flood
// defences, and the mapping to the protocol-neutral Request/Response (message.h).
//
// Defences (each counted through Hooks::error with the name in quotes):
//  - concurrent streams bounded by SETTINGS_MAX_CONCURRENT_STREAMS; a peer that exceeds it gets
//    RST_STREAM(REFUSED_STREAM) ("too_many_streams")
//  - rapid reset (CVE-2023-44487): nghttp2's stream reset rate limit, plus our own count of
//    streams reset before their response began; over the budget -> GOAWAY(ENHANCE_YOUR_CALM)
//    ("rapid_reset")
//  - CONTINUATION floods: nghttp2_option_set_max_continuations ("continuation_flood")
//  - header list size: SETTINGS_MAX_HEADER_LIST_SIZE advertised and enforced on decoded fields
//    (HPACK bombs): the stream is answered 431 / reset ("header_list_too_large")
//  - SETTINGS / PING floods: nghttp2's outbound control-frame queue limit -> GOAWAY ("flood")
//  - server push disabled (SETTINGS_ENABLE_PUSH=0 as client; never sent as server).
#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "weft/common/result.h"
#include "weft/http/body.h"
#include "weft/http/message.h"
#include "weft/http/stream.h"

namespace weft::http {

struct H2Settings {
  uint32_t max_concurrent_streams = 100;
  uint32_t initial_stream_window = 256 * 1024;      // advertised per stream
  uint32_t connection_window = 1024 * 1024;         // advertised for the connection
  uint32_t max_header_list_size = 64 * 1024;        // decoded bytes (name + value + 32 per field)
  uint32_t max_frame_size = 16384;
  std::size_t max_continuations = 8;
  // Streams the peer may reset before we answered, per `reset_window`, before GOAWAY.
  uint32_t max_early_resets = 200;
  std::chrono::milliseconds reset_window{10'000};
  // A connection with no open streams for this long is closed (GOAWAY NO_ERROR). 0 = never.
  std::chrono::milliseconds idle_timeout{0};
};

// What a side reports to the proxy around it (metrics, logs). All optional.
struct H2Hooks {
  // A handled failure, e.g. "protocol_error", "rapid_reset", "flood", "upstream_reset".
  std::function<void(std::string_view error)> error;
};

// Answers one request: the proxy's routing and forwarding. Never throws; proxy-made errors are
// ordinary Responses (e.g. 502 with weft-proxy-error). Runs as its own coroutine per stream.
using Handler = std::function<asio::awaitable<Response>(Request)>;

// Signals a server side to stop taking new streams (graceful shutdown): it sends GOAWAY with the
// last stream id, lets open streams finish, then returns.
struct DrainSignal {
  bool draining = false;
  std::function<void()> notify;  // set by the server side while it runs
};

// Serves HTTP/2 on `stream` (a downstream connection) until the peer closes it, a connection
// error (GOAWAY sent with the matching code), or drain. `prefix` holds bytes already read from
// the stream (protocol detection), starting with the client preface. Each request's HEADERS
// start `handler` on a new coroutine; its request body is fed as DATA arrives; the response is
// written when the handler returns (HEADERS, DATA as the body produces it, trailers; RST_STREAM
// when the body aborts). Returns ok on a clean end, else the connection-level error.
asio::awaitable<Status> serveH2(ByteStream& stream, std::string prefix, const H2Settings& settings,
                                Handler handler, H2Hooks hooks = {},
                                std::shared_ptr<DrainSignal> drain = nullptr);

// One multiplexed HTTP/2 connection to an upstream (an application speaking h2c, or a peer Weft
// proxy over mesh TLS). Owned by a pool through shared_ptr; the session runs on its own reader
// coroutine until the connection ends.
class H2Client {
 public:
  // Sends the client preface and SETTINGS and starts the session on `transport`'s executor.
  static std::shared_ptr<H2Client> start(std::unique_ptr<Transport> transport,
                                         const H2Settings& settings, H2Hooks hooks = {});
  virtual ~H2Client() = default;

  // Sends `req` (HEADERS, then its body as DATA and trailers as HEADERS) and completes when the
  // response's final head arrives (1xx heads are skipped). Errors (Error::upstream kinds):
  //  "refused_stream"   the peer refused it before processing (REFUSED_STREAM or beyond GOAWAY's
  //                     last stream id): safe to retry elsewhere
  //  "stream_reset"     the peer reset the stream
  //  "connection_lost"  the connection failed or closed
  // Field names are sent lowercased; connection-specific fields are never sent.
  asio::awaitable<Result<Response>> send(Request req);
  // The same, without taking the request: its head is only read (before the first suspension),
  // so after "refused_stream" the caller can send it again without having kept a copy; the body
  // is taken.
  virtual asio::awaitable<Result<Response>> sendBorrowed(Request& req) = 0;

  // True while new requests may be sent: connected, no GOAWAY either way, below the peer's
  // SETTINGS_MAX_CONCURRENT_STREAMS.
  [[nodiscard]] virtual bool available() const = 0;
  [[nodiscard]] virtual bool closed() const = 0;
  [[nodiscard]] virtual std::size_t activeStreams() const = 0;
  // GOAWAY(NO_ERROR); open streams finish, then the connection closes.
  virtual void shutdown() = 0;
};

}  // namespace weft::http
