#include "wal/disk_storage.h"

#include <algorithm>
#include <set>

#include "raft/codec.h"

namespace keel::wal {

DiskStorage::DiskStorage(Env* env, const DiskStorageOptions& options)
    : env_(env),
      options_(options),
      snaps_(env, JoinPath(options.dir, "snap"), options.snapshots_to_keep) {}

DiskStorage::~DiskStorage() { (void)Close(); }

Result<std::unique_ptr<DiskStorage>> DiskStorage::Open(
    Env* env, const DiskStorageOptions& options) {
  std::unique_ptr<DiskStorage> s(new DiskStorage(env, options));
  KEEL_RETURN_IF_ERROR(s->Recover());
  return s;
}

Status DiskStorage::Recover() {
  KEEL_RETURN_IF_ERROR(env_->CreateDir(options_.dir));
  KEEL_RETURN_IF_ERROR(snaps_.Init());

  // Replay state. The log may start after entries that were purged, so the
  // dummy term is unknown until a snapshot is chosen.
  bool have_base = false;
  bool reset_by_snapshot = false;  // base_index_ comes from a discard marker
  raft::Index reset_floor = 0;     // newest discard marker
  std::set<std::pair<raft::Index, raft::Term>> markers;
  std::lock_guard lock(mu_);
  auto visit = [&](const RecoveredRecord& r) -> Status {
    switch (r.type) {
      case RecordType::kEntry: {
        const raft::Entry& e = *r.entry;
        if (!have_base) {
          base_index_ = e.index - 1;
          have_base = true;
        }
        if (e.index <= base_index_) {
          if (reset_by_snapshot) return Status::OK();  // superseded
          // Overwrites entries before the first one replayed: start over.
          TruncateLocked(0);
          base_index_ = e.index - 1;
        }
        if (e.index > LastIndexLocked() + 1) {
          return Status::Corruption(
              "wal: entry " + std::to_string(e.index) + " follows entry " +
              std::to_string(LastIndexLocked()) + " (gap) in " + *r.path +
              " at offset " + std::to_string(r.pos.offset));
        }
        TruncateLocked(e.index - base_index_ - 1);
        Slot slot{e, e.Size(), r.pos, 0, true};
        cached_bytes_ += e.data.size();
        slots_.push_back(std::move(slot));
        EvictLocked(0);
        return Status::OK();
      }
      case RecordType::kHardState:
        KEEL_CHECK(raft::DecodeHardState(r.payload, &hs_)) << "checked by Wal";
        return Status::OK();
      case RecordType::kSnapshot: {
        SnapshotMarker m;
        KEEL_CHECK(DecodeSnapshotMarker(r.payload, &m)) << "checked by Wal";
        markers.insert({m.index, m.term});
        if (m.discard_log) {
          TruncateLocked(0);
          base_index_ = m.index;
          base_term_ = m.term;
          have_base = true;
          reset_by_snapshot = true;
          reset_floor = std::max(reset_floor, m.index);
        }
        return Status::OK();
      }
      case RecordType::kMetadata:
        return Status::OK();
    }
    return Status::OK();
  };
  WalOptions wo;
  wo.dir = JoinPath(options_.dir, "wal");
  wo.segment_size = options_.segment_size;
  wo.background_writer = options_.background_writer;
  wo.metadata = options_.metadata;
  auto wal = Wal::Open(env_, wo, visit);
  if (!wal.ok()) return wal.status();
  wal_ = std::move(wal).value();
  const WalMetadata& m = wal_->metadata();
  if ((options_.metadata.member_id != 0 &&
       options_.metadata.member_id != m.member_id) ||
      (options_.metadata.cluster_id != 0 &&
       options_.metadata.cluster_id != m.cluster_id)) {
    return Status::InvalidArgument("wal in " + wo.dir + " belongs to member " +
                                   std::to_string(m.member_id) +
                                   " of cluster " +
                                   std::to_string(m.cluster_id));
  }

  // Choose the snapshot: the newest one that is intact, referenced by a
  // marker, and has every entry after it still in the log.
  auto usable = [&](raft::Index index) {
    return index >= reset_floor && (!have_base || index >= base_index_);
  };
  auto files = snaps_.List();
  if (!files.ok()) return files.status();
  std::optional<raft::Snapshot> chosen;
  Status first_error;
  for (const SnapshotFile& f : *files) {
    if (!markers.count({f.index, f.term}) || !usable(f.index)) continue;
    auto snap = snaps_.Load(f.path);
    if (snap.ok()) {
      chosen = std::move(snap).value();
      break;
    }
    if (first_error.ok()) first_error = snap.status();
  }
  if (!chosen.has_value()) {
    if (!markers.count({0, 0}) || !usable(0)) {
      if (!first_error.ok()) return first_error;
      return Status::Corruption(
          "wal: the log in " + wo.dir + " starts after index " +
          std::to_string(base_index_) + " but no intact snapshot in " +
          snaps_.dir() + " covers it");
    }
    chosen = raft::Snapshot{};
  }
  const raft::Index c = chosen->metadata.index;
  if (c >= LastIndexLocked()) {
    TruncateLocked(0);
  } else if (c > base_index_) {
    DropFrontLocked(c - base_index_);
  }
  base_index_ = c;
  base_term_ = chosen->metadata.term;
  snapshot_ = std::move(*chosen);
  // A snapshot holds only committed entries. The hard state that raises the
  // commit index to it is written after the snapshot's marker, so a crash
  // in between recovers a commit below the snapshot, which the core refuses
  // to start from (found by the simulator, tests/sim/FINDINGS.md §7).
  hs_.commit = std::max(hs_.commit, c);
  return Status::OK();
}

void DiskStorage::TruncateLocked(size_t keep) {
  while (slots_.size() > keep) {
    if (slots_.back().cached) cached_bytes_ -= slots_.back().entry.data.size();
    slots_.pop_back();
  }
  evict_cursor_ = std::min(evict_cursor_, slots_.size());
}

void DiskStorage::DropFrontLocked(size_t n) {
  n = std::min(n, slots_.size());
  for (size_t i = 0; i < n; i++) {
    if (slots_.front().cached)
      cached_bytes_ -= slots_.front().entry.data.size();
    slots_.pop_front();
  }
  evict_cursor_ -= std::min(evict_cursor_, n);
}

void DiskStorage::EvictLocked(uint64_t durable_lsn) {
  while (cached_bytes_ > options_.cache_bytes &&
         evict_cursor_ < slots_.size()) {
    Slot& s = slots_[evict_cursor_];
    if (s.lsn > durable_lsn) break;  // not on disk yet: cannot read it back
    cached_bytes_ -= s.entry.data.size();
    std::string().swap(s.entry.data);
    s.cached = false;
    evict_cursor_++;
  }
}

Result<raft::Entry> DiskStorage::LoadLocked(const Slot& slot) const {
  if (slot.cached) return slot.entry;
  RecordType type;
  std::string payload;
  KEEL_RETURN_IF_ERROR(wal_->Read(slot.pos, &type, &payload));
  raft::Entry e;
  if (type != RecordType::kEntry || !raft::DecodeEntry(payload, &e) ||
      e.index != slot.entry.index || e.term != slot.entry.term) {
    return Status::Corruption(
        "wal: segment " + std::to_string(slot.pos.segment) + " offset " +
        std::to_string(slot.pos.offset) + " does not hold entry " +
        std::to_string(slot.entry.index));
  }
  return e;
}

Status DiskStorage::InitialState(raft::HardState* hs,
                                 raft::ConfState* cs) const {
  std::lock_guard lock(mu_);
  *hs = hs_;
  *cs = snapshot_.metadata.conf_state;
  return Status::OK();
}

Result<std::vector<raft::Entry>> DiskStorage::Entries(raft::Index lo,
                                                      raft::Index hi,
                                                      uint64_t max_size) const {
  std::lock_guard lock(mu_);
  if (lo <= base_index_) return Status::Compacted();
  if (hi > LastIndexLocked() + 1) {
    return Status::Unavailable("entries' hi is out of bound lastindex");
  }
  std::vector<raft::Entry> out;
  uint64_t size = 0;
  for (raft::Index i = lo; i < hi; i++) {
    const Slot& slot = slots_[i - base_index_ - 1];
    size += slot.size;
    if (!out.empty() && size > max_size) break;
    auto e = LoadLocked(slot);
    if (!e.ok()) return e.status();
    out.push_back(std::move(e).value());
  }
  return out;
}

Result<raft::Term> DiskStorage::TermAt(raft::Index i) const {
  std::lock_guard lock(mu_);
  if (i < base_index_) return Status::Compacted();
  if (i > LastIndexLocked()) {
    return Status::Unavailable("requested entry at index is unavailable");
  }
  if (i == base_index_) return base_term_;
  return slots_[i - base_index_ - 1].entry.term;
}

raft::Index DiskStorage::FirstIndex() const {
  std::lock_guard lock(mu_);
  return base_index_ + 1;
}

raft::Index DiskStorage::LastIndex() const {
  std::lock_guard lock(mu_);
  return LastIndexLocked();
}

Result<raft::Snapshot> DiskStorage::GetSnapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

raft::HardState DiskStorage::GetHardState() const {
  std::lock_guard lock(mu_);
  return hs_;
}

Result<uint64_t> DiskStorage::Save(const raft::HardState* hs,
                                   const std::vector<raft::Entry>& entries) {
  std::lock_guard lock(mu_);
  size_t skip = 0;
  while (skip < entries.size() && entries[skip].index <= base_index_) skip++;
  if (skip < entries.size()) {
    KEEL_CHECK_LE(entries[skip].index, LastIndexLocked() + 1)
        << "missing log entries";
  }
  // Entries before the hard state: a torn batch may then lose the hard
  // state, which is safe, but never keep a commit index without entries.
  WalBatch batch;
  for (size_t j = skip; j < entries.size(); j++) batch.AddEntry(entries[j]);
  if (hs != nullptr) batch.AddHardState(*hs);
  std::vector<WalPos> positions;
  auto lsn = wal_->Submit(std::move(batch), &positions);
  if (!lsn.ok()) return lsn.status();
  if (skip < entries.size()) {
    TruncateLocked(entries[skip].index - base_index_ - 1);
    for (size_t j = skip; j < entries.size(); j++) {
      const raft::Entry& e = entries[j];
      cached_bytes_ += e.data.size();
      slots_.push_back(Slot{e, e.Size(), positions[j - skip], *lsn, true});
    }
  }
  if (hs != nullptr) hs_ = *hs;
  EvictLocked(wal_->durable_lsn());
  return lsn;
}

Status DiskStorage::WaitDurable(uint64_t lsn) {
  KEEL_RETURN_IF_ERROR(wal_->WaitDurable(lsn));
  std::lock_guard lock(mu_);
  EvictLocked(wal_->durable_lsn());
  return Status::OK();
}

Status DiskStorage::Append(const std::vector<raft::Entry>& entries) {
  auto lsn = Save(nullptr, entries);
  if (!lsn.ok()) return lsn.status();
  return WaitDurable(*lsn);
}

Status DiskStorage::SetHardState(const raft::HardState& hs) {
  auto lsn = Save(&hs, {});
  if (!lsn.ok()) return lsn.status();
  return WaitDurable(*lsn);
}

Status DiskStorage::ApplySnapshot(raft::Snapshot snap) {
  {
    std::lock_guard lock(mu_);
    if (snapshot_.metadata.index >= snap.metadata.index) {
      return Status::SnapshotOutOfDate();
    }
  }
  // File first, marker second: recovery only trusts a snapshot file that a
  // durable marker names.
  KEEL_RETURN_IF_ERROR(snaps_.Save(snap));
  WalBatch batch;
  batch.AddSnapshotMarker({snap.metadata.index, snap.metadata.term, true});
  auto lsn = wal_->Submit(std::move(batch), nullptr);
  if (!lsn.ok()) return lsn.status();
  KEEL_RETURN_IF_ERROR(wal_->WaitDurable(*lsn));
  raft::Index index = snap.metadata.index;
  {
    std::lock_guard lock(mu_);
    TruncateLocked(0);
    base_index_ = index;
    base_term_ = snap.metadata.term;
    snapshot_ = std::move(snap);
    hs_.commit = std::max(hs_.commit, index);
  }
  // The snapshot is installed and durable: failing to delete older snapshot
  // files only leaves them for the next Retain (and Open) to remove.
  (void)snaps_.Retain(index);
  return Status::OK();
}

Result<raft::Snapshot> DiskStorage::CreateSnapshot(raft::Index i,
                                                   const raft::ConfState* cs,
                                                   std::string data) {
  raft::Snapshot snap;
  {
    std::lock_guard lock(mu_);
    if (i <= snapshot_.metadata.index) return Status::SnapshotOutOfDate();
    KEEL_CHECK_LE(i, LastIndexLocked()) << "snapshot beyond last index";
    KEEL_CHECK_GE(i, base_index_) << "snapshot of compacted entries";
    snap.metadata.index = i;
    snap.metadata.term =
        i == base_index_ ? base_term_ : slots_[i - base_index_ - 1].entry.term;
    snap.metadata.conf_state =
        cs != nullptr ? *cs : snapshot_.metadata.conf_state;
    snap.data = std::move(data);
  }
  KEEL_RETURN_IF_ERROR(snaps_.Save(snap));
  WalBatch batch;
  batch.AddSnapshotMarker({i, snap.metadata.term, false});
  auto lsn = wal_->Submit(std::move(batch), nullptr);
  if (!lsn.ok()) return lsn.status();
  KEEL_RETURN_IF_ERROR(wal_->WaitDurable(*lsn));
  {
    std::lock_guard lock(mu_);
    snapshot_ = snap;
  }
  KEEL_RETURN_IF_ERROR(snaps_.Retain(i));
  return snap;
}

Status DiskStorage::Compact(raft::Index compact_index) {
  raft::Index covered;
  {
    std::lock_guard lock(mu_);
    if (compact_index <= base_index_) return Status::Compacted();
    KEEL_CHECK_LE(compact_index, LastIndexLocked()) << "compact beyond last";
    raft::Term term = slots_[compact_index - base_index_ - 1].entry.term;
    DropFrontLocked(compact_index - base_index_);
    base_index_ = compact_index;
    base_term_ = term;
    // Segments may only go once a durable snapshot covers them, or a
    // restart could not rebuild the entries they held.
    covered = std::min(compact_index, snapshot_.metadata.index);
  }
  return wal_->PurgeUpTo(covered);
}

Status DiskStorage::Close() {
  if (wal_ == nullptr) return Status::OK();
  return wal_->Close();
}

}  // namespace keel::wal
