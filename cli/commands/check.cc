// `weft check` (local mode): is the mesh on this machine healthy? Runs grouped checks in the
// manner of `linkerd check` (weft-local, weft-identity, weft-control-plane, weft-data-plane,
// weft-viz). Each check has a stable name, which is also its anchor in docs/checks.md (what it
// checks, how to fix it); each passes, warns or fails. A failed check whose result the later
// checks depend on (no run/local.json, unreadable certificates, Prometheus down) stops the
// checks that need it. Exit status 1 when any check failed, warnings alone exit 0.
//
// Reads only: <state>/run/local.json, <state>/pki/{anchor.crt,issuer.crt,issuer.key}, admin
// /ready endpoints, each proxy's inbound TLS certificate (cli/viz/tls_probe.h) and Prometheus.
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands/commands.h"
#include "cli/viz/local_state.h"
#include "cli/viz/prometheus.h"
#include "cli/viz/tls_probe.h"
#include "weft/identity/certs.h"

namespace weft::cli {
namespace {

namespace fs = std::filesystem;
using identity::CertSummary;
using identity::X509Ptr;

constexpr const char* kDocs = "docs/checks.md#";
constexpr auto kExpiryWarning = std::chrono::hours(24 * 60);
constexpr const char* kProxyJob = "weft-proxies";

enum class Outcome { kPass, kWarn, kFail };

struct CheckResult {
  std::string group;
  std::string name;  // stable; the docs/checks.md anchor
  std::string description;
  Outcome outcome = Outcome::kPass;
  std::string message;
};

struct CheckFlags {
  std::string state_dir;
  std::string prometheus_url;
  std::string output = "table";
};

class Checker {
 public:
  void pass(const std::string& group, const std::string& name, const std::string& description,
            std::string message = {}) {
    add(group, name, description, Outcome::kPass, std::move(message));
  }
  void warn(const std::string& group, const std::string& name, const std::string& description,
            std::string message) {
    add(group, name, description, Outcome::kWarn, std::move(message));
  }
  void fail(const std::string& group, const std::string& name, const std::string& description,
            std::string message) {
    add(group, name, description, Outcome::kFail, std::move(message));
  }
  [[nodiscard]] const std::vector<CheckResult>& results() const { return results_; }

