#include "raft/quorum/quorum.h"

#include <algorithm>
#include <sstream>

namespace keel::raft::quorum {

Index MajorityConfig::CommittedIndex(const AckedIndexer& acked) const {
  if (ids_.empty()) return UINT64_MAX;
  // Small clusters are the norm: a stack array avoids an allocation.
  Index stack[7];
  std::vector<Index> heap;
  Index* srt = stack;
  if (ids_.size() > 7) {
    heap.resize(ids_.size());
    srt = heap.data();
  }
  size_t n = 0;
  for (NodeId id : ids_) {
    auto idx = acked(id);
    srt[n++] = idx ? *idx : 0;
  }
  std::sort(srt, srt + n);
  // With n sorted ascending, the element at n - (n/2 + 1) is acknowledged
  // by a majority (itself and everything above it).
  return srt[n - (n / 2 + 1)];
}

VoteResult MajorityConfig::Vote(const std::map<NodeId, bool>& votes) const {
  if (ids_.empty()) return VoteResult::kWon;
  size_t yes = 0, missing = 0;
  for (NodeId id : ids_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      missing++;
    } else if (it->second) {
      yes++;
    }
  }
  size_t q = ids_.size() / 2 + 1;
  if (yes >= q) return VoteResult::kWon;
  if (yes + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

std::string MajorityConfig::DebugString() const {
  std::ostringstream os;
  os << "(";
  bool first = true;
  for (NodeId id : ids_) {
    if (!first) os << " ";
    os << id;
    first = false;
  }
  os << ")";
  return os.str();
}

std::set<NodeId> JointConfig::IDs() const {
  std::set<NodeId> ids = incoming.ids();
  ids.insert(outgoing.ids().begin(), outgoing.ids().end());
  return ids;
}

Index JointConfig::CommittedIndex(const AckedIndexer& acked) const {
  return std::min(incoming.CommittedIndex(acked),
                  outgoing.CommittedIndex(acked));
}

VoteResult JointConfig::Vote(const std::map<NodeId, bool>& votes) const {
  VoteResult r1 = incoming.Vote(votes);
  VoteResult r2 = outgoing.Vote(votes);
  if (r1 == r2) return r1;
  if (r1 == VoteResult::kLost || r2 == VoteResult::kLost) {
    return VoteResult::kLost;
  }
  return VoteResult::kPending;  // one won, the other is pending
}

std::string JointConfig::DebugString() const {
  std::string s = incoming.DebugString();
  if (IsJoint()) s += "&&" + outgoing.DebugString();
  return s;
}

}  // namespace keel::raft::quorum
