// Configuration changes: turning a ConfChange into a new tracker Config and
// ProgressMap, for simple (one voter at a time) and joint-consensus changes.
//
// Every function works on copies and returns either the new configuration
// or an error; the caller installs the result.
//
// Thread safety: values.
#pragma once

#include <utility>
#include <vector>

#include "common/status.h"
#include "raft/tracker/tracker.h"

namespace keel::raft::confchange {

struct Result {
  tracker::Config config;
  tracker::ProgressMap progress;
};

class Changer {
 public:
  Changer(const tracker::ProgressTracker& tracker, Index last_index)
      : tracker_(tracker), last_index_(last_index) {}

  // Enters a joint configuration: the current voters become the outgoing
  // half and `changes` are applied to the incoming half.
  keel::Result<Result> EnterJoint(
      bool auto_leave, const std::vector<ConfChangeSingle>& changes) const;
  // Leaves the joint configuration for its incoming half.
  keel::Result<Result> LeaveJoint() const;
  // Applies changes that alter at most one voter, outside joint consensus.
  keel::Result<Result> Simple(
      const std::vector<ConfChangeSingle>& changes) const;

 private:
  Status Apply(tracker::Config* cfg, tracker::ProgressMap* prs,
               const std::vector<ConfChangeSingle>& changes) const;
  void MakeVoter(tracker::Config* cfg, tracker::ProgressMap* prs,
                 NodeId id) const;
  void MakeLearner(tracker::Config* cfg, tracker::ProgressMap* prs,
                   NodeId id) const;
  void Remove(tracker::Config* cfg, tracker::ProgressMap* prs, NodeId id) const;
  void InitProgress(tracker::Config* cfg, tracker::ProgressMap* prs, NodeId id,
                    bool is_learner) const;

  const tracker::ProgressTracker& tracker_;
  Index last_index_;
};

// Builds the configuration a ConfState describes (on restart or snapshot).
keel::Result<Result> Restore(const tracker::ProgressTracker& tracker,
                             Index last_index, const ConfState& cs);

// Checks the invariants that tie a Config to its ProgressMap.
Status CheckInvariants(const tracker::Config& cfg,
                       const tracker::ProgressMap& prs);

}  // namespace keel::raft::confchange
