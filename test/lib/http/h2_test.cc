// The HTTP/2 server and client sides against each other over a loopback TCP pair, in one
// io_context.
#include "weft/http/h2.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

namespace weft::http {
namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

struct Drained {
  std::string data;
  Body::Kind kind = Body::Kind::kData;
  Fields trailers;
  std::string error;
};

asio::awaitable<Drained> readAll(std::shared_ptr<Body> b) {
  Drained d;
  for (;;) {
    auto c = co_await b->read();
    if (c.kind == Body::Kind::kData) {
      d.data += c.data;
      continue;
    }
    d.kind = c.kind;
    d.trailers = std::move(c.trailers);
    d.error = std::move(c.error);
    co_return d;
  }
}

asio::awaitable<void> sleepFor(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kAwait);
}

// Polls `cond` every 5ms for at most `limit`.
asio::awaitable<bool> waitUntil(std::function<bool()> cond, std::chrono::milliseconds limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    co_await sleepFor(5ms);
  }
  co_return true;
}

// Pushes `data` into `b` in 64 KiB pieces, respecting backpressure, then finishes it.
asio::awaitable<void> produce(std::shared_ptr<Body> b, std::string data, Fields trailers = {}) {
  std::size_t off = 0;
  while (off < data.size()) {
    if (!co_await b->waitWritable()) co_return;
    std::size_t n = std::min<std::size_t>(64 * 1024, data.size() - off);
    b->push(std::string_view(data).substr(off, n));
    off += n;
  }
  b->finish(std::move(trailers));
}

Request makeRequest(asio::any_io_executor ex, std::string method, std::string path) {
  Request r;
  r.head.method = std::move(method);
  r.head.path = std::move(path);
  r.head.authority = "svc.test";
  r.head.end_stream = true;
  r.body = Body::empty(ex);
  return r;
}

Response textResponse(asio::any_io_executor ex, int status, std::string text) {
  Response r;
  r.head.status = status;
  r.body = std::make_shared<Body>(ex);
  r.body->push(text);
  r.body->finish();
  return r;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

class H2Test : public ::testing::Test {
 protected:
  void start(Handler handler) {
    tcp::acceptor acceptor(ioc_, {asio::ip::address_v4::loopback(), 0});
    tcp::socket cs(ioc_);
    cs.connect(acceptor.local_endpoint());
    server_sock_.emplace(acceptor.accept());
    server_stream_ = std::make_unique<PlainStream>(*server_sock_);
    asio::co_spawn(
        ioc_,
        [this, handler]() -> asio::awaitable<void> {
          H2Hooks hooks{[this](std::string_view e) { server_errors_.emplace_back(e); }};
          auto st = co_await serveH2(*server_stream_, "", settings_, handler, hooks, drain_);
          serve_result_.emplace(std::move(st));
        },
        asio::detached);
    auto t = std::make_unique<Transport>(std::move(cs));
    t->ready();
    client_ = H2Client::start(std::move(t), settings_,
                              H2Hooks{[this](std::string_view e) { client_errors_.emplace_back(e); }});
  }

  // Runs `body`, then drops the client (graceful shutdown) and runs until both sides are done.
  void run(std::function<asio::awaitable<void>()> body) {
    bool done = false;
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
          client_.reset();
        },
        asio::detached);
    ioc_.run_for(60s);
    EXPECT_TRUE(done) << "test body did not finish";
    EXPECT_TRUE(serve_result_.has_value()) << "serveH2 did not return";
    EXPECT_TRUE(ioc_.stopped()) << "work left behind";
  }

  asio::any_io_executor ex() { return ioc_.get_executor(); }

  asio::io_context ioc_;
  H2Settings settings_;
  std::shared_ptr<DrainSignal> drain_ = std::make_shared<DrainSignal>();
  std::optional<tcp::socket> server_sock_;
  std::unique_ptr<PlainStream> server_stream_;
  std::shared_ptr<H2Client> client_;
  std::optional<Status> serve_result_;
  std::vector<std::string> server_errors_;
  std::vector<std::string> client_errors_;
};

