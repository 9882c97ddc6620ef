// yaml-cpp builds a node tree with each node's position (Mark, 0-based line); the walk below
// checks every field against the subset and reports at the line of the offending key or value.
#include "cli/local/manifest.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <initializer_list>
#include <set>
#include <tuple>

namespace weft::cli::local {
namespace {

constexpr int kMaxReplicas = 64;  // one machine; more is surely a typo

class Walker {
 public:
  Walker(std::string file, std::vector<std::string>* errors)
      : file_(std::move(file)), errors_(errors) {}

  void error(const YAML::Node& at, const std::string& path, const std::string& what) {
    error(lineOf(at), path, what);
  }
  void error(int line, const std::string& path, const std::string& what) {
    errors_->push_back(file_ + ":" + std::to_string(line) + ": " +
                       (path.empty() ? std::string() : path + ": ") + what);
  }
  static int lineOf(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    return m.is_null() ? 0 : m.line + 1;
  }
  const std::string& file() const { return file_; }

  // Checks that `node` is a map whose keys are all in `allowed`; reports the others.
  bool checkMap(const YAML::Node& node, const std::string& path,
                std::initializer_list<const char*> allowed) {
    if (!node.IsMap()) {
      error(node, path, "must be a mapping");
      return false;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
      bool known = false;
      for (const char* a : allowed) known = known || key == a;
      if (!known) error(it->first, join(path, key), "unknown field");
    }
    return true;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  // A present, non-null field, or an undefined node.
  static YAML::Node field(const YAML::Node& map, const char* key) {
    if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node n = map[key];
    if (!n.IsDefined() || n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return n;
  }

  bool string(const YAML::Node& n, const std::string& path, std::string* out) {
    if (!n.IsScalar()) {
      error(n, path, "must be a string");
      return false;
    }
    *out = n.Scalar();
    return true;
  }

  bool integer(const YAML::Node& n, const std::string& path, long min, long max, long* out) {
    // A quoted scalar ("80") is a string in Kubernetes too.
    if (!n.IsScalar() || n.Tag() == "!") {
      error(n, path, "must be an integer");
      return false;
    }
    const std::string& s = n.Scalar();
    long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) {
      error(n, path, "must be an integer, not \"" + s + "\"");
      return false;
    }
    if (v < min || v > max) {
      error(n, path,
            std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
                std::to_string(max));
      return false;
    }
    *out = v;
    return true;
  }

  bool port(const YAML::Node& n, const std::string& path, uint16_t* out) {
    long v = 0;
    if (!integer(n, path, 1, 65535, &v)) return false;
    *out = static_cast<uint16_t>(v);
    return true;
  }

  bool dnsName(const YAML::Node& n, const std::string& path, std::string* out) {
    if (!string(n, path, out)) return false;
    if (!isDnsLabel(*out)) {
      error(n, path,
            "\"" + *out +
                "\" is not a DNS label (1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit)");
      return false;
    }
    return true;
  }

  void stringMap(const YAML::Node& n, const std::string& path, Labels* out) {
    if (!n.IsMap()) {
      error(n, path, "must be a mapping of strings");
      return;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar().empty()) {
        error(it->first, path, "keys must be non-empty strings");
        continue;
      }
      const std::string key = it->first.Scalar();
      std::string value;
      if (it->second.IsNull()) {
        value.clear();
      } else if (!string(it->second, join(path, key), &value)) {
        continue;
      }
      (*out)[key] = value;
    }
  }

