#include "proxy/tcp/stack.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>
#include <random>
#include <unordered_map>

#include "proxy/discovery/destination_client.h"
#include "proxy/http/http_proxy.h"
#include "weft/detect/detect.h"
#include "weft/http/stream.h"
#include "weft/net/socket.h"
#include "weft/tls/context.h"
#include "weft/tls/tls_socket.h"
#include "weft/tls/transport_header.h"

namespace weft::proxy {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::string addrString(const tcp::endpoint& ep) {
  auto ip = net::unmapped(ep.address());
  return ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(ep.port())
                    : ip.to_string() + ":" + std::to_string(ep.port());
}

namespace {

// Every awaited operation returns its error as a value: nothing on the data path throws.
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

constexpr std::array kDetectReasons = {"detected", "timeout", "client_eof", "opaque_port", "limit"};
enum DetectReason { kDetected, kTimeout, kClientEof, kOpaquePort, kLimit };
constexpr std::size_t kProtocols = 4;


// The series of one peer of one target. Resolved once per target per worker (see TargetCache),
// so opening a connection costs no label formatting and no lock.
struct PeerSeries {
  metrics::Labels labels;
  std::shared_ptr<metrics::Counter> open_total;
  std::shared_ptr<metrics::Gauge> open;
  std::shared_ptr<metrics::Counter> read;
  std::shared_ptr<metrics::Counter> write;
  std::shared_ptr<metrics::Counter> close_clean;  // errno=""; other errnos are looked up at close

  PeerSeries(ProxyMetrics& m, metrics::Labels l) : labels(std::move(l)) {
    open_total = m.tcp_open_total.get(labels);
    open = m.tcp_open_connections.get(labels);
    read = m.tcp_read_bytes_total.get(labels);
    write = m.tcp_write_bytes_total.get(labels);
    auto closed = labels;
    closed.emplace_back("errno", "");
    close_clean = m.tcp_close_total.get(closed);
  }
};

struct TargetSeries {
  PeerSeries src;
  PeerSeries dst;
  Clock::time_point used;
};

metrics::Labels peerLabels(const StackSettings& s, std::string_view peer, const tcp::endpoint& target,
                           const TlsLabels& tls) {
  metrics::Labels l{{"direction", std::string(directionName(s.direction))},
                    {"peer", std::string(peer)},
                    {"target_addr", addrString(target)},
                    {"target_ip", net::unmapped(target.address()).to_string()},
                    {"target_port", std::to_string(target.port())}};
  l.insert(l.end(), tls.begin(), tls.end());
  return l;
}

}  // namespace

// Per worker, per stack: the metric series of recently seen targets. Touched only by its worker's
// thread, so it needs no lock. Entries unused for a while are dropped so the registry can expire
// their series (SPEC: series idle for 10 minutes are dropped).
class TcpStack::TargetCache {
 public:
  TargetCache(const StackSettings& s, ProxyMetrics& m, asio::any_io_executor ex)
      : settings_(s), metrics_(m), ex_(std::move(ex)) {}

  // This worker's HTTP layer for this stack (pools, balancer state), made on first use.
  HttpProxy& http() {
    if (!http_) http_ = std::make_unique<HttpProxy>(settings_, metrics_, ex_, destination());
    return *http_;
  }
  // This worker's destination client (outbound, when a destination service is configured).
  const std::shared_ptr<DestinationClient>& destination() {
    if (!dest_ && settings_.destination) {
      dest_ = std::make_shared<DestinationClient>(ex_, *settings_.destination);
    }
    return dest_;
  }
  void drainHttp() {
    if (http_) http_->drain();
    if (dest_) dest_->shutdown();
  }

