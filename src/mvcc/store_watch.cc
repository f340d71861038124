// Store: the parts the watch hub uses — telling an observer of every
// committed revision, and reading the history back by revision.
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>

#include "common/check.h"
#include "mvcc/store.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {

int64_t Store::SetObserver(StoreObserver* o) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  observer_ = o;
  return state_->current_rev;
}

std::optional<KeyValue> Store::ValueAt(const std::string& key,
                                       int64_t rev) const {
  Revision mod;
  if (rev < state_->compact_rev || rev <= 0) return std::nullopt;
  if (!state_->index.Get(key, rev, &mod, nullptr, nullptr)) {
    return std::nullopt;
  }
  KeyValue kv;
  // A row the index names but cannot be read is corruption the reads
  // report; a watcher just goes without its prev_kv.
  if (!ReadRow(mod, View{rev, nullptr}, &kv).ok()) return std::nullopt;
  return kv;
}

void Store::Notify(const PendingWrite& w) const {
  if (observer_ == nullptr || w.changes.empty()) return;
  const bool want_prev = observer_->WantsPrevKv();
  std::vector<Event> events(w.changes.size());
  for (size_t i = 0; i < w.changes.size(); i++) {
    const Row& row = w.changes[i];
    Event& e = events[i];
    if (row.tombstone) {
      e.type = Event::Type::kDelete;
      e.kv.key = row.kv.key;
      e.kv.mod_revision = w.rev();
    } else {
      e.kv = row.kv;
    }
    // As etcd: the key as of the revision before the write (so two puts
    // of one key in a txn both name the value from before the txn).
    if (want_prev) e.prev_kv = ValueAt(row.kv.key, w.begin_rev);
  }
  observer_->OnCommit(w.rev(), std::move(events));
}

Result<History> Store::ReadHistory(int64_t from_rev, int64_t max_revs,
                                   size_t max_bytes, bool prev_kv) const {
  std::shared_lock l(mu_);
  const State& st = *state_;
  History h;
  h.current_rev = st.current_rev;
  h.compact_rev = st.compact_rev;
  const int64_t start =
      std::max<int64_t>(from_rev, std::max<int64_t>(1, st.compact_rev));
  h.last_rev = start - 1;
  if (start > st.current_rev) return h;
  int64_t revs = 0;
  size_t bytes = 0;
  int64_t cur_main = 0;
  // Adds one row; false once the limits say to stop before it.
  auto add = [&](Revision rev, Row row) {
    if (rev.main != cur_main) {
      // A revision boundary: the only place to stop, so that one write's
      // events are never split.
      if (cur_main != 0) h.last_rev = cur_main;
      if (revs >= max_revs || bytes >= max_bytes) return false;
      cur_main = rev.main;
      revs++;
    }
    Event e;
    if (row.tombstone) {
      e.type = Event::Type::kDelete;
      e.kv.key = std::move(row.kv.key);
      e.kv.mod_revision = rev.main;
    } else {
      e.kv = std::move(row.kv);
    }
    if (prev_kv) e.prev_kv = ValueAt(e.kv.key, rev.main - 1);
    bytes += e.kv.key.size() + e.kv.value.size() + 32;
    h.events.push_back(std::move(e));
    return true;
  };
  // RocksDB's rows, then the deferred ones (all newer: see Deferred).
  const auto& deferred = deferred_.rows;
  const int64_t rocks_end =
      deferred.empty() ? st.current_rev + 1 : deferred.front().first.main;
  if (start < rocks_end) {
    const std::string upper = EncodeRevision(Revision{rocks_end, 0});
    const rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        backend_->db()->NewIterator(ro, backend_->data()));
    for (it->Seek(EncodeRevision(Revision{start, 0})); it->Valid();
         it->Next()) {
      Revision rev;
      Row row;
      if (!DecodeRevision({it->key().data(), it->key().size()}, &rev) ||
          !DecodeRow({it->value().data(), it->value().size()}, &row)) {
        return Status::Corruption("bad data row in " + backend_->path());
      }
      if (!add(rev, std::move(row))) return h;
    }
    KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  for (const auto& [rev, encoded] : deferred) {
    if (rev.main < start) continue;
    Row row;
    KEEL_CHECK(DecodeRow(encoded, &row)) << "deferred row " << rev.main;
    if (!add(rev, std::move(row))) return h;
  }
  h.last_rev = st.current_rev;
  return h;
}

}  // namespace keel::mvcc
