// `weft local up|run|status|down`: the mesh on one machine (docs/local.md, SPEC §1 "Local").
//
// Everything runs as separate processes that outlive this CLI; what runs is recorded in
// <state>/run/local.json, and every object made is named so `down` finds it without that file
// (netns `weft-*`, bridge `weft0`, /etc/netns/weft-*, processes carrying WEFT_LOCAL_STATE).
// Mutating commands hold an flock on <state>/run/lock, so two `weft local` invocations never
// interleave their edits of local.json and the registry.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands/commands.h"
#include "cli/local/manifest.h"
#include "cli/local/system.h"
#include "weft/identity/certs.h"

namespace weft::cli {
namespace {

namespace fs = std::filesystem;
using local::CommandResult;
using local::runCommand;
using nlohmann::json;

constexpr const char* kBridge = "weft0";
constexpr const char* kBridgeIp = "10.89.0.1";
constexpr int kBridgePrefix = 16;
constexpr const char* kLoopback = "127.0.0.1";
constexpr uint16_t kIdentityPort = 8080;
constexpr uint16_t kIdentityAdminPort = 9990;
constexpr uint16_t kDestinationPort = 8086;
constexpr uint16_t kDestinationAdminPort = 9996;
constexpr uint16_t kProxyAdminPort = 4191;
constexpr uint16_t kProxyInboundPort = 4143;
constexpr unsigned kProxyUid = 2102;
constexpr const char* kDefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211";
constexpr const char* kTrustDomain = "cluster.local";
constexpr const char* kControlPlaneNs = "weft";
constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Unprivileged pods: each gets 4 consecutive loopback ports from here (inbound, outbound, admin,
// control).
constexpr uint16_t kLoopbackPortBase = 42000;
constexpr auto kReadyTimeout = std::chrono::seconds(30);

struct Options {
  std::string state_dir;
  std::string output = "table";
  std::vector<std::string> files;
  bool purge = false;
  std::string prometheus_listen = "127.0.0.1:9090";
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "weft: " << message << "\n";
  exitWith(kExitFailed);
}
void warn(const std::string& message) { std::cerr << "weft: warning: " << message << "\n"; }

bool isRoot() { return geteuid() == 0; }

// --- state directory -----------------------------------------------------------------------------

struct State {
  fs::path root;
  fs::path pki() const { return root / "pki"; }
  fs::path anchorCert() const { return pki() / "anchor.crt"; }
  fs::path anchorKey() const { return pki() / "anchor.key"; }
  fs::path issuerCert() const { return pki() / "issuer.crt"; }
  fs::path issuerKey() const { return pki() / "issuer.key"; }
  fs::path tokens() const { return root / "identity" / "tokens"; }
  fs::path secrets() const { return root / "identity" / "secrets"; }
  fs::path registry() const { return root / "registry"; }
  fs::path run() const { return root / "run"; }
  fs::path localJson() const { return run() / "local.json"; }
  fs::path prometheus() const { return root / "prometheus"; }
  fs::path targets() const { return prometheus() / "targets.json"; }
  fs::path podDir(const std::string& ns, const std::string& pod) const {
    return root / "pods" / ns / pod;
  }
  fs::path serviceFile(const std::string& ns, const std::string& name) const {
    return registry() / "services" / ns / (name + ".json");
  }
  fs::path workloadFile(const std::string& ns, const std::string& name) const {
    return registry() / "workloads" / ns / (name + ".json");
  }
};

State resolveState(const std::string& flag) {
  std::string dir = flag;
  if (dir.empty()) {
    if (const char* env = std::getenv("WEFT_STATE_DIR"); env != nullptr && *env != '\0') dir = env;
  }
  if (dir.empty()) {
    if (isRoot()) {
      dir = "/var/lib/weft";
    } else {
      const char* home = std::getenv("HOME");
      if (home == nullptr || *home == '\0') fail("HOME is not set; give --state-dir");
      dir = std::string(home) + "/.weft";
    }
  }
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return State{fs::path(s)};
}

void mkdirs(const fs::path& p, fs::perms perms = fs::perms(0755)) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) fail("cannot create " + p.string() + ": " + ec.message());
  fs::permissions(p, perms, ec);
}

// Held for the whole of a mutating command.
class StateLock {
 public:
  explicit StateLock(const State& st) {
    mkdirs(st.run());
    const std::string path = (st.run() / "lock").string();
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) fail("cannot open " + path);
    if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      std::cerr << "weft: another `weft local` command is running on " << st.root.string()
                << "; waiting for it\n";
      flock(fd_, LOCK_EX);
    }
  }
  ~StateLock() {
    if (fd_ >= 0) close(fd_);
  }
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

json loadLocal(const State& st) {
  auto text = local::readFile(st.localJson().string());
  if (!text.ok()) return nullptr;
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    warn(st.localJson().string() + " does not parse; treating local mode as not running");
    return nullptr;
  }
  if (!j.contains("pods") || !j["pods"].is_array()) j["pods"] = json::array();
  if (!j.contains("services") || !j["services"].is_array()) j["services"] = json::array();
  return j;
}

void saveLocal(const State& st, const json& j) {
  if (auto ok = local::writeFileAtomic(st.localJson().string(), j.dump(2) + "\n"); !ok.ok()) {
    fail(ok.error().context);
  }
}

void writeOrFail(const fs::path& p, const std::string& content, unsigned mode = 0644) {
  if (auto ok = local::writeFileAtomic(p.string(), content, mode); !ok.ok())
    fail(ok.error().context);
}

// A recorded PID that still runs *our* process: a PID reused by anything else does not count.
bool ours(const State& st, const json& pid_value) {
  if (!pid_value.is_number_integer()) return false;
  const auto pid = pid_value.get<pid_t>();
  return local::processAlive(pid) && local::markerOf(pid) == st.root.string();
}

std::string hostAddress(bool root) { return root ? kBridgeIp : kLoopback; }

std::string bin(const std::string& name) {
  std::string path = local::findBinary(name);
  if (path.empty()) fail("cannot find " + name + " next to weft or in PATH");
  return path;
}

std::string tail(const fs::path& log, std::size_t lines = 15) {
  auto text = local::readFile(log.string());
  if (!text.ok()) return {};
  std::vector<std::string> all;
  std::stringstream ss(*text);
  std::string line;
  while (std::getline(ss, line)) all.push_back(line);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "    " + all[i] + "\n";
  }
  return out;
}

CommandResult must(const std::vector<std::string>& argv) {
  CommandResult r = runCommand(argv);
  if (!r.ok()) {
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    std::string err = r.err.empty() ? r.out : r.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    throw std::runtime_error("`" + cmd + "` failed (status " + std::to_string(r.status) +
                             "): " + err);
  }
  return r;
}

