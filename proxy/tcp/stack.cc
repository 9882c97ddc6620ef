#include "proxy/tcp/stack.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <spdlog/spdlog.h>

#include <cstring>

#include "weft/detect/detect.h"
#include "weft/net/socket.h"

namespace weft::proxy {

using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

// Every awaited operation returns its error as a value: nothing on the data path throws.
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

std::string addrString(const tcp::endpoint& ep) {
  auto ip = net::unmapped(ep.address());
  return ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(ep.port())
                    : ip.to_string() + ":" + std::to_string(ep.port());
}

// One side of a proxied connection, as metrics see it: peer="src" is the side that connected
// to us, peer="dst" the side we connected to.
struct PeerStats {
  metrics::Labels labels;
  std::shared_ptr<metrics::Counter> read;
  std::shared_ptr<metrics::Counter> write;
  std::shared_ptr<metrics::Gauge> open;
  int err = 0;  // the errno this side failed with; 0 for a clean close or one we initiated

  void opened(ProxyMetrics& m, metrics::Labels l) {
    labels = std::move(l);
    m.tcp_open_total.get(labels)->inc();
    open = m.tcp_open_connections.get(labels);
    open->add();
    read = m.tcp_read_bytes_total.get(labels);
    write = m.tcp_write_bytes_total.get(labels);
  }
  void closed(ProxyMetrics& m) {
    if (!open) return;
    open->sub();
    auto l = labels;
    l.emplace_back("errno", net::errnoName(err));
    m.tcp_close_total.get(l)->inc();
  }
};

class Connection {
 public:
  Connection(tcp::socket client, const StackSettings& s, ProxyMetrics& m,
             std::shared_ptr<std::atomic<int64_t>> active)
      : client_(std::move(client)),
        server_(client_.get_executor()),
        settings_(s),
        metrics_(m),
        active_(std::move(active)) {
    active_->fetch_add(1);
  }
  ~Connection() {
    src_.closed(metrics_);
    dst_.closed(metrics_);
    active_->fetch_sub(1);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  tcp::socket client_;
  tcp::socket server_;
  const StackSettings& settings_;
  ProxyMetrics& metrics_;
  PeerStats src_;
  PeerStats dst_;
  std::shared_ptr<std::atomic<int64_t>> active_;

  // One side failed: remember its errno, and reset the other side so the failure propagates
  // the way it would without a proxy (an RST stays an RST). Closing both sockets also ends
  // the other direction's pending read.
  void fail(bool client_side, const asio::error_code& ec) {
    PeerStats& failed = client_side ? src_ : dst_;
    if (failed.err == 0 && ec.category() == asio::system_category()) failed.err = ec.value();
    net::setResetOnClose(client_side ? server_ : client_);
    asio::error_code ignored;
    client_.close(ignored);
    server_.close(ignored);
  }
};

metrics::Labels peerLabels(const StackSettings& s, std::string_view peer, const tcp::endpoint& target) {
  return {{"direction", std::string(directionName(s.direction))},
          {"peer", std::string(peer)},
          {"target_addr", addrString(target)},
          {"target_ip", net::unmapped(target.address()).to_string()},
          {"target_port", std::to_string(target.port())},
          {"tls", s.tls_label}};
}

metrics::Family<metrics::Counter>& errorsFamily(const StackSettings& s, ProxyMetrics& m) {
  return s.direction == Direction::kInbound ? m.inbound_tcp_errors_total
                                            : m.outbound_tcp_errors_total;
}

void countError(const StackSettings& s, ProxyMetrics& m, std::string_view error) {
  errorsFamily(s, m).get({{"error", std::string(error)}})->inc();
}

// A connection whose original destination is one of our own listeners would loop through us
// forever (each hop opening another connection to ourselves): refuse it.
bool isLoop(const StackSettings& s, const tcp::endpoint& target, const tcp::socket& client) {
  if (std::find(s.own_ports.begin(), s.own_ports.end(), target.port()) == s.own_ports.end()) {
    return false;
  }
  auto ip = net::unmapped(target.address());
  asio::error_code ec;
  auto local = client.local_endpoint(ec);
  return ip.is_loopback() || ip.is_unspecified() || (!ec && net::unmapped(local.address()) == ip);
}

// Moves bytes one way until EOF or error. Reads at most buffer_size, then writes it all before
// reading again: a slow reader on the far side stops us reading this side (backpressure), so
// per-connection memory is bounded by the two buffers.
asio::awaitable<void> pump(std::shared_ptr<Connection> c, bool from_client) {
  tcp::socket& from = from_client ? c->client_ : c->server_;
  tcp::socket& to = from_client ? c->server_ : c->client_;
  PeerStats& from_stats = from_client ? c->src_ : c->dst_;
  PeerStats& to_stats = from_client ? c->dst_ : c->src_;
  std::unique_ptr<char[]> buf(new char[c->settings_.buffer_size]);
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf.get(), c->settings_.buffer_size),
                                                 kAwait);
    if (n > 0) {
      from_stats.read->inc(n);
      auto [wec, written] = co_await asio::async_write(to, asio::buffer(buf.get(), n), kAwait);
      to_stats.write->inc(written);
      if (wec) {
        if (wec != asio::error::operation_aborted) c->fail(!from_client, wec);
        co_return;
      }
    }
    if (ec == asio::error::eof) {
      // Half-close: pass the FIN on and keep the other direction open.
      asio::error_code ignored;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (ec) {
      if (ec != asio::error::operation_aborted) c->fail(from_client, ec);
      co_return;
    }
  }
}

