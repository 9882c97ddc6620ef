// weft-demo-web: the demo's front end. HTTP/1.1 with keep-alive on Asio (parsed by the project's
// strict codec), backed by two gRPC services (books, authors) and Redis as a cache, spoken in RESP
// over plain TCP -- an opaque protocol for the mesh. See demo/README.md.
//
// Threading: a pool of --threads threads runs every connection's coroutine. Backend calls are
// blocking (gRPC sync stubs, a blocking Redis socket), so a request occupies its pool thread
// while it waits: fine for a demo at tens of requests per second, not a pattern for the proxy.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "demo.grpc.pb.h"
#include "weft/http1/codec.h"

namespace weft::demo {
namespace {

using asio::ip::tcp;

struct WebOptions {
  std::string listen = "0.0.0.0";
  int port = 8080;
  std::string books = "books.demo.svc.cluster.local:9090";
  std::string authors = "authors.demo.svc.cluster.local:9091";
  std::string redis = "redis.demo.svc.cluster.local:6379";
  int cache_ttl_s = 10;
  int timeout_ms = 2000;
  int threads = 8;
  int log_interval_s = 60;
};

struct Stats {
  std::atomic<uint64_t> requests{0}, ok{0}, not_found{0}, failed{0}, bad{0};
  std::atomic<uint64_t> cache_hits{0}, cache_misses{0}, cache_errors{0};
};

// A Redis client for GET and SETEX, over a small pool of blocking sockets with 1 s timeouts.
// Any error (refused, timeout, a reply we do not expect) drops the connection and reads as a
// cache miss: the cache is an optimisation, never a reason to fail a request.
class RedisCache {
 public:
  RedisCache(std::string address, int ttl_s, Stats& stats)
      : address_(std::move(address)), ttl_s_(ttl_s), stats_(stats) {}
  ~RedisCache() {
    for (int fd : idle_) ::close(fd);
  }
  RedisCache(const RedisCache&) = delete;
  RedisCache& operator=(const RedisCache&) = delete;

  [[nodiscard]] bool enabled() const { return !address_.empty() && ttl_s_ > 0; }

  std::optional<std::string> get(const std::string& key) {
    if (!enabled()) return std::nullopt;
    auto reply = command({"GET", key});
    if (!reply) {
      stats_.cache_errors++;
      return std::nullopt;
    }
    if (!reply->value) {
      stats_.cache_misses++;
      return std::nullopt;
    }
    stats_.cache_hits++;
    return reply->value;
  }

  void set(const std::string& key, const std::string& value) {
    if (!enabled()) return;
    if (!command({"SETEX", key, std::to_string(ttl_s_), value})) stats_.cache_errors++;
  }

 private:
  struct Reply {
    std::optional<std::string> value;  // nullopt: nil, or a status reply ("+OK")
  };

  std::optional<Reply> command(const std::vector<std::string>& args) {
    int fd = take();
    if (fd < 0) return std::nullopt;
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    std::string in;
    auto reply = sendAll(fd, out) ? readReply(fd, in) : std::nullopt;
    // A reply followed by more bytes means we lost the framing: do not reuse the connection.
    if (reply && in.empty()) {
      give(fd);
    } else {
      ::close(fd);
    }
    return reply;
  }

  static bool sendAll(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `in` holds a line, then (bulk strings) its payload. Leaves extra bytes in `in`.
  static bool fill(int fd, std::string& in, size_t want) {
    char buf[4096];
    while (in.size() < want) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  static std::optional<Reply> readReply(int fd, std::string& in) {
    size_t eol;
    while ((eol = in.find("\r\n")) == std::string::npos) {
      if (in.size() > 1024 || !fill(fd, in, in.size() + 1)) return std::nullopt;
    }
    std::string line = in.substr(0, eol);
    in.erase(0, eol + 2);
    if (line.empty()) return std::nullopt;
    switch (line[0]) {
      case '+':
        return Reply{};
      case '$': {
        long long len = 0;
        auto [p, ec] = std::from_chars(line.data() + 1, line.data() + line.size(), len);
        if (ec != std::errc() || p != line.data() + line.size() || len < -1 || len > (64 << 20)) {
          return std::nullopt;
        }
        if (len == -1) return Reply{};
        size_t n = static_cast<size_t>(len);
        if (!fill(fd, in, n + 2) || in.compare(n, 2, "\r\n") != 0) return std::nullopt;
        Reply r{in.substr(0, n)};
        in.erase(0, n + 2);
        return r;
      }
      default:  // '-' errors, and replies GET/SETEX never give
        return std::nullopt;
    }
  }

  int take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        int fd = idle_.back();
        idle_.pop_back();
        return fd;
      }
    }
    return connectTo();
  }
  void give(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 16) {
      idle_.push_back(fd);
    } else {
      ::close(fd);
    }
  }

