#include "control/destination/registry.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace weft::control::destination {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A registry file is a few hundred bytes; anything far larger is a mistake and is skipped.
constexpr std::uintmax_t kMaxFileBytes = 1 << 20;

Error invalidTarget(std::string why) { return Error::downstream("invalid_target", std::move(why)); }

// Untrusted text in a message: printable ASCII only, bounded.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 256)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 256) out += "...";
  return out;
}

bool isDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::optional<uint16_t> parsePort(std::string_view s) {
  unsigned v = 0;
  if (s.empty() || s.size() > 5) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// The canonical text of an IP address (inet_ntop's), or nullopt when `s` is not one.
std::optional<std::string> canonicalIp(const std::string& s, bool v6) {
  unsigned char buf[16];
  char text[INET6_ADDRSTRLEN];
  int family = v6 ? AF_INET6 : AF_INET;
  if (inet_pton(family, s.c_str(), buf) != 1) return std::nullopt;
  if (inet_ntop(family, buf, text, sizeof text) == nullptr) return std::nullopt;
  return std::string(text);
}

std::optional<std::string> canonicalAnyIp(const std::string& s) {
  if (auto v4 = canonicalIp(s, false)) return v4;
  return canonicalIp(s, true);
}

std::string hostPort(const std::string& ip, uint16_t port) {
  return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto i = s.find(sep, start);
    out.emplace_back(s.substr(start, i == std::string_view::npos ? std::string_view::npos
                                                                 : i - start));
    if (i == std::string_view::npos) return out;
    start = i + 1;
  }
}

}  // namespace

// --- targets -------------------------------------------------------------------------------------

std::string Target::toString(std::string_view cluster_domain) const {
  if (kind == Kind::kIp) return hostPort(ip, port);
  return name + "." + ns + ".svc." + std::string(cluster_domain) + ":" + std::to_string(port);
}

Result<Target> parseTarget(std::string_view text, std::string_view cluster_domain) {
  const std::string shown = "\"" + printable(text) + "\"";
  if (text.size() > 512) return invalidTarget(shown + " is too long to be a target");
  Target t;
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos) {
      return invalidTarget(shown + ": an IPv6 target is \"[address]:port\"");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    auto ip = canonicalIp(std::string(host), true);
    if (!ip) return invalidTarget(shown + ": not an IPv6 address");
    t.kind = Target::Kind::kIp;
    t.ip = *ip;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return invalidTarget(shown + ": the port is missing (\"name.namespace:port\" or \"IP:port\")");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalidTarget(shown + ": an IPv6 target is \"[address]:port\"");
    }
    if (auto ip = canonicalIp(std::string(host), false)) {
      t.kind = Target::Kind::kIp;
      t.ip = *ip;
    } else {
      std::string lower(host);
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) {
        return static_cast<char>(std::tolower(c));
      });
      if (!lower.empty() && lower.back() == '.') lower.pop_back();
      auto labels = split(lower, '.');
      const std::string domain = "svc." + std::string(cluster_domain);
      bool ok = labels.size() == 2;
      if (labels.size() >= 3 && labels[2] == "svc") {
        std::string rest;
        for (std::size_t i = 2; i < labels.size(); ++i) rest += (i > 2 ? "." : "") + labels[i];
        ok = rest == domain || rest == "svc";
      }
      if (!ok) {
        return invalidTarget(shown + ": not a service of this cluster (\"name.namespace.svc." +
                             std::string(cluster_domain) + ":port\" or \"name.namespace:port\")");
      }
      if (!isDnsLabel(labels[0]) || !isDnsLabel(labels[1])) {
        return invalidTarget(shown + ": service and namespace names are DNS labels");
      }
      t.kind = Target::Kind::kService;
      t.name = labels[0];
      t.ns = labels[1];
    }
  }
  auto p = parsePort(port);
  if (!p) return invalidTarget(shown + ": the port must be a number from 1 to 65535");
  t.port = *p;
  return t;
}

// --- resolutions ---------------------------------------------------------------------------------

std::string Endpoint::address() const { return hostPort(ip, port); }

