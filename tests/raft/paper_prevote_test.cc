// Scenario tests of the election refinements of Ongaro's thesis ("Consensus:
// Bridging Theory and Practice"): PreVote (§9.6) and CheckQuorum / leader
// leases against disruptive servers (§6.2, §4.2.3).
#include <gtest/gtest.h>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

struct Disruption {
  Term isolated_term = 0;   // term of the partitioned member before rejoining
  bool leader_kept = true;  // 1 led throughout, in the same term
  Term final_leader_term = 0;  // term of node 1 at the end
};

// 1 leads a 3-member cluster; 3 is partitioned for several election timeouts
// while 1 commits an entry, then rejoins and time passes.
Disruption PartitionAndRejoin(bool pre_vote, bool check_quorum) {
  Network nt({1, 2, 3}, [&](Config* c) {
    c->pre_vote = pre_vote;
    c->check_quorum = check_quorum;
  });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  EXPECT_EQ(nt.node(1).role(), StateRole::kLeader);
  const Term term = nt.node(1).term();
  nt.Isolate(3);
  EXPECT_TRUE(nt.Propose(1, "while 3 is away").ok());
  nt.Tick(3, 5 * nt.peer(3).config.election_tick);

  Disruption d;
  d.isolated_term = nt.node(3).term();
  nt.Recover();
  for (int i = 0; i < 10 * nt.peer(1).config.election_tick; i++) {
    nt.TickAll(1);
    if (nt.node(1).role() != StateRole::kLeader || nt.node(1).term() != term) {
      d.leader_kept = false;
    }
  }
  d.final_leader_term = nt.node(1).term();
  return d;
}

// Thesis §9.6: "a server that has been partitioned from the cluster is
// likely to cause a disruption when it regains connectivity. When a server
// is partitioned, it will not receive heartbeats. It will soon increment
// its term to start an election ... When the server regains connectivity
// sometime later, its larger term number will propagate to the rest of the
// cluster ... This will force the cluster leader to step down".
TEST(PaperPreVote, RejoiningMemberDisruptsLeaderWithoutPreVote) {
  Disruption d = PartitionAndRejoin(/*pre_vote=*/false, /*check_quorum=*/false);
  EXPECT_GT(d.isolated_term, 2u);
  EXPECT_FALSE(d.leader_kept);
  EXPECT_GT(d.final_leader_term, d.isolated_term);
}

// Thesis §9.6: "In the Pre-Vote algorithm, a candidate only increments its
// term if it first learns from a majority of the cluster that they would be
// willing to grant the candidate their votes (if the candidate's log is
// sufficiently up-to-date, and the voters have not received heartbeats
// from a valid leader for at least a baseline election timeout)."
TEST(PaperPreVote, RejoiningMemberDoesNotDisruptWithPreVote) {
  for (bool check_quorum : {false, true}) {
    SCOPED_TRACE(check_quorum ? "with check_quorum" : "without check_quorum");
    Disruption d = PartitionAndRejoin(/*pre_vote=*/true, check_quorum);
    EXPECT_EQ(d.isolated_term, 2u) << "a pre-candidate must not bump its term";
    EXPECT_TRUE(d.leader_kept);
    EXPECT_EQ(d.final_leader_term, 2u);
  }
}

// Thesis §9.6 (Pre-Vote), continued: a pre-vote that can win does lead to a
// real election — PreVote must not prevent electing a leader when the old
// one is gone.
TEST(PaperPreVote, PreVoteStillElectsWhenLeaderIsGone) {
  Network nt({1, 2, 3}, [](Config* c) { c->pre_vote = true; });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
  nt.Isolate(1);
  NodeId lead = nt.TickUntilLeader(100, {2, 3});
  ASSERT_NE(lead, kNone);
  EXPECT_EQ(nt.node(lead).term(), 3u) << "one pre-vote, one real election";
  EXPECT_GE(nt.CountSent(MT::kPreVote), 1u);
}

