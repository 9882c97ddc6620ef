// The queries behind `weft viz stat` and `weft viz edges`, and the assembly of their rows.
//
// Every number comes from PromQL over the labels a Kubernetes Prometheus sets too (`namespace`,
// `pod`, `deployment` on each scraped proxy; the proxy's own `direction`, `classification`,
// `dst_*`, `tls`, `client_id`, `server_id`), so the same queries serve local mode and a cluster.
// The exact PromQL of each column is documented at its builder in stat.cc and in
// `weft viz stat --help`; `--show-queries` prints what ran.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/viz/prometheus.h"
#include "weft/common/result.h"

namespace weft::cli::viz {

// A resource kind and its labels: the scraped proxy's own label, and the label outbound series
// carry for it as a destination.
enum class Kind { kDeployment, kPod, kService };

struct ResourceRef {
  Kind kind = Kind::kDeployment;
  std::string name;  // empty: every resource of the kind
};

// "deploy", "deploy/web", "po/web-0", "svc/books" (with the usual aliases). Error kind
// "bad_resource".
Result<ResourceRef> parseResource(const std::string& text);
const char* kindName(Kind kind);  // "deployment", "pod", "service"

// A Prometheus range, "30s", "1m", "1h30m" (units ms s m h d w y). Error kind "bad_window".
Result<double> windowSeconds(const std::string& window);

struct StatRequest {
  ResourceRef resource;
  std::string ns = "default";
  bool all_namespaces = false;
  std::optional<ResourceRef> from;
  std::string from_ns;  // defaults to ns
  std::optional<ResourceRef> to;
  std::string to_ns;  // defaults to ns
  std::string window = "1m";
  std::string job = "weft-proxies";
};

struct StatRow {
  std::string ns;
  std::string name;
  std::optional<int> meshed;  // proxies up (deployment/pod without --from/--to/svc only)
  std::optional<int> pods;    // proxies Prometheus targets
  double requests = 0;        // responses counted in the window (increase)
  double successes = 0;
  std::optional<double> success_rate;  // absent without requests
  double rps = 0;
  std::optional<double> p50_ms, p95_ms, p99_ms;
  std::optional<double> tcp_connections;
};

struct QueryLog {
  std::string column;
  std::string promql;
};

// Validates the combination (--from and --to exclusive; services send nothing; ...): error kind
// "bad_usage". Then runs the queries; `log` receives each (column, PromQL) that ran.
Result<std::vector<StatRow>> runStat(const PrometheusClient& prom, StatRequest req,
                                     std::vector<QueryLog>* log);

struct EdgesRequest {
  Kind kind = Kind::kDeployment;  // deployment or pod
  std::string ns = "default";
  bool all_namespaces = false;
  std::string window = "1m";
};

struct EdgeRow {
  std::string src_ns, src;
  std::string dst_ns, dst;
  bool secured = false;
  std::string tls;            // the `tls` label: "true", "disabled", "no_identity", "opaque"
  std::string no_tls_reason;  // when tls = "no_identity"
  std::string client_id;      // the source's identity, as the destination proxy saw it
  std::string server_id;      // the identity the destination proxy proved to the source
};

Result<std::vector<EdgeRow>> runEdges(const PrometheusClient& prom, const EdgesRequest& req,
                                      std::vector<QueryLog>* log);

}  // namespace weft::cli::viz
