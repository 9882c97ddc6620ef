#include "cli/viz/local_state.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace weft::cli::viz {

std::filesystem::path resolveStateDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("WEFT_STATE_DIR"); env != nullptr && *env != '\0') return env;
  if (geteuid() == 0) return "/var/lib/weft";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr && *home != '\0' ? home : ".") / ".weft";
}

namespace {

LocalComponent component(const nlohmann::json& doc, const char* key) {
  LocalComponent c;
  if (!doc.contains(key) || !doc.at(key).is_object()) return c;
  const auto& j = doc.at(key);
  c.address = j.value("address", "");
  c.admin = j.value("admin", "");
  c.pid = j.value("pid", 0);
  return c;
}

}  // namespace

Result<LocalState> readLocalState(const std::filesystem::path& dir) {
  const auto path = dir / "run" / "local.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error::internal("not_found", path.string() + " does not exist");
  }
  std::ifstream in(path);
  if (!in) return Error::internal("unreadable", "cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error::internal("malformed", path.string() + " is not a JSON object");
  }
  LocalState st;
  st.dir = dir;
  try {
    st.root = doc.value("root", false);
    st.identity = component(doc, "identity");
    st.destination = component(doc, "destination");
    st.prometheus = component(doc, "prometheus");
    st.trust_domain = doc.value("trustDomain", st.trust_domain);
    st.control_plane_namespace = doc.value("controlPlaneNamespace", st.control_plane_namespace);
    if (doc.contains("pods")) {
      for (const auto& p : doc.at("pods")) {
        LocalPod pod;
        pod.ns = p.value("namespace", "default");
        pod.name = p.at("name").get<std::string>();
        pod.deployment = p.value("deployment", "");
        pod.service_account = p.value("serviceAccount", "default");
        pod.ip = p.value("ip", "");
        pod.admin = p.value("admin", "");
        pod.identity = p.value("identity", "");
        pod.inbound = p.value("inbound", "");
        if (pod.inbound.empty() && !pod.ip.empty()) {
          pod.inbound =
              (pod.ip.find(':') != std::string::npos ? "[" + pod.ip + "]" : pod.ip) + ":4143";
        }
        pod.proxy_pid = p.value("proxyPid", 0);
        st.pods.push_back(std::move(pod));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return Error::internal("malformed", path.string() + ": " + e.what());
  }
  return st;
}

}  // namespace weft::cli::viz
