// weft-tcp-bench: the client and the server of bench/run's layer-4 workloads (bench/README.md).
//
// One thread, one epoll loop, non-blocking sockets, no framework: the tool shares a core with its
// peer while the proxy under test has the other one, so every cycle it spends is a cycle the
// direct baseline does not get. Plain epoll also keeps it quick to build with the rest of the tree.
//
//   weft-tcp-bench server [--listen IP] [--port P]   prints "listening <port>", serves until killed
//   weft-tcp-bench stream --target IP:PORT [--conns K] [--duration S] [--write-size B]
//   weft-tcp-bench churn  --target IP:PORT [--conns C] [--duration S] [--size N]
//   weft-tcp-bench rr     --target IP:PORT [--conns C] [--duration S] [--size N]
// A client prints one JSON object on stdout and exits 0 when the run was clean, 1 when a byte
// count did not verify or nothing completed, 2 on bad usage.
//
// Wire format. The client speaks first (a proxy's protocol detection waits for it) with an
// 8-byte header: 'W', mode, 0, 0, then the request size as a big-endian u32. Mode 'S' (stream):
// the client sends bytes until it half-closes; the server discards them and, on EOF, answers with
// the 8-byte big-endian count of payload bytes it received, then closes. Mode 'R' (request/
// response): for every `size` payload bytes received the server sends `size` bytes back, and it
// closes on EOF. The third header byte (0) is neither an HTTP token character nor SP and the
// first is neither TLS's 22 nor HTTP/2's 'P', so detection decides "opaque" on the first read.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weft::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kHeaderSize = 8;
constexpr uint8_t kMagic = 'W';
constexpr uint8_t kModeStream = 'S';
constexpr uint8_t kModeRr = 'R';
constexpr std::size_t kIoBufferSize = 256 * 1024;
constexpr int kMaxEvents = 256;
// After the deadline a stream client waits this long for the server's byte counts: a proxy that
// loses the half-close shows up as a failed verification, not as a hang.
constexpr auto kAckTimeout = std::chrono::seconds(15);

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "weft-tcp-bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "weft-tcp-bench: %s\n"
               "usage: weft-tcp-bench server [--listen IP] [--port P]\n"
               "       weft-tcp-bench stream|churn|rr --target IP:PORT [--conns N] "
               "[--duration SECONDS] [--size BYTES] [--write-size BYTES]\n",
               why);
  std::exit(2);
}

std::string errnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "E" + std::to_string(err);
}

void putBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v & 0xff);
}
void putBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v & 0xff);
}
uint64_t getBe(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int socketError(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

class Epoll {
 public:
  Epoll() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (fd_ < 0) die("epoll_create1");
  }
  ~Epoll() { ::close(fd_); }
  Epoll(const Epoll&) = delete;
  Epoll& operator=(const Epoll&) = delete;

  void add(int fd, uint32_t events, void* ptr) { ctl(EPOLL_CTL_ADD, fd, events, ptr); }
  void mod(int fd, uint32_t events, void* ptr) { ctl(EPOLL_CTL_MOD, fd, events, ptr); }
  // Closing the descriptor removes it from the set; no EPOLL_CTL_DEL needed.
  int wait(epoll_event* events, int timeout_ms) {
    int n = ::epoll_wait(fd_, events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    return std::max(n, 0);
  }

 private:
  void ctl(int op, int fd, uint32_t events, void* ptr) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = ptr;
    if (::epoll_ctl(fd_, op, fd, &ev) != 0) die("epoll_ctl");
  }
  int fd_;
};

// ---------------------------------------------------------------------------------------------
// Server

struct ServerConn {
  int fd = -1;
  uint8_t header[kHeaderSize] = {};
  std::size_t header_len = 0;
  uint32_t size = 0;      // rr request size
  uint64_t received = 0;  // payload bytes
  uint64_t partial = 0;   // rr: bytes of the request being received
  uint64_t owed = 0;      // rr: response bytes not yet sent
  bool want_write = false;
};

int runServer(const char* listen_ip, uint16_t port) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, listen_ip, &addr.sin_addr) != 1) usage("--listen: not an IPv4 address");
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) die("bind");
  if (::listen(lfd, 4096) != 0) die("listen");
  socklen_t alen = sizeof(addr);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
  std::printf("listening %u\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  Epoll ep;
  ep.add(lfd, EPOLLIN, nullptr);
  static uint8_t buf[kIoBufferSize];
  static const uint8_t zeros[kIoBufferSize] = {};
  epoll_event events[kMaxEvents];

  auto finish = [](ServerConn* c) {
    ::close(c->fd);
    delete c;
  };
  // Sends what an rr connection owes; false when the connection failed and was closed.
  auto flush = [&](ServerConn* c) {
    while (c->owed > 0) {
      ssize_t n = ::send(c->fd, zeros, std::min<uint64_t>(c->owed, sizeof(zeros)), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) break;
        finish(c);
        return false;
      }
      c->owed -= static_cast<uint64_t>(n);
    }
    bool want = c->owed > 0;
    if (want != c->want_write) {
      c->want_write = want;
      ep.mod(c->fd, EPOLLIN | (want ? EPOLLOUT : 0u), c);
    }
    return true;
  };

  for (;;) {
    int n = ep.wait(events, -1);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<ServerConn*>(events[i].data.ptr);
      if (c == nullptr) {
        for (;;) {
          int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;  // EAGAIN, or a connection reset before we took it
          setNoDelay(fd);
          auto* nc = new ServerConn;
          nc->fd = fd;
          ep.add(fd, EPOLLIN, nc);
        }
        continue;
      }
      if ((events[i].events & EPOLLOUT) != 0 && !flush(c)) continue;
      if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) continue;
      ssize_t r = ::recv(c->fd, buf, sizeof(buf), 0);
      if (r < 0) {
        if (errno != EAGAIN) finish(c);
        continue;
      }
      if (r == 0) {
        if (c->header_len == kHeaderSize && c->header[1] == kModeStream) {
          uint8_t count[8];
          putBe64(count, c->received);
          // The send buffer is empty (nothing else was ever sent), so 8 bytes always fit.
          (void)::send(c->fd, count, sizeof(count), MSG_NOSIGNAL);
        }
        finish(c);
        continue;
      }
      std::size_t off = 0;
      const auto len = static_cast<std::size_t>(r);
      if (c->header_len < kHeaderSize) {
        std::size_t take = std::min(kHeaderSize - c->header_len, len);
        std::memcpy(c->header + c->header_len, buf, take);
        c->header_len += take;
        off = take;
        if (c->header_len == kHeaderSize) {
          c->size = static_cast<uint32_t>(getBe(c->header + 4, 4));
          bool ok = c->header[0] == kMagic &&
                    (c->header[1] == kModeStream || (c->header[1] == kModeRr && c->size > 0));
          if (!ok) {
            finish(c);
            continue;
          }
        }
      }
      const uint64_t payload = len - off;
      c->received += payload;
      if (c->header_len == kHeaderSize && c->header[1] == kModeRr && payload > 0) {
        c->partial += payload;
        c->owed += c->partial / c->size * c->size;
        c->partial %= c->size;
        flush(c);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

struct Target {
  sockaddr_in addr{};
};

Target parseTarget(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) usage("--target: expected IP:PORT");
  Target t;
  t.addr.sin_family = AF_INET;
  t.addr.sin_port = htons(static_cast<uint16_t>(std::atoi(s.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, s.substr(0, colon).c_str(), &t.addr.sin_addr) != 1) {
    usage("--target: not an IPv4 address");
  }
  return t;
}

// A non-blocking connect; returns the descriptor, or -errno when the attempt failed at once.
int startConnect(const Target& t) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  setNoDelay(fd);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), sizeof(t.addr)) != 0 &&
      errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

