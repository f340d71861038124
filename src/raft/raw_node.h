// RawNode: the public face of the Raft consensus core.
//
// RawNode is a pure, deterministic state machine. It has no threads, no
// clock, no IO and no randomness of its own: time moves only when the caller
// calls Tick(); the randomized election timeout is drawn from the Rng given
// in Config. Inputs are Tick(), Step(message), Propose(data),
// ProposeConfChange(change), ReadIndex(context), TransferLeader(id). All
// output is collected in a Ready, which the caller handles and then
// acknowledges with Advance(ready):
//
//   while (node.HasReady()) {
//     Ready rd = node.GetReady();
//     persist rd.hard_state (if not empty), rd.snapshot, rd.entries;
//     send rd.messages;          // (leaders may send before persisting)
//     apply rd.snapshot, then rd.committed_entries; answer rd.read_states;
//     node.Advance(rd);
//   }
//
// Rules the caller must keep:
//  - rd.hard_state and rd.entries are on stable storage before any of
//    rd.messages leaves, unless this member is the leader (rd.soft_state or
//    Status() says so): a leader's messages depend on no state it has not
//    already persisted, so it may send them in parallel with its own write
//    (Raft thesis §10.2.1). The leader counts its own log towards a quorum
//    only once Advance() reports it persisted.
//  - rd.entries are persisted before rd.committed_entries are applied.
//  - A kConfChange committed entry is applied with ApplyConfChange().
//
// Thread safety: none. One thread owns a RawNode.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/rng.h"
#include "common/status.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace keel::raft {

enum class StateRole : uint8_t {
  kFollower = 0,
  kCandidate = 1,
  kLeader = 2,
  kPreCandidate = 3,
};
const char* StateRoleName(StateRole r);

enum class ReadOnlyOption : uint8_t {
  // Confirm leadership with a heartbeat round per batch of reads (safe).
  kSafe = 0,
  // Trust the leader lease (needs check_quorum; assumes bounded clock drift).
  kLeaseBased = 1,
};

struct Config {
  NodeId id = kNone;
  // Ticks a follower waits without hearing from a leader before it
  // campaigns; the actual timeout is drawn from [election, 2*election).
  int election_tick = 10;
  // Ticks between a leader's heartbeats. Must be < election_tick.
  int heartbeat_tick = 1;
  // The stable log. Not owned; outlives the node.
  Storage* storage = nullptr;
  // Source of every random choice. Not owned; outlives the node.
  Rng* rng = nullptr;
  // Last applied index, when restarting.
  Index applied = 0;
  // Most bytes of entries in one kApp message (at least one entry is sent).
  uint64_t max_size_per_msg = 1 << 20;
  // Most bytes of committed entries handed out in one Ready.
  uint64_t max_committed_size_per_ready = 64 << 20;
  // Bound on the payload bytes of entries appended but not yet committed
  // on the leader; proposals beyond it are dropped. 0 = no bound.
  uint64_t max_uncommitted_entries_size = 0;
  // Most kApp messages in flight to one follower in replicate state.
  size_t max_inflight_msgs = 256;
  // Most bytes of entries in flight to one follower. 0 = no bound.
  uint64_t max_inflight_bytes = 0;
  bool check_quorum = false;
  bool pre_vote = false;
  // With kLeaseBased, a leader answers reads without a heartbeat round only
  // while a quorum acknowledged one of its heartbeats within the last
  // election timeout (less a safety margin); otherwise it falls back to the
  // safe round. A member restarting after term 1 refuses votes for its
  // first election timeout, since a lease may still count on it.
  ReadOnlyOption read_only_option = ReadOnlyOption::kSafe;
  // If true, followers drop proposals instead of forwarding to the leader.
  bool disable_proposal_forwarding = false;

  Status Validate() const;
};

struct SoftState {
  NodeId lead = kNone;
  StateRole role = StateRole::kFollower;
  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// A linearizable read: once the applied index reaches `index`, reading
// local state answers the read identified by `request_ctx`.
struct ReadState {
  Index index = 0;
  std::string request_ctx;
  friend bool operator==(const ReadState&, const ReadState&) = default;
};

struct Ready {
  // Set when the leader or role changed since the last Ready.
  std::optional<SoftState> soft_state;
  // Empty (IsEmpty()) when unchanged.
  HardState hard_state;
  std::vector<ReadState> read_states;
  // To persist (append, truncating any conflicting suffix).
  std::vector<Entry> entries;
  // To persist and apply, when not empty.
  Snapshot snapshot;
  std::vector<Entry> committed_entries;
  std::vector<Message> messages;
  // Whether hard_state/entries must be fsynced before messages leave.
  bool must_sync = false;

  bool ContainsUpdates() const;
};

enum class ProgressState : uint8_t {
  kProbe = 0,
  kReplicate = 1,
  kSnapshot = 2
};

struct ProgressInfo {
  Index match = 0;
  Index next = 0;
  ProgressState state = ProgressState::kProbe;
  bool is_learner = false;
  bool recent_active = false;
};

struct NodeStatus {
  NodeId id = kNone;
  HardState hard_state;
  SoftState soft_state;
  Index applied = 0;
  NodeId lead_transferee = kNone;
  ConfState conf_state;
  // Only on the leader.
  std::map<NodeId, ProgressInfo> progress;
};

class Raft;  // raft.h

class RawNode {
 public:
  // Starts (or restarts) a node from config.storage. For a brand-new
  // cluster, the storage's ConfState lists the initial voters.
  static Result<std::unique_ptr<RawNode>> Create(const Config& config);
  ~RawNode();

  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  void Tick();
  // Starts an election now (after PreVote if enabled).
  void Campaign();
  // ProposalDropped if no leader is known, a transfer is in progress, the
  // uncommitted bound is reached, or forwarding is disabled on a follower.
  Status Propose(std::string data);
  // Proposes several entries as one message: one append, one kApp per
  // follower. Refused (all of them) like Propose.
  Status ProposeBatch(std::vector<std::string> data);
  // As Propose; also refused while another change is pending.
  Status ProposeConfChange(const ConfChange& cc);
  // Applies a committed configuration change; returns the new ConfState.
  ConfState ApplyConfChange(const ConfChange& cc);
  // Feeds a message from a peer (local message types are refused).
  Status Step(Message m);
  // Asks for a linearizable read; answered in a later Ready's read_states
  // (or never, if leadership is lost: the caller times out and retries).
  void ReadIndex(std::string request_ctx);
  // Asks the leader to hand leadership to `transferee`.
  void TransferLeader(NodeId transferee);

  bool HasReady() const;
  Ready GetReady();
  // Acknowledges that rd has been handled (persisted, sent, applied).
  void Advance(const Ready& rd);

  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool failed);

  NodeStatus GetStatus() const;
  NodeId id() const;
  StateRole role() const;
  NodeId leader() const;
  Term term() const;

  // For tests and the simulator: the inner state machine.
  Raft& raft() { return *raft_; }

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_;
  HardState prev_hard_;
};

}  // namespace keel::raft
