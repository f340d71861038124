// Unit tests of RawNode's Ready/Advance contract on small clusters driven
// by hand (no shared harness, so each step is visible).
#include "raft/raw_node.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>

#include "raft/codec.h"

namespace keel::raft {
namespace {

struct Member {
  std::unique_ptr<MemoryStorage> storage = std::make_unique<MemoryStorage>();
  std::unique_ptr<SeededRng> rng;
  std::unique_ptr<RawNode> node;
  std::vector<Entry> applied;
};

// A tiny cluster with a FIFO network and no faults.
class MiniCluster {
 public:
  explicit MiniCluster(int n, uint64_t seed = 1) {
    ConfState cs;
    for (int i = 1; i <= n; i++) cs.voters.push_back(i);
    for (int i = 1; i <= n; i++) {
      Member& m = members_[i];
      Snapshot s;
      s.metadata.index = 1;
      s.metadata.term = 1;
      s.metadata.conf_state = cs;
      EXPECT_TRUE(m.storage->ApplySnapshot(s).ok());
      m.storage->SetHardState({1, kNone, 1});
      m.rng = std::make_unique<SeededRng>(seed * 100 + i);
      Config c;
      c.id = i;
      c.storage = m.storage.get();
      c.rng = m.rng.get();
      c.applied = 1;
      auto node = RawNode::Create(c);
      EXPECT_TRUE(node.ok()) << node.status().ToString();
      m.node = std::move(node).value();
    }
  }

  RawNode& node(NodeId id) { return *members_.at(id).node; }
  Member& member(NodeId id) { return members_.at(id); }

  // Handles every Ready and delivers every message until quiet.
  void Stabilize() {
    for (int round = 0; round < 10000; round++) {
      bool progress = false;
      for (auto& [id, m] : members_) {
        while (m.node->HasReady()) {
          progress = true;
          Ready rd = m.node->GetReady();
          if (!rd.snapshot.IsEmpty()) {
            EXPECT_TRUE(m.storage->ApplySnapshot(rd.snapshot).ok());
          }
          EXPECT_TRUE(m.storage->Append(rd.entries).ok());
          if (!rd.hard_state.IsEmpty()) m.storage->SetHardState(rd.hard_state);
          for (auto& msg : rd.messages) queue_.push_back(std::move(msg));
          for (const Entry& e : rd.committed_entries) {
            m.applied.push_back(e);
            if (e.type == EntryType::kConfChange) {
              ConfChange cc;
              ASSERT_TRUE(DecodeConfChange(e.data, &cc));
              m.node->ApplyConfChange(cc);
            }
          }
          for (auto& rs : rd.read_states) reads_[id].push_back(rs);
          m.node->Advance(rd);
        }
      }
      while (!queue_.empty()) {
        progress = true;
        Message msg = std::move(queue_.front());
        queue_.pop_front();
        auto it = members_.find(msg.to);
        if (it != members_.end()) it->second.node->Step(std::move(msg));
      }
      if (!progress) return;
    }
    FAIL() << "cluster did not stabilize";
  }

  std::map<NodeId, std::vector<ReadState>> reads_;

 private:
  std::map<NodeId, Member> members_;
  std::deque<Message> queue_;
};

TEST(RawNodeTest, SingleMemberElectsItselfAndCommits) {
  MiniCluster c(1);
  c.node(1).Campaign();
  c.Stabilize();
  EXPECT_EQ(c.node(1).role(), StateRole::kLeader);
  ASSERT_TRUE(c.node(1).Propose("hello").ok());
  c.Stabilize();
  ASSERT_FALSE(c.member(1).applied.empty());
  EXPECT_EQ(c.member(1).applied.back().data, "hello");
  EXPECT_EQ(c.node(1).GetStatus().hard_state.commit,
            c.member(1).applied.back().index);
}

TEST(RawNodeTest, ThreeMembersReplicateAndApplyInOrder) {
  MiniCluster c(3);
  c.node(1).Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1).role(), StateRole::kLeader);
  EXPECT_EQ(c.node(2).leader(), 1u);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(c.node(1 + i % 3).Propose("v" + std::to_string(i)).ok());
  }
  c.Stabilize();
  for (NodeId id = 1; id <= 3; id++) {
    EXPECT_EQ(c.member(id).applied, c.member(1).applied) << "member " << id;
  }
  // The empty entry of the leader's term plus ten proposals.
  EXPECT_EQ(c.member(1).applied.size(), 11u);
  EXPECT_TRUE(c.member(1).applied[0].data.empty());
}

TEST(RawNodeTest, LeaderCommitsOnlyAfterItsOwnAppendIsPersisted) {
  MiniCluster c(1);
  c.node(1).Campaign();
  c.Stabilize();
  ASSERT_TRUE(c.node(1).Propose("x").ok());
  Ready rd = c.node(1).GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  // Not yet persisted: a single member has no quorum for it.
  EXPECT_TRUE(rd.committed_entries.empty());
  EXPECT_LT(c.node(1).GetStatus().hard_state.commit, rd.entries[0].index);
  ASSERT_TRUE(c.member(1).storage->Append(rd.entries).ok());
  c.node(1).Advance(rd);
  EXPECT_EQ(c.node(1).GetStatus().hard_state.commit, rd.entries[0].index);
}

TEST(RawNodeTest, ReadIndexOnLeaderAndFollower) {
  MiniCluster c(3);
  c.node(1).Campaign();
  c.Stabilize();
  c.node(1).ReadIndex("a");
  c.node(2).ReadIndex("b");
  c.Stabilize();
  Index commit = c.node(1).GetStatus().hard_state.commit;
  ASSERT_EQ(c.reads_[1].size(), 1u);
  EXPECT_EQ(c.reads_[1][0], (ReadState{commit, "a"}));
  ASSERT_EQ(c.reads_[2].size(), 1u);
  EXPECT_EQ(c.reads_[2][0], (ReadState{commit, "b"}));
}

TEST(RawNodeTest, StepRefusesLocalMessages) {
  MiniCluster c(1);
  Message m;
  m.type = MessageType::kHup;
  EXPECT_EQ(c.node(1).Step(m).code(), Status::Code::kStepLocalMessage);
  m.type = MessageType::kAppResp;
  m.from = 9;
  m.term = 1;
  EXPECT_EQ(c.node(1).Step(m).code(), Status::Code::kStepPeerNotFound);
}

TEST(RawNodeTest, ConfigValidation) {
  MemoryStorage s;
  SeededRng rng(1);
  Config c;
  c.storage = &s;
  c.rng = &rng;
  EXPECT_FALSE(RawNode::Create(c).ok());  // id 0
  c.id = 1;
  c.election_tick = 1;
  EXPECT_FALSE(RawNode::Create(c).ok());
  c.election_tick = 10;
  c.read_only_option = ReadOnlyOption::kLeaseBased;
  EXPECT_FALSE(RawNode::Create(c).ok());  // lease needs check_quorum
  c.check_quorum = true;
  EXPECT_TRUE(RawNode::Create(c).ok());
}

}  // namespace
}  // namespace keel::raft
