#include "proxy/http/http_proxy.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <unordered_map>

#include "lib/http/event.h"
#include "weft/http/body.h"
#include "weft/http/h1.h"
#include "weft/http/h2.h"
#include "weft/net/socket.h"
#include "weft/tls/context.h"
#include "weft/tls/tls_socket.h"
#include "weft/tls/transport_header.h"

namespace weft::proxy {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using http::Body;
using http::Request;
using http::Response;

namespace {

constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
// Between two Weft proxies an HTTP/1 request rides HTTP/2 tagged with the version it had, and
// "absolute-form" when its target was absolute (SPEC §2). Only honoured from a peer proxy.
constexpr std::string_view kOrigProto = "weft-orig-proto";
constexpr std::string_view kProxyError = "weft-proxy-error";
// HTTP/2 lowercases field names; the application on the far side should get the names its
// client sent. Only sent when some name has an uppercase letter: the names of the request's
// fields in order (Host included, at its position), separated by spaces (tokens have none).
constexpr std::string_view kOrigNames = "weft-orig-names";

bool hasUpper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

void addOrigNames(http::RequestHead& head) {
  bool upper = false;
  std::size_t len = 0;
  for (const auto& f : head.headers) {
    upper = upper || hasUpper(f.name);
    len += f.name.size() + 1;
  }
  if (!upper) return;
  std::string names;
  names.reserve(len);
  for (const auto& f : head.headers) {
    if (!names.empty()) names.push_back(' ');
    names.append(f.name);
  }
  head.headers.push_back(http::Field{std::string(kOrigNames), std::move(names)});
}

// Gives the fields back their names (and Host its place), after HTTP/2 took the case and the
// Host field (it became :authority).
void restoreOrigNames(http::RequestHead& head) {
  auto v = http::find(head.headers, kOrigNames);
  if (!v) return;
  std::vector<std::string_view> names;
  std::string_view rest = *v;
  std::string value(rest);
  rest = value;
  while (!rest.empty()) {
    auto sp = rest.find(' ');
    names.push_back(rest.substr(0, sp));
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  http::erase(head.headers, kOrigNames);
  http::Fields out;
  out.reserve(head.headers.size() + 1);
  std::size_t next = 0;  // next field of head.headers not yet placed
  for (auto name : names) {
    if (http::iequals(name, "host")) {
      if (!http::find(head.headers, "host")) out.push_back(http::Field{std::string(name), head.authority});
      continue;
    }
    if (next < head.headers.size() && http::iequals(head.headers[next].name, name)) {
      head.headers[next].name = std::string(name);
      out.push_back(std::move(head.headers[next++]));
    }
  }
  for (; next < head.headers.size(); ++next) out.push_back(std::move(head.headers[next]));
  head.headers = std::move(out);
}

constexpr int kFailureAccrual = 7;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// How a request reaches an endpoint.
enum class Kind : uint8_t { kH1, kH2, kMeshH2 };

struct ProxyErr {
  int status;           // 502, 503 or 504
  std::string kind;     // the weft-proxy-error header and the `error` label
  int grpc_status;      // 14 UNAVAILABLE or 4 DEADLINE_EXCEEDED
};

ProxyErr classify(const Error& e, bool timed_out) {
  if (timed_out) return {504, e.kind == "connect_timeout" ? "connect_timeout" : "response_timeout", 4};
  if (e.kind == "connect_timeout") return {504, e.kind, 4};
  if (e.kind == "no_endpoints" || e.kind == "queue_full" || e.kind == "identity_not_ready") {
    return {503, e.kind, 14};
  }
  return {502, e.kind, 14};
}

Response errorResponse(const asio::any_io_executor& ex, bool grpc, const ProxyErr& err) {
  Response r;
  if (grpc) {
    // gRPC clients read the status from grpc-status: a trailers-only response (gRPC over HTTP/2).
    r.head.status = 200;
    r.head.headers = {{"content-type", "application/grpc"},
                      {"grpc-status", std::to_string(err.grpc_status)},
                      {"grpc-message", "weft-proxy: " + err.kind},
                      {std::string(kProxyError), err.kind}};
    r.head.end_stream = true;
    r.body = Body::empty(ex);
    return r;
  }
  std::string text = std::to_string(err.status) + " " + err.kind + "\n";
  r.head.status = err.status;
  r.head.headers = {{"content-type", "text/plain"},
                    {"content-length", std::to_string(text.size())},
                    {std::string(kProxyError), err.kind}};
  r.body = Body::make(ex);
  r.body->push(text);
  r.body->finish();
  return r;
}

// The metric series of one (endpoint, authority, tls) in one worker: looked up once, then each
// request costs atomic increments only.
struct RouteSeries {
  metrics::Labels labels;
  std::shared_ptr<metrics::Counter> requests;
  std::unordered_map<std::string, std::shared_ptr<metrics::Counter>> responses;
  std::unordered_map<int, std::shared_ptr<metrics::Histogram>> latency;
  Clock::time_point used;
  std::weak_ptr<RouteSeries> self;
};

struct DstSeries;

struct Endpoint {
  tcp::endpoint addr;
  std::string identity;  // meshed: the identity its proxy must prove; empty otherwise
  Kind kind = Kind::kH1;
  // Peak-EWMA (Finagle / Linkerd): cost = ewma latency x (pending + 1).
  double ewma_ms = 30;
  bool measured = false;  // ewma_ms holds a real sample (else the default)
  Clock::time_point ewma_at = Clock::now();
  int pending = 0;
  // Failure back-off: connect failures take the endpoint out of rotation for a while.
  Clock::time_point down_until{};
  std::chrono::milliseconds backoff{0};
  int consecutive_failures = 0;  // failure accrual (SPEC §2: 7 in a row take it out)
  std::vector<std::shared_ptr<http::H1Client>> h1;
  std::vector<std::shared_ptr<http::H2Client>> h2;
  std::shared_ptr<http::detail::Event> h2_connecting;
  std::shared_ptr<DstSeries> tcp_series;  // made on the first connection
  metrics::Labels dst_labels;             // from discovery (dst_namespace, dst_pod, ...)
  TlsLabels tls;                          // outbound: the tls labels of requests to it
  uint64_t labels_version = 0;            // the Discovery version they came from
  uint64_t since = 0;                     // DiscoveredEndpoint::since of the life routed to
  Clock::time_point used = Clock::now();
};

// Endpoints are keyed by address and how requests reach them.
struct EndpointKey {
  tcp::endpoint addr;
  Kind kind;
  bool operator==(const EndpointKey&) const = default;
};
struct EndpointKeyHash {
  std::size_t operator()(const EndpointKey& k) const {
    const std::string_view bytes(reinterpret_cast<const char*>(k.addr.data()), k.addr.size());
    return std::hash<std::string_view>()(bytes) ^ static_cast<std::size_t>(k.kind);
  }
};

// The tcp_* series of the connections a worker opens to one endpoint.
struct DstSeries {
  std::shared_ptr<metrics::Counter> open_total;
  std::shared_ptr<metrics::Gauge> open;
  std::shared_ptr<metrics::Counter> read;
  std::shared_ptr<metrics::Counter> write;
  std::shared_ptr<metrics::Counter> closed;
};

// Holds an upstream connection open in its endpoint's tcp_* series for the connection's life
// (attached to its Transport).
struct OpenUpstream {
  explicit OpenUpstream(std::shared_ptr<DstSeries> s) : series(std::move(s)) {
    series->open_total->inc();
    series->open->add();
  }
  ~OpenUpstream() {
    series->open->sub();
    series->closed->inc();
  }
  OpenUpstream(const OpenUpstream&) = delete;
  OpenUpstream& operator=(const OpenUpstream&) = delete;
  std::shared_ptr<DstSeries> series;
};

}  // namespace

class HttpProxy::Impl : public std::enable_shared_from_this<HttpProxy::Impl> {
 public:
  Impl(const StackSettings& s, ProxyMetrics& m, asio::any_io_executor ex)
      : s_(s), m_(m), ex_(std::move(ex)), rng_(std::random_device{}()) {
    h1_.limits = s.http1_limits;
    h1_.head_timeout = s.http_head_timeout;
  }

