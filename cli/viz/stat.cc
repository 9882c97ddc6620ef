#include "cli/viz/stat.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

namespace weft::cli::viz {
namespace {

// The scraped proxy's own label for a kind ("" for services: no proxy is a service).
const char* ownLabel(Kind kind) {
  switch (kind) {
    case Kind::kDeployment:
      return "deployment";
    case Kind::kPod:
      return "pod";
    case Kind::kService:
      return "";
  }
  return "";
}

// The label the proxy puts on outbound series for the destination (from discovery).
std::string dstLabel(Kind kind) {
  switch (kind) {
    case Kind::kDeployment:
      return "dst_deployment";
    case Kind::kPod:
      return "dst_pod";
    case Kind::kService:
      return "dst_service";
  }
  return "";
}

std::string eq(const std::string& label, const std::string& value) {
  return label + "=" + promQuote(value);
}
// A named resource matches its name; "every resource" matches series that carry the label at all.
std::string nameMatcher(const std::string& label, const std::string& name) {
  return name.empty() ? label + "!=\"\"" : eq(label, name);
}

std::string joinMatchers(const std::vector<std::string>& m) {
  std::string out = "{";
  for (std::size_t i = 0; i < m.size(); ++i) out += (i ? ", " : "") + m[i];
  return out + "}";
}

using Key = std::pair<std::string, std::string>;  // (namespace, name)

}  // namespace

Result<ResourceRef> parseResource(const std::string& text) {
  auto slash = text.find('/');
  std::string type = text.substr(0, slash);
  ResourceRef r;
  if (type == "deploy" || type == "deployment" || type == "deployments") {
    r.kind = Kind::kDeployment;
  } else if (type == "po" || type == "pod" || type == "pods") {
    r.kind = Kind::kPod;
  } else if (type == "svc" || type == "service" || type == "services") {
    r.kind = Kind::kService;
  } else {
    return Error::internal("bad_resource", "\"" + text +
                                               "\": the resource type must be deploy, pod or svc "
                                               "(e.g. deploy/web)");
  }
  if (slash != std::string::npos) {
    r.name = text.substr(slash + 1);
    if (r.name.empty()) {
      return Error::internal("bad_resource", "\"" + text + "\": empty name after '/'");
    }
  }
  return r;
}

const char* kindName(Kind kind) {
  switch (kind) {
    case Kind::kDeployment:
      return "deployment";
    case Kind::kPod:
      return "pod";
    case Kind::kService:
      return "service";
  }
  return "";
}

Result<double> windowSeconds(const std::string& window) {
  auto bad = [&] {
    return Error::internal("bad_window", "\"" + window +
                                             "\" is not a Prometheus duration such as 30s, 1m "
                                             "or 1h30m");
  };
  if (window.empty()) return bad();
  double total = 0;
  std::size_t i = 0;
  while (i < window.size()) {
    std::size_t start = i;
    while (i < window.size() && window[i] >= '0' && window[i] <= '9') ++i;
    if (i == start || i - start > 9) return bad();
    double n = std::stod(window.substr(start, i - start));
    std::size_t ustart = i;
    while (i < window.size() && window[i] >= 'a' && window[i] <= 'z') ++i;
    std::string unit = window.substr(ustart, i - ustart);
    static const std::map<std::string, double> kUnits = {
        {"ms", 0.001}, {"s", 1},      {"m", 60},      {"h", 3600},
        {"d", 86400},  {"w", 604800}, {"y", 31536000}};
    auto it = kUnits.find(unit);
    if (it == kUnits.end()) return bad();
    total += n * it->second;
  }
  if (total < 1) return bad();
  return total;
}

// The queries of `weft viz stat`. Which series and labels, by request shape (W = -t WINDOW,
// G = the grouping labels, SEL = the selector below):
//
//   deploy|pod, no --from/--to: a resource's own (inbound) traffic, as its proxies saw it.
//       SEL = direction="inbound", namespace=NS, <deployment|pod>=NAME;  G = namespace, <label>
//   svc: services have no proxy, so their traffic is what clients' proxies sent them.
//       SEL = direction="outbound", dst_namespace=NS, dst_service=NAME;   G = dst_namespace,
//       dst_service
//   R --to T: the outbound traffic of R's proxies to T.
//       SEL = direction="outbound", namespace=NS, <R label>=R, dst_namespace=TO_NS, dst_<T kind>=T;
//       G = namespace, <R label>
//   R --from S: the outbound traffic of S's proxies to R.
//       SEL = direction="outbound", namespace=FROM_NS, <S label>=S, dst_namespace=NS, dst_<R
//       kind>=R; G = dst_namespace, dst_<R kind>
//
// Columns:
//   MESHED    sum(up{job=J, namespace=NS, <label>=NAME}) by (namespace, <label>)    (proxies up)
//             "/" count(up{job=J, ...}) by (namespace, <label>)                   (proxies scraped)
//             deploy and pod only; Kubernetes scrapes only meshed pods' proxy port, so both
//             counts are of meshed pods there too.
//   SUCCESS   sum(increase(response_total{SEL}[W])) by (G, classification):
//             classification="success" / all
//   RPS       the same query: all / W in seconds (Linkerd's definition)
//   LATENCY_Pq histogram_quantile(q, sum(rate(response_latency_ms_bucket{SEL}[W])) by (le, G))
//             for q = 0.5, 0.95, 0.99 (milliseconds)
//   TCP_CONN  sum(tcp_open_connections{SEL, peer="src"}) by (G) for inbound selections (the
//             clients connected to the resource's proxies), peer="dst" for outbound ones (the
//             connections the sending proxies hold to the destination).
Result<std::vector<StatRow>> runStat(const PrometheusClient& prom, StatRequest req,
                                     std::vector<QueryLog>* log) {
  auto usage = [](std::string m) { return Error::internal("bad_usage", std::move(m)); };
  if (req.from && req.to) return usage("--from and --to cannot be combined");
  if (req.resource.kind == Kind::kService && req.to) {
    return usage(
        "services send no traffic of their own: use `svc/NAME --from ...`, or "
        "`deploy/... --to svc/NAME`");
  }
  if (req.from && req.from->kind == Kind::kService) {
    return usage("--from takes a deploy or pod: services send no traffic of their own");
  }
  if (req.from_ns.empty()) req.from_ns = req.ns;
  if (req.to_ns.empty()) req.to_ns = req.ns;
  auto window_s = windowSeconds(req.window);
  if (!window_s.ok()) return window_s.error();

  std::vector<std::string> sel;
  std::vector<std::string> group;  // [namespace label, name label]
  bool inbound = false;
  const Kind kind = req.resource.kind;
  const std::string& name = req.resource.name;
  if (req.from) {
    sel = {"direction=\"outbound\"", eq("namespace", req.from_ns),
           nameMatcher(ownLabel(req.from->kind), req.from->name)};
    if (!req.all_namespaces) sel.push_back(eq("dst_namespace", req.ns));
    sel.push_back(nameMatcher(dstLabel(kind), name));
    group = {"dst_namespace", dstLabel(kind)};
  } else if (req.to) {
    sel = {"direction=\"outbound\""};
    if (!req.all_namespaces) sel.push_back(eq("namespace", req.ns));
    sel.push_back(nameMatcher(ownLabel(kind), name));
    sel.push_back(eq("dst_namespace", req.to_ns));
    sel.push_back(nameMatcher(dstLabel(req.to->kind), req.to->name));
    group = {"namespace", ownLabel(kind)};
  } else if (kind == Kind::kService) {
    sel = {"direction=\"outbound\""};
    if (!req.all_namespaces) sel.push_back(eq("dst_namespace", req.ns));
    sel.push_back(nameMatcher("dst_service", name));
    group = {"dst_namespace", "dst_service"};
  } else {
    inbound = true;
    sel = {"direction=\"inbound\""};
    if (!req.all_namespaces) sel.push_back(eq("namespace", req.ns));
    sel.push_back(nameMatcher(ownLabel(kind), name));
    group = {"namespace", ownLabel(kind)};
  }
  const std::string by = group[0] + ", " + group[1];
  const std::string s = joinMatchers(sel);

  std::map<Key, StatRow> rows;
  auto row = [&](const Sample& sample) -> StatRow& {
    Key k{sample.label(group[0]), sample.label(group[1])};
    auto& r = rows[k];
    r.ns = k.first;
    r.name = k.second;
    return r;
  };
  auto run = [&](const std::string& column, const std::string& q) {
    if (log) log->push_back({column, q});
    return prom.query(q);
  };

  // SUCCESS and RPS.
  auto requests = run("SUCCESS,RPS", "sum(increase(response_total" + s + "[" + req.window +
                                         "])) by (" + by + ", classification)");
  if (!requests.ok()) return requests.error();
  for (const auto& sample : *requests) {
    if (std::isnan(sample.value)) continue;
    auto& r = row(sample);
    r.requests += sample.value;
    if (sample.label("classification") == "success") r.successes += sample.value;
  }
  // LATENCY_P50/P95/P99.
  struct Quantile {
    const char* q;
    const char* column;
    std::optional<double> StatRow::*field;
  };
  const Quantile quantiles[] = {{"0.5", "LATENCY_P50", &StatRow::p50_ms},
                                {"0.95", "LATENCY_P95", &StatRow::p95_ms},
                                {"0.99", "LATENCY_P99", &StatRow::p99_ms}};
  for (const auto& [q, column, field] : quantiles) {
    auto lat = run(column, std::string("histogram_quantile(") + q +
                               ", sum(rate(response_latency_ms_bucket" + s + "[" + req.window +
                               "])) by (le, " + by + "))");
    if (!lat.ok()) return lat.error();
    for (const auto& sample : *lat) {
      if (!std::isfinite(sample.value)) continue;
      row(sample).*field = sample.value;
    }
  }
  // TCP_CONN.
  auto tcp_sel = sel;
  tcp_sel.push_back(inbound ? "peer=\"src\"" : "peer=\"dst\"");
  auto tcp =
      run("TCP_CONN", "sum(tcp_open_connections" + joinMatchers(tcp_sel) + ") by (" + by + ")");
  if (!tcp.ok()) return tcp.error();
  for (const auto& sample : *tcp) {
    if (std::isnan(sample.value)) continue;
    row(sample).tcp_connections = sample.value;
  }

  // MESHED: for the rows' own resources (the target's with --from).
  if (kind != Kind::kService) {
    std::vector<std::string> up_sel = {eq("job", req.job)};
    if (!req.all_namespaces) up_sel.push_back(eq("namespace", req.ns));
    up_sel.push_back(nameMatcher(ownLabel(kind), name));
    const std::string up_by = std::string("namespace, ") + ownLabel(kind);
    auto meshed = run("MESHED", "sum(up" + joinMatchers(up_sel) + ") by (" + up_by + ")");
    if (!meshed.ok()) return meshed.error();
    auto total = run("MESHED", "count(up" + joinMatchers(up_sel) + ") by (" + up_by + ")");
    if (!total.ok()) return total.error();
    const bool only_traffic_rows = req.from || req.to;
    auto apply = [&](const std::vector<Sample>& samples, std::optional<int> StatRow::*field) {
      for (const auto& sample : samples) {
        Key k{sample.label("namespace"), sample.label(ownLabel(kind))};
        auto it = rows.find(k);
        if (it == rows.end()) {
          if (only_traffic_rows) continue;
          it = rows.emplace(k, StatRow{}).first;
          it->second.ns = k.first;
          it->second.name = k.second;
        }
        it->second.*field = static_cast<int>(std::lround(sample.value));
      }
    };
    apply(*meshed, &StatRow::meshed);
    apply(*total, &StatRow::pods);
  }

  std::vector<StatRow> out;
  for (auto& [k, r] : rows) {
    if (r.name.empty()) continue;  // series of proxies without the label (not a workload)
    if (r.requests > 0) r.success_rate = r.successes / r.requests;
    r.rps = r.requests / *window_s;
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

// "<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>" -> "<ns>"; "" when not that shape.
std::string identityNamespace(const std::string& id) {
  auto first = id.find('.');
  if (first == std::string::npos) return "";
  auto second = id.find('.', first + 1);
  if (second == std::string::npos) return "";
  constexpr std::string_view kSa = ".serviceaccount.";
  if (id.compare(second, kSa.size(), kSa) != 0) return "";
  return id.substr(first + 1, second - first - 1);
}

}  // namespace

// The queries of `weft viz edges` (L = deployment or pod, W = -t WINDOW):
//
//   edges, SECURED, SERVER_ID: the connections sending proxies opened to destinations in W,
//     count(last_over_time(tcp_open_total{direction="outbound", peer="dst", dst_L!="",
//     namespace=NS}[W]))
//       by (namespace, L, dst_namespace, dst_L, tls, server_id, no_tls_reason)
//     or the same with dst_namespace=NS (edges into NS from elsewhere). tcp_open_total counts
//     HTTP and opaque connections alike, and server_id is the identity the server proxy proved
//     in the mTLS handshake (tls="true").
//   CLIENT_ID: the identities that destination proxies verified on inbound mTLS connections,
//     count(last_over_time(tcp_open_total{direction="inbound", peer="src", tls="true",
//       namespace=~"<the edges' dst namespaces>"}[W])) by (namespace, L, client_id)
//     Inbound series carry no source labels, so an edge A->B takes the client_ids seen by B
//     whose namespace part is A's namespace; when several remain, the one A itself proved as a
//     server (server_id of any edge into A) wins; otherwise all are listed, comma-separated.
Result<std::vector<EdgeRow>> runEdges(const PrometheusClient& prom, const EdgesRequest& req,
                                      std::vector<QueryLog>* log) {
  if (req.kind == Kind::kService) {
    return Error::internal("bad_usage", "edges are between deploy or pod, not svc");
  }
  const std::string L = ownLabel(req.kind);
  const std::string dL = dstLabel(req.kind);
  auto run = [&](const std::string& column, const std::string& q) {
    if (log) log->push_back({column, q});
    return prom.query(q);
  };
  auto edgeQuery = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> sel = {"direction=\"outbound\"", "peer=\"dst\"", dL + "!=\"\""};
    sel.insert(sel.end(), extra.begin(), extra.end());
    return "count(last_over_time(tcp_open_total" + joinMatchers(sel) + "[" + req.window +
           "])) by (namespace, " + L + ", dst_namespace, " + dL +
           ", tls, server_id, no_tls_reason)";
  };
  std::string q = req.all_namespaces ? edgeQuery({})
                                     : edgeQuery({eq("namespace", req.ns)}) + " or " +
                                           edgeQuery({eq("dst_namespace", req.ns)});
  auto edges = run("SRC,DST,SECURED,SERVER_ID", q);
  if (!edges.ok()) return edges.error();

  std::vector<EdgeRow> out;
  std::set<std::string> dst_namespaces;
  // What each workload proved as a server: (ns, name) -> server_id.
  std::map<Key, std::set<std::string>> proven;
  for (const auto& sample : *edges) {
    EdgeRow e;
    e.src_ns = sample.label("namespace");
    e.src = sample.label(L);
    e.dst_ns = sample.label("dst_namespace");
    e.dst = sample.label(dL);
    e.tls = sample.label("tls");
    e.secured = e.tls == "true";
    e.no_tls_reason = sample.label("no_tls_reason");
    e.server_id = sample.label("server_id");
    if (e.src.empty() || e.dst.empty()) continue;
    dst_namespaces.insert(e.dst_ns);
    if (!e.server_id.empty()) proven[{e.dst_ns, e.dst}].insert(e.server_id);
    out.push_back(std::move(e));
  }
  if (out.empty()) return out;

  std::string ns_re;
  for (const auto& ns : dst_namespaces) ns_re += (ns_re.empty() ? "" : "|") + ns;
  auto clients =
      run("CLIENT_ID",
          "count(last_over_time(tcp_open_total{direction=\"inbound\", "
          "peer=\"src\", tls=\"true\", namespace=~" +
              promQuote(ns_re) + "}[" + req.window + "])) by (namespace, " + L + ", client_id)");
  if (!clients.ok()) return clients.error();
  std::map<Key, std::set<std::string>> seen;  // destination -> client ids it verified
  for (const auto& sample : *clients) {
    const auto& id = sample.label("client_id");
    if (!id.empty()) seen[{sample.label("namespace"), sample.label(L)}].insert(id);
  }
  for (auto& e : out) {
    if (!e.secured) continue;
    std::vector<std::string> candidates;
    for (const auto& id : seen[{e.dst_ns, e.dst}]) {
      if (identityNamespace(id) == e.src_ns) candidates.push_back(id);
    }
    if (candidates.size() > 1) {
      const auto& own = proven[{e.src_ns, e.src}];
      for (const auto& id : candidates) {
        if (own.count(id)) {
          candidates = {id};
          break;
        }
      }
    }
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      e.client_id += (i ? "," : "") + candidates[i];
    }
  }
  std::sort(out.begin(), out.end(), [](const EdgeRow& a, const EdgeRow& b) {
    return std::tie(a.src_ns, a.src, a.dst_ns, a.dst, a.server_id) <
           std::tie(b.src_ns, b.src, b.dst_ns, b.dst, b.server_id);
  });
  return out;
}

}  // namespace weft::cli::viz
