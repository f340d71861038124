// Table tests of the quorum math, progress tracking and the in-flight window.
#include "raft/quorum/quorum.h"

#include <gtest/gtest.h>

#include "raft/tracker/inflights.h"
#include "raft/tracker/progress.h"

namespace keel::raft {
namespace {

using quorum::JointConfig;
using quorum::MajorityConfig;
using quorum::VoteResult;

quorum::AckedIndexer Acked(std::map<NodeId, Index> m) {
  return [m](NodeId id) -> std::optional<Index> {
    auto it = m.find(id);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

TEST(QuorumTest, MajorityCommittedIndex) {
  struct Case {
    std::set<NodeId> ids;
    std::map<NodeId, Index> acked;
    Index want;
  };
  std::vector<Case> cases = {
      {{}, {}, UINT64_MAX},  // empty config never binds
      {{1}, {{1, 5}}, 5},
      {{1}, {}, 0},
      {{1, 2}, {{1, 5}, {2, 3}}, 3},  // both needed
      {{1, 2, 3}, {{1, 5}, {2, 3}, {3, 1}}, 3},
      {{1, 2, 3}, {{1, 5}}, 0},  // missing counts as 0
      {{1, 2, 3}, {{1, 5}, {2, 5}}, 5},
      {{1, 2, 3, 4}, {{1, 9}, {2, 8}, {3, 7}, {4, 1}}, 8 - 1},
      {{1, 2, 3, 4, 5}, {{1, 9}, {2, 8}, {3, 7}, {4, 1}, {5, 1}}, 7},
      {{1, 2, 3, 4, 5, 6, 7, 8, 9},
       {{1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}, {6, 6}, {7, 7}, {8, 8}, {9, 9}},
       5},
  };
  for (size_t i = 0; i < cases.size(); i++) {
    EXPECT_EQ(
        MajorityConfig(cases[i].ids).CommittedIndex(Acked(cases[i].acked)),
        cases[i].want)
        << "case " << i;
  }
}

TEST(QuorumTest, MajorityVote) {
  MajorityConfig c({1, 2, 3});
  EXPECT_EQ(c.Vote({}), VoteResult::kPending);
  EXPECT_EQ(c.Vote({{1, true}}), VoteResult::kPending);
  EXPECT_EQ(c.Vote({{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(c.Vote({{1, true}, {2, false}}), VoteResult::kPending);
  EXPECT_EQ(c.Vote({{1, false}, {2, false}}), VoteResult::kLost);
  // Votes from non-members do not count.
  EXPECT_EQ(c.Vote({{1, true}, {7, true}}), VoteResult::kPending);
  EXPECT_EQ(MajorityConfig().Vote({}), VoteResult::kWon);
  MajorityConfig four({1, 2, 3, 4});
  EXPECT_EQ(four.Vote({{1, true}, {2, true}}), VoteResult::kPending);
  EXPECT_EQ(four.Vote({{1, true}, {2, true}, {3, false}, {4, false}}),
            VoteResult::kLost);
}

TEST(QuorumTest, JointNeedsBothMajorities) {
  JointConfig j{MajorityConfig({1, 2, 3}), MajorityConfig({3, 4, 5})};
  EXPECT_TRUE(j.IsJoint());
  // Majority of the incoming half only.
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 9}, {2, 9}, {3, 1}})), 0u);
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 9}, {2, 9}, {3, 1}, {4, 7}, {5, 8}})),
            7u);
  EXPECT_EQ(j.Vote({{1, true}, {2, true}}), VoteResult::kPending);
  EXPECT_EQ(j.Vote({{1, true}, {2, true}, {4, true}, {5, true}}),
            VoteResult::kWon);
  EXPECT_EQ(j.Vote({{1, true}, {2, true}, {4, false}, {5, false}}),
            VoteResult::kLost);
  JointConfig simple{MajorityConfig({1, 2, 3}), MajorityConfig()};
  EXPECT_FALSE(simple.IsJoint());
  EXPECT_EQ(simple.CommittedIndex(Acked({{1, 4}, {2, 4}})), 4u);
}

TEST(InflightsTest, BoundedByCountAndBytes) {
  tracker::Inflights in(3, 0);
  in.Add(1, 10);
  in.Add(2, 10);
  EXPECT_FALSE(in.Full());
  in.Add(5, 10);
  EXPECT_TRUE(in.Full());
  in.FreeLE(2);
  EXPECT_EQ(in.Count(), 1u);
  EXPECT_EQ(in.Bytes(), 10u);
  EXPECT_FALSE(in.Full());
  in.FreeLE(100);
  EXPECT_EQ(in.Count(), 0u);

  tracker::Inflights bytes(100, 25);
  bytes.Add(1, 10);
  bytes.Add(2, 10);
  EXPECT_FALSE(bytes.Full());
  bytes.Add(3, 10);
  EXPECT_TRUE(bytes.Full());  // 30 >= 25
  bytes.FreeLE(1);
  EXPECT_FALSE(bytes.Full());
}

TEST(ProgressTest, ProbeRejectionsAndReplicate) {
  tracker::Progress pr(4, 0);
  pr.match = 3;
  pr.next = 10;
  // A stale rejection (not of the probe we sent) is ignored.
  EXPECT_FALSE(pr.MaybeDecrTo(5, 5));
  // Rejection of index 9 with a hint that the follower's log ends at 6.
  EXPECT_TRUE(pr.MaybeDecrTo(9, 6));
  EXPECT_EQ(pr.next, 7u);
  // Never below match+1.
  EXPECT_TRUE(pr.MaybeDecrTo(6, 0));
  EXPECT_EQ(pr.next, 4u);
  // Probe sends one message, then pauses.
  pr.SentEntries(2, 20, pr.next);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_TRUE(pr.MaybeUpdate(5));
  EXPECT_FALSE(pr.IsPaused());
  pr.BecomeReplicate();
  EXPECT_EQ(pr.next, 6u);
  for (int i = 0; i < 4; i++) pr.SentEntries(1, 1, pr.next);
  EXPECT_EQ(pr.next, 10u);
  EXPECT_TRUE(pr.IsPaused());  // window of 4 full
  // In replicate, a rejection at or below match is stale.
  EXPECT_FALSE(pr.MaybeDecrTo(5, 5));
  EXPECT_TRUE(pr.MaybeDecrTo(8, 5));
  EXPECT_EQ(pr.next, 6u);
}

TEST(ProgressTest, SnapshotThenProbeResumesAfterIt) {
  tracker::Progress pr(4, 0);
  pr.match = 2;
  pr.BecomeSnapshot(50);
  EXPECT_TRUE(pr.IsPaused());
  pr.BecomeProbe();
  EXPECT_EQ(pr.next, 51u);
}

}  // namespace
}  // namespace keel::raft
