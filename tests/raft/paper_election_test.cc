// Scenario tests of leader election (§5.1, §5.2, §5.4.1 of the Raft paper,
// Ongaro & Ousterhout, "In Search of an Understandable Consensus
// Algorithm", extended version). Each test quotes the sentence it checks.
#include <gtest/gtest.h>

#include <set>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

// A follower that has heard nothing, in a cluster of `ids`, whose messages
// go nowhere: tests step messages into it by hand and read what it sends.
struct Lone {
  explicit Lone(std::vector<NodeId> ids, ConfigFn fn = nullptr,
                uint64_t seed = 1)
      : nt(ids, fn, seed) {
    nt.Isolate(ids[0]);
    self = ids[0];
  }
  RawNode& node() { return nt.node(self); }
  // Steps m into the node and returns what it sends in response.
  std::vector<Message> Step(Message m) {
    (void)node().Step(std::move(m));
    return nt.TakeQueued();
  }
  Network nt;
  NodeId self;
};

// §5.2: "If a follower receives no communication over a period of time
// called the election timeout, then it assumes there is no viable leader
// and begins an election to choose a new leader. To begin an election, a
// follower increments its current term and transitions to candidate state.
// It then votes for itself and issues RequestVote RPCs in parallel to each
// of the other servers in the cluster."
TEST(PaperElection, FollowerStartsElectionOnTimeout) {
  Lone l({1, 2, 3});
  SCOPED_TRACE(l.nt.SeedInfo());
  const Config& c = l.nt.peer(1).config;
  l.nt.peer(1).record_readies = true;
  int ticks = 0;
  while (l.node().role() == StateRole::kFollower &&
         ticks < 2 * c.election_tick) {
    l.node().Tick();
    ticks++;
  }
  std::vector<Message> sent = l.nt.TakeQueued();
  ASSERT_EQ(l.node().role(), StateRole::kCandidate) << "after " << ticks;
  EXPECT_GE(ticks, c.election_tick);
  EXPECT_LT(ticks, 2 * c.election_tick);
  EXPECT_EQ(l.node().term(), 2u);
  EXPECT_EQ(l.nt.storage(1).GetHardState().vote, 1u);
  std::set<NodeId> asked;
  for (const Message& m : OfType(sent, MT::kVote)) {
    EXPECT_EQ(m.term, 2u);
    // The candidate's last log entry is the bootstrap snapshot (1, 1).
    EXPECT_EQ(m.index, 1u);
    EXPECT_EQ(m.log_term, 1u);
    asked.insert(m.to);
  }
  EXPECT_EQ(asked, (std::set<NodeId>{2, 3}));
}

// §5.2: "Raft uses randomized election timeouts to ensure that split votes
// are rare ... election timeouts are chosen randomly from a fixed interval".
// Our interval is [election_tick, 2 * election_tick), drawn from Config.rng.
TEST(PaperElection, ElectionTimeoutIsRandomized) {
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 50; seed++) {
    Lone l({1, 2, 3}, nullptr, seed);
    SCOPED_TRACE(l.nt.SeedInfo());
    int ticks = 0;
    while (l.node().role() == StateRole::kFollower && ticks < 100) {
      l.node().Tick();
      ticks++;
    }
    ASSERT_EQ(l.node().role(), StateRole::kCandidate);
    EXPECT_GE(ticks, 10);
    EXPECT_LT(ticks, 20);
    seen.insert(ticks);
  }
  // 50 draws from 10 values: all equal would mean no randomness at all.
  EXPECT_GE(seen.size(), 5u);
}

