#include "weft/metrics/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace weft::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using std::chrono::minutes;
using std::chrono::steady_clock;

TEST(Registry, RendersCountersWithHelpTypeAndLabelsInOrder) {
  Registry r;
  auto& f = r.counter("tcp_open_total", "Total count of opened connections");
  f.get({{"direction", "inbound"}, {"peer", "src"}})->inc(3);
  EXPECT_EQ(r.render(),
            "# HELP tcp_open_total Total count of opened connections\n"
            "# TYPE tcp_open_total counter\n"
            "tcp_open_total{direction=\"inbound\",peer=\"src\"} 3\n");
}

TEST(Registry, SameLabelsShareOneSeries) {
  Registry r;
  auto& f = r.counter("c", "h");
  f.get({{"a", "1"}})->inc();
  f.get({{"a", "1"}})->inc();
  EXPECT_THAT(r.render(), HasSubstr("c{a=\"1\"} 2\n"));
}

TEST(Registry, EscapesLabelValues) {
  Registry r;
  r.gauge("g", "h").get({{"v", "a\"b\\c\nd"}})->set(-2);
  EXPECT_THAT(r.render(), HasSubstr("g{v=\"a\\\"b\\\\c\\nd\"} -2\n"));
}

TEST(Registry, HistogramUsesLinkerdLatencyBucketsCumulatively) {
  Registry r;
  auto h = r.histogram("response_latency_ms", "h", latencyBucketsMs()).get({{"direction", "outbound"}});
  h->observe(0.5);
  h->observe(3);
  h->observe(7);
  h->observe(60000);
  auto out = r.render();
  EXPECT_THAT(out, HasSubstr("response_latency_ms_bucket{direction=\"outbound\",le=\"1\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_bucket{direction=\"outbound\",le=\"3\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_bucket{direction=\"outbound\",le=\"10\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_bucket{direction=\"outbound\",le=\"50000\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_bucket{direction=\"outbound\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_count{direction=\"outbound\"} 4\n"));
  EXPECT_THAT(out, HasSubstr("response_latency_ms_sum{direction=\"outbound\"} 60010.5\n"));
  EXPECT_EQ(latencyBucketsMs().size(), 25U);
}

TEST(Registry, DropsSeriesIdleForTenMinutesUnlessHeld) {
  Registry r(minutes(10));
  auto& f = r.counter("c", "h");
  auto t0 = steady_clock::now();
  f.get({{"k", "idle"}}, t0)->inc();
  auto held = f.get({{"k", "held"}}, t0);
  held->inc();
  EXPECT_THAT(r.render(t0 + minutes(9)), HasSubstr("k=\"idle\""));
  auto later = r.render(t0 + minutes(11));
  EXPECT_THAT(later, Not(HasSubstr("k=\"idle\"")));
  EXPECT_THAT(later, HasSubstr("c{k=\"held\"} 1"));
  EXPECT_EQ(f.sizeForTest(), 1U);
}

TEST(Registry, FamilyWithNoSeriesRendersNothing) {
  Registry r;
  r.counter("never_used", "h");
  EXPECT_EQ(r.render(), "");
}

TEST(ProcessMetrics, ReportsCpuMemoryAndFds) {
  std::string out;
  renderProcessMetrics(out);
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_open_fds ", "process_max_fds ", "process_start_time_seconds ",
                           "process_virtual_memory_bytes "}) {
    EXPECT_THAT(out, HasSubstr(std::string("\n") + name)) << name;
  }
}

}  // namespace
}  // namespace weft::metrics
