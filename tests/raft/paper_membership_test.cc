// Scenario tests of cluster membership changes: §6 of the Raft paper
// (Ongaro & Ousterhout, extended version: joint consensus) and chapter 4 of
// Ongaro's thesis (single-server changes, non-voting members).
#include <gtest/gtest.h>

#include <algorithm>

#include "raft/codec.h"
#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;
using CCT = ConfChangeType;

std::vector<NodeId> Sorted(std::vector<NodeId> v) {
  std::sort(v.begin(), v.end());
  return v;
}

ConfChange Change(std::vector<ConfChangeSingle> changes,
                  ConfChangeTransition t = ConfChangeTransition::kAuto) {
  ConfChange cc;
  cc.transition = t;
  cc.changes = std::move(changes);
  return cc;
}

// Proposes `cc` on `lead` while the new members `added` are unreachable,
// then lets the leader's application snapshot its state (whose ConfState
// now includes them) so that they can be caught up from it: a snapshot
// that predates a member's addition cannot be installed by that member.
Status ProposeAddition(Network& nt, NodeId lead, const ConfChange& cc,
                       const std::vector<NodeId>& added) {
  for (NodeId id : added) nt.Isolate(id);
  Status st = nt.ProposeConfChange(lead, cc);
  nt.CompactLog(lead, "state");
  nt.Recover();
  return st;
}

// Ticks the leader until `id` has everything the leader has.
void CatchUp(Network& nt, NodeId lead, NodeId id) {
  for (int i = 0;
       i < 20 && nt.storage(id).LastIndex() < nt.storage(lead).LastIndex();
       i++) {
    nt.Tick(lead);
  }
}

// Thesis §4.2.1: "the new servers join the cluster as non-voting members
// (the leader replicates log entries to them, but they are not considered
// for majorities)." A 1-voter + 2-learner cluster commits with the voter
// alone, and the learners still receive and apply everything.
TEST(PaperMembership, LearnersReplicateButDoNotCountForCommit) {
  Network nt;
  const ConfState cs = Voters({1}, {2, 3});
  for (NodeId id : {1, 2, 3}) nt.AddPeer(id, BootstrapStorage(cs));
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
  ASSERT_TRUE(nt.Propose(1, "a").ok());
  for (NodeId id : {1, 2, 3}) {
    ASSERT_FALSE(nt.peer(id).applied_entries.empty()) << "peer " << id;
    EXPECT_EQ(nt.peer(id).applied_entries.back().data, "a") << "peer " << id;
  }
  // With both learners unreachable, the voter alone commits.
  nt.Isolate(2);
  nt.Isolate(3);
  ASSERT_TRUE(nt.Propose(1, "b").ok());
  EXPECT_EQ(nt.peer(1).applied_entries.back().data, "b");
  EXPECT_TRUE(nt.node(1).GetStatus().progress[2].is_learner);
}

// The converse: a learner's acknowledgement does not make a majority. With
// voters {1, 2} and learner 3, 1 cannot commit while 2 is away even though
// 3 stores the entry.
TEST(PaperMembership, LearnerAckIsNotPartOfQuorum) {
  Network nt;
  const ConfState cs = Voters({1, 2}, {3});
  for (NodeId id : {1, 2, 3}) nt.AddPeer(id, BootstrapStorage(cs));
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
  const Index commit = nt.storage(1).GetHardState().commit;
  nt.Isolate(2);
  ASSERT_TRUE(nt.Propose(1, "needs 2").ok());
  EXPECT_EQ(nt.storage(3).LastIndex(), commit + 1) << "learner got the entry";
  EXPECT_EQ(nt.storage(1).GetHardState().commit, commit);
  nt.Recover();
  nt.Tick(1);
  EXPECT_EQ(nt.storage(1).GetHardState().commit, commit + 1);
}

// Learners never campaign, however long they go without a leader, and a
// learner's vote does not elect anyone.
TEST(PaperMembership, LearnersDoNotCampaignOrElect) {
  Network nt;
  const ConfState cs = Voters({1, 2}, {3});
  for (NodeId id : {1, 2, 3}) nt.AddPeer(id, BootstrapStorage(cs));
  SCOPED_TRACE(nt.SeedInfo());
  nt.Isolate(2);
  nt.TickAll(20 * 10);
  EXPECT_EQ(nt.node(3).role(), StateRole::kFollower);
  EXPECT_EQ(nt.CountSent(MT::kVote, 3) + nt.CountSent(MT::kPreVote, 3), 0u);
  // 1 campaigned (its timer fired); 3 alone cannot give it a majority.
  EXPECT_GE(nt.CountSent(MT::kVote, 1), 1u);
  EXPECT_NE(nt.node(1).role(), StateRole::kLeader);
  // Even Campaign() on a learner does nothing.
  nt.Campaign(3);
  EXPECT_EQ(nt.node(3).role(), StateRole::kFollower);
}