  // `dst_labels`: discovery's dst_* labels of the endpoint chosen, added to the dst side's series.
  std::shared_ptr<TargetSeries> get(const tcp::endpoint& target, const TlsLabels& tls,
                                    const metrics::Labels* dst_labels = nullptr) {
    const auto now = Clock::now();
    if (now - last_sweep_ > std::chrono::minutes(1)) sweep(now);
    std::string key(reinterpret_cast<const char*>(target.data()), target.size());
    for (const auto& [k, v] : tls) {
      key += '\0';
      key += v;
    }
    if (dst_labels != nullptr) {
      for (const auto& [k, v] : *dst_labels) {
        key += '\1';
        key += k;
        key += '=';
        key += v;
      }
    }
    auto& entry = entries_[key];
    if (!entry) {
      auto dst = peerLabels(settings_, "dst", target, tls);
      if (dst_labels != nullptr) dst.insert(dst.end(), dst_labels->begin(), dst_labels->end());
      entry = std::make_shared<TargetSeries>(
          TargetSeries{PeerSeries(metrics_, peerLabels(settings_, "src", target, tls)),
                       PeerSeries(metrics_, std::move(dst)), now});
    }
    entry->used = now;
    return entry;
  }

  // Detection metrics are per port; cached the same way.
  struct DetectSeries {
    std::shared_ptr<metrics::Histogram> duration;
    std::array<std::shared_ptr<metrics::Counter>, kProtocols * kDetectReasons.size()> outcome{};
  };
  DetectSeries& detectSeries(uint16_t port) {
    auto& d = detect_[port];
    if (!d.duration) {
      d.duration = metrics_.protocol_detect_duration_ms.get(
          {{"direction", std::string(directionName(settings_.direction))},
           {"target_port", std::to_string(port)}});
    }
    return d;
  }
  metrics::Counter& detectCounter(uint16_t port, detect::Protocol p, DetectReason r) {
    auto& slot = detectSeries(port).outcome[static_cast<std::size_t>(p) * kDetectReasons.size() + r];
    if (!slot) {
      slot = metrics_.protocol_detect_total.get(
          {{"direction", std::string(directionName(settings_.direction))},
           {"target_port", std::to_string(port)},
           {"protocol", std::string(detect::protocolName(p))},
           {"reason", kDetectReasons[r]}});
    }
    return *slot;
  }