  int connectTo() {
    auto colon = address_.rfind(':');
    if (colon == std::string::npos) return -1;
    std::string host = address_.substr(0, colon);
    std::string port = address_.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -1;
    int fd = -1;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
      ::close(fd);
      fd = -1;
    }
    ::freeaddrinfo(res);
    return fd;
  }

  std::string address_;
  int ttl_s_;
  Stats& stats_;
  std::mutex mu_;
  std::vector<int> idle_;
};

struct Page {
  int status = 200;
  std::string body;
};

std::string escapeHtml(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string html(std::string_view title, std::string_view content) {
  return "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + escapeHtml(title) +
         "</title></head>\n<body><h1>" + escapeHtml(title) + "</h1>\n" + std::string(content) +
         "<p><a href=\"/\">All books</a></p></body></html>\n";
}

// Parses "/prefix/<id>" into a positive id.
std::optional<int64_t> idAfter(std::string_view path, std::string_view prefix) {
  if (path.substr(0, prefix.size()) != prefix) return std::nullopt;
  path.remove_prefix(prefix.size());
  int64_t id = 0;
  auto [p, ec] = std::from_chars(path.data(), path.data() + path.size(), id);
  if (ec != std::errc() || p != path.data() + path.size() || id <= 0) return std::nullopt;
  return id;
}

class App {
 public:
  App(const WebOptions& o, Stats& stats)
      : o_(o),
        books_(
            v1::Books::NewStub(grpc::CreateChannel(o.books, grpc::InsecureChannelCredentials()))),
        authors_(v1::Authors::NewStub(
            grpc::CreateChannel(o.authors, grpc::InsecureChannelCredentials()))),
        cache_(o.redis, o.cache_ttl_s, stats) {}

  // Blocking; called on a pool thread.
  Page handle(std::string_view target) {
    std::string_view path = target.substr(0, target.find('?'));
    if (path == "/healthz") return {200, "ok\n"};
    if (path == "/" || path == "/books" || path == "/books/") return index();
    if (auto id = idAfter(path, "/books/")) return book(*id);
    if (auto id = idAfter(path, "/authors/")) return author(*id);
    return notFound("no such page");
  }

 private:
  // The outcome of a backend call as the page sees it.
  enum class Got { kOk, kNotFound, kFailed };

  template <typename Call>
  Got call(Call&& c) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o_.timeout_ms));
    grpc::Status s = c(ctx);
    if (s.ok()) return Got::kOk;
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return Got::kNotFound;
    return Got::kFailed;
  }

  Got getBook(int64_t id, v1::Book& out) {
    std::string key = "book:" + std::to_string(id);
    if (auto v = cache_.get(key); v && out.ParseFromString(*v)) return Got::kOk;
    v1::GetBookRequest req;
    req.set_id(id);
    Got g = call([&](grpc::ClientContext& ctx) { return books_->GetBook(&ctx, req, &out); });
    if (g == Got::kOk) cache_.set(key, out.SerializeAsString());
    return g;
  }

  Got getAuthor(int64_t id, v1::Author& out) {
    std::string key = "author:" + std::to_string(id);
    if (auto v = cache_.get(key); v && out.ParseFromString(*v)) return Got::kOk;
    v1::GetAuthorRequest req;
    req.set_id(id);
    Got g = call([&](grpc::ClientContext& ctx) { return authors_->GetAuthor(&ctx, req, &out); });
    if (g == Got::kOk) cache_.set(key, out.SerializeAsString());
    return g;
  }

  Got listBooks(int64_t author_id, v1::ListBooksResponse& out) {
    v1::ListBooksRequest req;
    req.set_author_id(author_id);
    return call([&](grpc::ClientContext& ctx) { return books_->ListBooks(&ctx, req, &out); });
  }

  static Page failed(std::string_view what) {
    return {500, html("Backend failure", "<p>" + escapeHtml(what) + " failed.</p>")};
  }
  static Page notFound(std::string_view what) {
    return {404, html("Not found", "<p>" + escapeHtml(what) + ".</p>")};
  }
  static std::string bookItem(const v1::Book& b) {
    return "<li><a href=\"/books/" + std::to_string(b.id()) + "\">" + escapeHtml(b.title()) +
           "</a> (" + std::to_string(b.year()) + ")</li>\n";
  }

  Page index() {
    v1::ListBooksResponse list;
    if (listBooks(0, list) != Got::kOk) return failed("books.ListBooks");
    std::string content = "<ul>\n";
    for (const auto& b : list.books()) content += bookItem(b);
    content += "</ul>\n";
    return {200, html("Books", content)};
  }

  Page book(int64_t id) {
    v1::Book b;
    switch (getBook(id, b)) {
      case Got::kOk:
        break;
      case Got::kNotFound:
        return notFound("no book " + std::to_string(id));
      case Got::kFailed:
        return failed("books.GetBook");
    }
    v1::Author a;
    switch (getAuthor(b.author_id(), a)) {
      case Got::kOk:
        break;
      case Got::kNotFound:
        return notFound("no author " + std::to_string(b.author_id()));
      case Got::kFailed:
        return failed("authors.GetAuthor");
    }
    return {200, html(b.title(), "<p>" + std::to_string(b.year()) + ", by <a href=\"/authors/" +
                                     std::to_string(a.id()) + "\">" + escapeHtml(a.name()) +
                                     "</a></p>\n")};
  }

  Page author(int64_t id) {
    v1::Author a;
    switch (getAuthor(id, a)) {
      case Got::kOk:
        break;
      case Got::kNotFound:
        return notFound("no author " + std::to_string(id));
      case Got::kFailed:
        return failed("authors.GetAuthor");
    }
    v1::ListBooksResponse list;
    if (listBooks(id, list) != Got::kOk) return failed("books.ListBooks");
    std::string content = "<p>" + escapeHtml(a.country()) + "</p>\n<ul>\n";
    for (const auto& b : list.books()) content += bookItem(b);
    content += "</ul>\n";
    return {200, html(a.name(), content)};
  }

  const WebOptions& o_;
  std::unique_ptr<v1::Books::Stub> books_;
  std::unique_ptr<v1::Authors::Stub> authors_;
  RedisCache cache_;
};

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    default:
      return "";
  }
}

