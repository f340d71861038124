// The leader's step function: proposals, replication, commit, heartbeats,
// ReadIndex, leadership transfer.
#include <algorithm>

#include "raft/codec.h"
#include "raft/raft.h"

namespace keel::raft {

Status Raft::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kBeat:
      BcastHeartbeat();
      return Status::OK();
    case MessageType::kCheckQuorum:
      if (!trk_.QuorumActive()) {
        // We have not heard from a quorum for an election timeout: we may
        // be in a minority, where we can no longer serve anything.
        BecomeFollower(term_, kNone);
      }
      // Everyone must prove again that they are active.
      for (auto& [id, pr] : trk_.progress) pr.recent_active = id == id_;
      return Status::OK();
    case MessageType::kProp:
      return HandlePropose(m);
    case MessageType::kReadIndex:
      HandleReadIndex(std::move(m));
      return Status::OK();
    default:
      break;
  }
  auto it = trk_.progress.find(m.from);
  if (it == trk_.progress.end()) return Status::OK();  // not a member
  StepLeaderPeerMessage(m, it->second);
  return Status::OK();
}

void Raft::StepLeaderPeerMessage(Message& m, tracker::Progress& pr) {
  switch (m.type) {
    case MessageType::kAppResp:
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      HandleHeartbeatResponse(m, pr);
      break;
    case MessageType::kSnapStatus:
      if (pr.state != ProgressState::kSnapshot) return;
      if (m.reject) pr.pending_snapshot = 0;  // failed: don't assume it
      pr.BecomeProbe();
      // Wait for a heartbeat response before probing: the snapshot may
      // still be applying.
      pr.msg_app_flow_paused = true;
      break;
    case MessageType::kUnreachable:
      // Messages were likely lost: stop pipelining, probe again.
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      break;
    case MessageType::kTransferLeader:
      HandleTransferLeader(m, pr);
      break;
    default:
      break;
  }
}

Status Raft::HandlePropose(Message& m) {
  if (m.entries.empty()) return Status::InvalidArgument("empty proposal");
  if (trk_.progress.count(id_) == 0) {
    // Removed from the configuration while leading; we step down when the
    // change applies, and must not grow the log until then.
    return Status::ProposalDropped();
  }
  if (lead_transferee_ != kNone) {
    return Status::ProposalDropped(
        "raft proposal dropped: leadership "
        "transfer in progress");
  }
  for (size_t i = 0; i < m.entries.size(); i++) {
    Entry& e = m.entries[i];
    if (e.type != EntryType::kConfChange) continue;
    ConfChange cc;
    bool refused = false;
    if (!DecodeConfChange(e.data, &cc)) {
      refused = true;
    } else {
      bool already_pending = pending_conf_index_ > log_.applied();
      bool already_joint = trk_.config.voters.IsJoint();
      bool wants_leave = cc.LeavesJoint();
      // One change at a time; joint consensus must be left before the next.
      refused = already_pending || (already_joint && !wants_leave) ||
                (!already_joint && wants_leave);
    }
    if (refused) {
      // Keep the slot (the caller may track indexes) but make it inert.
      e = Entry{};
    } else {
      pending_conf_index_ = log_.LastIndex() + i + 1;
    }
  }
  if (!AppendEntry(m.entries)) {
    return Status::ProposalDropped(
        "raft proposal dropped: too many "
        "uncommitted entries");
  }
  BcastAppend();
  return Status::OK();
}

bool Raft::AppendEntry(std::vector<Entry>& es) {
  Index li = log_.LastIndex();
  for (size_t i = 0; i < es.size(); i++) {
    es[i].term = term_;
    es[i].index = li + 1 + i;
  }
  if (!IncreaseUncommittedSize(es)) return false;
  log_.Append(es);
  // Our own progress advances when the caller reports the entries
  // persisted (OnPersisted), never before.
  return true;
}

bool Raft::IncreaseUncommittedSize(const std::vector<Entry>& es) {
  uint64_t s = 0;
  for (const Entry& e : es) s += e.PayloadSize();
  // An entry is always allowed when nothing is uncommitted, so that one
  // large proposal cannot be refused forever.
  if (uncommitted_size_ > 0 && s > 0 &&
      uncommitted_size_ + s > max_uncommitted_size_) {
    return false;
  }
  uncommitted_size_ += s;
  return true;
}

