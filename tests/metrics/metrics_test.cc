// The metrics registry: values, histogram buckets, label vectors and the
// exact text exposition format (checked against promtool when installed).
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

namespace keel::metrics {
namespace {

TEST(Metrics, ExpositionIsPrometheusText) {
  Registry r;
  r.AddCounter("keel_test_events_total", "Events seen.").Inc(3);
  r.AddGauge("keel_test_level", "A level.").Set(-2.5);
  auto& vec = r.AddCounterVec("keel_test_requests_total", "Requests.",
                              {"method", "code"});
  vec.WithLabelValues({"Put", "OK"}).Inc();
  vec.WithLabelValues({"Put", "OK"}).Inc();
  vec.WithLabelValues({"Get", "a\"b\\c\nd"}).Inc();
  auto& h = r.AddHistogram("keel_test_seconds", "Latency\nwith a newline.",
                           {0.1, 0.2, 0.4});
  h.Observe(0.05);
  h.Observe(0.1);  // bounds are inclusive (le)
  h.Observe(0.3);
  h.Observe(7);
  r.AddGaugeFunc("keel_test_func", "Read at scrape time.", [] { return 1e9; });

  const std::string want =
      "# HELP keel_test_events_total Events seen.\n"
      "# TYPE keel_test_events_total counter\n"
      "keel_test_events_total 3\n"
      "# HELP keel_test_func Read at scrape time.\n"
      "# TYPE keel_test_func gauge\n"
      "keel_test_func 1e+09\n"
      "# HELP keel_test_level A level.\n"
      "# TYPE keel_test_level gauge\n"
      "keel_test_level -2.5\n"
      "# HELP keel_test_requests_total Requests.\n"
      "# TYPE keel_test_requests_total counter\n"
      "keel_test_requests_total{method=\"Get\",code=\"a\\\"b\\\\c\\nd\"} 1\n"
      "keel_test_requests_total{method=\"Put\",code=\"OK\"} 2\n"
      "# HELP keel_test_seconds Latency\\nwith a newline.\n"
      "# TYPE keel_test_seconds histogram\n"
      "keel_test_seconds_bucket{le=\"0.1\"} 2\n"
      "keel_test_seconds_bucket{le=\"0.2\"} 2\n"
      "keel_test_seconds_bucket{le=\"0.4\"} 3\n"
      "keel_test_seconds_bucket{le=\"+Inf\"} 4\n"
      "keel_test_seconds_sum 7.45\n"
      "keel_test_seconds_count 4\n";
  EXPECT_EQ(r.Expose(), want);
}

TEST(Metrics, EtcdBucketLayouts) {
  // etcd_disk_wal_fsync_duration_seconds: 1ms doubling, 14 buckets.
  auto b = ExponentialBuckets(0.001, 2, 14);
  ASSERT_EQ(b.size(), 14u);
  EXPECT_EQ(FormatValue(b.front()), "0.001");
  EXPECT_EQ(FormatValue(b[1]), "0.002");
  EXPECT_EQ(FormatValue(b.back()), "8.192");
  // etcd_network_peer_round_trip_time_seconds: 0.1ms doubling, 16.
  auto rtt = ExponentialBuckets(0.0001, 2, 16);
  EXPECT_EQ(FormatValue(rtt.back()), "3.2768");
  EXPECT_EQ(FormatValue(1.5e9), "1.5e+09");
}

TEST(Metrics, SameNameReturnsSameFamily) {
  Registry r;
  Counter& a = r.AddCounter("keel_x_total", "x");
  Counter& b = r.AddCounter("keel_x_total", "x");
  EXPECT_EQ(&a, &b);
  a.Inc();
  EXPECT_EQ(b.Value(), 1);
  EXPECT_DEATH(r.AddGauge("keel_x_total", "x"), "registered twice");
}

TEST(Metrics, EmptyVectorIsLeftOutAndRemovedChildrenVanish) {
  Registry r;
  auto& v = r.AddGaugeVec("keel_peer", "p", {"To"});
  EXPECT_EQ(r.Expose(), "");
  Gauge& g = v.WithLabelValues({"abc"});
  g.Set(1);
  EXPECT_NE(r.Expose().find("keel_peer{To=\"abc\"} 1"), std::string::npos);
  v.Remove({"abc"});
  g.Set(2);  // still a valid reference
  EXPECT_EQ(r.Expose(), "");
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  Counter& c = r.AddCounter("keel_c_total", "c");
  Histogram& h = r.AddHistogram("keel_h", "h", ExponentialBuckets(1, 2, 4));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; i++) {
        c.Inc();
        h.Observe(t);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000);
  Histogram::Snapshot s = h.Take();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_EQ(s.cumulative[0], 20000u);  // 0 and 1 are <= 1
  EXPECT_EQ(s.sum, 10000.0 * (0 + 1 + 2 + 3));
}

TEST(Metrics, ProcessMetricsAreRead) {
  // Burn 30 ms of CPU so that the CPU counter (10 ms ticks) has moved.
  volatile uint64_t x = 0;
  while (std::clock() < CLOCKS_PER_SEC * 3 / 100) x = x + 1;
  Registry r;
  RegisterProcessMetrics(r);
  std::string text = r.Expose();
  for (const char* name :
       {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
        "process_open_fds ", "process_max_fds ", "process_start_time_seconds ",
        "process_virtual_memory_bytes "}) {
    auto pos = text.find(std::string("\n") + name);
    ASSERT_NE(pos, std::string::npos) << name;
    double v = std::strtod(text.c_str() + pos + 1 + strlen(name), nullptr);
    EXPECT_GT(v, 0) << name;
  }
}

// promtool (Debian's prometheus package) parses and lints the exposition.
TEST(Metrics, PromtoolAcceptsExposition) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (scripts/setup.sh installs it)";
  }
  Registry r;
  RegisterProcessMetrics(r);
  r.AddHistogramVec("keel_test_rtt_seconds", "RTT.", {"To"},
                    ExponentialBuckets(0.0001, 2, 16))
      .WithLabelValues({"8e9e05c52164694d"})
      .Observe(0.002);
  r.AddCounterVec("keel_test_handled_total", "Handled.", {"code"})
      .WithLabelValues({"OK"})
      .Inc();
  std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << r.Expose();
  std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  int rc = pclose(p);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace keel::metrics