EndpointDiff diffResolutions(const Resolution& before, const Resolution& after) {
  EndpointDiff d;
  d.exists = after.exists;
  d.existence_changed = before.exists != after.exists;
  std::map<std::string, const Endpoint*> old;
  for (const auto& e : before.endpoints) old.emplace(e.address(), &e);
  std::set<std::string> now;
  for (const auto& e : after.endpoints) {
    auto addr = e.address();
    now.insert(addr);
    auto it = old.find(addr);
    if (it == old.end() || !(*it->second == e)) d.added.push_back(e);
  }
  for (const auto& [addr, e] : old) {
    if (!now.contains(addr)) d.removed.push_back(*e);
  }
  if (!(before.service == after.service)) d.service = after.service;
  return d;
}

// --- the local registry's files -----------------------------------------------------------------

namespace {

Error badFile(std::string why) { return Error::internal("bad_registry_file", std::move(why)); }

// Checks that an optional "namespace"/"name" field agrees with the file's place.
Status checkName(const json& j, const char* field, std::string_view expected) {
  if (!j.contains(field)) return okStatus();
  const auto& v = j.at(field);
  if (!v.is_string() || v.get<std::string>() != expected) {
    return badFile(std::string("\"") + field + "\" must be \"" + std::string(expected) +
                   "\", as the file's path says");
  }
  return okStatus();
}

Result<std::map<std::string, std::string>> stringMap(const json& j, const char* field) {
  std::map<std::string, std::string> out;
  if (!j.contains(field) || j.at(field).is_null()) return out;
  const auto& v = j.at(field);
  if (!v.is_object()) return badFile(std::string("\"") + field + "\" must be an object");
  for (const auto& [k, val] : v.items()) {
    if (!val.is_string()) {
      return badFile(std::string("\"") + field + "\"." + k + " must be a string");
    }
    out.emplace(k, val.get<std::string>());
  }
  return out;
}

Result<uint16_t> portField(const json& v, const std::string& what) {
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65535) {
    return badFile(what + " must be a port number (1..65535)");
  }
  return static_cast<uint16_t>(v.get<int64_t>());
}

Result<std::string> stringField(const json& j, const char* field) {
  if (!j.contains(field) || j.at(field).is_null()) return std::string();
  if (!j.at(field).is_string()) return badFile(std::string("\"") + field + "\" must be a string");
  return j.at(field).get<std::string>();
}

Result<json> parseObject(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return badFile("not valid JSON");
  if (!j.is_object()) return badFile("not a JSON object");
  return j;
}

}  // namespace

Result<RegistryState::Service> parseServiceJson(std::string_view text, std::string_view ns,
                                                std::string_view name) {
  auto parsed = parseObject(text);
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (auto st = checkName(j, "namespace", ns); !st) return st.error();
  if (auto st = checkName(j, "name", name); !st) return st.error();
  RegistryState::Service s;
  s.ns = ns;
  s.name = name;
  if (j.contains("ports") && !j.at("ports").is_null()) {
    if (!j.at("ports").is_array()) return badFile("\"ports\" must be an array");
    for (const auto& p : j.at("ports")) {
      if (!p.is_object()) return badFile("each of \"ports\" must be an object");
      RegistryState::Port port;
      auto n = stringField(p, "name");
      if (!n) return n.error();
      port.name = *n;
      if (!p.contains("port")) return badFile("a port has no \"port\"");
      auto number = portField(p.at("port"), "\"port\"");
      if (!number) return number.error();
      port.port = *number;
      port.target_port = port.port;
      if (p.contains("targetPort") && !p.at("targetPort").is_null()) {
        if (p.at("targetPort").is_string()) {
          return badFile("named target ports are not supported in local mode; use a number");
        }
        auto target = portField(p.at("targetPort"), "\"targetPort\"");
        if (!target) return target.error();
        port.target_port = *target;
      }
      if (p.contains("protocol") && !p.at("protocol").is_null()) {
        if (p.at("protocol") != "opaque") {
          return badFile("a port's \"protocol\" is \"opaque\" or null (detect)");
        }
        port.opaque = true;
      }
      if (std::any_of(s.ports.begin(), s.ports.end(),
                      [&](const auto& q) { return q.port == port.port; })) {
        return badFile("port " + std::to_string(port.port) + " is listed twice");
      }
      s.ports.push_back(std::move(port));
    }
  }
  auto selector = stringMap(j, "selector");
  if (!selector) return selector.error();
  s.selector = std::move(selector).value();
  if (j.contains("opaquePorts") && !j.at("opaquePorts").is_null()) {
    if (!j.at("opaquePorts").is_array()) return badFile("\"opaquePorts\" must be an array");
    for (const auto& v : j.at("opaquePorts")) {
      auto p = portField(v, "each of \"opaquePorts\"");
      if (!p) return p.error();
      s.opaque_ports.push_back(*p);
    }
    std::sort(s.opaque_ports.begin(), s.opaque_ports.end());
    s.opaque_ports.erase(std::unique(s.opaque_ports.begin(), s.opaque_ports.end()),
                         s.opaque_ports.end());
  }
  auto cluster_ip = stringField(j, "clusterIP");
  if (!cluster_ip) return cluster_ip.error();
  if (!cluster_ip->empty()) {
    auto canonical = canonicalAnyIp(*cluster_ip);
    if (!canonical) {
      return badFile("\"clusterIP\" is not an IP address: \"" + printable(*cluster_ip) + "\"");
    }
    s.cluster_ip = *canonical;
  }
  return s;
}

