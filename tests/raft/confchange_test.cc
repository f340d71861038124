// Tests of configuration changes: simple, joint (enter/leave), learners,
// demotions, and the refusals.
#include "raft/confchange/confchange.h"

#include <gtest/gtest.h>

namespace keel::raft {
namespace {

ConfChangeSingle Add(NodeId id) { return {ConfChangeType::kAddNode, id}; }
ConfChangeSingle AddLearner(NodeId id) {
  return {ConfChangeType::kAddLearnerNode, id};
}
ConfChangeSingle Remove(NodeId id) { return {ConfChangeType::kRemoveNode, id}; }

class ConfChangeTest : public ::testing::Test {
 protected:
  ConfChangeTest() : trk_(16, 0) {
    auto r =
        confchange::Restore(trk_, 10, ConfState{{1, 2, 3}, {}, {}, {}, false});
    EXPECT_TRUE(r.ok());
    Install(r);
  }
  void Install(const keel::Result<confchange::Result>& r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    trk_.config = r->config;
    trk_.progress = r->progress;
  }
  confchange::Changer changer() { return confchange::Changer(trk_, 10); }

  tracker::ProgressTracker trk_;
};

TEST_F(ConfChangeTest, SimpleAddsAndRemovesOneVoter) {
  Install(changer().Simple({Add(4)}));
  EXPECT_EQ(trk_.GetConfState().voters, (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(trk_.progress.at(4).next, 10u);  // probed from our last index
  Install(changer().Simple({Remove(1)}));
  EXPECT_EQ(trk_.GetConfState().voters, (std::vector<NodeId>{2, 3, 4}));
  EXPECT_EQ(trk_.progress.count(1), 0u);
}

TEST_F(ConfChangeTest, SimpleRefusesTwoVoterChanges) {
  EXPECT_FALSE(changer().Simple({Add(4), Add(5)}).ok());
  EXPECT_FALSE(changer().Simple({Remove(1), Add(5)}).ok());
  // Learners do not count: one voter plus a learner is fine.
  EXPECT_TRUE(changer().Simple({Add(4), AddLearner(5)}).ok());
}

TEST_F(ConfChangeTest, RemovingAllVotersIsRefused) {
  EXPECT_FALSE(
      changer().EnterJoint(true, {Remove(1), Remove(2), Remove(3)}).ok());
}

TEST_F(ConfChangeTest, JointEnterAndLeave) {
  Install(changer().EnterJoint(true, {Add(4), Add(5), Remove(1)}));
  ConfState cs = trk_.GetConfState();
  EXPECT_EQ(cs.voters, (std::vector<NodeId>{2, 3, 4, 5}));
  EXPECT_EQ(cs.voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_TRUE(cs.auto_leave);
  EXPECT_EQ(trk_.progress.count(1), 1u);  // still an outgoing voter
  // No second joint, no simple change while joint.
  EXPECT_FALSE(changer().EnterJoint(false, {Add(6)}).ok());
  EXPECT_FALSE(changer().Simple({Add(6)}).ok());
  Install(changer().LeaveJoint());
  cs = trk_.GetConfState();
  EXPECT_EQ(cs.voters, (std::vector<NodeId>{2, 3, 4, 5}));
  EXPECT_TRUE(cs.voters_outgoing.empty());
  EXPECT_FALSE(cs.auto_leave);
  EXPECT_EQ(trk_.progress.count(1), 0u);
  EXPECT_FALSE(changer().LeaveJoint().ok());
}

TEST_F(ConfChangeTest, DemotingAVoterInJointMakesItALearnerOnLeave) {
  Install(changer().EnterJoint(false, {AddLearner(3)}));
  ConfState cs = trk_.GetConfState();
  EXPECT_EQ(cs.voters, (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(cs.learners_next, (std::vector<NodeId>{3}));
  EXPECT_FALSE(trk_.progress.at(3).is_learner);  // votes in the old half
  Install(changer().LeaveJoint());
  cs = trk_.GetConfState();
  EXPECT_EQ(cs.learners, (std::vector<NodeId>{3}));
  EXPECT_TRUE(trk_.progress.at(3).is_learner);
}

TEST_F(ConfChangeTest, PromoteLearner) {
  Install(changer().Simple({AddLearner(4)}));
  EXPECT_TRUE(trk_.progress.at(4).is_learner);
  EXPECT_EQ(trk_.GetConfState().learners, (std::vector<NodeId>{4}));
  Install(changer().Simple({Add(4)}));
  EXPECT_FALSE(trk_.progress.at(4).is_learner);
  EXPECT_TRUE(trk_.GetConfState().learners.empty());
}

TEST_F(ConfChangeTest, RestoreRoundTripsJointState) {
  Install(changer().EnterJoint(true, {Add(4), AddLearner(2)}));
  ConfState cs = trk_.GetConfState();
  tracker::ProgressTracker other(16, 0);
  auto r = confchange::Restore(other, 10, cs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  other.config = r->config;
  other.progress = r->progress;
  EXPECT_EQ(other.GetConfState(), cs);
}

}  // namespace
}  // namespace keel::raft
