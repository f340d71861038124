// The step functions of followers and (pre-)candidates, and the follower's
// handling of AppendEntries, heartbeats and InstallSnapshot.
#include <algorithm>

#include "raft/confchange/confchange.h"
#include "raft/raft.h"

namespace keel::raft {

Status Raft::StepCandidate(Message& m) {
  // Only responses to our own kind of vote request count: a pre-candidate
  // ignores kVoteResp of an older election, and vice versa.
  MessageType my_resp = state_ == StateRole::kPreCandidate
                            ? MessageType::kPreVoteResp
                            : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kProp:
      return Status::ProposalDropped("raft proposal dropped: no leader");
    case MessageType::kApp:
      BecomeFollower(m.term, m.from);  // always m.term == term_
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    default:
      if (m.type != my_resp) break;
      switch (Poll(m.from, !m.reject)) {
        case quorum::VoteResult::kWon:
          if (state_ == StateRole::kPreCandidate) {
            Campaign(CampaignType::kElection);
          } else {
            BecomeLeader();
            BcastAppend();
          }
          break;
        case quorum::VoteResult::kLost:
          // A kPreVoteResp rejection with a higher term already made us a
          // follower in Step; here the term is ours.
          BecomeFollower(term_, kNone);
          break;
        case quorum::VoteResult::kPending:
          break;
      }
  }
  return Status::OK();
}

Status Raft::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      if (lead_ == kNone) {
        return Status::ProposalDropped("raft proposal dropped: no leader");
      }
      if (disable_proposal_forwarding_) {
        return Status::ProposalDropped(
            "raft proposal dropped: forwarding disabled");
      }
      m.to = lead_;
      Send(std::move(m));
      break;
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTransferLeader:
    case MessageType::kReadIndex:
      if (lead_ == kNone) break;  // dropped; the caller retries
      m.to = lead_;
      m.term = 0;
      Send(std::move(m));
      break;
    case MessageType::kTimeoutNow:
      // The leader hands over: campaign at once, without PreVote, and ask
      // voters to disregard the leader lease.
      Hup(CampaignType::kTransfer);
      break;
    case MessageType::kReadIndexResp:
      read_states_.push_back(ReadState{m.index, m.context});
      break;
    default:
      break;
  }
  return Status::OK();
}

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches the leader's log already.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (auto last = log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    resp.index = *last;
    Send(std::move(resp));
    return;
  }
  // Reject, with a hint that lets the leader skip a whole term of
  // mismatching entries per round trip: the largest index <= m.index whose
  // term is <= m.log_term.
  Index hint = std::min(m.index, log_.LastIndex());
  auto [hint_index, hint_term] = log_.FindConflictByTerm(hint, m.log_term);
  resp.index = m.index;
  resp.reject = true;
  resp.reject_hint = hint_index;
  resp.log_term = hint_term;
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.context = m.context;
  resp.index = m.index;  // the leader's send tick, for its lease
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.snapshot && Restore(*m.snapshot)) {
    resp.index = log_.LastIndex();
  } else {
    resp.index = log_.committed();
  }
  Send(std::move(resp));
}

bool Raft::Restore(const Snapshot& s) {
  const SnapshotMetadata& md = s.metadata;
  if (md.index <= log_.committed()) return false;
  if (state_ != StateRole::kFollower) {
    // Only a leader of our term sends snapshots, so we must be a follower;
    // anything else is a bug elsewhere. Be defensive: force an election.
    BecomeFollower(term_ + 1, kNone);
    return false;
  }
  const ConfState& cs = md.conf_state;
  bool found =
      std::find(cs.voters.begin(), cs.voters.end(), id_) != cs.voters.end() ||
      std::find(cs.learners.begin(), cs.learners.end(), id_) !=
          cs.learners.end() ||
      std::find(cs.voters_outgoing.begin(), cs.voters_outgoing.end(), id_) !=
          cs.voters_outgoing.end();
  // A snapshot that does not include us would leave us without a
  // configuration; this should not happen, so refuse it.
  if (!found) return false;
  if (log_.MatchTerm(md.index, md.term)) {
    // We have the entries already: just move the commit index.
    log_.CommitTo(md.index);
    return false;
  }
  log_.Restore(s);
  tracker::ProgressTracker fresh(trk_.max_inflight(),
                                 trk_.max_inflight_bytes());
  auto r = confchange::Restore(fresh, log_.LastIndex(), cs);
  KEEL_CHECK(r.ok()) << "unable to restore config from snapshot: "
                     << r.status().ToString();
  SwitchToConfig(r->config, r->progress);
  auto& self = trk_.progress.at(id_);
  self.MaybeUpdate(self.next - 1);
  return true;
}

}  // namespace keel::raft
