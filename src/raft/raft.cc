#include "raft/raft.h"

#include <algorithm>

#include "raft/codec.h"
#include "raft/confchange/confchange.h"

namespace keel::raft {

Raft::Raft(const Config& c)
    : id_(c.id),
      heartbeat_timeout_(c.heartbeat_tick),
      election_timeout_(c.election_tick),
      max_msg_size_(c.max_size_per_msg),
      max_uncommitted_size_(c.max_uncommitted_entries_size == 0
                                ? UINT64_MAX
                                : c.max_uncommitted_entries_size),
      check_quorum_(c.check_quorum),
      pre_vote_(c.pre_vote),
      read_only_option_(c.read_only_option),
      disable_proposal_forwarding_(c.disable_proposal_forwarding),
      rng_(c.rng),
      log_(c.storage, c.max_committed_size_per_ready),
      trk_(c.max_inflight_msgs, c.max_inflight_bytes) {
  HardState hs;
  ConfState cs;
  Status st = c.storage->InitialState(&hs, &cs);
  KEEL_CHECK(st.ok()) << "storage initial state: " << st.ToString();
  auto restored = confchange::Restore(trk_, log_.LastIndex(), cs);
  KEEL_CHECK(restored.ok())
      << "restore config: " << restored.status().ToString();
  SwitchToConfig(restored->config, restored->progress);
  if (!hs.IsEmpty()) LoadState(hs);
  // A member that has been in a term after the bootstrap term (1) may have
  // acknowledged some leader's heartbeat before it went down.
  restart_vote_guard_ =
      read_only_option_ == ReadOnlyOption::kLeaseBased && hs.term > 1;
  if (c.applied > 0) log_.AppliedTo(c.applied);
  BecomeFollower(term_, kNone);
}

void Raft::LoadState(const HardState& hs) {
  KEEL_CHECK(hs.commit >= log_.committed() && hs.commit <= log_.LastIndex())
      << "hard state commit " << hs.commit << " is out of range ["
      << log_.committed() << ", " << log_.LastIndex() << "]";
  log_.CommitTo(hs.commit);
  term_ = hs.term;
  vote_ = hs.vote;
}

void Raft::Send(Message m) {
  if (m.from == kNone) m.from = id_;
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kVoteResp:
    case MessageType::kPreVote:
    case MessageType::kPreVoteResp:
      // Votes carry the term they are for, which for PreVote is a future
      // term; the caller sets it.
      KEEL_CHECK_NE(m.term, 0u) << "term should be set for " << m;
      break;
    default:
      KEEL_CHECK_EQ(m.term, 0u) << "term should not be set for " << m;
      // Proposals and read requests forwarded to the leader stay term-less:
      // they are treated as local messages there.
      if (m.type != MessageType::kProp && m.type != MessageType::kReadIndex) {
        m.term = term_;
      }
  }
  msgs_.push_back(std::move(m));
}

// ---- roles ----

void Raft::Reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  trk_.ResetVotes();
  // Our own log counts only as far as it is persisted.
  Index stable_last = log_.unstable().offset() - 1;
  for (auto& [id, pr] : trk_.progress) {
    bool learner = pr.is_learner;
    pr = tracker::Progress(trk_.max_inflight(), trk_.max_inflight_bytes());
    pr.is_learner = learner;
    pr.next = log_.LastIndex() + 1;
    if (id == id_) pr.match = std::min(stable_last, log_.LastIndex());
  }
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  read_only_.Reset();
  pending_read_index_messages_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      election_timeout_ + static_cast<int>(rng_->Uniform(election_timeout_));
}

void Raft::BecomeFollower(Term term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateRole::kFollower;
}

void Raft::BecomeCandidate() {
  KEEL_CHECK(state_ != StateRole::kLeader)
      << "invalid transition [leader -> candidate]";
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateRole::kCandidate;
}

void Raft::BecomePreCandidate() {
  KEEL_CHECK(state_ != StateRole::kLeader)
      << "invalid transition [leader -> pre-candidate]";
  // PreVote changes neither term nor vote: a member that cannot win costs
  // the cluster nothing.
  trk_.ResetVotes();
  lead_ = kNone;
  state_ = StateRole::kPreCandidate;
}

void Raft::BecomeLeader() {
  KEEL_CHECK(state_ != StateRole::kFollower)
      << "invalid transition [follower -> leader]";
  Reset(term_);
  lead_ = id_;
  state_ = StateRole::kLeader;
  leader_ticks_ = 1;
  lease_floor_ = 0;
  auto& self = trk_.progress.at(id_);
  self.BecomeReplicate();
  self.recent_active = true;
  // Conservatively, any entry in the log may be a configuration change.
  pending_conf_index_ = log_.LastIndex();
  // The empty entry of the new term: once it commits, every earlier entry
  // is committed too (Raft §5.4.2, Figure 8).
  std::vector<Entry> empty(1);
  KEEL_CHECK(AppendEntry(empty)) << "empty entry was dropped";
}

