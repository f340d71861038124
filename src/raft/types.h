// The values the Raft core reads and writes: log entries, hard state,
// configuration state, snapshots, messages and configuration changes.
//
// These are plain values with no behaviour beyond comparisons and sizes;
// codec.h turns them into bytes for the WAL and the peer transport.
//
// Thread safety: values.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace keel::raft {

using NodeId = uint64_t;
using Index = uint64_t;
using Term = uint64_t;

// The id no member has: "no leader", "voted for nobody".
constexpr NodeId kNone = 0;

enum class EntryType : uint8_t {
  kNormal = 0,
  kConfChange = 1,  // data is an encoded ConfChange (codec.h)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  // Bytes this entry counts for in size limits (payload plus a fixed header).
  uint64_t Size() const { return data.size() + 24; }
  // Bytes of payload, as counted against the uncommitted-size bound.
  uint64_t PayloadSize() const { return data.size(); }
  friend bool operator==(const Entry&, const Entry&) = default;
};

// What must be on stable storage before any message that depends on it
// leaves the member.
struct HardState {
  Term term = 0;
  NodeId vote = kNone;
  Index commit = 0;

  bool IsEmpty() const { return term == 0 && vote == kNone && commit == 0; }
  friend bool operator==(const HardState&, const HardState&) = default;
};

// The membership: who votes, who learns. In a joint configuration,
// voters_outgoing is the old voter set and voters the new one;
// learners_next are learners that are still voters in the outgoing set.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  std::vector<NodeId> voters_outgoing;
  std::vector<NodeId> learners_next;
  bool auto_leave = false;

  friend bool operator==(const ConfState&, const ConfState&) = default;
};

struct SnapshotMetadata {
  ConfState conf_state;
  Index index = 0;
  Term term = 0;
  friend bool operator==(const SnapshotMetadata&,
                         const SnapshotMetadata&) = default;
};

struct Snapshot {
  std::string data;
  SnapshotMetadata metadata;

  bool IsEmpty() const { return metadata.index == 0; }
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

enum class MessageType : uint8_t {
  kHup = 0,   // local: start an election
  kBeat = 1,  // local: leader sends heartbeats
  kProp = 2,  // proposal (local, or forwarded by a follower)
  kApp = 3,   // AppendEntries
  kAppResp = 4,
  kVote = 5,  // RequestVote
  kVoteResp = 6,
  kSnap = 7,  // InstallSnapshot
  kHeartbeat = 8,
  kHeartbeatResp = 9,
  kUnreachable = 10,  // local: a peer could not be reached
  kSnapStatus = 11,   // local: outcome of sending a snapshot
  kCheckQuorum = 12,  // local: leader checks it still has a quorum
  kTransferLeader = 13,
  kTimeoutNow = 14,  // the leader tells the transferee to campaign now
  kReadIndex = 15,
  kReadIndexResp = 16,
  kPreVote = 17,
  kPreVoteResp = 18,
};

const char* MessageTypeName(MessageType t);
bool IsLocalMessage(MessageType t);
bool IsResponseMessage(MessageType t);
MessageType VoteResponseType(MessageType t);

struct Message {
  MessageType type = MessageType::kHup;
  NodeId to = kNone;
  NodeId from = kNone;
  Term term = 0;
  // kApp: term and index of the entry before `entries`.
  // kVote/kPreVote: the candidate's last log term and index.
  // kAppResp reject: the follower's hint (log_term at reject_hint).
  Term log_term = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  // kSnap only. Shared: a snapshot can be large and is sent to many peers.
  std::shared_ptr<const Snapshot> snapshot;
  bool reject = false;
  Index reject_hint = 0;
  // kReadIndex / kReadIndexResp / kHeartbeat(Resp): the read request's
  // context. kVote: kCampaignTransfer (raft.h) when campaigning for a
  // leadership transfer, so that voters disregard the leader lease.
  std::string context;

  friend bool operator==(const Message& a, const Message& b);
};

std::ostream& operator<<(std::ostream& os, const Message& m);

enum class ConfChangeType : uint8_t {
  kAddNode = 0,
  kRemoveNode = 1,
  kUpdateNode = 2,
  kAddLearnerNode = 3,
};

struct ConfChangeSingle {
  ConfChangeType type = ConfChangeType::kAddNode;
  NodeId node_id = kNone;
  friend bool operator==(const ConfChangeSingle&,
                         const ConfChangeSingle&) = default;
};

// How a configuration change with several parts is carried out.
enum class ConfChangeTransition : uint8_t {
  // One change: applied directly. Several: joint consensus, left
  // automatically once the joint configuration is committed.
  kAuto = 0,
  // Joint consensus, left automatically.
  kJointImplicit = 1,
  // Joint consensus, left only when the application proposes an empty
  // ConfChange.
  kJointExplicit = 2,
};

// A membership change as it travels through the log. An empty change
// (no `changes`) leaves a joint configuration.
struct ConfChange {
  ConfChangeTransition transition = ConfChangeTransition::kAuto;
  std::vector<ConfChangeSingle> changes;
  std::string context;  // opaque to raft (e.g. the new member's URLs)

  // Enter joint consensus? (Second value: leave it automatically?)
  bool EntersJoint(bool* auto_leave) const;
  bool LeavesJoint() const {
    return changes.empty() && transition == ConfChangeTransition::kAuto;
  }
  friend bool operator==(const ConfChange&, const ConfChange&) = default;
};

}  // namespace keel::raft
