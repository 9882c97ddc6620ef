// The YAML subset of `weft local run -f` (docs/local.md "YAML"): valid documents and every error,
// each of which must name the file, the line and the field path.
#include "cli/local/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace weft::cli::local {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kValid = R"(apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: books
  namespace: demo
  labels: {app: books}
spec:
  selector: {app: books}
  ports:
    - name: grpc
      port: 9090
      targetPort: 9091
      appProtocol: opaque
    - name: http
      port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: books
  namespace: demo
  annotations:
    config.weft.io/opaque-ports: "6379"
spec:
  replicas: 2
  selector:
    matchLabels: {app: books}
  template:
    metadata:
      labels: {app: books}
    spec:
      serviceAccountName: books
      containers:
        - name: books
          command: ["/usr/bin/books", "--port", "9090"]
          args: ["-v"]
          env: [{name: FAIL_RATE, value: "0.1"}, {name: EMPTY}]
          ports: [{containerPort: 9091}]
---
)";

ParseResult parse(const std::string& text) { return parseManifest(text, "app.yaml"); }

// The single error of `text`, which must have exactly one.
std::string onlyError(const std::string& text) {
  ParseResult r = parse(text);
  EXPECT_EQ(r.errors.size(), 1u) << ::testing::PrintToString(r.errors);
  return r.errors.empty() ? std::string() : r.errors.front();
}

std::string deployment(const std::string& container_extra, const std::string& spec_extra = "") {
  return "apiVersion: apps/v1\n"  // 1
         "kind: Deployment\n"     // 2
         "metadata:\n"            // 3
         "  name: web\n"          // 4
         "spec:\n" +              // 5
         spec_extra +
         "  template:\n"
         "    metadata:\n"
         "      labels: {app: web}\n"
         "    spec:\n"
         "      containers:\n"
         "        - name: web\n" +
         container_extra;
}

TEST(LocalManifestTest, ParsesEveryFieldOfTheSubset) {
  ParseResult r = parse(kValid);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  ASSERT_EQ(r.manifest.namespaces.size(), 1u);
  EXPECT_EQ(r.manifest.namespaces[0].name, "demo");

  ASSERT_EQ(r.manifest.services.size(), 1u);
  const ServiceObject& s = r.manifest.services[0];
  EXPECT_EQ(s.ns, "demo");
  EXPECT_EQ(s.name, "books");
  EXPECT_EQ(s.line, 6);
  EXPECT_EQ(s.selector, (Labels{{"app", "books"}}));
  ASSERT_EQ(s.ports.size(), 2u);
  EXPECT_EQ(s.ports[0].port, 9090);
  EXPECT_EQ(s.ports[0].target_port, 9091);
  EXPECT_TRUE(s.ports[0].opaque);
  EXPECT_EQ(s.ports[1].target_port, 80);  // defaults to port
  EXPECT_FALSE(s.ports[1].opaque);

  ASSERT_EQ(r.manifest.deployments.size(), 1u);
  const DeploymentObject& d = r.manifest.deployments[0];
  EXPECT_EQ(d.ns, "demo");
  EXPECT_EQ(d.replicas, 2);
  EXPECT_EQ(d.service_account, "books");
  EXPECT_EQ(d.container, "books");
  EXPECT_THAT(d.command, ElementsAre("/usr/bin/books", "--port", "9090", "-v"));
  ASSERT_EQ(d.env.size(), 2u);
  EXPECT_EQ(d.env[0].name, "FAIL_RATE");
  EXPECT_EQ(d.env[0].value, "0.1");
  EXPECT_EQ(d.env[1].value, "");
  EXPECT_EQ(d.opaque_ports, "6379");
  EXPECT_THAT(d.container_ports, ElementsAre(9091));
  EXPECT_EQ(d.pod_labels, (Labels{{"app", "books"}}));
}

TEST(LocalManifestTest, AppliesDefaults) {
  ParseResult r = parse(deployment("          command: [sleep, \"10\"]\n"));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  const DeploymentObject& d = r.manifest.deployments.at(0);
  EXPECT_EQ(d.ns, "default");
  EXPECT_EQ(d.replicas, 1);
  EXPECT_EQ(d.service_account, "default");
  EXPECT_EQ(d.opaque_ports, "");
}

