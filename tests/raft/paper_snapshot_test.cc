// Scenario tests of log compaction and InstallSnapshot (§7 of the Raft
// paper, Ongaro & Ousterhout, extended version).
#include <gtest/gtest.h>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

// 1 leads {1, 2, 3}; 3 misses ten entries, after which the leader
// snapshots its state at the applied index and discards the log before it.
std::unique_ptr<Network> CompactedWhileFollowerAway() {
  auto nt = std::make_unique<Network>(std::vector<NodeId>{1, 2, 3});
  nt->Campaign(1);
  nt->Isolate(3);
  for (int i = 0; i < 10; i++) {
    EXPECT_TRUE(nt->Propose(1, "e" + std::to_string(i)).ok());
  }
  Peer& l = nt->peer(1);
  EXPECT_EQ(l.applied, 12u);
  auto snap = l.storage->CreateSnapshot(l.applied, &l.conf_state, "state@12");
  EXPECT_TRUE(snap.ok());
  EXPECT_TRUE(l.storage->Compact(l.applied).ok());
  EXPECT_EQ(l.storage->FirstIndex(), 13u);
  return nt;
}

// §7: "the leader must occasionally send snapshots to followers that lag
// behind. This happens when the leader has already discarded the next log
// entry that it needs to send to a follower." ... "When the follower
// receives a snapshot with this RPC ... the follower discards its entire
// log; it is all superseded by the snapshot." Then replication resumes
// from the snapshot.
TEST(PaperSnapshot, LaggingFollowerReceivesSnapshotAndResumes) {
  auto nt = CompactedWhileFollowerAway();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Recover();
  nt->ClearTrace();
  for (int i = 0; i < 10 && nt->peer(3).applied_snapshots.empty(); i++) {
    nt->Tick(1);
  }
  EXPECT_EQ(nt->CountDelivered(MT::kSnap, 1, 3), 1u);
  ASSERT_EQ(nt->peer(3).applied_snapshots.size(), 1u);
  const Snapshot& s = nt->peer(3).applied_snapshots[0];
  EXPECT_EQ(s.metadata.index, 12u);
  EXPECT_EQ(s.metadata.term, 2u);
  EXPECT_EQ(s.data, "state@12");
  EXPECT_EQ(nt->peer(3).applied, 12u);
  EXPECT_EQ(nt->storage(3).FirstIndex(), 13u);
  EXPECT_GE(nt->storage(3).GetHardState().commit, 12u);

  // Replication resumes from the snapshot with ordinary appends.
  ASSERT_TRUE(nt->Propose(1, "after").ok());
  EXPECT_EQ(nt->peer(3).applied_entries.back().data, "after");
  EXPECT_EQ(nt->peer(3).applied, 13u);
  EXPECT_EQ(nt->node(1).GetStatus().progress[3].state,
            ProgressState::kReplicate);
  EXPECT_EQ(nt->CountDelivered(MT::kSnap, 1, 3), 1u) << "snapshot resent";
  nt->ExpectLogsMatch(1);
}

// etcd raft (ReportSnapshot): the transport reports that sending a
// snapshot failed; the leader goes back to probing the follower and
// retries, so a lost snapshot does not stall it forever.
TEST(PaperSnapshot, ReportSnapshotFailureReturnsToProbe) {
  auto nt = CompactedWhileFollowerAway();
  SCOPED_TRACE(nt->SeedInfo());
  nt->Recover();
  nt->Ignore(MT::kSnap);
  for (int i = 0; i < 10 && nt->CountSent(MT::kSnap, 1, 3) == 0; i++) {
    nt->Tick(1);
  }
  ASSERT_EQ(nt->CountSent(MT::kSnap, 1, 3), 1u);
  EXPECT_EQ(nt->node(1).GetStatus().progress[3].state,
            ProgressState::kSnapshot);
  // While the snapshot is believed in flight, nothing more is sent.
  nt->Tick(1, 3);
  EXPECT_EQ(nt->CountSent(MT::kSnap, 1, 3), 1u);

  nt->node(1).ReportSnapshot(3, /*failed=*/true);
  nt->Stabilize();
  EXPECT_EQ(nt->node(1).GetStatus().progress[3].state, ProgressState::kProbe);

  nt->Recover();
  for (int i = 0; i < 10 && nt->peer(3).applied_snapshots.empty(); i++) {
    nt->Tick(1);
  }
  ASSERT_EQ(nt->peer(3).applied_snapshots.size(), 1u);
  EXPECT_EQ(nt->peer(3).applied, 12u);
  nt->Tick(1, 2);
  EXPECT_EQ(nt->node(1).GetStatus().progress[3].state,
            ProgressState::kReplicate);
}

// A follower that restarts after installing a snapshot comes back from its
// storage (the snapshot plus the entries after it) and keeps up.
TEST(PaperSnapshot, FollowerRestartsFromInstalledSnapshot) {
  auto nt = CompactedWhileFollowerAway();
  nt->Recover();
  for (int i = 0; i < 10 && nt->peer(3).applied_snapshots.empty(); i++) {
    nt->Tick(1);
  }
  ASSERT_TRUE(nt->Propose(1, "before restart").ok());
  nt->Restart(3);
  ASSERT_TRUE(nt->Propose(1, "after restart").ok());
  nt->Tick(1, 2);
  EXPECT_EQ(nt->peer(3).applied_entries.back().data, "after restart");
  nt->ExpectLogsMatch(1);
}

}  // namespace
}  // namespace keel::raft::test
