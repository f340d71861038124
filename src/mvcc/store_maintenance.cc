// Store: compaction, hashes, size, and snapshot export/restore.
//
// Snapshot file format (all integers little-endian):
//   "KEELMVC1"                                  8-byte magic
//   record*  : tag u8 ('D' data row, 'M' meta row)
//              key_len u32, key, value_len u32, value
//   trailer  : 'E', record_count u64, crc32c u32 (unmasked) of every byte
//              before the crc field
// Records are the raw RocksDB rows of both column families, so a restore
// reproduces the store exactly, consistent index included.
#include <fcntl.h>
#include <rocksdb/iterator.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/coding.h"
#include "common/crc32c.h"
#include "mvcc/store.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSnapshotMagic = "KEELMVC1";

// A RocksDB snapshot released on scope exit.
class SnapshotGuard {
 public:
  explicit SnapshotGuard(rocksdb::DB* db) : db_(db), snap_(db->GetSnapshot()) {}
  ~SnapshotGuard() { db_->ReleaseSnapshot(snap_); }
  const rocksdb::Snapshot* get() const { return snap_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
};

}  // namespace

Status Store::PhysicalCompact(Backend* b, int64_t rev,
                              const std::set<Revision>& keep,
                              size_t batch_rows) {
  const std::string upper = EncodeRevision(Revision{rev + 1, 0});
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(b->db()->NewIterator(ro, b->data()));
  rocksdb::WriteBatch batch;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Revision r;
    if (!DecodeRevision({it->key().data(), it->key().size()}, &r)) {
      return Status::Corruption("bad revision key in " + b->path());
    }
    if (keep.count(r)) continue;
    batch.Delete(b->data(), it->key());
    if (batch.Count() >= batch_rows) {
      KEEL_RETURN_IF_ERROR(b->Write(&batch, false));
      batch.Clear();
    }
  }
  KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  batch.Put(b->meta(), kMetaFinishedCompactRevision, EncodeInt64(rev));
  return b->Write(&batch, false);
}

Result<CompactResponse> Store::Compact(int64_t rev, bool physical,
                                       ConsistentIndex ci) {
  (void)physical;  // always synchronous; see store.h
  std::lock_guard wl(write_mu_);
  std::set<Revision> keep;
  std::shared_ptr<Backend> b;
  CompactResponse resp;
  {
    std::unique_lock l(mu_);
    // The rows to delete, and the meta rows written below, after the
    // deferred writes.
    KEEL_RETURN_IF_ERROR(FlushDeferredLocked());
    State& st = *state_;
    Status err;
    if (rev <= st.compact_rev) {
      err = MvccError(ErrorCode::kCompacted);
    } else if (rev > st.current_rev) {
      err = MvccError(ErrorCode::kFutureRevision);
    }
    if (!err.ok()) {
      PendingWrite w{&st.index, st.current_rev, ci, {}, {}};
      KEEL_RETURN_IF_ERROR(Commit(&w));
      return err;
    }
    if (ci.index != 0) KEEL_CHECK_GE(ci.index, st.ci.index);
    // The compacted revision is raised (durably, with the entry's index)
    // before any row goes, so no reader can ask for a deleted row and a
    // crash mid-way resumes on Open.
    rocksdb::WriteBatch batch;
    batch.Put(backend_->meta(), kMetaCompactRevision, EncodeInt64(rev));
    if (ci.index != 0) {
      batch.Put(backend_->meta(), kMetaConsistentIndex,
                EncodeConsistentIndex(ci));
    }
    KEEL_RETURN_IF_ERROR(backend_->Write(&batch, options_.sync_writes));
    keep = st.index.Compact(rev);
    st.compact_rev = rev;
    if (ci.index != 0) st.ci = ci;
    resp.header.revision = st.current_rev;
    b = backend_;
  }
  // Only the writer deletes rows and it holds write_mu_, so this runs
  // without mu_: readers proceed meanwhile.
  KEEL_RETURN_IF_ERROR(
      PhysicalCompact(b.get(), rev, keep, options_.compaction_batch_rows));
  return resp;
}