std::string response(int status, std::string_view body, bool keep_alive, bool head_only = false) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason(status)) +
                    "\r\nContent-Type: " +
                    (body.starts_with("<!doctype") ? "text/html; charset=utf-8" : "text/plain") +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (status == 405) out += "Allow: GET, HEAD\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += body;
  return out;
}

asio::awaitable<void> serveConnection(tcp::socket sock, App& app, Stats& stats) {
  std::string in;  // received, not yet parsed
  char buf[8192];
  http1::RequestHeadParser parser;
  try {
    for (;;) {
      parser.reset();
      http1::FeedResult r;
      for (;;) {
        if (!in.empty()) {
          r = parser.feed(in);
          if (r.state != http1::ParseState::kNeedMore) {
            in.erase(0, r.consumed);
            break;
          }
          in.clear();
        }
        size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::use_awaitable);
        in.assign(buf, n);
      }
      stats.requests++;
      if (r.state == http1::ParseState::kError) {
        stats.bad++;
        co_await asio::async_write(sock,
                                   asio::buffer(response(r.error.status, "bad request\n", false)),
                                   asio::use_awaitable);
        co_return;
      }
      http1::RequestHead& head = parser.head();
      // GET and HEAD carry no body we read; a body we cannot skip ends the connection.
      bool keep_alive = head.keep_alive;
      if (head.framing.kind == http1::BodyFraming::Kind::kContentLength) {
        while (in.size() < head.framing.length) {
          size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::use_awaitable);
          in.append(buf, n);
        }
        in.erase(0, head.framing.length);
      } else if (head.framing.kind != http1::BodyFraming::Kind::kNone) {
        stats.bad++;
        co_await asio::async_write(sock, asio::buffer(response(501, "unsupported body\n", false)),
                                   asio::use_awaitable);
        co_return;
      }
      Page page;
      if (head.method != "GET" && head.method != "HEAD") {
        page = {405, "only GET and HEAD\n"};
      } else {
        page = app.handle(head.target);
      }
      if (page.status < 300) {
        stats.ok++;
      } else if (page.status == 404) {
        stats.not_found++;
      } else if (page.status >= 500) {
        stats.failed++;
      } else {
        stats.bad++;
      }
      co_await asio::async_write(
          sock, asio::buffer(response(page.status, page.body, keep_alive, head.method == "HEAD")),
          asio::use_awaitable);
      if (!keep_alive) co_return;
    }
  } catch (const std::system_error&) {
    // The peer closed or reset: nothing to answer.
  }
}