TEST_F(H2Test, GetWithoutBody) {
  std::optional<RequestHead> seen;
  start([&](Request req) -> asio::awaitable<Response> {
    seen = req.head;
    auto body = co_await readAll(req.body);
    EXPECT_EQ(body.kind, Body::Kind::kEnd);
    Response r = textResponse(ex(), 200, "hello");
    r.head.headers = {{"X-Answer", "42"}, {"Connection", "close"}};
    co_return r;
  });
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "GET", "/a/b?c=d");
    req.head.headers = {{"X-Custom", "v1"}, {"Keep-Alive", "5"}, {"accept", "*/*"}};
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    EXPECT_EQ(rsp->head.status, 200);
    EXPECT_EQ(rsp->head.headers, (Fields{{"x-answer", "42"}}));
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.data, "hello");
    EXPECT_EQ(body.kind, Body::Kind::kEnd);
  });
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->method, "GET");
  EXPECT_EQ(seen->scheme, "http");
  EXPECT_EQ(seen->authority, "svc.test");
  EXPECT_EQ(seen->path, "/a/b?c=d");
  EXPECT_EQ(seen->proto, Proto::kHttp2);
  EXPECT_TRUE(seen->end_stream);
  EXPECT_EQ(seen->headers, (Fields{{"x-custom", "v1"}, {"accept", "*/*"}}));
  EXPECT_TRUE(serve_result_->ok());
  EXPECT_TRUE(server_errors_.empty());
  EXPECT_TRUE(client_errors_.empty());
}

// The handler streams the request body back as it arrives.
Handler echoHandler(asio::any_io_executor ex) {
  return [ex](Request req) -> asio::awaitable<Response> {
    Response r;
    r.head.status = 200;
    r.body = std::make_shared<Body>(ex);
    asio::co_spawn(
        ex,
        [in = req.body, out = r.body]() -> asio::awaitable<void> {
          for (;;) {
            auto c = co_await in->read();
            if (c.kind == Body::Kind::kData) {
              out->push(c.data);
              if (!co_await out->waitWritable()) {
                in->cancel();
                co_return;
              }
              continue;
            }
            if (c.kind == Body::Kind::kEnd) {
              out->finish(std::move(c.trailers));
            } else {
              out->abort(c.error);
            }
            co_return;
          }
        },
        asio::detached);
    co_return r;
  };
}

TEST_F(H2Test, PostEchoesFiveMebibytes) {
  start(echoHandler(ex()));
  const std::string payload = pattern(5 * 1024 * 1024);
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "POST", "/echo");
    req.head.end_stream = false;
    req.body = std::make_shared<Body>(ex());
    asio::co_spawn(ex(), produce(req.body, payload), asio::detached);
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.kind, Body::Kind::kEnd);
    EXPECT_EQ(body.data.size(), payload.size());
    EXPECT_TRUE(body.data == payload);
  });
  EXPECT_TRUE(serve_result_->ok());
}

TEST_F(H2Test, TrailersBothWays) {
  Fields req_trailers;
  std::string req_data;
  start([&](Request req) -> asio::awaitable<Response> {
    auto in = co_await readAll(req.body);
    req_data = in.data;
    req_trailers = in.trailers;
    Response r;
    r.head.status = 200;
    r.head.headers = {{"content-type", "application/grpc"}};
    r.body = std::make_shared<Body>(ex());
    r.body->push("\0\0\0\0\3abc");
    r.body->finish({{"grpc-status", "0"}, {"grpc-message", "ok"}});
    co_return r;
  });
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "POST", "/pkg.Svc/Method");
    req.head.headers = {{"content-type", "application/grpc"}};
    req.head.end_stream = false;
    req.body = std::make_shared<Body>(ex());
    req.body->push("request");
    req.body->finish({{"x-req-trailer", "1"}});
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    EXPECT_FALSE(rsp->head.end_stream);
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.kind, Body::Kind::kEnd);
    EXPECT_EQ(body.data, std::string("\0\0\0\0\3abc"));
    EXPECT_EQ(body.trailers, (Fields{{"grpc-status", "0"}, {"grpc-message", "ok"}}));
  });
  EXPECT_EQ(req_data, "request");
  EXPECT_EQ(req_trailers, (Fields{{"x-req-trailer", "1"}}));
}