// §5.2: "A candidate wins an election if it receives votes from a majority
// of the servers in the full cluster for the same term." ... "Once a
// candidate wins an election, it becomes leader." A candidate without a
// majority does not lead.
TEST(PaperElection, CandidateNeedsMajorityOfVotes) {
  struct Case {
    std::vector<NodeId> ids;
    std::vector<NodeId> granted;
    std::vector<NodeId> rejected;
    bool leader;
  } cases[] = {
      {{1}, {}, {}, true},
      {{1, 2, 3}, {2}, {}, true},
      {{1, 2, 3}, {2, 3}, {}, true},
      {{1, 2, 3}, {}, {}, false},
      {{1, 2, 3}, {}, {2, 3}, false},
      {{1, 2, 3, 4, 5}, {2}, {}, false},
      {{1, 2, 3, 4, 5}, {2}, {3, 4, 5}, false},
      {{1, 2, 3, 4, 5}, {2, 3}, {}, true},
      {{1, 2, 3, 4, 5}, {2, 3}, {4, 5}, true},
      {{1, 2, 3, 4}, {2}, {}, false},
      {{1, 2, 3, 4}, {2, 3}, {4}, true},
  };
  for (const Case& c : cases) {
    Lone l(c.ids);
    SCOPED_TRACE(::testing::Message() << c.ids.size() << " members, "
                                      << c.granted.size() << " grants");
    l.node().Campaign();
    l.nt.TakeQueued();
    for (NodeId v : c.rejected) {
      Message m = MakeMsg(MT::kVoteResp, v, 1, 2);
      m.reject = true;
      l.Step(m);
    }
    for (NodeId v : c.granted) l.Step(MakeMsg(MT::kVoteResp, v, 1, 2));
    EXPECT_EQ(l.node().role() == StateRole::kLeader, c.leader)
        << StateRoleName(l.node().role());
    EXPECT_EQ(l.node().term(), 2u);
  }
}

// §5.2: "Each server will vote for at most one candidate in a given term,
// on a first-come-first-served basis". Figure 2: "currentTerm, votedFor:
// persistent state ... updated on stable storage before responding to
// RPCs" — the HardState carrying the vote is in the same Ready as the
// response, so the caller persists it before the response leaves.
TEST(PaperElection, OneVotePerTermPersistedBeforeReply) {
  Lone l({1, 2, 3});
  l.nt.peer(1).record_readies = true;
  auto vote = [](NodeId from, Term term) {
    Message m = MakeMsg(MT::kVote, from, 1, term);
    m.log_term = 1;
    m.index = 1;
    return m;
  };

  std::vector<Message> out = l.Step(vote(2, 2));
  ASSERT_EQ(OfType(out, MT::kVoteResp).size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(out[0].term, 2u);
  ASSERT_FALSE(l.nt.peer(1).recorded.empty());
  const Ready& rd = l.nt.peer(1).recorded.back();
  EXPECT_EQ(rd.hard_state.term, 2u);
  EXPECT_EQ(rd.hard_state.vote, 2u);
  EXPECT_EQ(OfType(rd.messages, MT::kVoteResp).size(), 1u)
      << "vote and its response must be in the same Ready";

  // A second candidate of the same term is refused.
  out = l.Step(vote(3, 2));
  ASSERT_EQ(OfType(out, MT::kVoteResp).size(), 1u);
  EXPECT_TRUE(out[0].reject);
  EXPECT_EQ(l.nt.storage(1).GetHardState().vote, 2u);

  // The same candidate asking again (a retransmission) gets the same answer.
  out = l.Step(vote(2, 2));
  ASSERT_EQ(OfType(out, MT::kVoteResp).size(), 1u);
  EXPECT_FALSE(out[0].reject);

  // A new term frees the vote.
  out = l.Step(vote(3, 3));
  ASSERT_EQ(OfType(out, MT::kVoteResp).size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(l.nt.storage(1).GetHardState(), (HardState{3, 3, 1}));
}

// §5.4.1: "the voter denies its vote if its own log is more up-to-date
// than that of the candidate. ... If the logs have last entries with
// different terms, then the log with the later term is more up-to-date. If
// the logs end with the same term, then whichever log is longer is more
// up-to-date."
TEST(PaperElection, VoteOnlyForUpToDateCandidate) {
  struct Case {
    Term log_term;
    Index index;
    bool granted;
  } cases[] = {
      {1, 3, false}, {1, 5, false},  // older last term, however long
      {2, 2, false},                 // same last term, shorter
      {2, 3, true},  {2, 4, true},   // same last term, as long or longer
      {3, 1, true},  {3, 3, true},   // later last term, however short
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "candidate last (" << c.log_term << "," << c.index << ")");
    Network nt;
    // Voter's log: (1,1) (2,2) (2,3).
    nt.AddPeer(1, LogStorage(Voters({1, 2, 3}), {1, 2, 2}, {2, kNone, 1}));
    nt.Isolate(1);
    Message m = MakeMsg(MT::kVote, 2, 1, 3);
    m.log_term = c.log_term;
    m.index = c.index;
    (void)nt.node(1).Step(m);
    std::vector<Message> out = OfType(nt.TakeQueued(), MT::kVoteResp);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(!out[0].reject, c.granted);
    // Either way the voter moved to the candidate's term (§5.1).
    EXPECT_EQ(nt.node(1).term(), 3u);
    EXPECT_EQ(nt.storage(1).GetHardState().vote, c.granted ? 2u : kNone);
  }
}

// §5.1: "If one server's current term is smaller than the other's, then it
// updates its current term to the larger value. If a candidate or leader
// discovers that its term is out of date, it immediately reverts to
// follower state."
TEST(PaperElection, HigherTermMakesAnyRoleFollower) {
  for (StateRole role :
       {StateRole::kFollower, StateRole::kCandidate, StateRole::kLeader}) {
    for (MT type : {MT::kApp, MT::kHeartbeat, MT::kVote}) {
      SCOPED_TRACE(::testing::Message()
                   << StateRoleName(role) << " gets " << MessageTypeName(type));
      Network nt({1, 2, 3});
      if (role == StateRole::kLeader) nt.Campaign(1);
      nt.Isolate(1);
      if (role == StateRole::kCandidate) nt.Campaign(1);
      ASSERT_EQ(nt.node(1).role(), role);
      const Term t = nt.node(1).term() + 1;
      Message m = MakeMsg(type, 2, 1, t);
      // Log position of the bootstrap entry: a match for anyone.
      m.log_term = 1;
      m.index = 1;
      (void)nt.node(1).Step(m);
      nt.TakeQueued();
      EXPECT_EQ(nt.node(1).role(), StateRole::kFollower);
      EXPECT_EQ(nt.node(1).term(), t);
      EXPECT_EQ(nt.storage(1).GetHardState().term, t);
      // A vote request does not say who leads; the others come from one.
      EXPECT_EQ(nt.node(1).leader(), type == MT::kVote ? kNone : 2u);
    }
  }
}

// §5.1: "If a server receives a request with a stale term number, it
// rejects the request." The stale leader's entries are not appended.
TEST(PaperElection, StaleTermRequestIsRejected) {
  Network nt;
  nt.AddPeer(1, LogStorage(Voters({1, 2, 3}), {1, 2, 3}, {3, kNone, 1}));
  nt.Isolate(1);
  Message m = MakeMsg(MT::kApp, 2, 1, 2);
  m.log_term = 2;
  m.index = 2;
  m.entries = {Entry{2, 3, EntryType::kNormal, "stale"}};
  (void)nt.node(1).Step(m);
  std::vector<Message> out = nt.TakeQueued();
  for (const Message& r : OfType(out, MT::kAppResp)) {
    // If answered at all, the answer carries the newer term so the stale
    // leader learns it.
    EXPECT_EQ(r.term, 3u);
  }
  EXPECT_EQ(nt.node(1).term(), 3u);
  EXPECT_EQ(nt.node(1).leader(), kNone);
  std::vector<Entry> log = StoredEntries(nt.storage(1));
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].term, 3u) << "entry 3 overwritten by a stale leader";
}

