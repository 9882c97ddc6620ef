// A small, blocking client for the Prometheus HTTP API, used by `weft viz` and `weft check`.
//
// HTTP/1.1 GET only, over plain TCP (Prometheus in local mode listens on loopback; a TLS or
// authenticated Prometheus is reached through `kubectl port-forward` or a local proxy). One
// request per connection ("Connection: close"), each bounded by a deadline, so a wedged server
// cannot hang the CLI. Responses are parsed with the proxy's strict HTTP/1 codec (weft_http1).
//
// Not thread-safe per call site; each call owns its own io_context and socket.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"

namespace weft::cli::viz {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// GET http://<host_port><target>. `host_port` is "host:port", "[v6]:port" or "host" (port 80);
// `target` starts with '/'. Error kinds: "bad_address", "connection_refused", "unreachable",
// "timeout", "io", "bad_response" (malformed or too large, > 64 MiB).
Result<HttpResponse> httpGet(std::string_view host_port, std::string_view target,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// application/x-www-form-urlencoded-safe percent-encoding of a query parameter value
// (RFC 3986 unreserved characters stay, everything else is %XX).
std::string urlEncode(std::string_view value);

// Quotes `value` as a PromQL string literal (backslash and double quote escaped).
std::string promQuote(std::string_view value);

// One element of an instant vector.
struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;  // NaN and ±Inf are kept as such (e.g. histogram_quantile of no data)

  // The label's value, or "" when absent (Prometheus drops empty labels).
  [[nodiscard]] const std::string& label(const std::string& name) const;
};

class PrometheusClient {
 public:
  // `url`: "http://host:port[/prefix]" or "host:port". https:// is refused (see file comment).
  static Result<PrometheusClient> create(std::string_view url);

  // Evaluates `promql` as an instant query at the current time (GET /api/v1/query). Scalars
  // come back as one sample without labels. Error kinds: "unreachable" (the message names the
  // address and suggests `weft local up`), "query_failed" (Prometheus's own error text, e.g.
  // a parse error), "bad_response".
  [[nodiscard]] Result<std::vector<Sample>> query(std::string_view promql) const;

  // GET /-/ready: OK when Prometheus answers 200.
  [[nodiscard]] Status ready() const;

  // "http://host:port[/prefix]", for messages.
  [[nodiscard]] const std::string& url() const { return url_; }

 private:
  PrometheusClient(std::string url, std::string host_port, std::string prefix)
      : url_(std::move(url)), host_port_(std::move(host_port)), prefix_(std::move(prefix)) {}
  [[nodiscard]] Result<HttpResponse> get(const std::string& target) const;

  std::string url_;
  std::string host_port_;
  std::string prefix_;
};

}  // namespace weft::cli::viz
