// Tests of the RaftNode loop: three members in one process, each with a
// disk-backed log in its own directory, wired by an in-process sender.
#include "server/raft_node.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
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
  explicit Cluster(int n) {
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
    std::lock_guard lock(mu_);
    auto it = members_.find(msg.to);
    if (it != members_.end() && it->second.node) {
      it->second.node->Step(std::move(msg));
    }
  }

  // The leader once every running member knows it, or kNone.
  raft::NodeId WaitLeader();

  Member& member(raft::NodeId id) { return members_.at(id); }

 private:
  static inline int counter_ = 0;
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
