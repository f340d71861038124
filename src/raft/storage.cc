#include "raft/storage.h"

namespace keel::raft {

void LimitSize(std::vector<Entry>* entries, uint64_t max_size) {
  if (entries->empty()) return;
  uint64_t size = (*entries)[0].Size();
  size_t n = 1;
  for (; n < entries->size(); n++) {
    size += (*entries)[n].Size();
    if (size > max_size) break;
  }
  entries->resize(n);
}

MemoryStorage::MemoryStorage() : ents_(1) {}

Status MemoryStorage::InitialState(HardState* hs, ConfState* cs) const {
  *hs = hard_state_;
  *cs = snapshot_.metadata.conf_state;
  return Status::OK();
}

void MemoryStorage::SetHardState(const HardState& hs) { hard_state_ = hs; }

HardState MemoryStorage::GetHardState() const { return hard_state_; }

void MemoryStorage::SetConfState(const ConfState& cs) {
  snapshot_.metadata.conf_state = cs;
}

Result<std::vector<Entry>> MemoryStorage::Entries(Index lo, Index hi,
                                                  uint64_t max_size) const {
  Index offset = ents_[0].index;
  if (lo <= offset) return Status::Compacted();
  if (hi > LastIndexLocked() + 1) {
    return Status::Unavailable("entries' hi is out of bound lastindex");
  }
  if (lo >= hi) return std::vector<Entry>{};
  std::vector<Entry> out;
  uint64_t size = 0;
  for (Index i = lo; i < hi; i++) {
    const Entry& e = ents_[i - offset];
    size += e.Size();
    if (!out.empty() && size > max_size) break;
    out.push_back(e);
  }
  return out;
}

Result<Term> MemoryStorage::TermAt(Index i) const {
  Index offset = ents_[0].index;
  if (i < offset) return Status::Compacted();
  if (i - offset >= ents_.size()) {
    return Status::Unavailable("requested entry at index is unavailable");
  }
  return ents_[i - offset].term;
}

Index MemoryStorage::FirstIndex() const { return FirstIndexLocked(); }

Index MemoryStorage::LastIndex() const { return LastIndexLocked(); }

Result<Snapshot> MemoryStorage::GetSnapshot() const { return snapshot_; }

Status MemoryStorage::ApplySnapshot(Snapshot snap) {
  if (snapshot_.metadata.index >= snap.metadata.index) {
    return Status::SnapshotOutOfDate();
  }
  ents_.assign(1, Entry{});
  ents_[0].index = snap.metadata.index;
  ents_[0].term = snap.metadata.term;
  snapshot_ = std::move(snap);
  return Status::OK();
}

Result<Snapshot> MemoryStorage::CreateSnapshot(Index i, const ConfState* cs,
                                               std::string data) {
  if (i <= snapshot_.metadata.index) return Status::SnapshotOutOfDate();
  Index offset = ents_[0].index;
  KEEL_CHECK_LE(i, LastIndexLocked()) << "snapshot beyond last index";
  snapshot_.metadata.index = i;
  snapshot_.metadata.term = ents_[i - offset].term;
  if (cs != nullptr) snapshot_.metadata.conf_state = *cs;
  snapshot_.data = std::move(data);
  return snapshot_;
}

Status MemoryStorage::Compact(Index compact_index) {
  Index offset = ents_[0].index;
  if (compact_index <= offset) return Status::Compacted();
  KEEL_CHECK_LE(compact_index, LastIndexLocked()) << "compact beyond last";
  size_t i = compact_index - offset;
  std::vector<Entry> ents;
  ents.reserve(ents_.size() - i);
  ents.push_back(Entry{ents_[i].term, ents_[i].index, EntryType::kNormal, {}});
  for (size_t j = i + 1; j < ents_.size(); j++)
    ents.push_back(std::move(ents_[j]));
  ents_ = std::move(ents);
  return Status::OK();
}

Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return Status::OK();
  Index first = FirstIndexLocked();
  Index last = entries.back().index;
  if (last < first) return Status::OK();  // all already compacted
  size_t skip = first > entries[0].index ? first - entries[0].index : 0;
  Index start = entries[skip].index;
  Index offset = ents_[0].index;
  KEEL_CHECK_LE(start, LastIndexLocked() + 1) << "missing log entries";
  ents_.resize(start - offset);  // truncate any conflicting suffix
  for (size_t j = skip; j < entries.size(); j++) ents_.push_back(entries[j]);
  return Status::OK();
}

}  // namespace keel::raft
