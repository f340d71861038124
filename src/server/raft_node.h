// RaftNode: the loop that drives the consensus core in a running member.
//
// It owns the RawNode and is the only thread that touches it. Everything
// else reaches it through thread-safe calls that enqueue work and return a
// future: Propose, ReadIndex, ProposeConfChange, TransferLeader, Step (from
// the transport). The loop ticks on a real clock (one tick per heartbeat
// interval), and for every Ready:
//
//   1. a leader sends its messages at once, in parallel with its own write
//      (Raft thesis §10.2.1); the write is one WAL batch and one fdatasync
//      (group commit, src/wal). Except an append that would only tell a
//      follower a new commit index: that is kept back for up to
//      commit_notice_delay, for the next append to carry (one message and
//      one wake-up per write on each follower instead of two), unless the
//      follower's own forwarded proposal or read waits on it;
//   2. a follower sends its acknowledgements and votes only once the
//      batch is durable; its forwarded proposals and read requests depend
//      on nothing the batch persists and go at once;
//   3. committed entries are applied in order through the StateMachine,
//      which stores the applied index atomically with the data;
//   4. read states complete the linearizable reads waiting on them once the
//      applied index reaches their read index;
//   5. Advance().
//
// Snapshots: every snapshot_count applied entries the log is snapshotted at
// the applied index and compacted, keeping snapshot_catchup_entries behind
// for slow followers. Also right after a change that adds a member: the new
// member starts with an empty log and is caught up by snapshot, which must
// name it in its configuration (a snapshot without it would be refused).
//
// Restart: the core starts at the snapshot's index, so that every entry
// after it is delivered again: configuration changes rebuild the core's
// configuration (InitialState gives the snapshot's only); the state
// machine skips what it already applied.
//
// Thread safety: the public methods are safe from any thread; the
// StateMachine's Apply* methods are called on the loop thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/rng.h"
#include "common/status.h"
#include "raft/raw_node.h"
#include "wal/disk_storage.h"

namespace keel::server {

// What the replicated log is applied to. Called on the loop thread.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // The index of the last entry whose effects are durable in the state.
  // Replay after a restart starts right after it.
  virtual uint64_t AppliedIndex() const = 0;
  // Applies a normal committed entry (empty entries included, so that the
  // applied index moves). Entries at or below AppliedIndex() are skipped
  // by the state machine itself.
  virtual void Apply(const raft::Entry& entry) = 0;
  // Whether a committed membership change is valid against the replicated
  // membership (etcd's ValidateConfigurationChange; deterministic on every
  // member). A refused change is not applied to the core: the state
  // machine records the entry as applied and answers its proposer itself.
  virtual bool AcceptConfChange(const raft::Entry& entry,
                                const raft::ConfChange& cc) {
    (void)entry;
    (void)cc;
    return true;
  }
  // A committed membership change was applied to the core.
  virtual void ApplyConfChange(const raft::Entry& entry,
                               const raft::ConfChange& cc,
                               const raft::ConfState& cs) = 0;
  // Called after each batch of committed entries (one Ready's) is applied,
  // before the reads waiting on them complete: the state machine may have
  // buffered its writes over the batch.
  virtual void ApplyBatchDone() {}
  // Replaces the state with a snapshot received from the leader.
  virtual Status RestoreSnapshot(const raft::Snapshot& snap) = 0;
  // The small descriptor stored as a Raft snapshot's data.
  virtual std::string SnapshotData(uint64_t applied_index) = 0;
  // Makes everything applied so far durable (before a snapshot that lets the
  // log be compacted).
  virtual Status Sync() = 0;
};

// Where outgoing Raft messages go (the peer transport).
class MessageSender {
 public:
  virtual ~MessageSender() = default;
  virtual void Send(std::vector<raft::Message> msgs) = 0;
};