// --- PKI and tokens ------------------------------------------------------------------------------

void ensurePki(const State& st, bool* created) {
  *created = false;
  if (fs::exists(st.anchorCert()) && fs::exists(st.issuerCert()) && fs::exists(st.issuerKey())) {
    return;
  }
  mkdirs(st.pki());
  using std::chrono::hours;
  const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  const std::chrono::seconds backdate{5 * 60};  // as `weft certs`: tolerate a clock 5 min behind
  auto anchor_key = identity::generateP256Key();
  if (!anchor_key.ok()) fail(anchor_key.error().message());
  auto anchor = identity::createRootCa(
      anchor_key->get(), {"root.weft.cluster.local", hours(24 * 365 * 10), backdate}, now);
  if (!anchor.ok()) fail("cannot create the trust anchor: " + anchor.error().message());
  auto issuer_key = identity::generateP256Key();
  if (!issuer_key.ok()) fail(issuer_key.error().message());
  auto issuer = identity::createIntermediateCa(
      issuer_key->get(), {"identity.weft.cluster.local", hours(24 * 365), backdate}, anchor->get(),
      anchor_key->get(), now);
  if (!issuer.ok()) fail("cannot create the issuer: " + issuer.error().message());
  writeOrFail(st.anchorKey(), identity::privateKeyToPem(anchor_key->get()), 0600);
  writeOrFail(st.issuerKey(), identity::privateKeyToPem(issuer_key->get()), 0600);
  writeOrFail(st.issuerCert(), identity::certToPem(issuer->get()), 0644);
  // Last: its presence means the PKI is complete.
  writeOrFail(st.anchorCert(), identity::certToPem(anchor->get()), 0644);
  *created = true;
}

std::string identityOf(const std::string& sa, const std::string& ns) {
  return identity::identityName(sa, ns, kControlPlaneNs, kTrustDomain);
}

// One token per identity: `add-token` replaces the identity's previous line, so replicas sharing
// a service account must share the token. Its plaintext is kept (0600) to hand to later replicas.
std::string tokenFor(const State& st, const std::string& ident) {
  const fs::path secret = st.secrets() / ident;
  if (auto text = local::readFile(secret.string()); text.ok() && !text->empty()) {
    std::string t = *text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    if (!t.empty()) return t;
  }
  mkdirs(st.secrets(), fs::perms(0700));
  CommandResult r = must({bin("weft-controller"), "identity", "add-token", "--tokens",
                          st.tokens().string(), "--identity", ident});
  std::string token = r.out;
  while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  if (token.empty())
    throw std::runtime_error("weft-controller identity add-token printed no token");
  writeOrFail(secret, token + "\n", 0600);
  return token;
}

// --- Prometheus ----------------------------------------------------------------------------------

void writeTargets(const State& st, const json& local_state) {
  json targets = json::array();
  if (!local_state.is_null()) {
    for (const auto& p : local_state["pods"]) {
      targets.push_back({{"targets", {p.value("admin", "")}},
                         {"labels",
                          {{"namespace", p.value("namespace", "")},
                           {"pod", p.value("name", "")},
                           {"deployment", p.value("deployment", "")}}}});
    }
  }
  writeOrFail(st.targets(), targets.dump(2) + "\n");
}

void writePrometheusConfig(const State& st, bool root) {
  const std::string host = hostAddress(root);
  std::ostringstream y;
  y << "# Written by `weft local up`; rewritten on every up.\n"
    << "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
    << "scrape_configs:\n"
    << "  - job_name: weft-proxies\n"
    << "    file_sd_configs:\n"
    << "      - files: ['" << st.targets().string() << "']\n"
    << "        refresh_interval: 5s\n"
    << "  - job_name: weft-control-plane\n"
    << "    static_configs:\n"
    << "      - targets: ['" << host << ":" << kIdentityAdminPort << "']\n"
    << "        labels: {component: identity, namespace: " << kControlPlaneNs << "}\n"
    << "      - targets: ['" << host << ":" << kDestinationAdminPort << "']\n"
    << "        labels: {component: destination, namespace: " << kControlPlaneNs << "}\n";
  writeOrFail(st.prometheus() / "prometheus.yml", y.str());
}

// --- network (root) ------------------------------------------------------------------------------

bool linkExists(const std::string& name) { return runCommand({"ip", "link", "show", name}).ok(); }

void ensureBridge() {
  if (!linkExists(kBridge)) must({"ip", "link", "add", kBridge, "type", "bridge"});
  const std::string cidr = std::string(kBridgeIp) + "/" + std::to_string(kBridgePrefix);
  CommandResult addrs = runCommand({"ip", "-o", "addr", "show", "dev", kBridge});
  if (addrs.out.find(" " + cidr + " ") == std::string::npos) {
    must({"ip", "addr", "add", cidr, "dev", kBridge});
  }
  must({"ip", "link", "set", kBridge, "up"});
}

std::vector<std::string> weftNetns() {
  std::vector<std::string> out;
  CommandResult r = runCommand({"ip", "netns", "list"});
  std::stringstream ss(r.out);
  std::string line;
  while (std::getline(ss, line)) {
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind("weft-", 0) == 0) out.push_back(name);
  }
  return out;
}

std::vector<pid_t> pidsInNetns(const std::string& netns) {
  std::vector<pid_t> out;
  CommandResult r = runCommand({"ip", "netns", "pids", netns});
  std::stringstream ss(r.out);
  long pid = 0;
  while (ss >> pid) out.push_back(static_cast<pid_t>(pid));
  return out;
}

// weft-<ns>-<pod>, shortened with a hash when long (the name is a file in /run/netns and shows in
// `ip netns`; short names keep that readable).
std::string netnsName(const std::string& ns, const std::string& pod) {
  std::string name = "weft-" + ns + "-" + pod;
  if (name.size() <= 48) return name;
  return name.substr(0, 39) + "-" + local::hexOf(local::fnv1a(name), 8);
}
// Interface names have at most 15 characters.
std::string vethName(const std::string& netns) {
  return "wv" + local::hexOf(local::fnv1a(netns), 8);
}

std::string hostsFile(const json& st, const std::string& pod_ns, const std::string& pod,
                      const std::string& ip) {
  std::ostringstream h;
  h << "# Written by `weft local`: the pod's own name and every local-mode service.\n"
    << "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    << ip << "\t" << pod << "\n";
  for (const auto& s : st["services"]) {
    const std::string name = s.value("name", "");
    const std::string ns = s.value("namespace", "");
    h << s.value("clusterIP", "") << "\t" << name << "." << ns << ".svc.cluster.local " << name
      << "." << ns << " " << name << "." << ns << ".svc";
    if (ns == pod_ns) h << " " << name;
    h << "\n";
  }
  return h.str();
}

