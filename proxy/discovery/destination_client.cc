#include "proxy/discovery/destination_client.h"

#include "proxy/tcp/stack.h"  // addrString

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <random>
#include <unordered_map>

#include "lib/http/event.h"
#include "weft/grpc/wire.h"
#include "weft/http/body.h"
#include "weft/http/h2.h"
#include "weft/http/stream.h"
#include "weft/net/socket.h"

namespace weft::proxy {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
namespace wire = grpc::wire;

namespace {

constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::string_view kGetPath = "/weft.destination.v1.Destination/Get";


// --- decoding (api/weft/v1/destination.proto) --------------------------------------------------

bool decodeLabels(std::string_view entry, metrics::Labels& out) {
  std::string key, value;
  bool ok = wire::forEachField(entry, [&](const wire::Field& f) {
    if (f.type != wire::kLengthDelimited) return true;
    if (f.number == 1) key = std::string(f.bytes);
    if (f.number == 2) value = std::string(f.bytes);
    return true;
  });
  if (!ok || key.empty()) return ok;
  for (auto& [k, v] : out) {
    if (k == key) {
      v = value;
      return true;
    }
  }
  out.emplace_back(std::move(key), std::move(value));
  return true;
}

bool decodeAddress(std::string_view msg, tcp::endpoint& out) {
  bool have_ip = false;
  asio::ip::address ip;
  uint32_t port = 0;
  bool ok = wire::forEachField(msg, [&](const wire::Field& f) {
    if (f.number == 1 && f.type == wire::kLengthDelimited) {  // IPAddress
      return wire::forEachField(f.bytes, [&](const wire::Field& g) {
        if (g.number == 1 && g.type == wire::kFixed32) {
          ip = asio::ip::address_v4(static_cast<uint32_t>(g.varint));
          have_ip = true;
        } else if (g.number == 2 && g.type == wire::kLengthDelimited && g.bytes.size() == 16) {
          asio::ip::address_v6::bytes_type b;
          std::copy(g.bytes.begin(), g.bytes.end(), b.begin());
          ip = asio::ip::address_v6(b);
          have_ip = true;
        }
        return true;
      });
    }
    if (f.number == 2 && f.type == wire::kVarint) port = static_cast<uint32_t>(f.varint);
    return true;
  });
  if (!ok || !have_ip || port == 0 || port > 65535) return false;
  out = tcp::endpoint(ip, static_cast<uint16_t>(port));
  return true;
}

bool decodeWeightedAddr(std::string_view msg, const metrics::Labels& set_labels, DiscoveredEndpoint& out) {
  bool have_addr = false;
  out.labels = set_labels;
  bool ok = wire::forEachField(msg, [&](const wire::Field& f) {
    switch (f.number) {
      case 1:
        if (f.type == wire::kLengthDelimited) have_addr = decodeAddress(f.bytes, out.addr);
        return true;
      case 3:
        if (f.type == wire::kVarint) out.weight = static_cast<uint32_t>(f.varint);
        return true;
      case 4:
        return f.type != wire::kLengthDelimited || decodeLabels(f.bytes, out.labels);
      case 5:  // TlsIdentity { dns_like_identity { name } }
        if (f.type != wire::kLengthDelimited) return true;
        return wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.number == 1 && g.type == wire::kLengthDelimited) {
            return wire::forEachField(g.bytes, [&](const wire::Field& h) {
              if (h.number == 1 && h.type == wire::kLengthDelimited) out.identity = std::string(h.bytes);
              return true;
            });
          }
          return true;
        });
      case 6:  // ProtocolHint { opaque_transport(2) { inbound_port(1) } }
        if (f.type != wire::kLengthDelimited) return true;
        return wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.number == 2 && g.type == wire::kLengthDelimited) {
            return wire::forEachField(g.bytes, [&](const wire::Field& h) {
              if (h.number == 1 && h.type == wire::kVarint && h.varint > 0 && h.varint <= 65535) {
                out.inbound_port = static_cast<uint16_t>(h.varint);
              }
              return true;
            });
          }
          return true;
        });
      default:
        return true;
    }
  });
  return ok && have_addr;
}

void removeAddr(Discovery& state, const tcp::endpoint& addr) {
  std::erase_if(state.endpoints, [&](const DiscoveredEndpoint& e) { return e.addr == addr; });
}

// Subnet membership, for the scope check.
struct Net {
  std::array<uint8_t, 16> bytes{};
  bool v6 = false;
  int prefix = 0;
};

