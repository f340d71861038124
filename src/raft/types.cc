#include "raft/types.h"

namespace keel::raft {

const char* MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kHup:
      return "MsgHup";
    case MessageType::kBeat:
      return "MsgBeat";
    case MessageType::kProp:
      return "MsgProp";
    case MessageType::kApp:
      return "MsgApp";
    case MessageType::kAppResp:
      return "MsgAppResp";
    case MessageType::kVote:
      return "MsgVote";
    case MessageType::kVoteResp:
      return "MsgVoteResp";
    case MessageType::kSnap:
      return "MsgSnap";
    case MessageType::kHeartbeat:
      return "MsgHeartbeat";
    case MessageType::kHeartbeatResp:
      return "MsgHeartbeatResp";
    case MessageType::kUnreachable:
      return "MsgUnreachable";
    case MessageType::kSnapStatus:
      return "MsgSnapStatus";
    case MessageType::kCheckQuorum:
      return "MsgCheckQuorum";
    case MessageType::kTransferLeader:
      return "MsgTransferLeader";
    case MessageType::kTimeoutNow:
      return "MsgTimeoutNow";
    case MessageType::kReadIndex:
      return "MsgReadIndex";
    case MessageType::kReadIndexResp:
      return "MsgReadIndexResp";
    case MessageType::kPreVote:
      return "MsgPreVote";
    case MessageType::kPreVoteResp:
      return "MsgPreVoteResp";
  }
  return "MsgUnknown";
}

bool IsLocalMessage(MessageType t) {
  return t == MessageType::kHup || t == MessageType::kBeat ||
         t == MessageType::kUnreachable || t == MessageType::kSnapStatus ||
         t == MessageType::kCheckQuorum;
}

bool IsResponseMessage(MessageType t) {
  return t == MessageType::kAppResp || t == MessageType::kVoteResp ||
         t == MessageType::kHeartbeatResp || t == MessageType::kUnreachable ||
         t == MessageType::kPreVoteResp;
}

MessageType VoteResponseType(MessageType t) {
  return t == MessageType::kPreVote ? MessageType::kPreVoteResp
                                    : MessageType::kVoteResp;
}

bool operator==(const Message& a, const Message& b) {
  bool snap_eq = (a.snapshot == nullptr && b.snapshot == nullptr) ||
                 (a.snapshot && b.snapshot && *a.snapshot == *b.snapshot);
  return a.type == b.type && a.to == b.to && a.from == b.from &&
         a.term == b.term && a.log_term == b.log_term && a.index == b.index &&
         a.entries == b.entries && a.commit == b.commit && snap_eq &&
         a.reject == b.reject && a.reject_hint == b.reject_hint &&
         a.context == b.context;
}

std::ostream& operator<<(std::ostream& os, const Message& m) {
  os << m.from << "->" << m.to << " " << MessageTypeName(m.type)
     << " Term:" << m.term << " Log:" << m.log_term << "/" << m.index;
  if (m.reject) os << " Rejected (Hint: " << m.reject_hint << ")";
  if (m.commit != 0) os << " Commit:" << m.commit;
  if (!m.entries.empty()) {
    os << " Entries:[" << m.entries.front().term << "/"
       << m.entries.front().index << ".." << m.entries.back().term << "/"
       << m.entries.back().index << "]";
  }
  if (m.snapshot) {
    os << " Snapshot:" << m.snapshot->metadata.term << "/"
       << m.snapshot->metadata.index;
  }
  return os;
}

bool ConfChange::EntersJoint(bool* auto_leave) const {
  // A change of one part in auto mode is a simple change; anything else
  // (several parts, or an explicit transition) goes through joint consensus.
  if (transition != ConfChangeTransition::kAuto || changes.size() > 1) {
    if (auto_leave != nullptr) {
      *auto_leave = transition != ConfChangeTransition::kJointExplicit;
    }
    return true;
  }
  return false;
}

}  // namespace keel::raft