Result<RegistryState::Workload> parseWorkloadJson(std::string_view text, std::string_view ns,
                                                  std::string_view name) {
  auto parsed = parseObject(text);
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (auto st = checkName(j, "namespace", ns); !st) return st.error();
  if (auto st = checkName(j, "name", name); !st) return st.error();
  RegistryState::Workload w;
  w.ns = ns;
  w.name = name;
  auto labels = stringMap(j, "labels");
  if (!labels) return labels.error();
  w.labels = std::move(labels).value();
  auto sa = stringField(j, "serviceAccount");
  if (!sa) return sa.error();
  w.service_account = *sa;
  auto deployment = stringField(j, "deployment");
  if (!deployment) return deployment.error();
  w.deployment = *deployment;
  auto ip = stringField(j, "ip");
  if (!ip) return ip.error();
  if (!ip->empty()) {
    auto canonical = canonicalAnyIp(*ip);
    if (!canonical) return badFile("\"ip\" is not an IP address: \"" + printable(*ip) + "\"");
    w.ip = *canonical;
  }
  if (j.contains("meshed") && !j.at("meshed").is_null()) {
    if (!j.at("meshed").is_boolean()) return badFile("\"meshed\" must be true or false");
    w.meshed = j.at("meshed").get<bool>();
  }
  if (j.contains("inboundPort") && !j.at("inboundPort").is_null()) {
    auto p = portField(j.at("inboundPort"), "\"inboundPort\"");
    if (!p) return p.error();
    w.inbound_port = *p;
  }
  return w;
}

namespace {

// Files under <dir>/<kind>/<ns>/<name>.json, by path relative to dir.
void listFiles(const fs::path& dir, const std::string& kind, std::map<std::string, std::string>& out,
               std::vector<std::string>& errors) {
  std::error_code ec;
  fs::path root = dir / kind;
  if (!fs::is_directory(root, ec)) return;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it.depth() != 1 || !it->is_regular_file(ec) || it->path().extension() != ".json") continue;
    std::string rel = fs::relative(it->path(), dir, ec).string();
    if (ec) continue;
    std::error_code size_ec;
    if (it->file_size(size_ec) > kMaxFileBytes) {
      errors.push_back(rel + ": larger than 1 MiB");
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in.good() && !in.eof()) {
      errors.push_back(rel + ": unreadable");
      continue;
    }
    out[rel] = bytes.str();
  }
}

RegistryState parseContents(const std::map<std::string, std::string>& contents,
                            std::vector<std::string> errors) {
  RegistryState state;
  for (const auto& [rel, bytes] : contents) {
    fs::path p(rel);  // <kind>/<ns>/<name>.json
    auto it = p.begin();
    std::string kind = (it++)->string();
    std::string ns = (it++)->string();
    std::string name = p.stem().string();
    if (!isDnsLabel(ns) || !isDnsLabel(name)) {
      errors.push_back(rel + ": namespace and name must be DNS labels");
      continue;
    }
    if (kind == "services") {
      auto s = parseServiceJson(bytes, ns, name);
      if (!s) {
        errors.push_back(rel + ": " + s.error().context);
        continue;
      }
      state.services.emplace(std::pair(ns, name), std::move(s).value());
    } else {
      auto w = parseWorkloadJson(bytes, ns, name);
      if (!w) {
        errors.push_back(rel + ": " + w.error().context);
        continue;
      }
      state.workloads.emplace(std::pair(ns, name), std::move(w).value());
    }
  }
  std::sort(errors.begin(), errors.end());
  state.errors = std::move(errors);
  return state;
}