bool contains(const Net& n, const asio::ip::address& a) {
  std::array<uint8_t, 16> b{};
  if (a.is_v4() != !n.v6) return false;
  if (a.is_v4()) {
    auto v = a.to_v4().to_bytes();
    std::copy(v.begin(), v.end(), b.begin());
  } else {
    auto v = a.to_v6().to_bytes();
    std::copy(v.begin(), v.end(), b.begin());
  }
  int bits = n.prefix;
  for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((b[i] & mask) != (n.bytes[i] & mask)) return false;
  }
  return true;
}

}  // namespace

bool applyUpdate(std::string_view update, Discovery& state) {
  return wire::forEachField(update, [&](const wire::Field& f) {
    if (f.type != wire::kLengthDelimited) return true;
    switch (f.number) {
      case 1: {  // add: WeightedAddrSet { addrs(1), metric_labels(2) }
        metrics::Labels set_labels;
        std::vector<std::string_view> addrs;
        bool ok = wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.type != wire::kLengthDelimited) return true;
          if (g.number == 1) addrs.push_back(g.bytes);
          if (g.number == 2) return decodeLabels(g.bytes, set_labels);
          return true;
        });
        if (!ok) return false;
        state.exists = true;
        for (auto a : addrs) {
          DiscoveredEndpoint e;
          if (!decodeWeightedAddr(a, set_labels, e)) return false;
          auto present = std::find_if(state.endpoints.begin(), state.endpoints.end(),
                                      [&](const DiscoveredEndpoint& x) { return x.addr == e.addr; });
          if (present != state.endpoints.end()) {
            e.since = present->since;  // new labels or weight, same life
            *present = std::move(e);
          } else {
            state.endpoints.push_back(std::move(e));
          }
        }
        return true;
      }
      case 2:  // remove: AddrSet { addrs(1) }
        return wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.number != 1 || g.type != wire::kLengthDelimited) return true;
          tcp::endpoint addr;
          if (!decodeAddress(g.bytes, addr)) return false;
          removeAddr(state, addr);
          return true;
        });
      case 3: {  // no_endpoints { exists(1) }
        bool exists = false;
        bool ok = wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.number == 1 && g.type == wire::kVarint) exists = g.varint != 0;
          return true;
        });
        state.endpoints.clear();
        state.exists = exists;
        return ok;
      }
      case 4:  // service: ServiceInfo { opaque(3) }
        return wire::forEachField(f.bytes, [&](const wire::Field& g) {
          if (g.number == 3 && g.type == wire::kVarint) state.opaque = g.varint != 0;
          return true;
        });
      default:
        return true;
    }
  });
}

bool applyFirstUpdate(std::string_view update, Discovery& state) {
  Discovery fresh;
  if (!applyUpdate(update, fresh)) return false;
  for (auto& e : fresh.endpoints) {
    for (const auto& old : state.endpoints) {
      if (old.addr == e.addr) e.since = old.since;
    }
  }
  state = std::move(fresh);
  return true;
}

std::string encodeGetDestination(std::string_view path) {
  std::string out;
  wire::putBytes(out, 1, "k8s");
  wire::putBytes(out, 2, path);
  return out;
}

// ------------------------------------------------------------------------------------------------

class DestinationClient::Impl : public std::enable_shared_from_this<DestinationClient::Impl> {
 public:
  struct Watch {
    explicit Watch(const asio::any_io_executor& ex) : first(ex) {}
    std::string path;
    DiscoveryPtr current;
    http::detail::Event first;  // set once an answer (or a failure to get one) is known
    bool failed_once = false;   // the first attempt failed: waiters fail fast
    std::shared_ptr<http::Body> body;  // the open stream's response body
    bool stopped = false;
    Clock::time_point used = Clock::now();
    Clock::time_point not_found_at{};
  };