Result<HashKVResult> Store::HashKV(int64_t rev) const {
  HashKVResult out;
  std::set<Revision> keep;
  std::shared_ptr<Backend> b;
  std::unique_ptr<SnapshotGuard> snap;
  {
    // write_mu_ too: the deferred rows in RocksDB before the snapshot, and
    // no new ones until it is taken.
    std::lock_guard wl(write_mu_);
    std::unique_lock l(mu_);
    KEEL_RETURN_IF_ERROR(FlushDeferredLocked());
    const State& st = *state_;
    out.revision = st.current_rev;
    out.compact_revision = st.compact_rev;
    if (rev > 0 && rev < st.compact_rev)
      return MvccError(ErrorCode::kCompacted);
    if (rev > st.current_rev) return MvccError(ErrorCode::kFutureRevision);
    if (rev <= 0) rev = st.current_rev;
    keep = st.index.Keep(rev);
    b = backend_;
    snap = std::make_unique<SnapshotGuard>(b->db());
  }
  out.hash_revision = rev;
  const std::string upper = EncodeRevision(Revision{rev + 1, 0});
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap->get();
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(b->db()->NewIterator(ro, b->data()));
  uint32_t crc = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Revision r;
    if (!DecodeRevision({it->key().data(), it->key().size()}, &r)) {
      return Status::Corruption("bad revision key");
    }
    // Rows at or below the compacted revision count only if compaction
    // keeps them, so members agree whether or not they deleted the rest.
    if (r.main <= out.compact_revision && !keep.count(r)) continue;
    crc = crc32c::Extend(crc, it->key().data(), it->key().size());
    crc = crc32c::Extend(crc, it->value().data(), it->value().size());
  }
  KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  out.hash = crc;
  return out;
}

Result<uint32_t> Store::Hash() const {
  std::shared_ptr<Backend> b;
  std::unique_ptr<SnapshotGuard> snap;
  int64_t compact_rev;
  {
    // write_mu_ too: not in the middle of a compaction's deletions, and
    // the deferred rows in RocksDB before the snapshot.
    std::lock_guard wl(write_mu_);
    std::unique_lock l(mu_);
    KEEL_RETURN_IF_ERROR(FlushDeferredLocked());
    b = backend_;
    compact_rev = state_->compact_rev;
    snap = std::make_unique<SnapshotGuard>(b->db());
  }
  rocksdb::ReadOptions ro;
  ro.snapshot = snap->get();
  std::unique_ptr<rocksdb::Iterator> it(b->db()->NewIterator(ro, b->data()));
  const std::string c = EncodeInt64(compact_rev);
  uint32_t crc = crc32c::Value(c);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    crc = crc32c::Extend(crc, it->key().data(), it->key().size());
    crc = crc32c::Extend(crc, it->value().data(), it->value().size());
  }
  KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  return crc;
}

DbStats Store::Stats() const {
  std::shared_lock l(mu_);
  return DbStats{backend_->SizeBytes(), backend_->LiveDataBytes(),
                 state_->index.size()};
}

uint64_t Store::SizeBytes() const {
  std::shared_lock l(mu_);
  return backend_->SizeBytes();
}

Result<SnapshotInfo> Store::ExportSnapshot(const std::string& path) const {
  std::shared_ptr<Backend> b;
  std::unique_ptr<SnapshotGuard> snap;
  {
    // As HashKV: every deferred write in RocksDB before the snapshot.
    std::lock_guard wl(write_mu_);
    std::unique_lock l(mu_);
    KEEL_RETURN_IF_ERROR(FlushDeferredLocked());
    b = backend_;
    snap = std::make_unique<SnapshotGuard>(b->db());
  }
  SnapshotInfo info;
  std::string v;
  if (b->GetMeta(kMetaConsistentIndex, &v, snap->get()).ok()) {
    DecodeConsistentIndex(v, &info.consistent_index);
  }
  info.revision = 1;
  if (b->GetMeta(kMetaRevision, &v, snap->get()).ok()) {
    DecodeInt64(v, &info.revision);
  }
  if (b->GetMeta(kMetaCompactRevision, &v, snap->get()).ok()) {
    DecodeInt64(v, &info.compact_revision);
  }

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::IOError("create " + tmp);
  uint32_t crc = 0;
  uint64_t count = 0;
  bool ok = true;
  auto emit = [&](std::string_view bytes) {
    crc = crc32c::Extend(crc, bytes.data(), bytes.size());
    ok = ok && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    info.size_bytes += bytes.size();
  };
  emit(kSnapshotMagic);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap->get();
  Status s;
  for (auto [tag, cf] :
       {std::pair{'M', b->meta()}, std::pair{'D', b->data()}}) {
    std::unique_ptr<rocksdb::Iterator> it(b->db()->NewIterator(ro, cf));
    for (it->SeekToFirst(); ok && it->Valid(); it->Next()) {
      std::string rec(1, tag);
      PutFixed32(&rec, static_cast<uint32_t>(it->key().size()));
      rec.append(it->key().data(), it->key().size());
      PutFixed32(&rec, static_cast<uint32_t>(it->value().size()));
      rec.append(it->value().data(), it->value().size());
      emit(rec);
      count++;
    }
    if (s.ok()) s = FromRocks(it->status());
  }
  std::string trailer(1, 'E');
  PutFixed64(&trailer, count);
  emit(trailer);
  std::string crc_bytes;
  PutFixed32(&crc_bytes, crc);
  ok = ok && std::fwrite(crc_bytes.data(), 1, 4, f) == 4;
  info.size_bytes += 4;
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (s.ok() && !ok) s = Status::IOError("write " + tmp);
  if (s.ok()) {
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) s = Status::IOError("rename " + tmp + ": " + ec.message());
  }
  if (!s.ok()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return s;
  }
  return info;
}