// §5.2: "If the AppendEntries RPC is received from another server claiming
// to be leader and the leader's term is at least as large as the
// candidate's current term, then the candidate recognizes the leader as
// legitimate and returns to follower state."
TEST(PaperElection, CandidateYieldsToLeaderOfSameTerm) {
  for (MT type : {MT::kApp, MT::kHeartbeat}) {
    SCOPED_TRACE(MessageTypeName(type));
    Lone l({1, 2, 3});
    l.node().Campaign();
    l.nt.TakeQueued();
    ASSERT_EQ(l.node().role(), StateRole::kCandidate);
    Message m = MakeMsg(type, 3, 1, 2);
    m.log_term = 1;
    m.index = 1;
    l.Step(m);
    EXPECT_EQ(l.node().role(), StateRole::kFollower);
    EXPECT_EQ(l.node().leader(), 3u);
    EXPECT_EQ(l.node().term(), 2u);
  }
}

// §5.2: "Leaders send periodic heartbeats ... to all followers in order to
// maintain their authority." A healthy cluster elects one leader that all
// follow, and it stays leader as time passes.
TEST(PaperElection, LeaderIsElectedAndKept) {
  Network nt({1, 2, 3, 4, 5});
  SCOPED_TRACE(nt.SeedInfo());
  NodeId lead = nt.TickUntilLeader(100);
  ASSERT_NE(lead, kNone);
  const Term term = nt.node(lead).term();
  nt.TickAll(200);
  EXPECT_EQ(nt.Leader(), lead);
  for (NodeId id : nt.ids()) {
    EXPECT_EQ(nt.node(id).leader(), lead) << "peer " << id;
    EXPECT_EQ(nt.node(id).term(), term) << "peer " << id;
  }
}