struct DetectOutcome {
  detect::Protocol protocol = detect::Protocol::kOpaque;
  std::string_view reason;  // detected | timeout | client_eof | opaque_port | limit
  bool client_eof = false;
  bool failed = false;  // the client failed during detection; the connection is over
};

asio::awaitable<DetectOutcome> detectProtocol(Connection& c, std::vector<uint8_t>& prefix,
                                              uint16_t target_port) {
  DetectOutcome out;
  if (c.settings_.opaque_ports.contains(target_port)) {
    out.reason = "opaque_port";
    co_return out;
  }
  asio::steady_timer timer(c.client_.get_executor());
  const auto deadline = Clock::now() + c.settings_.detect_timeout;
  prefix.resize(detect::kMaxDetectBytes);
  std::size_t len = 0;
  std::size_t checked = 0;  // prefix length at the last detect() call
  for (;;) {
    timer.expires_at(deadline);
    auto result = co_await (
        c.client_.async_read_some(asio::buffer(prefix.data() + len, prefix.size() - len), kAwait) ||
        timer.async_wait(kAwait));
    if (result.index() == 1) {
      // Timed out: not an error. Whatever was read is delivered intact; the rest is opaque TCP.
      out.reason = "timeout";
      break;
    }
    auto [ec, n] = std::get<0>(result);
    len += n;
    if (ec == asio::error::eof) {
      out.reason = "client_eof";
      out.client_eof = true;
      break;
    }
    if (ec) {
      c.fail(true, ec);
      out.failed = true;
      break;
    }
    // detect() re-reads the prefix from its start, so a client trickling one byte per read
    // could make detection quadratic. Re-run it only while the prefix is small, when it has
    // grown by an eighth since the last run, or when a line ended: total work stays linear, and
    // a decision is delayed only for a large, still-plausible prefix that stalls mid-line (the
    // detect timeout bounds that).
    const bool worth = len <= 1024 || (len - checked) * 8 >= checked ||
                       std::memchr(prefix.data() + len - n, '\n', n) != nullptr;
    if (worth) {
      checked = len;
      if (auto d = detect::detect({prefix.data(), len})) {
        out.protocol = d->protocol;
        out.reason = "detected";
        break;
      }
    }
    if (len == prefix.size()) {
      out.reason = "limit";
      break;
    }
  }
  prefix.resize(len);
  co_return out;
}

asio::awaitable<void> serve(std::shared_ptr<Connection> c) {
  const StackSettings& s = c->settings_;
  const auto accepted_at = Clock::now();
  asio::error_code ec;
  c->client_.set_option(tcp::no_delay(true), ec);

  // 1. Where the client meant to go.
  tcp::endpoint target;
  if (s.fixed_target) {
    target = *s.fixed_target;
  } else {
    auto od = net::originalDestination(c->client_);
    if (!od) {
      countError(s, c->metrics_, "no_original_dst");
      spdlog::debug("{}: no original destination: {}", directionName(s.direction), od.error().message());
      net::setResetOnClose(c->client_);
      co_return;
    }
    target = *od;
  }
  if (isLoop(s, target, c->client_)) {
    countError(s, c->metrics_, "loop");
    spdlog::warn("{}: refused a connection to {}, which is this proxy's own listener (loop)",
                 directionName(s.direction), addrString(target));
    net::setResetOnClose(c->client_);
    co_return;
  }
  c->src_.opened(c->metrics_, peerLabels(s, "src", target));

  // 2. What it speaks.
  std::vector<uint8_t> prefix;
  DetectOutcome detected = co_await detectProtocol(*c, prefix, target.port());
  if (!prefix.empty()) c->src_.read->inc(prefix.size());
  const std::string port_label = std::to_string(target.port());
  c->metrics_.protocol_detect_total
      .get({{"direction", std::string(directionName(s.direction))},
            {"target_port", port_label},
            {"protocol", std::string(detect::protocolName(detected.protocol))},
            {"reason", std::string(detected.reason)}})
      ->inc();
  if (detected.reason != "opaque_port") {
    c->metrics_.protocol_detect_duration_ms
        .get({{"direction", std::string(directionName(s.direction))}, {"target_port", port_label}})
        ->observe(std::chrono::duration<double, std::milli>(Clock::now() - accepted_at).count());
  }
  if (detected.failed) {
    countError(s, c->metrics_, "downstream_io");
    co_return;
  }

  // 3. Connect, bounded by the connect timeout.
  asio::steady_timer timer(c->client_.get_executor());
  timer.expires_after(s.connect_timeout);
  auto connected = co_await (c->server_.async_connect(target, kAwait) || timer.async_wait(kAwait));
  std::string_view connect_error;
  if (connected.index() == 1) {
    connect_error = "connect_timeout";
  } else if (auto [cec] = std::get<0>(connected); cec) {
    connect_error = cec == asio::error::connection_refused ? "connect_refused" : "connect_failed";
    spdlog::debug("{}: connect to {} failed: {}", directionName(s.direction), addrString(target),
                 cec.message());
  }
  if (!connect_error.empty()) {
    countError(s, c->metrics_, connect_error);
    // The client sees a reset, as it would have connecting directly to a dead port.
    net::setResetOnClose(c->client_);
    co_return;
  }
  c->server_.set_option(tcp::no_delay(true), ec);
  c->dst_.opened(c->metrics_, peerLabels(s, "dst", target));

  // 4. Forward: first the bytes detection read, then both directions until both are done.
  if (!prefix.empty()) {
    auto [wec, n] = co_await asio::async_write(c->server_, asio::buffer(prefix), kAwait);
    c->dst_.write->inc(n);
    if (wec) {
      c->fail(false, wec);
      co_return;
    }
  }
  std::vector<uint8_t>().swap(prefix);  // detection's buffer is not needed while forwarding
  auto executor = c->client_.get_executor();
  if (detected.client_eof) {
    c->server_.shutdown(tcp::socket::shutdown_send, ec);
  } else {
    asio::co_spawn(executor, pump(c, true), asio::detached);
  }
  asio::co_spawn(executor, pump(c, false), asio::detached);
}

}  // namespace

