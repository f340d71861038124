// DiskStorage: raft::Storage over the WAL and the snapshot files.
//
// Layout under options.dir: "wal/" (segments, wal.h) and "snap/" (snapshot
// files, snapshot_store.h). Semantics mirror raft::MemoryStorage exactly
// (dummy entry at FirstIndex()-1, Compacted/Unavailable errors); the
// difference is that writes are durable once WaitDurable() says so, and the
// state survives a restart.
//
// Entries: recent entries are served from memory (up to cache_bytes of
// payload, and never evicted before they are durable); older ones are read
// back from their WAL segment by position, checksums verified.
//
// Recovery (Open): the newest snapshot file that is valid and referenced by
// a snapshot marker in the WAL, plus every entry after it. A snapshot file
// without a marker was saved by a crash-interrupted ApplySnapshot or
// CreateSnapshot, and is not used. A damaged newest snapshot falls back to
// an older one while the WAL still holds the entries after it.
//
// Thread safety: the raft::Storage readers may be called from any thread.
// The writers (Save, Append, SetHardState, ApplySnapshot, CreateSnapshot,
// Compact) must be called by one thread at a time (the RaftNode loop);
// WaitDurable from any thread. Readers take mu_ across disk reads of old
// entries: simple, and only the rare catch-up of a slow follower pays.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "raft/storage.h"
#include "wal/snapshot_store.h"
#include "wal/wal.h"

namespace keel::wal {

struct DiskStorageOptions {
  std::string dir;
  uint64_t segment_size = 64ull << 20;
  bool background_writer = true;
  // Entry payload bytes kept in memory. Enough for the entries in flight
  // to followers (read back from the WAL otherwise); 64 MiB of them were
  // a large part of a member's peak RSS.
  uint64_t cache_bytes = 8ull << 20;
  int snapshots_to_keep = 3;
  // For a new log; if non-zero, an existing log must carry the same.
  WalMetadata metadata;
};

class DiskStorage final : public raft::Storage {
 public:
  static Result<std::unique_ptr<DiskStorage>> Open(
      Env* env, const DiskStorageOptions& options);
  ~DiskStorage() override;

  // raft::Storage.
  Status InitialState(raft::HardState* hs, raft::ConfState* cs) const override;
  Result<std::vector<raft::Entry>> Entries(raft::Index lo, raft::Index hi,
                                           uint64_t max_size) const override;
  Result<raft::Term> TermAt(raft::Index i) const override;
  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  Result<raft::Snapshot> GetSnapshot() const override;

  // Appends entries (dropping a conflicting suffix first; entries at or
  // before the first index are ignored) and then the hard state, if given,
  // as one WAL batch. Visible to readers at once; durable when
  // WaitDurable(returned LSN) returns OK. Nothing that depends on them
  // (messages, Advance) may happen before that.
  Result<uint64_t> Save(const raft::HardState* hs,
                        const std::vector<raft::Entry>& entries);
  Status WaitDurable(uint64_t lsn);
  // Save + WaitDurable, named like MemoryStorage's writers.
  Status Append(const std::vector<raft::Entry>& entries);
  Status SetHardState(const raft::HardState& hs);

  // Replaces everything with the snapshot; durable on return.
  // SnapshotOutOfDate if not newer than the current one.
  Status ApplySnapshot(raft::Snapshot snap);
  // Saves a snapshot at applied index i (<= LastIndex()); durable on return.
  Result<raft::Snapshot> CreateSnapshot(raft::Index i,
                                        const raft::ConfState* cs,
                                        std::string data);
  // Drops entries before compact_index (which stays as the dummy) and
  // deletes WAL segments that a durable snapshot covers entirely.
  Status Compact(raft::Index compact_index);

  raft::HardState GetHardState() const;
  const WalMetadata& metadata() const { return wal_->metadata(); }
  Wal* wal() { return wal_.get(); }
  // Flushes and closes the WAL; the object only answers reads afterwards.
  Status Close();

 private:
  struct Slot {
    raft::Entry entry;  // data cleared once evicted from the cache
    uint64_t size = 0;  // entry.Size() with its data
    WalPos pos;
    uint64_t lsn = 0;  // batch that wrote it (0: recovered)
    bool cached = true;
  };

  DiskStorage(Env* env, const DiskStorageOptions& options);
  Status Recover();
  raft::Index LastIndexLocked() const { return base_index_ + slots_.size(); }
  void TruncateLocked(size_t keep);  // keeps slots_[0, keep)
  void DropFrontLocked(size_t n);    // removes slots_[0, n)
  void EvictLocked(uint64_t durable_lsn);
  Result<raft::Entry> LoadLocked(const Slot& slot) const;

  Env* const env_;
  const DiskStorageOptions options_;
  SnapshotStore snaps_;  // used by the writer thread and Open
  std::unique_ptr<Wal> wal_;

  mutable std::mutex mu_;
  raft::HardState hs_;       // guarded by mu_
  raft::Snapshot snapshot_;  // guarded by mu_
  // The dummy position: index and term of the last compacted entry.
  raft::Index base_index_ = 0;  // guarded by mu_
  raft::Term base_term_ = 0;    // guarded by mu_
  // Entries base_index_+1 ... in order. Invariant: slots_[0, evict_cursor_)
  // have no data in memory; the rest do.
  std::deque<Slot> slots_;     // guarded by mu_
  size_t evict_cursor_ = 0;    // guarded by mu_
  uint64_t cached_bytes_ = 0;  // guarded by mu_
};

}  // namespace keel::wal
