#include "raft/confchange/confchange.h"

#include <algorithm>

namespace keel::raft::confchange {
namespace {

size_t SymDiff(const std::set<NodeId>& a, const std::set<NodeId>& b) {
  size_t n = 0;
  for (NodeId id : a) n += b.count(id) == 0;
  for (NodeId id : b) n += a.count(id) == 0;
  return n;
}

}  // namespace

Status CheckInvariants(const tracker::Config& cfg,
                       const tracker::ProgressMap& prs) {
  for (NodeId id : cfg.voters.IDs()) {
    if (prs.count(id) == 0) {
      return Status::InvalidArgument("no progress for voter " +
                                     std::to_string(id));
    }
  }
  for (NodeId id : cfg.learners) {
    auto it = prs.find(id);
    if (it == prs.end()) {
      return Status::InvalidArgument("no progress for learner " +
                                     std::to_string(id));
    }
    if (cfg.voters.Contains(id)) {
      return Status::InvalidArgument(std::to_string(id) +
                                     " is both a learner and a voter");
    }
    if (!it->second.is_learner) {
      return Status::InvalidArgument(std::to_string(id) +
                                     " is a learner, but not marked so");
    }
  }
  for (NodeId id : cfg.learners_next) {
    auto it = prs.find(id);
    if (it == prs.end()) {
      return Status::InvalidArgument("no progress for learner_next " +
                                     std::to_string(id));
    }
    if (!cfg.voters.outgoing.Contains(id)) {
      return Status::InvalidArgument(std::to_string(id) +
                                     " is in learners_next, but not outgoing");
    }
    if (it->second.is_learner) {
      return Status::InvalidArgument(
          std::to_string(id) + " is in learners_next, but already a learner");
    }
  }
  for (NodeId id : cfg.voters.IDs()) {
    if (prs.at(id).is_learner) {
      return Status::InvalidArgument(std::to_string(id) +
                                     " is a voter, but marked a learner");
    }
  }
  if (!cfg.voters.IsJoint()) {
    if (!cfg.learners_next.empty()) {
      return Status::InvalidArgument(
          "learners_next must be empty when not joint");
    }
    if (cfg.auto_leave) {
      return Status::InvalidArgument("auto_leave must be false when not joint");
    }
  }
  // Every tracked member is in the configuration.
  for (const auto& [id, pr] : prs) {
    if (!cfg.voters.Contains(id) && cfg.learners.count(id) == 0) {
      return Status::InvalidArgument("progress for " + std::to_string(id) +
                                     " which is not a member");
    }
  }
  return Status::OK();
}

keel::Result<Result> Changer::EnterJoint(
    bool auto_leave, const std::vector<ConfChangeSingle>& changes) const {
  Result r{tracker_.config, tracker_.progress};
  if (r.config.voters.IsJoint()) {
    return Status::FailedPrecondition("config is already joint");
  }
  if (r.config.voters.incoming.empty()) {
    return Status::FailedPrecondition("can't make a zero-voter config joint");
  }
  r.config.voters.outgoing = r.config.voters.incoming;
  KEEL_RETURN_IF_ERROR(Apply(&r.config, &r.progress, changes));
  r.config.auto_leave = auto_leave;
  KEEL_RETURN_IF_ERROR(CheckInvariants(r.config, r.progress));
  return r;
}

keel::Result<Result> Changer::LeaveJoint() const {
  Result r{tracker_.config, tracker_.progress};
  if (!r.config.voters.IsJoint()) {
    return Status::FailedPrecondition("can't leave a non-joint config");
  }
  for (NodeId id : r.config.learners_next) {
    r.config.learners.insert(id);
    r.progress.at(id).is_learner = true;
  }
  r.config.learners_next.clear();
  for (NodeId id : r.config.voters.outgoing.ids()) {
    if (!r.config.voters.incoming.Contains(id) &&
        r.config.learners.count(id) == 0) {
      r.progress.erase(id);
    }
  }
  r.config.voters.outgoing = quorum::MajorityConfig();
  r.config.auto_leave = false;
  KEEL_RETURN_IF_ERROR(CheckInvariants(r.config, r.progress));
  return r;
}

keel::Result<Result> Changer::Simple(
    const std::vector<ConfChangeSingle>& changes) const {
  Result r{tracker_.config, tracker_.progress};
  if (r.config.voters.IsJoint()) {
    return Status::FailedPrecondition(
        "can't apply simple config change in joint config");
  }
  KEEL_RETURN_IF_ERROR(Apply(&r.config, &r.progress, changes));
  if (SymDiff(tracker_.config.voters.incoming.ids(),
              r.config.voters.incoming.ids()) > 1) {
    return Status::FailedPrecondition(
        "more than one voter changed without entering joint config");
  }
  KEEL_RETURN_IF_ERROR(CheckInvariants(r.config, r.progress));
  return r;
}

Status Changer::Apply(tracker::Config* cfg, tracker::ProgressMap* prs,
                      const std::vector<ConfChangeSingle>& changes) const {
  for (const auto& cc : changes) {
    if (cc.node_id == kNone) continue;  // etcd's "no-op" change
    switch (cc.type) {
      case ConfChangeType::kAddNode:
        MakeVoter(cfg, prs, cc.node_id);
        break;
      case ConfChangeType::kAddLearnerNode:
        MakeLearner(cfg, prs, cc.node_id);
        break;
      case ConfChangeType::kRemoveNode:
        Remove(cfg, prs, cc.node_id);
        break;
      case ConfChangeType::kUpdateNode:
        break;
    }
  }
  if (cfg->voters.incoming.empty()) {
    return Status::FailedPrecondition("removed all voters");
  }
  return Status::OK();
}

void Changer::MakeVoter(tracker::Config* cfg, tracker::ProgressMap* prs,
                        NodeId id) const {
  auto it = prs->find(id);
  if (it == prs->end()) {
    InitProgress(cfg, prs, id, /*is_learner=*/false);
    return;
  }
  it->second.is_learner = false;
  cfg->learners.erase(id);
  cfg->learners_next.erase(id);
  cfg->voters.incoming.mutable_ids().insert(id);
}

void Changer::MakeLearner(tracker::Config* cfg, tracker::ProgressMap* prs,
                          NodeId id) const {
  auto it = prs->find(id);
  if (it == prs->end()) {
    InitProgress(cfg, prs, id, /*is_learner=*/true);
    return;
  }
  if (it->second.is_learner) return;
  // Demote: drop from the voters but keep the progress.
  tracker::Progress pr = it->second;
  Remove(cfg, prs, id);
  pr.is_learner = false;
  // A voter of the outgoing half stays a voter until the joint config is
  // left; it becomes a learner then.
  if (cfg->voters.outgoing.Contains(id)) {
    cfg->learners_next.insert(id);
  } else {
    pr.is_learner = true;
    cfg->learners.insert(id);
  }
  prs->insert_or_assign(id, pr);
}

void Changer::Remove(tracker::Config* cfg, tracker::ProgressMap* prs,
                     NodeId id) const {
  if (prs->count(id) == 0) return;
  cfg->voters.incoming.mutable_ids().erase(id);
  cfg->learners.erase(id);
  cfg->learners_next.erase(id);
  // Still a voter of the outgoing half: keep tracking it.
  if (!cfg->voters.outgoing.Contains(id)) prs->erase(id);
}

void Changer::InitProgress(tracker::Config* cfg, tracker::ProgressMap* prs,
                           NodeId id, bool is_learner) const {
  if (is_learner) {
    cfg->learners.insert(id);
  } else {
    cfg->voters.incoming.mutable_ids().insert(id);
  }
  tracker::Progress pr(tracker_.max_inflight(), tracker_.max_inflight_bytes());
  // Probe from our last index: the new member's log is most likely empty,
  // and the first rejection tells us where it ends.
  pr.next = std::max<Index>(last_index_, 1);
  pr.match = 0;
  pr.is_learner = is_learner;
  // Counts as active so that a CheckQuorum right after adding it does not
  // depose the leader before the new member had a chance to answer.
  pr.recent_active = true;
  prs->insert_or_assign(id, pr);
}

keel::Result<Result> Restore(const tracker::ProgressTracker& tracker,
                             Index last_index, const ConfState& cs) {
  Result r{tracker::Config{}, tracker::ProgressMap{}};
  auto init = [&](NodeId id, bool learner) {
    if (r.progress.count(id)) return;
    tracker::Progress pr(tracker.max_inflight(), tracker.max_inflight_bytes());
    pr.next = std::max<Index>(last_index, 1);
    pr.is_learner = learner;
    pr.recent_active = true;
    r.progress.insert_or_assign(id, pr);
  };
  for (NodeId id : cs.voters) {
    r.config.voters.incoming.mutable_ids().insert(id);
    init(id, false);
  }
  for (NodeId id : cs.voters_outgoing) {
    r.config.voters.outgoing.mutable_ids().insert(id);
    init(id, false);
  }
  for (NodeId id : cs.learners) {
    r.config.learners.insert(id);
    init(id, true);
  }
  for (NodeId id : cs.learners_next) r.config.learners_next.insert(id);
  r.config.auto_leave = cs.auto_leave && r.config.voters.IsJoint();
  KEEL_RETURN_IF_ERROR(CheckInvariants(r.config, r.progress));
  return r;
}

}  // namespace keel::raft::confchange