TEST(LocalManifestTest, UnknownFieldNamesItsPathAndLine) {
  EXPECT_EQ(onlyError(deployment("          command: [sleep]\n          imagee: x\n")),
            "app.yaml:13: spec.template.spec.containers[0].imagee: unknown field");
}

TEST(LocalManifestTest, MissingCommandIsRequired) {
  EXPECT_EQ(onlyError(deployment("")),
            "app.yaml:11: spec.template.spec.containers[0].command: required");
}

TEST(LocalManifestTest, EmptyCommand) {
  EXPECT_THAT(
      onlyError(deployment("          command: []\n")),
      HasSubstr("app.yaml:12: spec.template.spec.containers[0].command: must not be empty"));
}

TEST(LocalManifestTest, ReplicasMustBeAnInteger) {
  EXPECT_EQ(onlyError(deployment("          command: [x]\n", "  replicas: two\n")),
            "app.yaml:6: spec.replicas: must be an integer, not \"two\"");
  EXPECT_THAT(onlyError(deployment("          command: [x]\n", "  replicas: 1000\n")),
              HasSubstr("app.yaml:6: spec.replicas: 1000 is out of range"));
}

TEST(LocalManifestTest, SelectorMustMatchTemplateLabels) {
  EXPECT_THAT(onlyError(deployment("          command: [x]\n",
                                   "  selector:\n    matchLabels: {app: other}\n")),
              HasSubstr("app.yaml:7: spec.selector.matchLabels: selects app=other"));
}

TEST(LocalManifestTest, ExactlyOneContainer) {
  const std::string two =
      deployment("          command: [x]\n        - name: b\n          command: [y]\n");
  EXPECT_THAT(onlyError(two), HasSubstr("app.yaml:11: spec.template.spec.containers: must be a "
                                        "list of exactly one container"));
}

TEST(LocalManifestTest, BadOpaquePortsAnnotation) {
  const std::string text =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
      "  annotations:\n    config.weft.io/opaque-ports: \"abc\"\n"
      "spec:\n  template:\n    metadata:\n      labels: {a: b}\n"
      "    spec:\n      containers: [{name: w, command: [x]}]\n";
  EXPECT_THAT(onlyError(text),
              HasSubstr("app.yaml:6: metadata.annotations.config.weft.io/opaque-ports: \"abc\" "
                        "is not a port list"));
}

TEST(LocalManifestTest, MissingTemplateLabels) {
  const std::string text =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
      "spec:\n  template:\n    spec:\n      containers: [{name: w, command: [x]}]\n";
  EXPECT_THAT(onlyError(text), HasSubstr("app.yaml:7: spec.template.metadata.labels: required"));
}

std::string service(const std::string& ports) {
  return "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n"
         "  ports:\n" +
         ports;
}

TEST(LocalManifestTest, ServicePortOutOfRange) {
  EXPECT_EQ(onlyError(service("    - port: 70000\n")),
            "app.yaml:8: spec.ports[0].port: 70000 is out of range 1..65535");
}

TEST(LocalManifestTest, ServicePortQuotedIsNotAnInteger) {
  EXPECT_EQ(onlyError(service("    - port: \"80\"\n")),
            "app.yaml:8: spec.ports[0].port: must be an integer");
}

TEST(LocalManifestTest, ServicePortRequired) {
  EXPECT_EQ(onlyError(service("    - name: http\n")), "app.yaml:8: spec.ports[0].port: required");
}

TEST(LocalManifestTest, NamedTargetPortUnsupported) {
  EXPECT_THAT(onlyError(service("    - port: 80\n      targetPort: http\n")),
              HasSubstr("app.yaml:9: spec.ports[0].targetPort: named target ports are not "
                        "supported"));
}

TEST(LocalManifestTest, SeveralPortsNeedNames) {
  EXPECT_EQ(onlyError(service("    - port: 80\n    - name: b\n      port: 81\n")),
            "app.yaml:8: spec.ports[0].name: required when a service has several ports");
}

