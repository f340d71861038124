// A simple in-memory reference model of the store: the full key->KeyValue
// map after every revision. Slow and obviously right; tests compare the
// real store against it.
//
// Thread safety: none (test-only).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mvcc/types.h"

namespace keel::mvcc::testing {

class Model {
 public:
  using Map = std::map<std::string, KeyValue>;
  Model() { history_[1] = {}; }

  int64_t rev() const { return rev_; }
  const Map& at(int64_t rev) const { return history_.at(rev); }
  const Map& now() const { return history_.at(rev_); }

  // Starts a write txn; Commit() makes the revision if anything changed.
  void Begin() {
    pending_ = now();
    changed_ = false;
  }
  void Put(const std::string& key, const std::string& value, int64_t lease) {
    KeyValue kv{key, rev_ + 1, rev_ + 1, 1, value, lease};
    auto it = pending_.find(key);
    if (it != pending_.end()) {
      kv.create_revision = it->second.create_revision;
      kv.version = it->second.version + 1;
    }
    pending_[key] = kv;
    changed_ = true;
  }
  int64_t Delete(const std::string& key, const std::string& end) {
    int64_t n = 0;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (InRange(it->first, key, end)) {
        it = pending_.erase(it);
        n++;
      } else {
        ++it;
      }
    }
    if (n > 0) changed_ = true;
    return n;
  }
  const Map& pending() const { return pending_; }
  void Commit() {
    if (!changed_) return;
    rev_++;
    history_[rev_] = pending_;
  }
  void Compact(int64_t rev) {
    for (auto it = history_.begin(); it != history_.end() && it->first < rev;) {
      it = history_.erase(it);
    }
  }

  static bool InRange(const std::string& k, const std::string& key,
                      const std::string& end) {
    if (end.empty()) return k == key;
    if (end == std::string(1, '\0')) return k >= key;
    return k >= key && k < end;
  }

 private:
  int64_t rev_ = 1;
  std::map<int64_t, Map> history_;
  Map pending_;
  bool changed_ = false;
};

}  // namespace keel::mvcc::testing