  Impl(asio::any_io_executor ex, DestinationSettings s)
      : ex_(std::move(ex)), s_(std::move(s)), sweep_timer_(ex_), rng_(std::random_device{}()) {
    for (const auto& sub : s_.networks) {
      Net n;
      asio::error_code ec;
      auto a = asio::ip::make_address(sub.address, ec);
      if (ec) continue;
      n.v6 = a.is_v6();
      n.prefix = sub.prefix;
      if (a.is_v4()) {
        auto b = a.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), n.bytes.begin());
      } else {
        auto b = a.to_v6().to_bytes();
        std::copy(b.begin(), b.end(), n.bytes.begin());
      }
      nets_.push_back(n);
    }
  }

  asio::any_io_executor ex_;
  DestinationSettings s_;
  std::vector<Net> nets_;
  std::unordered_map<std::string, std::shared_ptr<Watch>> watches_;
  std::shared_ptr<http::H2Client> client_;
  std::shared_ptr<http::detail::Event> connecting_;
  asio::steady_timer sweep_timer_;
  bool sweeping_ = false;
  bool shut_ = false;
  uint64_t version_ = 0;
  std::mt19937 rng_;

  asio::awaitable<Result<std::shared_ptr<http::H2Client>>> connection() {
    while (connecting_) {
      auto ev = connecting_;
      co_await ev->wait();
    }
    if (client_ && client_->available()) co_return client_;
    auto ev = std::make_shared<http::detail::Event>(ex_);
    connecting_ = ev;
    auto t = std::make_unique<http::Transport>(tcp::socket(ex_));
    asio::steady_timer timer(ex_);
    bool timed_out = false;
    timer.expires_after(std::chrono::seconds(2));
    timer.async_wait([&timed_out, sock = &t->socket](asio::error_code ec) {
      if (ec) return;
      timed_out = true;
      asio::error_code ignored;
      sock->cancel(ignored);
    });
    auto [ec] = co_await t->socket.async_connect(s_.addr, kAwait);
    timer.cancel();
    connecting_.reset();
    ev->set();
    if (ec) {
      co_return Error::upstream("discovery_unavailable",
                                addrString(s_.addr) + ": " + (timed_out ? "timed out" : ec.message()));
    }
    asio::error_code ignored;
    t->socket.set_option(tcp::no_delay(true), ignored);
    t->ready();
    if (client_) client_->shutdown();
    client_ = http::H2Client::start(std::move(t), http::H2Settings{});
    co_return client_;
  }

  // Stamps `state` (the stream's own copy too, so `since` stays put on the next update).
  void publish(Watch& w, Discovery& state) {
    state.version = ++version_;
    for (auto& e : state.endpoints) {
      if (e.since == 0) e.since = state.version;
    }
    if (spdlog::should_log(spdlog::level::debug)) {
      std::string eps;
      for (const auto& e : state.endpoints) {
        eps += (eps.empty() ? "" : " ") + addrString(e.addr) + (e.identity.empty() ? "" : "(" + e.identity + ")");
      }
      spdlog::debug("destination: {}: {}{}", w.path, state.exists ? "" : "unknown", eps);
    }
    w.current = std::make_shared<const Discovery>(state);
    w.first.set();
  }

  // One subscription's life: stream, apply updates, reconnect on failure, until stopped.
  asio::awaitable<void> run(std::shared_ptr<Watch> w) {
    auto self = shared_from_this();
    std::chrono::milliseconds backoff{100};
    while (!w->stopped && !shut_) {
      bool progressed = false;
      auto client = co_await connection();
      if (client) {
        http::Request req;
        req.head.method = "POST";
        req.head.scheme = "http";
        req.head.authority = "destination.weft";
        req.head.path = std::string(kGetPath);
        req.head.proto = http::Proto::kHttp2;
        req.head.headers = {{"content-type", "application/grpc"}, {"te", "trailers"}};
        std::string msg = encodeGetDestination(w->path);
        std::string frame(5, '\0');
        const auto len = static_cast<uint32_t>(msg.size());
        frame[1] = static_cast<char>(len >> 24);
        frame[2] = static_cast<char>(len >> 16);
        frame[3] = static_cast<char>(len >> 8);
        frame[4] = static_cast<char>(len);
        frame += msg;
        req.body = http::Body::make(ex_);
        req.body->push(frame);
        req.body->finish();
        auto resp = co_await (*client)->send(std::move(req));
        if (resp && resp->head.status == 200) {
          w->body = resp->body;
          Discovery state = w->current ? *w->current : Discovery{};
          std::string buf;
          std::string grpc_status;
          if (auto g = http::find(resp->head.headers, "grpc-status")) grpc_status = *g;
          bool broken = false;
          bool first = true;
          for (;;) {
            auto chunk = co_await resp->body->read();
            if (chunk.kind == http::Body::Kind::kData) {
              buf += chunk.data;
              std::size_t off = 0;
              while (buf.size() - off >= 5) {
                const auto* p = reinterpret_cast<const uint8_t*>(buf.data() + off);
                const uint32_t n = (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | p[4];
                if (p[0] != 0 || n > (4u << 20)) {
                  broken = true;
                  break;
                }
                if (buf.size() - off - 5 < n) break;
                const auto update = std::string_view(buf).substr(off + 5, n);
                if (!(first ? applyFirstUpdate(update, state) : applyUpdate(update, state))) {
                  broken = true;
                  break;
                }
                off += 5 + n;
                first = false;
                publish(*w, state);
                progressed = true;
              }
              buf.erase(0, off);
              if (broken) {
                spdlog::warn("destination: malformed update for {}; reconnecting", w->path);
                resp->body->cancel();
                break;
              }
              continue;
            }
            if (chunk.kind == http::Body::Kind::kEnd) {
              if (auto g = http::find(chunk.trailers, "grpc-status")) grpc_status = *g;
            }
            break;
          }
          w->body.reset();
          if (grpc_status == "5") {
            // Not found: answered (and remembered for a while) rather than retried.
            Discovery nf;
            nf.exists = false;
            publish(*w, nf);
            w->not_found_at = Clock::now();
            w->stopped = true;
            co_return;
          }
        } else if (resp) {
          spdlog::debug("destination: {} answered HTTP {}", addrString(s_.addr), resp->head.status);
        }
      }
      if (w->stopped || shut_) break;
      if (progressed) backoff = std::chrono::milliseconds(100);
      if (!w->current) {
        // Nothing known yet: whoever waits gets "unavailable" now rather than after the timeout.
        w->failed_once = true;
        w->first.set();
      }
      std::uniform_int_distribution<int> jitter(0, static_cast<int>(backoff.count() / 2));
      asio::steady_timer pause(ex_, backoff + std::chrono::milliseconds(jitter(rng_)));
      co_await pause.async_wait(kAwait);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10'000));
    }
  }

  void startSweep() {
    if (sweeping_ || shut_) return;
    sweeping_ = true;
    sweep_timer_.expires_after(std::chrono::seconds(5));
    sweep_timer_.async_wait([weak = weak_from_this()](asio::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->sweeping_ = false;
      const auto now = Clock::now();
      std::erase_if(self->watches_, [&](auto& kv) {
        Watch& w = *kv.second;
        const bool idle = now - w.used > self->s_.idle_timeout;
        const bool expired_not_found = w.stopped && now - w.not_found_at > self->s_.not_found_ttl;
        if (idle || expired_not_found) {
          w.stopped = true;
          if (w.body) w.body->cancel();
          return true;
        }
        return false;
      });
      if (!self->watches_.empty()) self->startSweep();
    });
  }

  asio::awaitable<Result<DiscoveryPtr>> resolve(const tcp::endpoint& target) {
    const std::string path = addrString(target);
    auto& slot = watches_[path];
    if (slot && slot->stopped && Clock::now() - slot->not_found_at > s_.not_found_ttl) slot.reset();
    if (!slot) {
      slot = std::make_shared<Watch>(ex_);
      slot->path = path;
      asio::co_spawn(ex_, run(slot), asio::detached);
      startSweep();
    }
    auto w = slot;
    w->used = Clock::now();
    if (w->current) co_return w->current;
    if (!w->first.isSet()) {
      // Bounded wait for the first answer.
      asio::steady_timer timer(ex_);
      timer.expires_after(s_.first_answer_timeout);
      timer.async_wait([w](asio::error_code ec) {
        if (!ec) w->first.set();
      });
      co_await w->first.wait();
      timer.cancel();
    }
    if (w->current) co_return w->current;
    co_return Error::upstream("discovery_unavailable", "no answer from the destination service for " + path);
  }
};

DestinationClient::DestinationClient(asio::any_io_executor ex, DestinationSettings settings)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(settings))) {}

DestinationClient::~DestinationClient() { shutdown(); }

bool DestinationClient::inScope(const tcp::endpoint& target) const {
  const auto ip = net::unmapped(target.address());
  return std::any_of(impl_->nets_.begin(), impl_->nets_.end(), [&](const Net& n) { return contains(n, ip); });
}

asio::awaitable<Result<DiscoveryPtr>> DestinationClient::resolve(const tcp::endpoint& target) {
  auto impl = impl_;
  co_return co_await impl->resolve(target);
}

void DestinationClient::shutdown() {
  impl_->shut_ = true;
  asio::error_code ignored;
  impl_->sweep_timer_.cancel();
  for (auto& [k, w] : impl_->watches_) {
    w->stopped = true;
    if (w->body) w->body->cancel();
  }
  impl_->watches_.clear();
  if (impl_->client_) impl_->client_->shutdown();
}

}  // namespace weft::proxy