 private:
  void sweep(Clock::time_point now) {
    last_sweep_ = now;
    for (auto it = entries_.begin(); it != entries_.end();) {
      // use_count() == 1: no open connection holds it.
      if (it->second.use_count() == 1 && now - it->second->used > std::chrono::minutes(5)) {
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }

  const StackSettings& settings_;
  ProxyMetrics& metrics_;
  asio::any_io_executor ex_;
  std::unique_ptr<HttpProxy> http_;
  std::shared_ptr<DestinationClient> dest_;
  std::unordered_map<std::string, std::shared_ptr<TargetSeries>> entries_;
  // Ports are few and detection series are tiny: kept for the process's life.
  std::unordered_map<uint16_t, DetectSeries> detect_;
  Clock::time_point last_sweep_ = Clock::now();
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket client, const StackSettings& s, ProxyMetrics& m,
             TcpStack::TargetCache& cache, std::shared_ptr<std::atomic<int64_t>> active)
      : client_(std::move(client)),
        server_(client_.get_executor()),
        deadline_(client_.get_executor()),
        settings_(s),
        metrics_(m),
        cache_(cache),
        active_(std::move(active)) {
    active_->fetch_add(1, std::memory_order_relaxed);
  }
  ~Connection() {
    if (series_) {
      closed(series_->src, src_err_, src_open_);
      closed(series_->dst, dst_err_, dst_open_);
    }
    active_->fetch_sub(1, std::memory_order_relaxed);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  tcp::socket client_;
  tcp::socket server_;
  // Declared after the sockets they use, so they are destroyed first.
  std::unique_ptr<tls::TlsSocket> client_tls_;  // inbound: mesh TLS terminated here
  std::unique_ptr<tls::TlsSocket> server_tls_;  // outbound: mesh TLS originated here
  tls::TlsSnapshotPtr snapshot_;                // the certificate this connection uses
  asio::steady_timer deadline_;
  const StackSettings& settings_;
  ProxyMetrics& metrics_;
  TcpStack::TargetCache& cache_;
  std::shared_ptr<TargetSeries> series_;
  bool src_open_ = false;
  bool dst_open_ = false;
  int src_err_ = 0;  // the errno a side failed with; 0 for a clean close or one we initiated
  int dst_err_ = 0;
  bool timed_out_ = false;
  std::shared_ptr<std::atomic<int64_t>> active_;

  void opened(PeerSeries& p, bool& flag) {
    flag = true;
    p.open_total->inc();
    p.open->add();
  }

  // Cancels `socket`'s pending operations after `d`. A timer handler can run after the phase it
  // guarded has ended (expiry racing with completion), so it acts only if the phase is current.
  void armDeadline(std::chrono::milliseconds d, tcp::socket& socket) {
    ++phase_;
    timed_out_ = false;
    deadline_.expires_after(d);
    deadline_.async_wait([weak = weak_from_this(), phase = phase_, &socket](asio::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->phase_ != phase) return;
      self->timed_out_ = true;
      asio::error_code ignored;
      socket.cancel(ignored);
    });
  }
  void disarmDeadline() {
    ++phase_;
    deadline_.cancel();
  }

  // One side failed: remember its errno, and reset the other side so the failure propagates
  // the way it would without a proxy (an RST stays an RST). Closing both sockets also ends
  // the other direction's pending read.
  void fail(bool client_side, const asio::error_code& ec) {
    int& err = client_side ? src_err_ : dst_err_;
    if (err == 0 && ec.category() == asio::system_category()) err = ec.value();
    net::setResetOnClose(client_side ? server_ : client_);
    asio::error_code ignored;
    client_.close(ignored);
    server_.close(ignored);
  }

 private:
  void closed(PeerSeries& p, int err, bool was_open) {
    if (!was_open) return;
    p.open->sub();
    if (err == 0) {
      p.close_clean->inc();
    } else {
      auto l = p.labels;
      l.emplace_back("errno", net::errnoName(err));
      metrics_.tcp_close_total.get(l)->inc();
    }
  }
  uint64_t phase_ = 0;
};

void countError(const StackSettings& s, ProxyMetrics& m, std::string_view error) {
  auto& family = s.direction == Direction::kInbound ? m.inbound_tcp_errors_total
                                                    : m.outbound_tcp_errors_total;
  family.get({{"error", std::string(error)}})->inc();
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

// The two kinds of connection end a pump moves bytes between.
struct PlainEnd {
  tcp::socket& socket;
  asio::awaitable<std::pair<asio::error_code, std::size_t>> readSome(char* buf, std::size_t len) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf, len), kAwait);
    co_return std::pair{ec, n};
  }
  asio::awaitable<std::pair<asio::error_code, std::size_t>> writeAll(const char* buf, std::size_t len) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(buf, len), kAwait);
    co_return std::pair{ec, n};
  }
  void shutdownWrite() {
    asio::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }
};

struct TlsEnd {
  tls::TlsSocket& tls;
  asio::awaitable<std::pair<asio::error_code, std::size_t>> readSome(char* buf, std::size_t len) {
    return tls.readSome(buf, len);
  }
  asio::awaitable<std::pair<asio::error_code, std::size_t>> writeAll(const char* buf, std::size_t len) {
    return tls.writeAll(buf, len);
  }
  void shutdownWrite() { tls.shutdownWrite(); }
};

// Moves bytes one way until EOF or error. Reads at most one buffer, then writes it all before
// reading again: a slow reader on the far side stops us reading this side (backpressure), so
// per-connection memory is bounded. The buffer starts at WEFT_PROXY_BUFFER_SIZE and doubles, up
// to 4x, while reads keep filling it: bulk transfers make 4x fewer syscalls, chatty connections
// keep the small buffer.
template <typename From, typename To>
asio::awaitable<void> pump(std::shared_ptr<Connection> c, From from, To to, bool from_client) {
  PeerSeries& from_stats = from_client ? c->series_->src : c->series_->dst;
  PeerSeries& to_stats = from_client ? c->series_->dst : c->series_->src;
  std::size_t cap = c->settings_.buffer_size;
  const std::size_t max_cap = cap * 4;
  std::unique_ptr<char[]> buf(new char[cap]);
  for (;;) {
    auto [ec, n] = co_await from.readSome(buf.get(), cap);
    if (n > 0) {
      from_stats.read->inc(n);
      auto [wec, written] = co_await to.writeAll(buf.get(), n);
      to_stats.write->inc(written);
      if (wec) {
        if (wec != asio::error::operation_aborted) c->fail(!from_client, wec);
        co_return;
      }
      if (n == cap && cap < max_cap) {
        cap *= 2;
        buf.reset(new char[cap]);
      }
    }
    if (ec == asio::error::eof) {
      // Half-close: pass the FIN (and, over TLS, close_notify) on; the other direction goes on.
      to.shutdownWrite();
      co_return;
    }
    if (ec) {
      if (ec != asio::error::operation_aborted) c->fail(from_client, ec);
      co_return;
    }
  }
}