namespace {

// Loads a snapshot file into an empty database, verifying it whole.
Status ImportSnapshot(const std::string& path, Backend* b) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("open " + path);
  const Status bad = Status::Corruption("snapshot " + path + " is damaged");
  std::error_code ec;
  uint64_t remaining = fs::file_size(path, ec);
  if (ec) return Status::IOError("stat " + path);
  uint32_t crc = 0;
  auto read = [&](size_t n, std::string* out) {
    if (n > remaining) return false;  // a damaged length
    remaining -= n;
    out->resize(n);
    if (n > 0 && !in.read(out->data(), static_cast<std::streamsize>(n))) {
      return false;
    }
    crc = crc32c::Extend(crc, out->data(), n);
    return true;
  };
  std::string buf, key, value;
  if (!read(kSnapshotMagic.size(), &buf) || buf != kSnapshotMagic) return bad;
  rocksdb::WriteBatch batch;
  uint64_t count = 0;
  for (;;) {
    if (!read(1, &buf)) return bad;
    const char tag = buf[0];
    if (tag == 'E') break;
    if (tag != 'D' && tag != 'M') return bad;
    if (!read(4, &buf)) return bad;
    if (!read(DecodeFixed32(buf.data()), &key)) return bad;
    if (!read(4, &buf)) return bad;
    if (!read(DecodeFixed32(buf.data()), &value)) return bad;
    batch.Put(tag == 'D' ? b->data() : b->meta(), key, value);
    count++;
    if (batch.Count() >= 1000) {
      KEEL_RETURN_IF_ERROR(b->Write(&batch, false));
      batch.Clear();
    }
  }
  if (!read(8, &buf) || DecodeFixed64(buf.data()) != count) return bad;
  const uint32_t want = crc;
  if (!read(4, &buf) || DecodeFixed32(buf.data()) != want) return bad;
  if (in.peek() != std::ifstream::traits_type::eof()) return bad;
  return b->Write(&batch, false);
}

}  // namespace

Status Store::RestoreSnapshot(const std::string& path) {
  std::lock_guard wl(write_mu_);
  auto cur = CurrentDbName(dir_);
  if (!cur.ok()) return cur.status();
  const std::string next = NextDbName(*cur);
  const std::string next_path = dir_ + "/" + next;
  std::error_code ec;
  fs::remove_all(next_path, ec);

  std::unique_ptr<Backend> nb;
  std::unique_ptr<State> st;
  Status s;
  {
    auto opened = Backend::OpenPath(next_path);
    s = opened.status();
    if (s.ok()) nb = std::move(*opened);
  }
  if (s.ok()) s = ImportSnapshot(path, nb.get());
  if (s.ok()) s = nb->Flush();
  if (s.ok()) {
    auto loaded = LoadState(nb.get(), options_);
    s = loaded.status();
    if (s.ok()) st = std::move(*loaded);
  }
  // The switch: before it a crash keeps the old store, after it the new.
  if (s.ok()) s = SetCurrentDb(dir_, next);
  if (!s.ok()) {
    nb.reset();
    fs::remove_all(next_path, ec);
    return s;
  }
  std::unique_lock l(mu_);
  backend_->RemoveOnClose();
  backend_ = std::shared_ptr<Backend>(std::move(nb));
  state_ = std::move(st);
  // Writes to the replaced store that had not reached it.
  deferred_ = Deferred{};
  if (observer_ != nullptr) observer_->OnRestore(state_->current_rev);
  return Status::OK();
}

}  // namespace keel::mvcc