  const StackSettings& s_;
  ProxyMetrics& m_;
  asio::any_io_executor ex_;
  http::H1Settings h1_;
  http::H2Settings h2_;
  std::mt19937 rng_;
  std::unordered_map<EndpointKey, std::unique_ptr<Endpoint>, EndpointKeyHash> endpoints_;
  std::unordered_map<std::string, std::shared_ptr<RouteSeries>> series_;
  Clock::time_point last_sweep_ = Clock::now();

  bool inbound() const { return s_.direction == Direction::kInbound; }

  void countError(std::string_view e) {
    auto& f = inbound() ? m_.inbound_http_errors_total : m_.outbound_http_errors_total;
    f.get({{"error", std::string(e)}})->inc();
  }

  // --- metrics ---------------------------------------------------------------------------

  RouteSeries& routeSeries(const tcp::endpoint& target, std::string_view authority, const TlsLabels& tls,
                           const metrics::Labels* dst = nullptr) {
    std::string key(reinterpret_cast<const char*>(target.data()), target.size());
    key.push_back('\0');
    key.append(authority);
    for (const auto& [k, v] : tls) {
      key.push_back('\0');
      key.append(v);
    }
    if (dst != nullptr) {
      for (const auto& [k, v] : *dst) {
        key.push_back('\1');
        key.append(k);
        key.push_back('=');
        key.append(v);
      }
    }
    auto& slot = series_[key];
    if (!slot) {
      slot = std::make_shared<RouteSeries>();
      slot->labels = {{"direction", std::string(directionName(s_.direction))},
                      {"authority", std::string(authority)},
                      {"target_addr", addrString(target)},
                      {"target_ip", net::unmapped(target.address()).to_string()},
                      {"target_port", std::to_string(target.port())}};
      slot->labels.insert(slot->labels.end(), tls.begin(), tls.end());
      if (dst != nullptr) slot->labels.insert(slot->labels.end(), dst->begin(), dst->end());
      slot->requests = m_.request_total.get(slot->labels);
      slot->self = slot;
    }
    slot->used = Clock::now();
    return *slot;
  }

  std::shared_ptr<RouteSeries> seriesPtr(RouteSeries& rs) { return rs.self.lock(); }

  void observeLatency(RouteSeries& rs, int status, double latency_ms) {
    auto& h = rs.latency[status];
    if (!h) {
      auto l = rs.labels;
      l.emplace_back("status_code", std::to_string(status));
      h = m_.response_latency_ms.get(l);
    }
    h->observe(latency_ms);
  }

  void countResponse(RouteSeries& rs, int status, std::string_view grpc_status, std::string_view error) {
    const bool failure = status >= 500 || status == 0 || (!grpc_status.empty() && grpc_status != "0") ||
                         !error.empty();
    std::string key = std::to_string(status);
    key.push_back('\0');
    key.append(grpc_status);
    key.push_back('\0');
    key.append(error);
    auto& c = rs.responses[key];
    if (!c) {
      auto l = rs.labels;
      l.emplace_back("status_code", status == 0 ? std::string() : std::to_string(status));
      l.emplace_back("classification", failure ? "failure" : "success");
      l.emplace_back("grpc_status", std::string(grpc_status));
      l.emplace_back("error", std::string(error));
      c = m_.response_total.get(l);
    }
    c->inc();
  }