// Starts both directions: the reverse one on a new coroutine, the forward one in the caller's.
template <typename ClientEnd, typename ServerEnd>
asio::awaitable<void> forward(std::shared_ptr<Connection> c, ClientEnd client, ServerEnd server,
                              bool client_eof) {
  if (client_eof) {
    server.shutdownWrite();
    co_await pump(std::move(c), server, client, false);
    co_return;
  }
  asio::co_spawn(c->client_.get_executor(), pump(c, server, client, false), asio::detached);
  co_await pump(std::move(c), client, server, true);
}

struct DetectOutcome {
  detect::Protocol protocol = detect::Protocol::kOpaque;
  DetectReason reason = kDetected;
  bool client_eof = false;
  bool failed = false;  // the client failed during detection; the connection is over
  std::string sni;      // of a TLS ClientHello, when it parsed whole
  bool mesh_alpn = false;  // the ClientHello offers Weft's transport ALPN: a Weft proxy
};

// The bytes read while detecting; grown on demand (most first reads are small) and never
// zero-filled.
struct Prefix {
  std::unique_ptr<uint8_t[]> data;
  std::size_t cap = 0;
  std::size_t len = 0;
};

asio::awaitable<DetectOutcome> detectProtocol(Connection& c, Prefix& prefix, uint16_t target_port) {
  DetectOutcome out;
  if (c.settings_.opaque_ports.contains(target_port)) {
    out.reason = kOpaquePort;
    co_return out;
  }
  c.armDeadline(c.settings_.detect_timeout, c.client_);
  prefix.cap = 2048;
  prefix.data.reset(new uint8_t[prefix.cap]);
  std::size_t checked = 0;  // prefix length at the last detect() call
  for (;;) {
    if (prefix.len == prefix.cap) {
      std::size_t cap = std::min(prefix.cap * 2, detect::kMaxDetectBytes);
      std::unique_ptr<uint8_t[]> bigger(new uint8_t[cap]);
      std::memcpy(bigger.get(), prefix.data.get(), prefix.len);
      prefix.data = std::move(bigger);
      prefix.cap = cap;
    }
    auto [ec, n] = co_await c.client_.async_read_some(
        asio::buffer(prefix.data.get() + prefix.len, prefix.cap - prefix.len), kAwait);
    prefix.len += n;
    if (ec == asio::error::operation_aborted && c.timed_out_) {
      // Timed out: not an error. Whatever was read is delivered intact; the rest is opaque TCP.
      out.reason = kTimeout;
      break;
    }
    if (ec == asio::error::eof) {
      out.reason = kClientEof;
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
    const std::size_t len = prefix.len;
    const bool worth = len <= 1024 || (len - checked) * 8 >= checked ||
                       std::memchr(prefix.data.get() + len - n, '\n', n) != nullptr;
    if (worth) {
      checked = len;
      if (auto d = detect::detect({prefix.data.get(), len})) {
        out.protocol = d->protocol;
        out.reason = kDetected;
        if (d->client_hello) {
          out.sni = d->client_hello->sni;
          for (const auto& p : d->client_hello->alpn) out.mesh_alpn |= p == tls::kAlpnTransport;
        }
        break;
      }
    }
    if (len == detect::kMaxDetectBytes) {
      out.reason = kLimit;
      break;
    }
  }
  c.disarmDeadline();
  co_return out;
}

// Inbound: terminates mesh TLS addressed to us and reads the transport header, which names the
// port the client proxy's application dialled (and whether HTTP/2 between proxies follows).
// Returns nullopt after counting and resetting a refused connection.
asio::awaitable<std::optional<tls::TransportHeader>> acceptMeshTls(Connection& c, Prefix& prefix, TlsLabels& tls_labels) {
  const StackSettings& s = c.settings_;
  c.client_tls_ = std::make_unique<tls::TlsSocket>(c.client_, c.snapshot_->server(),
                                                   tls::TlsSocket::Role::kServer,
                                                   std::move(prefix.data), prefix.len);
  prefix.len = 0;
  c.armDeadline(s.tls_handshake_timeout, c.client_);
  auto hs = co_await c.client_tls_->handshake();
  std::array<uint8_t, tls::kTransportHeaderSize> header{};
  std::size_t got = 0;
  while (hs && got < header.size()) {
    auto [ec, n] = co_await c.client_tls_->readSome(header.data() + got, header.size() - got);
    if (ec) {
      hs = Error::downstream("bad_transport_header", ec.message());
      break;
    }
    got += n;
  }
  c.disarmDeadline();
  if (!hs) {
    std::string reason = c.timed_out_ ? "timeout" : hs.error().kind;
    countError(s, c.metrics_, "tls_" + reason);
    spdlog::debug("inbound: refused mesh TLS: {}", hs.error().message());
    net::setResetOnClose(c.client_);
    co_return std::nullopt;
  }
  auto parsed = tls::parseTransportHeader(header);
  if (!parsed) {
    countError(s, c.metrics_, "bad_transport_header");
    net::setResetOnClose(c.client_);
    co_return std::nullopt;
  }
  tls_labels = {{"tls", "true"}, {"client_id", tls::peerIdentity(c.client_tls_->ssl())}};
  co_return parsed;
}

asio::awaitable<void> serve(std::shared_ptr<Connection> c) {
  const StackSettings& s = c->settings_;
  const bool inbound = s.direction == Direction::kInbound;
  const auto accepted_at = Clock::now();
  asio::error_code ec;
  c->client_.set_option(tcp::no_delay(true), ec);

  // 1. Where the client meant to go.
  tcp::endpoint target;
  if (s.fixed_target) {
    target = *s.fixed_target;
  } else {
    auto od = net::originalDestination(c->client_);
    asio::error_code lec;
    const auto local = c->client_.local_endpoint(lec);
    if (!od && inbound && !lec && local.port() == s.mesh_port) {
      // Not NATed (a pod without interception rules): a client proxy dialled us directly.
      od = local;
    }
    if (!od) {
      countError(s, c->metrics_, "no_original_dst");
      spdlog::debug("{}: no original destination: {}", directionName(s.direction), od.error().message());
      net::setResetOnClose(c->client_);
      co_return;
    }
    target = *od;
  }
  // A connection to our own inbound port is a client proxy's mesh TLS (transport header inside);
  // anything else there would loop through us, so it is refused after detection.
  const bool direct = inbound && s.identity_enabled && target.port() == s.mesh_port;
  if (!direct && isLoop(s, target, c->client_)) {
    countError(s, c->metrics_, "loop");
    spdlog::warn("{}: refused a connection to {}, which is this proxy's own listener (loop)",
                 directionName(s.direction), addrString(target));
    net::setResetOnClose(c->client_);
    co_return;
  }

  // 2. What it speaks.
  Prefix prefix;
  DetectOutcome detected = co_await detectProtocol(*c, prefix, target.port());
  auto& detect_series = c->cache_.detectSeries(target.port());
  c->cache_.detectCounter(target.port(), detected.protocol, detected.reason).inc();
  if (detected.reason != kOpaquePort) {
    detect_series.duration->observe(
        std::chrono::duration<double, std::milli>(Clock::now() - accepted_at).count());
  }
  if (detected.failed) {
    countError(s, c->metrics_, "downstream_io");
    co_return;
  }

  // 2b. Outbound opaque TCP (or foreign TLS) to a target discovery knows: one of its endpoints.
  // (HTTP is balanced per request by the HTTP layer instead.)
  tcp::endpoint upstream = target;  // where the application's bytes go
  std::string discovered_id;        // the identity discovery says that endpoint's proxy has
  uint16_t discovered_inbound = 0;  // its proxy's inbound port, when discovery says it
  metrics::Labels discovered_labels;  // its dst_* labels
  const bool is_http = detected.protocol == detect::Protocol::kHttp1 ||
                       detected.protocol == detect::Protocol::kHttp2;
  if (!inbound && !is_http && c->cache_.destination() && c->cache_.destination()->inScope(target)) {
    auto d = co_await c->cache_.destination()->resolve(target);
    if (!d || !(*d)->exists || (*d)->endpoints.empty()) {
      const char* why = !d ? "discovery_unavailable" : !(*d)->exists ? "unknown_destination" : "no_endpoints";
      countError(s, c->metrics_, why);
      spdlog::debug("outbound: {} for {}", why, addrString(target));
      net::setResetOnClose(c->client_);
      co_return;
    }
    const auto& eps = (*d)->endpoints;
    thread_local std::minstd_rand rng{std::random_device{}()};
    const auto& ep = eps[rng() % eps.size()];
    upstream = ep.addr;
    if (s.identity_enabled) discovered_id = ep.identity;
    discovered_inbound = ep.inbound_port;
    discovered_labels = ep.labels;
  }

  // 3. Mesh TLS: who the peer is, and whether we terminate or originate it.
  TlsLabels tls_labels;
  const std::string* server_id = nullptr;
  bool mesh_h2 = false;  // inbound: a peer proxy's HTTP/2 follows the transport header
  std::size_t prefix_seen = prefix.len;  // bytes read from the client so far (for metrics)
  if (!s.identity_enabled) {
    tls_labels = {{"tls", "disabled"}};
  } else {
    c->snapshot_ = tls::currentSnapshot();
    if (inbound) {
      // Ours when it names us, or when a Weft proxy expects someone else here: terminating then
      // lets that client see exactly why (wrong_identity) instead of a stalled handshake.
      const bool mesh_tls = detected.protocol == detect::Protocol::kTls && c->snapshot_ &&
                            (detected.sni == c->snapshot_->identity() || detected.mesh_alpn);
      if (direct && !mesh_tls) {
        countError(s, c->metrics_, "loop");
        spdlog::debug("inbound: refused a connection to our own port {} without mesh TLS", s.mesh_port);
        net::setResetOnClose(c->client_);
        co_return;
      }
      if (mesh_tls) {
        auto header = co_await acceptMeshTls(*c, prefix, tls_labels);
        if (!header) co_return;
        target.port(header->port);
        mesh_h2 = header->h2();
        prefix_seen = 0;  // those bytes were TLS, counted as the connection's own traffic
        if (isLoop(s, target, c->client_)) {
          countError(s, c->metrics_, "loop");
          net::setResetOnClose(c->client_);
          co_return;
        }
      } else if (detected.protocol == detect::Protocol::kTls) {
        tls_labels = {{"tls", "opaque"}};  // someone else's TLS: passed through untouched
      } else {
        tls_labels = {{"tls", "no_identity"}, {"no_tls_reason", "no_tls_from_remote"}};
      }
    } else if (!discovered_id.empty() ||
               (s.meshed && (server_id = s.meshed->identityFor(upstream)) != nullptr)) {
      if (!discovered_id.empty()) server_id = &discovered_id;
      if (!c->snapshot_) {
        countError(s, c->metrics_, "identity_not_ready");
        net::setResetOnClose(c->client_);
        co_return;
      }
      tls_labels = {{"tls", "true"}, {"server_id", *server_id}};
    } else {
      tls_labels = {{"tls", "no_identity"}, {"no_tls_reason", "not_provided_by_service_discovery"}};
    }
  }
  if (inbound) upstream = target;  // the application's port, from the transport header
  c->series_ = c->cache_.get(target, tls_labels, discovered_labels.empty() ? nullptr : &discovered_labels);
  TargetSeries& series = *c->series_;
  c->opened(series.src, c->src_open_);
  if (prefix_seen > 0) series.src.read->inc(prefix_seen);

  // HTTP: handled per request (docs/dev/http.md). Opaque TCP and foreign TLS go on below.
  const bool http_detected = (detected.protocol == detect::Protocol::kHttp1 ||
                              detected.protocol == detect::Protocol::kHttp2) &&
                             !c->client_tls_;
  if (mesh_h2 || http_detected) {
    std::string pre(reinterpret_cast<const char*>(prefix.data.get()), prefix.len);
    prefix.data.reset();
    HttpConnInfo info{target, tls_labels, mesh_h2 || detected.protocol == detect::Protocol::kHttp2, mesh_h2};
    std::unique_ptr<http::ByteStream> raw;
    if (c->client_tls_) {
      raw = std::make_unique<http::TlsStream>(*c->client_tls_);
    } else {
      raw = std::make_unique<http::PlainStream>(c->client_);
    }
    raw->countInto(series.src.read.get(), series.src.write.get());
    HttpProxy& proxy = c->cache_.http();
    co_await proxy.serve(*raw, std::move(pre), std::move(info));
    co_return;
  }

  // 4. Connect, bounded by the connect timeout. A meshed endpoint is dialled on its proxy's
  // inbound port; the transport header carries the application's port.
  const tcp::endpoint dial =
      server_id != nullptr
          ? tcp::endpoint(upstream.address(), discovered_inbound != 0 ? discovered_inbound : s.mesh_port)
          : upstream;
  c->armDeadline(s.connect_timeout, c->server_);
  auto [cec] = co_await c->server_.async_connect(dial, kAwait);
  c->disarmDeadline();
  if (cec) {
    std::string_view error = c->timed_out_                               ? "connect_timeout"
                             : cec == asio::error::connection_refused ? "connect_refused"
                                                                      : "connect_failed";
    spdlog::debug("{}: connect to {} failed: {}", directionName(s.direction), addrString(target),
                  c->timed_out_ ? "timed out" : cec.message());
    countError(s, c->metrics_, error);
    // The client sees a reset, as it would have connecting directly to a dead port.
    net::setResetOnClose(c->client_);
    co_return;
  }
  c->server_.set_option(tcp::no_delay(true), ec);

  if (server_id != nullptr) {
    // Outbound to a meshed endpoint: mTLS, checking the server proves the expected identity,
    // then the transport header naming the port the application dialled.
    c->server_tls_ = std::make_unique<tls::TlsSocket>(c->server_, c->snapshot_->client(),
                                                      tls::TlsSocket::Role::kClient);
    auto st = c->server_tls_->expectServerIdentity(*server_id);
    c->armDeadline(s.tls_handshake_timeout, c->server_);
    if (st) st = co_await c->server_tls_->handshake();
    if (st) {
      auto header = tls::makeTransportHeader(upstream.port());
      auto [wec, n] = co_await c->server_tls_->writeAll(header.data(), header.size());
      if (wec) st = Error::upstream("io", wec.message());
    }
    c->disarmDeadline();
    if (!st) {
      std::string reason = c->timed_out_ ? "timeout" : st.error().kind;
      countError(s, c->metrics_, "tls_" + reason);
      spdlog::debug("outbound: mesh TLS to {} ({}) failed: {}", addrString(target), *server_id,
                    st.error().message());
      net::setResetOnClose(c->client_);
      co_return;
    }
  }
  c->opened(series.dst, c->dst_open_);
  spdlog::debug("{}: {} -> {}{}", directionName(s.direction), addrString(target), addrString(dial),
                server_id != nullptr ? " (mTLS, " + *server_id + ")" : "");

  // 5. Forward: first the bytes detection read, then both directions until both are done.
  if (prefix.len > 0) {
    auto [wec, n] = c->server_tls_
                        ? co_await c->server_tls_->writeAll(reinterpret_cast<char*>(prefix.data.get()), prefix.len)
                        : co_await PlainEnd{c->server_}.writeAll(reinterpret_cast<char*>(prefix.data.get()), prefix.len);
    series.dst.write->inc(n);
    if (wec) {
      c->fail(false, wec);
      co_return;
    }
  }
  prefix.data.reset();  // detection's buffer is not needed while forwarding
  // Take references before moving `c` into forward(): argument evaluation order is unspecified.
  const bool eof = detected.client_eof;
  tcp::socket& client = c->client_;
  tcp::socket& server = c->server_;
  if (tls::TlsSocket* t = c->client_tls_.get()) {
    co_await forward(std::move(c), TlsEnd{*t}, PlainEnd{server}, eof);
  } else if (tls::TlsSocket* u = c->server_tls_.get()) {
    co_await forward(std::move(c), PlainEnd{client}, TlsEnd{*u}, eof);
  } else {
    co_await forward(std::move(c), PlainEnd{client}, PlainEnd{server}, eof);
  }
}

}  // namespace

