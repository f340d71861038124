// Scenario tests of client proposals: where they go (§8 of the Raft paper,
// Ongaro & Ousterhout, extended version) and how many may be outstanding
// (etcd raft's MaxUncommittedEntriesSize; thesis §10.2 flow control).
#include <gtest/gtest.h>

#include <string>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

// §8: "Clients of Raft send all of their requests to the leader." A
// follower given a proposal forwards it to the leader (etcd raft), and it
// is committed and applied everywhere.
TEST(PaperProposal, FollowerForwardsToLeader) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  ASSERT_TRUE(nt.Propose(2, "via 2").ok());
  EXPECT_EQ(nt.CountDelivered(MT::kProp, 2, 1), 1u);
  for (NodeId id : nt.ids()) {
    EXPECT_EQ(nt.peer(id).applied_entries.back().data, "via 2")
        << "peer " << id;
  }
}

// With disable_proposal_forwarding a follower refuses instead, so the
// application can redirect the client itself.
TEST(PaperProposal, ForwardingDisabledDropsOnFollower) {
  Network nt({1, 2, 3},
             [](Config* c) { c->disable_proposal_forwarding = true; });
  nt.Campaign(1);
  Status st = nt.Propose(2, "via 2");
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
  EXPECT_EQ(nt.CountSent(MT::kProp), 0u);
  EXPECT_TRUE(nt.Propose(1, "via 1").ok());
  EXPECT_EQ(nt.peer(2).applied_entries.back().data, "via 1");
}

// With no known leader there is nowhere to send a proposal.
TEST(PaperProposal, DroppedWithoutLeader) {
  Network nt({1, 2, 3});
  Status st = nt.Propose(1, "nobody leads");
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
  nt.Isolate(1);
  nt.Campaign(1);  // a candidate knows no leader either
  st = nt.Propose(1, "still nobody");
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
}

// etcd raft (MaxUncommittedEntriesSize): a leader bounds the payload of
// entries it has appended but not committed, so a leader cut off from its
// followers cannot grow its log without limit. Proposals beyond the bound
// are dropped until entries commit.
TEST(PaperProposal, UncommittedBoundDropsUntilCommit) {
  Network nt({1, 2, 3},
             [](Config* c) { c->max_uncommitted_entries_size = 300; });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  nt.Isolate(2);
  nt.Isolate(3);
  const std::string kData(100, 'x');
  for (int i = 0; i < 3; i++) {
    EXPECT_TRUE(nt.Propose(1, kData).ok()) << "proposal " << i;
  }
  Status st = nt.Propose(1, kData);
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
  const Index last = nt.storage(1).LastIndex();
  EXPECT_EQ(last, 5u);  // the no-op and three proposals

  // Entries without payload do not count against the bound (a leader's
  // no-op must never be refused).
  EXPECT_TRUE(nt.Propose(1, "").ok());

  nt.Recover();
  for (int i = 0;
       i < 5 && nt.storage(1).GetHardState().commit < nt.storage(1).LastIndex();
       i++) {
    nt.Tick(1);
  }
  ASSERT_EQ(nt.storage(1).GetHardState().commit, nt.storage(1).LastIndex());
  for (int i = 0; i < 3; i++) {
    EXPECT_TRUE(nt.Propose(1, kData).ok()) << "after commit, proposal " << i;
  }
}

}  // namespace
}  // namespace keel::raft::test
