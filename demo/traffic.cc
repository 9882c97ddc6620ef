// weft-demo-traffic: the demo's load generator. Sends --rate GET requests per second over
// keep-alive HTTP/1.1 connections to weft-demo-web, spread over its routes with a mix that includes
// unknown ids (404s), until SIGTERM or SIGINT; prints a summary line every --summary-interval
// seconds. See demo/README.md. Single-threaded: one io_context runs every request.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "weft/http1/codec.h"

namespace weft::demo {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct TrafficOptions {
  std::string target = "http://web.demo.svc.cluster.local:80";
  double rate = 10;
  int max_connections = 16;
  int timeout_ms = 5000;
  int summary_interval_s = 10;
};

struct Window {
  uint64_t sent = 0, ok = 0, not_found = 0, client_error = 0, server_error = 0, errors = 0,
           skipped = 0;
  std::vector<double> latencies_ms;
};

class Generator {
 public:
  Generator(asio::io_context& io, TrafficOptions o, std::string host, std::string port)
      : io_(io),
        o_(std::move(o)),
        host_(std::move(host)),
        port_(std::move(port)),
        resolver_(io),
        rng_(std::random_device{}()) {}

  void start() {
    next_tick_ = Clock::now();
    next_summary_ = Clock::now() + std::chrono::seconds(o_.summary_interval_s);
    asio::co_spawn(io_, ticks(), asio::detached);
    asio::co_spawn(io_, summaries(), asio::detached);
  }

 private:
  // 20% "/", 50% "/books/1..14", 30% "/authors/1..6": books 13-14 and author 6 do not exist.
  std::string pickPath() {
    int r = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (r < 20) return "/";
    if (r < 70) return "/books/" + std::to_string(std::uniform_int_distribution<int>(1, 14)(rng_));
    return "/authors/" + std::to_string(std::uniform_int_distribution<int>(1, 6)(rng_));
  }

  asio::awaitable<void> ticks() {
    asio::steady_timer timer(io_);
    auto period =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o_.rate));
    for (;;) {
      next_tick_ += period;
      // After a stall (suspended process), do not fire a burst to catch up.
      if (next_tick_ < Clock::now() - std::chrono::seconds(1)) next_tick_ = Clock::now();
      timer.expires_at(next_tick_);
      co_await timer.async_wait(asio::use_awaitable);
      if (idle_.empty() && active_ >= o_.max_connections) {
        window_.skipped++;
        continue;
      }
      asio::co_spawn(io_, request(pickPath()), asio::detached);
    }
  }

  asio::awaitable<void> summaries() {
    asio::steady_timer timer(io_);
    for (;;) {
      timer.expires_at(next_summary_);
      co_await timer.async_wait(asio::use_awaitable);
      next_summary_ += std::chrono::seconds(o_.summary_interval_s);
      printSummary();
    }
  }

  void printSummary() {
    Window w = std::move(window_);
    window_ = Window{};
    std::sort(w.latencies_ms.begin(), w.latencies_ms.end());
    auto pct = [&](double q) {
      if (w.latencies_ms.empty()) return 0.0;
      return w.latencies_ms[std::min(
          w.latencies_ms.size() - 1,
          static_cast<size_t>(q * static_cast<double>(w.latencies_ms.size())))];
    };
    std::printf(
        "weft-demo-traffic: last %ds: %llu requests (%.1f/s): %llu 2xx, %llu 404, %llu other 4xx, "
        "%llu 5xx, %llu errors, %llu skipped; latency p50 %.1f ms, p99 %.1f ms\n",
        o_.summary_interval_s, static_cast<unsigned long long>(w.sent),
        static_cast<double>(w.sent) / o_.summary_interval_s, static_cast<unsigned long long>(w.ok),
        static_cast<unsigned long long>(w.not_found),
        static_cast<unsigned long long>(w.client_error),
        static_cast<unsigned long long>(w.server_error), static_cast<unsigned long long>(w.errors),
        static_cast<unsigned long long>(w.skipped), pct(0.5), pct(0.99));
    std::fflush(stdout);
  }

  asio::awaitable<std::shared_ptr<tcp::socket>> connection() {
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      co_return s;
    }
    // Resolved for every new connection: in a pod the name maps to the service's clusterIP.
    auto endpoints = co_await resolver_.async_resolve(host_, port_, asio::use_awaitable);
    auto s = std::make_shared<tcp::socket>(io_);
    co_await asio::async_connect(*s, endpoints, asio::use_awaitable);
    s->set_option(tcp::no_delay(true));
    co_return s;
  }

  // Returns the status, or 0 when the exchange failed. Puts a reusable connection back.
  asio::awaitable<int> exchange(std::shared_ptr<tcp::socket> s, const std::string& path) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host_ +
                      "\r\nUser-Agent: weft-demo-traffic\r\nAccept: text/html\r\n\r\n";
    co_await asio::async_write(*s, asio::buffer(req), asio::use_awaitable);
    http1::ResponseHeadParser parser("GET");
    std::string in;
    char buf[8192];
    http1::FeedResult r;
    for (;;) {
      size_t n = co_await s->async_read_some(asio::buffer(buf), asio::use_awaitable);
      r = parser.feed(std::string_view(buf, n));
      if (r.state == http1::ParseState::kError) co_return 0;
      if (r.state == http1::ParseState::kDone) {
        in.assign(buf + r.consumed, n - r.consumed);
        break;
      }
    }
    const http1::ResponseHead& head = parser.head();
    bool reusable = head.keep_alive;
    switch (head.framing.kind) {
      case http1::BodyFraming::Kind::kNone:
        break;
      case http1::BodyFraming::Kind::kContentLength:
        while (in.size() < head.framing.length) {
          size_t n = co_await s->async_read_some(asio::buffer(buf), asio::use_awaitable);
          in.append(buf, n);
        }
        if (in.size() != head.framing.length) reusable = false;
        break;
      case http1::BodyFraming::Kind::kChunked: {
        http1::ChunkedDecoder decoder;
        std::string body;
        for (;;) {
          auto c = decoder.feed(in, body);
          if (c.state == http1::ParseState::kError) co_return 0;
          if (c.state == http1::ParseState::kDone) {
            if (c.consumed != in.size()) reusable = false;
            break;
          }
          size_t n = co_await s->async_read_some(asio::buffer(buf), asio::use_awaitable);
          in.assign(buf, n);
        }
        break;
      }
      default: {  // close-delimited (or an upgrade we did not ask for): read to the end
        reusable = false;
        asio::error_code ec;
        while (!ec)
          co_await s->async_read_some(asio::buffer(buf),
                                      asio::redirect_error(asio::use_awaitable, ec));
        break;
      }
    }
    if (reusable) idle_.push_back(s);
    co_return head.status;
  }

  asio::awaitable<void> request(std::string path) {
    ++active_;
    window_.sent++;
    auto started = Clock::now();
    std::shared_ptr<tcp::socket> sock;
    asio::steady_timer deadline(io_);
    deadline.expires_after(std::chrono::milliseconds(o_.timeout_ms));
    auto timed_out = std::make_shared<bool>(false);
    int status = 0;
    try {
      sock = co_await connection();
      deadline.async_wait([sock, timed_out](asio::error_code ec) {
        if (ec) return;
        *timed_out = true;
        asio::error_code ignored;
        sock->close(ignored);
      });
      status = co_await exchange(sock, path);
    } catch (const std::system_error&) {
      status = 0;
    }
    deadline.cancel();
    if (*timed_out) status = 0;
    --active_;
    if (status == 0) {
      window_.errors++;
      co_return;
    }
    window_.latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - started).count());
    if (status < 400) {
      window_.ok++;
    } else if (status == 404) {
      window_.not_found++;
    } else if (status < 500) {
      window_.client_error++;
    } else {
      window_.server_error++;
    }
  }

  asio::io_context& io_;
  TrafficOptions o_;
  std::string host_, port_;
  tcp::resolver resolver_;
  std::mt19937 rng_;
  Clock::time_point next_tick_, next_summary_;
  std::vector<std::shared_ptr<tcp::socket>> idle_;
  int active_ = 0;
  Window window_;
};

}  // namespace
}  // namespace weft::demo