Result<MeshedEndpoints> MeshedEndpoints::parse(std::string_view text) {
  MeshedEndpoints out;
  std::string_view rest = text;
  auto invalid = [&](std::string_view item) {
    return Error::internal("invalid_value", "\"" + std::string(item) +
                                                "\" is not IP=identity or IP:PORT=identity "
                                                "(IPv6 as [IP]:PORT=identity)");
  };
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string item(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos || eq + 1 == item.size()) return invalid(item);
    std::string addr = item.substr(0, eq);
    std::string id = item.substr(eq + 1);
    if (!identity::isValidIdentityName(id)) return invalid(item);
    asio::error_code ec;
    auto ip = asio::ip::make_address(addr, ec);
    if (!ec) {
      out.by_ip_[ip] = id;
      continue;
    }
    auto hp = config::parseHostPort(addr);
    if (!hp) return invalid(item);
    out.by_endpoint_[tcp::endpoint(asio::ip::make_address(hp->host), hp->port)] = id;
  }
  return out;
}

const std::string* MeshedEndpoints::identityFor(const tcp::endpoint& ep) const {
  tcp::endpoint plain(net::unmapped(ep.address()), ep.port());
  if (auto it = by_endpoint_.find(plain); it != by_endpoint_.end()) return &it->second;
  if (auto it = by_ip_.find(plain.address()); it != by_ip_.end()) return &it->second;
  return nullptr;
}

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
  Acceptor(asio::io_context& ctx, std::shared_ptr<TargetCache> c)
      : acceptor(ctx), cache(std::move(c)) {}
  tcp::acceptor acceptor;
  std::shared_ptr<TargetCache> cache;  // shared by this worker's acceptors of this stack
};

