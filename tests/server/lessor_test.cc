// The lessor: minimum TTL, grants, renewals and expiry on the primary only,
// and promotion that never expires a lease early.
#include "server/lessor.h"

#include <gtest/gtest.h>

namespace keel::server {
namespace {

using namespace std::chrono_literals;
using TP = Lessor::TimePoint;

TEST(Lessor, MinTTLIsOneAndAHalfElectionTimeoutsRoundedUp) {
  EXPECT_EQ(MinLeaseTTLSeconds(1000, 100), 2);  // etcd's defaults: 1.5 s
  EXPECT_EQ(MinLeaseTTLSeconds(500, 50), 1);    // 0.75 s
  EXPECT_EQ(MinLeaseTTLSeconds(5000, 250), 8);  // 7.5 s
}

TEST(Lessor, GrantChecks) {
  Lessor l(2);
  EXPECT_EQ(*l.CheckGrant(7, 1), 2);
  EXPECT_EQ(*l.CheckGrant(7, -5), 2);
  EXPECT_EQ(*l.CheckGrant(7, 60), 60);
  EXPECT_EQ(l.CheckGrant(7, Lessor::kMaxTTL + 1).status().message(),
            "etcdserver: too large lease TTL");
  l.Add({7, 60, 0}, TP{});
  EXPECT_EQ(l.CheckGrant(7, 60).status().message(),
            "etcdserver: lease already exists");
}

TEST(Lessor, OnlyThePrimaryRenewsAndExpires) {
  Lessor l(1);
  const TP t0 = TP{} + 1000s;
  l.Add({1, 10, 0}, t0);
  EXPECT_EQ(l.Renew(1, t0), std::nullopt);
  EXPECT_TRUE(l.Expired(t0 + 1000s, 10, 1s).empty());  // followers never

  l.Promote(t0, 500ms);
  EXPECT_TRUE(l.Expired(t0 + 10s, 10, 1s).empty());  // 10 s + 500 ms
  EXPECT_EQ(l.Renew(1, t0 + 10s), 10);               // now until t0 + 20 s
  EXPECT_EQ(l.Renew(2, t0 + 10s), 0);                // unknown
  EXPECT_EQ(l.Lookup(1, t0 + 15s)->remaining_s, 5);
  EXPECT_TRUE(l.Expired(t0 + 19s, 10, 1s).empty());
  EXPECT_EQ(l.Expired(t0 + 20s, 10, 1s), std::vector<int64_t>{1});
  // Asked once; again only after the retry interval.
  EXPECT_TRUE(l.Expired(t0 + 20500ms, 10, 1s).empty());
  EXPECT_EQ(l.Expired(t0 + 21s, 10, 1s), std::vector<int64_t>{1});
  EXPECT_EQ(l.Renew(1, t0 + 21s), 0);  // expired: its revoke is coming

  l.Demote();
  EXPECT_TRUE(l.Expired(t0 + 1000s, 10, 1s).empty());
  EXPECT_EQ(l.Renew(1, t0 + 1000s), std::nullopt);
}

TEST(Lessor, PromotionGivesEveryLeaseItsFullTTLPlusTheExtension) {
  Lessor l(1);
  const TP t0 = TP{} + 1000s;
  l.Reset({{1, 5, 0}, {2, 30, 0}}, t0);
  // A follower for a long time, then leader: nothing has expired yet.
  l.Promote(t0 + 100s, 1s);
  EXPECT_TRUE(l.Expired(t0 + 105s, 10, 1s).empty());
  EXPECT_EQ(l.Expired(t0 + 106s, 10, 1s), std::vector<int64_t>{1});
  EXPECT_EQ(l.Ids(), (std::vector<int64_t>{1, 2}));  // by expiry
  l.Remove(1);
  EXPECT_FALSE(l.Exists(1));
  EXPECT_TRUE(l.Exists(2));
}

TEST(Lessor, ExpiredComesSoonestFirstAndForgetsRemovedLeases) {
  Lessor l(1);
  const TP t0 = TP{} + 1000s;
  l.Promote(t0, 0ms);
  for (int64_t id = 1; id <= 5; id++) l.Add({id, 10 - id, 0}, t0);
  EXPECT_EQ(l.Expired(t0 + 7s, 2, 20s), (std::vector<int64_t>{5, 4}));
  l.Remove(3);
  EXPECT_EQ(l.Expired(t0 + 8s, 10, 20s), std::vector<int64_t>{2});
  EXPECT_EQ(l.Renew(1, t0 + 8s), 9);  // until t0 + 17 s
  EXPECT_TRUE(l.Expired(t0 + 16s, 10, 20s).empty());
  EXPECT_EQ(l.Expired(t0 + 17s, 10, 20s), std::vector<int64_t>{1});
}

}  // namespace
}  // namespace keel::server
