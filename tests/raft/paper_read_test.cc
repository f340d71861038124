// Scenario tests of linearizable reads: §8 of the Raft paper (Ongaro &
// Ousterhout, extended version) and §6.4 of Ongaro's thesis (ReadIndex,
// batching, follower reads, leases).
#include <gtest/gtest.h>

#include <string>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

// A 3-member cluster where 1 leads and has committed an entry of its term
// plus one proposal (commit index 3).
std::unique_ptr<Network> ReadyCluster(ConfigFn fn = nullptr) {
  auto nt = std::make_unique<Network>(std::vector<NodeId>{1, 2, 3}, fn);
  nt->Campaign(1);
  EXPECT_EQ(nt->node(1).role(), StateRole::kLeader);
  EXPECT_TRUE(nt->Propose(1, "x").ok());
  EXPECT_EQ(nt->storage(1).GetHardState().commit, 3u);
  nt->ClearTrace();
  return nt;
}

// §8: "a leader must check whether it has been deposed before processing a
// read-only request ... Raft handles this by having the leader exchange
// heartbeat messages with a majority of the cluster before responding to
// read-only requests." Thesis §6.4 step 3: "The leader sends a new round
// of heartbeats, and waits for their acknowledgments from a majority".
TEST(PaperRead, LeaderAnswersOnlyAfterHeartbeatRound) {
  auto nt = ReadyCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Hold([](const Message& m) { return m.type == MT::kHeartbeatResp; });
  nt->node(1).ReadIndex("r1");
  nt->Stabilize();
  EXPECT_GE(nt->CountDelivered(MT::kHeartbeat, 1), 2u);
  EXPECT_TRUE(nt->peer(1).read_states.empty())
      << "answered before leadership was confirmed";
  nt->ReleaseHeld();
  ASSERT_EQ(nt->peer(1).read_states.size(), 1u);
  EXPECT_EQ(nt->peer(1).read_states[0], (ReadState{3, "r1"}));
}

// One acknowledgement besides the leader's own is a majority of three.
TEST(PaperRead, OneAckFromMajorityIsEnough) {
  auto nt = ReadyCluster();
  nt->Isolate(3);
  nt->node(1).ReadIndex("r");
  nt->Stabilize();
  ASSERT_EQ(nt->peer(1).read_states.size(), 1u);
  EXPECT_EQ(nt->peer(1).read_states[0].index, 3u);
}

// Thesis §6.4: "To improve efficiency further, the leader can amortize the
// cost of confirming its leadership: it can use a single round of
// heartbeats for any number of read-only queries that it has accumulated."
// Here: 20 concurrent reads cost at most two rounds (one started eagerly
// for the first read, one shared by all that arrived while it was in
// flight), not twenty.
TEST(PaperRead, ConcurrentReadsShareHeartbeatRounds) {
  auto nt = ReadyCluster();
  SCOPED_TRACE(nt->SeedInfo());
  const int kReads = 20;
  for (int i = 0; i < kReads; i++) {
    nt->node(1).ReadIndex("r" + std::to_string(i));
  }
  nt->Stabilize();
  const auto& rs = nt->peer(1).read_states;
  ASSERT_EQ(rs.size(), static_cast<size_t>(kReads));
  for (int i = 0; i < kReads; i++) {
    EXPECT_EQ(rs[i], (ReadState{3, "r" + std::to_string(i)}));
  }
  const size_t heartbeats = nt->CountSent(MT::kHeartbeat, 1);
  EXPECT_GE(heartbeats, 2u);
  EXPECT_LE(heartbeats, 2u * 2u) << "more than two rounds for one batch";
}

// §8: "the leader responding to the request might have been superseded by
// a newer leader of which it is unaware". A leader cut off in a minority
// never answers a read, even while it still believes it leads and the
// majority commits new writes.
TEST(PaperRead, DeposedLeaderInMinorityNeverAnswers) {
  auto nt = ReadyCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Isolate(1);
  nt->node(1).ReadIndex("stale");
  NodeId lead = nt->TickUntilLeader(100, {2, 3});
  ASSERT_NE(lead, kNone);
  ASSERT_TRUE(nt->Propose(lead, "newer").ok());
  nt->TickAll(5 * nt->peer(1).config.election_tick);
  EXPECT_EQ(nt->node(1).role(), StateRole::kLeader) << "(no check_quorum)";
  EXPECT_TRUE(nt->peer(1).read_states.empty());
  // Reconnected, it learns the new term and steps down; the read is gone,
  // not answered late with the stale index.
  nt->Recover();
  nt->TickAll(5);
  EXPECT_NE(nt->node(1).role(), StateRole::kLeader);
  EXPECT_TRUE(nt->peer(1).read_states.empty());
}

