#include "weft/iptables/exec.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <string>

namespace weft::iptables {
namespace {

using std::chrono::milliseconds;

class RunCommandTest : public ::testing::Test {
 protected:
  // runCommand()'s precondition, as in weft-init's main.
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }
};

TEST_F(RunCommandTest, FeedsStdinAndCapturesStdout) {
  // Larger than a pipe buffer both ways, so feeding and draining must interleave.
  std::string input(1 << 20, 'x');
  auto r = runCommand({"cat"}, input, milliseconds(10'000));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
  EXPECT_EQ(r->out, input);
  EXPECT_TRUE(r->err.empty());
}

TEST_F(RunCommandTest, ReportsExitStatusAndStderrWithoutAShell) {
  auto r = runCommand({"sh", "-c", "echo oops >&2; exit 3"}, "", milliseconds(10'000));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->exit_status, 3);
  EXPECT_EQ(r->err, "oops\n");
  // Arguments are passed as they are: no word splitting or globbing.
  auto echo = runCommand({"echo", "a  b", "*"}, "", milliseconds(10'000));
  ASSERT_TRUE(echo.ok());
  EXPECT_EQ(echo->out, "a  b *\n");
}

TEST_F(RunCommandTest, ChildThatIgnoresItsInputDoesNotHurtUs) {
  auto r = runCommand({"true"}, std::string(1 << 20, 'x'), milliseconds(10'000));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
}

TEST_F(RunCommandTest, MissingProgramIsNotFound) {
  auto r = runCommand({"weft-no-such-program-xyz"}, "", milliseconds(10'000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "not_found");
  EXPECT_EQ(r.error().sys_errno, ENOENT);
}

TEST_F(RunCommandTest, KillsAProgramThatOverrunsItsTimeout) {
  auto r = runCommand({"sleep", "30"}, "", milliseconds(200));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "timeout");
}

TEST(HasEffectiveCapability, ReadsBitsOfCapEff) {
  constexpr std::string_view kRoot =
      "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n"
      "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
  constexpr std::string_view kNobody = "Name:\tcat\nCapEff:\t0000000000000000\n";
  constexpr std::string_view kOnlyNetAdmin = "CapEff:\t0000000000001000\n";
  EXPECT_TRUE(hasEffectiveCapability(kRoot, 12).value());
  EXPECT_FALSE(hasEffectiveCapability(kNobody, 12).value());
  EXPECT_TRUE(hasEffectiveCapability(kOnlyNetAdmin, 12).value());
  EXPECT_FALSE(hasEffectiveCapability(kOnlyNetAdmin, 13).value());
  EXPECT_FALSE(hasEffectiveCapability("Name:\tcat\n", 12).ok());
  EXPECT_FALSE(hasEffectiveCapability("CapEff:\tzz\n", 12).ok());
}

}  // namespace
}  // namespace weft::iptables
