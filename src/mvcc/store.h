// Store: etcd's MVCC key-value store (server/mvcc) on RocksDB.
//
// Every write transaction (a Put, a DeleteRange that deletes something, a
// Txn with at least one write, a lease's key deletion) gets one new main
// revision; its changes get sub revisions 0, 1, 2... An empty store is at
// revision 1. Each data row is stored under its revision; an in-memory
// TreeIndex maps keys to revisions and is rebuilt from RocksDB on Open.
// Responses mirror etcd's (types.h); errors carry etcd's messages
// (errors.h).
//
// Raft integration: every write method takes the ConsistentIndex (index
// and term) of the Raft entry being applied, and stores it in the SAME
// RocksDB write batch as the data it produced — also when the entry
// changed nothing or failed with an etcd error. After a crash, Open gives
// the state as of the last batch and consistent_index() names exactly the
// last entry in it: replay from consistent_index().index + 1. Index 0
// means "not from Raft" and leaves the stored index alone. Writes are not
// fsynced unless Options::sync_writes (the Raft WAL is the durable log);
// call Sync() or ForceCommit() before cutting a Raft snapshot that lets the
// WAL be truncated.
//
// Thread safety:
//  - Write methods (Put, DeleteRange, Txn, Compact, RevokeLease, PutLeases,
//    SetConsistentIndex, RestoreSnapshot) are meant for the one apply
//    thread; they serialize among themselves anyway (write_mu_).
//  - Read methods (const) may run on any number of threads concurrently
//    with each other and with the writer.
//  - A reader never sees part of a write: the writer holds mu_ exclusively
//    from its first index change until its batch is in RocksDB; readers
//    hold mu_ shared for the whole read. The physical phase of Compact
//    (deleting old rows) runs without mu_, so reads are not blocked by it;
//    no reader can ask for those rows (they are below the compacted
//    revision, which is raised first).
//  - Lock order: write_mu_ before mu_. No method is reentrant.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "mvcc/backend.h"
#include "mvcc/errors.h"
#include "mvcc/key_index.h"
#include "mvcc/rw_lock.h"
#include "mvcc/thread_annotations.h"
#include "mvcc/types.h"

namespace rocksdb {
class WriteBatch;
}  // namespace rocksdb

namespace keel::mvcc {

// A lease as the store keeps it (etcd's "lease" bucket): its id, the TTL
// it was granted (after the minimum-TTL rule), and the remaining TTL of
// its last checkpoint (0: none).
struct LeaseRecord {
  int64_t id = 0;
  int64_t ttl = 0;
  int64_t remaining_ttl = 0;
  bool operator==(const LeaseRecord&) const = default;
};

struct StoreOptions {
  // fsync every write batch (RocksDB WAL sync). Off: a process crash loses
  // nothing, a machine crash may lose a suffix of batches (never part of
  // one); the consistent index always matches what survived.
  bool sync_writes = false;
  // Called for a Put with a non-zero lease (at apply, before any write of
  // the txn); false -> kLeaseNotFound. Null: every lease exists.
  std::function<bool(int64_t lease)> lease_exists;
  // Rows deleted per write batch by compaction.
  size_t compaction_batch_rows = 10000;
  // Write methods leave their writes in memory until FlushWal() (the apply
  // loop calls it once per batch of applied entries): the rows, revision
  // and consistent index of Put, DeleteRange, Txn and SetConsistentIndex
  // go to RocksDB in one WriteBatch then (readable meanwhile from memory,
  // see Deferred), and other writes' WAL records are buffered until then.
  // A process crash may then lose the unflushed suffix of writes (never
  // part of one), which Raft replays from its own WAL after
  // consistent_index(), as it does after a machine crash.
  bool defer_wal_writes = false;
};

// Told about every committed write revision (the watch hub).
//
// Called by the store's writer with the store's write lock held, so calls
// come in revision order and no read of the store can run meanwhile: an
// implementation must be quick and must not call back into the store.
class StoreObserver {
 public:
  virtual ~StoreObserver() = default;
  // The changes of revision `rev`, in the order the write made them.
  virtual void OnCommit(int64_t rev, std::vector<Event> events) = 0;
  // Whether OnCommit's events should carry prev_kv.
  virtual bool WantsPrevKv() const = 0;
  // The store's content was replaced (snapshot restore); it is now at
  // `rev`. Revisions not seen by OnCommit must be read from the history.
  virtual void OnRestore(int64_t rev) = 0;
};

// A run of whole revisions read from the store's history.
struct History {
  std::vector<Event> events;  // revision order, then change order
  int64_t last_rev = 0;       // events cover [from, last_rev] (none if below)
  int64_t current_rev = 0;    // the store's revision at the read
  int64_t compact_rev = -1;   // the store's compacted revision at the read
};

class Store {
 public:
  // Opens (creating if needed) the store in directory `dir`; finishes a
  // compaction a crash interrupted.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir,
                                             StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- Reads: any thread ----

