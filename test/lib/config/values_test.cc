#include "weft/config/values.h"

#include <gtest/gtest.h>

namespace weft::config {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, AcceptsEveryUnitAndSums) {
  EXPECT_EQ(parseDuration("500ms").value(), milliseconds(500));
  EXPECT_EQ(parseDuration("10s").value(), milliseconds(10'000));
  EXPECT_EQ(parseDuration("2m").value(), milliseconds(120'000));
  EXPECT_EQ(parseDuration("1h").value(), milliseconds(3'600'000));
  EXPECT_EQ(parseDuration("1m30s").value(), milliseconds(90'000));
}

TEST(ParseDuration, RefusesMissingUnitAndGarbageWithTheAcceptedForm) {
  for (const char* bad : {"10", "", "s", "10x", "-1s", "1.5s", "99999999999999h"}) {
    auto d = parseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.error().context.find("500ms"), std::string::npos) << d.error().context;
  }
}

TEST(FormatDuration, RoundTrips) {
  EXPECT_EQ(formatDuration(milliseconds(120'000)), "2m");
  EXPECT_EQ(formatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(formatDuration(milliseconds(10'000)), "10s");
}

TEST(PortSet, ParsesListsAndRangesAndMergesThem) {
  auto set = PortSet::parse(" 25, 587,3306 , 8000-8010,8005-8020").value();
  EXPECT_TRUE(set.contains(25));
  EXPECT_TRUE(set.contains(8015));
  EXPECT_FALSE(set.contains(26));
  EXPECT_FALSE(set.contains(8021));
  EXPECT_EQ(set.toString(), "25,587,3306,8000-8020");
  EXPECT_TRUE(PortSet::parse("").value().empty());
}

TEST(PortSet, RefusesPortZeroOverflowReversedAndEmptyItems) {
  for (const char* bad : {"0", "65536", "10-5", "1,,2", "abc", "1-", "-3"}) {
    EXPECT_FALSE(PortSet::parse(bad).ok()) << bad;
  }
}

TEST(HostPort, ParsesV4AndBracketedV6) {
  auto v4 = parseHostPort("0.0.0.0:4143").value();
  EXPECT_EQ(v4.host, "0.0.0.0");
  EXPECT_EQ(v4.port, 4143);
  EXPECT_FALSE(v4.ipv6);
  auto v6 = parseHostPort("[::1]:4140").value();
  EXPECT_EQ(v6.host, "::1");
  EXPECT_TRUE(v6.ipv6);
  EXPECT_EQ(v6.toString(), "[::1]:4140");
}

TEST(HostPort, RefusesNamesAndMissingPorts) {
  for (const char* bad : {"localhost:80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:70000", "::1:80", "[::1]80"}) {
    EXPECT_FALSE(parseHostPort(bad).ok()) << bad;
  }
}

TEST(Subnet, ParsesBothFamilies) {
  auto subs = parseSubnets("10.0.0.0/8, fd00::/8").value();
  ASSERT_EQ(subs.size(), 2U);
  EXPECT_EQ(subs[0].toString(), "10.0.0.0/8");
  EXPECT_TRUE(subs[1].ipv6);
  EXPECT_FALSE(parseSubnet("10.0.0.0/33").ok());
  EXPECT_FALSE(parseSubnet("10.0.0.0").ok());
}

TEST(ParseBool, AcceptsCommonSpellings) {
  EXPECT_TRUE(parseBool("YES").value());
  EXPECT_FALSE(parseBool("0").value());
  EXPECT_FALSE(parseBool("maybe").ok());
}

}  // namespace
}  // namespace weft::config
