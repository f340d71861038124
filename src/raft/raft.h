// Raft: the consensus state machine behind RawNode.
//
// One entry point, Step(message), handles terms in one place and then
// dispatches to the role's step function (raft_leader.cc for the leader,
// raft_follower.cc for followers and candidates). Local events — election
// and heartbeat timers, CheckQuorum — are messages too. Output accumulates
// in msgs_ and read_states_ until RawNode collects it into a Ready.
//
// The leader counts its own log toward a quorum only once the caller has
// persisted it (OnPersisted, called from RawNode::Advance), which is what
// lets the leader send kApp in parallel with its own disk write.
//
// Thread safety: none; one owner.
#pragma once

#include <string>
#include <vector>

#include "raft/raft_log.h"
#include "raft/raw_node.h"
#include "raft/read_only.h"
#include "raft/tracker/tracker.h"

namespace keel::raft {

enum class CampaignType : uint8_t { kPreElection, kElection, kTransfer };

// The context of a kVote sent for a leadership transfer: voters grant it
// even while they believe a leader's lease holds.
inline constexpr char kCampaignTransfer[] = "CampaignTransfer";

class Raft {
 public:
  explicit Raft(const Config& c);

  Status Step(Message m);
  void Tick();

  // Called by RawNode once entries up to (index, term) are persisted.
  void OnPersisted(Index index, Term term);
  // Called by RawNode once a snapshot at index is persisted and applied.
  void OnSnapshotApplied(Index index);
  // Called by RawNode once committed entries up to index are applied.
  void OnApplied(Index index, uint64_t applied_payload_bytes);
  ConfState ApplyConfChange(const ConfChange& cc);

  SoftState GetSoftState() const { return {lead_, state_}; }
  HardState GetHardState() const { return {term_, vote_, log_.committed()}; }

  // Read-only accessors, for RawNode, tests and the simulator.
  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId lead() const { return lead_; }
  StateRole state() const { return state_; }
  bool is_learner() const { return is_learner_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  uint64_t uncommitted_size() const { return uncommitted_size_; }
  int randomized_election_timeout() const {
    return randomized_election_timeout_;
  }
  const RaftLog& log() const { return log_; }
  RaftLog& mutable_log() { return log_; }
  const tracker::ProgressTracker& tracker() const { return trk_; }
  const ReadOnly& read_only() const { return read_only_; }

  std::vector<Message>& msgs() { return msgs_; }
  std::vector<ReadState>& read_states() { return read_states_; }

 private:
  // -- roles (raft.cc) --
  void BecomeFollower(Term term, NodeId lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();
  void Reset(Term term);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const {
    return election_elapsed_ >= randomized_election_timeout_;
  }
  bool Promotable() const;
  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  quorum::VoteResult Poll(NodeId id, bool granted);
  bool HasUnappliedConfChanges() const;
  void TickElection();
  void TickHeartbeat();
  void HandleVoteRequest(const Message& m);
  ConfState SwitchToConfig(const tracker::Config& cfg,
                           const tracker::ProgressMap& prs);
  void LoadState(const HardState& hs);
  void Send(Message m);

  // -- leader (raft_leader.cc) --
  Status StepLeader(Message& m);
  void StepLeaderPeerMessage(Message& m, tracker::Progress& pr);
  void HandleAppendResponse(const Message& m, tracker::Progress& pr);
  void HandleHeartbeatResponse(const Message& m, tracker::Progress& pr);
  void HandleTransferLeader(const Message& m, tracker::Progress& pr);
  Status HandlePropose(Message& m);
  bool AppendEntry(std::vector<Entry>& es);
  bool MaybeCommit();
  void SendAppend(NodeId to) { MaybeSendAppend(to, true); }
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  bool MaybeSendSnapshot(NodeId to, tracker::Progress& pr);
  void SendHeartbeat(NodeId to, const std::string& ctx);
  void BcastAppend();
  void BcastHeartbeat();
  void BcastHeartbeatWithCtx(const std::string& ctx);
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  bool CommittedEntryInCurrentTerm() const;
  // Lease-based reads: does our leader lease hold right now?
  bool LeaseValid() const;
  void MaybeAutoLeaveJoint();
  void HandleReadIndex(Message m);
  void ReleasePendingReadIndexMessages();
  void StartReadRoundIfIdle();
  void RespondToReadIndex(const Message& req, Index read_index);
  bool IncreaseUncommittedSize(const std::vector<Entry>& es);
  void ReduceUncommittedSize(uint64_t s);

  // -- follower and candidate (raft_follower.cc) --
  Status StepFollower(Message& m);
  Status StepCandidate(Message& m);
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const Snapshot& s);

  // Constant after construction.
  const NodeId id_;
  const int heartbeat_timeout_;
  const int election_timeout_;
  const uint64_t max_msg_size_;
  const uint64_t max_uncommitted_size_;
  const bool check_quorum_;
  const bool pre_vote_;
  const ReadOnlyOption read_only_option_;
  const bool disable_proposal_forwarding_;
  Rng* const rng_;

  Term term_ = 0;
  NodeId vote_ = kNone;
  NodeId lead_ = kNone;
  StateRole state_ = StateRole::kFollower;
  bool is_learner_ = false;
  RaftLog log_;
  tracker::ProgressTracker trk_;
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  // Set while a leadership transfer is in progress.
  NodeId lead_transferee_ = kNone;
  // Only one configuration change may be pending (in the log, unapplied)
  // at a time: proposals are refused while pending_conf_index_ > applied.
  Index pending_conf_index_ = 0;
  // Payload bytes appended by this leader and not yet committed.
  uint64_t uncommitted_size_ = 0;
  ReadOnly read_only_;
  // Read requests that arrived before this leader committed an entry of its
  // term; answered once it has.
  std::vector<Message> pending_read_index_messages_;
  // Ticks since the last election timeout reset (followers: since hearing
  // from a valid leader; leaders: since the last CheckQuorum).
  int election_elapsed_ = 0;
  // Leader only: ticks since the last heartbeat.
  int heartbeat_elapsed_ = 0;
  // Invariant: election_timeout_ <= randomized < 2 * election_timeout_.
  int randomized_election_timeout_ = 0;
  // Ticks since this member started (saturates at election_timeout_). With
  // lease reads, a restarted member grants no vote for its first election
  // timeout: it may have acknowledged a leader's heartbeat just before it
  // went down, and that leader's lease counts on it.
  int ticks_since_start_ = 0;
  bool restart_vote_guard_ = false;
  // Leader only: ticks since it became leader, plus one (the lease clock).
  uint64_t leader_ticks_ = 0;
  // Leader only: heartbeats sent at or before this tick no longer renew the
  // lease (set when we hand leadership over with TimeoutNow).
  uint64_t lease_floor_ = 0;
};

}  // namespace keel::raft