  // Counts the response when its body ends: gRPC's status is in the trailers, and a stream that
  // breaks mid-body is a failure.
  void trackResponse(Response& resp, RouteSeries& rs, bool grpc) {
    const int status = resp.head.status;
    std::string head_grpc;
    if (auto g = http::find(resp.head.headers, "grpc-status")) head_grpc = *g;
    std::string proxy_error;
    if (auto e = http::find(resp.head.headers, kProxyError)) proxy_error = *e;
    if (resp.head.end_stream) {
      // No body follows (a trailers-only gRPC answer, a HEAD/204/304): complete now.
      countResponse(rs, status, head_grpc, proxy_error);
      return;
    }
    auto t = http::makeRecycled<ResponseTracker>();
    t->impl = weak_from_this();
    t->series = seriesPtr(rs);
    t->status = status;
    t->grpc = grpc;
    t->head_grpc = std::move(head_grpc);
    t->proxy_error = std::move(proxy_error);
    t->prev = std::move(resp.body->observer);
    resp.body->observer = std::move(t);
  }

  // Counts a response whose body was still to come when its head was counted.
  struct ResponseTracker final : http::BodyObserver {
    std::weak_ptr<Impl> impl;             // weakly: a pool connection the Impl owns may hold the body
    std::shared_ptr<RouteSeries> series;  // held: a stream may outlive the series' idle sweep
    int status = 0;
    bool grpc = false;
    std::string head_grpc;
    std::string proxy_error;
    std::shared_ptr<http::BodyObserver> prev;

    void done(Body::Kind kind, const http::Fields& trailers, std::string_view error) override {
      if (prev) prev->done(kind, trailers, error);
      auto self = impl.lock();
      if (!self) return;
      std::string grpc_status = head_grpc;
      if (grpc && grpc_status.empty()) {
        if (auto g = http::find(trailers, "grpc-status")) grpc_status = *g;
      }
      std::string err = proxy_error;
      if (kind == Body::Kind::kAbort && err.empty()) {
        err = std::string(error);
        self->countError(error == "cancelled" ? "response_cancelled" : "response_aborted");
      }
      self->countResponse(*series, status, grpc_status, err);
    }
  };

  void sweep(Clock::time_point now) {
    if (now - last_sweep_ < std::chrono::minutes(1)) return;
    last_sweep_ = now;
    std::erase_if(series_, [&](auto& kv) {
      return kv.second.use_count() == 1 && now - kv.second->used > std::chrono::minutes(10);
    });
    const auto before = endpoints_.size();
    std::erase_if(endpoints_, [&](auto& kv) {
      Endpoint& e = *kv.second;
      return e.pending == 0 && now - e.used > std::chrono::minutes(10);
    });
    if (endpoints_.size() != before) ++epoch_;  // cached Endpoint pointers are stale
  }

  // --- balancing -------------------------------------------------------------------------

  Endpoint& endpoint(const tcp::endpoint& addr, Kind kind, const std::string* identity, Clock::time_point now) {
    auto& slot = endpoints_[EndpointKey{addr, kind}];
    if (!slot) {
      slot = std::make_unique<Endpoint>();
      slot->addr = addr;
      slot->kind = kind;
      if (identity) slot->identity = *identity;
      slot->ewma_ms = static_cast<double>(s_.ewma_default_rtt.count());
      slot->tls = endpointTls(*slot);
    }
    slot->used = now;
    return *slot;
  }

  double cost(Endpoint& e, Clock::time_point now) {
    if (e.down_until > now) return 1e12;
    // Not measured yet and idle: free, so every new endpoint gets measured (otherwise the first
    // one measured below the default would take all sequential traffic).
    if (!e.measured && e.pending == 0) return 0;
    // The estimate decays while no sample comes (as Finagle's and Linkerd's do at read time), so
    // an endpoint that was once slow is tried again rather than shunned for good.
    const double idle = ms(now - e.ewma_at);
    const double decayed = e.ewma_ms * std::exp(-idle / static_cast<double>(s_.ewma_decay.count()));
    return decayed * (e.pending + 1);
  }

  void observeRtt(Endpoint& e, double rtt_ms, Clock::time_point now) {
    const double elapsed = ms(now - e.ewma_at);
    e.ewma_at = now;
    if (!e.measured) {
      e.measured = true;
      e.ewma_ms = rtt_ms;  // the first sample replaces the default
      return;
    }
    const double w = std::exp(-elapsed / static_cast<double>(s_.ewma_decay.count()));
    if (rtt_ms > e.ewma_ms * w) {
      e.ewma_ms = rtt_ms;  // peak: jump up at once
    } else {
      e.ewma_ms = e.ewma_ms * w + rtt_ms * (1 - w);
    }
  }

  // Discovery removed the endpoint and has added it again: what was learned about it before
  // (latency, failures, back-off) describes an earlier life, and a stale high estimate would keep
  // it from the traffic that would correct it. Linkerd likewise builds a removed endpoint anew.
  void forget(Endpoint& e, Clock::time_point now) {
    e.measured = false;
    e.ewma_ms = static_cast<double>(s_.ewma_default_rtt.count());
    e.ewma_at = now;
    e.consecutive_failures = 0;
    markUp(e);
  }

