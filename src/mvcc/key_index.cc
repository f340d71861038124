#include "mvcc/key_index.h"

#include "common/check.h"

namespace keel::mvcc {

void KeyIndex::Put(Revision rev) {
  KEEL_CHECK(IsEmpty() || rev > modified_)
      << "put at " << rev.main << "." << rev.sub << " after " << modified_.main
      << "." << modified_.sub;
  Generation& g = generations_.back();
  if (g.empty()) g.created = rev;
  g.revs.push_back(rev);
  g.ver++;
  modified_ = rev;
}

void KeyIndex::Restore(Revision created, Revision modified, int64_t ver) {
  KEEL_CHECK(IsEmpty());
  Generation& g = generations_[0];
  g.created = created;
  g.ver = ver;
  g.revs = {modified};
  modified_ = modified;
}

bool KeyIndex::Tombstone(Revision rev) {
  if (!IsLive()) return false;
  Put(rev);
  generations_.emplace_back();
  return true;
}

const Generation* KeyIndex::FindGeneration(int64_t rev) const {
  const size_t last = generations_.size() - 1;
  for (size_t i = generations_.size(); i-- > 0;) {
    const Generation& g = generations_[i];
    if (g.empty()) continue;
    // A closed generation whose tombstone is at or before rev: the key was
    // deleted by then (and no later generation started before rev).
    if (i != last && g.revs.back().main <= rev) return nullptr;
    if (g.revs.front().main <= rev) return &g;
  }
  return nullptr;
}

bool KeyIndex::Get(int64_t at_rev, Revision* modified, Revision* created,
                   int64_t* ver) const {
  const Generation* g = FindGeneration(at_rev);
  if (g == nullptr) return false;
  for (size_t n = g->revs.size(); n-- > 0;) {
    if (g->revs[n].main <= at_rev) {
      if (modified) *modified = g->revs[n];
      if (created) *created = g->created;
      if (ver) *ver = g->ver - static_cast<int64_t>(g->revs.size() - n - 1);
      return true;
    }
  }
  return false;
}

void KeyIndex::DoCompact(int64_t at_rev, std::set<Revision>* available,
                         size_t* gen_idx, int* rev_idx) const {
  size_t gi = 0;
  // The first generation that is still open at at_rev (or the last one).
  while (gi < generations_.size() - 1) {
    if (generations_[gi].revs.back().main > at_rev) break;
    gi++;
  }
  const Generation& g = generations_[gi];
  int ri = -1;
  for (size_t n = g.revs.size(); n-- > 0;) {
    if (g.revs[n].main <= at_rev) {
      available->insert(g.revs[n]);
      ri = static_cast<int>(n);
      break;
    }
  }
  *gen_idx = gi;
  *rev_idx = ri;
}

void KeyIndex::Compact(int64_t at_rev, std::set<Revision>* available) {
  KEEL_CHECK(!IsEmpty());
  size_t gi;
  int ri;
  DoCompact(at_rev, available, &gi, &ri);
  Generation& g = generations_[gi];
  if (!g.empty()) {
    if (ri != -1) g.revs.erase(g.revs.begin(), g.revs.begin() + ri);
    // A closed generation reduced to its tombstone is gone entirely.
    if (g.revs.size() == 1 && gi != generations_.size() - 1) {
      available->erase(g.revs[0]);
      gi++;
    }
  }
  generations_.erase(generations_.begin(), generations_.begin() + gi);
  if (generations_.empty()) generations_.emplace_back();
}

void KeyIndex::Keep(int64_t at_rev, std::set<Revision>* available) const {
  if (IsEmpty()) return;
  size_t gi;
  int ri;
  DoCompact(at_rev, available, &gi, &ri);
  const Generation& g = generations_[gi];
  if (!g.empty() && ri == static_cast<int>(g.revs.size()) - 1 &&
      gi != generations_.size() - 1) {
    available->erase(g.revs[ri]);  // a tombstone is not kept
  }
}

KeyRange KeyRange::FromEtcd(std::string_view key, std::string_view range_end) {
  KeyRange r;
  r.key.assign(key);
  if (range_end.empty()) return r;
  if (range_end.size() == 1 && range_end[0] == '\0') {
    r.end = std::string();
  } else {
    r.end = std::string(range_end);
  }
  return r;
}

TreeIndex::Map::value_type* TreeIndex::Lookup(std::string_view key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : *it;
}

TreeIndex::Map::iterator TreeIndex::Insert(const std::string& key) {
  auto it = map_.try_emplace(key).first;
  by_key_.insert(&*it);
  return it;
}

TreeIndex::Map::iterator TreeIndex::Erase(Map::iterator it) {
  by_key_.erase(&*it);
  return map_.erase(it);
}

bool TreeIndex::Get(std::string_view key, int64_t at_rev, Revision* modified,
                    Revision* created, int64_t* ver) const {
  const Map::value_type* e = Lookup(key);
  if (e == nullptr) return false;
  return e->second.Get(at_rev, modified, created, ver);
}

std::vector<Revision> TreeIndex::Revisions(const KeyRange& r, int64_t at_rev,
                                           int64_t limit,
                                           int64_t* total) const {
  std::vector<Revision> revs;
  int64_t n = 0;
  Visit(r, [&](const std::string&, const KeyIndex& ki) {
    Revision rev;
    if (ki.Get(at_rev, &rev, nullptr, nullptr)) {
      if (limit <= 0 || static_cast<int64_t>(revs.size()) < limit) {
        revs.push_back(rev);
      }
      n++;
    }
    return true;
  });
  *total = n;
  return revs;
}

int64_t TreeIndex::CountRevisions(const KeyRange& r, int64_t at_rev) const {
  int64_t n = 0;
  Visit(r, [&](const std::string&, const KeyIndex& ki) {
    if (ki.Get(at_rev, nullptr, nullptr, nullptr)) n++;
    return true;
  });
  return n;
}

std::vector<std::string> TreeIndex::Keys(const KeyRange& r,
                                         int64_t at_rev) const {
  std::vector<std::string> keys;
  Visit(r, [&](const std::string& key, const KeyIndex& ki) {
    if (ki.Get(at_rev, nullptr, nullptr, nullptr)) keys.push_back(key);
    return true;
  });
  return keys;
}

void TreeIndex::Put(const std::string& key, Revision rev) {
  Map::value_type* e = Lookup(key);
  if (e == nullptr) e = &*Insert(key);
  e->second.Put(rev);
}

bool TreeIndex::Tombstone(const std::string& key, Revision rev) {
  Map::value_type* e = Lookup(key);
  if (e == nullptr) return false;
  return e->second.Tombstone(rev);
}

void TreeIndex::RestoreRow(const std::string& key, Revision rev, bool tombstone,
                           int64_t create_revision, int64_t version) {
  Map::value_type* e = Lookup(key);
  if (e == nullptr) {
    // A key's surviving history never starts with a tombstone (compaction
    // keeps the live revision before it); skip one if it does.
    if (tombstone) return;
    Insert(key)->second.Restore(Revision{create_revision, 0}, rev, version);
    return;
  }
  if (tombstone) {
    e->second.Tombstone(rev);
  } else {
    e->second.Put(rev);
  }
}

std::set<Revision> TreeIndex::Compact(int64_t at_rev) {
  std::set<Revision> available;
  for (auto it = map_.begin(); it != map_.end();) {
    it->second.Compact(at_rev, &available);
    if (it->second.IsEmpty()) {
      it = Erase(it);
    } else {
      ++it;
    }
  }
  return available;
}

std::set<Revision> TreeIndex::Keep(int64_t at_rev) const {
  std::set<Revision> available;
  for (const auto& [key, ki] : map_) ki.Keep(at_rev, &available);
  return available;
}

const KeyIndex* TreeIndex::Find(std::string_view key) const {
  const Map::value_type* e = Lookup(key);
  return e == nullptr ? nullptr : &e->second;
}

KeyIndex* TreeIndex::FindMutable(std::string_view key) {
  Map::value_type* e = Lookup(key);
  return e == nullptr ? nullptr : &e->second;
}

std::optional<KeyIndex> TreeIndex::Snapshot(std::string_view key) const {
  const Map::value_type* e = Lookup(key);
  if (e == nullptr) return std::nullopt;
  return e->second;
}

void TreeIndex::Reset(const std::string& key, std::optional<KeyIndex> ki) {
  Map::value_type* e = Lookup(key);
  if (ki.has_value()) {
    if (e == nullptr) e = &*Insert(key);
    e->second = std::move(*ki);
  } else if (e != nullptr) {
    Erase(map_.find(key));
  }
}

}  // namespace keel::mvcc