// Thesis §4.1: "Raft restricts the types of changes that are allowed: only
// one server can be added or removed from the cluster at a time." §4.2:
// the new server catches up, then quorums are computed over the new set.
TEST(PaperMembership, AddThenRemoveSingleServer) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  // 4 starts empty: it knows no configuration and waits to be contacted.
  nt.AddPeer(4, std::make_unique<MemoryStorage>());
  ASSERT_TRUE(ProposeAddition(nt, 1, Change({{CCT::kAddNode, 4}}), {4}).ok());
  CatchUp(nt, 1, 4);
  for (NodeId id : {1, 2, 3, 4}) {
    EXPECT_EQ(Sorted(nt.peer(id).conf_state.voters),
              (std::vector<NodeId>{1, 2, 3, 4}))
        << "peer " << id;
  }
  EXPECT_EQ(nt.peer(4).applied_snapshots.size(), 1u);
  nt.ExpectLogsMatch(1);

  // Quorum of 4 is 3: {1, 2} alone cannot commit.
  Index commit = nt.storage(1).GetHardState().commit;
  nt.Isolate(3);
  nt.Isolate(4);
  ASSERT_TRUE(nt.Propose(1, "needs 3 of 4").ok());
  EXPECT_EQ(nt.storage(1).GetHardState().commit, commit);
  nt.Recover();
  nt.Tick(1);
  EXPECT_EQ(nt.storage(1).GetHardState().commit, commit + 1);

  // Remove 3: now {1, 2} is a majority of {1, 2, 4}.
  ASSERT_TRUE(nt.ProposeConfChange(1, Change({{CCT::kRemoveNode, 3}})).ok());
  EXPECT_EQ(Sorted(nt.peer(1).conf_state.voters),
            (std::vector<NodeId>{1, 2, 4}));
  nt.Isolate(3);
  nt.Isolate(4);
  commit = nt.storage(1).GetHardState().commit;
  ASSERT_TRUE(nt.Propose(1, "needs 2 of 3").ok());
  EXPECT_EQ(nt.storage(1).GetHardState().commit, commit + 1);
  EXPECT_EQ(nt.node(1).GetStatus().progress.count(3), 0u);
}

// §6: "the cluster first switches to a transitional configuration we call
// joint consensus; once the joint consensus has been committed, the system
// then transitions to the new configuration." A ConfChange with several
// changes enters the joint configuration, and leaves it automatically.
TEST(PaperMembership, JointConsensusEntersAndLeavesAutomatically) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  nt.AddPeer(4, std::make_unique<MemoryStorage>());
  nt.AddPeer(5, std::make_unique<MemoryStorage>());
  ASSERT_TRUE(ProposeAddition(nt, 1,
                              Change({{CCT::kAddNode, 4}, {CCT::kAddNode, 5}}),
                              {4, 5})
                  .ok());
  CatchUp(nt, 1, 4);
  CatchUp(nt, 1, 5);

  const Peer& p = nt.peer(1);
  ASSERT_EQ(p.conf_history.size(), 2u);
  EXPECT_EQ(Sorted(p.conf_history[0].voters),
            (std::vector<NodeId>{1, 2, 3, 4, 5}));
  EXPECT_EQ(Sorted(p.conf_history[0].voters_outgoing),
            (std::vector<NodeId>{1, 2, 3}));
  EXPECT_TRUE(p.conf_history[0].auto_leave);
  ASSERT_EQ(p.applied_conf_changes.size(), 2u);
  EXPECT_TRUE(p.applied_conf_changes[1].LeavesJoint())
      << "second change should be the automatic leave";
  for (NodeId id : nt.ids()) {
    const ConfState& cs = nt.peer(id).conf_state;
    EXPECT_EQ(Sorted(cs.voters), (std::vector<NodeId>{1, 2, 3, 4, 5}))
        << "peer " << id;
    EXPECT_TRUE(cs.voters_outgoing.empty()) << "peer " << id;
    EXPECT_FALSE(cs.auto_leave) << "peer " << id;
  }
}