  void markDown(Endpoint& e) {
    e.backoff = e.backoff.count() == 0 ? std::chrono::milliseconds(1000)
                                       : std::min(e.backoff * 2, std::chrono::milliseconds(60'000));
    std::uniform_int_distribution<int> jitter(0, static_cast<int>(e.backoff.count() / 4));
    e.down_until = Clock::now() + e.backoff + std::chrono::milliseconds(jitter(rng_));
  }
  void markUp(Endpoint& e) {
    e.backoff = std::chrono::milliseconds(0);
    e.down_until = {};
  }

  // Power of two choices over peak-EWMA cost, among the endpoints not backed off (all of them
  // when every one is).
  Endpoint* pick(std::span<Endpoint* const> candidates, const Endpoint* avoid, Clock::time_point now) {
    std::vector<Endpoint*>& up = pick_scratch_;
    up.clear();
    for (Endpoint* c : candidates) {
      if (c != avoid && c->down_until <= now) up.push_back(c);
    }
    if (up.empty()) {
      for (Endpoint* c : candidates) {
        if (c != avoid) up.push_back(c);
      }
    }
    if (up.empty()) return candidates.empty() ? nullptr : candidates[0];
    if (up.size() == 1) return up[0];
    std::uniform_int_distribution<std::size_t> d(0, up.size() - 1);
    std::size_t a = d(rng_);
    std::size_t b = d(rng_);
    if (b == a) b = (a + 1) % up.size();
    // Costs within 25 % (or 2 ms) of each other are a tie, and `a` is already a random pick:
    // equally good endpoints share the traffic instead of the marginally faster taking it all.
    const double ca = cost(*up[a], now);
    const double cb = cost(*up[b], now);
    const double tolerance = std::max(0.25 * std::max(ca, cb), 2.0);
    return cb < ca - tolerance ? up[b] : up[a];
  }
  std::vector<Endpoint*> pick_scratch_;
  std::shared_ptr<DestinationClient> dest_;
  uint64_t epoch_ = 1;  // bumped when endpoints are dropped (see ConnCtx)
  // The drain signals of the connections being served (expired ones are pruned as they go).
  std::vector<std::weak_ptr<http::DrainSignal>> drains_;
  bool draining_ = false;

  // --- connecting ------------------------------------------------------------------------

  // Connects (and for a meshed endpoint, completes mTLS and sends the transport header).
  asio::awaitable<Result<std::unique_ptr<http::Transport>>> connect(Endpoint& e) {
    const bool mesh = e.kind == Kind::kMeshH2;
    tls::TlsSnapshotPtr snapshot;
    if (mesh) {
      snapshot = tls::currentSnapshot();
      if (!snapshot) co_return Error::upstream("identity_not_ready");
    }
    auto t = std::make_unique<http::Transport>(tcp::socket(ex_));
    const tcp::endpoint dial = mesh ? tcp::endpoint(e.addr.address(), s_.mesh_port) : e.addr;
    auto timed_out = std::make_shared<bool>(false);
    asio::steady_timer timer(ex_);
    auto arm = [&](std::chrono::milliseconds d) {
      timer.expires_after(d);
      timer.async_wait([timed_out, sock = &t->socket, alive = std::weak_ptr<bool>(timed_out)](asio::error_code ec) {
        if (ec || alive.expired()) return;
        *timed_out = true;
        asio::error_code ignored;
        sock->cancel(ignored);
      });
    };
    arm(s_.connect_timeout);
    auto [ec] = co_await t->socket.async_connect(dial, kAwait);
    timer.cancel();
    if (ec) {
      std::string kind = *timed_out ? "connect_timeout"
                         : ec == asio::error::connection_refused ? "connect_refused"
                                                                 : "connect_failed";
      co_return Error::upstream(kind, addrString(dial) + ": " + (*timed_out ? "timed out" : ec.message()));
    }
    asio::error_code ignored;
    t->socket.set_option(tcp::no_delay(true), ignored);
    if (mesh) {
      t->tls = std::make_unique<tls::TlsSocket>(t->socket, snapshot->client(), tls::TlsSocket::Role::kClient);
      auto st = t->tls->expectServerIdentity(e.identity);
      arm(s_.tls_handshake_timeout);
      if (st) st = co_await t->tls->handshake();
      if (st) {
        auto header = tls::makeTransportHeader(e.addr.port(), tls::kTransportH2);
        auto [wec, n] = co_await t->tls->writeAll(header.data(), header.size());
        if (wec) st = Error::upstream("io", wec.message());
      }
      timer.cancel();
      if (!st) {
        co_return Error::upstream("tls_" + (*timed_out ? std::string("timeout") : st.error().kind),
                                  st.error().message());
      }
    }
    t->ready();
    auto open = std::make_shared<OpenUpstream>(dstSeries(e));
    t->stream->countInto(open->series->read.get(), open->series->write.get());
    t->attachment = std::move(open);
    co_return t;
  }

  TlsLabels endpointTls(const Endpoint& e) const {
    if (!s_.identity_enabled) return {{"tls", "disabled"}};
    if (!e.identity.empty()) return {{"tls", "true"}, {"server_id", e.identity}};
    if (inbound()) return {{"tls", "no_identity"}, {"no_tls_reason", "loopback"}};
    return {{"tls", "no_identity"}, {"no_tls_reason", "not_provided_by_service_discovery"}};
  }

  std::shared_ptr<DstSeries> dstSeries(Endpoint& e) {
    if (e.tcp_series) return e.tcp_series;
    metrics::Labels l{{"direction", std::string(directionName(s_.direction))},
                      {"peer", "dst"},
                      {"target_addr", addrString(e.addr)},
                      {"target_ip", net::unmapped(e.addr.address()).to_string()},
                      {"target_port", std::to_string(e.addr.port())}};
    auto tls = endpointTls(e);
    l.insert(l.end(), tls.begin(), tls.end());
    l.insert(l.end(), e.dst_labels.begin(), e.dst_labels.end());  // from discovery, if any
    auto d = std::make_shared<DstSeries>();
    d->open_total = m_.tcp_open_total.get(l);
    d->open = m_.tcp_open_connections.get(l);
    d->read = m_.tcp_read_bytes_total.get(l);
    d->write = m_.tcp_write_bytes_total.get(l);
    auto closed = l;
    closed.emplace_back("errno", "");
    d->closed = m_.tcp_close_total.get(closed);
    e.tcp_series = d;
    return d;
  }

  // --- dispatch --------------------------------------------------------------------------

  // The request is taken (moved from) only once it is being sent: after a failed connection
  // attempt it is intact, so the caller may send it elsewhere.
  asio::awaitable<Result<Response>> sendH1(Endpoint& e, Request& req, bool& connect_failed) {
    std::erase_if(e.h1, [](const auto& c) { return c->broken(); });
    std::shared_ptr<http::H1Client> client;
    for (auto& c : e.h1) {
      if (c->reusable()) {
        client = c;
        break;
      }
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!client) {
        if (e.h1.size() >= s_.max_connections_per_endpoint) co_return Error::upstream("queue_full");
        auto t = co_await connect(e);
        if (!t) {
          connect_failed = true;
          co_return t.error();
        }
        client = std::make_shared<http::H1Client>(std::move(t.value()), h1_);
        e.h1.push_back(client);
      }
      auto r = co_await client->send(req);
      if (r || attempt == 1 || !client->retryable()) co_return r;
      // A reused keep-alive connection the upstream had closed before answering (and the
      // request had no body): send it again on a new one.
      countError("stale_connection_retried");
      client.reset();
    }
    co_return Error::upstream("connection_lost");
  }

  // One multiplexed connection per endpoint; another only when the open ones are at the peer's
  // stream limit (SETTINGS_MAX_CONCURRENT_STREAMS), up to kMaxH2Connections.
  static constexpr std::size_t kMaxH2Connections = 8;

  std::shared_ptr<http::H2Client> availableH2(Endpoint& e) {
    std::erase_if(e.h2, [](const auto& c) { return c->closed(); });
    for (auto& c : e.h2) {
      if (c->available()) return c;
    }
    return nullptr;
  }

  asio::awaitable<Result<Response>> sendH2(Endpoint& e, Request& req, bool& connect_failed) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      while (e.h2_connecting) {
        auto ev = e.h2_connecting;
        co_await ev->wait();
      }
      auto client = availableH2(e);
      if (!client) {
        if (e.h2.size() >= kMaxH2Connections) co_return Error::upstream("queue_full");
        auto ev = std::make_shared<http::detail::Event>(ex_);
        e.h2_connecting = ev;
        auto t = co_await connect(e);
        e.h2_connecting.reset();
        ev->set();
        if (!t) {
          connect_failed = true;
          co_return t.error();
        }
        // The hook holds the Impl weakly: the Impl owns this client (no cycle).
        http::H2Hooks hooks{[weak = weak_from_this()](std::string_view err) {
          if (auto self = weak.lock()) self->countError(err);
        }};
        client = http::H2Client::start(std::move(t.value()), h2_, std::move(hooks));
        e.h2.push_back(client);
      }
      const bool replayable = req.head.end_stream;
      auto r = co_await client->sendBorrowed(req);
      if (r || attempt == 1 || !replayable || r.error().kind != "refused_stream") co_return r;
      // Refused before processing (GOAWAY, REFUSED_STREAM): safe to send again (the head is
      // intact, and there was no body).
      req.body = Body::empty(ex_);
    }
    co_return Error::upstream("refused_stream");
  }