void Raft::ReduceUncommittedSize(uint64_t s) {
  uncommitted_size_ = s > uncommitted_size_ ? 0 : uncommitted_size_ - s;
}

bool Raft::MaybeCommit() { return log_.MaybeCommit(trk_.Committed(), term_); }

void Raft::HandleAppendResponse(const Message& m, tracker::Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    // Fast backtracking (Raft §5.3 optimisation): the follower says its log
    // at reject_hint has term log_term; skip every index of ours whose term
    // is above that, in one step.
    Index next_probe = m.reject_hint;
    if (m.log_term > 0) {
      next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    }
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  bool old_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index) &&
      !(pr.match == m.index && pr.state == ProgressState::kProbe)) {
    return;  // stale
  }
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      // The follower caught up past what we have compacted: it no longer
      // needs the snapshot.
      if (pr.match + 1 >= log_.FirstIndex()) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  } else if (old_paused) {
    // The follower may be missing our latest commit index.
    SendAppend(m.from);
  }
  // Pipeline as much as the window allows.
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.LastIndex()) {
    SendTimeoutNow(m.from);
  }
}

void Raft::HandleHeartbeatResponse(const Message& m, tracker::Progress& pr) {
  pr.recent_active = true;
  pr.msg_app_flow_paused = false;
  if (m.index > lease_floor_) {
    pr.heartbeat_ack_tick = std::max(pr.heartbeat_ack_tick, m.index);
  }
  if (pr.state == ProgressState::kReplicate && pr.inflights.Full()) {
    pr.inflights.FreeFirstOne();
  }
  if (pr.match < log_.LastIndex() || pr.state == ProgressState::kProbe) {
    SendAppend(m.from);
  }
  if (read_only_option_ != ReadOnlyOption::kSafe || m.context.empty()) return;
  const std::set<NodeId>* acks = read_only_.RecvAck(m.from, m.context);
  if (acks == nullptr) return;
  std::map<NodeId, bool> votes;
  for (NodeId id : *acks) votes[id] = true;
  if (trk_.config.voters.Vote(votes) != quorum::VoteResult::kWon) return;
  for (ReadIndexStatus& rs : read_only_.Advance(m.context)) {
    RespondToReadIndex(rs.req, rs.index);
  }
  // Reads that arrived during that round share the next one.
  StartReadRoundIfIdle();
}

void Raft::HandleTransferLeader(const Message& m, tracker::Progress& pr) {
  if (pr.is_learner) return;  // a learner cannot lead
  NodeId transferee = m.from;
  if (lead_transferee_ != kNone) {
    if (lead_transferee_ == transferee) return;  // already in progress
    AbortLeaderTransfer();
  }
  if (transferee == id_) return;  // already the leader
  // The transfer must finish within one election timeout.
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  if (pr.match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);  // catch it up first
  }
}

bool Raft::MaybeSendAppend(NodeId to, bool send_if_empty) {
  auto it = trk_.progress.find(to);
  if (it == trk_.progress.end()) return false;
  tracker::Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  Index prev_index = pr.next - 1;
  auto prev_term = log_.TermAt(prev_index);
  if (!prev_term.ok()) return MaybeSendSnapshot(to, pr);  // compacted
  auto ents = log_.EntriesFrom(pr.next, max_msg_size_);
  if (!ents.ok()) return MaybeSendSnapshot(to, pr);
  if (ents->empty() && !send_if_empty) return false;
  uint64_t bytes = 0;
  for (const Entry& e : *ents) bytes += e.PayloadSize();
  size_t n = ents->size();
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = prev_index;
  m.log_term = *prev_term;
  m.entries = std::move(ents).value();
  m.commit = log_.committed();
  Send(std::move(m));
  pr.SentEntries(n, bytes, pr.next);
  return true;
}

