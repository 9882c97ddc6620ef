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
                                          "Outbound connections the proxy failed, by error")) {}

}  // namespace weft::proxy
