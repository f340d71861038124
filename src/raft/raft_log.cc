#include "raft/raft_log.h"

#include <algorithm>
#include <sstream>

namespace keel::raft {

// ---- Unstable ----

std::optional<Index> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata.index + 1;
  return std::nullopt;
}

std::optional<Index> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata.index;
  return std::nullopt;
}

std::optional<Term> Unstable::MaybeTerm(Index i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->metadata.index == i) {
      return snapshot_->metadata.term;
    }
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  if (entries_.empty()) return std::nullopt;  // only the snapshot's index
  return entries_[i - offset_].term;
}

void Unstable::StableTo(Index i, Term t) {
  auto term = MaybeTerm(i);
  if (!term || i < offset_) return;
  // Only if the entry is still the one persisted: a newer leader may have
  // replaced it since the Ready was handed out.
  if (*term != t) return;
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<ptrdiff_t>(i + 1 - offset_));
  offset_ = i + 1;
}

void Unstable::StableSnapTo(Index i) {
  if (snapshot_ && snapshot_->metadata.index == i) snapshot_.reset();
}

void Unstable::Restore(Snapshot snap) {
  offset_ = snap.metadata.index + 1;
  entries_.clear();
  snapshot_ = std::move(snap);
}

void Unstable::TruncateAndAppend(const std::vector<Entry>& ents) {
  if (ents.empty()) return;
  Index after = ents[0].index;
  if (after == offset_ + entries_.size()) {
    // Directly after what we have.
  } else if (after <= offset_) {
    // Replaces everything unstable; storage will truncate on append.
    offset_ = after;
    entries_.clear();
  } else {
    entries_.resize(after - offset_);
  }
  entries_.insert(entries_.end(), ents.begin(), ents.end());
}

void Unstable::Slice(Index lo, Index hi, std::vector<Entry>* out) const {
  KEEL_CHECK(lo <= hi && lo >= offset_ && hi <= offset_ + entries_.size())
      << "unstable slice [" << lo << "," << hi << ") out of [" << offset_ << ","
      << offset_ + entries_.size() << ")";
  out->insert(out->end(),
              entries_.begin() + static_cast<ptrdiff_t>(lo - offset_),
              entries_.begin() + static_cast<ptrdiff_t>(hi - offset_));
}

// ---- RaftLog ----

RaftLog::RaftLog(Storage* storage, uint64_t max_applying_size)
    : storage_(storage), max_applying_size_(max_applying_size) {
  Index first = storage->FirstIndex();
  Index last = storage->LastIndex();
  unstable_.ResetOffset(last + 1);
  committed_ = first - 1;
  applying_ = first - 1;
  applied_ = first - 1;
}

std::string RaftLog::DebugString() const {
  std::ostringstream os;
  os << "committed=" << committed_ << " applied=" << applied_
     << " applying=" << applying_ << " unstable.offset=" << unstable_.offset()
     << " len(unstable)=" << unstable_.entries().size();
  return os.str();
}

std::optional<Index> RaftLog::MaybeAppend(Index index, Term log_term,
                                          Index committed,
                                          const std::vector<Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  Index last_new = index + ents.size();
  Index ci = FindConflict(ents);
  if (ci != 0) {
    KEEL_CHECK_GT(ci, committed_) << "entry conflicts with committed entry";
    std::vector<Entry> rest(
        ents.begin() + static_cast<ptrdiff_t>(ci - index - 1), ents.end());
    Append(rest);
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

Index RaftLog::Append(const std::vector<Entry>& ents) {
  if (ents.empty()) return LastIndex();
  KEEL_CHECK_GT(ents[0].index, committed_) << "append would overwrite commit";
  unstable_.TruncateAndAppend(ents);
  return LastIndex();
}

Index RaftLog::FindConflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index,
                                                   Term term) const {
  for (; index > 0; index--) {
    auto t = TermAt(index);
    if (!t.ok()) return {index, 0};  // compacted or missing: stop here
    if (*t <= term) return {index, *t};
  }
  return {0, 0};
}

std::vector<Entry> RaftLog::NextCommittedEntries() const {
  Index lo = std::max(applying_, FirstIndex() - 1) + 1;
  Index hi = committed_ + 1;
  if (HasPendingSnapshot() || lo >= hi) return {};
  auto ents = Slice(lo, hi, max_applying_size_);
  KEEL_CHECK(ents.ok()) << "unexpected error getting committed entries: "
                        << ents.status().ToString();
  return std::move(ents).value();
}

bool RaftLog::HasNextCommittedEntries() const {
  if (HasPendingSnapshot()) return false;
  return committed_ > std::max(applying_, FirstIndex() - 1);
}

Result<Snapshot> RaftLog::GetSnapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->GetSnapshot();
}