TcpStack::TcpStack(StackSettings settings, ProxyMetrics& metrics)
    : settings_(std::move(settings)),
      metrics_(metrics),
      active_(std::make_shared<std::atomic<int64_t>>(0)) {}

TcpStack::~TcpStack() = default;

namespace {

// SO_REUSEPORT lets every worker bind the same address, but it would also let a second proxy
// (same UID) bind it silently and take half the connections. Before the first worker binds,
// a plain bind proves nobody else holds the address.
Status probeExclusive(const tcp::endpoint& ep) {
  int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return okStatus();  // the real bind reports the problem
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ep.address().is_v6()) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  int rc = ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size()));
  int err = errno;
  ::close(fd);
  if (rc != 0 && err == EADDRINUSE) {
    return Error::internal("listen_failed", addrString(ep) + ": address already in use");
  }
  return okStatus();
}

}  // namespace

Status TcpStack::bind(asio::io_context& worker) {
  if (acceptors_.empty()) {
    if (auto st = probeExclusive(settings_.listen.front()); !st) {
      return Error::internal("listen_failed", std::string(directionName(settings_.direction)) +
                                                  " listener " + st.error().context);
    }
  }
  auto cache = std::make_shared<TargetCache>(settings_, metrics_, worker.get_executor());
  for (std::size_t i = 0; i < settings_.listen.size(); ++i) {
    const auto& ep = settings_.listen[i];
    auto a = std::make_shared<Acceptor>(worker, cache);
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
            auto conn = std::make_shared<Connection>(std::move(socket), settings_, metrics_,
                                                     *a->cache, active_);
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
      a->cache->drainHttp();  // HTTP connections close once their requests are answered
    });
  }
}

}  // namespace weft::proxy
