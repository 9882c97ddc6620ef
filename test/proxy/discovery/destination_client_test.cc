// The proxy's hand-written decoding of weft.destination.v1.Update, checked against messages the
// generated protobuf code (what weft-controller sends) encodes.
#include "proxy/discovery/destination_client.h"

#include <gtest/gtest.h>

#include <string>

#include "weft/v1/destination.pb.h"

namespace weft::proxy {
namespace {

namespace v1 = weft::destination::v1;
using asio::ip::make_address;
using asio::ip::tcp;

void setAddr(v1::TcpAddress* out, const std::string& ip, uint32_t port) {
  const auto a = make_address(ip);
  if (a.is_v4()) {
    out->mutable_ip()->set_ipv4(a.to_v4().to_uint());
  } else {
    const auto b = a.to_v6().to_bytes();
    out->mutable_ip()->set_ipv6(std::string(b.begin(), b.end()));
  }
  out->set_port(port);
}

v1::WeightedAddr* addEndpoint(v1::Update& u, const std::string& ip, uint32_t port) {
  auto* w = u.mutable_add()->add_addrs();
  setAddr(w->mutable_addr(), ip, port);
  w->set_weight(10000);
  return w;
}

std::string added(std::initializer_list<std::string> ips) {
  v1::Update u;
  for (const auto& ip : ips) addEndpoint(u, ip, 7001);
  return u.SerializeAsString();
}

std::string removed(std::initializer_list<std::string> ips) {
  v1::Update u;
  for (const auto& ip : ips) setAddr(u.mutable_remove()->add_addrs(), ip, 7001);
  return u.SerializeAsString();
}

std::string label(const DiscoveredEndpoint& e, const std::string& name) {
  for (const auto& [k, v] : e.labels) {
    if (k == name) return v;
  }
  return "<absent>";
}

TEST(DestinationUpdate, AddCarriesAddressesIdentityLabelsAndTheInboundPort) {
  v1::Update u;
  (*u.mutable_add()->mutable_metric_labels())["dst_namespace"] = "default";
  (*u.mutable_add()->mutable_metric_labels())["dst_service"] = "books";
  auto* b1 = addEndpoint(u, "10.88.0.2", 7001);
  (*b1->mutable_metric_labels())["dst_pod"] = "b1";
  b1->mutable_tls_identity()->mutable_dns_like_identity()->set_name("books.default.serviceaccount.identity.weft.cluster.local");
  b1->mutable_protocol_hint()->mutable_opaque_transport()->set_inbound_port(4143);
  auto* b2 = addEndpoint(u, "fd00:88::3", 7001);
  b2->set_weight(5000);
  (*b2->mutable_metric_labels())["dst_service"] = "books-v2";  // the address's label wins
  u.mutable_service()->set_opaque(true);

  Discovery d;
  ASSERT_TRUE(applyUpdate(u.SerializeAsString(), d));
  EXPECT_TRUE(d.exists);
  EXPECT_TRUE(d.opaque);
  ASSERT_EQ(d.endpoints.size(), 2u);
  const auto& e1 = d.endpoints[0];
  EXPECT_EQ(e1.addr, tcp::endpoint(make_address("10.88.0.2"), 7001));
  EXPECT_EQ(e1.identity, "books.default.serviceaccount.identity.weft.cluster.local");
  EXPECT_EQ(e1.inbound_port, 4143);
  EXPECT_EQ(e1.weight, 10000u);
  EXPECT_EQ(label(e1, "dst_namespace"), "default");
  EXPECT_EQ(label(e1, "dst_service"), "books");
  EXPECT_EQ(label(e1, "dst_pod"), "b1");
  const auto& e2 = d.endpoints[1];
  EXPECT_EQ(e2.addr, tcp::endpoint(make_address("fd00:88::3"), 7001));
  EXPECT_EQ(e2.identity, "");
  EXPECT_EQ(e2.inbound_port, 0);
  EXPECT_EQ(e2.weight, 5000u);
  EXPECT_EQ(label(e2, "dst_service"), "books-v2");
  EXPECT_EQ(label(e2, "dst_pod"), "<absent>");
}

TEST(DestinationUpdate, RemoveAndNoEndpoints) {
  Discovery d;
  ASSERT_TRUE(applyUpdate(added({"10.88.0.2", "10.88.0.3", "10.88.0.4"}), d));
  ASSERT_TRUE(applyUpdate(removed({"10.88.0.3", "10.88.0.9"}), d));  // an unknown address is no error
  ASSERT_EQ(d.endpoints.size(), 2u);
  EXPECT_EQ(d.endpoints[0].addr.address(), make_address("10.88.0.2"));
  EXPECT_EQ(d.endpoints[1].addr.address(), make_address("10.88.0.4"));

  v1::Update none;
  none.mutable_no_endpoints()->set_exists(true);
  ASSERT_TRUE(applyUpdate(none.SerializeAsString(), d));
  EXPECT_TRUE(d.exists);
  EXPECT_TRUE(d.endpoints.empty());

  none.mutable_no_endpoints()->set_exists(false);
  ASSERT_TRUE(applyUpdate(none.SerializeAsString(), d));
  EXPECT_FALSE(d.exists);
}

// `since` is what tells the balancer an endpoint is new: kept while the address stays in the set
// (an Add with new labels is the same endpoint), reset when it leaves and comes back.
TEST(DestinationUpdate, AnAddressKeepsItsSinceUntilItIsRemoved) {
  Discovery d;
  ASSERT_TRUE(applyUpdate(added({"10.88.0.2", "10.88.0.3"}), d));
  ASSERT_EQ(d.endpoints.size(), 2u);
  EXPECT_EQ(d.endpoints[0].since, 0u);  // new: stamped when published
  d.endpoints[0].since = 5;
  d.endpoints[1].since = 6;

  v1::Update relabel;
  auto* w = addEndpoint(relabel, "10.88.0.2", 7001);
  (*w->mutable_metric_labels())["dst_pod"] = "b1-renamed";
  ASSERT_TRUE(applyUpdate(relabel.SerializeAsString(), d));
  ASSERT_EQ(d.endpoints.size(), 2u);
  EXPECT_EQ(d.endpoints[0].since, 5u);
  EXPECT_EQ(label(d.endpoints[0], "dst_pod"), "b1-renamed");

  ASSERT_TRUE(applyUpdate(removed({"10.88.0.2"}), d));
  ASSERT_TRUE(applyUpdate(added({"10.88.0.2"}), d));
  ASSERT_EQ(d.endpoints.size(), 2u);
  EXPECT_EQ(d.endpoints[0].addr.address(), make_address("10.88.0.3"));
  EXPECT_EQ(d.endpoints[0].since, 6u);
  EXPECT_EQ(d.endpoints[1].addr.address(), make_address("10.88.0.2"));
  EXPECT_EQ(d.endpoints[1].since, 0u);
}

// A reconnected stream's first answer is the whole set: an address removed while the stream was
// down must go (it used to linger for good), and the ones still there keep their `since`.
TEST(DestinationUpdate, TheFirstUpdateOfAStreamReplacesTheSet) {
  Discovery d;
  ASSERT_TRUE(applyUpdate(added({"10.88.0.2", "10.88.0.3"}), d));
  d.endpoints[0].since = 5;
  d.endpoints[1].since = 6;

  ASSERT_TRUE(applyFirstUpdate(added({"10.88.0.3", "10.88.0.4"}), d));
  ASSERT_EQ(d.endpoints.size(), 2u);
  EXPECT_EQ(d.endpoints[0].addr.address(), make_address("10.88.0.3"));
  EXPECT_EQ(d.endpoints[0].since, 6u);
  EXPECT_EQ(d.endpoints[1].addr.address(), make_address("10.88.0.4"));
  EXPECT_EQ(d.endpoints[1].since, 0u);

  const Discovery before = d;
  EXPECT_FALSE(applyFirstUpdate("\x0a\x05\x0a", d));  // truncated: the state is left as it was
  ASSERT_EQ(d.endpoints.size(), before.endpoints.size());
  EXPECT_EQ(d.endpoints[0].addr, before.endpoints[0].addr);
}

TEST(DestinationUpdate, MalformedUpdatesAreRejected) {
  Discovery d;
  EXPECT_FALSE(applyUpdate(std::string("\x0a\x05\x0a", 3), d));  // length past the end

  v1::Update no_port;
  setAddr(no_port.mutable_add()->add_addrs()->mutable_addr(), "10.88.0.2", 0);
  EXPECT_FALSE(applyUpdate(no_port.SerializeAsString(), d));

  v1::Update short_v6;
  short_v6.mutable_add()->add_addrs()->mutable_addr()->mutable_ip()->set_ipv6("\x01\x02");
  short_v6.mutable_add()->mutable_addrs(0)->mutable_addr()->set_port(80);
  EXPECT_FALSE(applyUpdate(short_v6.SerializeAsString(), d));

  // Unknown fields (a newer controller) are skipped, as protobuf does.
  std::string future = added({"10.88.0.2"});
  future += std::string("\xa0\x06\x01", 3);  // field 100, varint 1
  Discovery f;
  ASSERT_TRUE(applyUpdate(future, f));
  EXPECT_EQ(f.endpoints.size(), 1u);
}

TEST(DestinationUpdate, GetDestinationRequestDecodesWithProtobuf) {
  v1::GetDestination g;
  ASSERT_TRUE(g.ParseFromString(encodeGetDestination("10.96.0.20:80")));
  EXPECT_EQ(g.scheme(), "k8s");
  EXPECT_EQ(g.path(), "10.96.0.20:80");
}

}  // namespace
}  // namespace weft::proxy