// Thesis §4.1 (single-server changes): "a leader ... must not begin a new
// change until the previous one is committed" — here, until applied. A
// second ConfChange proposed while one is pending is refused: either
// Propose says so, or the entry is neutralised (an empty normal entry)
// and never applied as a change.
TEST(PaperMembership, SecondChangeWhilePendingIsRefused) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  const Index before = nt.storage(1).LastIndex();
  ASSERT_TRUE(
      nt.node(1).ProposeConfChange(Change({{CCT::kAddLearnerNode, 4}})).ok());
  Status second =
      nt.node(1).ProposeConfChange(Change({{CCT::kAddLearnerNode, 5}}));
  nt.Stabilize();
  if (second.ok()) {
    // Accepted into the log as a no-op.
    std::vector<Entry> log = StoredEntries(nt.storage(1));
    Index second_index = before + 2;
    ASSERT_GE(nt.storage(1).LastIndex(), second_index);
    const Entry& e = log[second_index - nt.storage(1).FirstIndex()];
    EXPECT_EQ(e.type, EntryType::kNormal);
    EXPECT_TRUE(e.data.empty());
  } else {
    EXPECT_TRUE(second.IsProposalDropped()) << second.ToString();
  }
  for (NodeId id : nt.ids()) {
    ASSERT_EQ(nt.peer(id).applied_conf_changes.size(), 1u) << "peer " << id;
    EXPECT_EQ(nt.peer(id).conf_state.learners, (std::vector<NodeId>{4}));
  }
  // Once the first is applied, the next is accepted.
  ASSERT_TRUE(
      nt.ProposeConfChange(1, Change({{CCT::kAddLearnerNode, 5}})).ok());
  EXPECT_EQ(Sorted(nt.peer(1).conf_state.learners),
            (std::vector<NodeId>{4, 5}));
}

// §6: "Joint consensus allows individual servers to transition between
// configurations at different times without compromising safety." and
// "agreement (for elections and entry commitment) requires separate
// majorities from both the old and new configurations." Replacing {1,2,3}
// by {3,4,5} and then partitioning {1,2} from {3,4,5} in the joint phase:
// each side has a majority of one configuration only, so neither elects a
// leader or commits — never two leaders in a term (checked by the harness
// on every Ready).
TEST(PaperMembership, JointConsensusPartitionElectsNoSecondLeader) {
  for (bool check_quorum : {false, true}) {
    SCOPED_TRACE(check_quorum ? "check_quorum" : "no check_quorum");
    Network nt({1, 2, 3}, [&](Config* c) { c->check_quorum = check_quorum; });
    SCOPED_TRACE(nt.SeedInfo());
    nt.Campaign(1);
    auto cfg = [&](Config* c) { c->check_quorum = check_quorum; };
    nt.AddPeer(4, std::make_unique<MemoryStorage>(), cfg);
    nt.AddPeer(5, std::make_unique<MemoryStorage>(), cfg);
    // Explicit: stay joint until told to leave.
    ASSERT_TRUE(ProposeAddition(nt, 1,
                                Change({{CCT::kAddNode, 4},
                                        {CCT::kAddNode, 5},
                                        {CCT::kRemoveNode, 1},
                                        {CCT::kRemoveNode, 2}},
                                       ConfChangeTransition::kJointExplicit),
                                {4, 5})
                    .ok());
    CatchUp(nt, 1, 4);
    CatchUp(nt, 1, 5);
    for (NodeId id : nt.ids()) {
      const ConfState& cs = nt.peer(id).conf_state;
      EXPECT_EQ(Sorted(cs.voters), (std::vector<NodeId>{3, 4, 5}))
          << "peer " << id;
      EXPECT_EQ(Sorted(cs.voters_outgoing), (std::vector<NodeId>{1, 2, 3}))
          << "peer " << id;
    }

    for (NodeId a : {1, 2}) {
      for (NodeId b : {3, 4, 5}) nt.Cut(a, b);
    }
    const Index commit = nt.storage(1).GetHardState().commit;
    (void)nt.Propose(1, "in the minority of the new config");
    for (int i = 0; i < 30 * 10; i++) {
      nt.TickAll(1);
      ASSERT_EQ(nt.Leader({3, 4, 5}), kNone) << "round " << i;
      ASSERT_EQ(nt.Leader({2}), kNone) << "round " << i;
    }
    for (NodeId id : nt.ids()) {
      EXPECT_EQ(nt.storage(id).GetHardState().commit, commit) << "peer " << id;
    }
    if (check_quorum) {
      EXPECT_NE(nt.node(1).role(), StateRole::kLeader);
    }

    // Healed, one leader emerges, leaves the joint configuration, and the
    // new configuration commits on its own.
    nt.Recover();
    NodeId lead = nt.TickUntilAgreedLeader(300);
    ASSERT_NE(lead, kNone);
    ASSERT_TRUE(nt.ProposeConfChange(lead, ConfChange{}).ok());
    nt.TickAll(3);
    for (NodeId id : {3, 4, 5}) {
      EXPECT_TRUE(nt.peer(id).conf_state.voters_outgoing.empty())
          << "peer " << id;
      EXPECT_EQ(Sorted(nt.peer(id).conf_state.voters),
                (std::vector<NodeId>{3, 4, 5}));
    }
    nt.Isolate(1);
    nt.Isolate(2);
    lead = nt.TickUntilLeader(300, {3, 4, 5});
    ASSERT_NE(lead, kNone);
    ASSERT_TRUE(nt.Propose(lead, "new config only").ok());
    EXPECT_EQ(nt.peer(3).applied_entries.back().data, "new config only");
  }
}

}  // namespace
}  // namespace keel::raft::test