Index RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

Term RaftLog::LastTerm() const {
  auto t = TermAt(LastIndex());
  KEEL_CHECK(t.ok()) << "term of last index: " << t.status().ToString();
  return *t;
}

Result<Term> RaftLog::TermAt(Index i) const {
  // The valid range is [index of dummy entry, last index].
  Index dummy = FirstIndex() - 1;
  if (i < dummy || i > LastIndex()) return Term{0};
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  auto t = storage_->TermAt(i);
  if (t.ok()) return t;
  if (t.status().IsCompacted() || t.status().IsUnavailable()) return t;
  KEEL_CHECK(false) << "storage term lookup: " << t.status().ToString();
  return t;
}

Term RaftLog::ZeroTermOnOutOfBounds(Index i) const {
  auto t = TermAt(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(Index i, Term t) const {
  auto term = TermAt(i);
  return term.ok() && *term == t;
}

bool RaftLog::IsUpToDate(Index last_index, Term term) const {
  Term last_term = LastTerm();
  return term > last_term || (term == last_term && last_index >= LastIndex());
}

bool RaftLog::MaybeCommit(Index max_index, Term term) {
  // Only entries of the current term are committed by counting replicas
  // (Raft §5.4.2); earlier ones follow implicitly.
  if (max_index > committed_ && ZeroTermOnOutOfBounds(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(Index to) {
  if (committed_ >= to) return;  // never decrease commit
  KEEL_CHECK_LE(to, LastIndex()) << "commit is out of range; the log was "
                                    "probably truncated, lost or corrupted";
  committed_ = to;
}

void RaftLog::AppliedTo(Index i) {
  if (i == 0) return;
  KEEL_CHECK(committed_ >= i && i >= applied_)
      << "applied(" << i << ") out of range [" << applied_ << "," << committed_
      << "]";
  applied_ = i;
  applying_ = std::max(applying_, i);
}

Result<std::vector<Entry>> RaftLog::EntriesFrom(Index i,
                                                uint64_t max_size) const {
  if (i > LastIndex()) return std::vector<Entry>{};
  return Slice(i, LastIndex() + 1, max_size);
}

std::vector<Entry> RaftLog::AllEntries() const {
  auto ents = EntriesFrom(FirstIndex(), UINT64_MAX);
  KEEL_CHECK(ents.ok()) << ents.status().ToString();
  return std::move(ents).value();
}

Status RaftLog::CheckOutOfBounds(Index lo, Index hi) const {
  KEEL_CHECK_LE(lo, hi) << "invalid slice";
  Index first = FirstIndex();
  if (lo < first) return Status::Compacted();
  KEEL_CHECK_LE(hi, LastIndex() + 1) << "slice out of bound";
  return Status::OK();
}

Result<std::vector<Entry>> RaftLog::Slice(Index lo, Index hi,
                                          uint64_t max_size) const {
  KEEL_RETURN_IF_ERROR(CheckOutOfBounds(lo, hi));
  std::vector<Entry> out;
  if (lo == hi) return out;
  Index uoff = unstable_.offset();
  if (lo < uoff) {
    auto stored = storage_->Entries(lo, std::min(hi, uoff), max_size);
    if (!stored.ok()) {
      if (stored.status().IsCompacted()) return stored.status();
      KEEL_CHECK(false) << "storage entries: " << stored.status().ToString();
    }
    out = std::move(stored).value();
    // Storage returned fewer than asked: the size limit was hit.
    if (out.size() < std::min(hi, uoff) - lo) return out;
  }
  if (hi > uoff) {
    unstable_.Slice(std::max(lo, uoff), hi, &out);
  }
  LimitSize(&out, max_size);
  return out;
}

void RaftLog::Restore(Snapshot snap) {
  committed_ = snap.metadata.index;
  unstable_.Restore(std::move(snap));
}

}  // namespace keel::raft
