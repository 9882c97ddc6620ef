#include "proxy/proxy_metrics.h"

namespace weft::proxy {

ProxyMetrics::ProxyMetrics(metrics::Registry& r)
    : tcp_open_total(r.counter("tcp_open_total", "Total count of opened connections")),
      tcp_open_connections(r.gauge("tcp_open_connections", "Number of currently-open connections")),
      tcp_read_bytes_total(r.counter("tcp_read_bytes_total", "Total count of bytes read from peers")),
      tcp_write_bytes_total(
          r.counter("tcp_write_bytes_total", "Total count of bytes written to peers")),
      tcp_close_total(r.counter("tcp_close_total", "Total count of closed connections")),
      protocol_detect_total(r.counter(
          "protocol_detect_total", "Connections by the protocol detected on their target port")),
      protocol_detect_duration_ms(
          r.histogram("protocol_detect_duration_ms",
                      "Time from accept to a protocol decision, in milliseconds",
                      metrics::latencyBucketsMs())),
      inbound_tcp_errors_total(
          r.counter("inbound_tcp_errors_total", "Inbound connections the proxy failed, by error")),
      outbound_tcp_errors_total(r.counter("outbound_tcp_errors_total",
                                          "Outbound connections the proxy failed, by error")),
      request_total(r.counter("request_total", "Total count of HTTP requests")),
      response_total(r.counter("response_total", "Total count of HTTP responses")),
      response_latency_ms(r.histogram("response_latency_ms",
                                      "Elapsed times between a request's headers being received "
                                      "and its response's headers being sent, in milliseconds",
                                      metrics::latencyBucketsMs())),
      inbound_http_errors_total(r.counter("inbound_http_errors_total",
                                          "Inbound HTTP failures the proxy handled, by error")),
      outbound_http_errors_total(r.counter("outbound_http_errors_total",
                                           "Outbound HTTP failures the proxy handled, by error")) {}

}  // namespace weft::proxy