struct ErrorCounts {
  std::map<std::string, uint64_t> by_name;
  uint64_t total = 0;
  void add(const std::string& name) {
    ++by_name[name];
    ++total;
  }
  std::string json() const {
    std::string out = "{";
    for (const auto& [k, v] : by_name) {
      if (out.size() > 1) out += ",";
      out += "\"" + k + "\":" + std::to_string(v);
    }
    return out + "}";
  }
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
Clock::time_point after(Clock::time_point t, double secs) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
}

int msUntil(Clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, 1000));
}

struct StreamConn {
  int fd = -1;
  bool connected = false;
  bool draining = false;  // half-closed; waiting for the server's count
  std::size_t header_sent = 0;
  uint64_t sent = 0;
  uint8_t ack[8] = {};
  std::size_t ack_len = 0;
  bool done = false;
};

int runStream(const Target& target, int conns, double duration, std::size_t write_size) {
  Epoll ep;
  std::vector<StreamConn> cs(static_cast<std::size_t>(conns));
  uint8_t header[kHeaderSize] = {kMagic, kModeStream, 0, 0};
  std::vector<uint8_t> payload(write_size, 'x');
  ErrorCounts errors;
  const auto start = Clock::now();
  const auto deadline = after(start, duration);
  for (auto& c : cs) {
    c.fd = startConnect(target);
    if (c.fd < 0) {
      errors.add(errnoName(-c.fd));
      c.done = true;
      continue;
    }
    ep.add(c.fd, EPOLLOUT, &c);
  }
  auto fail = [&](StreamConn& c, const std::string& why) {
    errors.add(why);
    ::close(c.fd);
    c.done = true;
  };
  epoll_event events[kMaxEvents];
  bool past_deadline = false;
  auto last_ack = start;
  for (;;) {
    const auto now = Clock::now();
    if (!past_deadline && now >= deadline) {
      past_deadline = true;
      for (auto& c : cs) {
        if (c.done) continue;
        if (!c.connected) {
          fail(c, "connect_timeout");
          continue;
        }
        ::shutdown(c.fd, SHUT_WR);
        c.draining = true;
        ep.mod(c.fd, EPOLLIN, &c);
      }
    }
    if (std::all_of(cs.begin(), cs.end(), [](const StreamConn& c) { return c.done; })) break;
    if (past_deadline && now >= deadline + kAckTimeout) {
      for (auto& c : cs) {
        if (!c.done) fail(c, "ack_timeout");
      }
      break;
    }
    int n = ep.wait(events, msUntil(past_deadline ? deadline + kAckTimeout : deadline));
    for (int i = 0; i < n; ++i) {
      auto& c = *static_cast<StreamConn*>(events[i].data.ptr);
      if (c.done) continue;
      if (c.draining) {
        ssize_t r = ::recv(c.fd, c.ack + c.ack_len, sizeof(c.ack) - c.ack_len, 0);
        if (r < 0 && errno == EAGAIN) continue;
        if (r < 0) {
          fail(c, errnoName(errno));
        } else if (r == 0) {
          if (c.ack_len < sizeof(c.ack)) {
            fail(c, "eof_before_count");
          } else {
            ::close(c.fd);
            c.done = true;
          }
        } else {
          c.ack_len += static_cast<std::size_t>(r);
          if (c.ack_len == sizeof(c.ack)) last_ack = Clock::now();
        }
        continue;
      }
      if (!c.connected) {
        if (int err = socketError(c.fd); err != 0) {
          fail(c, errnoName(err));
          continue;
        }
        c.connected = true;
      }
      iovec iov[2] = {{header + c.header_sent, kHeaderSize - c.header_sent},
                      {payload.data(), payload.size()}};
      const int first = c.header_sent == kHeaderSize ? 1 : 0;
      ssize_t w = ::writev(c.fd, iov + first, 2 - first);
      if (w < 0) {
        if (errno != EAGAIN) fail(c, errnoName(errno));
        continue;
      }
      auto written = static_cast<std::size_t>(w);
      const std::size_t h = std::min(written, kHeaderSize - c.header_sent);
      c.header_sent += h;
      c.sent += written - h;
    }
  }
  uint64_t sent = 0;
  uint64_t acked = 0;
  int verified_conns = 0;
  for (const auto& c : cs) {
    sent += c.sent;
    if (c.ack_len == sizeof(c.ack)) {
      acked += getBe(c.ack, 8);
      if (getBe(c.ack, 8) == c.sent) ++verified_conns;
    }
  }
  const bool verified = verified_conns == conns && errors.total == 0;
  const double elapsed = seconds(last_ack - start);
  std::printf(
      "{\"workload\":\"stream\",\"conns\":%d,\"duration_s\":%.3f,\"write_size\":%zu,"
      "\"bytes_sent\":%llu,\"bytes_acked\":%llu,\"elapsed_s\":%.4f,\"bytes_per_s\":%.1f,"
      "\"verified\":%s,\"errors\":%s}\n",
      conns, duration, write_size, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(acked), elapsed, elapsed > 0 ? acked / elapsed : 0.0,
      verified ? "true" : "false", errors.json().c_str());
  return verified ? 0 : 1;
}

