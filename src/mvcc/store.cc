// Store: opening, Range, Put, DeleteRange, and committing write batches.
#include "mvcc/store.h"

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>

#include <algorithm>

#include "mvcc/request_check.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {

void Store::State::SetKeyLease(const std::string& key, int64_t lease) {
  auto it = key_lease.find(key);
  if (it != key_lease.end()) {
    if (it->second == lease) return;
    auto lk = lease_keys.find(it->second);
    lk->second.erase(key);
    if (lk->second.empty()) lease_keys.erase(lk);
    key_lease.erase(it);
  }
  if (lease != 0) {
    key_lease.emplace(key, lease);
    lease_keys[lease].insert(key);
  }
}

Store::Store(std::string dir, StoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

Store::~Store() {
  // What the last apply round left in memory (a clean stop calls FlushWal
  // first; this is for callers that did not).
  // A failure leaves those writes to Raft's replay, as a crash would.
  Status s = FlushDeferred();
  (void)s;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir,
                                           StoreOptions options) {
  auto b = Backend::Open(dir);
  if (!b.ok()) return b.status();
  auto st = LoadState(b->get(), options);
  if (!st.ok()) return st.status();
  std::unique_ptr<Store> s(new Store(dir, std::move(options)));
  s->backend_ = std::shared_ptr<Backend>(std::move(*b));
  s->state_ = std::move(*st);
  return s;
}

Result<std::unique_ptr<Store::State>> Store::LoadState(
    Backend* b, const StoreOptions& opts) {
  auto st = std::make_unique<State>();
  std::string v;
  int64_t meta_rev = 1, finished = -1;
  auto read_meta = [&](std::string_view key, auto decode) -> Status {
    Status s = b->GetMeta(key, &v);
    if (s.IsNotFound()) return Status::OK();
    if (!s.ok()) return s;
    if (!decode(v))
      return Status::Corruption("bad meta value " + std::string(key));
    return Status::OK();
  };
  KEEL_RETURN_IF_ERROR(read_meta(kMetaConsistentIndex, [&](std::string_view x) {
    return DecodeConsistentIndex(x, &st->ci);
  }));
  KEEL_RETURN_IF_ERROR(read_meta(kMetaRevision, [&](std::string_view x) {
    return DecodeInt64(x, &meta_rev);
  }));
  KEEL_RETURN_IF_ERROR(read_meta(kMetaCompactRevision, [&](std::string_view x) {
    return DecodeInt64(x, &st->compact_rev);
  }));
  KEEL_RETURN_IF_ERROR(
      read_meta(kMetaFinishedCompactRevision,
                [&](std::string_view x) { return DecodeInt64(x, &finished); }));

  int64_t max_rev = 1;
  std::unique_ptr<rocksdb::Iterator> it(
      b->db()->NewIterator(rocksdb::ReadOptions(), b->data()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Revision rev;
    Row row;
    if (!DecodeRevision({it->key().data(), it->key().size()}, &rev) ||
        !DecodeRow({it->value().data(), it->value().size()}, &row)) {
      return Status::Corruption("bad data row in " + b->path());
    }
    st->index.RestoreRow(row.kv.key, rev, row.tombstone, row.kv.create_revision,
                         row.kv.version);
    st->SetKeyLease(row.kv.key, row.tombstone ? 0 : row.kv.lease);
    max_rev = std::max(max_rev, rev.main);
  }
  KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  st->current_rev = std::max({max_rev, meta_rev, st->compact_rev});
  if (st->compact_rev >= 0) {
    // Rows a crash left below the compacted revision: drop them from the
    // index, and finish deleting them if the compaction was interrupted.
    std::set<Revision> keep = st->index.Compact(st->compact_rev);
    if (finished < st->compact_rev) {
      KEEL_RETURN_IF_ERROR(PhysicalCompact(b, st->compact_rev, keep,
                                           opts.compaction_batch_rows));
    }
  }
  return st;
}

int64_t Store::CurrentRevision() const {
  std::shared_lock l(mu_);
  return state_->current_rev;
}

int64_t Store::CompactRevision() const {
  std::shared_lock l(mu_);
  return state_->compact_rev;
}

ConsistentIndex Store::consistent_index() const {
  std::shared_lock l(mu_);
  return state_->ci;
}

std::vector<std::string> Store::LeaseKeys(int64_t lease) const {
  std::shared_lock l(mu_);
  auto it = state_->lease_keys.find(lease);
  if (it == state_->lease_keys.end()) return {};
  return {it->second.begin(), it->second.end()};
}

Status Store::ReadRow(Revision rev, const View& v, KeyValue* kv) const {
  if (v.txn != nullptr && rev.main == v.txn->rev()) {
    KEEL_CHECK_LT(static_cast<size_t>(rev.sub), v.txn->changes.size());
    *kv = v.txn->changes[rev.sub].kv;
    return Status::OK();
  }
  std::string value;
  Status s;
  if (const std::string* row = DeferredRow(rev)) {
    value = *row;
  } else {
    s = backend_->GetData(EncodeRevision(rev), &value);
  }
  if (s.IsNotFound()) {
    return Status::Corruption("index names a missing row at revision " +
                              std::to_string(rev.main));
  }
  KEEL_RETURN_IF_ERROR(s);
  Row row;
  if (!DecodeRow(value, &row) || row.tombstone) {
    return Status::Corruption("bad row at revision " +
                              std::to_string(rev.main));
  }
  *kv = std::move(row.kv);
  return Status::OK();
}

Result<RangeResponse> Store::Range(const RangeRequest& r) const {
  std::shared_lock l(mu_);
  return RangeIn(r, View{state_->current_rev, nullptr});
}

Result<RangeResponse> Store::RangeIn(const RangeRequest& r,
                                     const View& v) const {
  const State& st = *state_;
  // As etcd's apply.go: sorting or filtering needs every match; otherwise
  // fetch one more than the limit to learn `more`.
  int64_t limit = r.limit;
  if (r.sort_order != SortOrder::kNone || r.min_mod_revision != 0 ||
      r.max_mod_revision != 0 || r.min_create_revision != 0 ||
      r.max_create_revision != 0) {
    limit = 0;
  }
  if (limit > 0) limit++;
  int64_t rev = r.revision;
  if (rev > v.rev) return MvccError(ErrorCode::kFutureRevision);
  if (rev <= 0) rev = v.rev;
  if (rev < st.compact_rev) return MvccError(ErrorCode::kCompacted);

  RangeResponse resp;
  resp.header.revision = v.rev;
  const KeyRange kr = KeyRange::FromEtcd(r.key, r.range_end);
  if (r.count_only) {
    resp.count = st.index.CountRevisions(kr, rev);
    return resp;
  }
  const std::vector<Revision> revs =
      st.index.Revisions(kr, rev, limit, &resp.count);
  resp.kvs.resize(revs.size());
  for (size_t i = 0; i < revs.size(); i++) {
    KEEL_RETURN_IF_ERROR(ReadRow(revs[i], v, &resp.kvs[i]));
  }

  auto prune = [&](auto drop) {
    resp.kvs.erase(std::remove_if(resp.kvs.begin(), resp.kvs.end(), drop),
                   resp.kvs.end());
  };
  if (r.max_mod_revision != 0) {
    prune([&](const KeyValue& kv) {
      return kv.mod_revision > r.max_mod_revision;
    });
  }
  if (r.min_mod_revision != 0) {
    prune([&](const KeyValue& kv) {
      return kv.mod_revision < r.min_mod_revision;
    });
  }
  if (r.max_create_revision != 0) {
    prune([&](const KeyValue& kv) {
      return kv.create_revision > r.max_create_revision;
    });
  }
  if (r.min_create_revision != 0) {
    prune([&](const KeyValue& kv) {
      return kv.create_revision < r.min_create_revision;
    });
  }

  // Results come in ascending key order already: a non-key target with no
  // order sorts ascending; key ascending needs no sort.
  SortOrder order = r.sort_order;
  if (r.sort_target != SortTarget::kKey && order == SortOrder::kNone) {
    order = SortOrder::kAscend;
  } else if (r.sort_target == SortTarget::kKey && order == SortOrder::kAscend) {
    order = SortOrder::kNone;
  }
  if (order != SortOrder::kNone) {
    auto less = [&](const KeyValue& a, const KeyValue& b) {
      switch (r.sort_target) {
        case SortTarget::kKey:
          return a.key < b.key;
        case SortTarget::kVersion:
          return a.version < b.version;
        case SortTarget::kCreate:
          return a.create_revision < b.create_revision;
        case SortTarget::kMod:
          return a.mod_revision < b.mod_revision;
        case SortTarget::kValue:
          return a.value < b.value;
      }
      return false;
    };
    // Stable: ties stay in key order, as etcd's sort gives for small sets.
    if (order == SortOrder::kAscend) {
      std::stable_sort(resp.kvs.begin(), resp.kvs.end(), less);
    } else {
      std::stable_sort(
          resp.kvs.begin(), resp.kvs.end(),
          [&](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    }
  }
  if (r.limit > 0 && static_cast<int64_t>(resp.kvs.size()) > r.limit) {
    resp.kvs.resize(r.limit);
    resp.more = true;
  }
  if (r.keys_only) {
    for (KeyValue& kv : resp.kvs) kv.value.clear();
  }
  return resp;
}

Status Store::CheckPut(const PutRequest& p, const View& v) const {
  KEEL_RETURN_IF_ERROR(ValidatePut(p));
  if (p.ignore_value || p.ignore_lease) {
    if (!state_->index.Get(p.key, v.rev, nullptr, nullptr, nullptr)) {
      return MvccError(ErrorCode::kKeyNotFound);
    }
  }
  if (p.lease != 0 && options_.lease_exists &&
      !options_.lease_exists(p.lease)) {
    return MvccError(ErrorCode::kLeaseNotFound);
  }
  return Status::OK();
}

Result<PutResponse> Store::PutIn(const PutRequest& r, PendingWrite* w) const {
  const View v{w->read_rev(), w};
  PutResponse resp;
  std::string value = r.value;
  int64_t lease = r.lease;
  if (r.ignore_value || r.ignore_lease || r.prev_kv) {
    RangeRequest rr;
    rr.key = r.key;
    auto got = RangeIn(rr, v);
    if (!got.ok()) return got.status();
    if ((r.ignore_value || r.ignore_lease) && got->kvs.empty()) {
      return MvccError(ErrorCode::kKeyNotFound);
    }
    if (r.ignore_value) value = got->kvs[0].value;
    if (r.ignore_lease) lease = got->kvs[0].lease;
    if (r.prev_kv && !got->kvs.empty()) resp.prev_kv = got->kvs[0];
  }
  const int64_t rev = w->rev();
  int64_t create = rev, ver = 0;
  Revision created;
  // One lookup of the key for the read, the undo record and the update.
  KeyIndex* ki = w->index->FindMutable(r.key);
  if (ki != nullptr && ki->Get(rev, nullptr, &created, &ver)) {
    create = created.main;
  }
  Row row;
  row.kv = KeyValue{r.key, create, rev, ver + 1, std::move(value), lease};
  w->SaveUndo(r.key, ki);
  const Revision put_rev{rev, static_cast<int64_t>(w->changes.size())};
  if (ki != nullptr) {
    ki->Put(put_rev);
  } else {
    w->index->Put(r.key, put_rev);
  }
  w->changes.push_back(std::move(row));
  resp.header.revision = rev;
  return resp;
}

Result<DeleteRangeResponse> Store::DeleteIn(const DeleteRangeRequest& r,
                                            PendingWrite* w) const {
  const View v{w->read_rev(), w};
  DeleteRangeResponse resp;
  if (r.prev_kv) {
    RangeRequest rr;
    rr.key = r.key;
    rr.range_end = r.range_end;
    auto got = RangeIn(rr, v);
    if (!got.ok()) return got.status();
    resp.prev_kvs = std::move(got->kvs);
  }
  const auto keys =
      w->index->Keys(KeyRange::FromEtcd(r.key, r.range_end), v.rev);
  for (const std::string& key : keys) {
    const Revision rev{w->rev(), static_cast<int64_t>(w->changes.size())};
    w->SaveUndo(key);
    KEEL_CHECK(w->index->Tombstone(key, rev));
    Row row;
    row.tombstone = true;
    row.kv.key = key;
    w->changes.push_back(std::move(row));
  }
  resp.deleted = static_cast<int64_t>(keys.size());
  resp.header.revision = w->changes.empty() ? w->begin_rev : w->rev();
  return resp;
}

Status Store::Commit(PendingWrite* w) {
  State& st = *state_;
  if (w->ci.index != 0) KEEL_CHECK_GE(w->ci.index, st.ci.index);
  if (w->changes.empty() && w->ci.index == 0 && w->meta_writes.empty()) {
    return Status::OK();
  }
  if (options_.defer_wal_writes && !options_.sync_writes &&
      w->meta_writes.empty()) {
    // Into the round's batch (FlushWal); readable from deferred_ meanwhile.
    for (size_t i = 0; i < w->changes.size(); i++) {
      deferred_.rows.emplace_back(Revision{w->rev(), static_cast<int64_t>(i)},
                                  EncodeRow(w->changes[i]));
    }
    if (!w->changes.empty()) deferred_.rev = w->rev();
    if (w->ci.index != 0) deferred_.ci = w->ci;
  } else {
    // Lease records and aux blobs are read from RocksDB (Leases, GetAux):
    // written at once, after the deferred writes they follow.
    Status s = FlushDeferredLocked();
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < w->changes.size(); i++) {
      batch.Put(backend_->data(),
                EncodeRevision(Revision{w->rev(), static_cast<int64_t>(i)}),
                EncodeRow(w->changes[i]));
    }
    for (const auto& [key, value] : w->meta_writes) {
      if (value) {
        batch.Put(backend_->meta(), key, *value);
      } else {
        batch.Delete(backend_->meta(), key);
      }
    }
    PutRevisionAndIndex(&batch, w->changes.empty() ? 0 : w->rev(), w->ci);
    if (s.ok()) {
      s = backend_->Write(&batch, options_.sync_writes,
                          options_.defer_wal_writes);
    }
    if (!s.ok()) {
      w->Rollback();
      return s;
    }
  }
  if (!w->changes.empty()) st.current_rev = w->rev();
  if (w->ci.index != 0) st.ci = w->ci;
  for (const Row& row : w->changes) {
    st.SetKeyLease(row.kv.key, row.tombstone ? 0 : row.kv.lease);
  }
  w->undo.clear();
  w->meta_writes.clear();
  // Still under the write lock: watchers see revisions in order, and no
  // reader sees this revision before the hub knows of it.
  Notify(*w);
  return Status::OK();
}

Result<PutResponse> Store::Put(const PutRequest& r, ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  Status s = CheckPut(r, View{w.begin_rev, nullptr});
  Result<PutResponse> resp = s.ok() ? PutIn(r, &w) : Result<PutResponse>(s);
  if (!resp.ok()) {
    w.Rollback();
    KEEL_RETURN_IF_ERROR(Commit(&w));
    return resp.status();
  }
  KEEL_RETURN_IF_ERROR(Commit(&w));
  return resp;
}

Result<DeleteRangeResponse> Store::DeleteRange(const DeleteRangeRequest& r,
                                               ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  auto resp = DeleteIn(r, &w);
  if (!resp.ok()) {
    w.Rollback();
    KEEL_RETURN_IF_ERROR(Commit(&w));
    return resp.status();
  }
  KEEL_RETURN_IF_ERROR(Commit(&w));
  return resp;
}

Result<DeleteRangeResponse> Store::RevokeLease(int64_t lease,
                                               ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  DeleteRangeResponse resp;
  auto it = state_->lease_keys.find(lease);
  const std::vector<std::string> keys =
      it == state_->lease_keys.end()
          ? std::vector<std::string>{}
          : std::vector<std::string>(it->second.begin(), it->second.end());
  for (const std::string& key : keys) {
    DeleteRangeRequest d;
    d.key = key;
    auto one = DeleteIn(d, &w);
    if (!one.ok()) {
      w.Rollback();
      KEEL_RETURN_IF_ERROR(Commit(&w));
      return one.status();
    }
    resp.deleted += one->deleted;
  }
  resp.header.revision = w.changes.empty() ? w.begin_rev : w.rev();
  w.meta_writes.emplace_back(LeaseMetaKey(lease), std::nullopt);
  KEEL_RETURN_IF_ERROR(Commit(&w));
  return resp;
}

Status Store::SetConsistentIndex(ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  return Commit(&w);
}

const std::string* Store::DeferredRow(Revision rev) const {
  const auto& rows = deferred_.rows;
  if (rows.empty() || rev < rows.front().first) return nullptr;
  auto it = std::lower_bound(
      rows.begin(), rows.end(), rev,
      [](const auto& row, const Revision& r) { return row.first < r; });
  if (it == rows.end() || it->first != rev) return nullptr;
  return &it->second;
}

void Store::PutRevisionAndIndex(rocksdb::WriteBatch* batch, int64_t rev,
                                const ConsistentIndex& ci) const {
  if (rev != 0) batch->Put(backend_->meta(), kMetaRevision, EncodeInt64(rev));
  if (ci.index != 0) {
    batch->Put(backend_->meta(), kMetaConsistentIndex,
               EncodeConsistentIndex(ci));
  }
}

Status Store::FlushDeferredLocked() const {
  if (deferred_.empty()) return Status::OK();
  rocksdb::WriteBatch batch;
  for (const auto& [rev, row] : deferred_.rows) {
    batch.Put(backend_->data(), EncodeRevision(rev), row);
  }
  PutRevisionAndIndex(&batch, deferred_.rev, deferred_.ci);
  // The WAL record goes to the file at once (with any buffered before it).
  KEEL_RETURN_IF_ERROR(backend_->Write(&batch, false, /*defer_wal=*/false));
  deferred_ = Deferred{};
  return Status::OK();
}

Status Store::FlushDeferred() const {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  return FlushDeferredLocked();
}

Status Store::FlushWal() {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  if (!deferred_.empty()) return FlushDeferredLocked();
  return backend_->FlushWal();
}

Status Store::Sync() {
  KEEL_RETURN_IF_ERROR(FlushDeferred());
  std::shared_lock l(mu_);
  return backend_->SyncWal();
}

Status Store::ForceCommit() {
  KEEL_RETURN_IF_ERROR(FlushDeferred());
  std::shared_lock l(mu_);
  return backend_->Flush();
}

Status Store::Defragment() {
  KEEL_RETURN_IF_ERROR(FlushDeferred());
  // Reads go on meanwhile (shared lock); RocksDB rewrites the files
  // without the rows compaction deleted, which is what frees the space.
  std::shared_lock l(mu_);
  KEEL_RETURN_IF_ERROR(backend_->Flush());
  rocksdb::CompactRangeOptions o;
  o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* cf : {backend_->data(), backend_->meta()}) {
    rocksdb::Status s = backend_->db()->CompactRange(o, cf, nullptr, nullptr);
    if (!s.ok()) return Status::IOError("defragment: " + s.ToString());
  }
  return Status::OK();
}

}  // namespace keel::mvcc
