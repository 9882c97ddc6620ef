// The local registry, table-driven: each fixtures/*.json is one table (see its "description"):
//   "parse":   [{text, target | error}]              parseTarget
//   "files":   {relative path: object | raw string}  written to a temporary <state>/registry
//   "skipped": ["<path>: <reason prefix>"]            the files refused, with why
//   "resolve": [{target, exists, endpoints, details, opaque, opaque_ports}]
//   "watch":   {target, initial, steps: [{files (null deletes), added, removed, exists,
//               service_changed | none, unchanged}]} diffs pushed to a subscriber after poll()
// Each table is a test suite instantiated with the fixtures that have that table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "control/destination/registry.h"

namespace weft::control::destination {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::ElementsAreArray;
using ::testing::StartsWith;

constexpr const char* kClusterDomain = "cluster.local";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "weft-dst-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

json loadFixture(const std::string& name) {
  std::ifstream in(fs::path(WEFT_DESTINATION_FIXTURES) / name);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return json::parse(bytes.str());
}

// Writes (or, for null, deletes) each file under <state>/registry, atomically as `weft local`
// is expected to (write a temporary, rename).
void writeFiles(const fs::path& state, const json& files) {
  for (const auto& [rel, content] : files.items()) {
    fs::path p = state / "registry" / rel;
    if (content.is_null()) {
      fs::remove(p);
      continue;
    }
    fs::create_directories(p.parent_path());
    fs::path tmp = p;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << (content.is_string() ? content.get<std::string>() : content.dump());
    }
    fs::rename(tmp, p);
  }
}

std::vector<std::string> addresses(const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> out;
  for (const auto& e : endpoints) out.push_back(e.address());
  return out;
}

std::vector<std::string> strings(const json& j) {
  std::vector<std::string> out;
  for (const auto& v : j) out.push_back(v.get<std::string>());
  return out;
}

Target mustParse(const std::string& text) {
  auto t = parseTarget(text, kClusterDomain);
  EXPECT_TRUE(t.ok()) << text << ": " << t.error().message();
  return t.ok() ? *t : Target{};
}

// The fixtures that have `table`.
std::vector<std::string> fixturesWith(const std::string& table) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(WEFT_DESTINATION_FIXTURES)) {
    if (entry.path().extension() != ".json") continue;
    std::string name = entry.path().filename().string();
    if (table.empty() || loadFixture(name).contains(table)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fixtureTestName(const ::testing::TestParamInfo<std::string>& param) {
  return fs::path(param.param).stem().string();
}

class RegistryFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fixture_ = loadFixture(GetParam());
    if (fixture_.contains("files")) writeFiles(dir_.path(), fixture_["files"]);
  }

  json fixture_;
  TempDir dir_;
};

using ParseTable = RegistryFixtureTest;
TEST_P(ParseTable, ParsesTargets) {
  for (const auto& c : fixture_["parse"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    auto t = parseTarget(text, kClusterDomain);
    if (c.contains("error")) {
      ASSERT_FALSE(t.ok());
      EXPECT_EQ(t.error().kind, "invalid_target");
      EXPECT_THAT(t.error().context, ::testing::HasSubstr(c["error"].get<std::string>()));
      continue;
    }
    ASSERT_TRUE(t.ok()) << t.error().message();
    const auto& want = c["target"];
    if (want["kind"] == "service") {
      EXPECT_EQ(t->kind, Target::Kind::kService);
      EXPECT_EQ(t->name, want["name"]);
      EXPECT_EQ(t->ns, want["ns"]);
    } else {
      EXPECT_EQ(t->kind, Target::Kind::kIp);
      EXPECT_EQ(t->ip, want["ip"]);
    }
    EXPECT_EQ(t->port, want["port"].get<int>());
    // The canonical form parses back to the same target.
    auto again = parseTarget(t->toString(kClusterDomain), kClusterDomain);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *t);
  }
}