  Result<RangeResponse> Range(const RangeRequest& r) const;
  // A Txn whose ops only read (IsTxnReadOnly); InvalidArgument otherwise.
  Result<TxnResponse> ReadTxn(const TxnRequest& r) const;

  int64_t CurrentRevision() const;
  // -1 until the first compaction (as etcd).
  int64_t CompactRevision() const;
  ConsistentIndex consistent_index() const;

  // CRC32C over the rows up to `rev` (0 = current) that a compaction at
  // the compacted revision keeps, as etcd's HashKV: members with the same
  // history agree whatever their physical compaction progress.
  Result<HashKVResult> HashKV(int64_t rev) const;
  // CRC32C over every data row and the compacted revision (Maintenance.Hash).
  Result<uint32_t> Hash() const;
  DbStats Stats() const;
  // Stats().size_bytes alone (no live-data estimate, no index walk).
  uint64_t SizeBytes() const;

  // Live keys attached to a lease, in key order.
  std::vector<std::string> LeaseKeys(int64_t lease) const;

  // Every lease record, by id (store_lease.cc).
  Result<std::vector<LeaseRecord>> Leases() const;

  // Writes a consistent snapshot of the whole store (data and meta,
  // consistent index included) to one file; see docs/mvcc.md.
  Result<SnapshotInfo> ExportSnapshot(const std::string& path) const;

  // The events of revisions from max(from_rev, compacted revision) on,
  // whole revisions only, stopping after the first revision that reaches
  // `max_revs` revisions or `max_bytes` of keys and values. With prev_kv,
  // each event carries the key as of the revision before it (if that is
  // not compacted), as etcd's watch does.
  Result<History> ReadHistory(int64_t from_rev, int64_t max_revs,
                              size_t max_bytes, bool prev_kv) const;

  // ---- Writes: the apply thread ----

  // Attaches the observer told of every commit (null: none); returns the
  // revision after which it will be told. It must stay valid until
  // detached.
  int64_t SetObserver(StoreObserver* o);

  Result<PutResponse> Put(const PutRequest& r, ConsistentIndex ci = {});
  Result<DeleteRangeResponse> DeleteRange(const DeleteRangeRequest& r,
                                          ConsistentIndex ci = {});
  Result<TxnResponse> Txn(const TxnRequest& r, ConsistentIndex ci = {});
  // Compacts at `rev`: reads below it fail with kCompacted. The old rows
  // are gone when this returns (physical or not: the store always does it
  // synchronously, without blocking reads).
  Result<CompactResponse> Compact(int64_t rev, bool physical,
                                  ConsistentIndex ci = {});
  // Stores (creates or replaces) lease records: a grant, or checkpoints.
  Status PutLeases(const std::vector<LeaseRecord>& leases,
                   ConsistentIndex ci = {});
  // Deletes every key attached to `lease` and its record, in one revision
  // and one batch (lease revoke and expiry).
  Result<DeleteRangeResponse> RevokeLease(int64_t lease,
                                          ConsistentIndex ci = {});
  // Records an applied entry that did not touch the store.
  Status SetConsistentIndex(ConsistentIndex ci);
  // Server state kept beside the key space (auth's users and roles): a
  // named blob in the meta column family, written in the same batch as ci
  // (so it is exactly as of the applied index after a crash) and carried by
  // ExportSnapshot/RestoreSnapshot. GetAux: NotFound when never written
  // (store_aux.cc).
  Status PutAux(std::string_view name, std::string_view value,
                ConsistentIndex ci);
  Result<std::string> GetAux(std::string_view name) const;
  // Writes what defer_wal_writes kept in memory to RocksDB and its WAL
  // file (not fsynced).
  Status FlushWal();
  // Makes every applied batch durable (WAL fsync).
  Status Sync();
  // Sync() plus a flush of memtables to SST files.
  Status ForceCommit();
  // Rewrites the database files without deleted rows (after a compaction),
  // returning the space to the file system (Maintenance.Defragment). Local
  // to this member; reads continue meanwhile.
  Status Defragment();
  // Replaces the whole store with a file written by ExportSnapshot (a
  // follower's InstallSnapshot). Atomic across crashes.
  Status RestoreSnapshot(const std::string& path);

