// `weft viz stat|edges`: golden metrics and who talks to whom, computed with PromQL against the
// Prometheus that scrapes the proxies (SPEC §7). The queries are in cli/viz/stat.cc, one comment
// per column; they read only labels a Kubernetes Prometheus sets too, so they serve a cluster
// unchanged. Prometheus is found in <state>/run/local.json (docs/local.md) unless
// --prometheus-url names it.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands/commands.h"
#include "cli/viz/local_state.h"
#include "cli/viz/prometheus.h"
#include "cli/viz/stat.h"
#include "cli/viz/table.h"

namespace weft::cli {
namespace {

using viz::PrometheusClient;

struct CommonFlags {
  std::string state_dir;
  std::string prometheus_url;
  std::string output = "table";
  std::string window = "1m";
  std::string ns = "default";
  bool all_namespaces = false;
  bool show_queries = false;
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "weft: " << message << "\n";
  exitWith(kExitFailed);
}
[[noreturn]] void usageError(const std::string& message) {
  std::cerr << "weft: " << message << "\nRun with --help for more information.\n";
  exitWith(kExitUsage);
}

void addCommonFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--state-dir", f.state_dir,
                  "local mode's state directory (default: $WEFT_STATE_DIR, else /var/lib/weft "
                  "as root, ~/.weft otherwise)");
  cmd->add_option("--prometheus-url", f.prometheus_url,
                  "the Prometheus to query, http://HOST:PORT[/PREFIX] (default: "
                  "prometheus.address of <state>/run/local.json)");
  cmd->add_option("-n,--namespace", f.ns, "the namespace of the resources")->capture_default_str();
  cmd->add_flag("-A,--all-namespaces", f.all_namespaces, "resources of every namespace");
  cmd->add_option("-t,--time-window", f.window,
                  "the range the rates are computed over, a Prometheus duration (30s, 1m, 1h)")
      ->capture_default_str();
  cmd->add_flag("--show-queries", f.show_queries, "print each PromQL query to stderr");
  addOutputOption(cmd, f.output);
}

PrometheusClient prometheusFor(const CommonFlags& f) {
  std::string url = f.prometheus_url;
  if (url.empty()) {
    const auto dir = viz::resolveStateDir(f.state_dir);
    auto st = viz::readLocalState(dir);
    if (!st.ok()) {
      fail("cannot find Prometheus: " + st.error().context +
           "; is `weft local up` running? (or pass --prometheus-url)");
    }
    if (st->prometheus.address.empty()) {
      fail("cannot find Prometheus: " + (dir / "run" / "local.json").string() +
           " has no prometheus.address; pass --prometheus-url");
    }
    url = st->prometheus.address;
  }
  auto client = PrometheusClient::create(url);
  if (!client.ok()) usageError("--prometheus-url: " + client.error().context);
  return std::move(*client);
}