using FilesTable = RegistryFixtureTest;
TEST_P(FilesTable, SkipsFilesThatDoNotParseAndSaysWhy) {
  auto state = loadRegistry((dir_.path() / "registry").string());
  if (!fixture_.contains("skipped")) {
    EXPECT_THAT(state.errors, ::testing::IsEmpty());
    return;
  }
  auto want = strings(fixture_["skipped"]);
  ASSERT_EQ(state.errors.size(), want.size()) << ::testing::PrintToString(state.errors);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_THAT(state.errors[i], StartsWith(want[i]));
}

using ResolveTable = RegistryFixtureTest;
TEST_P(ResolveTable, ResolvesTargets) {
  LocalRegistry registry({dir_.path().string()});
  for (const auto& c : fixture_["resolve"]) {
    const std::string text = c["target"];
    SCOPED_TRACE(text);
    Target target = mustParse(text);
    auto sub = registry.subscribe(target, [](const EndpointDiff&) {});
    if (!c["exists"].get<bool>()) {
      // Fails fast, registering nothing.
      ASSERT_FALSE(sub.ok());
      EXPECT_EQ(sub.error().kind, "not_found");
      EXPECT_EQ(registry.subscriptions(), 0u);
      continue;
    }
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    registry.unsubscribe(sub->id);
    const Resolution& r = sub->initial;
    EXPECT_TRUE(r.exists);
    EXPECT_THAT(addresses(r.endpoints), ElementsAreArray(strings(c["endpoints"])));
    if (c.contains("opaque")) {
      EXPECT_EQ(r.service.opaque, c["opaque"].get<bool>());
    }
    if (c.contains("opaque_ports")) {
      std::vector<uint16_t> want;
      for (const auto& p : c["opaque_ports"]) want.push_back(p.get<uint16_t>());
      EXPECT_THAT(r.service.opaque_ports, ElementsAreArray(want));
    }
    if (!c.contains("details")) continue;
    for (const auto& [key, want] : c["details"].items()) {
      SCOPED_TRACE(key);
      const std::string addr = key;  // a lambda may not capture a structured binding (clang 14)
      auto e = std::find_if(r.endpoints.begin(), r.endpoints.end(),
                            [&](const Endpoint& x) { return x.address() == addr; });
      ASSERT_NE(e, r.endpoints.end());
      if (want.contains("ns")) {
        EXPECT_EQ(e->ns, want["ns"]);
      }
      if (want.contains("pod")) {
        EXPECT_EQ(e->pod, want["pod"]);
      }
      if (want.contains("serviceAccount")) {
        EXPECT_EQ(e->service_account, want["serviceAccount"]);
      }
      if (want.contains("deployment")) {
        EXPECT_EQ(e->deployment, want["deployment"]);
      }
      if (want.contains("meshed")) {
        EXPECT_EQ(e->meshed, want["meshed"].get<bool>());
      }
      if (want.contains("inboundPort")) {
        EXPECT_EQ(e->inbound_port, want["inboundPort"].get<int>());
      }
      if (want.contains("opaque")) {
        EXPECT_EQ(e->opaque, want["opaque"].get<bool>());
      }
    }
  }
}