 private:
  struct State;
  struct PendingWrite;
  struct View;

  Store(std::string dir, StoreOptions options);

  static Result<std::unique_ptr<State>> LoadState(Backend* b,
                                                  const StoreOptions& opts);
  static Status PhysicalCompact(Backend* b, int64_t rev,
                                const std::set<Revision>& keep,
                                size_t batch_rows);

  // Reading (mu_ held, shared or exclusive).
  Result<RangeResponse> RangeIn(const RangeRequest& r, const View& v) const;
  Status ReadRow(Revision rev, const View& v, KeyValue* kv) const;
  bool ApplyCompares(const std::vector<Compare>& cmps, const View& v) const;
  void CompareToPath(const TxnRequest& r, const View& v,
                     std::vector<bool>* path) const;
  Status CheckOps(const TxnRequest& r, const View& v,
                  const std::vector<bool>& path, size_t* pos) const;
  Status CheckPut(const PutRequest& p, const View& v) const;
  // Runs the chosen branch; `w` null for a read-only txn.
  Status ApplyTxnOps(const TxnRequest& r, const std::vector<bool>& path,
                     size_t* pos, PendingWrite* w, int64_t read_rev,
                     TxnResponse* out) const;

  // The deferred row at `rev`, or null (mu_ held).
  const std::string* DeferredRow(Revision rev) const;
  // Writes the deferred writes to RocksDB in one batch; FlushDeferredLocked
  // with write_mu_ and mu_ (exclusive) held, FlushDeferred takes them (for
  // the readers that read RocksDB whole: hashes, export).
  Status FlushDeferredLocked() const;
  // The store's revision and applied index rows, each when set (non-zero),
  // into `batch` (mu_ held).
  void PutRevisionAndIndex(rocksdb::WriteBatch* batch, int64_t rev,
                           const ConsistentIndex& ci) const;
  Status FlushDeferred() const;

  // Writing (write_mu_ and mu_ exclusive held).
  Result<PutResponse> PutIn(const PutRequest& r, PendingWrite* w) const;
  Result<DeleteRangeResponse> DeleteIn(const DeleteRangeRequest& r,
                                       PendingWrite* w) const;
  Status Commit(PendingWrite* w);
  // Tells the observer of a committed write (both locks held).
  void Notify(const PendingWrite& w) const;
  // The live value of `key` at `rev`, if any (mu_ held).
  std::optional<KeyValue> ValueAt(const std::string& key, int64_t rev) const;

  const std::string dir_;
  const StoreOptions options_;

  mutable std::mutex write_mu_ ACQUIRED_BEFORE(mu_);
  // Writer-preferring, so reads cannot starve the apply thread.
  mutable RwLock mu_;
  // Shared so a long export keeps a replaced database open until done.
  std::shared_ptr<Backend> backend_ GUARDED_BY(mu_);
  std::unique_ptr<State> state_ GUARDED_BY(mu_);
  // defer_wal_writes: the writes committed in memory (index, revision,
  // consistent index) whose rows are not yet in RocksDB. One WriteBatch
  // per apply round instead of one per entry: each RocksDB write's fixed
  // cost (write group, WAL record, the meta rows rewritten per entry) was
  // a third of a loaded follower's CPU. The index names these rows, so
  // every read of a row looks here first (ReadRow, ReadHistory); readers
  // that read RocksDB whole (Hash, HashKV, ExportSnapshot) and every other
  // writer write them out first. Mutable: those readers are const.
  struct Deferred {
    // Revision order; every revision's rows are all here or all in RocksDB.
    std::vector<std::pair<Revision, std::string>> rows;
    int64_t rev = 0;     // the newest revision written (0: none)
    ConsistentIndex ci;  // the newest index recorded (0: none)
    bool empty() const { return rows.empty() && rev == 0 && ci.index == 0; }
  };
  mutable Deferred deferred_ GUARDED_BY(mu_);
  StoreObserver* observer_ GUARDED_BY(mu_) = nullptr;
};

}  // namespace keel::mvcc
