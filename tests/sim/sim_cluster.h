// SimCluster: one deterministic simulation run of a Raft cluster.
//
// A run is a pure function of its 64-bit seed. The seed draws the swarm
// parameters (sim_params.h), then the run drives 3, 5 or 7 RawNodes (and the
// members added later) in one thread over a SimNetwork: a safety phase with
// faults (loss, duplication, reordering, partitions, crashes that lose what
// was not persisted, membership changes, leadership transfers) and client
// proposals and reads, checked by a SafetyChecker after every step; then a
// liveness phase that heals every fault and requires the cluster to converge
// within a bound.
//
// Each member's SimDisk (sim_disk.h) stands for its disk and survives a
// crash: a MemoryStorage, or in a seeded share of runs the real WAL
// (DiskStorage) over a fault-injecting file system, where a crash is a power
// cut. The RawNode, the state machine and pending work are memory and are
// lost.
//
// Thread safety: none. A SimCluster is used by one thread, once.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/rng.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "sim/sim_checker.h"
#include "sim/sim_disk.h"
#include "sim/sim_network.h"
#include "sim/sim_params.h"

namespace keel::sim {

// Deliberate harness faults, to prove the checks can fail.
enum class Injection {
  kNone,
  // One member applies a corrupted copy of one committed entry.
  kCorruptApply,
  // Reads are answered from the local state without ReadIndex
  // (serializable reads presented as linearizable ones).
  kStaleRead,
  // A restarted member has lost its log (keeping term and vote) but rejoins
  // as if not.
  kAmnesia,
  // Every member sends a Ready's messages before persisting it, as only a
  // leader may: a vote can leave and then be forgotten in a crash.
  kEarlySend,
};

struct SimOptions {
  // Keep the last trace_capacity events (0: no trace, fastest).
  size_t trace_capacity = 0;
  // Print every event as it happens.
  std::ostream* live_trace = nullptr;
  Injection inject = Injection::kNone;
};

struct SimStats {
  uint64_t ticks = 0;
  uint64_t steps = 0;
  uint64_t messages = 0;
  uint64_t dropped = 0;
  uint64_t leaders = 0;
  uint64_t proposals = 0;
  uint64_t proposals_refused = 0;
  uint64_t proposals_timed_out = 0;
  uint64_t writes_committed = 0;
  uint64_t reads = 0;
  uint64_t reads_served = 0;
  uint64_t crashes = 0;
  uint64_t io_crashes = 0;  // the process died inside a file operation
  // Restarts that needed the FINDINGS.md commit-below-snapshot workaround.
  uint64_t commit_below_snapshot = 0;
  uint64_t pauses = 0;
  uint64_t conf_changes_proposed = 0;
  uint64_t conf_changes_applied = 0;
  uint64_t transfers = 0;
  uint64_t snapshots_installed = 0;
  uint64_t members_added = 0;
  uint64_t members_removed = 0;
  uint64_t liveness_ticks = 0;
};

struct SimResult {
  uint64_t seed = 0;
  bool ok = false;
  std::string failure;             // the violation, empty if ok
  std::string state;               // the members' state at the failure
  std::vector<std::string> trace;  // last events, if tracing
  SimParams params;
  SimStats stats;
};

// "voters=1,2,3 learners=4 ..." for traces.
std::string DescribeConf(const raft::ConfState& cs);
// Whether `id` is in any part of the configuration.
bool InConf(const raft::ConfState& cs, NodeId id);

// Runs one seed. Deterministic: the same seed and options give the same
// result.
SimResult RunSimulation(uint64_t seed, const SimOptions& options = {});

// The state machine the simulated members replicate: a small key-value map
// and the membership tombstones, plus the index and a hash of everything
// applied, which makes "same state" a cheap comparison.
struct SimStateMachine {
  raft::Index applied = 0;
  uint64_t hash = 0;
  std::map<std::string, std::string> kv;
  // Members removed from the cluster: their ids are never reused.
  std::set<NodeId> removed;

  std::string Encode() const;
  static bool Decode(const std::string& data, SimStateMachine* out);
};

struct SimNode {
  NodeId id = raft::kNone;
  // Durable: survives crashes.
  std::unique_ptr<SimDisk> disk;
  raft::Index commit_recorded = 0;  // commits of this disk fed to the checker
  uint64_t incarnation = 0;
  bool stopped = false;  // removed from the cluster, for good
  // Paused until this tick: no ticks, and messages wait in `backlog`.
  uint64_t paused_until_tick = 0;
  std::vector<Envelope> backlog;

