// Private parts of Store shared by its .cc files.
//
// Thread safety: see store.h; everything here is guarded by Store::mu_.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mvcc/kv_codec.h"
#include "mvcc/store.h"

namespace keel::mvcc {

// What the store knows in memory, rebuilt from RocksDB by LoadState.
struct Store::State {
  TreeIndex index;
  int64_t current_rev = 1;
  int64_t compact_rev = -1;
  ConsistentIndex ci;
  // Lease of every live key that has one, and the reverse.
  std::map<std::string, int64_t, std::less<>> key_lease;
  std::map<int64_t, std::set<std::string>> lease_keys;

  void SetKeyLease(const std::string& key, int64_t lease);  // 0: none
};

// One write transaction in progress (mu_ held exclusively throughout).
struct Store::PendingWrite {
  TreeIndex* index = nullptr;
  int64_t begin_rev = 0;
  ConsistentIndex ci;
  std::vector<Row> changes;  // changes[i] has revision (begin_rev + 1, i)
  // Index entries as they were before this txn touched them, to undo on a
  // failed commit (nullopt: the key was not indexed).
  std::map<std::string, std::optional<KeyIndex>, std::less<>> undo;
  // Meta rows written (value) or deleted (nullopt) in the same batch
  // (lease records).
  std::vector<std::pair<std::string, std::optional<std::string>>> meta_writes{};

  int64_t rev() const { return begin_rev + 1; }
  // The revision reads inside the txn see: its own writes once it has any.
  int64_t read_rev() const { return changes.empty() ? begin_rev : rev(); }
  // Forgets the txn's changes (an op failed, or the batch did not land).
  void Rollback() {
    for (auto& [key, ki] : undo) index->Reset(key, std::move(ki));
    undo.clear();
    changes.clear();
    meta_writes.clear();
  }
  void SaveUndo(const std::string& key) {
    if (!undo.count(key)) undo.emplace(key, index->Snapshot(key));
  }
  // Same, for a key the caller already looked up (`ki` null: not indexed).
  void SaveUndo(const std::string& key, const KeyIndex* ki) {
    if (undo.count(key)) return;
    undo.emplace(key,
                 ki != nullptr ? std::optional<KeyIndex>(*ki) : std::nullopt);
  }
};

// A consistent point to read at: the revision that counts as current, and
// the txn whose uncommitted rows are visible (or null).
struct Store::View {
  int64_t rev = 0;
  const PendingWrite* txn = nullptr;
};

}  // namespace keel::mvcc