// Thesis §6.4.1 ... "followers could also help offload the processing of
// read-only queries ... the follower could issue a request to the leader
// that just asked for a current readIndex (the leader would execute steps
// 1–3 above); the follower could then execute steps 4 and 5". The read
// index is the leader's commit index, even when the follower knows less.
TEST(PaperRead, FollowerReadUsesLeaderCommitIndex) {
  auto nt = ReadyCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Isolate(2);
  ASSERT_TRUE(nt->Propose(1, "y").ok());
  ASSERT_EQ(nt->storage(1).GetHardState().commit, 4u);
  ASSERT_EQ(nt->storage(2).GetHardState().commit, 3u);
  nt->Recover();
  nt->node(2).ReadIndex("f");
  nt->Stabilize();
  EXPECT_GE(nt->CountDelivered(MT::kReadIndex, 2, 1), 1u);
  EXPECT_GE(nt->CountDelivered(MT::kReadIndexResp, 1, 2), 1u);
  ASSERT_EQ(nt->peer(2).read_states.size(), 1u);
  EXPECT_EQ(nt->peer(2).read_states[0], (ReadState{4, "f"}));
  EXPECT_TRUE(nt->peer(1).read_states.empty()) << "answered on the wrong node";
}

// Thesis §6.4.1: "the leader would use the normal heartbeat mechanism to
// maintain a lease ... it would then reply to read-only queries during the
// lease period without any additional communication." (etcd:
// ReadOnlyLeaseBased, which requires check_quorum.) The lease is earned
// by heartbeats a quorum acknowledged, and members may refuse votes for an
// election timeout after they start, so let time pass first.
TEST(PaperRead, LeaseBasedReadNeedsNoHeartbeatRound) {
  Network nt({1, 2, 3}, [](Config* c) {
    c->check_quorum = true;
    c->read_only_option = ReadOnlyOption::kLeaseBased;
  });
  SCOPED_TRACE(nt.SeedInfo());
  const NodeId lead = nt.TickUntilAgreedLeader(100);
  ASSERT_NE(lead, kNone);
  ASSERT_TRUE(nt.Propose(lead, "x").ok());
  nt.TickAll(2);  // a heartbeat round is acknowledged: the lease holds
  const Index commit = nt.storage(lead).GetHardState().commit;
  nt.ClearTrace();

  nt.node(lead).ReadIndex("lease");
  nt.Process(lead);
  ASSERT_EQ(nt.peer(lead).read_states.size(), 1u);
  EXPECT_EQ(nt.peer(lead).read_states[0], (ReadState{commit, "lease"}));
  EXPECT_EQ(nt.CountSent(MT::kHeartbeat), 0u);

  // A follower's lease read asks the leader once, with no heartbeat round.
  const NodeId f = lead == 1 ? 2 : 1;
  nt.node(f).ReadIndex("lease-f");
  nt.Stabilize();
  ASSERT_EQ(nt.peer(f).read_states.size(), 1u);
  EXPECT_EQ(nt.peer(f).read_states[0], (ReadState{commit, "lease-f"}));
  EXPECT_EQ(nt.CountSent(MT::kHeartbeat), 0u);
}

// §8: "a leader must have the latest information on which entries are
// committed. The Leader Completeness Property guarantees that a leader has
// all committed entries, but at the start of its term, it may not know
// which those are. To find out, it needs to commit an entry from its term.
// Raft handles this by having each leader commit a blank no-op entry into
// the log at the start of its term."
TEST(PaperRead, NewLeaderWaitsForEntryOfItsTerm) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  // The new leader's no-op cannot commit yet.
  nt.SetFilter([](Message& m) { return m.type != MT::kAppResp; });
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
  ASSERT_EQ(nt.storage(1).GetHardState().commit, 1u);
  nt.node(1).ReadIndex("early");
  nt.Tick(1, 3);  // heartbeats flow and are acknowledged
  EXPECT_GE(nt.CountDelivered(MT::kHeartbeatResp), 1u);
  EXPECT_TRUE(nt.peer(1).read_states.empty())
      << "read answered with a commit index of an older term";

  nt.SetFilter(nullptr);
  for (int i = 0; i < 5 && nt.peer(1).read_states.empty(); i++) nt.Tick(1);
  ASSERT_EQ(nt.storage(1).GetHardState().commit, 2u);
  ASSERT_EQ(nt.peer(1).read_states.size(), 1u);
  EXPECT_EQ(nt.peer(1).read_states[0], (ReadState{2, "early"}));
}

}  // namespace
}  // namespace keel::raft::test