bool Raft::Promotable() const {
  auto it = trk_.progress.find(id_);
  return it != trk_.progress.end() && !it->second.is_learner &&
         !log_.HasPendingSnapshot();
}

bool Raft::HasUnappliedConfChanges() const {
  if (log_.applied() >= log_.committed()) return false;
  auto ents = log_.Slice(log_.applied() + 1, log_.committed() + 1, UINT64_MAX);
  KEEL_CHECK(ents.ok()) << ents.status().ToString();
  for (const Entry& e : *ents) {
    if (e.type == EntryType::kConfChange) return true;
  }
  return false;
}

void Raft::Hup(CampaignType t) {
  if (state_ == StateRole::kLeader) return;
  if (!Promotable()) return;
  // A member must not campaign while it may still apply a configuration
  // change that removes or demotes it.
  if (HasUnappliedConfChanges()) return;
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  if (!Promotable()) return;
  Term term;
  MessageType vote_msg;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_msg = MessageType::kPreVote;
    term = term_ + 1;  // the term we would campaign for
  } else {
    BecomeCandidate();
    vote_msg = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, true) == quorum::VoteResult::kWon) {
    // Single voter: we won with our own vote.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId id : trk_.VoterNodes()) {
    if (id == id_) continue;
    Message m;
    m.type = vote_msg;
    m.to = id;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (t == CampaignType::kTransfer) m.context = kCampaignTransfer;
    Send(std::move(m));
  }
}

quorum::VoteResult Raft::Poll(NodeId id, bool granted) {
  trk_.RecordVote(id, granted);
  int g, r;
  return trk_.TallyVotes(&g, &r);
}

// ---- Step ----

Status Raft::Step(Message m) {
  if (m.term == 0) {
    // Local message.
  } else if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      bool force = m.context == kCampaignTransfer;
      bool restarting =
          restart_vote_guard_ && ticks_since_start_ < election_timeout_;
      bool in_lease = check_quorum_ && (lead_ != kNone || restarting) &&
                      election_elapsed_ < election_timeout_;
      // While we hear from a leader, a vote request is from a member that
      // is cut off or rejoining: ignore it so it cannot depose the leader.
      if (!force && in_lease) return Status::OK();
    }
    if (m.type == MessageType::kPreVote) {
      // Never change our term in response to a PreVote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // The term is the one we campaign for; we move to it once we have a
      // quorum of pre-votes.
    } else if (m.type == MessageType::kApp ||
               m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else if (m.type == MessageType::kVote) {
      // A vote request moves us to its term, but the election timer keeps
      // running unless we grant the vote (Raft, Figure 2: a follower waits
      // for "AppendEntries from current leader or granting vote to
      // candidate"). Otherwise members with stale logs, campaigning in
      // turn, keep resetting the one member that could win (the simulator
      // found such a livelock without PreVote, seed 34729).
      int elapsed = election_elapsed_;
      BecomeFollower(m.term, kNone);
      election_elapsed_ = elapsed;
    } else {
      BecomeFollower(m.term, kNone);
    }
  } else if (m.term < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader (e.g. partitioned, or its term overtaken by a
      // member whose pre-vote failed) learns our term from this answer and
      // steps down; without it, the cluster could be stuck.
      Message resp;
      resp.type = MessageType::kAppResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    // Otherwise ignore it.
    return Status::OK();
  }

  switch (m.type) {
    case MessageType::kHup:
      Hup(pre_vote_ ? CampaignType::kPreElection : CampaignType::kElection);
      return Status::OK();
    case MessageType::kVote:
    case MessageType::kPreVote:
      HandleVoteRequest(m);
      return Status::OK();
    default:
      break;
  }
  switch (state_) {
    case StateRole::kLeader:
      return StepLeader(m);
    case StateRole::kCandidate:
    case StateRole::kPreCandidate:
      return StepCandidate(m);
    case StateRole::kFollower:
      return StepFollower(m);
  }
  return Status::OK();
}

