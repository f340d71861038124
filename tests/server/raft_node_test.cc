// Tests of the RaftNode loop: three members in one process, each with a
// disk-backed log in its own directory, wired by an in-process sender.
#include "server/raft_node.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "wal/env.h"

namespace keel::server {
namespace {

using namespace std::chrono_literals;

// Records applied payloads; "durable" = in memory (the test restarts only
// the log, and replays everything after AppliedIndex()).
class LogMachine : public StateMachine {
 public:
  uint64_t AppliedIndex() const override { return applied_; }
  void Apply(const raft::Entry& e) override {
    std::lock_guard lock(mu_);
    if (e.index <= applied_) return;
    if (!e.data.empty()) values_.push_back(e.data);
    applied_ = e.index;
  }
  void ApplyConfChange(const raft::Entry& e, const raft::ConfChange&,
                       const raft::ConfState&) override {
    applied_ = e.index;
  }
  Status RestoreSnapshot(const raft::Snapshot& s) override {
    applied_ = s.metadata.index;
    return Status::OK();
  }
  std::string SnapshotData(uint64_t) override { return "x"; }
  Status Sync() override { return Status::OK(); }

  std::vector<std::string> values() const {
    std::lock_guard lock(mu_);
    return values_;
  }

 private:
  mutable std::mutex mu_;
  std::atomic<uint64_t> applied_{0};
  std::vector<std::string> values_;
};

class Cluster;

class LocalSender : public MessageSender {
 public:
  LocalSender(Cluster* c) : c_(c) {}
  void Send(std::vector<raft::Message> msgs) override;

