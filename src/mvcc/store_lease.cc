// Store: lease records, kept in the meta column family beside the consistent
// index so that a grant, a checkpoint or a revoke lands atomically with the
// applied index (and travels in snapshots with everything else).
#include <rocksdb/iterator.h>

#include "mvcc/store.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {

namespace {

std::string EncodeLease(const LeaseRecord& l) {
  return EncodeInt64(l.ttl) + EncodeInt64(l.remaining_ttl);
}

bool DecodeLease(std::string_view key, std::string_view value, LeaseRecord* l) {
  if (key.size() != kMetaLeasePrefix.size() + 8 || value.size() != 16) {
    return false;
  }
  uint64_t id = 0;
  for (unsigned char c : key.substr(kMetaLeasePrefix.size())) id = id << 8 | c;
  l->id = static_cast<int64_t>(id);
  return DecodeInt64(value.substr(0, 8), &l->ttl) &&
         DecodeInt64(value.substr(8), &l->remaining_ttl);
}

}  // namespace

Result<std::vector<LeaseRecord>> Store::Leases() const {
  std::shared_lock l(mu_);
  std::vector<LeaseRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(
      backend_->db()->NewIterator(rocksdb::ReadOptions(), backend_->meta()));
  const rocksdb::Slice prefix(kMetaLeasePrefix.data(), kMetaLeasePrefix.size());
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    LeaseRecord rec;
    if (!DecodeLease({it->key().data(), it->key().size()},
                     {it->value().data(), it->value().size()}, &rec)) {
      return Status::Corruption("bad lease record in " + backend_->path());
    }
    out.push_back(rec);
  }
  KEEL_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

Status Store::PutLeases(const std::vector<LeaseRecord>& leases,
                        ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  for (const LeaseRecord& rec : leases) {
    w.meta_writes.emplace_back(LeaseMetaKey(rec.id), EncodeLease(rec));
  }
  return Commit(&w);
}

}  // namespace keel::mvcc