using WatchTable = RegistryFixtureTest;
TEST_P(WatchTable, PushesDiffsOnChange) {
  const auto& watch = fixture_["watch"];
  LocalRegistry registry({dir_.path().string()});
  std::vector<EndpointDiff> heard;
  auto sub = registry.subscribe(mustParse(watch["target"]),
                                [&](const EndpointDiff& d) { heard.push_back(d); });
  ASSERT_TRUE(sub.ok()) << sub.error().message();
  EXPECT_THAT(addresses(sub->initial.endpoints), ElementsAreArray(strings(watch["initial"])));
  for (const auto& step : watch["steps"]) {
    SCOPED_TRACE(step["description"].get<std::string>());
    heard.clear();
    writeFiles(dir_.path(), step["files"]);
    EXPECT_EQ(registry.poll(), !step.value("unchanged", false));
    if (step.value("none", false)) {
      EXPECT_THAT(heard, ::testing::IsEmpty());
      continue;
    }
    ASSERT_EQ(heard.size(), 1u);
    const EndpointDiff& d = heard.front();
    EXPECT_EQ(d.exists, step["exists"].get<bool>());
    EXPECT_THAT(addresses(d.added), ElementsAreArray(strings(step["added"])));
    EXPECT_THAT(addresses(d.removed), ElementsAreArray(strings(step["removed"])));
    EXPECT_EQ(d.service.has_value(), step.value("service_changed", false));
  }
  // Nothing changed since the last step: a poll finds nothing.
  heard.clear();
  EXPECT_FALSE(registry.poll());
  EXPECT_THAT(heard, ::testing::IsEmpty());
  // After unsubscribe, changes are not pushed.
  registry.unsubscribe(sub->id);
  writeFiles(dir_.path(), json{{"workloads/default/late.json",
                                json{{"labels", {{"app", "web"}}}, {"ip", "10.0.0.99"}}}});
  EXPECT_TRUE(registry.poll());
  EXPECT_THAT(heard, ::testing::IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParseTable, ::testing::ValuesIn(fixturesWith("parse")),
                         fixtureTestName);
INSTANTIATE_TEST_SUITE_P(Fixtures, FilesTable, ::testing::ValuesIn(fixturesWith("files")),
                         fixtureTestName);
INSTANTIATE_TEST_SUITE_P(Fixtures, ResolveTable, ::testing::ValuesIn(fixturesWith("resolve")),
                         fixtureTestName);
INSTANTIATE_TEST_SUITE_P(Fixtures, WatchTable, ::testing::ValuesIn(fixturesWith("watch")),
                         fixtureTestName);

// --- behaviours outside the tables --------------------------------------------------------------

TEST(LocalRegistryTest, MissingDirectoryIsAnEmptyRegistryThatMayAppearLater) {
  TempDir dir;
  LocalRegistry registry({(dir.path() / "not-yet").string()});
  EXPECT_FALSE(registry.subscribe(mustParse("web.default:80"), [](const EndpointDiff&) {}).ok());
  writeFiles(dir.path() / "not-yet",
             json{{"services/default/web.json", json{{"ports", json::array({{{"port", 80}}})}}}});
  EXPECT_TRUE(registry.poll());
  EXPECT_TRUE(registry.subscribe(mustParse("web.default:80"), [](const EndpointDiff&) {}).ok());
}

TEST(LocalRegistryTest, WatchThreadPushesChangesWithinAFewPolls) {
  TempDir dir;
  writeFiles(dir.path(), json{{"services/default/web.json",
                               json{{"ports", json::array({{{"port", 80}}})},
                                    {"selector", {{"app", "web"}}}}}});
  LocalRegistry registry({dir.path().string(), std::chrono::milliseconds(10)});
  std::atomic<int> heard{0};
  auto sub = registry.subscribe(mustParse("web.default:80"), [&](const EndpointDiff& d) {
    if (d.added.size() == 1) heard.fetch_add(1);
  });
  ASSERT_TRUE(sub.ok());
  registry.start();
  writeFiles(dir.path(), json{{"workloads/default/web-0.json",
                               json{{"labels", {{"app", "web"}}}, {"ip", "10.0.0.1"}}}});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (heard.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(heard.load(), 1);
  registry.unsubscribe(sub->id);
  registry.stop();
}

TEST(DiffTest, ExistenceChangeAloneIsNotEmpty) {
  Resolution before;
  Resolution after;
  after.exists = true;
  auto d = diffResolutions(before, after);
  EXPECT_FALSE(d.empty());
  EXPECT_TRUE(d.existence_changed);
  EXPECT_TRUE(diffResolutions(after, after).empty());
}

}  // namespace
}  // namespace weft::control::destination