int main(int argc, char** argv) {
  using namespace weft::demo;
  TrafficOptions o;
  CLI::App cli{
      "weft-demo-traffic: the load generator of Weft's demo application. Sends --rate GET requests "
      "per second to weft-demo-web over keep-alive HTTP/1.1 connections: 20% \"/\", 50% "
      "\"/books/1..14\" and 30% \"/authors/1..6\" (books 13-14 and author 6 do not exist, so some "
      "answers are 404; the backends' injected failures make others 500). Runs until SIGTERM or "
      "SIGINT and prints a summary line every --summary-interval seconds.",
      "weft-demo-traffic"};
  cli.add_option("--target", o.target, "the web front end, http://HOST:PORT")
      ->envname("TARGET")
      ->capture_default_str();
  cli.add_option("--rate", o.rate, "requests per second")
      ->envname("RATE")
      ->check(CLI::Range(0.01, 10000.0))
      ->capture_default_str();
  cli.add_option("--connections", o.max_connections,
                 "most connections open at once; a request that finds none free is skipped")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cli.add_option("--timeout-ms", o.timeout_ms, "a request taking longer counts as an error")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  cli.add_option("--summary-interval", o.summary_interval_s, "seconds between summary lines")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  std::string rest = o.target;
  if (rest.starts_with("http://")) rest = rest.substr(7);
  rest = rest.substr(0, rest.find('/'));
  std::string host = rest, port = "80";
  if (auto colon = rest.rfind(':');
      colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || port.empty() || o.target.starts_with("https://")) {
    std::fprintf(stderr, "weft-demo-traffic: --target must be http://HOST[:PORT], not %s\n",
                 o.target.c_str());
    return 64;
  }

  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](asio::error_code ec, int sig) {
    if (ec) return;
    std::printf("weft-demo-traffic: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    io.stop();
  });
  Generator gen(io, o, host, port);
  std::printf("weft-demo-traffic: %.1f requests/s to http://%s:%s\n", o.rate, host.c_str(),
              port.c_str());
  std::fflush(stdout);
  gen.start();
  io.run();
  return 0;
}
