// The destination service in-process, on 127.0.0.1:0, over a LocalRegistry in a temporary
// directory (polled every 20 ms), called by a real grpc++ client that streams Get.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "control/destination/registry.h"
#include "control/destination/service.h"
#include "weft/metrics/registry.h"
#include "weft/v1/destination.grpc.pb.h"

namespace weft::control::destination {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::weft::destination::v1;
using json = nlohmann::json;
using ::testing::ElementsAre;

// Bounded wait for a condition another thread makes true (STYLE §6: never a bare sleep).
bool waitFor(const std::function<bool()>& done,
             std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string ipv4(uint32_t v) {
  return std::to_string(v >> 24) + "." + std::to_string((v >> 16) & 0xff) + "." +
         std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
}

std::string addr(const v1::TcpAddress& a) {
  return ipv4(a.ip().ipv4()) + ":" + std::to_string(a.port());
}

std::vector<std::string> addrs(const v1::WeightedAddrSet& set) {
  std::vector<std::string> out;
  for (const auto& a : set.addrs()) out.push_back(addr(a.addr()));
  return out;
}

class DestinationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "weft-dst-it-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    write("services/default/web.json",
          json{{"ports", json::array({{{"name", "http"}, {"port", 80}, {"targetPort", 8080}},
                                      {{"name", "db"}, {"port", 5432}, {"protocol", "opaque"}}})},
               {"selector", {{"app", "web"}}}});
    write("services/default/empty.json",
          json{{"ports", json::array({{{"port", 80}}})}, {"selector", {{"app", "none"}}}});
    write("workloads/default/web-0.json",
          json{{"labels", {{"app", "web"}}},
               {"serviceAccount", "web"},
               {"deployment", "web"},
               {"ip", "10.0.0.10"},
               {"meshed", true},
               {"inboundPort", 4143}});
    write("workloads/default/legacy-0.json",
          json{{"labels", {{"app", "web"}}}, {"ip", "10.0.0.11"}, {"meshed", false}});

    source_ = std::make_unique<LocalRegistry>(
        LocalRegistry::Options{dir_.string(), std::chrono::milliseconds(20)});
    source_->start();
    DestinationController::Options options;
    options.listen = "127.0.0.1:0";
    options.service.cancel_check = std::chrono::milliseconds(20);
    auto controller = DestinationController::start(options, *source_, registry_);
    ASSERT_TRUE(controller.ok()) << controller.error().message();
    controller_ = std::move(controller).value();
    ASSERT_GT(controller_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(controller_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Destination::NewStub(channel_);
  }

  void TearDown() override {
    if (controller_) controller_->shutdown(std::chrono::milliseconds(0));
    if (source_) source_->stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Atomically, as `weft local` is expected to write (null deletes).
  void write(const std::string& rel, const json& content) {
    fs::path p = dir_ / "registry" / rel;
    if (content.is_null()) {
      fs::remove(p);
      return;
    }
    fs::create_directories(p.parent_path());
    fs::path tmp = p;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << content.dump();
    }
    fs::rename(tmp, p);
  }

  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::Update>> reader;
  };
  std::unique_ptr<Stream> get(const std::string& path) {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::GetDestination request;
    request.set_scheme("k8s");
    request.set_path(path);
    s->reader = stub_->Get(&s->context, request);
    return s;
  }

  fs::path dir_;
  metrics::Registry registry_;
  std::unique_ptr<LocalRegistry> source_;
  std::unique_ptr<DestinationController> controller_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Destination::Stub> stub_;
};