  // Not a coroutine itself: one coroutine frame less per request.
  asio::awaitable<Result<Response>> dispatch(Endpoint& e, Request& req, bool& connect_failed) {
    return e.kind == Kind::kH1 ? sendH1(e, req, connect_failed) : sendH2(e, req, connect_failed);
  }

  // Sends with the request timeout (set): past it the exchange is abandoned (its connection
  // closed or its stream cancelled when it completes) and the client gets 504.
  asio::awaitable<Result<Response>> dispatchTimed(Endpoint& e, Request& req, bool& connect_failed,
                                                  bool& timed_out) {
    struct Shared {
      explicit Shared(const asio::any_io_executor& ex) : done(ex) {}
      http::detail::Event done;
      std::optional<Result<Response>> result;
      bool abandoned = false;
      bool connect_failed = false;
      std::optional<Request> returned;  // the request, when it was not taken (connect failed)
    };
    auto shared = std::make_shared<Shared>(ex_);
    auto self = shared_from_this();
    Endpoint* ep = &e;
    asio::co_spawn(
        ex_,
        [self, ep, shared, req = std::move(req)]() mutable -> asio::awaitable<void> {
          auto r = co_await self->dispatch(*ep, req, shared->connect_failed);
          if (shared->connect_failed && !shared->abandoned) shared->returned.emplace(std::move(req));
          if (shared->abandoned) {
            if (r) r->body->cancel();
          } else {
            shared->result.emplace(std::move(r));
          }
          shared->done.set();
        },
        asio::detached);
    asio::steady_timer timer(ex_);
    timer.expires_after(s_.request_timeout);
    timer.async_wait([shared](asio::error_code ec) {
      if (ec || shared->done.isSet()) return;
      shared->abandoned = true;
      shared->done.set();
    });
    co_await shared->done.wait();
    timer.cancel();
    connect_failed = shared->connect_failed;
    if (shared->returned) req = std::move(*shared->returned);
    if (shared->abandoned) {
      timed_out = true;
      co_return Error::upstream("response_timeout");
    }
    co_return std::move(*shared->result);
  }

  // --- the handler -----------------------------------------------------------------------

