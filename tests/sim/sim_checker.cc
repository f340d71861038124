#include "sim/sim_checker.h"

#include <fmt/format.h>

#include <algorithm>

namespace keel::sim {
namespace {

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t EntryDigest(const Entry& e) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over the payload
  for (unsigned char c : e.data) h = (h ^ c) * 0x100000001b3ULL;
  return Mix(h ^ Mix(e.term * 4 + static_cast<uint64_t>(e.type)));
}

uint64_t NextStateHash(uint64_t hash, uint64_t digest) {
  return Mix(hash + 0x9e3779b97f4a7c15ULL) ^ digest;
}

void SafetyChecker::Fail(std::string what) {
  if (violation_.empty()) violation_ = std::move(what);
}

SafetyChecker::Slot& SafetyChecker::SlotAt(Index i) {
  if (i >= slots_.size())
    slots_.resize(std::max<size_t>(i + 1, slots_.size() * 2));
  return slots_[i];
}

bool SafetyChecker::AppliedHash(Index index, uint64_t* hash) const {
  if (index >= slots_.size() || !slots_[index].has_hash) return false;
  *hash = slots_[index].hash;
  return true;
}

void SafetyChecker::OnLeader(NodeId id, Term term) {
  auto [it, inserted] = leaders_.emplace(term, id);
  if (!inserted && it->second != id) {
    Fail(fmt::format("election safety: two leaders in term {}: {} and {}", term,
                     it->second, id));
  }
}

void SafetyChecker::OnHardState(NodeId id, const raft::HardState& prev,
                                const raft::HardState& next) {
  if (next.term < prev.term) {
    Fail(fmt::format("member {} persisted term {} after term {}", id, next.term,
                     prev.term));
  } else if (next.term == prev.term && prev.vote != raft::kNone &&
             next.vote != prev.vote) {
    Fail(fmt::format("member {} changed its vote in term {}: {} -> {}", id,
                     next.term, prev.vote, next.vote));
  }
}

void SafetyChecker::RecordCommitted(NodeId id, Index index, Term term,
                                    const uint64_t* digest, Term seen_in) {
  Slot& s = SlotAt(index);
  if (s.committed && s.term != term) {
    Fail(fmt::format(
        "committed entry changed: index {} committed at term {}, member {} "
        "has term {}",
        index, s.term, id, term));
    return;
  }
  if (digest != nullptr) {
    if (s.has_digest && s.digest != *digest) {
      Fail(fmt::format(
          "committed entry changed: index {} term {} has different data on "
          "member {}",
          index, term, id));
      return;
    }
    s.digest = *digest;
    s.has_digest = true;
  }
  s.seen_in = s.committed ? std::min(s.seen_in, seen_in) : seen_in;
  s.term = term;
  s.committed = true;
  max_committed_ = std::max(max_committed_, index);
}

void SafetyChecker::BeforeAppend(NodeId id, const raft::Storage& storage,
                                 const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  for (size_t i = 1; i < entries.size(); i++) {
    if (entries[i].index != entries[i - 1].index + 1 ||
        entries[i].term < entries[i - 1].term) {
      Fail(
          fmt::format("member {} was asked to persist a malformed run of "
                      "entries at index {}",
                      id, entries[i].index));
      return;
    }
  }
  Index last = storage.LastIndex();
  if (entries.front().index > last + 1) {
    Fail(
        fmt::format("member {} must persist entries from {} after a log "
                    "ending at {}: gap",
                    id, entries.front().index, last));
    return;
  }
  // Any index from the first appended one to the old last index is either
  // rewritten or truncated away: neither may happen to a committed entry
  // unless the new entry is that same entry.
  for (Index i = std::max(entries.front().index, storage.FirstIndex());
       i <= last; i++) {
    if (i >= slots_.size() || !slots_[i].committed) continue;
    const Slot& s = slots_[i];
    if (i > entries.back().index) {
      // Truncated: a loss only if what goes is the committed entry itself
      // (a stale entry at a committed index must go).
      auto old = storage.TermAt(i);
      if (old.ok() && *old == s.term) {
        Fail(fmt::format("member {} truncates committed entry {} (term {})", id,
                         i, s.term));
        return;
      }
      continue;
    }
    const Entry& e = entries[i - entries.front().index];
    if (e.term != s.term || (s.has_digest && EntryDigest(e) != s.digest)) {
      Fail(fmt::format(
          "member {} overwrites committed entry {} (term {}) with term {}", id,
          i, s.term, e.term));
      return;
    }
  }
}

void SafetyChecker::AfterAppend(NodeId id, const raft::Storage& storage,
                                const std::vector<Entry>& entries) {
  Index first = storage.FirstIndex();
  for (const Entry& e : entries) {
    if (e.index < first) continue;  // below the snapshot: ignored by Append
    auto prev = storage.TermAt(e.index - 1);
    if (!prev.ok()) {
      Fail(fmt::format("member {}: no term for index {} after append: {}", id,
                       e.index - 1, prev.status().ToString()));
      return;
    }
    if (*prev > e.term) {
      Fail(fmt::format("member {}: log terms go back at index {} ({} > {})", id,
                       e.index, *prev, e.term));
      return;
    }
    LogRecord rec{EntryDigest(e), *prev, id};
    auto [it, inserted] = log_.emplace(LogKey{e.index, e.term}, rec);
    if (inserted) continue;
    if (it->second.digest != rec.digest) {
      Fail(fmt::format(
          "log matching: index {} term {} holds different entries on members "
          "{} and {}",
          e.index, e.term, it->second.first_seen_on, id));
      return;
    }
    if (it->second.prev_term != rec.prev_term) {
      Fail(fmt::format(
          "log matching: index {} term {} follows term {} on member {} but "
          "term {} on member {}",
          e.index, e.term, it->second.prev_term, it->second.first_seen_on,
          rec.prev_term, id));
      return;
    }
  }
}

void SafetyChecker::OnCommitted(NodeId id, const Entry& e, Term seen_in) {
  uint64_t d = EntryDigest(e);
  RecordCommitted(id, e.index, e.term, &d, seen_in);
}

void SafetyChecker::OnApplied(NodeId id, const Entry& e, uint64_t hash_after,
                              Term seen_in) {
  uint64_t d = EntryDigest(e);
  RecordCommitted(id, e.index, e.term, &d, seen_in);
  Slot& s = SlotAt(e.index);
  if (s.has_hash && s.hash != hash_after) {
    Fail(fmt::format(
        "state machine safety: member {} applied index {} (term {}) reaching "
        "a state other members did not",
        id, e.index, e.term));
    return;
  }
  s.hash = hash_after;
  s.has_hash = true;
}

void SafetyChecker::OnSnapshot(NodeId id, Index index, Term term, uint64_t hash,
                               Term seen_in) {
  RecordCommitted(id, index, term, nullptr, seen_in);
  Slot& s = SlotAt(index);
  if (s.has_hash && s.hash != hash) {
    Fail(fmt::format(
        "state machine safety: member {} holds a snapshot at index {} whose "
        "state differs from what members applied",
        id, index));
    return;
  }
  s.hash = hash;
  s.has_hash = true;
}

void SafetyChecker::OnNewLeader(NodeId id, Term term,
                                const raft::Storage& storage) {
  Index first = storage.FirstIndex();
  Index last = storage.LastIndex();
  auto must_hold = [&](Index i) {
    return i < slots_.size() && slots_[i].committed && slots_[i].seen_in < term;
  };
  // Entries under the leader's snapshot are covered by it (whose state
  // OnSnapshot checked when it was made or installed).
  Index snap = first - 1;
  if (must_hold(snap)) {
    auto t = storage.TermAt(snap);
    if (t.ok() && *t != slots_[snap].term) {
      Fail(
          fmt::format("leader completeness: leader {} of term {} has a "
                      "snapshot at {} of term {}, committed term is {}",
                      id, term, snap, *t, slots_[snap].term));
      return;
    }
  }
  for (Index i = first; i <= max_committed_; i++) {
    if (!must_hold(i)) continue;
    auto t = i <= last ? storage.TermAt(i) : Result<Term>(Status::NotFound(""));
    if (!t.ok() || *t != slots_[i].term) {
      Fail(fmt::format(
          "leader completeness: leader {} of term {} (log {}..{}) lacks entry "
          "{} (term {}) committed by term {}",
          id, term, first, last, i, slots_[i].term, slots_[i].seen_in));
      return;
    }
  }
}

void SafetyChecker::OnRestart(NodeId id, const raft::Storage& storage) {
  raft::HardState hs;
  raft::ConfState cs;
  Status st = storage.InitialState(&hs, &cs);
  if (!st.ok()) {
    Fail(
        fmt::format("member {} restarts from a disk that cannot say its "
                    "state: {}",
                    id, st.ToString()));
    return;
  }
  Index commit = hs.commit;
  Index first = storage.FirstIndex();
  if (commit > storage.LastIndex()) {
    Fail(
        fmt::format("member {} restarts with commit index {} beyond its log "
                    "(last index {})",
                    id, commit, storage.LastIndex()));
    return;
  }
  for (Index i = first; i <= commit && i < slots_.size(); i++) {
    if (!slots_[i].committed) continue;
    auto t = storage.TermAt(i);
    if (!t.ok() || *t != slots_[i].term) {
      Fail(
          fmt::format("member {} restarts without committed entry {} (term "
                      "{}) on its disk",
                      id, i, slots_[i].term));
      return;
    }
  }
}

void SafetyChecker::OnReadState(NodeId id, const std::string& ctx,
                                Index read_index, Index required) {
  if (read_index < required) {
    Fail(fmt::format(
        "linearizability: read {} on member {} got read index {}, but index "
        "{} had been applied before the read began (stale read)",
        ctx, id, read_index, required));
  }
}

void SafetyChecker::CheckLogs(
    const std::map<NodeId, const raft::Storage*>& logs) {
  for (auto a = logs.begin(); a != logs.end() && ok(); ++a) {
    for (auto b = std::next(a); b != logs.end() && ok(); ++b) {
      const raft::Storage& x = *a->second;
      const raft::Storage& y = *b->second;
      Index lo = std::max(x.FirstIndex(), y.FirstIndex());
      Index hi = std::min(x.LastIndex(), y.LastIndex());
      // Find the highest index where the terms agree; everything from lo
      // up to there must be identical.
      Index match = 0;
      for (Index i = hi; i >= lo && i > 0; i--) {
        if (*x.TermAt(i) == *y.TermAt(i)) {
          match = i;
          break;
        }
      }
      if (match < lo) continue;
      auto ex = x.Entries(lo, match + 1, UINT64_MAX);
      auto ey = y.Entries(lo, match + 1, UINT64_MAX);
      if (!ex.ok() || !ey.ok() || *ex != *ey) {
        Fail(fmt::format(
            "log matching: members {} and {} agree on the term at index {} "
            "but their logs differ in [{}, {}]",
            a->first, b->first, match, lo, match));
      }
    }
  }
}

}  // namespace keel::sim