bool selects(const RegistryState::Service& s, const RegistryState::Workload& w) {
  // An empty selector selects nothing (Kubernetes: a Service without a selector has its
  // endpoints managed by hand, which local mode does not do).
  if (s.selector.empty() || w.ns != s.ns) return false;
  return std::all_of(s.selector.begin(), s.selector.end(), [&](const auto& kv) {
    auto it = w.labels.find(kv.first);
    return it != w.labels.end() && it->second == kv.second;
  });
}

std::vector<uint16_t> opaquePortsOf(const RegistryState::Service& s) {
  std::vector<uint16_t> out = s.opaque_ports;
  for (const auto& p : s.ports) {
    if (p.opaque) out.push_back(p.port);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Endpoint endpointOf(const RegistryState::Workload& w, uint16_t port, bool opaque) {
  Endpoint e;
  e.ip = w.ip;
  e.port = port;
  e.ns = w.ns;
  e.pod = w.name;
  e.service_account = w.service_account;
  e.deployment = w.deployment;
  e.meshed = w.meshed;
  e.inbound_port = w.inbound_port;
  e.opaque = opaque;
  return e;
}

}  // namespace

RegistryState loadRegistry(const std::string& registry_dir) {
  std::map<std::string, std::string> contents;
  std::vector<std::string> errors;
  listFiles(registry_dir, "services", contents, errors);
  listFiles(registry_dir, "workloads", contents, errors);
  return parseContents(contents, std::move(errors));
}

Resolution resolve(const RegistryState& state, const Target& target) {
  Resolution r;
  const RegistryState::Service* by_ip = nullptr;
  if (target.kind == Target::Kind::kIp) {
    // A service's virtual IP (local mode's clusterIP) resolves as the service.
    for (const auto& [key, svc] : state.services) {
      if (!svc.cluster_ip.empty() && svc.cluster_ip == target.ip) {
        by_ip = &svc;
        break;
      }
    }
  }
  if (target.kind == Target::Kind::kService || by_ip != nullptr) {
    const RegistryState::Service* found = by_ip;
    if (found == nullptr) {
      auto it = state.services.find({target.ns, target.name});
      if (it == state.services.end()) return r;
      found = &it->second;
    }
    const auto& svc = *found;
    auto port = std::find_if(svc.ports.begin(), svc.ports.end(),
                             [&](const auto& p) { return p.port == target.port; });
    if (port == svc.ports.end()) return r;  // no such service port: unknown, like no service
    r.exists = true;
    r.service.name = svc.name;
    r.service.ns = svc.ns;
    r.service.opaque_ports = opaquePortsOf(svc);
    r.service.opaque = std::binary_search(r.service.opaque_ports.begin(),
                                          r.service.opaque_ports.end(), target.port);
    std::set<std::string> seen;
    for (const auto& [key, w] : state.workloads) {
      if (w.ip.empty() || !selects(svc, w)) continue;
      Endpoint e = endpointOf(w, port->target_port, r.service.opaque);
      // Two workloads with one IP is a broken registry; the first by (namespace, name) wins.
      if (seen.insert(e.address()).second) r.endpoints.push_back(std::move(e));
    }
    std::sort(r.endpoints.begin(), r.endpoints.end(),
              [](const Endpoint& a, const Endpoint& b) { return a.address() < b.address(); });
    return r;
  }

  const RegistryState::Workload* workload = nullptr;
  for (const auto& [key, w] : state.workloads) {
    if (w.ip == target.ip) {
      workload = &w;
      break;
    }
  }
  if (workload == nullptr) return r;
  r.exists = true;
  r.service.ns = workload->ns;
  // The port is opaque when a service selecting the workload makes it so: an opaque service
  // port whose target port this is.
  for (const auto& [key, svc] : state.services) {
    if (!selects(svc, *workload)) continue;
    auto opaque = opaquePortsOf(svc);
    for (const auto& p : svc.ports) {
      if (p.target_port == target.port &&
          std::binary_search(opaque.begin(), opaque.end(), p.port)) {
        r.service.opaque = true;
      }
    }
  }
  if (r.service.opaque) r.service.opaque_ports = {target.port};
  r.endpoints.push_back(endpointOf(*workload, target.port, r.service.opaque));
  return r;
}

// --- LocalRegistry -------------------------------------------------------------------------------

struct LocalRegistry::Loop {
  Mutex mu;
  std::condition_variable_any cv;
  bool stop = false;  // guarded by mu (read in the wait predicate, which holds it)
  std::unique_ptr<Thread> thread;
};

LocalRegistry::LocalRegistry(Options options)
    : options_(std::move(options)),
      registry_dir_((fs::path(options_.state_dir) / "registry").string()) {
  poll();
}

LocalRegistry::~LocalRegistry() { stop(); }

void LocalRegistry::start() {
  if (loop_) return;
  loop_ = std::make_unique<Loop>();
  Loop* loop = loop_.get();
  loop->thread = std::make_unique<Thread>("weft-dst-reg", [this, loop] {
    std::unique_lock<Mutex> lock(loop->mu);
    while (!loop->stop) {
      loop->cv.wait_for(lock, options_.poll_interval, [loop] { return loop->stop; });
      if (loop->stop) break;
      lock.unlock();
      poll();
      lock.lock();
    }
  });
}

void LocalRegistry::stop() {
  if (!loop_) return;
  {
    MutexLock lock(loop_->mu);
    loop_->stop = true;
  }
  loop_->cv.notify_all();
  loop_->thread.reset();  // joins
  loop_.reset();
}

LocalRegistry::Contents LocalRegistry::readContents() const {
  Contents contents;
  std::vector<std::string> errors;
  listFiles(registry_dir_, "services", contents, errors);
  listFiles(registry_dir_, "workloads", contents, errors);
  for (auto& e : errors) contents["!error " + e] = "";  // an unreadable file is content too
  return contents;
}

bool LocalRegistry::poll() {
  MutexLock poll_lock(poll_mu_);
  Contents contents = readContents();
  {
    MutexLock lock(mu_);
    if (state_ && contents == contents_) return false;
  }
  // Parse outside mu_: subscribe() keeps answering from the previous state meanwhile.
  std::map<std::string, std::string> files;
  std::vector<std::string> errors;
  for (const auto& [k, v] : contents) {
    if (k.starts_with("!error ")) {
      errors.push_back(k.substr(7));
    } else {
      files.emplace(k, v);
    }
  }
  auto state = std::make_shared<const RegistryState>(parseContents(files, std::move(errors)));

  MutexLock lock(mu_);
  contents_ = std::move(contents);
  state_ = state;
  // Each distinct problem is logged once, not every poll.
  for (const auto& e : state->errors) {
    if (std::find(logged_errors_.begin(), logged_errors_.end(), e) == logged_errors_.end()) {
      spdlog::warn("registry: skipping {}", e);
    }
  }
  logged_errors_ = state->errors;
  for (auto& [id, sub] : subscribers_) {
    Resolution now = resolve(*state, sub.target);
    EndpointDiff diff = diffResolutions(sub.last, now);
    sub.last = std::move(now);
    if (diff.empty()) continue;
    try {
      sub.callback(diff);
    } catch (const std::exception& e) {
      // A callback only queues; a throw (bad_alloc) must not stop the others from hearing.
      spdlog::error("registry: subscriber {} failed: {}", id, e.what());
    }
  }
  return true;
}

Result<EndpointSource::Subscription> LocalRegistry::subscribe(const Target& target,
                                                              Callback callback) {
  MutexLock lock(mu_);
  Resolution initial = resolve(*state_, target);
  if (!initial.exists) {
    return Error::downstream("not_found", target.kind == Target::Kind::kIp
                                              ? "no workload has the IP " + target.ip
                                              : "no service " + target.name + "." + target.ns +
                                                    " with port " + std::to_string(target.port));
  }
  SubscriptionId id = next_id_++;
  subscribers_.emplace(id, Subscriber{target, std::move(callback), initial});
  return Subscription{id, std::move(initial)};
}

void LocalRegistry::unsubscribe(SubscriptionId id) {
  MutexLock lock(mu_);
  subscribers_.erase(id);
}

std::size_t LocalRegistry::subscriptions() const {
  MutexLock lock(mu_);
  return subscribers_.size();
}

}  // namespace weft::control::destination