 private:
  void add(const std::string& group, const std::string& name, const std::string& description,
           Outcome outcome, std::string message) {
    results_.push_back({group, name, description, outcome, std::move(message)});
  }
  std::vector<CheckResult> results_;
};

std::string readFile(const fs::path& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path.string() + ": " + std::strerror(errno);
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string formatTime(identity::SystemTime t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string inDays(std::chrono::system_clock::duration d) {
  const auto hours = std::chrono::duration_cast<std::chrono::hours>(d).count();
  if (hours < 48) return std::to_string(hours) + " hours";
  return std::to_string(hours / 24) + " days";
}

// A trust anchor may be ECDSA P-256/P-384 or RSA >= 2048; signatures with SHA-1 or MD5 are
// refused (OpenSSL 3 at security level 1+ rejects them in handshakes anyway).
std::string unsupportedAnchorAlgorithm(const CertSummary& s) {
  const auto& k = s.key_algorithm;
  bool ok = k == "ECDSA P-256" || k == "ECDSA P-384";
  if (k.rfind("RSA ", 0) == 0) ok = std::atoi(k.c_str() + 4) >= 2048;
  if (!ok) return "key " + k + " (want ECDSA P-256, ECDSA P-384 or RSA >= 2048)";
  if (s.signature_algorithm.find("sha1") != std::string::npos ||
      s.signature_algorithm.find("md5") != std::string::npos) {
    return "signature " + s.signature_algorithm;
  }
  return {};
}

// --- weft-identity -------------------------------------------------------------------------------

struct Pki {
  std::vector<X509Ptr> anchors;
  X509Ptr issuer;
};

void checkValidity(Checker& c, const std::string& group, const std::string& prefix,
                   const std::string& validity_desc, const std::string& expiry_desc,
                   const std::vector<X509*>& certs, identity::SystemTime now) {
  std::string invalid;
  std::string expiring;
  for (X509* cert : certs) {
    auto s = identity::describe(cert);
    if (now < s.not_before) {
      invalid += (invalid.empty() ? "" : "; ") + s.subject + " is not valid before " +
                 formatTime(s.not_before);
    } else if (now >= s.not_after) {
      invalid +=
          (invalid.empty() ? "" : "; ") + s.subject + " expired at " + formatTime(s.not_after);
    } else if (s.not_after - now < kExpiryWarning) {
      expiring += (expiring.empty() ? "" : "; ") + s.subject + " expires in " +
                  inDays(s.not_after - now) + " (" + formatTime(s.not_after) + ")";
    }
  }
  if (invalid.empty()) {
    c.pass(group, prefix + "-validity", validity_desc);
  } else {
    c.fail(group, prefix + "-validity", validity_desc, invalid);
  }
  if (!invalid.empty()) return;  // said already, more loudly
  if (expiring.empty()) {
    c.pass(group, prefix + "-expiry", expiry_desc);
  } else {
    c.warn(group, prefix + "-expiry", expiry_desc, expiring);
  }
}

void checkIdentity(Checker& c, const fs::path& state_dir, identity::SystemTime now) {
  const std::string g = "weft-identity";
  const fs::path pki = state_dir / "pki";
  Pki p;

  // Trust anchors.
  {
    std::string err;
    std::string pem = readFile(pki / "anchor.crt", err);
    const std::string desc = "trust anchors are readable";
    if (!err.empty()) {
      c.fail(g, "anchors-readable", desc, err);
    } else if (auto certs = identity::certsFromPem(pem); !certs.ok()) {
      c.fail(g, "anchors-readable", desc,
             (pki / "anchor.crt").string() + ": " + certs.error().message());
    } else {
      p.anchors = std::move(*certs);
      c.pass(g, "anchors-readable", desc, std::to_string(p.anchors.size()) + " anchor(s)");
    }
  }
  if (!p.anchors.empty()) {
    std::string bad;
    for (const auto& a : p.anchors) {
      auto s = identity::describe(a.get());
      std::string why = unsupportedAnchorAlgorithm(s);
      if (!s.is_ca) why += std::string(why.empty() ? "" : ", ") + "not a CA";
      if (!why.empty()) bad += (bad.empty() ? "" : "; ") + s.subject + ": " + why;
    }
    const std::string desc = "trust anchors use a supported algorithm";
    bad.empty() ? c.pass(g, "anchors-algorithm", desc) : c.fail(g, "anchors-algorithm", desc, bad);
    std::vector<X509*> raw;
    for (const auto& a : p.anchors) raw.push_back(a.get());
    checkValidity(c, g, "anchors", "trust anchors are within their validity period",
                  "trust anchors are valid for at least 60 days", raw, now);
  }

  // Issuer.
  {
    std::string err;
    std::string pem = readFile(pki / "issuer.crt", err);
    const std::string desc = "issuer certificate is readable";
    if (!err.empty()) {
      c.fail(g, "issuer-readable", desc, err);
    } else if (auto certs = identity::certsFromPem(pem); !certs.ok()) {
      c.fail(g, "issuer-readable", desc,
             (pki / "issuer.crt").string() + ": " + certs.error().message());
    } else {
      // issuer.crt may carry its chain after it: the first certificate is the issuer.
      p.issuer = std::move(certs->front());
      c.pass(g, "issuer-readable", desc);
    }
  }
  if (p.issuer) {
    auto s = identity::describe(p.issuer.get());
    std::string bad;
    if (!identity::isP256(X509_get0_pubkey(p.issuer.get()))) {
      bad = "key " + s.key_algorithm + " (the issuer must be ECDSA P-256)";
    }
    if (!s.is_ca) bad += std::string(bad.empty() ? "" : ", ") + "not a CA";
    if (s.signature_algorithm.find("sha1") != std::string::npos ||
        s.signature_algorithm.find("md5") != std::string::npos) {
      bad += std::string(bad.empty() ? "" : ", ") + "signature " + s.signature_algorithm;
    }
    const std::string desc = "issuer certificate uses ECDSA P-256";
    bad.empty() ? c.pass(g, "issuer-algorithm", desc) : c.fail(g, "issuer-algorithm", desc, bad);
    checkValidity(c, g, "issuer", "issuer certificate is within its validity period",
                  "issuer certificate is valid for at least 60 days", {p.issuer.get()}, now);

    if (!p.anchors.empty()) {
      // Signature and name chaining only: time validity has its own checks above, so an
      // expired anchor does not also read as "not issued by the anchor".
      bool issued = false;
      for (const auto& a : p.anchors) {
        if (X509_check_issued(a.get(), p.issuer.get()) == X509_V_OK &&
            X509_verify(p.issuer.get(), X509_get0_pubkey(a.get())) == 1) {
          issued = true;
          break;
        }
      }
      ERR_clear_error();
      const std::string desc2 = "issuer certificate is issued by the trust anchor";
      if (issued) {
        c.pass(g, "issuer-signed-by-anchor", desc2);
      } else {
        c.fail(g, "issuer-signed-by-anchor", desc2,
               "issuer " + s.subject + " (issued by " + s.issuer +
                   ") is not signed by any certificate of " + (pki / "anchor.crt").string());
      }
    }

    std::string err;
    std::string key_pem = readFile(pki / "issuer.key", err);
    const std::string desc3 = "issuer key matches the issuer certificate";
    if (!err.empty()) {
      c.fail(g, "issuer-key-matches", desc3, err);
    } else if (auto key = identity::privateKeyFromPem(key_pem); !key.ok()) {
      c.fail(g, "issuer-key-matches", desc3,
             (pki / "issuer.key").string() + ": " + key.error().message());
    } else if (X509_check_private_key(p.issuer.get(), key->get()) != 1) {
      ERR_clear_error();
      c.fail(g, "issuer-key-matches", desc3,
             (pki / "issuer.key").string() + " is not the key of " + (pki / "issuer.crt").string());
    } else {
      c.pass(g, "issuer-key-matches", desc3);
    }
  }
}

// --- weft-control-plane
// ---------------------------------------------------------------------------

std::string pidNote(int pid) {
  if (pid <= 0) return {};
  if (::kill(pid, 0) != 0 && errno == ESRCH)
    return " (process " + std::to_string(pid) + " is gone)";
  return {};
}

void checkReady(Checker& c, const std::string& group, const std::string& name,
                const std::string& desc, const std::string& what, const std::string& admin,
                int pid) {
  if (admin.empty()) {
    c.fail(group, name, desc, "run/local.json names no admin address for " + what);
    return;
  }
  auto rsp = viz::httpGet(admin, "/ready", std::chrono::seconds(3));
  if (!rsp.ok()) {
    c.fail(group, name, desc,
           what + " admin at " + admin + ": " + rsp.error().message() + pidNote(pid));
  } else if (rsp->status != 200) {
    c.fail(group, name, desc,
           what + " at " + admin + " answered /ready with " + std::to_string(rsp->status));
  } else {
    c.pass(group, name, desc);
  }
}

// --- weft-data-plane ----------------------------------------------------------------------------

std::vector<X509Ptr> readAnchors(const fs::path& state_dir) {
  std::string err;
  std::string pem = readFile(state_dir / "pki" / "anchor.crt", err);
  if (!err.empty()) return {};
  auto certs = identity::certsFromPem(pem);
  return certs.ok() ? std::move(*certs) : std::vector<X509Ptr>{};
}

void checkDataPlane(Checker& c, const viz::LocalState& st, identity::SystemTime now) {
  const std::string g = "weft-data-plane";
  {
    const std::string desc = "data plane proxies are ready";
    std::string bad;
    for (const auto& pod : st.pods) {
      const std::string id = pod.ns + "/" + pod.name;
      if (pod.admin.empty()) {
        bad += (bad.empty() ? "" : "; ") + id + ": no admin address";
        continue;
      }
      auto rsp = viz::httpGet(pod.admin, "/ready", std::chrono::seconds(3));
      if (!rsp.ok()) {
        bad +=
            (bad.empty() ? "" : "; ") + id + ": " + rsp.error().message() + pidNote(pod.proxy_pid);
      } else if (rsp->status != 200) {
        bad += (bad.empty() ? "" : "; ") + id + ": /ready answered " + std::to_string(rsp->status);
      }
    }
    if (!bad.empty()) {
      c.fail(g, "proxies-ready", desc, bad);
    } else {
      c.pass(g, "proxies-ready", desc, std::to_string(st.pods.size()) + " proxies");
    }
  }
  {
    const std::string desc = "data plane proxies hold a certificate from the current trust bundle";
    auto anchors = readAnchors(st.dir);
    std::vector<X509*> roots;
    for (const auto& a : anchors) roots.push_back(a.get());
    std::string bad;
    std::string no_identity;
    for (const auto& pod : st.pods) {
      const std::string id = pod.ns + "/" + pod.name;
      if (pod.identity.empty()) {
        no_identity += (no_identity.empty() ? "" : ", ") + id;
        continue;
      }
      if (roots.empty()) {
        bad = "no readable trust anchors (see anchors-readable)";
        break;
      }
      auto chain = viz::fetchPeerChain(pod.inbound, pod.identity);
      if (!chain.ok()) {
        bad +=
            (bad.empty() ? "" : "; ") + id + " (" + pod.inbound + "): " + chain.error().message();
        continue;
      }
      X509* leaf = chain->certs.front().get();
      std::vector<X509*> intermediates;
      for (std::size_t i = 1; i < chain->certs.size(); ++i) {
        intermediates.push_back(chain->certs[i].get());
      }
      auto verified = identity::verifyChain(leaf, intermediates, roots, now);
      if (!verified.ok()) {
        bad += (bad.empty() ? "" : "; ") + id + ": its certificate does not verify against " +
               (st.dir / "pki" / "anchor.crt").string() + ": " + verified.error().message();
      } else if (!identity::hasDnsSan(leaf, pod.identity)) {
        bad += (bad.empty() ? "" : "; ") + id + ": its certificate is not for " + pod.identity;
      }
    }
    if (!bad.empty()) {
      c.fail(g, "proxies-certificate", desc, bad);
    } else if (!no_identity.empty()) {
      c.warn(g, "proxies-certificate", desc, "running without identity: " + no_identity);
    } else {
      c.pass(g, "proxies-certificate", desc);
    }
  }
}

// --- weft-viz -----------------------------------------------------------------------------------

void checkViz(Checker& c, const viz::LocalState& st, const CheckFlags& f) {
  const std::string g = "weft-viz";
  const std::string url = f.prometheus_url.empty() ? st.prometheus.address : f.prometheus_url;
  const std::string desc = "Prometheus is reachable";
  if (url.empty()) {
    c.fail(g, "prometheus-reachable", desc, "run/local.json names no prometheus.address");
    return;
  }
  auto prom = viz::PrometheusClient::create(url);
  if (!prom.ok()) {
    c.fail(g, "prometheus-reachable", desc, prom.error().message());
    return;
  }
  if (auto ready = prom->ready(); !ready.ok()) {
    c.fail(g, "prometheus-reachable", desc, ready.error().context + pidNote(st.prometheus.pid));
    return;
  }
  c.pass(g, "prometheus-reachable", desc, prom->url());

  const std::string desc2 = "Prometheus is scraping every proxy";
  auto up = prom->query("up{job=" + viz::promQuote(kProxyJob) + "}");
  if (!up.ok()) {
    c.fail(g, "prometheus-scraping", desc2, up.error().context);
    return;
  }
  std::map<std::pair<std::string, std::string>, double> seen;
  for (const auto& s : *up) seen[{s.label("namespace"), s.label("pod")}] = s.value;
  std::string bad;
  for (const auto& pod : st.pods) {
    auto it = seen.find({pod.ns, pod.name});
    const std::string id = pod.ns + "/" + pod.name;
    if (it == seen.end()) {
      bad += (bad.empty() ? "" : "; ") + id + " is not a target of job " + kProxyJob;
    } else if (it->second != 1) {
      bad += (bad.empty() ? "" : "; ") + id + ": its last scrape failed (up=0)";
    }
  }
  if (!bad.empty()) {
    c.fail(g, "prometheus-scraping", desc2, bad);
  } else {
    c.pass(g, "prometheus-scraping", desc2, std::to_string(st.pods.size()) + " targets up");
  }
}

// --- output -------------------------------------------------------------------------------------

const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::kPass:
      return "pass";
    case Outcome::kWarn:
      return "warn";
    case Outcome::kFail:
      return "fail";
  }
  return "";
}

void printTable(const std::vector<CheckResult>& results) {
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto mark = [&](Outcome o) -> std::string {
    switch (o) {
      case Outcome::kPass:
        return tty ? "\u2714" : "ok  ";
      case Outcome::kWarn:
        return tty ? "\u203C" : "warn";
      case Outcome::kFail:
        return tty ? "\u00D7" : "FAIL";
    }
    return "";
  };
  std::string group;
  int failed = 0, warned = 0;
  for (const auto& r : results) {
    if (r.group != group) {
      if (!group.empty()) std::cout << "\n";
      group = r.group;
      std::cout << group << "\n" << std::string(group.size(), '-') << "\n";
    }
    std::cout << mark(r.outcome) << " " << r.description << "\n";
    if (r.outcome != Outcome::kPass) {
      std::cout << "    " << r.message << "\n    see " << kDocs << r.name << " for hints\n";
      (r.outcome == Outcome::kFail ? failed : warned)++;
    }
  }
  std::cout << "\nStatus check results are "
            << (failed ? std::string(tty ? "\u00D7" : "FAIL") + " (" + std::to_string(failed) +
                             " failed" +
                             (warned ? ", " + std::to_string(warned) + " warning(s)" : "") + ")"
                       : std::string(tty ? "\u2714" : "ok") +
                             (warned ? " (" + std::to_string(warned) + " warning(s))" : ""))
            << "\n";
}

void runCheck(const CheckFlags& f) {
  Checker c;
  const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  const fs::path dir = viz::resolveStateDir(f.state_dir);

  auto st = viz::readLocalState(dir);
  const std::string desc = "local mode is up (run/local.json is readable)";
  if (!st.ok()) {
    c.fail("weft-local", "local-state", desc,
           st.error().context + (st.error().kind == "not_found"
                                     ? "; run `weft local up` (state directory " + dir.string() +
                                           ", set with --state-dir or WEFT_STATE_DIR)"
                                     : ""));
  } else {
    c.pass("weft-local", "local-state", desc, dir.string());
  }
  checkIdentity(c, dir, now);
  if (st.ok()) {
    checkReady(c, "weft-control-plane", "identity-ready", "identity service is ready",
               "the identity service", st->identity.admin, st->identity.pid);
    checkReady(c, "weft-control-plane", "destination-ready", "destination service is ready",
               "the destination service", st->destination.admin, st->destination.pid);
    checkDataPlane(c, *st, now);
    checkViz(c, *st, f);
  }

  const auto& results = c.results();
  bool failed = false;
  for (const auto& r : results) failed = failed || r.outcome == Outcome::kFail;
  if (f.output == "json") {
    auto out = nlohmann::json::array();
    for (const auto& r : results) {
      out.push_back({{"group", r.group},
                     {"name", r.name},
                     {"description", r.description},
                     {"status", outcomeName(r.outcome)},
                     {"message", r.message},
                     {"hint", r.outcome == Outcome::kPass ? "" : std::string(kDocs) + r.name}});
    }
    std::cout << out.dump(2) << "\n";
  } else {
    printTable(results);
  }
  if (failed) exitWith(kExitFailed);
}

}  // namespace

void addCheckCommand(CLI::App& app) {
  auto flags = std::make_shared<CheckFlags>();
  auto* cmd = app.add_subcommand(
      "check",
      "check that the local mesh is healthy: control plane, certificates, proxies, Prometheus");
  cmd->add_option("--state-dir", flags->state_dir,
                  "local mode's state directory (default: $WEFT_STATE_DIR, else /var/lib/weft "
                  "as root, ~/.weft otherwise)");
  cmd->add_option("--prometheus-url", flags->prometheus_url,
                  "the Prometheus to check (default: prometheus.address of run/local.json)");
  addOutputOption(cmd, flags->output);
  cmd->footer(
      "Each check links to its section of docs/checks.md. Exit status 1 when a check "
      "failed (warnings alone exit 0).");
  cmd->callback([flags] { runCheck(*flags); });
}

}  // namespace weft::cli
