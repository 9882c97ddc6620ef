#include "weft/grpc/wire.h"

#include <gtest/gtest.h>

#include "weft/tls/transport_header.h"
#include "weft/v1/identity.pb.h"

namespace weft::grpc::wire {
namespace {

TEST(Wire, RequestEncodedByHandParsesWithTheGeneratedCode) {
  std::string req;
  putBytes(req, 1, "web.default.serviceaccount.identity.weft.cluster.local");
  putBytes(req, 2, std::string("tok\0en", 6));
  putBytes(req, 3, std::string(300, '\x30'));  // a length needing a two-byte varint
  weft::identity::v1::CertifyRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(req));
  EXPECT_EQ(parsed.identity(), "web.default.serviceaccount.identity.weft.cluster.local");
  EXPECT_EQ(parsed.token(), std::string("tok\0en", 6));
  EXPECT_EQ(parsed.certificate_signing_request(), std::string(300, '\x30'));
}

TEST(Wire, ResponseFromTheGeneratedCodeDecodesByHand) {
  weft::identity::v1::CertifyResponse rsp;
  rsp.set_leaf_certificate("leaf-der");
  rsp.add_intermediate_certificates("issuer-der");
  rsp.add_intermediate_certificates("second");
  rsp.mutable_valid_until()->set_seconds(1'800'000'000);
  rsp.mutable_valid_until()->set_nanos(5);
  std::string wire = rsp.SerializeAsString();
  std::string leaf;
  std::vector<std::string> inter;
  uint64_t seconds = 0;
  ASSERT_TRUE(forEachField(wire, [&](const Field& f) {
    if (f.number == 1) leaf = f.bytes;
    if (f.number == 2) inter.emplace_back(f.bytes);
    if (f.number == 3) {
      return forEachField(f.bytes, [&](const Field& g) {
        if (g.number == 1) seconds = g.varint;
        return true;
      });
    }
    return true;
  }));
  EXPECT_EQ(leaf, "leaf-der");
  EXPECT_EQ(inter, (std::vector<std::string>{"issuer-der", "second"}));
  EXPECT_EQ(seconds, 1'800'000'000U);
}

TEST(Wire, RefusesTruncatedAndMalformedInput) {
  std::string ok;
  putBytes(ok, 1, "abc");
  auto accept = [](const Field&) { return true; };
  for (std::size_t cut = 1; cut < ok.size(); ++cut) {
    EXPECT_FALSE(forEachField(ok.substr(0, cut), accept)) << cut;
  }
  EXPECT_FALSE(forEachField(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12), accept));
  EXPECT_FALSE(forEachField(std::string("\x00\x01", 2), accept));  // field number 0
  EXPECT_FALSE(forEachField(std::string("\x0b", 1), accept));      // group (wire type 3)
  EXPECT_TRUE(forEachField("", accept));
}

TEST(TransportHeader, RoundTripsAndRefusesAnythingElse) {
  auto h = tls::makeTransportHeader(7025);
  EXPECT_EQ(tls::parseTransportHeader(h), (tls::TransportHeader{7025, 0}));
  auto h2 = tls::makeTransportHeader(8080, tls::kTransportH2);
  ASSERT_TRUE(tls::parseTransportHeader(h2).has_value());
  EXPECT_TRUE(tls::parseTransportHeader(h2)->h2());
  EXPECT_EQ(tls::parseTransportHeader(h2)->port, 8080);
  auto unknown_flag = h;
  unknown_flag[5] = 2;
  EXPECT_FALSE(tls::parseTransportHeader(unknown_flag).has_value());
  auto bad = h;
  bad[0] = 'X';
  EXPECT_FALSE(tls::parseTransportHeader(bad).has_value());
  auto zero = tls::makeTransportHeader(0);
  EXPECT_FALSE(tls::parseTransportHeader(zero).has_value());
  auto v2 = h;
  v2[4] = 2;
  EXPECT_FALSE(tls::parseTransportHeader(v2).has_value());
}

}  // namespace
}  // namespace weft::grpc::wire