// The io a RaftNode's loop drives between rounds, besides its own queue.
// keel's member passes its peer transport (transport::Options::external_io)
// so that a peer's message is read and stepped on the loop's thread: a
// write's path then has no hand-off from an io thread on the follower (the
// append) nor on the leader (the acknowledgement), each a thread wake-up
// that on a machine with few cores often waited for a CPU.
class LoopIo {
 public:
  virtual ~LoopIo() = default;
  // Runs the io handlers that are ready, without blocking.
  virtual void Poll() = 0;
  // Blocks until one io handler ran, Wake() was called, or the deadline.
  virtual void RunOneUntil(std::chrono::steady_clock::time_point deadline) = 0;
  // Any thread: makes a RunOneUntil in progress (or the next) return.
  virtual void Wake() = 0;
};

struct RaftNodeOptions {
  raft::NodeId id = 0;
  int heartbeat_ms = 100;
  int election_ticks = 10;
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t snapshot_count = 100000;
  uint64_t snapshot_catchup_entries = 5000;
  uint64_t max_size_per_msg = 1 << 20;
  size_t max_inflight_msgs = 512;
  uint64_t max_uncommitted_entries_size = 1ull << 30;
  // Seed for the election timeout's randomness.
  uint64_t seed = 0;
  // Unset: the loop waits on a condition variable only.
  LoopIo* loop_io = nullptr;
  // A leader keeps back an append that only tells a follower a new commit
  // index for up to this long, so that the next append carries
  // it (HoldCommitNotices); 0 sends it at once, as etcd does.
  std::chrono::microseconds commit_notice_delay{1000};
};

// A snapshot of the node's state for status reporting.
struct RaftNodeStatus {
  raft::NodeId id = 0;
  raft::NodeId leader = 0;
  raft::Term term = 0;
  raft::Index commit = 0;
  raft::Index applied = 0;
  raft::StateRole role = raft::StateRole::kFollower;
  bool is_learner = false;
  raft::ConfState conf_state;
  // Leader only: each member's replication progress.
  std::map<raft::NodeId, raft::ProgressInfo> progress;
  raft::NodeId lead_transferee = 0;
};

class RaftNode {
 public:
  RaftNode(RaftNodeOptions options, wal::DiskStorage* storage, StateMachine* sm,
           MessageSender* sender);
  ~RaftNode();

  Status Start();
  void Stop();

  // Proposes an entry. The future says whether the core accepted it into
  // the log (not whether it committed: the state machine reports that).
  std::future<Status> Propose(std::string data);
  std::future<Status> ProposeConfChange(raft::ConfChange cc);
  // A linearizable read barrier: completes OK once this member has applied
  // everything committed before the call, as confirmed by the leader.
  // Concurrent calls share one confirmation round. Fails with Unavailable
  // when there is no leader; the caller applies its own deadline.
  std::future<Status> ReadIndex();

  // Callback forms of Propose and ReadIndex, for the asynchronous request
  // path: `done` runs on the loop thread, so it must be quick and must not
  // call back into the RaftNode synchronously. ProposeAsync holds a
  // proposal the core drops for want of a leader (an election, a leadership
  // transfer) and offers it again on each tick until `deadline`, then
  // completes with the drop. ReadIndexAsync completes as ReadIndex does.
  using StatusCallback = std::function<void(Status)>;
  void ProposeAsync(std::string data,
                    std::chrono::steady_clock::time_point deadline,
                    StatusCallback done);
  void ReadIndexAsync(StatusCallback done);
  void TransferLeader(raft::NodeId transferee);

  // From the transport.
  void Step(raft::Message m);
  void ReportUnreachable(raft::NodeId id);
  void ReportSnapshot(raft::NodeId id, bool ok);
  // Ticks the core `n` times at once (etcd's advanceTicks): a starting
  // member skips most of its first election timeout.
  void AdvanceTicks(int n);

  RaftNodeStatus GetStatus() const;
  // The fields every request asks for, without copying the whole status
  // (its progress map and configuration): GetStatus on each request was a
  // visible cost of a loaded member.
  raft::NodeId leader() const {
    return leader_.load(std::memory_order_acquire);
  }
  raft::Term term() const { return term_.load(std::memory_order_acquire); }
  bool is_learner() const {
    return is_learner_.load(std::memory_order_acquire);
  }
  // Blocks until a leader is known or the deadline passes.
  bool WaitForLeader(std::chrono::milliseconds timeout) const;