  struct ConnCtx {
    HttpConnInfo info;
    // The route series of the last request on this connection: keep-alive requests mostly go to
    // the same endpoint with the same authority, and then cost no lookup.
    Endpoint* last_ep = nullptr;
    std::string last_authority;
    uint64_t last_labels_version = 0;
    uint64_t last_epoch = 0;
    std::shared_ptr<RouteSeries> last_rs;
  };

  RouteSeries& seriesFor(ConnCtx& cc, Endpoint& e, const std::string& authority, Clock::time_point now) {
    if (cc.last_rs && cc.last_ep == &e && cc.last_epoch == epoch_ &&
        cc.last_labels_version == e.labels_version && cc.last_authority == authority) {
      cc.last_rs->used = now;
      return *cc.last_rs;
    }
    const TlsLabels& tls = inbound() ? cc.info.tls : e.tls;
    RouteSeries& rs = routeSeries(e.addr, authority, tls, e.dst_labels.empty() ? nullptr : &e.dst_labels);
    cc.last_ep = &e;
    cc.last_authority = authority;
    cc.last_labels_version = e.labels_version;
    cc.last_epoch = epoch_;
    cc.last_rs = rs.self.lock();
    return rs;
  }

  // The request's mesh fields: restored from (inbound, from a peer proxy) or removed (nobody else
  // may say them).
  void meshFields(Request& req, const ConnCtx& cc) {
    if (inbound() && cc.info.from_mesh) {
      // Restore the HTTP/1 request the peer's application sent.
      if (auto orig = http::find(req.head.headers, kOrigProto)) {
        std::string v(*orig);
        req.head.proto = v.starts_with("HTTP/1.0") ? http::Proto::kHttp10 : http::Proto::kHttp11;
        req.head.absolute_form = v.find("absolute-form") != std::string::npos;
        http::erase(req.head.headers, kOrigProto);
        restoreOrigNames(req.head);
      }
      return;
    }
    http::erase(req.head.headers, kOrigProto);
    http::erase(req.head.headers, kOrigNames);
  }

  Kind kindFor(const Request& req, const std::string* identity) const {
    if (identity != nullptr) return Kind::kMeshH2;
    return req.head.proto == http::Proto::kHttp2 ? Kind::kH2 : Kind::kH1;
  }

  // The endpoints a request may go to, when discovery is not asked: the static list for the
  // target, else the target itself (in `single`: the common case needs no vector).
  void staticRoute(const Request& req, const ConnCtx& cc, Clock::time_point now,
                   std::vector<Endpoint*>& candidates, Endpoint*& single) {
    auto identityOf = [&](const tcp::endpoint& ep) -> const std::string* {
      if (inbound() || !s_.identity_enabled || !s_.meshed) return nullptr;
      return s_.meshed->identityFor(ep);
    };
    const std::vector<tcp::endpoint>* list =
        (!inbound() && s_.endpoints) ? s_.endpoints->find(cc.info.target) : nullptr;
    if (list) {
      for (const auto& ep : *list) {
        const std::string* id = identityOf(ep);
        candidates.push_back(&endpoint(ep, kindFor(req, id), id, now));
      }
      return;
    }
    const std::string* id = identityOf(cc.info.target);
    single = &endpoint(cc.info.target, kindFor(req, id), id, now);
  }

  void discoveredRoute(const Request& req, const Discovery& d, Clock::time_point now,
                       std::vector<Endpoint*>& candidates) {
    for (const auto& de : d.endpoints) {
      const std::string* id = (s_.identity_enabled && !de.identity.empty()) ? &de.identity : nullptr;
      Endpoint& e = endpoint(de.addr, kindFor(req, id), id, now);
      if (de.since > e.since) {
        if (e.since != 0) forget(e, now);
        e.since = de.since;
      }
      if (e.labels_version != d.version) {
        e.dst_labels = de.labels;
        e.labels_version = d.version;
      }
      candidates.push_back(&e);
    }
  }

  // Before sending to `e`: the request series counts it, and a meshed hop says what to restore.
  RouteSeries& beginAttempt(Request& req, ConnCtx& cc, Endpoint& e, Clock::time_point now) {
    RouteSeries& rs = seriesFor(cc, e, req.head.authority, now);
    rs.requests->inc();
    if (e.kind == Kind::kMeshH2 && req.head.proto != http::Proto::kHttp2) {
      std::string v(http::protoName(req.head.proto));
      if (req.head.absolute_form) v += "; absolute-form";
      addOrigNames(req.head);
      req.head.headers.push_back(http::Field{std::string(kOrigProto), std::move(v)});
    }
    return rs;
  }

  // After an attempt. Returns whether to try `next` (set) with the same request: a connection
  // that failed took nothing, so another endpoint may serve a request without a body.
  bool endAttempt(Request& req, Endpoint& e, RouteSeries& rs, const Result<Response>& result,
                  bool connect_failed, bool may_retry, std::span<Endpoint* const> choices, Endpoint*& next) {
    if (result) {
      // Failure accrual: 5xx answers in a row (an endpoint whose proxy is up but whose
      // application is not answers fast, and would otherwise attract traffic).
      if (result->head.status >= 500) {
        if (++e.consecutive_failures >= kFailureAccrual) markDown(e);
      } else {
        e.consecutive_failures = 0;
        markUp(e);
      }
      return false;
    }
    if (!connect_failed) return false;
    markDown(e);
    if (!may_retry || choices.size() < 2) return false;
    countError(result.error().kind);
    countResponse(rs, 0, "", result.error().kind);
    next = pick(choices, &e, Clock::now());
    if (next == &e) return false;
    // Not taken: send it there, without what this hop added for the mesh.
    http::erase(req.head.headers, kOrigProto);
    http::erase(req.head.headers, kOrigNames);
    return true;
  }