TEST_F(DestinationServiceTest, FirstMessageIsTheFullSetWithIdentityHintsAndLabels) {
  auto s = get("web.default.svc.cluster.local:80");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add());
  EXPECT_THAT(addrs(u.add()), ElementsAre("10.0.0.10:8080", "10.0.0.11:8080"));
  EXPECT_EQ(u.add().metric_labels().at("dst_namespace"), "default");
  EXPECT_EQ(u.add().metric_labels().at("dst_service"), "web");
  EXPECT_EQ(u.service().fqdn(), "web.default.svc.cluster.local");
  EXPECT_THAT(u.service().opaque_ports(), ElementsAre(5432u));
  EXPECT_FALSE(u.service().opaque());

  const auto& meshed = u.add().addrs(0);
  EXPECT_EQ(meshed.weight(), 10000u);
  EXPECT_EQ(meshed.tls_identity().dns_like_identity().name(),
            "web.default.serviceaccount.identity.weft.cluster.local");
  EXPECT_TRUE(meshed.protocol_hint().has_h2());
  EXPECT_FALSE(meshed.protocol_hint().has_opaque_transport());
  EXPECT_EQ(meshed.metric_labels().at("dst_pod"), "web-0");
  EXPECT_EQ(meshed.metric_labels().at("dst_serviceaccount"), "web");
  EXPECT_EQ(meshed.metric_labels().at("dst_deployment"), "web");

  const auto& plain = u.add().addrs(1);
  EXPECT_FALSE(plain.has_tls_identity());
  EXPECT_FALSE(plain.has_protocol_hint());
  EXPECT_EQ(plain.metric_labels().at("dst_pod"), "legacy-0");
  EXPECT_EQ(controller_->metricsForTest().lookupsForTest("found"), 1u);
}

TEST_F(DestinationServiceTest, OpaquePortHintsOpaqueTransportToTheInboundPort) {
  auto s = get("web.default:5432");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add());
  EXPECT_TRUE(u.service().opaque());
  const auto& meshed = u.add().addrs(0);
  EXPECT_EQ(addr(meshed.addr()), "10.0.0.10:5432");
  EXPECT_TRUE(meshed.protocol_hint().has_opaque());
  EXPECT_EQ(meshed.protocol_hint().opaque_transport().inbound_port(), 4143u);
}

TEST_F(DestinationServiceTest, IpTargetResolvesToTheWorkload) {
  auto s = get("10.0.0.10:8080");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add());
  EXPECT_THAT(addrs(u.add()), ElementsAre("10.0.0.10:8080"));
  EXPECT_TRUE(u.add().metric_labels().empty());
  EXPECT_EQ(u.add().addrs(0).metric_labels().at("dst_namespace"), "default");
  EXPECT_EQ(u.add().addrs(0).metric_labels().at("dst_pod"), "web-0");
  EXPECT_EQ(u.service().fqdn(), "");
}

TEST_F(DestinationServiceTest, StreamsAddAndRemoveAsWorkloadFilesChange) {
  auto s = get("web.default.svc.cluster.local:80");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add());

  write("workloads/default/web-1.json",
        json{{"labels", {{"app", "web"}}}, {"serviceAccount", "web"}, {"ip", "10.0.0.12"},
             {"meshed", true}});
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add()) << u.DebugString();
  EXPECT_THAT(addrs(u.add()), ElementsAre("10.0.0.12:8080"));
  EXPECT_EQ(u.add().metric_labels().at("dst_service"), "web");
  EXPECT_FALSE(u.has_service());  // unchanged

  write("workloads/default/legacy-0.json", nullptr);
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_remove()) << u.DebugString();
  ASSERT_EQ(u.remove().addrs_size(), 1);
  EXPECT_EQ(addr(u.remove().addrs(0)), "10.0.0.11:8080");

  // The last two go at once: the set is empty, said as no_endpoints{exists: true}.
  write("workloads/default/web-0.json", nullptr);
  write("workloads/default/web-1.json", nullptr);
  // They may be seen by one poll or two; the stream ends with an empty set either way.
  for (;;) {
    ASSERT_TRUE(s->reader->Read(&u));
    if (u.has_no_endpoints()) break;
    ASSERT_TRUE(u.has_remove()) << u.DebugString();
  }
  EXPECT_TRUE(u.no_endpoints().exists());
  // Counted after each Write returns, which may be after the client has read it.
  EXPECT_TRUE(waitFor([&] { return controller_->metricsForTest().updatesForTest() >= 4u; }));
}

