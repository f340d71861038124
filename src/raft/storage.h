// Storage: the Raft core's read-only view of the stable log.
//
// The core reads persisted entries, terms and the latest snapshot through
// this interface; the application writes to it (after handling a Ready) by
// means of its concrete type. MemoryStorage keeps everything in memory; the
// WAL-backed storage (src/wal) implements the same interface over disk.
//
// Index layout: the storage holds a "dummy" position at FirstIndex()-1 whose
// term is known (the snapshot's index and term, or 0/0 for an empty log),
// followed by entries FirstIndex()..LastIndex().
//
// Thread safety: MemoryStorage has none (the core's folder uses no threads);
// its owner serializes access, as the simulator and tests do.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "raft/types.h"

namespace keel::raft {

class Storage {
 public:
  virtual ~Storage() = default;

  // The persisted hard state and configuration at start-up.
  virtual Status InitialState(HardState* hs, ConfState* cs) const = 0;
  // Entries in [lo, hi), at least one if any, then as many as fit in
  // max_size bytes. Compacted if lo <= the snapshot index; Unavailable if
  // hi > LastIndex()+1.
  virtual Result<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_size) const = 0;
  // Term of entry i, for i in [FirstIndex()-1, LastIndex()].
  virtual Result<Term> TermAt(Index i) const = 0;
  virtual Index FirstIndex() const = 0;
  virtual Index LastIndex() const = 0;
  // The most recent snapshot. SnapshotTemporarilyUnavailable lets the core
  // retry later.
  virtual Result<Snapshot> GetSnapshot() const = 0;
};

// Limits `entries` to the longest prefix (at least one entry) whose total
// Size() is at most max_size.
void LimitSize(std::vector<Entry>* entries, uint64_t max_size);

class MemoryStorage final : public Storage {
 public:
  MemoryStorage();

  Status InitialState(HardState* hs, ConfState* cs) const override;
  Result<std::vector<Entry>> Entries(Index lo, Index hi,
                                     uint64_t max_size) const override;
  Result<Term> TermAt(Index i) const override;
  Index FirstIndex() const override;
  Index LastIndex() const override;
  Result<Snapshot> GetSnapshot() const override;

  void SetHardState(const HardState& hs);
  HardState GetHardState() const;
  // Replaces everything with the snapshot. SnapshotOutOfDate if older.
  Status ApplySnapshot(Snapshot snap);
  // Makes a snapshot at applied index i (<= LastIndex()) with the given
  // state and data; later Compact() may drop the entries it covers.
  Result<Snapshot> CreateSnapshot(Index i, const ConfState* cs,
                                  std::string data);
  // Drops entries before compact_index (which stays as the dummy).
  Status Compact(Index compact_index);
  // Appends entries, truncating any conflicting suffix first. Entries at or
  // before the first index are ignored.
  Status Append(const std::vector<Entry>& entries);
  // For tests: the ConfState stored with InitialState().
  void SetConfState(const ConfState& cs);

 private:
  Index FirstIndexLocked() const { return ents_[0].index + 1; }
  Index LastIndexLocked() const { return ents_[0].index + ents_.size() - 1; }

  HardState hard_state_;
  Snapshot snapshot_;
  // ents_[0] is the dummy entry (index/term of the last compacted entry).
  // Invariant: ents_ is never empty and indexes are consecutive.
  std::vector<Entry> ents_;
};

}  // namespace keel::raft