  // The response to give the client, and its metrics.
  Response finish(Result<Response>& result, Endpoint* e, RouteSeries* rs, const ConnCtx& cc,
                  Clock::time_point received, bool grpc, bool timed_out) {
    const auto now = Clock::now();
    const double latency = ms(now - received);
    if (!result) {
      const Error& err = result.error();
      ProxyErr pe = classify(err, timed_out);
      countError(pe.kind);
      spdlog::debug("{} request to {}: {} ({})", directionName(s_.direction),
                    e ? addrString(e->addr) : addrString(cc.info.target), pe.kind, err.message());
      Response r = errorResponse(ex_, grpc, pe);
      if (e) observeRtt(*e, pe.status == 504 ? latency : std::max(latency, 1000.0), now);
      if (rs) {
        observeLatency(*rs, r.head.status, latency);
        trackResponse(r, *rs, grpc);
      }
      return r;
    }
    Response resp = std::move(result.value());
    observeRtt(*e, latency, now);
    observeLatency(*rs, resp.head.status, latency);
    trackResponse(resp, *rs, grpc);
    return resp;
  }

  // A coroutine kept small on purpose (the work is in the helpers above): Asio recycles
  // coroutine frames of up to ~1 KB, a larger one costs a malloc and free per request.
  asio::awaitable<Response> handle(Request req, ConnCtx& cc) {
    const auto received = req.received;
    sweep(received);
    const bool grpc = req.head.isGrpc();
    meshFields(req, cc);

    std::vector<Endpoint*> candidates;
    Endpoint* single = nullptr;
    auto routed = received;  // the time endpoints are judged at (after a wait for discovery)
    if (!inbound() && dest_ && dest_->inScope(cc.info.target)) {
      auto d = co_await dest_->resolve(cc.info.target);
      routed = Clock::now();
      if (!d || !(*d)->exists) {
        ProxyErr pe{503, !d ? "discovery_unavailable" : "unknown_destination", 14};
        countError(pe.kind);
        co_return errorResponse(ex_, grpc, pe);
      }
      discoveredRoute(req, **d, routed, candidates);
    } else {
      staticRoute(req, cc, routed, candidates, single);
    }
    const std::span<Endpoint* const> choices =
        single != nullptr ? std::span<Endpoint* const>(&single, 1) : std::span<Endpoint* const>(candidates);

    Endpoint* e = pick(choices, nullptr, routed);
    Result<Response> result = Error::upstream("no_endpoints");
    bool timed_out = false;
    RouteSeries* rs = nullptr;
    const bool replayable = req.head.end_stream;
    for (int attempt = 0; e != nullptr && attempt < 2; ++attempt) {
      rs = &beginAttempt(req, cc, *e, routed);
      bool connect_failed = false;
      ++e->pending;
      if (s_.request_timeout.count() == 0) {
        result = co_await dispatch(*e, req, connect_failed);
      } else {
        result = co_await dispatchTimed(*e, req, connect_failed, timed_out);
      }
      --e->pending;
      Endpoint* next = nullptr;
      if (!endAttempt(req, *e, *rs, result, connect_failed, attempt == 0 && replayable, choices, next)) break;
      e = next;
    }
    co_return finish(result, e, rs, cc, received, grpc, timed_out);
  }

  // Upgrade / CONNECT: a dedicated connection carries the head and then bytes both ways.
  asio::awaitable<void> upgrade(http::RequestHead head, http::ByteStream& down, std::string buffered,
                                const ConnCtx& cc) {
    const tcp::endpoint target = cc.info.target;
    const std::string* id = (!inbound() && s_.identity_enabled && s_.meshed) ? s_.meshed->identityFor(target) : nullptr;
    Endpoint tmp;
    tmp.addr = target;
    tmp.kind = Kind::kH1;
    Result<std::unique_ptr<http::Transport>> t = Error::upstream("connect_failed");
    if (id != nullptr) {
      // Meshed: an mTLS tunnel whose transport header says raw bytes follow (the far proxy
      // forwards them to the application as they are).
      tmp.identity = *id;
      t = co_await connectTunnel(tmp);
    } else {
      t = co_await connect(tmp);
    }
    auto rs = &routeSeries(target, head.authority, cc.info.tls);
    rs->requests->inc();
    if (!t) {
      ProxyErr pe = classify(t.error(), false);
      countError(pe.kind);
      std::string out = http::errorResponse(pe.status, pe.kind);
      co_await down.writeAll(out.data(), out.size());
      down.shutdownWrite();
      countResponse(*rs, pe.status, "", pe.kind);
      co_return;
    }
    auto up = std::move(t.value());
    std::string out = http::serializeRequestHead(head, false, true);
    out += buffered;
    auto [wec, wn] = co_await up->stream->writeAll(out.data(), out.size());
    if (wec) {
      down.close(true);
      co_return;
    }
    countResponse(*rs, 101, "", "");
    // Relay both ways until both directions end (half-close passes through).
    auto done = std::make_shared<http::detail::Event>(ex_);
    http::ByteStream* upstream = up->stream.get();
    asio::co_spawn(ex_, relay(upstream, &down, done), asio::detached);
    co_await relayOneWay(&down, upstream);
    co_await done->wait();
  }

  static asio::awaitable<void> relayOneWay(http::ByteStream* from, http::ByteStream* to) {
    std::vector<char> buf(16 * 1024);
    for (;;) {
      auto [ec, n] = co_await from->readSome(buf.data(), buf.size());
      if (n > 0) {
        auto [wec, wn] = co_await to->writeAll(buf.data(), n);
        if (wec) {
          from->close(true);
          co_return;
        }
      }
      if (ec == asio::error::eof) {
        to->shutdownWrite();
        co_return;
      }
      if (ec) {
        to->close(true);
        co_return;
      }
    }
  }
  static asio::awaitable<void> relay(http::ByteStream* from, http::ByteStream* to,
                                     std::shared_ptr<http::detail::Event> done) {
    co_await relayOneWay(from, to);
    done->set();
  }

