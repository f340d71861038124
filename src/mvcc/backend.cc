#include "mvcc/backend.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/check.h"
#include "metrics/metrics.h"

namespace keel::mvcc {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetaCf = "meta";
constexpr const char* kFirstDb = "db-000001";

Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return Status::IOError("open " + path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync " + path);
  return Status::OK();
}

// RocksDB's own log goes to keel's log, warnings and worse only, not to a
// LOG file in the data directory: RocksDB writes that file through the
// same checked writer as its data, so on a full disk a failed log line
// made the next one abort inside RocksDB (an assertion in Debian's build)
// before the real error was reported.
class RocksLogToSpdlog : public rocksdb::Logger {
 public:
  RocksLogToSpdlog() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}

  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }

  void Logv(const rocksdb::InfoLogLevel level, const char* format,
            va_list ap) override {
    if (level < GetInfoLogLevel() ||
        level == rocksdb::InfoLogLevel::HEADER_LEVEL) {
      return;
    }
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, ap);
    switch (level) {
      case rocksdb::InfoLogLevel::DEBUG_LEVEL:
        spdlog::debug("rocksdb: {}", line);
        break;
      case rocksdb::InfoLogLevel::INFO_LEVEL:
        spdlog::info("rocksdb: {}", line);
        break;
      case rocksdb::InfoLogLevel::WARN_LEVEL:
        spdlog::warn("rocksdb: {}", line);
        break;
      default:
        spdlog::error("rocksdb: {}", line);
        break;
    }
  }
};

// RocksDB turns read-only after a background error (a failed WAL, SST or
// MANIFEST write: a full disk, say), and in builds with assertions, such
// as Debian's, the next call that reaches the failed file aborts inside
// RocksDB (`sync_without_flush_called_`) without saying why. Stop the
// member at the first error instead, naming it: like a failed Raft WAL
// write, the store's state on disk is then unknown, and the restart
// replays the entries from the Raft log.
class StopOnBackgroundError : public rocksdb::EventListener {
 public:
  explicit StopOnBackgroundError(std::string path) : path_(std::move(path)) {}

  void OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                         rocksdb::Status* error) override {
    if (error == nullptr) return;
    KEEL_CHECK(error->ok())
        << "the key-value store in " << path_ << " failed to write ("
        << ReasonName(reason) << "): " << error->ToString();
  }

 private:
  static const char* ReasonName(rocksdb::BackgroundErrorReason r) {
    using R = rocksdb::BackgroundErrorReason;
    switch (r) {
      case R::kFlush:
        return "memtable flush";
      case R::kCompaction:
        return "compaction";
      case R::kWriteCallback:
        return "write";
      case R::kMemTable:
        return "memtable switch";
      case R::kManifestWrite:
        return "MANIFEST write";
      case R::kFlushNoWAL:
        return "memtable flush";
      case R::kManifestWriteNoWAL:
        return "MANIFEST write";
    }
    return "background work";
  }

  std::string path_;
};

}  // namespace

Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound(s.ToString());
  if (s.IsCorruption()) return Status::Corruption(s.ToString());
  if (s.IsNoSpace()) return Status::NoSpace(s.ToString());
  return Status::IOError(s.ToString());
}

Result<std::string> CurrentDbName(const std::string& dir) {
  std::ifstream in(dir + "/CURRENT");
  if (!in) return Status::NotFound(dir + "/CURRENT");
  std::string name;
  std::getline(in, name);
  if (name.rfind("db-", 0) != 0) {
    return Status::Corruption(dir + "/CURRENT: bad contents");
  }
  return name;
}

std::string NextDbName(const std::string& current) {
  const uint64_t n = std::stoull(current.substr(3)) + 1;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "db-%06llu",
                static_cast<unsigned long long>(n));
  return buf;
}

Status SetCurrentDb(const std::string& dir, const std::string& name) {
  const std::string tmp = dir + "/CURRENT.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << name << "\n";
    out.flush();
    if (!out) return Status::IOError("write " + tmp);
  }
  KEEL_RETURN_IF_ERROR(SyncPath(tmp, false));
  std::error_code ec;
  fs::rename(tmp, dir + "/CURRENT", ec);
  if (ec) return Status::IOError("rename " + tmp + ": " + ec.message());
  return SyncPath(dir, true);
}

Result<std::unique_ptr<Backend>> Backend::Open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("mkdir " + dir + ": " + ec.message());
  auto current = CurrentDbName(dir);
  std::string name;
  if (current.ok()) {
    name = *current;
  } else if (current.status().IsNotFound()) {
    name = kFirstDb;
    KEEL_RETURN_IF_ERROR(SetCurrentDb(dir, name));
  } else {
    return current.status();
  }
  // Leftovers of an interrupted or finished restore.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("db-", 0) == 0 && f != name) fs::remove_all(e.path(), ec);
  }
  return OpenPath(dir + "/" + name);
}

