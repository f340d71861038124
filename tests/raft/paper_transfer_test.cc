// Scenario tests of leadership transfer, §3.10 of Ongaro's thesis
// ("Consensus: Bridging Theory and Practice").
#include <gtest/gtest.h>

#include <algorithm>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

// check_quorum is on in these tests so that the transferee's election must
// bypass the voters' leader lease, as a real transfer does.
std::unique_ptr<Network> LedCluster() {
  auto nt = std::make_unique<Network>(
      std::vector<NodeId>{1, 2, 3}, [](Config* c) { c->check_quorum = true; });
  nt->Campaign(1);
  EXPECT_EQ(nt->node(1).role(), StateRole::kLeader);
  EXPECT_TRUE(nt->Propose(1, "x").ok());
  nt->ClearTrace();
  return nt;
}

// Thesis §3.10: "3. The prior leader sends a TimeoutNow request to the
// target server. This request has the same effect as the target server's
// election timer firing: the target server starts a new election
// (incrementing its term) and is likely to become the next leader."
TEST(PaperTransfer, ToUpToDateFollower) {
  auto nt = LedCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->node(1).TransferLeader(2);
  nt->Stabilize();
  EXPECT_EQ(nt->CountDelivered(MT::kTimeoutNow, 1, 2), 1u);
  EXPECT_EQ(nt->node(2).role(), StateRole::kLeader);
  EXPECT_EQ(nt->node(2).term(), 3u);
  EXPECT_EQ(nt->node(1).role(), StateRole::kFollower);
  EXPECT_EQ(nt->node(1).leader(), 2u);
  EXPECT_EQ(nt->node(1).GetStatus().lead_transferee, kNone);
  // The new leader works.
  ASSERT_TRUE(nt->Propose(2, "after").ok());
  EXPECT_EQ(nt->peer(1).applied_entries.back().data, "after");
}

// A transfer may be asked of any member; a follower passes it on.
TEST(PaperTransfer, RequestedOnFollower) {
  auto nt = LedCluster();
  nt->node(3).TransferLeader(3);
  nt->Stabilize();
  EXPECT_EQ(nt->node(3).role(), StateRole::kLeader);
  EXPECT_EQ(nt->Leader(), 3u);
}

// Thesis §3.10: "2. The prior leader fully updates the target server's log
// to match its own, using the normal log replication mechanism. 3. The
// prior leader sends a TimeoutNow request".
TEST(PaperTransfer, ToLaggingFollowerCatchesItUpFirst) {
  auto nt = LedCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Isolate(3);
  for (int i = 0; i < 5; i++) ASSERT_TRUE(nt->Propose(1, "lag").ok());
  const Index last = nt->storage(1).LastIndex();
  ASSERT_LT(nt->storage(3).LastIndex(), last);
  nt->Recover();
  nt->ClearTrace();

  nt->node(1).TransferLeader(3);
  nt->Stabilize();
  EXPECT_EQ(nt->node(3).role(), StateRole::kLeader);
  // The kTimeoutNow went out only after 3 had acknowledged the last entry.
  const auto& trace = nt->trace();
  auto timeout = std::find_if(trace.begin(), trace.end(), [](const auto& ev) {
    return ev.kind == TraceEvent::Kind::kSent && ev.msg.type == MT::kTimeoutNow;
  });
  ASSERT_NE(timeout, trace.end());
  auto caught_up = std::find_if(trace.begin(), timeout, [&](const auto& ev) {
    return ev.kind == TraceEvent::Kind::kDelivered &&
           ev.msg.type == MT::kAppResp && ev.msg.from == 3 && !ev.msg.reject &&
           ev.msg.index >= last;
  });
  EXPECT_NE(caught_up, timeout) << "TimeoutNow before the log was caught up";
  // Nothing the old leader had was lost.
  EXPECT_GE(nt->storage(3).GetHardState().commit, last);
}

// Thesis §3.10: "1. The prior leader stops accepting new client requests."
TEST(PaperTransfer, ProposalsDroppedDuringTransfer) {
  auto nt = LedCluster();
  nt->Isolate(3);  // the transfer cannot complete
  nt->node(1).TransferLeader(3);
  nt->Stabilize();
  EXPECT_EQ(nt->node(1).GetStatus().lead_transferee, 3u);
  Status st = nt->Propose(1, "during");
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
  ConfChange cc;
  cc.changes = {{ConfChangeType::kAddLearnerNode, 4}};
  st = nt->ProposeConfChange(1, cc);
  EXPECT_TRUE(st.IsProposalDropped()) << st.ToString();
}

// A transfer to a member that does not exist, or to the leader itself, is
// ignored: the leader keeps leading and accepting proposals.
TEST(PaperTransfer, ToNonMemberOrSelfIsIgnored) {
  for (NodeId target : {NodeId{4}, NodeId{1}}) {
    SCOPED_TRACE(::testing::Message() << "transfer to " << target);
    auto nt = LedCluster();
    nt->node(1).TransferLeader(target);
    nt->Stabilize();
    EXPECT_EQ(nt->node(1).role(), StateRole::kLeader);
    EXPECT_EQ(nt->node(1).term(), 2u);
    EXPECT_EQ(nt->node(1).GetStatus().lead_transferee, kNone);
    EXPECT_EQ(nt->CountSent(MT::kTimeoutNow), 0u);
    EXPECT_TRUE(nt->Propose(1, "still ok").ok());
  }
}

// Thesis §3.10: "If the transfer does not complete within about one
// election timeout, the prior leader aborts the transfer and resumes
// accepting client requests."
TEST(PaperTransfer, AbortedAfterElectionTimeout) {
  auto nt = LedCluster();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Isolate(3);
  nt->node(1).TransferLeader(3);
  nt->Stabilize();
  ASSERT_EQ(nt->node(1).GetStatus().lead_transferee, 3u);
  nt->Tick(1);
  EXPECT_EQ(nt->node(1).GetStatus().lead_transferee, 3u) << "aborted early";
  nt->Tick(1, nt->peer(1).config.election_tick);
  EXPECT_EQ(nt->node(1).GetStatus().lead_transferee, kNone);
  EXPECT_EQ(nt->node(1).role(), StateRole::kLeader);
  EXPECT_TRUE(nt->Propose(1, "resumed").ok());
  EXPECT_EQ(nt->peer(2).applied_entries.back().data, "resumed");
}

// A second request for the same transferee does not restart it; a request
// for another member replaces it.
TEST(PaperTransfer, NewTargetReplacesPendingTransfer) {
  auto nt = LedCluster();
  nt->Isolate(3);
  nt->node(1).TransferLeader(3);
  nt->Stabilize();
  ASSERT_EQ(nt->node(1).GetStatus().lead_transferee, 3u);
  nt->node(1).TransferLeader(2);
  nt->Stabilize();
  EXPECT_EQ(nt->node(2).role(), StateRole::kLeader);
}

}  // namespace
}  // namespace keel::raft::test