  // Volatile: lost on a crash.
  std::unique_ptr<SeededRng> rng;
  std::unique_ptr<raft::RawNode> raw;
  SimStateMachine sm;
  raft::ConfState conf;  // as of sm.applied
  Term leader_checked_term = 0;
  // The disk's snapshot predates a member added since: snapshot again, or
  // that member could never be caught up (it refuses a snapshot whose
  // configuration does not include it).
  bool snapshot_lacks_member = false;
  std::vector<raft::ReadState> waiting_reads;  // until applied >= index
  // Transport reports held until the current Ready is advanced.
  std::vector<NodeId> unreachable_reports;
  std::vector<NodeId> failed_snapshot_reports;

  bool alive() const { return raw != nullptr; }
  bool paused(uint64_t tick) const { return tick < paused_until_tick; }
};

class SimCluster {
 public:
  SimCluster(uint64_t seed, const SimOptions& options);
  SimResult Run();

 private:
  struct Proposal {
    NodeId member = raft::kNone;
    uint64_t tick = 0;
    raft::Index applied_index = 0;  // 0: not applied anywhere yet
    bool timed_out = false;
  };
  struct Read {
    NodeId member = raft::kNone;
    uint64_t incarnation = 0;
    raft::Index required = 0;
    uint64_t tick = 0;
    bool served = false;
  };

  // Trace.
  bool tracing() const { return trace_capacity_ > 0 || live_ != nullptr; }
  void Log(std::string event);

  // Members (sim_cluster.cc).
  void Bootstrap();
  SimNode& NewMember(NodeId id);
  void Start(SimNode& n);
  void Crash(SimNode& n, std::string_view why);
  void Stop(NodeId id);
  // Running and not paused: those a client or an operator can talk to.
  std::vector<SimNode*> LiveMembers();
  SimNode* FindLeader();  // among LiveMembers()

  // The step loop and Ready handling (sim_cluster.cc).
  void StepOnce();
  void Deliver(Envelope env);
  void HandleReadies(SimNode& n);
  bool HandleReady(SimNode& n);
  // False if the member died doing it (WAL IO crash; it is then down).
  bool Persist(SimNode& n, const raft::Ready& rd);
  // The member died in a file operation: crash it.
  void DiedInIo(SimNode& n, const char* during);
  SimDiskOptions DiskOptions() const;
  void Send(SimNode& n, const std::vector<raft::Message>& msgs);
  void FlushReports(SimNode& n);
  void RecordCommits(SimNode& n);
  // The application (sim_apply.cc).
  void InstallSnapshot(SimNode& n, const raft::Snapshot& snap);
  void ApplyEntry(SimNode& n, const raft::Entry& e);
  void OnConfApplied(SimNode& n, const raft::ConfChange& cc);
  void OnReadState(SimNode& n, const raft::ReadState& rs);
  void ServeReads(SimNode& n);
  void MaybeSnapshot(SimNode& n);
  void AfterReadies(SimNode& n);
  void CheckAllLogs();
  std::string DescribeState();

  // Faults and workload (sim_actions.cc).
  void PerTickActions();
  void NetworkFaults();
  void ProcessFaults();
  void ClientWork();
  uint64_t Propose(SimNode& n);  // the write id, 0 if refused
  void IssueRead(SimNode& n);
  void ChangeMembership();
  void TransferLeadership();
  void ExpireRequests();

  // Liveness (sim_actions.cc).
  void Heal();
  bool Converged(std::string* why);
  void RunLiveness();

  SimOptions options_;
  size_t trace_capacity_;
  std::ostream* live_;
  std::deque<std::string> trace_;

  SeededRng rng_;  // workload and fault decisions
  SimParams p_;
  SeededRng net_rng_;
  SimNetwork net_;
  SafetyChecker checker_;
  SimStats stats_;

  std::map<NodeId, std::unique_ptr<SimNode>> nodes_;
  std::set<NodeId> to_stop_;
  NodeId next_id_ = 1;
  uint64_t step_ = 0;
  uint64_t tick_ = 0;
  bool faults_on_ = true;
  bool injected_ = false;

  raft::Index max_applied_ = 0;  // highest index applied by any member
  uint64_t next_write_ = 1;
  std::map<uint64_t, Proposal> proposals_;
  std::deque<uint64_t> pending_writes_;  // in issue order, for timeouts
  uint64_t next_read_ = 1;
  std::map<std::string, Read> reads_;
  uint64_t marker_write_ = 0;  // the liveness phase's own write
  uint64_t marker_tick_ = 0;
};

}  // namespace keel::sim
