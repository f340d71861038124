// ProgressTracker: the active configuration, each member's Progress, and the
// votes of the current election.
//
// Thread safety: none; owned by the Raft state machine.
#pragma once

#include <map>
#include <set>
#include <string>

#include "raft/quorum/quorum.h"
#include "raft/tracker/progress.h"

namespace keel::raft::tracker {

struct Config {
  quorum::JointConfig voters;
  // Leave the joint configuration automatically once it is committed.
  bool auto_leave = false;
  // Invariant: learners and voters (both halves) are disjoint.
  std::set<NodeId> learners;
  // Members that become learners when the joint configuration is left
  // (they are voters in the outgoing half until then).
  // Invariant: learners_next ⊆ voters.outgoing.
  std::set<NodeId> learners_next;

  std::string DebugString() const;
  friend bool operator==(const Config&, const Config&) = default;
};

using ProgressMap = std::map<NodeId, Progress>;

class ProgressTracker {
 public:
  ProgressTracker(size_t max_inflight, uint64_t max_inflight_bytes)
      : max_inflight_(max_inflight), max_inflight_bytes_(max_inflight_bytes) {}

  Config config;
  ProgressMap progress;

  ConfState GetConfState() const;
  bool IsSingleton() const {
    return config.voters.incoming.size() == 1 && !config.voters.IsJoint();
  }
  // The largest index a quorum of voters has acknowledged.
  Index Committed() const;
  // Visits every member (voters and learners) in id order.
  template <typename F>
  void Visit(F&& f) {
    for (auto& [id, pr] : progress) f(id, pr);
  }
  // Is the quorum active (recently heard from), as seen by the leader?
  bool QuorumActive() const;
  std::set<NodeId> VoterNodes() const { return config.voters.IDs(); }
  std::set<NodeId> LearnerNodes() const { return config.learners; }

  void ResetVotes() { votes_.clear(); }
  // Records a vote (only the first from each member counts).
  void RecordVote(NodeId id, bool granted);
  // Tally: granted and rejected counts, and the result.
  quorum::VoteResult TallyVotes(int* granted, int* rejected) const;

  size_t max_inflight() const { return max_inflight_; }
  uint64_t max_inflight_bytes() const { return max_inflight_bytes_; }

 private:
  size_t max_inflight_;
  uint64_t max_inflight_bytes_;
  std::map<NodeId, bool> votes_;
};

}  // namespace keel::raft::tracker