// §5.2: "If many followers become candidates at the same time, votes could
// be split so that no candidate obtains a majority. When this happens, each
// candidate will time out and start a new election by incrementing its term
// ... Raft uses randomized election timeouts to ensure that split votes are
// rare and that they are resolved quickly."
TEST(PaperElection, SplitVoteIsResolved) {
  Network nt({1, 2, 3, 4});
  SCOPED_TRACE(nt.SeedInfo());
  // 1 can reach only 3, 2 only 4: both campaign in term 2 before any vote
  // request is delivered, so each gets two of the four votes.
  nt.Cut(1, 4);
  nt.Cut(2, 3);
  nt.node(1).Campaign();
  nt.node(2).Campaign();
  nt.Stabilize();
  EXPECT_EQ(nt.node(1).role(), StateRole::kCandidate);
  EXPECT_EQ(nt.node(2).role(), StateRole::kCandidate);
  EXPECT_EQ(nt.Leader(), kNone);
  EXPECT_EQ(nt.storage(3).GetHardState().vote, 1u);
  EXPECT_EQ(nt.storage(4).GetHardState().vote, 2u);

  nt.Recover();
  NodeId lead = nt.TickUntilLeader(200);
  ASSERT_NE(lead, kNone);
  EXPECT_GT(nt.node(lead).term(), 2u);
  nt.TickAll(5);
  for (NodeId id : nt.ids()) EXPECT_EQ(nt.node(id).leader(), lead);
}

// Same sentence, across many seeds: when every member starts at the same
// moment, the randomized timeouts still produce a leader within a few
// election timeouts — and never two leaders in one term (checked by the
// harness on every Ready).
TEST(PaperElection, SimultaneousStartElectsOneLeaderForManySeeds) {
  for (uint64_t seed = 1; seed <= 30; seed++) {
    Network nt({1, 2, 3, 4, 5}, nullptr, seed);
    SCOPED_TRACE(nt.SeedInfo());
    NodeId lead = nt.TickUntilLeader(10 * 10);
    ASSERT_NE(lead, kNone);
    nt.TickAll(3);
    for (NodeId id : nt.ids()) EXPECT_EQ(nt.node(id).leader(), nt.Leader());
  }
}

// §5.4.1: "Raft uses the voting process to prevent a candidate from
// winning an election unless its log contains all committed entries. A
// candidate must contact a majority of the cluster in order to be elected,
// which means that every committed entry must be present in at least one
// of those servers." End to end: a member that missed committed entries
// rejoins with a higher term; it may force an election, but cannot win it.
TEST(PaperElection, LaggingMemberWithHigherTermCannotWin) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  nt.Isolate(3);
  for (int i = 0; i < 5; i++) ASSERT_TRUE(nt.Propose(1, "c").ok());
  const Index commit = nt.storage(1).GetHardState().commit;
  nt.Tick(3, 30);
  ASSERT_GT(nt.node(3).term(), nt.node(1).term());
  nt.Recover();
  for (int i = 0; i < 100; i++) {
    nt.TickAll(1);
    ASSERT_NE(nt.node(3).role(), StateRole::kLeader) << "round " << i;
  }
  NodeId lead = nt.TickUntilAgreedLeader(100);
  ASSERT_NE(lead, kNone);
  EXPECT_NE(lead, 3u);
  EXPECT_GE(nt.storage(3).GetHardState().commit, commit);
  nt.ExpectLogsMatch(lead);
}

// §5.4.2 / Figure 8 caption: a new leader appends an entry of its own term
// at the start of its term (§8: "each leader commit a blank no-op entry
// into the log at the start of its term").
TEST(PaperElection, NewLeaderAppendsEmptyEntryOfItsTerm) {
  Network nt({1, 2, 3});
  nt.peer(1).record_readies = true;
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
  std::vector<Entry> log = StoredEntries(nt.storage(1));
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].index, 2u);
  EXPECT_EQ(log[0].term, 2u);
  EXPECT_TRUE(log[0].data.empty());
  EXPECT_EQ(log[0].type, EntryType::kNormal);
  // It is committed once replicated.
  for (NodeId id : nt.ids()) {
    EXPECT_EQ(nt.storage(id).GetHardState().commit, 2u) << "peer " << id;
    EXPECT_EQ(nt.peer(id).applied, 2u) << "peer " << id;
  }
}

}  // namespace
}  // namespace keel::raft::test