 private:
  // A unit of work for the loop; called with run=false when the node stops
  // before running it, so that every promise is kept.
  using Task = std::function<void(bool run)>;
  struct PendingRead {
    std::vector<StatusCallback> waiters;
    uint64_t read_index = 0;  // 0 until the read state arrives
  };

  void Run();
  // Waits until there is work for the loop or next_tick, running the
  // LoopIo's handlers meanwhile when there is one; moves the new tasks to
  // *tasks. False once the node is stopping.
  bool WaitForWork(std::chrono::steady_clock::time_point next_tick,
                   std::deque<Task>* tasks);
  // After queueing work under mu_: wakes the loop where it waits.
  void WakeLoop(bool io_waiting);
  void Enqueue(Task t);
  void HandleReady();
  // Writes entries and the kept-back hard state, and waits for fdatasync.
  void SaveDurably(const std::vector<raft::Entry>& entries);
  void ApplyCommitted(const std::vector<raft::Entry>& entries);
  void MaybeSnapshot();
  void RetryHeldProposals();
  void StartReadBatch();
  void CompleteReads();
  void FailAllReads(const Status& s);
  void PublishStatus();
  // Leader: takes out of msgs the appends that carry nothing but a new
  // commit index to a replicating follower (one sent every entry), keeping
  // the newest per follower for up to commit_notice_delay; a later message
  // to that follower carrying the commit index drops it.
  void HoldCommitNotices(std::vector<raft::Message>* msgs);
  // Sends the kept-back commit notices (all of them: one deadline).
  void FlushCommitNotices();

  const RaftNodeOptions options_;
  wal::DiskStorage* const storage_;
  StateMachine* const sm_;
  MessageSender* const sender_;

  // Loop thread only.
  std::unique_ptr<SeededRng> rng_;
  std::unique_ptr<raft::RawNode> node_;
  raft::ConfState conf_state_;
  uint64_t applied_ = 0;
  uint64_t snapshot_index_ = 0;
  bool force_snapshot_ = false;  // a member was added: snapshot now
  uint64_t next_read_ctx_ = 1;
  // Reads waiting to start a confirmation round.
  std::vector<StatusCallback> queued_reads_;
  // Proposals dropped for want of a leader, offered again on each tick.
  struct HeldProposal {
    std::string data;
    std::chrono::steady_clock::time_point deadline;
    StatusCallback done;
  };
  std::deque<HeldProposal> held_proposals_;
  // Rounds started, by context; completed in order.
  std::map<uint64_t, PendingRead> reads_in_flight_;
  // Leader: commit notices kept back (HoldCommitNotices), per follower,
  // and when they must go; the commit index each follower waits for.
  std::map<raft::NodeId, raft::Message> held_notices_;
  std::chrono::steady_clock::time_point notices_deadline_{};
  std::map<raft::NodeId, raft::Index> follower_waits_;
  raft::NodeId last_leader_ = 0;
  raft::StateRole last_role_ = raft::StateRole::kFollower;
  // The hard state last made durable, and a newer one kept back because
  // only its commit index moved (see HandleReady).
  raft::HardState synced_hs_;
  raft::HardState unsynced_hs_;
  bool has_unsynced_hs_ = false;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<Task> tasks_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  RaftNodeStatus status_;   // guarded by mu_

  // Linearizable reads not yet seen by the loop (ReadIndexAsync). They wake
  // the loop only when it could start a round for them: while a round awaits
  // its quorum they wait for it (its answer wakes the loop), rather than
  // waking the loop once per read to be queued behind it.
  std::vector<StatusCallback> new_reads_;  // guarded by mu_
  bool read_round_pending_ = false;        // guarded by mu_
  // The loop is in LoopIo::RunOneUntil: new work must Wake() it.
  bool io_waiting_ = false;  // guarded by mu_
  // Copies of status_'s leader, term and is_learner for lock-free readers.
  std::atomic<raft::NodeId> leader_{0};
  std::atomic<raft::Term> term_{0};
  std::atomic<bool> is_learner_{false};
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_{};  // set when the loop starts
};

}  // namespace keel::server
