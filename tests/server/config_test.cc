// Tests of flag parsing, validation and etcd's member/cluster ids.
#include "server/config.h"

#include <gtest/gtest.h>

namespace keel::server {
namespace {

Result<ServerConfig> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "keel");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return ParseFlags(static_cast<int>(argv.size()), argv.data());
}

TEST(ConfigTest, DefaultsAreEtcds) {
  auto c = Parse({});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "default");
  EXPECT_EQ(c->data_dir, "default.etcd");
  EXPECT_EQ(c->listen_client_urls[0].String(), "http://localhost:2379");
  EXPECT_EQ(c->initial_cluster.at("default")[0].String(),
            "http://localhost:2380");
  EXPECT_EQ(c->heartbeat_ms, 100);
  EXPECT_EQ(c->election_ms, 1000);
  EXPECT_EQ(c->max_request_bytes, 1572864u);
  EXPECT_EQ(c->max_txn_ops, 128u);
  EXPECT_EQ(c->QuotaBytes(), 2LL << 30);
  EXPECT_TRUE(c->pre_vote);
  EXPECT_TRUE(c->initial_election_tick_advance);
}

TEST(ConfigTest, MemberAndClusterIdsMatchEtcd) {
  // The ids etcd 3.x reports for a member started with no flags.
  auto urls = ParseUrls("http://localhost:2380");
  ASSERT_TRUE(urls.ok());
  uint64_t id = ComputeMemberId(*urls, "etcd-cluster");
  EXPECT_EQ(HexId(id), "8e9e05c52164694d");
  EXPECT_EQ(HexId(ComputeClusterId({id})), "cdf818194e3a8c32");
}

TEST(ConfigTest, InconsistentSettingsAreRefusedClearly) {
  auto c = Parse({"--heartbeat-interval", "300", "--election-timeout", "1000"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("at least as 5 times"),
            std::string::npos);
  c = Parse({"--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("couldn't find local name \"a\""),
            std::string::npos);
  c = Parse({"--initial-cluster-state", "sideways"});
  EXPECT_FALSE(c.ok());
  c = Parse({"--listen-client-urls", "localhost:2379"});
  EXPECT_FALSE(c.ok());
  c = Parse({"--no-such-flag"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("no-such-flag"), std::string::npos);
}

TEST(ConfigTest, EnvironmentVariablesAndThreeMembers) {
  setenv("ETCD_NAME", "infra2", 1);
  auto c = Parse({"--initial-advertise-peer-urls", "http://127.0.0.1:22380",
                  "--initial-cluster",
                  "infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,"
                  "infra3=http://127.0.0.1:32380",
                  "--pre-vote=false", "--initial-election-tick-advance=false"});
  unsetenv("ETCD_NAME");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "infra2");
  EXPECT_EQ(c->data_dir, "infra2.etcd");
  EXPECT_EQ(c->initial_cluster.size(), 3u);
  EXPECT_FALSE(c->pre_vote);
  EXPECT_FALSE(c->initial_election_tick_advance);
}

TEST(ConfigTest, UrlParsing) {
  auto u = ParseUrl("http://[::1]:2379");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->HostPort(), "[::1]:2379");
  EXPECT_FALSE(ParseUrl("http://host").ok());
  EXPECT_FALSE(ParseUrl("http://host:99999").ok());
  EXPECT_FALSE(ParseUrl("ftp://host:1").ok());
}

TEST(ConfigTest, WatchProgressNotifyIntervalIsAGoDuration) {
  EXPECT_EQ(ParseGoDurationMs("10m").value(), 600000);
  EXPECT_EQ(ParseGoDurationMs("1m30s").value(), 90000);
  EXPECT_EQ(ParseGoDurationMs("1.5s").value(), 1500);
  EXPECT_EQ(ParseGoDurationMs("200ms").value(), 200);
  EXPECT_EQ(ParseGoDurationMs("0").value(), 0);
  EXPECT_FALSE(ParseGoDurationMs("10").ok());
  EXPECT_FALSE(ParseGoDurationMs("5x").ok());
  EXPECT_FALSE(ParseGoDurationMs("").ok());
  auto c = Parse({"--experimental-watch-progress-notify-interval", "250ms"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->watch_progress_notify_interval_ms, 250);
  EXPECT_FALSE(
      Parse({"--experimental-watch-progress-notify-interval", "soon"}).ok());
}

TEST(ConfigTest, CommitNoticeDelay) {
  auto d = Parse({});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->commit_notice_delay_us, 1000);
  EXPECT_EQ(ParseGoDurationUs("250us").value(), 250);
  EXPECT_EQ(ParseGoDurationUs("2ms").value(), 2000);
  auto c = Parse({"--experimental-commit-notice-delay", "0"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->commit_notice_delay_us, 0);
  c = Parse({"--experimental-commit-notice-delay=500us"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->commit_notice_delay_us, 500);
  auto bad = Parse({"--experimental-commit-notice-delay", "soon"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("experimental-commit-notice-delay"),
            std::string::npos);
}

}  // namespace
}  // namespace keel::server