// churn: connect, one request, one response, close; again. rr: the same on a kept connection.
struct RrSlot {
  int fd = -1;
  bool connected = false;
  bool header_sent = false;
  std::size_t sent = 0;  // of the current request (header included on the first)
  std::size_t got = 0;   // of the current response
  uint32_t interest = EPOLLOUT;
  Clock::time_point began;
};

int runRequestResponse(const Target& target, int conns, double duration, std::size_t size,
                       bool churn) {
  Epoll ep;
  std::vector<RrSlot> slots(static_cast<std::size_t>(conns));
  // The first request on a connection carries the header in the same write, so a proxy sees the
  // whole request in its first read.
  std::vector<uint8_t> request(kHeaderSize + size, 'q');
  request[0] = kMagic;
  request[1] = kModeRr;
  request[2] = request[3] = 0;
  putBe32(request.data() + 4, static_cast<uint32_t>(size));
  static uint8_t sink[kIoBufferSize];
  std::vector<uint32_t> latencies_us;
  latencies_us.reserve(1 << 20);
  ErrorCounts errors;
  uint64_t connections = 0;
  const auto start = Clock::now();
  const auto deadline = after(start, duration);

  // (Re)starts a slot: a new connection, whose request goes out once the connect completes.
  auto open = [&](RrSlot& s) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      s = RrSlot{};
      s.began = Clock::now();
      s.fd = startConnect(target);
      if (s.fd >= 0) {
        ++connections;
        ep.add(s.fd, EPOLLOUT, &s);
        return;
      }
      errors.add(errnoName(-s.fd));
    }
    std::fprintf(stderr, "weft-tcp-bench: cannot connect: %s\n", std::strerror(-s.fd));
    std::exit(1);
  };
  auto fail = [&](RrSlot& s, const std::string& why) {
    errors.add(why);
    ::close(s.fd);
    open(s);
  };
  auto want = [&](RrSlot& s, uint32_t interest) {
    if (s.interest == interest) return;
    s.interest = interest;
    ep.mod(s.fd, interest, &s);
  };
  // Sends (the rest of) the current request; then waits for the response, or for room to send.
  auto sendRequest = [&](RrSlot& s) {
    const std::size_t skip = s.header_sent ? kHeaderSize : 0;
    const std::size_t len = request.size() - skip;
    ssize_t w = ::send(s.fd, request.data() + skip + s.sent, len - s.sent, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN) {
      fail(s, errnoName(errno));
      return;
    }
    if (w > 0) s.sent += static_cast<std::size_t>(w);
    if (s.sent == len) {
      s.header_sent = true;
      s.sent = 0;
      s.got = 0;
      want(s, EPOLLIN);
    } else {
      want(s, EPOLLOUT);
    }
  };

  for (auto& s : slots) open(s);
  epoll_event events[kMaxEvents];
  for (;;) {
    if (Clock::now() >= deadline) break;
    int n = ep.wait(events, msUntil(deadline));
    for (int i = 0; i < n; ++i) {
      auto& s = *static_cast<RrSlot*>(events[i].data.ptr);
      if (!s.connected) {
        if (int err = socketError(s.fd); err != 0) {
          fail(s, errnoName(err));
          continue;
        }
        s.connected = true;
        s.began = churn ? s.began : Clock::now();
      }
      if (s.interest == EPOLLOUT) {
        sendRequest(s);
        continue;
      }
      ssize_t r = ::recv(s.fd, sink, std::min(sizeof(sink), size - s.got), 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) {
        fail(s, r == 0 ? "eof_before_response" : errnoName(errno));
        continue;
      }
      s.got += static_cast<std::size_t>(r);
      if (s.got < size) continue;
      const auto now = Clock::now();
      if (now > deadline) break;  // completed after the deadline: not counted
      latencies_us.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - s.began).count()));
      if (churn) {
        ::close(s.fd);
        open(s);
      } else {
        s.began = now;
        sendRequest(s);
      }
    }
  }
  for (auto& s : slots) ::close(s.fd);

  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) -> uint32_t {
    if (latencies_us.empty()) return 0;
    auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(latencies_us.size() - 1));
    return latencies_us[idx];
  };
  double mean = 0;
  for (uint32_t l : latencies_us) mean += l;
  if (!latencies_us.empty()) mean /= static_cast<double>(latencies_us.size());
  const double elapsed = seconds(deadline - start);
  std::printf(
      "{\"workload\":\"%s\",\"conns\":%d,\"duration_s\":%.3f,\"size\":%zu,\"completed\":%zu,"
      "\"connections\":%llu,\"per_s\":%.1f,\"latency_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,"
      "\"p999\":%u,\"max\":%u,\"mean\":%.1f},\"errors\":%s}\n",
      churn ? "churn" : "rr", conns, duration, size, latencies_us.size(),
      static_cast<unsigned long long>(connections),
      static_cast<double>(latencies_us.size()) / elapsed, pct(50), pct(90), pct(99), pct(99.9),
      latencies_us.empty() ? 0 : latencies_us.back(), mean, errors.json().c_str());
  return latencies_us.empty() ? 1 : 0;
}