 private:
  std::string file_;
  std::vector<std::string>* errors_;
};

struct Meta {
  std::string ns = "default";
  std::string name;
  Labels labels;
  Labels annotations;
};

// metadata: name (required), namespace, labels, annotations.
bool parseMeta(Walker& w, const YAML::Node& doc, bool namespaced, Meta* meta) {
  YAML::Node m = Walker::field(doc, "metadata");
  if (!m.IsDefined()) {
    w.error(doc, "metadata", "required");
    return false;
  }
  if (namespaced) {
    if (!w.checkMap(m, "metadata", {"name", "namespace", "labels", "annotations"})) return false;
  } else if (!w.checkMap(m, "metadata", {"name", "labels", "annotations"})) {
    return false;
  }
  bool ok = true;
  if (auto n = Walker::field(m, "name"); n.IsDefined()) {
    ok = w.dnsName(n, "metadata.name", &meta->name) && ok;
  } else {
    w.error(m, "metadata.name", "required");
    ok = false;
  }
  if (auto n = Walker::field(m, "namespace"); n.IsDefined()) {
    ok = w.dnsName(n, "metadata.namespace", &meta->ns) && ok;
  }
  if (auto n = Walker::field(m, "labels"); n.IsDefined())
    w.stringMap(n, "metadata.labels", &meta->labels);
  if (auto n = Walker::field(m, "annotations"); n.IsDefined()) {
    w.stringMap(n, "metadata.annotations", &meta->annotations);
  }
  return ok;
}

void parseService(Walker& w, const YAML::Node& doc, Manifest* out) {
  ServiceObject svc;
  svc.file = w.file();
  svc.line = Walker::lineOf(doc);
  Meta meta;
  if (!parseMeta(w, doc, true, &meta)) return;
  svc.ns = meta.ns;
  svc.name = meta.name;
  svc.labels = meta.labels;
  YAML::Node spec = Walker::field(doc, "spec");
  if (!spec.IsDefined()) {
    w.error(doc, "spec", "required");
    return;
  }
  if (!w.checkMap(spec, "spec", {"selector", "ports", "type"})) return;
  if (auto t = Walker::field(spec, "type"); t.IsDefined()) {
    std::string type;
    if (w.string(t, "spec.type", &type) && type != "ClusterIP") {
      w.error(t, "spec.type", "only ClusterIP is supported in local mode, not \"" + type + "\"");
    }
  }
  if (auto s = Walker::field(spec, "selector"); s.IsDefined()) {
    w.stringMap(s, "spec.selector", &svc.selector);
  }
  YAML::Node ports = Walker::field(spec, "ports");
  if (!ports.IsDefined()) {
    w.error(spec, "spec.ports", "required");
  } else if (!ports.IsSequence() || ports.size() == 0) {
    w.error(ports, "spec.ports", "must be a non-empty list");
  } else {
    std::set<uint16_t> seen_ports;
    std::set<std::string> seen_names;
    for (std::size_t i = 0; i < ports.size(); ++i) {
      const YAML::Node p = ports[i];
      const std::string path = "spec.ports[" + std::to_string(i) + "]";
      if (!w.checkMap(p, path, {"name", "port", "targetPort", "appProtocol", "protocol"})) continue;
      ServicePort sp;
      bool ok = true;
      if (auto n = Walker::field(p, "name"); n.IsDefined()) {
        ok = w.dnsName(n, path + ".name", &sp.name) && ok;
      } else if (ports.size() > 1) {
        w.error(p, path + ".name", "required when a service has several ports");
        ok = false;
      }
      if (auto n = Walker::field(p, "port"); n.IsDefined()) {
        ok = w.port(n, path + ".port", &sp.port) && ok;
      } else {
        w.error(p, path + ".port", "required");
        ok = false;
      }
      sp.target_port = sp.port;
      if (auto n = Walker::field(p, "targetPort"); n.IsDefined()) {
        if (n.IsScalar() && n.Tag() != "!" && !n.Scalar().empty() &&
            !std::isdigit(static_cast<unsigned char>(n.Scalar()[0]))) {
          w.error(n, path + ".targetPort",
                  "named target ports are not supported in local mode; give the number");
          ok = false;
        } else {
          ok = w.port(n, path + ".targetPort", &sp.target_port) && ok;
        }
      }
      if (auto n = Walker::field(p, "protocol"); n.IsDefined()) {
        std::string proto;
        if (w.string(n, path + ".protocol", &proto) && proto != "TCP") {
          w.error(n, path + ".protocol", "only TCP is supported, not \"" + proto + "\"");
          ok = false;
        }
      }
      if (auto n = Walker::field(p, "appProtocol"); n.IsDefined()) {
        std::string proto;
        if (w.string(n, path + ".appProtocol", &proto)) sp.opaque = proto == "opaque";
      }
      if (!ok) continue;
      if (!seen_ports.insert(sp.port).second) {
        w.error(p, path + ".port", "port " + std::to_string(sp.port) + " is listed twice");
        continue;
      }
      if (!sp.name.empty() && !seen_names.insert(sp.name).second) {
        w.error(p, path + ".name", "name \"" + sp.name + "\" is listed twice");
        continue;
      }
      svc.ports.push_back(sp);
    }
  }
  out->services.push_back(std::move(svc));
}

void parseOpaquePorts(Walker& w, const YAML::Node& meta_node, const std::string& path,
                      const Labels& annotations, std::string* out) {
  auto it = annotations.find("config.weft.io/opaque-ports");
  if (it == annotations.end()) return;
  std::vector<std::pair<uint16_t, uint16_t>> ranges;
  if (!parsePortList(it->second, &ranges)) {
    YAML::Node at = Walker::field(meta_node, "annotations");
    w.error(at.IsDefined() ? at["config.weft.io/opaque-ports"] : meta_node,
            path + ".annotations.config.weft.io/opaque-ports",
            "\"" + it->second + "\" is not a port list (e.g. 25,587,8000-8010)");
    return;
  }
  *out = it->second;
}

void parseDeployment(Walker& w, const YAML::Node& doc, Manifest* out) {
  DeploymentObject d;
  d.file = w.file();
  d.line = Walker::lineOf(doc);
  Meta meta;
  if (!parseMeta(w, doc, true, &meta)) return;
  d.ns = meta.ns;
  d.name = meta.name;
  d.labels = meta.labels;
  d.annotations = meta.annotations;
  parseOpaquePorts(w, Walker::field(doc, "metadata"), "metadata", d.annotations, &d.opaque_ports);

  YAML::Node spec = Walker::field(doc, "spec");
  if (!spec.IsDefined()) {
    w.error(doc, "spec", "required");
    return;
  }
  if (!w.checkMap(spec, "spec", {"replicas", "selector", "template"})) return;
  if (auto n = Walker::field(spec, "replicas"); n.IsDefined()) {
    long v = 1;
    if (w.integer(n, "spec.replicas", 0, kMaxReplicas, &v)) d.replicas = static_cast<int>(v);
  }
  YAML::Node tmpl = Walker::field(spec, "template");
  if (!tmpl.IsDefined()) {
    w.error(spec, "spec.template", "required");
    return;
  }
  if (!w.checkMap(tmpl, "spec.template", {"metadata", "spec"})) return;
  YAML::Node tmeta = Walker::field(tmpl, "metadata");
  if (tmeta.IsDefined() && w.checkMap(tmeta, "spec.template.metadata", {"labels", "annotations"})) {
    if (auto n = Walker::field(tmeta, "labels"); n.IsDefined()) {
      w.stringMap(n, "spec.template.metadata.labels", &d.pod_labels);
    }
    if (auto n = Walker::field(tmeta, "annotations"); n.IsDefined()) {
      w.stringMap(n, "spec.template.metadata.annotations", &d.pod_annotations);
      parseOpaquePorts(w, tmeta, "spec.template.metadata", d.pod_annotations, &d.opaque_ports);
    }
  }
  if (d.pod_labels.empty()) {
    w.error(tmeta.IsDefined() ? tmeta : tmpl, "spec.template.metadata.labels",
            "required (services select pods by their labels)");
  }
  if (auto sel = Walker::field(spec, "selector"); sel.IsDefined()) {
    if (w.checkMap(sel, "spec.selector", {"matchLabels"})) {
      Labels match;
      if (auto n = Walker::field(sel, "matchLabels"); n.IsDefined()) {
        w.stringMap(n, "spec.selector.matchLabels", &match);
      }
      for (const auto& [k, v] : match) {
        auto it = d.pod_labels.find(k);
        if (it == d.pod_labels.end() || it->second != v) {
          w.error(sel, "spec.selector.matchLabels",
                  "selects " + k + "=" + v + ", which spec.template.metadata.labels lacks");
        }
      }
    }
  }

  YAML::Node pspec = Walker::field(tmpl, "spec");
  if (!pspec.IsDefined()) {
    w.error(tmpl, "spec.template.spec", "required");
    return;
  }
  if (!w.checkMap(pspec, "spec.template.spec", {"serviceAccountName", "containers"})) return;
  if (auto n = Walker::field(pspec, "serviceAccountName"); n.IsDefined()) {
    w.dnsName(n, "spec.template.spec.serviceAccountName", &d.service_account);
  }
  YAML::Node containers = Walker::field(pspec, "containers");
  if (!containers.IsDefined()) {
    w.error(pspec, "spec.template.spec.containers", "required");
    return;
  }
  if (!containers.IsSequence() || containers.size() != 1) {
    w.error(containers, "spec.template.spec.containers",
            "must be a list of exactly one container in local mode");
    return;
  }
  const YAML::Node c = containers[0];
  const std::string cpath = "spec.template.spec.containers[0]";
  if (!w.checkMap(c, cpath, {"name", "command", "args", "env", "ports"})) return;
  if (auto n = Walker::field(c, "name"); n.IsDefined()) {
    w.dnsName(n, cpath + ".name", &d.container);
  } else {
    w.error(c, cpath + ".name", "required");
  }
  auto strings = [&](const YAML::Node& n, const std::string& path) {
    if (!n.IsSequence()) {
      w.error(n, path, "must be a list of strings");
      return;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
      std::string s;
      if (w.string(n[i], path + "[" + std::to_string(i) + "]", &s)) d.command.push_back(s);
    }
  };
  if (auto n = Walker::field(c, "command"); n.IsDefined()) {
    strings(n, cpath + ".command");
    if (n.IsSequence() && n.size() == 0) w.error(n, cpath + ".command", "must not be empty");
  } else {
    w.error(c, cpath + ".command", "required");
  }
  if (auto n = Walker::field(c, "args"); n.IsDefined()) strings(n, cpath + ".args");
  if (auto env = Walker::field(c, "env"); env.IsDefined()) {
    if (!env.IsSequence()) {
      w.error(env, cpath + ".env", "must be a list of {name, value}");
    } else {
      for (std::size_t i = 0; i < env.size(); ++i) {
        const std::string epath = cpath + ".env[" + std::to_string(i) + "]";
        if (!w.checkMap(env[i], epath, {"name", "value"})) continue;
        EnvVar e;
        if (auto n = Walker::field(env[i], "name"); n.IsDefined()) {
          if (w.string(n, epath + ".name", &e.name) &&
              (e.name.empty() || e.name.find('=') != std::string::npos)) {
            w.error(n, epath + ".name", "must be non-empty and without '='");
          }
        } else {
          w.error(env[i], epath + ".name", "required");
          continue;
        }
        if (auto n = Walker::field(env[i], "value"); n.IsDefined()) {
          w.string(n, epath + ".value", &e.value);
        }
        d.env.push_back(e);
      }
    }
  }
  if (auto ports = Walker::field(c, "ports"); ports.IsDefined()) {
    if (!ports.IsSequence()) {
      w.error(ports, cpath + ".ports", "must be a list");
    } else {
      for (std::size_t i = 0; i < ports.size(); ++i) {
        const std::string ppath = cpath + ".ports[" + std::to_string(i) + "]";
        if (!w.checkMap(ports[i], ppath, {"containerPort", "name", "protocol"})) continue;
        uint16_t p = 0;
        if (auto n = Walker::field(ports[i], "containerPort"); n.IsDefined()) {
          if (w.port(n, ppath + ".containerPort", &p)) d.container_ports.push_back(p);
        } else {
          w.error(ports[i], ppath + ".containerPort", "required");
        }
        if (auto n = Walker::field(ports[i], "name"); n.IsDefined()) {
          std::string s;
          w.dnsName(n, ppath + ".name", &s);
        }
        if (auto n = Walker::field(ports[i], "protocol"); n.IsDefined()) {
          std::string proto;
          if (w.string(n, ppath + ".protocol", &proto) && proto != "TCP") {
            w.error(n, ppath + ".protocol", "only TCP is supported, not \"" + proto + "\"");
          }
        }
      }
    }
  }
  out->deployments.push_back(std::move(d));
}

void parseDocument(Walker& w, const YAML::Node& doc, Manifest* out) {
  if (!w.checkMap(doc, "", {"apiVersion", "kind", "metadata", "spec"})) return;
  std::string api;
  std::string kind;
  YAML::Node api_node = Walker::field(doc, "apiVersion");
  YAML::Node kind_node = Walker::field(doc, "kind");
  if (!api_node.IsDefined()) {
    w.error(doc, "apiVersion", "required");
    return;
  }
  if (!kind_node.IsDefined()) {
    w.error(doc, "kind", "required");
    return;
  }
  if (!w.string(api_node, "apiVersion", &api) || !w.string(kind_node, "kind", &kind)) return;
  const char* want_api = nullptr;
  if (kind == "Namespace" || kind == "Service") {
    want_api = "v1";
  } else if (kind == "Deployment") {
    want_api = "apps/v1";
  } else {
    w.error(kind_node, "kind",
            "\"" + kind + "\" is not supported in local mode (Namespace, Service, Deployment)");
    return;
  }
  if (api != want_api) {
    w.error(api_node, "apiVersion", "a " + kind + " is " + want_api + ", not \"" + api + "\"");
    return;
  }
  if (kind == "Namespace") {
    if (Walker::field(doc, "spec").IsDefined()) {
      w.error(doc["spec"], "spec", "a Namespace has no spec in local mode");
    }
    Meta meta;
    if (!parseMeta(w, doc, false, &meta)) return;
    out->namespaces.push_back({meta.name, w.file(), Walker::lineOf(doc)});
  } else if (kind == "Service") {
    parseService(w, doc, out);
  } else {
    parseDeployment(w, doc, out);
  }
}

}  // namespace

bool isDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool parsePortList(std::string_view text, std::vector<std::pair<uint16_t, uint16_t>>* out) {
  std::vector<std::pair<uint16_t, uint16_t>> result;
  auto num = [](std::string_view s, uint16_t* v) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    unsigned n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || n < 1 || n > 65535) {
      return false;
    }
    *v = static_cast<uint16_t>(n);
    return true;
  };
  if (text.empty()) return false;
  while (true) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    const std::size_t dash = item.find('-');
    uint16_t lo = 0;
    uint16_t hi = 0;
    if (dash == std::string_view::npos) {
      if (!num(item, &lo)) return false;
      hi = lo;
    } else if (!num(item.substr(0, dash), &lo) || !num(item.substr(dash + 1), &hi) || hi < lo) {
      return false;
    }
    result.emplace_back(lo, hi);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (out != nullptr) *out = std::move(result);
  return true;
}

