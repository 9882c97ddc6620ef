// The proxy's HTTP layer: per-request routing, load balancing, connection pools and golden
// metrics, for connections the TCP stack detected as HTTP/1 or HTTP/2 (docs/dev/http.md).
//
// Threading: one HttpProxy per worker per direction, touched only by its worker (no locks); it
// owns that worker's upstream connection pools and balancer state.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/proxy_metrics.h"
#include "proxy/tcp/stack.h"
#include "weft/http/stream.h"

namespace weft::proxy {

// The static resolver's load-balanced services: "ADDR:PORT=EP1,EP2;ADDR:PORT=EP3" maps the
// address an application dials to the endpoints that serve it (WEFT_PROXY_DESTINATION_STATIC_
// ENDPOINTS). An address not listed is its own single endpoint.
class StaticEndpoints {
 public:
  static Result<StaticEndpoints> parse(std::string_view text);
  // The endpoints for `target`, or nullptr when it is not listed.
  [[nodiscard]] const std::vector<asio::ip::tcp::endpoint>* find(const asio::ip::tcp::endpoint& target) const;

 private:
  std::map<asio::ip::tcp::endpoint, std::vector<asio::ip::tcp::endpoint>> services_;
};

// How an accepted connection reached the HTTP layer.
struct HttpConnInfo {
  asio::ip::tcp::endpoint target;  // original destination (inbound: the application's address)
  TlsLabels tls;                   // inbound: the downstream's tls labels (client_id ...)
  bool h2 = false;                 // the downstream speaks HTTP/2
  bool from_mesh = false;          // inbound: HTTP/2 from a peer proxy over mesh TLS
};

class HttpProxy {
 public:
  // `destination`: the worker's destination client (outbound with discovery), or null.
  HttpProxy(const StackSettings& settings, ProxyMetrics& metrics, asio::any_io_executor ex,
            std::shared_ptr<DestinationClient> destination = nullptr);
  ~HttpProxy();
  HttpProxy(const HttpProxy&) = delete;
  HttpProxy& operator=(const HttpProxy&) = delete;

  // Serves one downstream connection until it ends. `prefix`: bytes detection already read.
  asio::awaitable<void> serve(http::ByteStream& downstream, std::string prefix, HttpConnInfo info);

  // Graceful shutdown: every connection this worker serves finishes its current requests and
  // closes (HTTP/1: "connection: close" on the next response, idle ones at once; HTTP/2: GOAWAY).
  // Call on this worker's thread.
  void drain();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace weft::proxy