std::string_view directionName(Direction d) {
  return d == Direction::kInbound ? "inbound" : "outbound";
}

std::vector<tcp::endpoint> listenEndpoints(const config::HostPort& hp, bool ipv6) {
  auto ip = asio::ip::make_address(hp.host);
  std::vector<tcp::endpoint> out{{ip, hp.port}};
  if (ipv6 && ip.is_v4()) {
    if (ip.is_unspecified()) out.emplace_back(asio::ip::address_v6::any(), hp.port);
    if (ip.is_loopback()) out.emplace_back(asio::ip::address_v6::loopback(), hp.port);
  }
  return out;
}

struct TcpStack::Acceptor {
  explicit Acceptor(asio::io_context& ctx) : acceptor(ctx) {}
  tcp::acceptor acceptor;
};

TcpStack::TcpStack(StackSettings settings, ProxyMetrics& metrics)
    : settings_(std::move(settings)),
      metrics_(metrics),
      active_(std::make_shared<std::atomic<int64_t>>(0)) {}

TcpStack::~TcpStack() = default;

Status TcpStack::bind(asio::io_context& worker) {
  for (std::size_t i = 0; i < settings_.listen.size(); ++i) {
    const auto& ep = settings_.listen[i];
    auto a = std::make_shared<Acceptor>(worker);
    asio::error_code ec;
    a->acceptor.open(ep.protocol(), ec);
    if (!ec) a->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) {
      a->acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
    }
    if (!ec && ep.address().is_v6()) a->acceptor.set_option(asio::ip::v6_only(true), ec);
    if (!ec) a->acceptor.bind(ep, ec);
    if (!ec) a->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (i > 0) {
        // The implicit IPv6 twin is best effort: hosts without IPv6 still serve IPv4.
        spdlog::debug("{}: not listening on {}: {}", directionName(settings_.direction),
                      addrString(ep), ec.message());
        continue;
      }
      return Error::internal("listen_failed", std::string(directionName(settings_.direction)) +
                                                  " listener " + addrString(ep) + ": " +
                                                  ec.message());
    }
    acceptors_.push_back(std::move(a));
  }
  return okStatus();
}

void TcpStack::start() {
  for (auto& a : acceptors_) {
    asio::co_spawn(
        a->acceptor.get_executor(),
        [this, a]() -> asio::awaitable<void> {
          for (;;) {
            auto [ec, socket] = co_await a->acceptor.async_accept(kAwait);
            if (!a->acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
            if (ec) {
              // Out of descriptors or similar: count it, breathe, and keep serving.
              countError(settings_, metrics_, "accept_failed");
              spdlog::warn("{}: accept failed: {}", directionName(settings_.direction), ec.message());
              asio::steady_timer pause(a->acceptor.get_executor(), std::chrono::milliseconds(100));
              co_await pause.async_wait(kAwait);
              continue;
            }
            auto conn = std::make_shared<Connection>(std::move(socket), settings_, metrics_, active_);
            asio::co_spawn(a->acceptor.get_executor(), serve(std::move(conn)), asio::detached);
          }
        },
        asio::detached);
  }
}

void TcpStack::stopAccepting() {
  for (auto& a : acceptors_) {
    asio::post(a->acceptor.get_executor(), [a] {
      asio::error_code ignored;
      a->acceptor.close(ignored);
    });
  }
}

}  // namespace weft::proxy
