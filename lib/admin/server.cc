#include "weft/admin/server.h"

#include <http_parser.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <spdlog/spdlog.h>

#include "weft/net/socket.h"

namespace weft::admin {

using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxRequestBytes = 64 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(60);

// Request parsing uses Debian's http-parser (the parser Node.js used for a decade): the admin
// port is reachable from the pod network, so its input is untrusted and a well-fuzzed parser
// beats a hand-written one.
struct Request {
  std::string method;
  std::string path;
  std::string body;
  bool complete = false;
  bool keep_alive = true;
};

struct ParserState {
  http_parser parser{};
  http_parser_settings settings{};
  Request req;
  std::string url;
};

int onUrl(http_parser* p, const char* at, size_t len) {
  auto* s = static_cast<ParserState*>(p->data);
  s->url.append(at, len);
  return s->url.size() > 8192 ? 1 : 0;
}
int onBody(http_parser* p, const char* at, size_t len) {
  auto* s = static_cast<ParserState*>(p->data);
  s->req.body.append(at, len);
  return s->req.body.size() > 4096 ? 1 : 0;
}
int onComplete(http_parser* p) {
  auto* s = static_cast<ParserState*>(p->data);
  s->req.method = http_method_str(static_cast<http_method>(p->method));
  s->req.keep_alive = http_should_keep_alive(p) != 0;
  auto q = s->url.find('?');
  s->req.path = s->url.substr(0, q);
  s->req.complete = true;
  http_parser_pause(p, 1);  // one request at a time; the rest stays buffered
  return 0;
}

std::string response(int status, std::string_view reason, std::string_view content_type,
                     std::string_view body, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  out += "content-type: " + std::string(content_type) + "\r\n";
  out += "content-length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) out += "connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace

struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
  State(asio::io_context& c, metrics::Registry& r, AdminHooks h)
      : ctx(c), registry(r), hooks(std::move(h)), acceptor(c) {}
  asio::io_context& ctx;
  metrics::Registry& registry;
  AdminHooks hooks;
  tcp::acceptor acceptor;

  std::string handle(const Request& req, const tcp::endpoint& peer) {
    const bool local = net::isLoopback(peer.address());
    const bool ka = req.keep_alive;
    const std::string text = "text/plain; charset=utf-8";
    if (req.path == "/metrics") {
      if (req.method != "GET" && req.method != "HEAD") return response(405, "Method Not Allowed", text, "use GET\n", ka);
      return response(200, "OK", "text/plain; version=0.0.4", registry.render(), ka);
    }
    if (req.path == "/live") return response(200, "OK", text, "live\n", ka);
    if (req.path == "/ready") {
      return hooks.ready() ? response(200, "OK", text, "ready\n", ka)
                           : response(503, "Service Unavailable", text, "not ready\n", ka);
    }
    if (req.path == "/shutdown") {
      if (!local) return response(403, "Forbidden", text, "shutdown is only allowed from loopback\n", ka);
      if (req.method != "POST") return response(405, "Method Not Allowed", text, "use POST\n", ka);
      spdlog::info("shutdown requested through the admin server");
      hooks.shutdown();
      return response(200, "OK", text, "shutdown\n", false);
    }
    if (req.path == "/proxy-log-level") {
      if (!local) return response(403, "Forbidden", text, "the log level can only be read or set from loopback\n", ka);
      if (req.method == "GET") return response(200, "OK", text, hooks.log_level() + "\n", ka);
      if (req.method == "PUT") {
        std::string level = req.body;
        while (!level.empty() && std::isspace(static_cast<unsigned char>(level.back()))) level.pop_back();
        auto st = hooks.set_log_level(level);
        if (!st) return response(400, "Bad Request", text, st.error().context + "\n", ka);
        spdlog::info("log level set to {} through the admin server", level);
        return response(200, "OK", text, level + "\n", ka);
      }
      return response(405, "Method Not Allowed", text, "use GET or PUT\n", ka);
    }
    return response(404, "Not Found", text, "not found; try /metrics, /live, /ready\n", ka);
  }

  asio::awaitable<void> serveConnection(tcp::socket socket) {
    asio::error_code ec;
    auto peer = socket.remote_endpoint(ec);
    if (ec) co_return;
    ParserState ps;
    ps.parser.data = &ps;
    http_parser_settings_init(&ps.settings);
    ps.settings.on_url = onUrl;
    ps.settings.on_body = onBody;
    ps.settings.on_message_complete = onComplete;
    http_parser_init(&ps.parser, HTTP_REQUEST);
    ps.parser.data = &ps;
    std::string pending;
    std::array<char, 4096> buf{};
    asio::steady_timer timer(socket.get_executor());
    std::size_t request_bytes = 0;
    for (;;) {
      // Serve every complete request already buffered (pipelining), then read more.
      while (!pending.empty() || ps.req.complete) {
        if (!ps.req.complete) {
          std::size_t used = http_parser_execute(&ps.parser, &ps.settings, pending.data(), pending.size());
          request_bytes += used;
          pending.erase(0, used);
          if (HTTP_PARSER_ERRNO(&ps.parser) != HPE_OK && HTTP_PARSER_ERRNO(&ps.parser) != HPE_PAUSED) {
            auto out = response(400, "Bad Request", "text/plain", "malformed request\n", false);
            co_await asio::async_write(socket, asio::buffer(out), kAwait);
            co_return;
          }
          if (!ps.req.complete) break;
        }
        auto out = handle(ps.req, peer);
        auto [wec, n] = co_await asio::async_write(socket, asio::buffer(out), kAwait);
        if (wec || !ps.req.keep_alive) co_return;
        ps.req = Request{};
        ps.url.clear();
        request_bytes = 0;
        http_parser_pause(&ps.parser, 0);
      }
      if (request_bytes + pending.size() > kMaxRequestBytes) {
        auto out = response(431, "Request Header Fields Too Large", "text/plain", "request too large\n", false);
        co_await asio::async_write(socket, asio::buffer(out), kAwait);
        co_return;
      }
      timer.expires_after(kIdleTimeout);
      auto r = co_await (socket.async_read_some(asio::buffer(buf), kAwait) || timer.async_wait(kAwait));
      if (r.index() == 1) co_return;
      auto [rec, n] = std::get<0>(r);
      if (rec) co_return;
      pending.append(buf.data(), n);
    }
  }
};

void useSpdlogLevel(AdminHooks& hooks) {
  hooks.log_level = [] {
    auto sv = spdlog::level::to_string_view(spdlog::get_level());
    return std::string(sv.data(), sv.size());
  };
  hooks.set_log_level = [](const std::string& level) -> Status {
    auto l = spdlog::level::from_str(level);
    if (l == spdlog::level::off && level != "off") {
      return Error::downstream("bad_level", "unknown log level \"" + level +
                                                "\"; use trace, debug, info, warn, error or off");
    }
    spdlog::set_level(l);
    return okStatus();
  };
}

AdminServer::AdminServer(asio::io_context& ctx, metrics::Registry& registry, AdminHooks hooks)
    : state_(std::make_shared<State>(ctx, registry, std::move(hooks))) {}

AdminServer::~AdminServer() = default;

Status AdminServer::listen(const tcp::endpoint& ep) {
  asio::error_code ec;
  auto& a = state_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(128, ec);
  if (ec) {
    return Error::internal("listen_failed", "admin listener " + ep.address().to_string() + ":" +
                                                std::to_string(ep.port()) + ": " + ec.message());
  }
  return okStatus();
}

void AdminServer::start() {
  auto st = state_;
  asio::co_spawn(
      st->ctx,
      [st]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await st->acceptor.async_accept(kAwait);
          if (!st->acceptor.is_open()) co_return;
          if (ec) {
            asio::steady_timer pause(st->ctx, std::chrono::milliseconds(100));
            co_await pause.async_wait(kAwait);
            continue;
          }
          asio::co_spawn(st->ctx, st->serveConnection(std::move(socket)), asio::detached);
        }
      },
      asio::detached);
}

void AdminServer::stop() {
  asio::error_code ignored;
  state_->acceptor.close(ignored);
}

}  // namespace weft::admin