Result<std::unique_ptr<Backend>> Backend::OpenPath(const std::string& path) {
  rocksdb::DBOptions opts;
  opts.create_if_missing = true;
  opts.create_missing_column_families = true;
  // A crash loses a suffix of write batches, never part of one.
  opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  opts.max_background_jobs = 2;
  // Memory: RocksDB's defaults (a 64 MiB memtable per column family, and
  // a block cache per family) made much of a member's peak RSS under
  // etcd's benchmark. Raft's WAL, not RocksDB's memtable, is what makes a
  // write durable, and the MVCC index says where every row is, so small
  // memtables and one small shared cache cost little (bench/README.md).
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(8 << 20);
  std::shared_ptr<rocksdb::TableFactory> tables(
      rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::ColumnFamilyOptions data_cf;
  data_cf.write_buffer_size = 8 << 20;
  data_cf.table_factory = tables;
  // The meta family holds a handful of small keys rewritten per batch.
  rocksdb::ColumnFamilyOptions meta_cf;
  meta_cf.write_buffer_size = 1 << 20;
  meta_cf.table_factory = tables;
  // WAL records wait in memory until FlushWal (or a write not deferred,
  // or SyncWal, or close): see Write.
  opts.manual_wal_flush = true;
  opts.info_log = std::make_shared<RocksLogToSpdlog>();
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  opts.listeners.push_back(std::make_shared<StopOnBackgroundError>(path));
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, data_cf},
      {kMetaCf, meta_cf},
  };
  // RocksDB logs a missing directory as an error before creating it.
  std::error_code mkdir_error;
  fs::create_directories(path, mkdir_error);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, path, cfs, &handles, &raw);
  if (!s.ok()) return FromRocks(s);
  std::unique_ptr<Backend> b(new Backend());
  b->path_ = path;
  b->db_.reset(raw);
  b->data_ = handles[0];
  b->meta_ = handles[1];
  return b;
}

Backend::~Backend() {
  if (db_) {
    db_->FlushWAL(false).PermitUncheckedError();
    if (data_) db_->DestroyColumnFamilyHandle(data_);
    if (meta_) db_->DestroyColumnFamilyHandle(meta_);
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  if (remove_on_close_) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

Status Backend::Write(rocksdb::WriteBatch* batch, bool sync, bool defer_wal) {
  // etcd times each bbolt commit; the RocksDB batch write is ours.
  static metrics::Histogram& commit_seconds =
      metrics::Registry::Default().AddHistogram(
          "etcd_disk_backend_commit_duration_seconds",
          "The latency distributions of commit called by backend.",
          metrics::ExponentialBuckets(0.001, 2, 14));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  auto start = std::chrono::steady_clock::now();
  Status s = FromRocks(db_->Write(wo, batch));
  if (s.ok() && !sync && !defer_wal) s = FlushWal();
  commit_seconds.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count());
  return s;
}

Status Backend::GetData(std::string_view key, std::string* value) const {
  return FromRocks(db_->Get(rocksdb::ReadOptions(), data_,
                            rocksdb::Slice(key.data(), key.size()), value));
}

Status Backend::GetMeta(std::string_view key, std::string* value,
                        const rocksdb::Snapshot* snap) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  return FromRocks(
      db_->Get(ro, meta_, rocksdb::Slice(key.data(), key.size()), value));
}

Status Backend::FlushWal() { return FromRocks(db_->FlushWAL(false)); }

Status Backend::SyncWal() { return FromRocks(db_->FlushWAL(/*sync=*/true)); }

Status Backend::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  KEEL_RETURN_IF_ERROR(FromRocks(db_->Flush(fo, {data_, meta_})));
  return SyncWal();
}

uint64_t Backend::SizeBytes() const {
  uint64_t total = 0;
  for (auto* cf : {data_, meta_}) {
    uint64_t v = 0;
    if (db_->GetIntProperty(cf, "rocksdb.total-sst-files-size", &v)) total += v;
    if (db_->GetIntProperty(cf, "rocksdb.cur-size-all-mem-tables", &v)) {
      total += v;
    }
  }
  return total;
}

uint64_t Backend::LiveDataBytes() const {
  uint64_t total = 0;
  for (auto* cf : {data_, meta_}) {
    uint64_t v = 0;
    if (db_->GetIntProperty(cf, "rocksdb.estimate-live-data-size", &v)) {
      total += v;
    }
    if (db_->GetIntProperty(cf, "rocksdb.cur-size-all-mem-tables", &v)) {
      total += v;
    }
  }
  return total;
}

}  // namespace keel::mvcc
