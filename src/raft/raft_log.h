// RaftLog: the Raft log as the core sees it — stable entries (in Storage)
// followed by unstable ones (appended in memory, not yet persisted).
//
//   storage: [snapshot][first ... stable last]
//   unstable:                [offset ... last]        (may overlap, and wins)
//
// Thread safety: none; owned by the Raft state machine.
#pragma once

#include <optional>
#include <vector>

#include "common/status.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace keel::raft {

// Entries and an incoming snapshot that are not yet on stable storage.
class Unstable {
 public:
  // The index of the first unstable entry, or of the snapshot if any.
  Index offset() const { return offset_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const std::optional<Snapshot>& snapshot() const { return snapshot_; }

  std::optional<Index> MaybeFirstIndex() const;
  std::optional<Index> MaybeLastIndex() const;
  std::optional<Term> MaybeTerm(Index i) const;

  // The entries up to (i, t) are now persisted.
  void StableTo(Index i, Term t);
  void StableSnapTo(Index i);
  void Restore(Snapshot snap);
  // Appends, truncating any unstable suffix that conflicts.
  void TruncateAndAppend(const std::vector<Entry>& ents);
  // Entries in [lo, hi), which must lie within the unstable range.
  void Slice(Index lo, Index hi, std::vector<Entry>* out) const;

  void ResetOffset(Index offset) { offset_ = offset; }

 private:
  std::optional<Snapshot> snapshot_;
  std::vector<Entry> entries_;
  // Invariant: entries_[i].index == offset_ + i.
  Index offset_ = 0;
};

class RaftLog {
 public:
  RaftLog(Storage* storage, uint64_t max_applying_size);

  std::string DebugString() const;

  // Appends ents after checking that (index, log_term) matches our log.
  // Returns the new last index on success, nullopt on mismatch.
  std::optional<Index> MaybeAppend(Index index, Term log_term, Index committed,
                                   const std::vector<Entry>& ents);
  Index Append(const std::vector<Entry>& ents);
  // The index of the first entry of ents that conflicts with our log (same
  // index, different term), or of the first new entry; 0 if none.
  Index FindConflict(const std::vector<Entry>& ents) const;
  // Fast backtracking: the largest index <= index whose term is <= term.
  // Returns that (index, term) pair.
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  std::vector<Entry> UnstableEntries() const { return unstable_.entries(); }
  const std::optional<Snapshot>& UnstableSnapshot() const {
    return unstable_.snapshot();
  }
  // Committed entries not yet handed out for applying (bounded in bytes).
  std::vector<Entry> NextCommittedEntries() const;
  bool HasNextCommittedEntries() const;
  bool HasNextUnstableEntries() const { return !unstable_.entries().empty(); }
  bool HasPendingSnapshot() const { return unstable_.snapshot().has_value(); }
  Result<Snapshot> GetSnapshot() const;

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  Result<Term> TermAt(Index i) const;
  // TermAt, or 0 for indexes that are compacted or not yet there.
  Term ZeroTermOnOutOfBounds(Index i) const;
  bool MatchTerm(Index i, Term t) const;
  // Is (term, index) at least as up to date as our last entry?
  bool IsUpToDate(Index last_index, Term term) const;

  bool MaybeCommit(Index max_index, Term term);
  void CommitTo(Index to);
  // Entries from i on, at most max_size bytes (at least one).
  Result<std::vector<Entry>> EntriesFrom(Index i, uint64_t max_size) const;
  Result<std::vector<Entry>> Slice(Index lo, Index hi, uint64_t max_size) const;
  std::vector<Entry> AllEntries() const;  // for tests

  void AppliedTo(Index i);
  // Records that entries up to i were handed out in a Ready.
  void AcceptApplying(Index i) { applying_ = i; }
  void StableTo(Index i, Term t) { unstable_.StableTo(i, t); }
  void StableSnapTo(Index i) { unstable_.StableSnapTo(i); }
  void Restore(Snapshot snap);

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  Index applying() const { return applying_; }
  Storage* storage() const { return storage_; }
  const Unstable& unstable() const { return unstable_; }

 private:
  Status CheckOutOfBounds(Index lo, Index hi) const;

  Storage* storage_;
  Unstable unstable_;
  // Invariant: applied_ <= applying_ <= committed_.
  Index committed_ = 0;
  Index applying_ = 0;
  Index applied_ = 0;
  uint64_t max_applying_size_;
};

}  // namespace keel::raft