TEST_F(H2Test, TrailersOnlyResponse) {
  start([&](Request) -> asio::awaitable<Response> {
    Response r;
    r.head.status = 200;
    r.head.headers = {{"content-type", "application/grpc"}};
    r.body = std::make_shared<Body>(ex());
    r.body->finish({{"grpc-status", "5"}});
    co_return r;
  });
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "POST", "/pkg.Svc/Missing");
    req.head.headers = {{"content-type", "application/grpc"}};
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.kind, Body::Kind::kEnd);
    EXPECT_EQ(body.data, "");
    EXPECT_EQ(body.trailers, (Fields{{"grpc-status", "5"}}));
  });
}

TEST_F(H2Test, FiftyConcurrentStreams) {
  int in_flight = 0;
  int max_in_flight = 0;
  start([&](Request req) -> asio::awaitable<Response> {
    ++in_flight;
    max_in_flight = std::max(max_in_flight, in_flight);
    co_await sleepFor(20ms);  // so that they overlap
    --in_flight;
    co_return textResponse(ex(), 200, "path=" + req.head.path);
  });
  int ok = 0;
  run([&]() -> asio::awaitable<void> {
    int done = 0;
    for (int i = 0; i < 50; ++i) {
      asio::co_spawn(
          ex(),
          [&, i]() -> asio::awaitable<void> {
            auto rsp = co_await client_->send(makeRequest(ex(), "GET", "/s/" + std::to_string(i)));
            if (rsp.ok()) {
              auto body = co_await readAll(rsp->body);
              if (body.data == "path=/s/" + std::to_string(i)) ++ok;
            }
            ++done;
          },
          asio::detached);
    }
    co_await waitUntil([&] { return done == 50; }, 20s);
  });
  EXPECT_EQ(ok, 50);
  EXPECT_GT(max_in_flight, 1);
}

TEST_F(H2Test, RequestBodyIsBoundedByFlowControlWindow) {
  settings_.initial_stream_window = 64 * 1024;
  std::shared_ptr<Body> held;
  asio::steady_timer gate(ioc_, asio::steady_timer::time_point::max());
  start([&](Request req) -> asio::awaitable<Response> {
    held = req.body;  // never read
    co_await gate.async_wait(kAwait);
    held->cancel();
    co_return textResponse(ex(), 200, "done");
  });
  std::shared_ptr<Body> upload;
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "POST", "/upload");
    req.head.end_stream = false;
    req.body = std::make_shared<Body>(ex());
    upload = req.body;
    asio::co_spawn(ex(), produce(req.body, pattern(4 * 1024 * 1024)), asio::detached);
    asio::co_spawn(
        ex(),
        [&]() -> asio::awaitable<void> {
          // Wait until the upload stalls: nothing more reaches the server for 200ms.
          co_await waitUntil([&] { return held != nullptr; });
          std::size_t last = 0;
          int stable = 0;
          while (stable < 40) {
            co_await sleepFor(5ms);
            stable = held->buffered() == last ? stable + 1 : 0;
            last = held->buffered();
          }
          EXPECT_GT(held->buffered(), 0u);
          EXPECT_LE(held->buffered(), settings_.initial_stream_window);
          EXPECT_LT(upload->bytesPushed(), 4u * 1024 * 1024);
          gate.cancel();
        },
        asio::detached);
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.data, "done");
    // The server answered without reading it all: the upload is cancelled.
    EXPECT_TRUE(co_await waitUntil([&] { return upload->cancelled(); }));
  });
}