int run(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  const std::string_view mode = argv[1];
  std::string listen_ip = "127.0.0.1";
  std::string target;
  long port = 0;
  long conns = 1;
  double duration = 5;
  long size = 100;
  long write_size = 64 * 1024;
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage("a flag is missing its value");
    const char* value = argv[++i];
    if (flag == "--listen") {
      listen_ip = value;
    } else if (flag == "--port") {
      port = std::atol(value);
    } else if (flag == "--target") {
      target = value;
    } else if (flag == "--conns") {
      conns = std::atol(value);
    } else if (flag == "--duration") {
      duration = std::atof(value);
    } else if (flag == "--size") {
      size = std::atol(value);
    } else if (flag == "--write-size") {
      write_size = std::atol(value);
    } else {
      usage("unknown flag");
    }
  }
  if (port < 0 || port > 65535) usage("--port: 0 to 65535");
  if (conns < 1 || conns > 10000) usage("--conns: 1 to 10000");
  if (!(duration > 0)) usage("--duration: greater than 0");
  if (size < 1 || size > (1 << 24)) usage("--size: 1 to 16777216");
  if (write_size < 1 || write_size > (1 << 24)) usage("--write-size: 1 to 16777216");
  ::signal(SIGPIPE, SIG_IGN);
  if (mode == "server") return runServer(listen_ip.c_str(), static_cast<uint16_t>(port));
  if (target.empty()) usage("--target is required");
  const Target t = parseTarget(target);
  const int k = static_cast<int>(conns);
  if (mode == "stream") return runStream(t, k, duration, static_cast<std::size_t>(write_size));
  if (mode == "churn" || mode == "rr") {
    return runRequestResponse(t, k, duration, static_cast<std::size_t>(size), mode == "churn");
  }
  usage("mode: server, stream, churn or rr");
}

}  // namespace
}  // namespace weft::bench

int main(int argc, char** argv) { return weft::bench::run(argc, argv); }