TEST(LocalManifestTest, DuplicatePort) {
  EXPECT_EQ(onlyError(service("    - {name: a, port: 80}\n    - {name: b, port: 80}\n")),
            "app.yaml:9: spec.ports[1].port: port 80 is listed twice");
}

TEST(LocalManifestTest, UdpRefused) {
  EXPECT_THAT(onlyError(service("    - port: 53\n      protocol: UDP\n")),
              HasSubstr("app.yaml:9: spec.ports[0].protocol: only TCP"));
}

TEST(LocalManifestTest, ServiceTypeMustBeClusterIP) {
  const std::string text =
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n"
      "  type: NodePort\n  ports: [{port: 80}]\n";
  EXPECT_THAT(onlyError(text), HasSubstr("app.yaml:6: spec.type: only ClusterIP"));
}

TEST(LocalManifestTest, BadName) {
  const std::string text =
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: Web_1\nspec:\n"
      "  ports: [{port: 80}]\n";
  EXPECT_THAT(onlyError(text),
              HasSubstr("app.yaml:4: metadata.name: \"Web_1\" is not a DNS label"));
}

TEST(LocalManifestTest, MissingName) {
  const std::string text =
      "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\nspec:\n"
      "  ports: [{port: 80}]\n";
  EXPECT_EQ(onlyError(text), "app.yaml:4: metadata.name: required");
}

TEST(LocalManifestTest, UnsupportedKind) {
  EXPECT_EQ(onlyError("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
            "app.yaml:2: kind: \"ConfigMap\" is not supported in local mode (Namespace, Service, "
            "Deployment)");
}

TEST(LocalManifestTest, WrongApiVersion) {
  EXPECT_EQ(onlyError("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n"),
            "app.yaml:1: apiVersion: a Deployment is apps/v1, not \"v1\"");
}

TEST(LocalManifestTest, MissingKind) {
  EXPECT_EQ(onlyError("apiVersion: v1\nmetadata: {name: x}\n"), "app.yaml:1: kind: required");
}

TEST(LocalManifestTest, UnknownTopLevelField) {
  EXPECT_EQ(onlyError("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nstatus: {}\n"),
            "app.yaml:4: status: unknown field");
}

TEST(LocalManifestTest, SyntaxErrorNamesTheLine) {
  EXPECT_THAT(onlyError("apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n"),
              HasSubstr("app.yaml:"));
}

TEST(LocalManifestTest, EmptyFile) {
  EXPECT_EQ(onlyError(""), "app.yaml:1: no objects (expected Namespace, Service or Deployment)");
}

TEST(LocalManifestTest, EnvNeedsAName) {
  EXPECT_EQ(onlyError(deployment("          command: [x]\n          env: [{value: v}]\n")),
            "app.yaml:13: spec.template.spec.containers[0].env[0].name: required");
}

TEST(LocalManifestTest, ReportsEveryErrorNotOnlyTheFirst) {
  ParseResult r = parse(service("    - port: 0\n") + "---\napiVersion: v1\nkind: Nope\n");
  EXPECT_EQ(r.errors.size(), 2u) << ::testing::PrintToString(r.errors);
}

TEST(LocalManifestTest, DuplicatesAcrossFiles) {
  ParseResult a = parseManifest(service("    - port: 80\n"), "a.yaml");
  ParseResult b = parseManifest(service("    - port: 80\n"), "b.yaml");
  ASSERT_TRUE(a.ok() && b.ok());
  Manifest m = a.manifest;
  m.services.push_back(b.manifest.services.at(0));
  EXPECT_THAT(checkDuplicates(m),
              ElementsAre("b.yaml:1: metadata.name: Service default/web is already declared at "
                          "a.yaml:1"));
}

TEST(LocalManifestTest, PortList) {
  std::vector<std::pair<uint16_t, uint16_t>> out;
  EXPECT_TRUE(parsePortList("25,587,8000-8010", &out));
  EXPECT_EQ(out.size(), 3u);
  EXPECT_FALSE(parsePortList("", &out));
  EXPECT_FALSE(parsePortList("0", &out));
  EXPECT_FALSE(parsePortList("10-5", &out));
  EXPECT_FALSE(parsePortList("80,", &out));
}

}  // namespace
}  // namespace weft::cli::local