void printQueries(const CommonFlags& f, const std::vector<viz::QueryLog>& log) {
  if (!f.show_queries) return;
  for (const auto& q : log) std::cerr << "# " << q.column << "\n" << q.promql << "\n";
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
// Latency in milliseconds as Linkerd prints it: whole milliseconds, fractions below 10 ms.
std::string latency(const std::optional<double>& ms) {
  if (!ms) return "-";
  return (*ms < 10 ? fixed(*ms, 1) : fixed(std::round(*ms), 0)) + "ms";
}
nlohmann::json optionalJson(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

struct StatFlags {
  CommonFlags common;
  std::string resource;
  std::string name;
  std::string from, from_ns, to, to_ns;
};

void runStatCommand(const StatFlags& f) {
  viz::StatRequest req;
  auto resource = viz::parseResource(f.resource);
  if (!resource.ok()) usageError(resource.error().context);
  req.resource = *resource;
  if (!f.name.empty()) {
    if (!req.resource.name.empty()) usageError("give the name once: TYPE/NAME or TYPE NAME");
    req.resource.name = f.name;
  }
  if (!f.from.empty()) {
    auto r = viz::parseResource(f.from);
    if (!r.ok()) usageError("--from: " + r.error().context);
    req.from = *r;
  }
  if (!f.to.empty()) {
    auto r = viz::parseResource(f.to);
    if (!r.ok()) usageError("--to: " + r.error().context);
    req.to = *r;
  }
  req.ns = f.common.ns;
  req.all_namespaces = f.common.all_namespaces;
  req.from_ns = f.from_ns;
  req.to_ns = f.to_ns;
  req.window = f.common.window;
  if (auto w = viz::windowSeconds(req.window); !w.ok()) usageError(w.error().context);

  const auto prom = prometheusFor(f.common);
  std::vector<viz::QueryLog> log;
  auto rows = viz::runStat(prom, req, &log);
  printQueries(f.common, log);
  if (!rows.ok()) {
    if (rows.error().kind == "bad_usage") usageError(rows.error().context);
    fail(rows.error().context.empty() ? rows.error().message() : rows.error().context);
  }

  const std::string kind = viz::kindName(req.resource.kind);
  if (f.common.output == "json") {
    auto out = nlohmann::json::array();
    for (const auto& r : *rows) {
      out.push_back({
          {"kind", kind},
          {"namespace", r.ns},
          {"name", r.name},
          {"meshed", r.meshed ? nlohmann::json(*r.meshed) : nlohmann::json(nullptr)},
          {"pods", r.pods ? nlohmann::json(*r.pods) : nlohmann::json(nullptr)},
          {"requests", r.requests},
          {"successes", r.successes},
          {"success_rate", optionalJson(r.success_rate)},
          {"rps", r.rps},
          {"latency_ms",
           {{"p50", optionalJson(r.p50_ms)},
            {"p95", optionalJson(r.p95_ms)},
            {"p99", optionalJson(r.p99_ms)}}},
          {"tcp_connections", optionalJson(r.tcp_connections)},
          {"window", req.window},
      });
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (rows->empty()) {
    std::cerr << "No traffic found for " << f.resource
              << (req.all_namespaces ? " in any namespace" : " in namespace " + req.ns)
              << " over the last " << req.window << ".\n";
    return;
  }
  std::vector<std::string> header;
  if (req.all_namespaces) header.push_back("NAMESPACE");
  header.insert(header.end(), {"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
                               "LATENCY_P99", "TCP_CONN"});
  std::vector<std::vector<std::string>> table;
  for (const auto& r : *rows) {
    std::vector<std::string> cells;
    if (req.all_namespaces) cells.push_back(r.ns);
    cells.push_back(r.name);
    cells.push_back(r.pods ? std::to_string(r.meshed.value_or(0)) + "/" + std::to_string(*r.pods)
                           : "-");
    cells.push_back(r.success_rate ? fixed(*r.success_rate * 100, 2) + "%" : "-");
    cells.push_back(r.requests > 0 ? fixed(r.rps, 1) + "rps" : "-");
    cells.push_back(latency(r.p50_ms));
    cells.push_back(latency(r.p95_ms));
    cells.push_back(latency(r.p99_ms));
    cells.push_back(r.tcp_connections ? fixed(*r.tcp_connections, 0) : "-");
    table.push_back(std::move(cells));
  }
  viz::printTable(std::cout, header, table);
}

struct EdgesFlags {
  CommonFlags common;
  std::string resource;
};

void runEdgesCommand(const EdgesFlags& f) {
  viz::EdgesRequest req;
  auto resource = viz::parseResource(f.resource);
  if (!resource.ok()) usageError(resource.error().context);
  if (!resource->name.empty()) usageError("edges takes a resource type (deploy or pod), no name");
  if (resource->kind == viz::Kind::kService) usageError("edges are between deploy or pod");
  req.kind = resource->kind;
  req.ns = f.common.ns;
  req.all_namespaces = f.common.all_namespaces;
  req.window = f.common.window;
  if (auto w = viz::windowSeconds(req.window); !w.ok()) usageError(w.error().context);

  const auto prom = prometheusFor(f.common);
  std::vector<viz::QueryLog> log;
  auto rows = viz::runEdges(prom, req, &log);
  printQueries(f.common, log);
  if (!rows.ok())
    fail(rows.error().context.empty() ? rows.error().message() : rows.error().context);

  if (f.common.output == "json") {
    auto out = nlohmann::json::array();
    for (const auto& e : *rows) {
      out.push_back({{"kind", viz::kindName(req.kind)},
                     {"src", e.src},
                     {"src_namespace", e.src_ns},
                     {"dst", e.dst},
                     {"dst_namespace", e.dst_ns},
                     {"secured", e.secured},
                     {"tls", e.tls},
                     {"no_tls_reason", e.no_tls_reason},
                     {"client_id", e.client_id},
                     {"server_id", e.server_id}});
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (rows->empty()) {
    std::cerr << "No edges found" << (req.all_namespaces ? "" : " from or to namespace " + req.ns)
              << " over the last " << req.window << ".\n";
    return;
  }
  std::vector<std::vector<std::string>> table;
  for (const auto& e : *rows) {
    std::string secured = e.secured                  ? "√"
                          : !e.no_tls_reason.empty() ? e.no_tls_reason
                          : e.tls.empty()            ? "-"
                                                     : "tls=" + e.tls;
    table.push_back({e.src, e.dst, e.src_ns, e.dst_ns, secured,
                     e.client_id.empty() ? "-" : e.client_id,
                     e.server_id.empty() ? "-" : e.server_id});
  }
  viz::printTable(std::cout,
                  {"SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "CLIENT_ID", "SERVER_ID"}, table);
}

}  // namespace

void addVizCommand(CLI::App& app) {
  auto* viz_cmd = app.add_subcommand(
      "viz", "golden metrics and traffic edges of meshed workloads, from Prometheus");
  viz_cmd->require_subcommand(1);

  auto stat_flags = std::make_shared<StatFlags>();
  auto* stat = viz_cmd->add_subcommand(
      "stat",
      "success rate, requests per second, latency percentiles and TCP connections per "
      "deployment, pod or service");
  stat->add_option("resource", stat_flags->resource,
                   "deploy|pod|svc, optionally with a name: deploy/web (or: deploy web)")
      ->required();
  stat->add_option("name", stat_flags->name, "the resource's name (instead of TYPE/NAME)");
  stat->add_option("--from", stat_flags->from,
                   "only traffic sent by this resource (deploy/NAME or pod/NAME), from its "
                   "proxies' outbound metrics");
  stat->add_option("--from-namespace", stat_flags->from_ns,
                   "the namespace of --from (default: --namespace)");
  stat->add_option("--to", stat_flags->to,
                   "only traffic the resource sent to this one (deploy/, pod/ or svc/NAME)");
  stat->add_option("--to-namespace", stat_flags->to_ns,
                   "the namespace of --to (default: --namespace)");
  addCommonFlags(stat, stat_flags->common);
  stat->footer(
      "Columns and their PromQL (SEL: direction=\"inbound\" and the resource's namespace/name "
      "labels; with --from/--to or for svc, direction=\"outbound\" with dst_* labels):\n"
      "  MESHED       sum(up{job=\"weft-proxies\",...}) / count(up{job=\"weft-proxies\",...})\n"
      "  SUCCESS      sum(increase(response_total{SEL}[W])) by (..., classification): "
      "success / all\n"
      "  RPS          the same, all / W\n"
      "  LATENCY_Pq   histogram_quantile(q, sum(rate(response_latency_ms_bucket{SEL}[W])) by "
      "(le, ...))\n"
      "  TCP_CONN     sum(tcp_open_connections{SEL, peer=\"src\"|\"dst\"})\n"
      "--show-queries prints the exact queries.");
  stat->callback([stat_flags] { runStatCommand(*stat_flags); });

  auto edges_flags = std::make_shared<EdgesFlags>();
  auto* edges = viz_cmd->add_subcommand(
      "edges", "who talks to whom, secured by mTLS or not, with client and server identities");
  edges->add_option("resource", edges_flags->resource, "deploy or pod")->required();
  addCommonFlags(edges, edges_flags->common);
  edges->footer(
      "Edges and SERVER_ID come from the sending proxies' outbound tcp_open_total{peer=\"dst\"} "
      "(by namespace, deployment, dst_namespace, dst_deployment, tls, server_id); CLIENT_ID "
      "from the receiving proxies' inbound tcp_open_total{tls=\"true\"} (by client_id). "
      "--show-queries prints the exact queries.");
  edges->callback([edges_flags] { runEdgesCommand(*edges_flags); });
}

}  // namespace weft::cli
