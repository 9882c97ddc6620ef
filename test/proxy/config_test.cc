#include "proxy/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace weft::proxy {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  Result<LoadedConfig> load() {
    std::vector<std::string> names;
    for (const auto& [k, v] : env_) names.push_back(k);
    return loadConfig(
        [this](const char* n) -> const char* {
          auto it = env_.find(n);
          return it == env_.end() ? nullptr : it->second.c_str();
        },
        names);
  }
  std::map<std::string, std::string> env_;
};

TEST_F(ConfigTest, DefaultsMatchTheSpec) {
  env_ = {{"WEFT_PROXY_IDENTITY_DISABLED", "1"}};
  auto c = load().value().config;
  EXPECT_EQ(c.inbound_listen.toString(), "0.0.0.0:4143");
  EXPECT_EQ(c.outbound_listen.toString(), "127.0.0.1:4140");
  EXPECT_EQ(c.admin_listen.toString(), "0.0.0.0:4191");
  EXPECT_EQ(c.control_listen.toString(), "0.0.0.0:4190");
  EXPECT_EQ(c.detect_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c.opaque_ports.toString(), "25,587,3306,4444,5432,6379,9300,11211");
  EXPECT_EQ(c.cores, 1);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.shutdown_grace_period, std::chrono::seconds(120));
  EXPECT_FALSE(c.inbound_target.has_value());
}

TEST_F(ConfigTest, ReadsEveryDocumentedVariable) {
  env_ = {{"WEFT_PROXY_INBOUND_LISTEN_ADDR", "[::]:5143"},
          {"WEFT_PROXY_DETECT_TIMEOUT", "500ms"},
          {"WEFT_PROXY_OPAQUE_PORTS", "1000-1010,22"},
          {"WEFT_PROXY_CORES", "2"},
          {"WEFT_PROXY_LOG", "debug"},
          {"WEFT_PROXY_SHUTDOWN_GRACE_PERIOD", "2m"},
          {"WEFT_PROXY_OUTBOUND_TARGET_ADDR", "127.0.0.1:9000"},
          {"WEFT_PROXY_IDENTITY_DISABLED", "1"}};
  auto c = load().value().config;
  EXPECT_EQ(c.inbound_listen.toString(), "[::]:5143");
  EXPECT_EQ(c.detect_timeout, std::chrono::milliseconds(500));
  EXPECT_TRUE(c.opaque_ports.contains(1005));
  EXPECT_FALSE(c.opaque_ports.contains(25));
  EXPECT_EQ(c.cores, 2);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.shutdown_grace_period, std::chrono::minutes(2));
  EXPECT_EQ(c.outbound_target->toString(), "127.0.0.1:9000");
  EXPECT_TRUE(c.identity_disabled);
}

TEST_F(ConfigTest, BadValuesNameTheVariableAndTheAcceptedForm) {
  struct Case {
    const char* var;
    const char* value;
    const char* form;
  };
  for (auto [var, value, form] : {Case{"WEFT_PROXY_DETECT_TIMEOUT", "10", "500ms"},
                                  Case{"WEFT_PROXY_DETECT_TIMEOUT", "0s", "greater than 0"},
                                  Case{"WEFT_PROXY_OPAQUE_PORTS", "0", "8000-8010"},
                                  Case{"WEFT_PROXY_CORES", "many", "1 to 256"},
                                  Case{"WEFT_PROXY_LOG", "loud", "trace, debug"},
                                  Case{"WEFT_PROXY_ADMIN_LISTEN_ADDR", "4191", "IPv4:PORT"},
                                  Case{"WEFT_PROXY_IDENTITY_DISABLED", "perhaps", "true/false"}}) {
    env_ = {{"WEFT_PROXY_IDENTITY_DISABLED", "1"}, {var, value}};
    if (std::string(var) == "WEFT_PROXY_IDENTITY_DISABLED") env_ = {{var, value}};
    auto c = load();
    ASSERT_FALSE(c.ok()) << var << "=" << value;
    EXPECT_THAT(c.error().context, HasSubstr(var));
    EXPECT_THAT(c.error().context, HasSubstr(form));
  }
}

TEST_F(ConfigTest, WarnsAboutUnknownProxyVariables) {
  env_ = {{"WEFT_PROXY_DETECT_TIMOUT", "1s"}, {"HOME", "/root"}, {"WEFT_PROXY_IDENTITY_DISABLED", "1"}};
  auto loaded = load().value();
  ASSERT_EQ(loaded.warnings.size(), 1U);
  EXPECT_THAT(loaded.warnings[0], HasSubstr("WEFT_PROXY_DETECT_TIMOUT"));
}

TEST_F(ConfigTest, IdentityIsRequiredUnlessDisabledAndNamesTheMissingVariable) {
  auto c = load();
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.error().context, HasSubstr("WEFT_PROXY_IDENTITY_SVC_ADDR"));
  EXPECT_THAT(c.error().context, HasSubstr("WEFT_PROXY_IDENTITY_DISABLED=1"));
  env_ = {{"WEFT_PROXY_IDENTITY_SVC_ADDR", "127.0.0.1:8080"},
          {"WEFT_PROXY_IDENTITY_LOCAL_NAME", "web.default.serviceaccount.identity.weft.cluster.local"},
          {"WEFT_PROXY_IDENTITY_TOKEN_FILE", "/var/run/weft/token"}};
  c = load();
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.error().context, HasSubstr("WEFT_PROXY_IDENTITY_TRUST_ANCHORS"));
  env_["WEFT_PROXY_IDENTITY_TRUST_ANCHORS"] = "-----BEGIN CERTIFICATE-----...";
  auto ok = load().value().config;
  EXPECT_EQ(ok.identity_svc_name, "identity.weft.serviceaccount.identity.weft.cluster.local");
  EXPECT_EQ(ok.identity_min_refresh, std::chrono::seconds(10));
}

}  // namespace
}  // namespace weft::proxy