TEST_F(H2Test, ResponseBodyAbortResetsClientStream) {
  start([&](Request) -> asio::awaitable<Response> {
    Response r;
    r.head.status = 200;
    r.body = std::make_shared<Body>(ex());
    r.body->push("partial");
    asio::co_spawn(
        ex(),
        [b = r.body]() -> asio::awaitable<void> {
          co_await sleepFor(20ms);
          b->abort("upstream_reset");
        },
        asio::detached);
    co_return r;
  });
  run([&]() -> asio::awaitable<void> {
    auto rsp = co_await client_->send(makeRequest(ex(), "GET", "/"));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    auto body = co_await readAll(rsp->body);
    EXPECT_EQ(body.data, "partial");
    EXPECT_EQ(body.kind, Body::Kind::kAbort);
    EXPECT_EQ(body.error, "stream_reset");
  });
}

TEST_F(H2Test, ClientCancelResetsServerStream) {
  std::shared_ptr<Body> server_req;
  std::shared_ptr<Body> server_rsp;
  std::optional<Drained> server_read;
  start([&](Request req) -> asio::awaitable<Response> {
    server_req = req.body;
    Response r;
    r.head.status = 200;
    r.body = std::make_shared<Body>(ex());
    server_rsp = r.body;
    asio::co_spawn(
        ex(),
        [b = r.body]() -> asio::awaitable<void> {
          while (co_await b->waitWritable()) {  // an endless stream
            b->push(std::string(1024, 'x'));
            co_await sleepFor(1ms);
          }
        },
        asio::detached);
    asio::co_spawn(
        ex(), [&, in = req.body]() -> asio::awaitable<void> { server_read = co_await readAll(in); },
        asio::detached);
    co_return r;
  });
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "POST", "/stream");
    req.head.end_stream = false;
    req.body = std::make_shared<Body>(ex());
    req.body->push("open");  // never finished
    auto upload = req.body;
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (!rsp.ok()) co_return;
    auto first = co_await rsp->body->read();
    EXPECT_EQ(first.kind, Body::Kind::kData);
    rsp->body->cancel();
    EXPECT_TRUE(co_await waitUntil([&] { return server_read.has_value(); }));
    EXPECT_TRUE(co_await waitUntil([&] { return server_rsp->cancelled(); }));
    EXPECT_TRUE(co_await waitUntil([&] { return upload->cancelled(); }));
    EXPECT_EQ(client_->activeStreams(), 0u);
  });
  ASSERT_TRUE(server_read);
  EXPECT_EQ(server_read->kind, Body::Kind::kAbort);
  EXPECT_EQ(server_read->error, "stream_reset");
  EXPECT_EQ(server_read->data, "open");
}

TEST_F(H2Test, PeerCloseFailsPendingSend) {
  bool handler_started = false;
  asio::steady_timer gate(ioc_, asio::steady_timer::time_point::max());
  start([&](Request) -> asio::awaitable<Response> {
    handler_started = true;
    co_await gate.async_wait(kAwait);
    co_return textResponse(ex(), 200, "late");
  });
  run([&]() -> asio::awaitable<void> {
    asio::co_spawn(
        ex(),
        [&]() -> asio::awaitable<void> {
          co_await waitUntil([&] { return handler_started; });
          server_stream_->close(false);
        },
        asio::detached);
    auto rsp = co_await client_->send(makeRequest(ex(), "GET", "/slow"));
    EXPECT_FALSE(rsp.ok());
    if (!rsp.ok()) {
      EXPECT_EQ(rsp.error().kind, "connection_lost");
    }
    EXPECT_TRUE(client_->closed());
    auto again = co_await client_->send(makeRequest(ex(), "GET", "/"));
    EXPECT_FALSE(again.ok());
    gate.cancel();  // the handler returns into a dead connection
  });
}

