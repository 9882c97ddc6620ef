// The proxy's metric families, declared once (names and labels follow Linkerd's proxy, SPEC §2).
#pragma once

#include "weft/metrics/registry.h"

namespace weft::proxy {

struct ProxyMetrics {
  explicit ProxyMetrics(metrics::Registry& r);

  metrics::Family<metrics::Counter>& tcp_open_total;
  metrics::Family<metrics::Gauge>& tcp_open_connections;
  metrics::Family<metrics::Counter>& tcp_read_bytes_total;
  metrics::Family<metrics::Counter>& tcp_write_bytes_total;
  metrics::Family<metrics::Counter>& tcp_close_total;
  // Beyond Linkerd: which protocol each port's connections were detected as, and how long the
  // detection took, so an operator can see which ports pay the detection timeout.
  metrics::Family<metrics::Counter>& protocol_detect_total;
  metrics::Family<metrics::Histogram>& protocol_detect_duration_ms;
  // Every failure the proxy handles, by `error` (docs/dev/errors.md lists them).
  metrics::Family<metrics::Counter>& inbound_tcp_errors_total;
  metrics::Family<metrics::Counter>& outbound_tcp_errors_total;
  // HTTP golden metrics (Linkerd's names and labels).
  metrics::Family<metrics::Counter>& request_total;
  metrics::Family<metrics::Counter>& response_total;
  metrics::Family<metrics::Histogram>& response_latency_ms;
  metrics::Family<metrics::Counter>& inbound_http_errors_total;
  metrics::Family<metrics::Counter>& outbound_http_errors_total;
};

}  // namespace weft::proxy