void Raft::HandleVoteRequest(const Message& m) {
  // We may vote for m.from if we already did in this term, if we have not
  // voted and know of no leader, or if this is a PreVote for a later term.
  bool can_vote = vote_ == m.from || (vote_ == kNone && lead_ == kNone) ||
                  (m.type == MessageType::kPreVote && m.term > term_);
  Message resp;
  resp.type = VoteResponseType(m.type);
  resp.to = m.from;
  // Election restriction (Raft §5.4.1): only for a candidate whose log is at
  // least as up to date as ours.
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    // The response carries the message's term: for a PreVote that is the
    // future term, which the pre-candidate would otherwise ignore.
    resp.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      // Recorded in the hard state, which the caller persists before the
      // response leaves.
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  Send(std::move(resp));
}

// ---- ticks ----

void Raft::Tick() {
  if (ticks_since_start_ < election_timeout_) ticks_since_start_++;
  if (state_ == StateRole::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  election_elapsed_++;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Message m;
    m.type = MessageType::kHup;
    m.from = id_;
    Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  leader_ticks_++;
  heartbeat_elapsed_++;
  election_elapsed_++;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_) {
      Message m;
      m.type = MessageType::kCheckQuorum;
      m.from = id_;
      Step(std::move(m));
    }
    // A transfer that did not finish in one election timeout is abandoned.
    if (state_ == StateRole::kLeader && lead_transferee_ != kNone) {
      AbortLeaderTransfer();
    }
  }
  if (state_ != StateRole::kLeader) return;
  MaybeAutoLeaveJoint();
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.type = MessageType::kBeat;
    m.from = id_;
    Step(std::move(m));
  }
}

// ---- persistence and apply callbacks ----

void Raft::OnPersisted(Index index, Term term) {
  log_.StableTo(index, term);
  if (state_ != StateRole::kLeader) return;
  auto it = trk_.progress.find(id_);
  if (it == trk_.progress.end()) return;
  Index stable_last = log_.unstable().offset() - 1;
  if (it->second.MaybeUpdate(stable_last) && MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  }
}

void Raft::OnSnapshotApplied(Index index) {
  log_.StableSnapTo(index);
  log_.AppliedTo(index);
}

void Raft::OnApplied(Index index, uint64_t applied_payload_bytes) {
  Index new_applied = std::max(index, log_.applied());
  log_.AppliedTo(new_applied);
  ReduceUncommittedSize(applied_payload_bytes);
  MaybeAutoLeaveJoint();
}

void Raft::MaybeAutoLeaveJoint() {
  if (!trk_.config.auto_leave || state_ != StateRole::kLeader ||
      log_.applied() < pending_conf_index_ || lead_transferee_ != kNone) {
    return;
  }
  // The joint configuration is committed and applied: leave it. If this is
  // refused, the next apply or heartbeat tick tries again.
  Message m;
  m.type = MessageType::kProp;
  m.from = id_;
  Entry e;
  e.type = EntryType::kConfChange;
  EncodeConfChange(ConfChange{}, &e.data);
  m.entries.push_back(std::move(e));
  Step(std::move(m));
}

// ---- configuration ----

ConfState Raft::ApplyConfChange(const ConfChange& cc) {
  confchange::Changer changer(trk_, log_.LastIndex());
  keel::Result<confchange::Result> r = Status::Aborted("unset");
  bool auto_leave = false;
  if (cc.LeavesJoint()) {
    r = changer.LeaveJoint();
  } else if (cc.EntersJoint(&auto_leave)) {
    r = changer.EnterJoint(auto_leave, cc.changes);
  } else {
    r = changer.Simple(cc.changes);
  }
  if (!r.ok()) {
    // Every member applies the same entries to the same configuration, so
    // all of them reject this change alike: the configuration stays.
    return trk_.GetConfState();
  }
  return SwitchToConfig(r->config, r->progress);
}

ConfState Raft::SwitchToConfig(const tracker::Config& cfg,
                               const tracker::ProgressMap& prs) {
  trk_.config = cfg;
  trk_.progress = prs;
  ConfState cs = trk_.GetConfState();
  auto it = trk_.progress.find(id_);
  is_learner_ = it != trk_.progress.end() && it->second.is_learner;
  if ((it == trk_.progress.end() || is_learner_) &&
      state_ == StateRole::kLeader) {
    // Removed or demoted: step down so that the rest elect a leader among
    // themselves.
    BecomeFollower(term_, kNone);
    return cs;
  }
  if (state_ != StateRole::kLeader || cs.voters.empty()) return cs;
  // The quorum may have changed: the commit index may move, and new
  // members need probing.
  if (MaybeCommit()) {
    BcastAppend();
  } else {
    for (auto& [id, pr] : trk_.progress) {
      if (id != id_) MaybeSendAppend(id, false);
    }
  }
  if (lead_transferee_ != kNone &&
      !trk_.config.voters.Contains(lead_transferee_)) {
    AbortLeaderTransfer();
  }
  return cs;
}

}  // namespace keel::raft