TEST_F(H2Test, DrainSendsGoawayAndFinishesOpenStreams) {
  asio::steady_timer gate(ioc_, asio::steady_timer::time_point::max());
  start([&](Request req) -> asio::awaitable<Response> {
    if (req.head.path == "/slow") co_await gate.async_wait(kAwait);
    co_return textResponse(ex(), 200, "ok " + req.head.path);
  });
  run([&]() -> asio::awaitable<void> {
    auto first = co_await client_->send(makeRequest(ex(), "GET", "/first"));
    EXPECT_TRUE(first.ok());
    EXPECT_TRUE(client_->available());
    std::optional<Result<Response>> slow;
    std::string slow_body;
    asio::co_spawn(
        ex(),
        [&]() -> asio::awaitable<void> {
          auto r = co_await client_->send(makeRequest(ex(), "GET", "/slow"));
          if (r.ok()) slow_body = (co_await readAll(r->body)).data;
          slow.emplace(std::move(r));
        },
        asio::detached);
    co_await sleepFor(20ms);
    drain_->draining = true;
    drain_->notify();
    EXPECT_TRUE(co_await waitUntil([&] { return !client_->available(); }));
    auto refused = co_await client_->send(makeRequest(ex(), "GET", "/after"));
    EXPECT_FALSE(refused.ok());
    if (!refused.ok()) {
      EXPECT_EQ(refused.error().kind, "refused_stream");
    }
    gate.cancel();  // the open stream still completes
    EXPECT_TRUE(co_await waitUntil([&] { return slow.has_value(); }));
    EXPECT_TRUE(slow && slow->ok());
    EXPECT_EQ(slow_body, "ok /slow");
    EXPECT_TRUE(co_await waitUntil([&] { return serve_result_.has_value(); }));
  });
  EXPECT_TRUE(serve_result_->ok());
}

TEST_F(H2Test, IdleTimeoutClosesConnection) {
  settings_.idle_timeout = 100ms;
  start([&](Request) -> asio::awaitable<Response> { co_return textResponse(ex(), 204, ""); });
  run([&]() -> asio::awaitable<void> {
    auto rsp = co_await client_->send(makeRequest(ex(), "GET", "/"));
    EXPECT_TRUE(rsp.ok());
    EXPECT_TRUE(co_await waitUntil([&] { return serve_result_.has_value(); }, 5s));
    EXPECT_TRUE(co_await waitUntil([&] { return client_->closed(); }, 5s));
  });
  EXPECT_TRUE(serve_result_->ok());
}

TEST_F(H2Test, OversizedHeaderListGets431) {
  settings_.max_header_list_size = 16 * 1024;
  bool called = false;
  start([&](Request) -> asio::awaitable<Response> {
    called = true;
    co_return textResponse(ex(), 200, "");
  });
  run([&]() -> asio::awaitable<void> {
    Request req = makeRequest(ex(), "GET", "/");
    req.head.headers = {{"x-big", std::string(40 * 1024, 'b')}};
    auto rsp = co_await client_->send(std::move(req));
    EXPECT_TRUE(rsp.ok());
    if (rsp.ok()) {
      EXPECT_EQ(rsp->head.status, 431);
    }
  });
  EXPECT_FALSE(called);
  EXPECT_EQ(server_errors_, std::vector<std::string>{"header_list_too_large"});
}