asio::awaitable<void> acceptLoop(tcp::acceptor& acceptor, App& app, Stats& stats) {
  for (;;) {
    asio::error_code ec;
    tcp::socket sock =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // EMFILE and friends: try again
    sock.set_option(tcp::no_delay(true), ec);
    auto ex = sock.get_executor();
    asio::co_spawn(ex, serveConnection(std::move(sock), app, stats), asio::detached);
  }
}

}  // namespace
}  // namespace weft::demo

int main(int argc, char** argv) {
  using namespace weft::demo;
  WebOptions o;
  CLI::App cli{
      "weft-demo-web: the front end of Weft's demo application. Serves HTTP/1.1 with keep-alive:\n"
      "  /              every book (books.ListBooks)\n"
      "  /books/<id>    one book (books.GetBook, then authors.GetAuthor)\n"
      "  /authors/<id>  one author and their books (authors.GetAuthor, books.ListBooks)\n"
      "  /healthz       200 without calling anything\n"
      "Books and authors are cached in Redis (GET/SETEX over RESP) for --cache-ttl seconds; a\n"
      "Redis failure is a cache miss. Unknown ids answer 404; a failed backend call answers 500.\n"
      "Logs one statistics line per interval; stops on SIGTERM or SIGINT.",
      "weft-demo-web"};
  cli.add_option("--listen", o.listen, "address to listen on")
      ->envname("LISTEN")
      ->capture_default_str();
  cli.add_option("--port", o.port, "port to listen on (0: any, printed)")
      ->envname("PORT")
      ->capture_default_str();
  cli.add_option("--books", o.books, "host:port of the books gRPC service")
      ->envname("BOOKS_ADDR")
      ->capture_default_str();
  cli.add_option("--authors", o.authors, "host:port of the authors gRPC service")
      ->envname("AUTHORS_ADDR")
      ->capture_default_str();
  cli.add_option("--redis", o.redis, "host:port of Redis; empty disables the cache")
      ->envname("REDIS_ADDR")
      ->capture_default_str();
  cli.add_option("--cache-ttl", o.cache_ttl_s, "seconds a cached entry lives; 0 disables the cache")
      ->envname("CACHE_TTL")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  cli.add_option("--timeout-ms", o.timeout_ms, "deadline of each gRPC call")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  cli.add_option("--threads", o.threads, "request threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cli.add_option("--log-interval", o.log_interval_s, "seconds between statistics lines")
      ->envname("LOG_INTERVAL")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  // Only this thread takes the signals (sigtimedwait below): block them before any thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Stats stats;
  App app(o, stats);
  asio::thread_pool pool(static_cast<size_t>(o.threads));
  tcp::acceptor acceptor(pool);
  try {
    tcp::endpoint ep(asio::ip::make_address(o.listen), static_cast<unsigned short>(o.port));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft-demo-web: cannot listen on %s:%d: %s\n", o.listen.c_str(), o.port,
                 e.what());
    return 1;
  }
  std::printf("weft-demo-web: serving HTTP on %s:%d (books %s, authors %s, redis %s)\n",
              o.listen.c_str(), acceptor.local_endpoint().port(), o.books.c_str(),
              o.authors.c_str(), o.redis.empty() ? "off" : o.redis.c_str());
  std::fflush(stdout);
  asio::co_spawn(acceptor.get_executor(), acceptLoop(acceptor, app, stats), asio::detached);

  for (;;) {
    timespec timeout{o.log_interval_s, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      std::printf("weft-demo-web: %s, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    }
    if (sig < 0 && errno == EAGAIN) {
      std::printf(
          "weft-demo-web: last %ds: %llu requests: %llu ok, %llu not found, %llu failed, %llu bad; "
          "cache %llu hits, %llu misses, %llu errors\n",
          o.log_interval_s, static_cast<unsigned long long>(stats.requests.exchange(0)),
          static_cast<unsigned long long>(stats.ok.exchange(0)),
          static_cast<unsigned long long>(stats.not_found.exchange(0)),
          static_cast<unsigned long long>(stats.failed.exchange(0)),
          static_cast<unsigned long long>(stats.bad.exchange(0)),
          static_cast<unsigned long long>(stats.cache_hits.exchange(0)),
          static_cast<unsigned long long>(stats.cache_misses.exchange(0)),
          static_cast<unsigned long long>(stats.cache_errors.exchange(0)));
    }
    std::fflush(stdout);
  }
  std::fflush(stdout);
  asio::post(acceptor.get_executor(), [&] { acceptor.close(); });
  // In-flight requests are blocking calls with a deadline; connections are abandoned.
  pool.stop();
  pool.join();
  return 0;
}
