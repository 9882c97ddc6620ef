// HTTP/1.x sides (contract: include/weft/http/h1.h). The byte-level strictness lives in the codec
// (lib/http1); this file drives it over sockets and maps heads to and from message.h.
#include "weft/http/h1.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lib/http/event.h"
#include "weft/common/ascii.h"
#include "weft/http/detail/read_buffer.h"

namespace weft::http {

using http1::ParseError;

namespace {

constexpr std::size_t kReadSize = 16 * 1024;

// Fields that describe one hop, never forwarded (RFC 9110 §7.6.1); HTTP/2 forbids them.
bool isHopByHop(std::string_view name) {
  // Cheap rejection first: every such name has one of these lengths (2, 7, 10, 16, 17, 14).
  switch (name.size()) {
    case 2: case 7: case 10: case 14: case 16: case 17: break;
    default: return false;
  }
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "te") ||
         iequals(name, "transfer-encoding") || iequals(name, "upgrade") ||
         iequals(name, "http2-settings");
}

// Calls fn(token) for each name the Connection fields list (RFC 9110 §7.6.1), but keep-alive:
// a field of that name is hop-by-hop already.
template <typename F>
void forEachConnectionToken(const Fields& all, F&& fn) {
  for (const auto& f : all) {
    if (!iequals(f.name, "connection")) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      auto comma = v.find(',');
      auto t = v.substr(0, comma);
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (!t.empty() && !iequals(t, "keep-alive")) fn(t);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
}

// The end-to-end fields of `h`, moved out of it (the head is not used after): hop-by-hop fields
// and the names Connection lists are dropped, in place. The listed names are copied first
// (filtering moves fields over the Connection values); most heads list none but keep-alive, and
// then nothing is allocated here.
Fields endToEnd(http1::Headers& h) {
  Fields all = h.release();
  std::vector<std::string> listed;
  forEachConnectionToken(all, [&](std::string_view t) { listed.emplace_back(t); });
  std::erase_if(all, [&](const Field& f) {
    return isHopByHop(f.name) ||
           std::any_of(listed.begin(), listed.end(), [&](const std::string& t) { return iequals(t, f.name); });
  });
  return all;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

void appendField(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void appendChunk(std::string& out, std::string_view data) {
  char size[20];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out.append(size, static_cast<std::size_t>(n));
  out.append(data);
  out.append("\r\n");
}

void appendLastChunk(std::string& out, const Fields& trailers) {
  out.append("0\r\n");
  for (const auto& t : trailers) appendField(out, t.name, t.value);
  out.append("\r\n");
}

}  // namespace

RequestHead fromHttp1(http1::RequestHead& h) {
  RequestHead r;
  r.method = std::move(h.method);
  r.proto = h.version == http1::Version::kHttp10 ? Proto::kHttp10 : Proto::kHttp11;
  r.authority = std::move(h.authority);
  switch (h.form) {
    case http1::TargetForm::kOrigin:
    case http1::TargetForm::kAsterisk:
      r.path = std::move(h.target);
      break;
    case http1::TargetForm::kAbsolute: {
      r.absolute_form = true;
      auto sep = h.target.find("://");
      r.scheme = ascii::toLower(std::string_view(h.target).substr(0, sep));
      auto rest = std::string_view(h.target).substr(sep + 3);
      auto slash = rest.find_first_of("/?");
      r.path = slash == std::string_view::npos ? std::string() : std::string(rest.substr(slash));
      break;
    }
    case http1::TargetForm::kAuthority:
      break;  // CONNECT: the authority is the target
  }
  r.headers = endToEnd(h.headers);
  r.chunked = h.framing.kind == http1::BodyFraming::Kind::kChunked;
  r.expect_continue = h.expect_continue;
  r.end_stream = h.framing.kind == http1::BodyFraming::Kind::kNone;
  return r;
}

std::string errorResponse(int status, std::string_view kind) {
  std::string body = std::to_string(status) + " " + std::string(reasonPhrase(status)) + ": " +
                     std::string(kind) + "\n";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reasonPhrase(status)) + "\r\n";
  appendField(out, "content-type", "text/plain");
  appendField(out, "weft-proxy-error", kind);
  appendField(out, "content-length", std::to_string(body.size()));
  appendField(out, "connection", "close");
  out.append("\r\n");
  out.append(body);
  return out;
}

namespace {

bool responseHasNoBody(std::string_view method, int status) {
  return method == "HEAD" || (status >= 100 && status < 200) || status == 204 || status == 304;
}

struct HeadGuard {
  bool armed = true;
  bool timed_out = false;
};

// One downstream connection's read side: the buffer shared by head parsing and body reading.
// Held by shared_ptr so a body-reading coroutine can never outlive it.
struct ServerConn {
  ServerConn(ByteStream& s, std::string_view prefix) : io(s) {
    if (!prefix.empty()) {
      auto [p, n] = buf.prepare(prefix.size());
      std::memcpy(p, prefix.data(), prefix.size());
      buf.commit(prefix.size());
    }
  }
  ByteStream& io;
  detail::ReadBuffer buf;
  bool eof = false;
  bool failed = false;

  std::string_view pending() const { return buf.pending(); }
  void consume(std::size_t n) { buf.consume(n); }
  // Reads more bytes into the buffer. Returns false at EOF or error.
  asio::awaitable<bool> fill() {
    auto [p, room] = buf.prepare(kReadSize);
    auto [ec, n] = co_await io.readSome(p, room);
    co_return filled(ec, n);
  }
  // The second half of fill(), for a caller that reads itself (one coroutine frame less).
  bool filled(asio::error_code ec, std::size_t n) {
    buf.commit(n);
    if (ec == asio::error::eof) eof = true;
    if (ec && !eof) failed = true;
    return n > 0 || !ec;
  }
};

// Reads one request body from the connection into `body`, with backpressure. Returns whether the
// body was read whole (the connection is then positioned at the next request).
asio::awaitable<bool> readRequestBody(std::shared_ptr<ServerConn> c, std::shared_ptr<Body> body,
                                      http1::BodyFraming framing, ParseError& error) {
  using K = http1::BodyFraming::Kind;
  if (framing.kind == K::kContentLength) {
    uint64_t remaining = framing.length;
    while (remaining > 0) {
      if (c->pending().empty()) {
        if (!co_await body->waitWritable()) co_return false;
        if (!co_await c->fill()) {
          body->abort("downstream_io");
          co_return false;
        }
      }
      auto take = std::min<uint64_t>(remaining, c->pending().size());
      body->push(c->pending().substr(0, take));
      c->consume(take);
      remaining -= take;
    }
    body->finish();
    co_return true;
  }
  // Chunked.
  http1::ChunkedDecoder decoder;
  std::string decoded;
  for (;;) {
    if (c->pending().empty()) {
      if (!co_await body->waitWritable()) co_return false;
      if (!co_await c->fill()) {
        body->abort("downstream_io");
        co_return false;
      }
    }
    decoded.clear();
    auto r = decoder.feed(c->pending(), decoded);
    c->consume(r.consumed);
    if (!decoded.empty()) body->push(decoded);
    if (r.state == http1::ParseState::kDone) {
      body->finish(decoder.trailers().all());
      co_return true;
    }
    if (r.state == http1::ParseState::kError) {
      error = r.error;
      body->abort(std::string(r.error.kind));
      co_return false;
    }
  }
}

}  // namespace

std::string serializeRequestHead(const RequestHead& head, bool chunked, bool upgrade) {
  std::string out;
  out.reserve(256);
  appendRequestHead(out, head, chunked, upgrade);
  return out;
}

void appendRequestHead(std::string& out, const RequestHead& head, bool chunked, bool upgrade) {
  out.append(head.method);
  out.push_back(' ');
  if (head.method == "CONNECT") {
    out.append(head.authority);
  } else if (head.absolute_form) {
    out.append(head.scheme).append("://").append(head.authority).append(head.path);
  } else {
    out.append(head.path.empty() ? std::string_view("/") : std::string_view(head.path));
  }
  out.append(head.proto == Proto::kHttp10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  bool has_host = false;
  for (const auto& f : head.headers) {
    if (!has_host && iequals(f.name, "host")) has_host = true;
  }
  // A request that arrived over HTTP/2 carries its authority as :authority: HTTP/1 needs Host,
  // and first (RFC 9112 §3.2).
  if (!has_host && !head.authority.empty()) appendField(out, "Host", head.authority);
  for (const auto& f : head.headers) {
    if (isHopByHop(f.name) && !(upgrade && (iequals(f.name, "connection") || iequals(f.name, "upgrade")))) {
      continue;
    }
    appendField(out, f.name, f.value);
  }
  if (chunked) appendField(out, "Transfer-Encoding", "chunked");
  out.append("\r\n");
}

asio::awaitable<Status> serveH1(ByteStream& stream, std::string prefix, const H1Settings& settings,
                                Handler handler, UpgradeHandler upgrade, H1Hooks hooks,
                                std::shared_ptr<DrainSignal> drain) {
  auto ex = co_await asio::this_coro::executor;
  auto conn = std::make_shared<ServerConn>(stream, prefix);
  prefix.clear();
  auto report = [&](std::string_view e) {
    if (hooks.error) hooks.error(e);
  };
  bool idle = true;  // between requests: a drain may close the connection at once
  if (drain) {
    drain->notify = [&stream, &idle] {
      if (idle) stream.close(false);
    };
  }
  struct ClearNotify {
    std::shared_ptr<DrainSignal>& d;
    ~ClearNotify() {
      if (d) d->notify = nullptr;
    }
  } clear_notify{drain};

  http1::RequestHeadParser parser(settings.limits);
  asio::steady_timer head_timer(ex);
  std::string out;  // the response being written; its capacity serves the next one
  for (;;) {
    // 1. The head. The timer bounds a started head (slow loris); an idle connection may wait.
    parser.reset();
    idle = conn->pending().empty();
    bool timer_armed = false;
    std::shared_ptr<HeadGuard> head_guard;
    http1::FeedResult r;
    for (;;) {
      if (!conn->pending().empty()) {
        idle = false;
        r = parser.feed(conn->pending());
        conn->consume(r.consumed);
        if (r.state != http1::ParseState::kNeedMore) break;
        // A head split over reads: bound the wait for the rest (slow loris). Most heads arrive
        // in one read and never pay for the timer (a timerfd update per arm).
        if (!timer_armed) {
          timer_armed = true;
          head_guard = std::make_shared<HeadGuard>();
          head_timer.expires_after(settings.head_timeout);
          // The guard, not the frame, tells the handler whether it still matters: a handler
          // already queued when the head completed must not close the connection (or touch
          // it after this coroutine returned).
          head_timer.async_wait([guard = head_guard, &stream](asio::error_code ec) {
            if (ec || !guard->armed) return;
            guard->timed_out = true;
            stream.close(false);
          });
        }
      }
      if (drain && drain->draining && idle) co_return okStatus();
      auto [p, room] = conn->buf.prepare(kReadSize);
      auto [ec, n] = co_await stream.readSome(p, room);
      if (!conn->filled(ec, n)) {
        if (head_guard) head_guard->armed = false;
        head_timer.cancel();
        if (head_guard && head_guard->timed_out) {
          report("head_timeout");
          co_return Error::downstream("head_timeout");
        }
        if (conn->eof && idle) co_return okStatus();  // the client closed between requests
        report("downstream_io");
        co_return Error::downstream("downstream_io");
      }
    }
    if (timer_armed) {
      head_guard->armed = false;
      head_timer.cancel();
    }
    idle = false;
    if (r.state == http1::ParseState::kError) {
      report(r.error.kind);
      auto resp = errorResponse(r.error.status, r.error.kind);
      co_await stream.writeAll(resp.data(), resp.size());
      stream.shutdownWrite();
      // Give the client a moment to read the answer before the close (a reset would discard it).
      co_return Error::downstream(std::string(r.error.kind));
    }
    http1::RequestHead& h1 = parser.head();
    const bool keep_alive = h1.keep_alive;
    const auto framing = h1.framing;
    const bool is_upgrade = !h1.upgrade.empty() || h1.method == "CONNECT";
    Fields upgrade_fields;  // an upgrade is handed on with its Connection and Upgrade fields
    if (is_upgrade) {
      for (const auto& f : h1.headers.all()) {
        if (iequals(f.name, "connection") || iequals(f.name, "upgrade")) upgrade_fields.push_back(Field{f.name, f.value});
      }
    }
    RequestHead head = fromHttp1(h1);
    if (is_upgrade) {
      // Upgrade / CONNECT: from here on the connection is TCP (the upgrade handler writes the
      // head on and relays both ways, including a refusal).
      for (auto& f : upgrade_fields) head.headers.push_back(std::move(f));
      std::string rest(conn->pending());
      co_await upgrade(std::move(head), stream, std::move(rest));
      co_return okStatus();
    }
    const Proto client_proto = head.proto;
    const std::string method = head.method;

    // 2. The body streams while the request is forwarded.
    Request req;
    req.head = std::move(head);
    // The body's reader, when there is a body: done when it ends, whether it was read whole,
    // and the parser's verdict on a malformed one (chunked framing).
    struct BodyRead {
      explicit BodyRead(const asio::any_io_executor& ex) : done(ex) {}
      detail::Event done;
      bool ok = true;
      ParseError error;
    };
    std::shared_ptr<BodyRead> body_read;
    if (req.head.end_stream) {
      req.body = Body::empty(ex);
    } else {
      req.body = Body::make(ex);
      if (req.head.expect_continue) {
        // Answered at once: the upstream's own 100 (if any) is absorbed by the client side.
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await stream.writeAll(kContinue.data(), kContinue.size());
      }
      body_read = std::make_shared<BodyRead>(ex);
      asio::co_spawn(
          ex,
          [conn, body = req.body, framing, body_read]() -> asio::awaitable<void> {
            body_read->ok = co_await readRequestBody(conn, body, framing, body_read->error);
            body_read->done.set();
          },
          asio::detached);
    }
    std::weak_ptr<Body> req_body = req.body;

    // 3. The response.
    Response resp = co_await handler(std::move(req));
    if (body_read && !body_read->error.kind.empty()) {
      // The body broke the framing rules: the client gets the parser's answer, not whatever the
      // (aborted) upstream exchange produced.
      resp.body->cancel();
      const ParseError error = body_read->error;
      report(error.kind);
      auto answer = errorResponse(error.status, error.kind);
      co_await stream.writeAll(answer.data(), answer.size());
      stream.shutdownWrite();
      co_await body_read->done.wait();
      co_return Error::downstream(std::string(error.kind));
    }
    const bool no_body = responseHasNoBody(method, resp.head.status);
    const bool has_length = find(resp.head.headers, "content-length").has_value();
    bool close = !keep_alive || (drain && drain->draining);
    bool chunked = false;
    if (!no_body && !has_length) {
      if (client_proto == Proto::kHttp11) {
        chunked = true;
      } else {
        close = true;  // HTTP/1.0: the body runs to the close
      }
    }
    if (out.capacity() > 4 * kReadSize) std::string().swap(out);  // after a large response
    out.clear();
    out.reserve(512);
    out.append(client_proto == Proto::kHttp10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    out.append(std::to_string(resp.head.status));
    out.push_back(' ');
    out.append(resp.head.reason.empty() ? reasonPhrase(resp.head.status) : std::string_view(resp.head.reason));
    out.append("\r\n");
    for (const auto& f : resp.head.headers) {
      if (isHopByHop(f.name)) continue;
      appendField(out, f.name, f.value);
    }
    if (chunked) appendField(out, "transfer-encoding", "chunked");
    if (close) {
      appendField(out, "connection", "close");
    } else if (client_proto == Proto::kHttp10) {
      appendField(out, "connection", "keep-alive");
    }
    out.append("\r\n");

    bool write_failed = false;
    bool body_aborted = false;
    if (no_body) {
      // Nothing of the body is sent; a body that already ended is taken (so its end is seen),
      // anything still coming is cancelled.
      auto c = resp.body->tryRead();
      while (c && c->kind == Body::Kind::kData) c = resp.body->tryRead();
      if (!c) resp.body->cancel();
    } else {
      // Coalesce the head with whatever body is already here; then stream.
      for (;;) {
        auto chunk = resp.body->tryRead();
        if (!chunk) {
          if (!out.empty()) {
            auto [ec, n] = co_await stream.writeAll(out.data(), out.size());
            out.clear();
            if (ec) {
              write_failed = true;
              break;
            }
          }
          chunk = co_await resp.body->read();
        }
        if (chunk->kind == Body::Kind::kData) {
          if (chunked) {
            appendChunk(out, chunk->data);
          } else {
            out.append(chunk->data);
          }
          if (out.size() >= kReadSize) {
            auto [ec, n] = co_await stream.writeAll(out.data(), out.size());
            out.clear();
            if (ec) {
              write_failed = true;
              break;
            }
          }
          continue;
        }
        if (chunk->kind == Body::Kind::kEnd) {
          if (chunked) appendLastChunk(out, chunk->trailers);
        } else {
          // The upstream broke mid-body: the client must not take a truncated body for a whole
          // one, so the connection ends without the terminating chunk (and with a reset).
          body_aborted = true;
        }
        break;
      }
      if (write_failed) resp.body->cancel();
    }
    if (!write_failed && !out.empty()) {
      auto [ec, n] = co_await stream.writeAll(out.data(), out.size());
      if (ec) write_failed = true;
    }
    if (write_failed) {
      report("downstream_io");
      stream.close(true);
      if (body_read) co_await body_read->done.wait();
      co_return Error::downstream("downstream_io");
    }
    if (body_aborted) {
      report("response_body_aborted");
      stream.close(true);
      if (body_read) co_await body_read->done.wait();
      co_return Error::upstream("response_body_aborted");
    }

    // 4. The request body must have been read whole to read the next request.
    if (body_read) {
      if (!body_read->done.isSet()) {
        // Answered before the body was read (e.g. an early error): the rest of the body is
        // unread, so the connection cannot carry another request.
        if (auto b = req_body.lock()) b->cancel();
        stream.close(false);
        co_await body_read->done.wait();
        co_return okStatus();
      }
      if (!body_read->ok) {
        report("request_body");
        stream.close(true);
        co_return Error::downstream("request_body");
      }
    }
    if (close) {
      stream.shutdownWrite();
      co_return okStatus();
    }
  }
}

// ---------------------------------------------------------------------------------------------

H1Client::H1Client(std::unique_ptr<Transport> transport, const H1Settings& settings)
    : t_(std::move(transport)), settings_(settings) {}

H1Client::~H1Client() = default;

void H1Client::close() {
  broken_ = true;
  if (t_->stream) t_->stream->close(false);
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> H1Client::fill() {
  auto [p, room] = in_.prepare(kReadSize);
  auto [ec, n] = co_await t_->stream->readSome(p, room);
  in_.commit(n);
  co_return std::pair{ec, n};
}

asio::awaitable<Result<Response>> H1Client::send(Request& req) {
  auto self = shared_from_this();
  auto ex = co_await asio::this_coro::executor;
  busy_ = true;
  retryable_ = false;
  request_done_ = false;
  response_done_ = false;
  keep_alive_ = true;
  const bool was_reused = exchanges_ > 0;
  const bool has_body = !req.head.end_stream;
  const bool chunked = has_body && !find(req.head.headers, "content-length").has_value();
  // The connection's buffer, reused: its capacity outlives the exchange.
  std::string& out = out_;
  if (out.capacity() > 4 * kReadSize) std::string().swap(out);  // after a large request
  out.clear();
  appendRequestHead(out, req.head, chunked);
  bool body_done = !has_body;
  if (has_body) {
    while (auto c = req.body->tryRead()) {
      if (c->kind == Body::Kind::kData) {
        if (chunked) {
          appendChunk(out, c->data);
        } else {
          out.append(c->data);
        }
        continue;
      }
      if (c->kind == Body::Kind::kAbort) {
        close();
        co_return Error::downstream("request_body_aborted", c->error);
      }
      if (chunked) appendLastChunk(out, c->trailers);
      body_done = true;
      break;
    }
  }
  auto [wec, wn] = co_await t_->stream->writeAll(out.data(), out.size());
  if (wec) {
    retryable_ = was_reused && !has_body;
    close();
    co_return Error::upstream("connection_lost", wec.message(), wec.value());
  }
  if (body_done) {
    request_done_ = true;
  } else {
    asio::co_spawn(ex, [self, body = req.body, chunked]() { return self->writeBody(body, chunked); },
                   asio::detached);
  }

  http1::ResponseHeadParser parser(req.head.method, settings_.limits);
  bool got_bytes = false;
  for (;;) {
    if (!in_.empty()) {
      got_bytes = true;
      auto r = parser.feed(in_.pending());
      in_.consume(r.consumed);
      if (r.state == http1::ParseState::kError) {
        close();
        co_return Error::upstream("bad_response", std::string(r.error.kind));
      }
      if (r.state == http1::ParseState::kDone) {
        auto& h = parser.head();
        if (h.status >= 100 && h.status < 200 && h.status != 101) {
          parser.reset();
          continue;  // 100 Continue and friends: the final response follows
        }
        if (h.status == 101) {
          close();
          co_return Error::upstream("bad_response", "unexpected 101");
        }
        break;
      }
    }
    // Read inline, not through fill(): one coroutine frame less per response.
    auto [p, room] = in_.prepare(kReadSize);
    auto [ec, n] = co_await t_->stream->readSome(p, room);
    in_.commit(n);
    if (n == 0 && ec) {
      retryable_ = was_reused && !has_body && !got_bytes;
      close();
      co_return Error::upstream("connection_lost",
                                ec == asio::error::eof ? "closed before responding" : ec.message(), ec.value());
    }
  }
  auto& h = parser.head();
  Response resp;
  resp.head.status = h.status;
  resp.head.reason = std::move(h.reason);
  resp.head.headers = endToEnd(h.headers);
  keep_alive_ = h.keep_alive && req.head.proto != Proto::kHttp10;
  using K = http1::BodyFraming::Kind;
  const auto framing = h.framing;
  if (framing.kind == K::kNone || (framing.kind == K::kContentLength && framing.length == 0)) {
    resp.head.end_stream = framing.kind == K::kNone;
    resp.body = Body::empty(ex);
    response_done_ = true;
    exchangeDone();
    co_return resp;
  }
  resp.body = Body::make(ex);
  // Whatever body already arrived with the head is handed over now, so a small response is
  // complete when send() returns (the server side then writes head and body at once).
  if (framing.kind == K::kContentLength && in_.size() >= framing.length) {
    resp.body->push(in_.pending().substr(0, framing.length));
    in_.consume(framing.length);
    resp.body->finish();
    response_done_ = true;
    exchangeDone();
    co_return resp;
  }
  if (framing.kind == K::kCloseDelimited) keep_alive_ = false;
  asio::co_spawn(ex, [self, body = resp.body, framing]() { return self->readBody(body, framing); },
                 asio::detached);
  co_return resp;
}

asio::awaitable<void> H1Client::writeBody(std::shared_ptr<Body> body, bool chunked) {
  auto self = shared_from_this();
  std::string out;
  for (;;) {
    auto c = co_await body->read();
    out.clear();
    if (c.kind == Body::Kind::kAbort) {
      // The client went away mid-body: the upstream must not take a partial body for a whole.
      close();
      break;
    }
    if (c.kind == Body::Kind::kData) {
      if (chunked) {
        appendChunk(out, c.data);
      } else {
        out = std::move(c.data);
      }
    } else if (chunked) {
      appendLastChunk(out, c.trailers);
    }
    if (!out.empty()) {
      auto [ec, n] = co_await t_->stream->writeAll(out.data(), out.size());
      if (ec) {
        close();
        break;
      }
    }
    if (c.kind == Body::Kind::kEnd) break;
  }
  request_done_ = true;
  exchangeDone();
}

asio::awaitable<void> H1Client::readBody(std::shared_ptr<Body> body, http1::BodyFraming framing) {
  auto self = shared_from_this();
  using K = http1::BodyFraming::Kind;
  uint64_t remaining = framing.length;
  http1::ChunkedDecoder decoder;
  std::string decoded;
  for (;;) {
    std::string_view avail = in_.pending();
    if (!avail.empty()) {
      if (framing.kind == K::kContentLength) {
        auto take = std::min<uint64_t>(remaining, avail.size());
        body->push(avail.substr(0, take));
        in_.consume(take);
        remaining -= take;
        if (remaining == 0) {
          body->finish();
          break;
        }
      } else if (framing.kind == K::kChunked) {
        decoded.clear();
        auto r = decoder.feed(avail, decoded);
        in_.consume(r.consumed);
        if (!decoded.empty()) body->push(decoded);
        if (r.state == http1::ParseState::kDone) {
          body->finish(decoder.trailers().all());
          break;
        }
        if (r.state == http1::ParseState::kError) {
          body->abort("bad_response_body");
          close();
          break;
        }
      } else {
        body->push(avail);
        in_.clear();
      }
    }
    if (!co_await body->waitWritable()) {
      close();  // nobody reads the rest: the connection cannot be reused
      break;
    }
    auto [ec, n] = co_await fill();
    if (n == 0 && ec) {
      if (framing.kind == K::kCloseDelimited && ec == asio::error::eof) {
        body->finish();
      } else {
        body->abort("upstream_io");
      }
      close();
      break;
    }
  }
  response_done_ = true;
  exchangeDone();
}

void H1Client::exchangeDone() {
  if (!request_done_ || !response_done_) return;
  if (!keep_alive_ || broken_ || !in_.empty()) {
    // Bytes beyond the response (or a close requested): never reuse.
    close();
    return;
  }
  in_.clear();
  ++exchanges_;
  busy_ = false;
  idle_since_ = std::chrono::steady_clock::now();
}

// An idle keep-alive connection should not receive anything: readable means the upstream closed
// it (or misbehaves). Checked with one non-blocking peek, and only after a second of idleness: a
// watch (async_wait) on every idle connection cost an epoll_ctl per request, while a connection
// in steady use is never stale (and a stale one is still caught: a request without a body is
// sent again on a new connection).
bool H1Client::reusable() {
  if (!idle()) return false;
  if (std::chrono::steady_clock::now() - idle_since_ < std::chrono::seconds(1)) return true;
  char c;
  const ssize_t n = ::recv(t_->socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
  close();
  return false;
}

}  // namespace weft::http