  asio::awaitable<Result<std::unique_ptr<http::Transport>>> connectTunnel(Endpoint& e) {
    // As connect(), but the transport header says "raw bytes follow".
    tls::TlsSnapshotPtr snapshot = tls::currentSnapshot();
    if (!snapshot) co_return Error::upstream("identity_not_ready");
    auto t = std::make_unique<http::Transport>(tcp::socket(ex_));
    auto [ec] = co_await t->socket.async_connect(tcp::endpoint(e.addr.address(), s_.mesh_port), kAwait);
    if (ec) co_return Error::upstream("connect_failed", ec.message());
    t->tls = std::make_unique<tls::TlsSocket>(t->socket, snapshot->client(), tls::TlsSocket::Role::kClient);
    auto st = t->tls->expectServerIdentity(e.identity);
    if (st) st = co_await t->tls->handshake();
    if (st) {
      auto header = tls::makeTransportHeader(e.addr.port());
      auto [wec, n] = co_await t->tls->writeAll(header.data(), header.size());
      if (wec) st = Error::upstream("io", wec.message());
    }
    if (!st) co_return Error::upstream("tls_" + st.error().kind, st.error().message());
    t->ready();
    co_return t;
  }
};

HttpProxy::HttpProxy(const StackSettings& settings, ProxyMetrics& metrics, asio::any_io_executor ex,
                     std::shared_ptr<DestinationClient> destination)
    : impl_(std::make_shared<Impl>(settings, metrics, std::move(ex))) {
  impl_->dest_ = std::move(destination);
}

HttpProxy::~HttpProxy() {
  for (auto& [k, e] : impl_->endpoints_) {
    for (auto& c : e->h1) c->close();
    for (auto& c : e->h2) c->shutdown();
  }
}

asio::awaitable<void> HttpProxy::serve(http::ByteStream& downstream, std::string prefix, HttpConnInfo info) {
  auto impl = impl_;
  auto cc = std::make_shared<Impl::ConnCtx>();
  cc->info = std::move(info);
  // Named locals, not temporaries inside the co_await expressions: GCC 12 mis-destroys some
  // temporaries of a co_await full-expression (found as a crash here).
  http::Handler handler = [impl, cc](Request req) -> asio::awaitable<Response> {
    return impl->handle(std::move(req), *cc);
  };
  auto on_error = [impl](std::string_view e) { impl->countError(e); };
  auto drain = std::make_shared<http::DrainSignal>();
  drain->draining = impl->draining_;
  std::erase_if(impl->drains_, [](const auto& w) { return w.expired(); });
  impl->drains_.push_back(drain);
  if (cc->info.h2) {
    http::H2Hooks hooks{on_error};
    auto st = co_await http::serveH2(downstream, std::move(prefix), impl->h2_, std::move(handler),
                                     std::move(hooks), drain);
    (void)st;
    co_return;
  }
  http::UpgradeHandler upgrade = [impl, cc](http::RequestHead head, http::ByteStream& down,
                                            std::string buffered) -> asio::awaitable<void> {
    return impl->upgrade(std::move(head), down, std::move(buffered), *cc);
  };
  http::H1Hooks hooks{on_error};
  auto st = co_await http::serveH1(downstream, std::move(prefix), impl->h1_, std::move(handler),
                                   std::move(upgrade), std::move(hooks), drain);
  (void)st;
}

void HttpProxy::drain() {
  impl_->draining_ = true;
  for (auto& w : impl_->drains_) {
    if (auto d = w.lock()) {
      d->draining = true;
      if (d->notify) d->notify();
    }
  }
  impl_->drains_.clear();
}

// --- StaticEndpoints ---------------------------------------------------------------------

Result<StaticEndpoints> StaticEndpoints::parse(std::string_view text) {
  StaticEndpoints out;
  auto invalid = [](std::string_view item, std::string_view why) {
    return Error::internal("invalid_value", "\"" + std::string(item) + "\": " + std::string(why) +
                                                " (expected ADDR:PORT=EP:PORT[,EP:PORT...];...)");
  };
  auto parseEp = [](std::string_view s) -> std::optional<tcp::endpoint> {
    auto hp = config::parseHostPort(std::string(s));
    if (!hp) return std::nullopt;
    asio::error_code ec;
    auto ip = asio::ip::make_address(hp->host, ec);
    if (ec) return std::nullopt;
    return tcp::endpoint(ip, hp->port);
  };
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  std::string_view rest = text;
  while (!rest.empty()) {
    auto semi = rest.find(';');
    std::string_view item = trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) return invalid(item, "no '='");
    auto svc = parseEp(trim(item.substr(0, eq)));
    if (!svc) return invalid(item, "the service address is not IP:PORT");
    std::vector<tcp::endpoint> eps;
    std::string_view list = item.substr(eq + 1);
    while (!list.empty()) {
      auto comma = list.find(',');
      auto one = trim(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      if (one.empty()) continue;
      auto ep = parseEp(one);
      if (!ep) return invalid(item, "endpoint \"" + std::string(one) + "\" is not IP:PORT");
      eps.push_back(*ep);
    }
    if (eps.empty()) return invalid(item, "no endpoints");
    out.services_[*svc] = std::move(eps);
  }
  return out;
}

const std::vector<tcp::endpoint>* StaticEndpoints::find(const tcp::endpoint& target) const {
  tcp::endpoint plain(net::unmapped(target.address()), target.port());
  auto it = services_.find(plain);
  return it == services_.end() ? nullptr : &it->second;
}

}  // namespace weft::proxy
