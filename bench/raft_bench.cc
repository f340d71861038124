// Benchmark of the consensus core alone: proposals committed per second
// through an in-memory 3-member cluster (MemoryStorage, a FIFO in-process
// network, no IO). "batch" is how many proposals are made before the
// cluster's Ready/message rounds run; batch=1 is a full consensus round per
// proposal. BM_Commit3 proposes entries one by one (a kApp per proposal,
// pipelined); BM_Commit3Batched proposes them as one batch (one kApp per
// follower per batch), as the server's proposal loop does.
//
//   ./build/bench/keel_raft_bench --benchmark_filter=Commit
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>

#include "raft/raw_node.h"

namespace keel::raft {
namespace {

class BenchCluster {
 public:
  explicit BenchCluster(int n) {
    ConfState cs;
    for (int i = 1; i <= n; i++) cs.voters.push_back(i);
    for (int i = 1; i <= n; i++) {
      auto& m = members_[i];
      m.storage = std::make_unique<MemoryStorage>();
      Snapshot s;
      s.metadata = {cs, 1, 1};
      (void)m.storage->ApplySnapshot(s);
      m.storage->SetHardState({1, kNone, 1});
      m.rng = std::make_unique<SeededRng>(i);
      Config c;
      c.id = i;
      c.storage = m.storage.get();
      c.rng = m.rng.get();
      c.applied = 1;
      c.max_inflight_msgs = 4096;
      m.node = std::move(RawNode::Create(c)).value();
    }
    members_[1].node->Campaign();
    Run();
  }

  RawNode& leader() { return *members_[1].node; }
  uint64_t applied(NodeId id) { return members_[id].applied; }

  // Runs Ready rounds and deliveries until quiet; compacts storage now and
  // then so memory stays flat.
  void Run() {
    bool progress = true;
    while (progress) {
      progress = false;
      for (auto& [id, m] : members_) {
        while (m.node->HasReady()) {
          progress = true;
          Ready rd = m.node->GetReady();
          (void)m.storage->Append(rd.entries);
          if (!rd.hard_state.IsEmpty()) m.storage->SetHardState(rd.hard_state);
          for (auto& msg : rd.messages) queue_.push_back(std::move(msg));
          if (!rd.committed_entries.empty()) {
            m.applied += rd.committed_entries.size();
            Index last = rd.committed_entries.back().index;
            if (last - m.storage->FirstIndex() > 100000) {
              (void)m.storage->Compact(last - 1000);
            }
          }
          m.node->Advance(rd);
        }
      }
      while (!queue_.empty()) {
        progress = true;
        Message msg = std::move(queue_.front());
        queue_.pop_front();
        (void)members_[msg.to].node->Step(std::move(msg));
      }
    }
  }

 private:
  struct Member {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<SeededRng> rng;
    std::unique_ptr<RawNode> node;
    uint64_t applied = 0;
  };
  std::map<NodeId, Member> members_;
  std::deque<Message> queue_;
};

void BM_Commit3(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int value_size = static_cast<int>(state.range(1));
  BenchCluster c(3);
  std::string value(value_size, 'v');
  uint64_t start = c.applied(1);
  for (auto _ : state) {
    for (int i = 0; i < batch; i++) {
      if (!c.leader().Propose(value).ok()) state.SkipWithError("dropped");
    }
    c.Run();
  }
  uint64_t committed = c.applied(1) - start;
  if (committed != static_cast<uint64_t>(state.iterations()) * batch) {
    state.SkipWithError("not every proposal was applied");
  }
  state.SetItemsProcessed(static_cast<int64_t>(committed));
  state.counters["batch"] = batch;
}
void BM_Commit3Batched(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int value_size = static_cast<int>(state.range(1));
  BenchCluster c(3);
  std::string value(value_size, 'v');
  uint64_t start = c.applied(1);
  for (auto _ : state) {
    std::vector<std::string> props(batch, value);
    if (!c.leader().ProposeBatch(std::move(props)).ok()) {
      state.SkipWithError("dropped");
    }
    c.Run();
  }
  uint64_t committed = c.applied(1) - start;
  if (committed != static_cast<uint64_t>(state.iterations()) * batch) {
    state.SkipWithError("not every proposal was applied");
  }
  state.SetItemsProcessed(static_cast<int64_t>(committed));
}
BENCHMARK(BM_Commit3Batched)
    ->ArgNames({"batch", "value_bytes"})
    ->Args({16, 128})
    ->Args({256, 128})
    ->Args({256, 1024});

BENCHMARK(BM_Commit3)
    ->ArgNames({"batch", "value_bytes"})
    ->Args({1, 128})
    ->Args({16, 128})
    ->Args({256, 128})
    ->Args({1, 1024})
    ->Args({256, 1024});

}  // namespace
}  // namespace keel::raft

BENCHMARK_MAIN();
