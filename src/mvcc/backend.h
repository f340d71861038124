// Backend: the RocksDB database under an MVCC store directory.
//
// Layout of the store directory:
//   CURRENT      one line: the name of the live database subdirectory
//   db-NNNNNN/   a RocksDB database with two column families:
//                "default" data rows (key = EncodeRevision, see kv_codec.h)
//                "meta"    consistent index, revisions, compaction marks
// Replacing the contents (snapshot restore) builds db-(N+1) beside the
// live one and switches CURRENT with an atomic rename, so a crash leaves
// either the old or the new database, never a mix. Open() removes any
// other db-* directory (a restore that did not finish, or the old one).
//
// Writes across both column families in one WriteBatch are atomic (RocksDB
// WAL), and recovery is point-in-time: a crash loses at most a suffix of
// batches, never part of one.
//
// Thread safety: RocksDB's (concurrent reads and writes are safe). The
// Store decides who may write.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace keel::mvcc {

class Backend {
 public:
  // Opens the live database of store directory `dir`, creating both if
  // missing.
  static Result<std::unique_ptr<Backend>> Open(const std::string& dir);
  // Opens (creating) the database in `db_path` itself, for building a
  // replacement before it is made live.
  static Result<std::unique_ptr<Backend>> OpenPath(const std::string& db_path);

  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // `defer_wal`: leave the batch's WAL record in RocksDB's buffer (the
  // database is opened with manual_wal_flush) until FlushWal, so that the
  // many small batches of one apply round cost one write(2), not one each.
  // Otherwise the record is written to the file (page cache) at once.
  Status Write(rocksdb::WriteBatch* batch, bool sync, bool defer_wal = false);
  // Writes the buffered WAL records to the file (not fsynced).
  Status FlushWal();
  // NotFound when absent.
  Status GetData(std::string_view key, std::string* value) const;
  Status GetMeta(std::string_view key, std::string* value,
                 const rocksdb::Snapshot* snap = nullptr) const;
  Status SyncWal();
  // Flushes memtables to SST files and syncs the WAL.
  Status Flush();
  uint64_t SizeBytes() const;
  uint64_t LiveDataBytes() const;

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* data() const { return data_; }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_; }
  const std::string& path() const { return path_; }

  // Removes the database directory when this Backend is destroyed (used on
  // the database a restore replaced, once its last reader is done).
  void RemoveOnClose() { remove_on_close_ = true; }

 private:
  Backend() = default;

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* data_ = nullptr;  // owned by db_
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  bool remove_on_close_ = false;
};

Status FromRocks(const rocksdb::Status& s);

// Names of the live database in `dir` and of the next one.
Result<std::string> CurrentDbName(const std::string& dir);
std::string NextDbName(const std::string& current);
// Points CURRENT at `name` durably (write temp, fsync, rename, fsync dir).
Status SetCurrentDb(const std::string& dir, const std::string& name);

}  // namespace keel::mvcc