TEST_F(DestinationServiceTest, KnownServiceWithoutEndpointsSaysSoAndStaysOpen) {
  auto s = get("empty.default:80");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_no_endpoints());
  EXPECT_TRUE(u.no_endpoints().exists());
  write("workloads/default/none-0.json", json{{"labels", {{"app", "none"}}}, {"ip", "10.0.0.20"}});
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_add());
  EXPECT_THAT(addrs(u.add()), ElementsAre("10.0.0.20:80"));
}

TEST_F(DestinationServiceTest, UnknownServiceFailsFastWithNotFound) {
  const auto started = std::chrono::steady_clock::now();
  auto s = get("nothing.default.svc.cluster.local:80");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  ASSERT_TRUE(u.has_no_endpoints());
  EXPECT_FALSE(u.no_endpoints().exists());
  EXPECT_FALSE(s->reader->Read(&u));
  grpc::Status status = s->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("nothing.default"));
  // "Fast": no waiting for the registry to change its mind.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_EQ(source_->subscriptions(), 0u);
  EXPECT_EQ(controller_->metricsForTest().lookupsForTest("not_found"), 1u);
}

TEST_F(DestinationServiceTest, UnknownIpAndServicePortFailWithNotFound) {
  for (const char* path : {"10.9.9.9:80", "web.default:81"}) {
    SCOPED_TRACE(path);
    auto s = get(path);
    v1::Update u;
    while (s->reader->Read(&u)) {
    }
    EXPECT_EQ(s->reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(DestinationServiceTest, MalformedTargetIsInvalidArgument) {
  auto s = get("web.default");
  v1::Update u;
  EXPECT_FALSE(s->reader->Read(&u));
  grpc::Status status = s->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("port is missing"));
  EXPECT_EQ(controller_->metricsForTest().lookupsForTest("invalid_target"), 1u);
}

TEST_F(DestinationServiceTest, CancellationReleasesTheSubscription) {
  auto a = get("web.default:80");
  auto b = get("10.0.0.10:8080");
  v1::Update u;
  ASSERT_TRUE(a->reader->Read(&u));
  ASSERT_TRUE(b->reader->Read(&u));
  EXPECT_EQ(source_->subscriptions(), 2u);
  EXPECT_EQ(controller_->metricsForTest().streamsForTest(), 2);

  a->context.TryCancel();
  EXPECT_EQ(a->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(waitFor([&] { return source_->subscriptions() == 1u; }));
  EXPECT_TRUE(waitFor([&] { return controller_->metricsForTest().streamsForTest() == 1; }));

  // The other stream is unaffected.
  write("workloads/default/web-0.json",
        json{{"labels", {{"app", "web"}}}, {"ip", "10.0.0.10"}, {"meshed", true},
             {"inboundPort", 4243}});
  ASSERT_TRUE(b->reader->Read(&u));
  ASSERT_TRUE(u.has_add());
  EXPECT_EQ(addr(u.add().addrs(0).addr()), "10.0.0.10:8080");
  b->context.TryCancel();
  b->reader->Finish();
  EXPECT_TRUE(waitFor([&] { return source_->subscriptions() == 0u; }));
}

TEST_F(DestinationServiceTest, ShutdownEndsOpenStreams) {
  auto s = get("web.default:80");
  v1::Update u;
  ASSERT_TRUE(s->reader->Read(&u));
  controller_->shutdown(std::chrono::seconds(2));
  EXPECT_FALSE(controller_->ready());
  while (s->reader->Read(&u)) {
  }
  EXPECT_NE(s->reader->Finish().error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(source_->subscriptions(), 0u);
}

}  // namespace
}  // namespace weft::control::destination