// CVE-2023-44487: a raw nghttp2 client opens streams and resets each at once.
TEST_F(H2Test, RapidResetGetsGoaway) {
  settings_.max_early_resets = 5;
  int handled = 0;
  tcp::acceptor acceptor(ioc_, {asio::ip::address_v4::loopback(), 0});
  tcp::socket cs(ioc_);
  cs.connect(acceptor.local_endpoint());
  server_sock_.emplace(acceptor.accept());
  server_stream_ = std::make_unique<PlainStream>(*server_sock_);
  Handler handler = [&](Request) -> asio::awaitable<Response> {
    ++handled;
    co_return textResponse(ex(), 200, "");
  };
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        H2Hooks hooks{[this](std::string_view e) { server_errors_.emplace_back(e); }};
        serve_result_.emplace(co_await serveH2(*server_stream_, "", settings_, handler, hooks));
      },
      asio::detached);
  std::string wire;
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(
      cbs, [](nghttp2_session*, const uint8_t* data, size_t len, int, void* user) -> ssize_t {
        static_cast<std::string*>(user)->append(reinterpret_cast<const char*>(data), len);
        return static_cast<ssize_t>(len);
      });
  nghttp2_session* session = nullptr;
  nghttp2_session_client_new(&session, cbs, &wire);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  auto nv = [](const char* n, const char* v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v)), strlen(n), strlen(v),
                      NGHTTP2_NV_FLAG_NONE};
  };
  nghttp2_nv hdrs[] = {nv(":method", "GET"), nv(":scheme", "http"), nv(":authority", "a"),
                       nv(":path", "/")};
  for (int i = 0; i < 20; ++i) {
    int32_t id = nghttp2_submit_request(session, nullptr, hdrs, 4, nullptr, nullptr);
    nghttp2_session_send(session);
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    nghttp2_session_send(session);
  }
  nghttp2_session_del(session);
  bool eof = false;
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        co_await asio::async_write(cs, asio::buffer(wire), kAwait);
        char buf[4096];
        for (;;) {
          auto [ec, n] = co_await cs.async_read_some(asio::buffer(buf), kAwait);
          if (ec) break;
        }
        eof = true;
        cs.close();
      },
      asio::detached);
  ioc_.run_for(20s);
  EXPECT_TRUE(eof);
  ASSERT_TRUE(serve_result_);
  EXPECT_FALSE(serve_result_->ok());
  if (!serve_result_->ok()) {
    EXPECT_EQ(serve_result_->error().kind, "rapid_reset");
  }
  EXPECT_NE(std::find(server_errors_.begin(), server_errors_.end(), "rapid_reset"), server_errors_.end());
  EXPECT_EQ(handled, 0);
}

// Interop: the Debian `nghttp` client against serveH2.
TEST(H2Interop, NghttpClient) {
  if (std::system("command -v nghttp >/dev/null 2>&1") != 0) GTEST_SKIP() << "nghttp not installed";
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, {asio::ip::address_v4::loopback(), 0});
  const auto port = acceptor.local_endpoint().port();
  std::optional<Status> result;
  std::optional<tcp::socket> sock;
  std::unique_ptr<PlainStream> stream;
  acceptor.async_accept([&](asio::error_code ec, tcp::socket s) {
    ASSERT_FALSE(ec);
    sock.emplace(std::move(s));
    stream = std::make_unique<PlainStream>(*sock);
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          Handler h = [&](Request req) -> asio::awaitable<Response> {
            auto in = co_await readAll(req.body);
            Response r;
            r.head.status = 200;
            r.body = std::make_shared<Body>(ioc.get_executor());
            r.body->push("got " + std::to_string(in.data.size()) + " bytes for " + req.head.path);
            r.body->finish();
            co_return r;
          };
          result = co_await serveH2(*stream, "", H2Settings{}, h);
        },
        asio::detached);
  });
  std::string out;
  std::thread client([&] {
    std::string cmd = "printf 'hello' > /tmp/weft_h2_interop_body.txt && nghttp -d "
                      "/tmp/weft_h2_interop_body.txt http://127.0.0.1:" +
                      std::to_string(port) + "/interop 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[256];
    while (p && fgets(buf, sizeof(buf), p)) out += buf;
    if (p) pclose(p);
  });
  ioc.run_for(20s);
  client.join();
  EXPECT_NE(out.find("got 5 bytes for /interop"), std::string::npos) << out;
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->ok());
}

}  // namespace
}  // namespace weft::http