// In place (not by rename): `ip netns exec` bind-mounted this very inode into running pods.
void writeHostsInPlace(const fs::path& p, const std::string& content) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  FILE* f = std::fopen(p.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + p.string());
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
}

void refreshHosts(const json& st) {
  if (!st.value("root", false)) return;
  for (const auto& p : st["pods"]) {
    try {
      writeHostsInPlace(
          fs::path("/etc/netns") / p.value("netns", "") / "hosts",
          hostsFile(st, p.value("namespace", ""), p.value("name", ""), p.value("ip", "")));
    } catch (const std::exception& e) {
      warn(e.what());
    }
  }
}

// --- up
// --------------------------------------------------------------------------------------------

struct Component {
  std::string name;
  std::vector<std::string> argv;
  std::string ready_host;
  uint16_t ready_port = 0;
  std::string ready_path;
};

bool hostPort(const std::string& text, std::string* host, uint16_t* port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  *host = text.substr(0, colon);
  const int p = std::atoi(text.c_str() + colon + 1);
  if (p <= 0 || p > 65535) return false;
  *port = static_cast<uint16_t>(p);
  return true;
}

std::vector<std::string> daemonEnv(const State& st) {
  std::vector<std::string> env{std::string(local::kMarkerVar) + "=" + st.root.string(),
                               std::string("PATH=") + kPath};
  if (const char* home = std::getenv("HOME")) env.push_back(std::string("HOME=") + home);
  return env;
}

json componentsStatus(const State& st, const json& j) {
  json out = json::object();
  for (const char* c : {"identity", "destination", "prometheus"}) {
    out[c] = j.is_object() && j.contains(c) && ours(st, j[c].value("pid", json()));
  }
  return out;
}

void report(const Options& o, const json& j, const std::string& table) {
  if (o.output == "json") {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << table;
  }
}