bool Raft::MaybeSendSnapshot(NodeId to, tracker::Progress& pr) {
  // Only to a member that answers: a snapshot is expensive.
  if (!pr.recent_active) return false;
  auto snap = log_.GetSnapshot();
  if (!snap.ok()) {
    KEEL_CHECK(snap.status().code() ==
               Status::Code::kSnapshotTemporarilyUnavailable)
        << "snapshot: " << snap.status().ToString();
    return false;
  }
  KEEL_CHECK(!snap->IsEmpty()) << "need non-empty snapshot";
  pr.BecomeSnapshot(snap->metadata.index);
  Message m;
  m.type = MessageType::kSnap;
  m.to = to;
  m.snapshot = std::make_shared<const Snapshot>(std::move(snap).value());
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(NodeId to, const std::string& ctx) {
  // A follower may not have entries up to our commit index: it must never
  // commit beyond what it has, so send at most its match.
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.commit = std::min(trk_.progress.at(to).match, log_.committed());
  m.context = ctx;
  // The send time, echoed back: an acknowledgement renews the leader lease
  // from the moment the heartbeat left, not from when the answer arrived.
  m.index = leader_ticks_;
  Send(std::move(m));
}

void Raft::BcastAppend() {
  for (auto& [id, pr] : trk_.progress) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() {
  BcastHeartbeatWithCtx(read_only_.LastPendingRequestCtx());
}

void Raft::BcastHeartbeatWithCtx(const std::string& ctx) {
  for (auto& [id, pr] : trk_.progress) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

void Raft::SendTimeoutNow(NodeId to) {
  // The transferee will campaign at once and voters will disregard our
  // lease for it: the lease ends here.
  lease_floor_ = leader_ticks_;
  for (auto& [id, pr] : trk_.progress) pr.heartbeat_ack_tick = 0;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

bool Raft::LeaseValid() const {
  // A voter that acknowledged a heartbeat sent at tick t refuses to vote
  // for anyone else until a full election timeout after it received it
  // (CheckQuorum's in-lease rule, and a restarted member waits one timeout
  // before voting). So no other leader can be elected before
  // t + election_timeout, where t is the send tick of the newest heartbeat
  // acknowledged by a quorum. Two ticks of margin absorb tick phase and
  // rate differences between members; the lease assumes clocks advance at
  // the same rate within that margin.
  constexpr uint64_t kLeaseMarginTicks = 2;
  if (lead_transferee_ != kNone) return false;
  Index start = trk_.config.voters.CommittedIndex(
      [this](NodeId id) -> std::optional<Index> {
        if (id == id_) return leader_ticks_;
        auto it = trk_.progress.find(id);
        if (it == trk_.progress.end()) return std::nullopt;
        return it->second.heartbeat_ack_tick;
      });
  return start > lease_floor_ &&
         leader_ticks_ + kLeaseMarginTicks <
             start + static_cast<uint64_t>(election_timeout_);
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.ZeroTermOnOutOfBounds(log_.committed()) == term_;
}

void Raft::HandleReadIndex(Message m) {
  // Until an entry of our term commits, our commit index may lag behind
  // entries earlier leaders committed (Raft §6.4): wait.
  if (!CommittedEntryInCurrentTerm()) {
    pending_read_index_messages_.push_back(std::move(m));
    return;
  }
  if (trk_.IsSingleton()) {
    RespondToReadIndex(m, log_.committed());
    return;
  }
  if (read_only_option_ == ReadOnlyOption::kLeaseBased && LeaseValid()) {
    RespondToReadIndex(m, log_.committed());
    return;
  }
  // Safe ReadIndex (also the fallback when the lease does not hold).
  std::string ctx = m.context;
  if (ctx.empty()) return;  // cannot be matched to an acknowledgement
  if (!read_only_.AddRequest(log_.committed(), std::move(m))) return;
  read_only_.RecvAck(id_, ctx);
  StartReadRoundIfIdle();
}

void Raft::StartReadRoundIfIdle() {
  if (!read_only_.round_ctx().empty() || !read_only_.HasPending()) return;
  std::string ctx = read_only_.LastPendingRequestCtx();
  read_only_.set_round_ctx(ctx);
  BcastHeartbeatWithCtx(ctx);
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty()) return;
  if (!CommittedEntryInCurrentTerm()) return;
  std::vector<Message> msgs;
  msgs.swap(pending_read_index_messages_);
  for (Message& m : msgs) HandleReadIndex(std::move(m));
}

void Raft::RespondToReadIndex(const Message& req, Index read_index) {
  if (req.from == kNone || req.from == id_) {
    read_states_.push_back(ReadState{read_index, req.context});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResp;
  resp.to = req.from;
  resp.index = read_index;
  resp.context = req.context;
  Send(std::move(resp));
}

}  // namespace keel::raft
