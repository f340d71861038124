// SafetyChecker: the invariants a simulated cluster must keep at every step.
//
// The simulator reports every observable event (a member persisting hard
// state or entries, learning a commit index, applying an entry, installing a
// snapshot, becoming leader, answering a read) and the checker compares it
// with what it has seen so far. Checks are incremental so that they can run
// after every step of every seed:
//  - election safety: at most one leader per term;
//  - log matching, inductively: any two entries with the same (index, term)
//    carry the same data and follow the same previous term, so equal
//    (index, term) implies equal prefixes; plus a full pairwise comparison
//    of the persisted logs that the simulator runs now and then;
//  - leader completeness: a new leader's log holds every entry known
//    committed when it took office;
//  - state machine safety: no two members apply different entries (or reach
//    a different state hash) at one index, and snapshots agree with that;
//  - no committed entry lost: nobody persists a different entry over an
//    index known committed;
//  - hard state sanity: a member's term never goes back, nor its vote
//    change within a term;
//  - linearizable reads: a read index covers every entry applied anywhere
//    before the read began.
// The first violation is kept; later ones are ignored.
//
// Thread safety: none; owned by one simulation run.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/storage.h"
#include "raft/types.h"

namespace keel::sim {

using raft::Entry;
using raft::Index;
using raft::NodeId;
using raft::Term;

// A digest of an entry's identity: term, type and data.
uint64_t EntryDigest(const Entry& e);
// The state hash after applying an entry with `digest` on state `hash`.
uint64_t NextStateHash(uint64_t hash, uint64_t digest);

class SafetyChecker {
 public:
  bool ok() const { return violation_.empty(); }
  const std::string& violation() const { return violation_; }
  // Records a violation found by the simulator itself.
  void Fail(std::string what);

  void OnLeader(NodeId id, Term term);
  void OnHardState(NodeId id, const raft::HardState& prev,
                   const raft::HardState& next);
  // Before `entries` are appended to `storage`: none may replace an entry
  // known committed.
  void BeforeAppend(NodeId id, const raft::Storage& storage,
                    const std::vector<Entry>& entries);
  // After the append: feeds the inductive log-matching check.
  void AfterAppend(NodeId id, const raft::Storage& storage,
                   const std::vector<Entry>& entries);
  // The next three: `seen_in` is the member's current term. An entry seen
  // committed by a member in term t was committed in a term <= t, so every
  // leader of a term > t must hold it.
  //
  // `e` is covered by the member's commit index.
  void OnCommitted(NodeId id, const Entry& e, Term seen_in);
  // The member applied `e`, reaching state `hash_after`.
  void OnApplied(NodeId id, const Entry& e, uint64_t hash_after, Term seen_in);
  // The member's state is a snapshot at (index, term) with state `hash`.
  void OnSnapshot(NodeId id, Index index, Term term, uint64_t hash,
                  Term seen_in);
  // The member restarts from `storage`: every entry up to its persisted
  // commit index must still be there (or under its snapshot), unchanged.
  void OnRestart(NodeId id, const raft::Storage& storage);
  // `id` is leader of `term`; `storage` holds its whole log. Checked once
  // per leader and term, when the simulator first sees it lead (which may
  // be late, e.g. after a pause: hence the seen_in terms).
  void OnNewLeader(NodeId id, Term term, const raft::Storage& storage);
  // A read that began when entries up to `required` had been applied
  // somewhere was answered with `read_index`.
  void OnReadState(NodeId id, const std::string& ctx, Index read_index,
                   Index required);
  // Full pairwise log matching over persisted logs.
  void CheckLogs(const std::map<NodeId, const raft::Storage*>& logs);

  Index max_committed() const { return max_committed_; }
  size_t leaders_seen() const { return leaders_.size(); }
  // The state hash after applying `index`, if anyone applied it.
  bool AppliedHash(Index index, uint64_t* hash) const;

 private:
  struct Slot {
    Term term = 0;
    uint64_t digest = 0;
    uint64_t hash = 0;
    bool committed = false;  // term (and digest, if has_digest) are known
    Term seen_in = 0;        // lowest term in which it was seen committed
    bool has_digest = false;
    bool has_hash = false;
  };
  struct LogKey {
    Index index;
    Term term;
    bool operator==(const LogKey&) const = default;
  };
  struct LogKeyHash {
    size_t operator()(const LogKey& k) const {
      return std::hash<uint64_t>()(k.index * 0x9e3779b97f4a7c15ULL ^ k.term);
    }
  };
  struct LogRecord {
    uint64_t digest;
    Term prev_term;
    NodeId first_seen_on;
  };

  Slot& SlotAt(Index i);
  void RecordCommitted(NodeId id, Index index, Term term,
                       const uint64_t* digest, Term seen_in);

  std::string violation_;
  std::vector<Slot> slots_;  // by log index
  Index max_committed_ = 0;
  std::map<Term, NodeId> leaders_;
  std::unordered_map<LogKey, LogRecord, LogKeyHash> log_;
};

}  // namespace keel::sim
