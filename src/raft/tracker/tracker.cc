#include "raft/tracker/tracker.h"

namespace keel::raft::tracker {

std::string Config::DebugString() const {
  std::string s = "voters=" + voters.DebugString();
  if (!learners.empty()) {
    s += " learners=" + quorum::MajorityConfig(learners).DebugString();
  }
  if (!learners_next.empty()) {
    s +=
        " learners_next=" + quorum::MajorityConfig(learners_next).DebugString();
  }
  if (auto_leave) s += " autoleave";
  return s;
}

ConfState ProgressTracker::GetConfState() const {
  ConfState cs;
  const auto& in = config.voters.incoming.ids();
  const auto& out = config.voters.outgoing.ids();
  cs.voters.assign(in.begin(), in.end());
  cs.voters_outgoing.assign(out.begin(), out.end());
  cs.learners.assign(config.learners.begin(), config.learners.end());
  cs.learners_next.assign(config.learners_next.begin(),
                          config.learners_next.end());
  cs.auto_leave = config.auto_leave;
  return cs;
}

Index ProgressTracker::Committed() const {
  return config.voters.CommittedIndex(
      [this](NodeId id) -> std::optional<Index> {
        auto it = progress.find(id);
        if (it == progress.end()) return std::nullopt;
        return it->second.match;
      });
}

bool ProgressTracker::QuorumActive() const {
  std::map<NodeId, bool> votes;
  for (const auto& [id, pr] : progress) {
    if (pr.is_learner) continue;
    votes[id] = pr.recent_active;
  }
  return config.voters.Vote(votes) == quorum::VoteResult::kWon;
}

void ProgressTracker::RecordVote(NodeId id, bool granted) {
  votes_.emplace(id, granted);
}

quorum::VoteResult ProgressTracker::TallyVotes(int* granted,
                                               int* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (const auto& [id, pr] : progress) {
    if (pr.is_learner) continue;
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    if (it->second) {
      (*granted)++;
    } else {
      (*rejected)++;
    }
  }
  return config.voters.Vote(votes_);
}

}  // namespace keel::raft::tracker
