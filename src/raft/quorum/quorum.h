// Quorum math: majority and joint (two-majority) configurations.
//
// Pure functions over sets of ids; the progress tracker feeds them with the
// acknowledged (match) index and the votes of each member.
//
// Thread safety: values.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace keel::raft::quorum {

enum class VoteResult : uint8_t { kPending = 0, kLost = 1, kWon = 2 };

// The acknowledged index of a member, if it has acknowledged anything.
using AckedIndexer = std::function<std::optional<Index>(NodeId)>;

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::set<NodeId> ids) : ids_(std::move(ids)) {}

  const std::set<NodeId>& ids() const { return ids_; }
  std::set<NodeId>& mutable_ids() { return ids_; }
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }
  bool Contains(NodeId id) const { return ids_.count(id) != 0; }

  // The largest index acknowledged by a majority. An empty configuration
  // returns UINT64_MAX so that it never holds back a joint configuration.
  Index CommittedIndex(const AckedIndexer& acked) const;
  // Won once a majority voted yes, lost once a majority can no longer.
  // An empty configuration wins.
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;

  std::string DebugString() const;
  friend bool operator==(const MajorityConfig&,
                         const MajorityConfig&) = default;

 private:
  std::set<NodeId> ids_;
};

// A joint configuration: decisions need a majority in both halves.
// outgoing is empty outside of joint consensus.
struct JointConfig {
  MajorityConfig incoming;
  MajorityConfig outgoing;

  bool IsJoint() const { return !outgoing.empty(); }
  bool Contains(NodeId id) const {
    return incoming.Contains(id) || outgoing.Contains(id);
  }
  std::set<NodeId> IDs() const;
  Index CommittedIndex(const AckedIndexer& acked) const;
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;
  std::string DebugString() const;
  friend bool operator==(const JointConfig&, const JointConfig&) = default;
};

}  // namespace keel::raft::quorum