// A pre-candidate asks with the term it would use, but neither it nor the
// voters change their persisted term.
TEST(PaperPreVote, PreVoteDoesNotChangeTerms) {
  Network nt({1, 2, 3}, [](Config* c) { c->pre_vote = true; });
  nt.Ignore(MT::kPreVoteResp);
  nt.Campaign(1);
  EXPECT_EQ(nt.node(1).role(), StateRole::kPreCandidate);
  for (NodeId id : nt.ids()) {
    EXPECT_EQ(nt.storage(id).GetHardState().term, 1u) << "peer " << id;
    EXPECT_EQ(nt.storage(id).GetHardState().vote, kNone) << "peer " << id;
  }
  std::vector<Message> asks =
      nt.Traced(TraceEvent::Kind::kSent,
                [](const Message& m) { return m.type == MT::kPreVote; });
  ASSERT_EQ(asks.size(), 2u);
  for (const Message& m : asks) EXPECT_EQ(m.term, 2u);
}

// Thesis §6.2: "In Raft, the leader steps down if an election timeout
// elapses without a successful round of heartbeats to a majority of its
// cluster; this allows clients to retry their requests with another
// server."
TEST(PaperCheckQuorum, LeaderInMinorityStepsDown) {
  for (bool check_quorum : {true, false}) {
    SCOPED_TRACE(check_quorum ? "check_quorum" : "no check_quorum");
    Network nt({1, 2, 3, 4, 5},
               [&](Config* c) { c->check_quorum = check_quorum; });
    SCOPED_TRACE(nt.SeedInfo());
    nt.Campaign(1);
    ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
    // 1 and 2 on one side, 3, 4, 5 on the other.
    for (NodeId a : {1, 2}) {
      for (NodeId b : {3, 4, 5}) nt.Cut(a, b);
    }
    const int et = nt.peer(1).config.election_tick;
    nt.Tick(1, 2 * et);
    if (check_quorum) {
      EXPECT_EQ(nt.node(1).role(), StateRole::kFollower);
    } else {
      // Without CheckQuorum nothing tells it.
      EXPECT_EQ(nt.node(1).role(), StateRole::kLeader);
    }
    // The majority side elects a leader either way.
    NodeId lead = nt.TickUntilLeader(100, {3, 4, 5});
    EXPECT_NE(lead, kNone);
  }
}

// With CheckQuorum, a leader with a majority keeps leading indefinitely
// (heartbeat responses count as activity).
TEST(PaperCheckQuorum, LeaderWithMajorityStays) {
  Network nt({1, 2, 3}, [](Config* c) { c->check_quorum = true; });
  nt.Campaign(1);
  nt.Isolate(3);
  nt.TickAll(20 * nt.peer(1).config.election_tick);
  EXPECT_EQ(nt.node(1).role(), StateRole::kLeader);
  EXPECT_EQ(nt.node(1).term(), 2u);
}

// Thesis §4.2.3: "if a server receives a RequestVote request within the
// minimum election timeout of hearing from a current leader, it does not
// update its term or grant its vote." (etcd: with check_quorum.)
TEST(PaperCheckQuorum, VoteIgnoredWithinLeaderLease) {
  Network nt({1, 2, 3}, [](Config* c) { c->check_quorum = true; });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  ASSERT_EQ(nt.node(2).leader(), 1u);
  nt.Isolate(2);
  nt.Isolate(1);
  // 3 asks for votes in term 3 with a log as up to date as anyone's.
  auto vote = [&](NodeId to, Term term) {
    Message m = MakeMsg(MT::kVote, 3, to, term);
    m.log_term = 2;
    m.index = 2;
    return m;
  };
  for (NodeId id : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "peer " << id);
    (void)nt.node(id).Step(vote(id, 3));
    std::vector<Message> out = nt.TakeQueued();
    for (const Message& m : OfType(out, MT::kVoteResp)) {
      EXPECT_TRUE(m.reject) << "vote granted within the lease: " << m;
    }
    EXPECT_EQ(nt.node(id).term(), 2u);
    EXPECT_EQ(nt.storage(id).GetHardState().term, 2u);
  }
  EXPECT_EQ(nt.node(1).role(), StateRole::kLeader);
  EXPECT_EQ(nt.node(2).leader(), 1u);

  // Once an election timeout passes without hearing from the leader, the
  // same request is granted. (2 may have campaigned itself meanwhile: ask
  // for the term after whatever it is in.)
  for (int i = 0; i < nt.peer(2).config.election_tick; i++) {
    nt.node(2).Tick();
  }
  nt.TakeQueued();
  const Term t = nt.node(2).term() + 1;
  (void)nt.node(2).Step(vote(2, t));
  std::vector<Message> out = OfType(nt.TakeQueued(), MT::kVoteResp);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(nt.node(2).term(), t);
}

}  // namespace
}  // namespace keel::raft::test
