// The YAML `weft local run -f` reads (docs/local.md "YAML"): a small subset of the Kubernetes
// Namespace, Service and Deployment objects, several per file separated by `---`.
//
// Everything not in the subset is an error, not ignored: a typo must never silently change what
// runs. Each error names the file, the 1-based line and the field path, e.g.
//   app.yaml:14: spec.template.spec.containers[0].command: required
// Parsing is pure (no I/O besides what the caller passes in) and thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::cli::local {

using Labels = std::map<std::string, std::string>;

struct NamespaceObject {
  std::string name;
  std::string file;
  int line = 0;
};

struct ServicePort {
  std::string name;          // may be empty when the service has one port
  uint16_t port = 0;         // what clients dial on the clusterIP
  uint16_t target_port = 0;  // the pods' port; defaults to `port`
  bool opaque = false;       // appProtocol: opaque
};

struct ServiceObject {
  std::string ns = "default";
  std::string name;
  Labels labels;
  Labels selector;
  std::vector<ServicePort> ports;
  std::string file;
  int line = 0;
};

struct EnvVar {
  std::string name;
  std::string value;
};

struct DeploymentObject {
  std::string ns = "default";
  std::string name;
  Labels labels;
  Labels annotations;
  int replicas = 1;
  Labels pod_labels;       // spec.template.metadata.labels
  Labels pod_annotations;  // spec.template.metadata.annotations
  std::string service_account = "default";
  std::string container;             // containers[0].name
  std::vector<std::string> command;  // containers[0].command followed by .args
  std::vector<EnvVar> env;
  std::vector<uint16_t> container_ports;  // containers[0].ports[].containerPort
  // config.weft.io/opaque-ports of the pod template or, failing that, the Deployment, as given
  // (validated as a port list); empty when absent.
  std::string opaque_ports;
  std::string file;
  int line = 0;
};

struct Manifest {
  std::vector<NamespaceObject> namespaces;
  std::vector<ServiceObject> services;
  std::vector<DeploymentObject> deployments;
};

struct ParseResult {
  Manifest manifest;
  // "file:line: field.path: what is wrong", in document order. Non-empty means the manifest
  // must not be applied (it holds whatever parsed).
  std::vector<std::string> errors;
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

// Parses `text`, read from `file` (used only in messages). Objects of several calls may be
// merged by the caller; duplicates across calls are its business (see checkDuplicates).
ParseResult parseManifest(std::string_view text, const std::string& file);

// Errors for objects declared twice (same kind, namespace and name) across `m`.
std::vector<std::string> checkDuplicates(const Manifest& m);

// A DNS-1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric.
bool isDnsLabel(std::string_view s);

// Parses a proxy port list ("25,587,8000-8010"); false when it is not one.
bool parsePortList(std::string_view text, std::vector<std::pair<uint16_t, uint16_t>>* out);

}  // namespace weft::cli::local
