// The in-memory key index: key -> generations of revisions, as etcd's
// keyIndex/treeIndex (server/mvcc/key_index.go, index.go).
//
// A generation is the life of a key from a create to its delete: the
// revisions of its puts, then the delete's tombstone revision. The last
// generation is the current one and is empty when the key is deleted.
// Example: put@1.0 put@2.0 delete@3.0 put@4.0 ->
//   {created 1.0, ver 3, revs [1.0 2.0 3.0]}, {created 4.0, ver 1, [4.0]}
// The index never holds values; those live in RocksDB under the revision.
//
// Thread safety: none; the Store guards its TreeIndex with its lock.
#pragma once

#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mvcc/revision.h"

namespace keel::mvcc {

struct Generation {
  int64_t ver = 0;   // puts so far in this generation (counts the tombstone)
  Revision created;  // the revision that created the key
  // Invariant: strictly increasing; in a closed generation the last is the
  // tombstone.
  std::vector<Revision> revs;
  bool empty() const { return revs.empty(); }
};

class KeyIndex {
 public:
  KeyIndex() : generations_(1) {}

  // Appends a put; rev must be greater than every revision recorded.
  void Put(Revision rev);
  // Seeds an empty index from a row read back from disk (after compaction
  // the first row of a key needs not be its create).
  void Restore(Revision created, Revision modified, int64_t ver);
  // Closes the current generation with a tombstone at rev; false (and no
  // change) when the key is not live.
  bool Tombstone(Revision rev);

  // The state of the key at main revision at_rev: false if absent then.
  bool Get(int64_t at_rev, Revision* modified, Revision* created,
           int64_t* ver) const;

  // Drops what compaction at at_rev makes unreachable and adds to
  // `available` the revisions <= at_rev that must stay on disk.
  void Compact(int64_t at_rev, std::set<Revision>* available);
  // What Compact would add to `available`, without changing anything.
  void Keep(int64_t at_rev, std::set<Revision>* available) const;

  bool IsEmpty() const {
    return generations_.size() == 1 && generations_[0].empty();
  }
  bool IsLive() const { return !generations_.back().empty(); }
  Revision modified() const { return modified_; }
  const std::vector<Generation>& generations() const { return generations_; }

 private:
  const Generation* FindGeneration(int64_t rev) const;
  // etcd's doCompact: the generation holding at_rev and the index in it of
  // the last revision <= at_rev (-1 if none); adds that revision.
  void DoCompact(int64_t at_rev, std::set<Revision>* available, size_t* gen_idx,
                 int* rev_idx) const;

  Revision modified_;  // the last revision recorded
  // Invariant: never empty; every generation but the last is closed.
  std::vector<Generation> generations_;
};

// A key range as the store uses it: `end` nullopt = the single key,
// "" = unbounded, otherwise [key, end).
struct KeyRange {
  std::string key;
  std::optional<std::string> end;
  // From an etcd (key, range_end) pair: "" -> single, "\0" -> unbounded.
  static KeyRange FromEtcd(std::string_view key, std::string_view range_end);
};

class TreeIndex {
 public:
  using Map = std::map<std::string, KeyIndex, std::less<>>;

  TreeIndex() = default;
  // Not copyable: the hash set points into the map's nodes (moves keep
  // them).
  TreeIndex(const TreeIndex&) = delete;
  TreeIndex& operator=(const TreeIndex&) = delete;
  TreeIndex(TreeIndex&&) = default;
  TreeIndex& operator=(TreeIndex&&) = default;

  // Calls f(key, keyindex) for every indexed key in range, in key order,
  // while f returns true.
  template <typename F>
  void Visit(const KeyRange& r, F&& f) const {
    if (!r.end.has_value()) {
      if (const Map::value_type* e = Lookup(r.key)) f(e->first, e->second);
      return;
    }
    for (auto it = map_.lower_bound(r.key); it != map_.end(); ++it) {
      if (!r.end->empty() && it->first >= *r.end) break;
      if (!f(it->first, it->second)) break;
    }
  }

  bool Get(std::string_view key, int64_t at_rev, Revision* modified,
           Revision* created, int64_t* ver) const;
  // Revisions of the keys live at at_rev in range, key order, at most
  // `limit` (0 = all); *total counts them all.
  std::vector<Revision> Revisions(const KeyRange& r, int64_t at_rev,
                                  int64_t limit, int64_t* total) const;
  int64_t CountRevisions(const KeyRange& r, int64_t at_rev) const;
  // Keys live at at_rev in range.
  std::vector<std::string> Keys(const KeyRange& r, int64_t at_rev) const;

  void Put(const std::string& key, Revision rev);
  bool Tombstone(const std::string& key, Revision rev);
  // For rebuilding from disk, in revision order.
  void RestoreRow(const std::string& key, Revision rev, bool tombstone,
                  int64_t create_revision, int64_t version);

  std::set<Revision> Compact(int64_t at_rev);
  std::set<Revision> Keep(int64_t at_rev) const;

  const KeyIndex* Find(std::string_view key) const;
  // The entry to change in place (null if the key is not indexed): a put
  // looks its key up once instead of once per step (the tree's lookups of
  // 100,000 keys were a sixth of a loaded follower's CPU). The pointer
  // stays valid until the key is erased (std::map never moves entries).
  KeyIndex* FindMutable(std::string_view key);
  // Undo support: the entry as it is now, and putting one back.
  std::optional<KeyIndex> Snapshot(std::string_view key) const;
  void Reset(const std::string& key, std::optional<KeyIndex> ki);

  size_t size() const { return map_.size(); }
  const Map& map() const { return map_; }

 private:
  // Hash and equality of map entries by key, with lookups by string_view.
  struct EntryHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const {
      return absl::Hash<std::string_view>{}(key);
    }
    size_t operator()(const Map::value_type* e) const {
      return (*this)(std::string_view(e->first));
    }
  };
  struct EntryEq {
    using is_transparent = void;
    static std::string_view Key(std::string_view key) { return key; }
    static std::string_view Key(const Map::value_type* e) { return e->first; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Key(a) == Key(b);
    }
  };

  // The entry of `key`, or null.
  Map::value_type* Lookup(std::string_view key) const;
  // Adds `key` (not yet indexed) with an empty KeyIndex.
  Map::iterator Insert(const std::string& key);
  Map::iterator Erase(Map::iterator it);

  Map map_;
  // Every entry of map_, by key: a put or a single-key read finds its key
  // with one hash probe instead of a descent of the tree, whose ~20 cache
  // misses made the one lookup of a put a sixth of a loaded follower's CPU
  // at 100,000 keys. The map keeps the order ranges need; its nodes never
  // move, so the pointers stay valid until erased (Erase).
  // Invariant: holds exactly the addresses of map_'s entries.
  absl::flat_hash_set<Map::value_type*, EntryHash, EntryEq> by_key_;
};

}  // namespace keel::mvcc