ParseResult parseManifest(std::string_view text, const std::string& file) {
  ParseResult r;
  Walker w(file, &r.errors);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::ParserException& e) {
    r.errors.push_back(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    return r;
  } catch (const YAML::Exception& e) {
    r.errors.push_back(file + ": " + e.what());
    return r;
  }
  try {
    for (const YAML::Node& doc : docs) {
      if (!doc.IsDefined() || doc.IsNull()) continue;  // an empty document (a trailing ---)
      parseDocument(w, doc, &r.manifest);
    }
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws for a few shapes the walk does not expect (e.g. an alias cycle).
    r.errors.push_back(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (r.manifest.namespaces.empty() && r.manifest.services.empty() &&
      r.manifest.deployments.empty() && r.errors.empty()) {
    r.errors.push_back(file + ":1: no objects (expected Namespace, Service or Deployment)");
  }
  return r;
}

std::vector<std::string> checkDuplicates(const Manifest& m) {
  std::vector<std::string> errors;
  std::map<std::tuple<std::string, std::string, std::string>, std::string> seen;
  auto check = [&](const std::string& kind, const std::string& ns, const std::string& name,
                   const std::string& file, int line) {
    auto [it, inserted] =
        seen.emplace(std::make_tuple(kind, ns, name), file + ":" + std::to_string(line));
    if (!inserted) {
      errors.push_back(file + ":" + std::to_string(line) + ": metadata.name: " + kind + " " + ns +
                       "/" + name + " is already declared at " + it->second);
    }
  };
  for (const auto& n : m.namespaces) check("Namespace", "", n.name, n.file, n.line);
  for (const auto& s : m.services) check("Service", s.ns, s.name, s.file, s.line);
  for (const auto& d : m.deployments) check("Deployment", d.ns, d.name, d.file, d.line);
  return errors;
}

}  // namespace weft::cli::local