void runUp(const Options& o) {
  const State st = resolveState(o.state_dir);
  mkdirs(st.root);
  StateLock lock(st);
  const bool root = isRoot();
  for (const auto& m : local::markedProcesses()) {
    if (m.state_dir != st.root.string()) {
      fail("local mode already runs from " + m.state_dir + " (pid " + std::to_string(m.pid) +
           "); run `weft local down --state-dir " + m.state_dir + "` first");
    }
  }
  json j = loadLocal(st);
  if (!j.is_null() && j.value("root", false) != root) {
    fail(std::string("local mode in ") + st.root.string() + " was started " +
         (j.value("root", false) ? "as root" : "without root") +
         "; run `weft local down` with the same privileges first");
  }
  const json alive = componentsStatus(st, j);
  if (alive["identity"] && alive["destination"] && alive["prometheus"]) {
    report(o, {{"stateDir", st.root.string()}, {"alreadyRunning", true}, {"local", j}},
           "Local mode is already up (state " + st.root.string() + ").\n");
    return;
  }
  // Half up (a crash, or a component died): restart the control plane whole. Pods keep running
  // and reconnect.
  std::vector<pid_t> stale;
  for (const char* c : {"identity", "destination", "prometheus"}) {
    if (j.is_object() && j.contains(c) && ours(st, j[c].value("pid", json()))) {
      stale.push_back(j[c]["pid"].get<pid_t>());
    }
  }
  local::stopProcesses(stale, std::chrono::seconds(3));

  bool created = false;
  ensurePki(st, &created);
  if (!fs::exists(st.tokens())) {
    mkdirs(st.tokens().parent_path(), fs::perms(0700));
    writeOrFail(st.tokens(), "", 0600);
  }
  // Proxies (UID 2102) read the trust anchor under the state dir.
  for (const fs::path& d : {st.root, st.pki(), st.root / "pods"}) mkdirs(d);
  mkdirs(st.prometheus() / "data");
  mkdirs(st.registry() / "services");
  mkdirs(st.registry() / "workloads");

  if (root) {
    try {
      ensureBridge();
    } catch (const std::exception& e) {
      fail(std::string("cannot set up the bridge: ") + e.what());
    }
  } else {
    std::cerr << "weft: not running as root: the control plane listens on 127.0.0.1 and pods "
                 "will run as processes on loopback with explicit proxy ports (no network "
                 "namespaces, no iptables interception)\n";
  }
  const std::string host = hostAddress(root);
  std::string prom_host;
  uint16_t prom_port = 0;
  if (!hostPort(o.prometheus_listen, &prom_host, &prom_port)) {
    std::cerr << "weft: --prometheus-listen: \"" << o.prometheus_listen << "\" is not IP:PORT\n";
    exitWith(kExitUsage);
  }
  struct Busy {
    std::string what;
    std::string host;
    uint16_t port;
  };
  for (const Busy& b :
       {Busy{"identity", host, kIdentityPort}, Busy{"identity admin", host, kIdentityAdminPort},
        Busy{"destination", host, kDestinationPort},
        Busy{"destination admin", host, kDestinationAdminPort},
        Busy{"Prometheus", prom_host, prom_port}}) {
    if (local::portOpen(b.host, b.port)) {
      std::string hint;
      if (b.what == "Prometheus") {
        hint =
            " (Debian's packaged service? `systemctl disable --now prometheus`, or pick "
            "another address with --prometheus-listen)";
      }
      fail(b.host + ":" + std::to_string(b.port) + ", which the " + b.what +
           " listener needs, is already in use" + hint);
    }
  }

  writePrometheusConfig(st, root);
  if (!fs::exists(st.targets())) writeTargets(st, j);
  const std::string prom_bin = local::findBinary("prometheus");
  if (prom_bin.empty()) {
    fail(
        "prometheus is not installed (Debian: apt-get install prometheus; scripts/setup "
        "installs it)");
  }
  auto addr = [&](uint16_t port) { return host + ":" + std::to_string(port); };
  std::vector<Component> components{
      {"identity",
       {bin("weft-controller"), "identity", "--issuer-cert", st.issuerCert().string(),
        "--issuer-key", st.issuerKey().string(), "--trust-anchors", st.anchorCert().string(),
        "--tokens", st.tokens().string(), "--listen", addr(kIdentityPort), "--admin-listen",
        addr(kIdentityAdminPort)},
       host,
       kIdentityAdminPort,
       "/ready"},
      {"destination",
       {bin("weft-controller"), "destination", "--state-dir", st.root.string(), "--listen",
        addr(kDestinationPort), "--admin-listen", addr(kDestinationAdminPort)},
       host,
       kDestinationAdminPort,
       "/ready"},
      {"prometheus",
       {prom_bin, "--config.file=" + (st.prometheus() / "prometheus.yml").string(),
        "--storage.tsdb.path=" + (st.prometheus() / "data").string(),
        "--storage.tsdb.retention.time=6h", "--web.listen-address=" + o.prometheus_listen,
        "--web.enable-lifecycle"},
       prom_host,
       prom_port,
       "/-/ready"},
  };
  std::map<std::string, pid_t> pids;
  auto abort_up = [&](const std::string& why) {
    std::vector<pid_t> started;
    for (const auto& [n, p] : pids) started.push_back(p);
    local::stopProcesses(started, std::chrono::seconds(3));
    fail(why);
  };
  for (const Component& c : components) {
    const fs::path log = st.run() / (c.name + ".log");
    auto pid = local::startDaemon({c.argv, daemonEnv(st), log.string(), st.root.string()});
    if (!pid.ok()) abort_up("cannot start " + c.name + ": " + pid.error().context);
    pids[c.name] = *pid;
  }
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  for (const Component& c : components) {
    while (true) {
      std::string why;
      if (local::exitedEarly(pids[c.name], &why)) {
        abort_up(c.name + " exited (" + why + "); the end of " +
                 (st.run() / (c.name + ".log")).string() + ":\n" +
                 tail(st.run() / (c.name + ".log")));
      }
      auto status =
          local::httpGet(c.ready_host, c.ready_port, c.ready_path, std::chrono::milliseconds(500));
      if (status.ok() && *status == 200) break;
      if (std::chrono::steady_clock::now() > deadline) {
        abort_up(c.name + " did not become ready within " + std::to_string(kReadyTimeout.count()) +
                 " s; the end of " + (st.run() / (c.name + ".log")).string() + ":\n" +
                 tail(st.run() / (c.name + ".log")));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  if (j.is_null()) j = {{"pods", json::array()}, {"services", json::array()}};
  j["version"] = 1;
  j["root"] = root;
  if (root) {
    j["bridge"] = {{"name", kBridge}, {"address", kBridgeIp}, {"prefix", kBridgePrefix}};
  } else {
    j.erase("bridge");
  }
  j["identity"] = {{"address", addr(kIdentityPort)},
                   {"admin", addr(kIdentityAdminPort)},
                   {"pid", pids["identity"]}};
  j["destination"] = {{"address", addr(kDestinationPort)},
                      {"admin", addr(kDestinationAdminPort)},
                      {"pid", pids["destination"]}};
  j["prometheus"] = {{"address", o.prometheus_listen}, {"pid", pids["prometheus"]}};
  j["trustDomain"] = kTrustDomain;
  j["controlPlaneNamespace"] = kControlPlaneNs;
  saveLocal(st, j);

  std::ostringstream t;
  t << "Local mode is up (state " << st.root.string() << (root ? "" : ", unprivileged") << ").\n";
  if (created) t << "  created the trust anchor and issuer in " << st.pki().string() << "\n";
  t << "  identity     " << addr(kIdentityPort) << "  (pid " << pids["identity"] << ")\n"
    << "  destination  " << addr(kDestinationPort) << "  (pid " << pids["destination"] << ")\n"
    << "  prometheus   http://" << o.prometheus_listen << "  (pid " << pids["prometheus"]
    << ", 6h retention)\n"
    << "Start workloads with `weft local run -f app.yaml`.\n";
  report(o, {{"stateDir", st.root.string()}, {"createdPki", created}, {"local", j}}, t.str());
}

// --- run
// -------------------------------------------------------------------------------------------

std::string ipv4(uint32_t v) {
  return std::to_string(v >> 24) + "." + std::to_string((v >> 16) & 0xff) + "." +
         std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
}

std::string allocateIp(const std::set<std::string>& used, uint32_t first, uint32_t last) {
  for (uint32_t v = first; v <= last; ++v) {
    const uint32_t low = v & 0xff;
    if (low == 0 || low == 255) continue;
    std::string ip = ipv4(v);
    if (!used.contains(ip)) return ip;
  }
  fail("no free address left");
}

json serviceRegistryJson(const local::ServiceObject& s, const std::string& cluster_ip) {
  json ports = json::array();
  json opaque = json::array();
  for (const auto& p : s.ports) {
    ports.push_back({{"name", p.name},
                     {"port", p.port},
                     {"targetPort", p.target_port},
                     {"protocol", p.opaque ? json("opaque") : json(nullptr)}});
    if (p.opaque) opaque.push_back(p.port);
  }
  json selector = json::object();
  for (const auto& [k, v] : s.selector) selector[k] = v;
  return {{"namespace", s.ns},    {"name", s.name},        {"ports", ports},
          {"selector", selector}, {"opaquePorts", opaque}, {"clusterIP", cluster_ip}};
}

json deploymentJson(const local::DeploymentObject& d) {
  json env = json::array();
  for (const auto& e : d.env) env.push_back({{"name", e.name}, {"value", e.value}});
  json container = {
      {"name", d.container}, {"command", d.command}, {"env", env}, {"ports", d.container_ports}};
  json pod_spec = {{"serviceAccountName", d.service_account},
                   {"containers", json::array({container})}};
  json tmpl = {{"metadata", {{"labels", d.pod_labels}, {"annotations", d.pod_annotations}}},
               {"spec", pod_spec}};
  json meta = {
      {"name", d.name}, {"namespace", d.ns}, {"labels", d.labels}, {"annotations", d.annotations}};
  return {{"apiVersion", "apps/v1"},
          {"kind", "Deployment"},
          {"metadata", meta},
          {"spec", {{"replicas", d.replicas}, {"template", tmpl}}}};
}

void teardownPod(const State& st, const json& p) {
  std::vector<pid_t> pids;
  for (const char* k : {"proxyPid", "appPid"}) {
    if (ours(st, p.value(k, json()))) pids.push_back(p[k].get<pid_t>());
  }
  const std::string netns = p.value("netns", "");
  if (!netns.empty() && isRoot()) {
    for (pid_t pid : pidsInNetns(netns)) pids.push_back(pid);
  }
  local::stopProcesses(pids, std::chrono::seconds(3));
  if (!netns.empty() && isRoot()) {
    runCommand({"ip", "netns", "del", netns});
    runCommand({"ip", "link", "del", vethName(netns)});
    std::error_code ec;
    fs::remove_all(fs::path("/etc/netns") / netns, ec);
  }
  std::error_code ec;
  fs::remove(st.workloadFile(p.value("namespace", ""), p.value("name", "")), ec);
  fs::remove(st.podDir(p.value("namespace", ""), p.value("name", "")) / "token", ec);
}

struct PodPlan {
  const local::DeploymentObject* d = nullptr;
  std::string name;
  uint16_t app_port = 0;  // unprivileged mode: where the proxy's inbound side forwards
};

// Starts one pod and returns its local.json entry. Throws (after undoing what it did) on failure.
json startPod(const State& st, json& j, const PodPlan& plan) {
  const local::DeploymentObject& d = *plan.d;
  const bool root = j.value("root", false);
  std::set<std::string> used_ips;
  std::set<int> used_slots;
  for (const auto& p : j["pods"]) {
    used_ips.insert(p.value("ip", ""));
    if (p.contains("slot")) used_slots.insert(p["slot"].get<int>());
  }
  json p = {{"namespace", d.ns},      {"name", plan.name},
            {"deployment", d.name},   {"serviceAccount", d.service_account},
            {"labels", d.pod_labels}, {"identity", identityOf(d.service_account, d.ns)}};
  const fs::path dir = st.podDir(d.ns, plan.name);
  mkdirs(dir);
  const std::string host = hostAddress(root);
  std::string opaque = kDefaultOpaquePorts;
  if (!d.opaque_ports.empty()) opaque += "," + d.opaque_ports;
  std::vector<std::string> proxy_env = daemonEnv(st);
  std::vector<std::string> app_env = daemonEnv(st);
  uint16_t inbound_port = kProxyInboundPort;
  try {
    if (root) {
      const std::string ip = allocateIp(used_ips, (10u << 24) | (89u << 16) | (1u << 8),
                                        (10u << 24) | (89u << 16) | 0xfffe);
      const std::string netns = netnsName(d.ns, plan.name);
      const std::string veth = vethName(netns);
      p["ip"] = ip;
      p["netns"] = netns;
      p["admin"] = ip + ":" + std::to_string(kProxyAdminPort);
      // Leftovers of an earlier crash under the same name.
      runCommand({"ip", "netns", "del", netns});
      runCommand({"ip", "link", "del", veth});
      must({"ip", "netns", "add", netns});
      must({"ip", "-n", netns, "link", "set", "lo", "up"});
      must({"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns});
      must({"ip", "link", "set", veth, "master", kBridge, "up"});
      must({"ip", "-n", netns, "addr", "add", ip + "/" + std::to_string(kBridgePrefix), "dev",
            "eth0"});
      must({"ip", "-n", netns, "link", "set", "eth0", "up"});
      must({"ip", "-n", netns, "route", "add", "default", "via", kBridgeIp});
      writeHostsInPlace(fs::path("/etc/netns") / netns / "hosts",
                        hostsFile(j, d.ns, plan.name, ip));
      must({"ip", "netns", "exec", netns, bin("weft-init"), "--proxy-uid",
            std::to_string(kProxyUid)});
    } else {
      int slot = 0;
      while (used_slots.contains(slot)) ++slot;
      const int base = kLoopbackPortBase + 4 * slot;
      p["slot"] = slot;
      p["ip"] = kLoopback;
      p["admin"] = std::string(kLoopback) + ":" + std::to_string(base + 2);
      p["inbound"] = std::string(kLoopback) + ":" + std::to_string(base);
      p["outbound"] = std::string(kLoopback) + ":" + std::to_string(base + 1);
      inbound_port = static_cast<uint16_t>(base);
      auto lp = [&](int port) { return std::string(kLoopback) + ":" + std::to_string(port); };
      proxy_env.push_back("WEFT_PROXY_INBOUND_LISTEN_ADDR=" + lp(base));
      proxy_env.push_back("WEFT_PROXY_OUTBOUND_LISTEN_ADDR=" + lp(base + 1));
      proxy_env.push_back("WEFT_PROXY_ADMIN_LISTEN_ADDR=" + lp(base + 2));
      proxy_env.push_back("WEFT_PROXY_CONTROL_LISTEN_ADDR=" + lp(base + 3));
      proxy_env.push_back("WEFT_PROXY_IPV6=false");
      if (plan.app_port != 0) {
        proxy_env.push_back("WEFT_PROXY_INBOUND_TARGET_ADDR=" + lp(plan.app_port));
        p["appPort"] = plan.app_port;
      }
      app_env.push_back("WEFT_LOCAL_INBOUND_ADDR=" + lp(base));
      app_env.push_back("WEFT_LOCAL_OUTBOUND_ADDR=" + lp(base + 1));
    }
    const std::string token = tokenFor(st, p["identity"].get<std::string>());
    const fs::path token_file = dir / "token";
    std::error_code ec;
    fs::remove(token_file, ec);
    writeOrFail(token_file, token + "\n", 0400);
    if (root && chown(token_file.c_str(), kProxyUid, kProxyUid) != 0) {
      throw std::runtime_error("cannot chown " + token_file.string());
    }
    proxy_env.insert(
        proxy_env.end(),
        {"WEFT_PROXY_IDENTITY_DISABLED=0",
         "WEFT_PROXY_IDENTITY_SVC_ADDR=" + host + ":" + std::to_string(kIdentityPort),
         "WEFT_PROXY_IDENTITY_LOCAL_NAME=" + p["identity"].get<std::string>(),
         "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE=" + st.anchorCert().string(),
         "WEFT_PROXY_IDENTITY_TOKEN_FILE=" + token_file.string(),
         "WEFT_PROXY_DESTINATION_ADDR=" + host + ":" + std::to_string(kDestinationPort),
         "WEFT_PROXY_DESTINATION_NETWORKS=10.89.0.0/16,10.90.0.0/16",
         "WEFT_PROXY_OPAQUE_PORTS=" + opaque, "WEFT_PROXY_LOG=info"});
    std::vector<std::string> proxy_argv;
    std::vector<std::string> app_argv;
    if (root) {
      const std::string netns = p["netns"].get<std::string>();
      proxy_argv = {"ip",
                    "netns",
                    "exec",
                    netns,
                    "setpriv",
                    "--reuid=" + std::to_string(kProxyUid),
                    "--regid=" + std::to_string(kProxyUid),
                    "--clear-groups",
                    bin("weft-proxy")};
      app_argv = {"ip", "netns", "exec", netns};
    } else {
      proxy_argv = {bin("weft-proxy")};
    }
    app_argv.insert(app_argv.end(), d.command.begin(), d.command.end());
    app_env.push_back("HOSTNAME=" + plan.name);
    for (const auto& e : d.env) app_env.push_back(e.name + "=" + e.value);

    auto proxy_pid =
        local::startDaemon({proxy_argv, proxy_env, (dir / "proxy.log").string(), dir.string()});
    if (!proxy_pid.ok()) throw std::runtime_error(proxy_pid.error().context);
    p["proxyPid"] = *proxy_pid;
    auto app_pid =
        local::startDaemon({app_argv, app_env, (dir / "app.log").string(), dir.string()});
    if (!app_pid.ok()) throw std::runtime_error(app_pid.error().context);
    p["appPid"] = *app_pid;

    json workload = {{"namespace", d.ns},      {"name", plan.name},
                     {"labels", d.pod_labels}, {"serviceAccount", d.service_account},
                     {"deployment", d.name},   {"ip", p["ip"]},
                     {"meshed", true},         {"inboundPort", inbound_port}};
    writeOrFail(st.workloadFile(d.ns, plan.name), workload.dump(2) + "\n");
  } catch (const std::exception&) {
    teardownPod(st, p);
    throw;
  }
  return p;
}

bool selects(const local::ServiceObject& s, const local::Labels& labels) {
  if (s.selector.empty()) return false;
  for (const auto& [k, v] : s.selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

void runRun(const Options& o) {
  local::Manifest m;
  std::vector<std::string> errors;
  for (const auto& f : o.files) {
    auto text = local::readFile(f);
    if (!text.ok()) {
      errors.push_back(f + ": cannot read: " + text.error().context);
      continue;
    }
    local::ParseResult r = local::parseManifest(*text, f);
    errors.insert(errors.end(), r.errors.begin(), r.errors.end());
    auto& mm = r.manifest;
    m.namespaces.insert(m.namespaces.end(), mm.namespaces.begin(), mm.namespaces.end());
    m.services.insert(m.services.end(), mm.services.begin(), mm.services.end());
    m.deployments.insert(m.deployments.end(), mm.deployments.begin(), mm.deployments.end());
  }
  if (errors.empty()) errors = local::checkDuplicates(m);
  if (!errors.empty()) {
    for (const auto& e : errors) std::cerr << e << "\n";
    std::cerr << "weft: nothing was applied (" << errors.size() << " error"
              << (errors.size() == 1 ? "" : "s") << ")\n";
    exitWith(kExitFailed);
  }

  const State st = resolveState(o.state_dir);
  if (!fs::exists(st.localJson())) fail("local mode is not up: run `weft local up` first");
  StateLock lock(st);
  json j = loadLocal(st);
  if (j.is_null() || !ours(st, j["identity"].value("pid", json())) ||
      !ours(st, j["destination"].value("pid", json()))) {
    fail("the control plane is not running: run `weft local up` first");
  }
  const bool root = j.value("root", false);
  if (root && !isRoot()) fail("local mode was started as root; run `weft local run` as root");
  if (!root) {
    std::cerr << "weft: not running as root: pods run as processes on 127.0.0.1; each proxy "
                 "gets explicit ports (inbound, outbound, admin: see `weft local status`) and "
                 "traffic is not intercepted — applications reach other pods through "
                 "WEFT_LOCAL_OUTBOUND_ADDR\n";
  }

  // Services first: pods' /etc/hosts and the registry name them.
  for (const auto& ns : m.namespaces) mkdirs(st.root / "manifests" / ns.name);
  std::set<std::string> used_cips;
  for (const auto& s : j["services"]) used_cips.insert(s.value("clusterIP", ""));
  json out_services = json::array();
  for (const auto& s : m.services) {
    std::string cip;
    for (auto& existing : j["services"]) {
      if (existing.value("namespace", "") == s.ns && existing.value("name", "") == s.name) {
        cip = existing.value("clusterIP", "");
      }
    }
    if (cip.empty()) {
      cip =
          allocateIp(used_cips, (10u << 24) | (90u << 16) | 1u, (10u << 24) | (90u << 16) | 0xfffe);
      used_cips.insert(cip);
    }
    const json reg = serviceRegistryJson(s, cip);
    writeOrFail(st.serviceFile(s.ns, s.name), reg.dump(2) + "\n");
    writeOrFail(st.root / "manifests" / s.ns / ("service-" + s.name + ".yaml"), reg.dump(2) + "\n");
    json entry = {
        {"namespace", s.ns}, {"name", s.name}, {"clusterIP", cip}, {"ports", json::array()}};
    for (const auto& p : s.ports) entry["ports"].push_back(p.port);
    json kept = json::array();
    for (const auto& e : j["services"]) {
      if (!(e.value("namespace", "") == s.ns && e.value("name", "") == s.name)) kept.push_back(e);
    }
    kept.push_back(entry);
    j["services"] = kept;
    out_services.push_back(entry);
  }
  saveLocal(st, j);
  refreshHosts(j);

  // All services known (these and earlier ones), for unprivileged pods' inbound target.
  std::vector<local::ServiceObject> all_services = m.services;

  json started = json::array();
  json removed = json::array();
  std::vector<std::string> failures;
  for (const auto& d : m.deployments) {
    writeOrFail(st.root / "manifests" / d.ns / ("deployment-" + d.name + ".yaml"),
                deploymentJson(d).dump(2) + "\n");
    // Pods are named after their template, so a changed template replaces them (as a
    // ReplicaSet's pod-template-hash does).
    json tmpl = deploymentJson(d)["spec"]["template"];
    tmpl["opaquePorts"] = d.opaque_ports;
    const std::string hash = local::hexOf(local::fnv1a(tmpl.dump()), 4);
    std::vector<std::string> desired;
    for (int i = 0; i < d.replicas; ++i)
      desired.push_back(d.name + "-" + hash + "-" + std::to_string(i));
    json kept = json::array();
    std::set<std::string> running;
    for (const auto& p : j["pods"]) {
      const bool mine = p.value("namespace", "") == d.ns && p.value("deployment", "") == d.name;
      const std::string name = p.value("name", "");
      const bool wanted = std::find(desired.begin(), desired.end(), name) != desired.end();
      if (mine && (!wanted || !ours(st, p.value("proxyPid", json())) ||
                   !ours(st, p.value("appPid", json())))) {
        teardownPod(st, p);
        removed.push_back(d.ns + "/" + name);
        continue;
      }
      if (mine) running.insert(name);
      kept.push_back(p);
    }
    j["pods"] = kept;
    saveLocal(st, j);
    uint16_t app_port = d.container_ports.empty() ? 0 : d.container_ports.front();
    for (const auto& s : all_services) {
      if (s.ns == d.ns && selects(s, d.pod_labels) && !s.ports.empty() && app_port == 0) {
        app_port = s.ports.front().target_port;
      }
    }
    if (!root && d.replicas > 1) {
      warn("deployment " + d.ns + "/" + d.name +
           ": without root all replicas share 127.0.0.1; an application binding a fixed port "
           "can run only once");
    }
    for (const auto& name : desired) {
      if (running.contains(name)) continue;
      try {
        json p = startPod(st, j, {&d, name, app_port});
        j["pods"].push_back(p);
        saveLocal(st, j);
        started.push_back(p);
      } catch (const std::exception& e) {
        failures.push_back(d.ns + "/" + name + ": " + e.what());
      }
    }
  }
  writeTargets(st, j);

  // Proxies become ready once they hold a certificate from the identity service.
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  for (auto& p : started) {
    std::string host;
    uint16_t port = 0;
    hostPort(p.value("admin", ""), &host, &port);
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < deadline) {
      std::string why;
      if (local::exitedEarly(p["proxyPid"].get<pid_t>(), &why)) break;
      auto status = local::httpGet(host, port, "/ready", std::chrono::milliseconds(500));
      ready = status.ok() && *status == 200;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    p["ready"] = ready;
    if (!ready) {
      const fs::path log =
          st.podDir(p["namespace"].get<std::string>(), p["name"].get<std::string>()) / "proxy.log";
      failures.push_back(p["namespace"].get<std::string>() + "/" + p["name"].get<std::string>() +
                         ": the proxy is not ready; the end of " + log.string() + ":\n" +
                         tail(log));
    }
  }

  // Then the applications: a Service's endpoints are only worth announcing once the pods listen
  // on their ports (the containerPorts, else the targetPorts of the services selecting them).
  for (auto& p : started) {
    std::set<uint16_t> ports;
    for (const auto& d : m.deployments) {
      if (d.ns != p["namespace"] || d.name != p["deployment"]) continue;
      ports.insert(d.container_ports.begin(), d.container_ports.end());
      if (ports.empty()) {
        for (const auto& s : m.services) {
          if (s.ns != d.ns || !selects(s, d.pod_labels)) continue;
          for (const auto& sp : s.ports) ports.insert(sp.target_port);
        }
      }
    }
    const auto app_pid = p["appPid"].get<pid_t>();
    for (uint16_t port : ports) {
      while (!local::listensOn(app_pid, port) && std::chrono::steady_clock::now() < deadline &&
             local::processAlive(app_pid)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!local::listensOn(app_pid, port)) {
        warn(
            p["namespace"].get<std::string>() + "/" + p["name"].get<std::string>() +
            ": the application does not listen on port " + std::to_string(port) + " (yet); see " +
            (st.podDir(p["namespace"].get<std::string>(), p["name"].get<std::string>()) / "app.log")
                .string());
      }
    }
  }

  std::ostringstream t;
  for (const auto& s : out_services) {
    t << "service/" << s["namespace"].get<std::string>() << "/" << s["name"].get<std::string>()
      << " " << s["clusterIP"].get<std::string>() << "\n";
  }
  for (const auto& r : removed) t << "pod/" << r.get<std::string>() << " removed\n";
  for (const auto& p : started) {
    t << "pod/" << p["namespace"].get<std::string>() << "/" << p["name"].get<std::string>() << " "
      << p["ip"].get<std::string>() << " started" << (p.value("ready", false) ? "" : " (not ready)")
      << "\n";
  }
  if (started.empty() && removed.empty() && failures.empty() && !m.deployments.empty()) {
    t << "every pod already runs\n";
  }
  report(o,
         {{"services", out_services},
          {"started", started},
          {"removed", removed},
          {"errors", failures}},
         t.str());
  if (!failures.empty()) {
    for (const auto& f : failures) std::cerr << "weft: " << f << "\n";
    exitWith(kExitFailed);
  }
}

// --- status
// ----------------------------------------------------------------------------------------

void runStatus(const Options& o) {
  const State st = resolveState(o.state_dir);
  json j = loadLocal(st);
  if (j.is_null()) {
    report(o, {{"stateDir", st.root.string()}, {"running", false}},
           "Local mode is not running (state " + st.root.string() + ").\n");
    return;
  }
  const json alive = componentsStatus(st, j);
  j["stateDir"] = st.root.string();
  j["running"] = alive["identity"] && alive["destination"] && alive["prometheus"];
  for (const char* c : {"identity", "destination", "prometheus"}) {
    if (j.contains(c)) j[c]["running"] = alive[c];
  }
  for (auto& p : j["pods"]) {
    p["proxyRunning"] = ours(st, p.value("proxyPid", json()));
    p["appRunning"] = ours(st, p.value("appPid", json()));
    std::string host;
    uint16_t port = 0;
    bool ready = false;
    if (p["proxyRunning"] && hostPort(p.value("admin", ""), &host, &port)) {
      auto status = local::httpGet(host, port, "/ready", std::chrono::milliseconds(500));
      ready = status.ok() && *status == 200;
    }
    p["ready"] = ready;
  }
  if (o.output == "json") {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("Local mode, state %s (%s)\n\n", st.root.c_str(),
              j.value("root", false) ? "root: pods in network namespaces on weft0"
                                     : "unprivileged: pods on loopback");
  std::printf("%-12s %-22s %-8s %s\n", "COMPONENT", "ADDRESS", "PID", "STATUS");
  for (const char* c : {"identity", "destination", "prometheus"}) {
    if (!j.contains(c)) continue;
    std::printf("%-12s %-22s %-8s %s\n", c, j[c].value("address", "").c_str(),
                std::to_string(j[c].value("pid", 0)).c_str(),
                j[c]["running"].get<bool>() ? "running" : "STOPPED");
  }
  std::printf("\n%-12s %-20s %-12s %s\n", "NAMESPACE", "SERVICE", "CLUSTER-IP", "PORTS");
  for (const auto& s : j["services"]) {
    std::string ports;
    for (const auto& p : s["ports"])
      ports += (ports.empty() ? "" : ",") + std::to_string(p.get<int>());
    std::printf("%-12s %-20s %-12s %s\n", s.value("namespace", "").c_str(),
                s.value("name", "").c_str(), s.value("clusterIP", "").c_str(), ports.c_str());
  }
  std::printf("\n%-12s %-24s %-14s %-12s %-7s %-7s %s\n", "NAMESPACE", "POD", "DEPLOYMENT", "IP",
              "PROXY", "APP", "IDENTITY");
  for (const auto& p : j["pods"]) {
    const char* proxy = !p["proxyRunning"].get<bool>() ? "STOPPED"
                        : p["ready"].get<bool>()       ? "ready"
                                                       : "unready";
    std::printf(
        "%-12s %-24s %-14s %-12s %-7s %-7s %s\n", p.value("namespace", "").c_str(),
        p.value("name", "").c_str(), p.value("deployment", "").c_str(), p.value("ip", "").c_str(),
        proxy, p["appRunning"].get<bool>() ? "running" : "EXITED", p.value("identity", "").c_str());
  }
}

// --- down
// ------------------------------------------------------------------------------------------

void runDown(const Options& o) {
  const State st = resolveState(o.state_dir);
  const bool root = isRoot();
  std::vector<pid_t> pids;
  std::size_t netns_removed = 0;
  bool bridge_removed = false;
  std::vector<std::string> problems;
  {
    std::unique_ptr<StateLock> lock;
    if (fs::exists(st.root)) lock = std::make_unique<StateLock>(st);
    json j = loadLocal(st);
    if (!j.is_null()) {
      for (const char* c : {"identity", "destination", "prometheus"}) {
        if (j.contains(c) && ours(st, j[c].value("pid", json())))
          pids.push_back(j[c]["pid"].get<pid_t>());
      }
      for (const auto& p : j["pods"]) {
        for (const char* k : {"proxyPid", "appPid"}) {
          if (ours(st, p.value(k, json()))) pids.push_back(p[k].get<pid_t>());
        }
      }
    }
    // Crash recovery: whatever carries our marker, recorded or not.
    for (const auto& m : local::markedProcesses(st.root.string())) pids.push_back(m.pid);
    std::vector<std::string> namespaces = weftNetns();
    if (root) {
      for (const auto& ns : namespaces) {
        for (pid_t p : pidsInNetns(ns)) pids.push_back(p);
      }
    }
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    for (pid_t p : local::stopProcesses(pids, std::chrono::seconds(3))) {
      problems.push_back("process " + std::to_string(p) + " is still running");
    }
    if (root) {
      for (const auto& ns : namespaces) {
        CommandResult r = runCommand({"ip", "netns", "del", ns});
        if (r.ok()) {
          ++netns_removed;
        } else {
          problems.push_back("cannot delete network namespace " + ns + ": " + r.err);
        }
      }
      if (linkExists(kBridge)) {
        CommandResult r = runCommand({"ip", "link", "del", kBridge});
        if (r.ok()) {
          bridge_removed = true;
        } else {
          problems.push_back(std::string("cannot delete ") + kBridge + ": " + r.err);
        }
      }
      std::error_code ec;
      if (fs::exists("/etc/netns")) {
        for (const auto& e : fs::directory_iterator("/etc/netns", ec)) {
          if (e.path().filename().string().rfind("weft-", 0) == 0) fs::remove_all(e.path(), ec);
        }
      }
    } else if (!namespaces.empty() || linkExists(kBridge)) {
      problems.push_back(
          "network namespaces weft-* or the bridge weft0 exist; run `weft local "
          "down` as root to remove them");
    }
    if (fs::exists(st.root)) {
      std::error_code ec;
      fs::remove(st.localJson(), ec);
      fs::remove_all(st.registry(), ec);
      if (fs::exists(st.root / "pods")) {
        for (const auto& e : fs::recursive_directory_iterator(st.root / "pods", ec)) {
          if (e.path().filename() == "token") fs::remove(e.path(), ec);
        }
      }
      if (fs::exists(st.prometheus())) writeTargets(st, nullptr);
    }
  }
  bool purged = false;
  if (o.purge && fs::exists(st.root)) {
    // Only a directory that looks like ours: a typo in --state-dir must not delete a home.
    std::error_code ec;
    bool looks_ours = true;
    for (const auto& e : fs::directory_iterator(st.root, ec)) {
      // ("demo": where `weft demo` writes its manifest.)
      static const std::set<std::string> kOurs{"pki",        "identity", "registry", "manifests",
                                               "prometheus", "run",      "pods",     "demo"};
      if (!kOurs.contains(e.path().filename().string())) looks_ours = false;
    }
    if (!looks_ours || st.root == "/" || st.root.string().empty()) {
      problems.push_back("not purging " + st.root.string() +
                         ": it holds files local mode did not make");
    } else {
      fs::remove_all(st.root, ec);
      purged = !ec;
      if (ec) problems.push_back("cannot remove " + st.root.string() + ": " + ec.message());
    }
  }
  std::ostringstream t;
  t << "Local mode is down (state " << st.root.string() << "): stopped " << pids.size()
    << " process" << (pids.size() == 1 ? "" : "es") << ", removed " << netns_removed
    << " network namespace" << (netns_removed == 1 ? "" : "s")
    << (bridge_removed ? " and the bridge weft0" : "") << ".\n";
  if (purged) t << "Removed " << st.root.string() << " (PKI, tokens, manifests, logs).\n";
  report(o,
         {{"stateDir", st.root.string()},
          {"stoppedProcesses", pids.size()},
          {"removedNetworkNamespaces", netns_removed},
          {"removedBridge", bridge_removed},
          {"purged", purged},
          {"errors", problems}},
         t.str());
  if (!problems.empty()) {
    for (const auto& p : problems) std::cerr << "weft: " << p << "\n";
    exitWith(kExitFailed);
  }
}

void addStateDir(CLI::App* c, Options& o) {
  c->add_option("--state-dir", o.state_dir,
                "state directory (default: $WEFT_STATE_DIR, else /var/lib/weft as root and "
                "~/.weft otherwise)");
}

}  // namespace

void addLocalCommand(CLI::App& app) {
  auto* local_cmd = app.add_subcommand(
      "local",
      "run the mesh on this machine: control plane, Prometheus and workloads in pods "
      "(docs/local.md)");
  local_cmd->require_subcommand(1);
  static Options o;

  auto* up = local_cmd->add_subcommand(
      "up",
      "start the control plane (identity, destination) and Prometheus; creates the trust "
      "anchor and issuer on first use");
  addStateDir(up, o);
  up->add_option("--prometheus-listen", o.prometheus_listen, "Prometheus's listen address")
      ->capture_default_str();
  addOutputOption(up, o.output);
  up->callback([] { runUp(o); });

  auto* run = local_cmd->add_subcommand(
      "run", "apply Namespaces, Services and Deployments from YAML and start their pods");
  addStateDir(run, o);
  run->add_option("-f,--filename", o.files, "YAML file (repeatable)")->required();
  addOutputOption(run, o.output);
  run->callback([] { runRun(o); });

  auto* status = local_cmd->add_subcommand("status", "show what local mode runs");
  addStateDir(status, o);
  addOutputOption(status, o.output);
  status->callback([] { runStatus(o); });

  auto* down = local_cmd->add_subcommand(
      "down",
      "stop everything local mode started and remove its namespaces, bridge and run "
      "state; idempotent");
  addStateDir(down, o);
  down->add_flag("--purge", o.purge,
                 "also remove the state directory (trust anchor, issuer, tokens, manifests, logs)");
  addOutputOption(down, o.output);
  down->callback([] { runDown(o); });
}

}  // namespace weft::cli