 private:
  Cluster* c_;
};

struct Member {
  std::string dir;
  std::unique_ptr<wal::DiskStorage> storage;
  std::unique_ptr<LogMachine> sm;
  std::unique_ptr<LocalSender> sender;
  std::unique_ptr<RaftNode> node;
};

class Cluster {
 public:
  explicit Cluster(int n, std::function<void(RaftNodeOptions&)> tweak = {})
      : tweak_(std::move(tweak)) {
    root_ = std::filesystem::temp_directory_path() /
            ("keel-raftnode-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter_++));
    std::filesystem::remove_all(root_);
    for (int i = 1; i <= n; i++) cs_.voters.push_back(i);
    for (int i = 1; i <= n; i++) Start(i, /*bootstrap=*/true);
  }
  ~Cluster() {
    for (auto& [id, m] : members_) {
      if (m.node) m.node->Stop();
    }
    members_.clear();
    std::filesystem::remove_all(root_);
  }

  void Start(raft::NodeId id, bool bootstrap) {
    Member& m = members_[id];
    m.dir = (root_ / std::to_string(id)).string();
    wal::DiskStorageOptions o;
    o.dir = m.dir;
    auto st = wal::DiskStorage::Open(wal::Env::Posix(), o);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    m.storage = std::move(st).value();
    if (bootstrap) {
      raft::Snapshot s;
      s.metadata = {cs_, 1, 1};
      ASSERT_TRUE(m.storage->ApplySnapshot(s).ok());
      ASSERT_TRUE(m.storage->SetHardState({1, raft::kNone, 1}).ok());
    }
    if (!m.sm) m.sm = std::make_unique<LogMachine>();
    m.sender = std::make_unique<LocalSender>(this);
    RaftNodeOptions opts;
    opts.id = id;
    opts.heartbeat_ms = 10;
    opts.election_ticks = 10;
    opts.seed = 42;
    if (tweak_) tweak_(opts);
    m.node = std::make_unique<RaftNode>(opts, m.storage.get(), m.sm.get(),
                                        m.sender.get());
    ASSERT_TRUE(m.node->Start().ok());
  }

  void Kill(raft::NodeId id) {
    Member& m = members_.at(id);
    m.node->Stop();
    {
      std::lock_guard lock(mu_);
      m.node.reset();
    }
    m.storage.reset();
  }

  void Deliver(raft::Message msg) {
    if (msg.type == raft::MessageType::kApp && msg.entries.empty()) {
      empty_appends_++;
    }
    std::lock_guard lock(mu_);
    auto it = members_.find(msg.to);
    if (it != members_.end() && it->second.node) {
      it->second.node->Step(std::move(msg));
    }
  }

  // The leader once every running member knows it, or kNone.
  raft::NodeId WaitLeader();

  Member& member(raft::NodeId id) { return members_.at(id); }
  // Appends without entries sent so far (probes and commit notices).
  int empty_appends() const { return empty_appends_; }

 private:
  static inline int counter_ = 0;
  std::function<void(RaftNodeOptions&)> tweak_;
  std::atomic<int> empty_appends_{0};
  std::filesystem::path root_;
  raft::ConfState cs_;
  std::mutex mu_;
  std::map<raft::NodeId, Member> members_;
};

// Polls pred() every millisecond until it holds or the deadline passes.
template <typename F>
bool PollFor(F pred, std::chrono::milliseconds timeout = 20s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);  // poll interval
  }
  return pred();
}

raft::NodeId Cluster::WaitLeader() {
  raft::NodeId lead = raft::kNone;
  PollFor([&] {
    lead = raft::kNone;
    for (auto& [id, m] : members_) {
      if (!m.node) continue;
      auto s = m.node->GetStatus();
      if (s.leader == raft::kNone) return false;
      if (lead != raft::kNone && s.leader != lead) return false;
      lead = s.leader;
    }
    return lead != raft::kNone && members_.at(lead).node != nullptr;
  });
  return lead;
}

void LocalSender::Send(std::vector<raft::Message> msgs) {
  for (auto& m : msgs) c_->Deliver(std::move(m));
}

TEST(RaftNodeTest, ElectsReplicatesAndReads) {
  Cluster c(3);
  raft::NodeId lead = c.WaitLeader();
  ASSERT_NE(lead, raft::kNone);
  // Propose through every member (followers forward).
  for (int i = 0; i < 30; i++) {
    raft::NodeId via = 1 + i % 3;
    ASSERT_TRUE(
        c.member(via).node->Propose("v" + std::to_string(i)).get().ok());
  }
  for (raft::NodeId id = 1; id <= 3; id++) {
    EXPECT_TRUE(PollFor([&] { return c.member(id).sm->values().size() == 30; }))
        << "member " << id << " applied " << c.member(id).sm->values().size();
  }
  // A linearizable read on a follower sees everything committed before it.
  raft::NodeId f = lead == 1 ? 2 : 1;
  auto rf = c.member(f).node->ReadIndex();
  ASSERT_EQ(rf.wait_for(5s), std::future_status::ready);
  ASSERT_TRUE(rf.get().ok());
  EXPECT_EQ(c.member(f).sm->values().size(), 30u);
}

// Reads arriving while a round awaits its quorum wait for the next round
// (one round at a time); they must all be taken into a later round. A burst
// from several threads on the leader and a follower: every read completes,
// and each one sees the writes applied on its member before the burst.
TEST(RaftNodeTest, BurstOfConcurrentReadsAllComplete) {
  // Before the cluster: reads still pending at a failure complete (with
  // kStopped) when the cluster is destroyed.
  std::atomic<int> ok{0}, failed{0}, stale{0};
  Cluster c(3);
  raft::NodeId lead = c.WaitLeader();
  ASSERT_NE(lead, raft::kNone);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(
        c.member(lead).node->Propose("w" + std::to_string(i)).get().ok());
  }
  for (raft::NodeId id = 1; id <= 3; id++) {
    ASSERT_TRUE(
        PollFor([&] { return c.member(id).sm->values().size() == 10; }));
  }
  raft::NodeId f = lead == 1 ? 2 : 1;
  constexpr int kThreads = 4, kReads = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      Member& m = c.member(t % 2 == 0 ? lead : f);
      for (int i = 0; i < kReads; i++) {
        m.node->ReadIndexAsync([&, sm = m.sm.get()](Status st) {
          if (!st.ok()) {
            failed++;
          } else {
            if (sm->values().size() < 10) stale++;
            ok++;
          }
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(PollFor([&] { return ok + failed == kThreads * kReads; }))
      << "completed " << ok + failed << " of " << kThreads * kReads;
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(stale, 0);
}

TEST(RaftNodeTest, KilledLeaderIsReplacedAndRestartedMemberCatchesUp) {
  Cluster c(3);
  raft::NodeId lead = c.WaitLeader();
  ASSERT_NE(lead, raft::kNone);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(
        c.member(lead).node->Propose("a" + std::to_string(i)).get().ok());
  }
  c.Kill(lead);
  raft::NodeId lead2 = c.WaitLeader();
  ASSERT_NE(lead2, raft::kNone);
  ASSERT_NE(lead2, lead);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(
        c.member(lead2).node->Propose("b" + std::to_string(i)).get().ok());
  }
  // The old leader restarts on its log and catches up.
  c.Start(lead, /*bootstrap=*/false);
  EXPECT_TRUE(PollFor([&] { return c.member(lead).sm->values().size() >= 20; }))
      << c.member(lead).sm->values().size();
  EXPECT_EQ(c.member(lead).sm->values(), c.member(lead2).sm->values());
}

// Proposes through `via` and waits until `id` has applied `n` values.
void ProposeAndWait(Cluster& c, raft::NodeId via, raft::NodeId id,
                    const std::string& v, size_t n) {
  ASSERT_TRUE(c.member(via).node->Propose(v).get().ok());
  ASSERT_TRUE(PollFor([&] { return c.member(id).sm->values().size() >= n; }))
      << "member " << id << " applied " << c.member(id).sm->values().size();
}

// A leader keeps back the append that only tells a caught-up follower the
// new commit index: the next append carries it. One write at a time
// through the leader then sends no empty append at all; with the delay at
// 0 (etcd's behaviour) every commit sends one to each follower. Ticks are a
// minute apart, so that no heartbeat (nor an append a heartbeat's answer
// prompts) runs meanwhile. A follower's read then tells it the last commit
// index, and every member has every value.
TEST(RaftNodeTest, CommitNoticeRidesOnTheNextAppend) {
  for (auto delay : {std::chrono::microseconds(0),
                     std::chrono::microseconds(std::chrono::hours(1))}) {
    SCOPED_TRACE("commit_notice_delay " + std::to_string(delay.count()));
    Cluster c(3, [&](RaftNodeOptions& o) {
      o.heartbeat_ms = 60000;
      o.commit_notice_delay = delay;
    });
    c.member(1).node->AdvanceTicks(40);  // campaigns now
    ASSERT_EQ(c.WaitLeader(), 1u);
    // Settled: both followers replicating (their probes answered).
    for (int i = 0; i < 3; i++) {
      ProposeAndWait(c, 1, 1, "s" + std::to_string(i), i + 1);
    }
    for (raft::NodeId id = 2; id <= 3; id++) {
      ASSERT_TRUE(
          PollFor([&] { return c.member(id).sm->values().size() >= 2; }));
    }
    const int before = c.empty_appends();
    for (int i = 0; i < 20; i++) {
      ProposeAndWait(c, 1, 1, "v" + std::to_string(i), 4 + i);
    }
    const int notices = c.empty_appends() - before;
    if (delay.count() == 0) {
      EXPECT_GE(notices, 20);
    } else {
      EXPECT_EQ(notices, 0);
    }
    for (raft::NodeId id = 2; id <= 3; id++) {
      auto r = c.member(id).node->ReadIndex();
      ASSERT_EQ(r.wait_for(20s), std::future_status::ready);
      ASSERT_TRUE(r.get().ok());
      EXPECT_EQ(c.member(id).sm->values(), c.member(1).sm->values())
          << "member " << id;
    }
  }
}

// A follower whose own proposal commits hears the commit index at once,
// even with notices held for an hour and heartbeats a minute apart (the
// only other carriers of a commit index here): it answers its client.
// So does a follower's linearizable read.
TEST(RaftNodeTest, FollowerWaitingOnItsProposalGetsTheCommitAtOnce) {
  Cluster c(3, [](RaftNodeOptions& o) {
    o.heartbeat_ms = 60000;
    o.commit_notice_delay = std::chrono::hours(1);
  });
  // Ticks a minute apart: member 1 campaigns at once instead.
  c.member(1).node->AdvanceTicks(40);
  ASSERT_EQ(c.WaitLeader(), 1u);
  for (int i = 0; i < 3; i++) ProposeAndWait(c, 1, 1, "l" + std::to_string(i), i + 1);
  // Through a follower, one at a time: each waits for its own commit.
  for (int i = 0; i < 5; i++) {
    ProposeAndWait(c, 2, 2, "f" + std::to_string(i), 4 + i);
  }
  EXPECT_EQ(c.member(2).sm->values().size(), 8u);
  // Member 3 has every entry (appends reach it) and reads: the read's
  // confirmation round tells it the commit index.
  auto r = c.member(3).node->ReadIndex();
  ASSERT_EQ(r.wait_for(20s), std::future_status::ready);
  ASSERT_TRUE(r.get().ok());
  EXPECT_EQ(c.member(3).sm->values().size(), 8u);
}

TEST(RaftNodeTest, StoppedNodeKeepsItsPromises) {
  Cluster c(1);
  ASSERT_NE(c.WaitLeader(), raft::kNone);
  auto& m = c.member(1);
  m.node->Stop();
  auto f = m.node->Propose("late");
  ASSERT_EQ(f.wait_for(1s), std::future_status::ready);
  EXPECT_FALSE(f.get().ok());
  auto r = m.node->ReadIndex();
  ASSERT_EQ(r.wait_for(1s), std::future_status::ready);
  EXPECT_FALSE(r.get().ok());
}

}  // namespace
}  // namespace keel::server
