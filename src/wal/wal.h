// Wal: the segmented write-ahead log with group commit.
//
// Records (record.h) are appended to numbered segment files
// "<seq:016x>-<first index:016x>.wal" in one directory. Each segment is
// preallocated to segment_size bytes, so an fdatasync never has to write
// file-size metadata, and starts with a copy of the current metadata, hard
// state and snapshot marker, so any suffix of segments can be replayed on
// its own and old segments can simply be deleted (PurgeUpTo).
//
// Group commit: Submit() frames a batch, assigns its file positions and
// returns a log sequence number (LSN) at once; the records become durable
// together with everything else queued at the time, under one fdatasync.
// WaitDurable(lsn) blocks until then. With background_writer a dedicated
// thread writes and syncs; without it the first waiter does the IO for the
// whole group (deterministic for single-threaded simulations and tests).
//
// Failures are sticky. A failed fdatasync is fatal: the page cache may have
// dropped the data, so the member must stop (never retry). A full disk
// (Status::NoSpace) stops further writes too, but durable records are
// untouched and a restart after freeing space recovers them.
//
// Open() replays every valid record through a visitor, truncates a torn
// tail of the last segment and refuses (Status::Corruption naming file and
// offset) any other damage, rewriting nothing.
//
// Thread safety: all public methods may be called from any thread. Batches
// submitted in order are written in that order.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "raft/types.h"
#include "wal/env.h"
#include "wal/record.h"

namespace keel::wal {

struct WalOptions {
  std::string dir;
  uint64_t segment_size = 64ull << 20;
  bool background_writer = true;
  // Written into a new log; an existing log keeps its own.
  WalMetadata metadata;
};

// Where a record starts.
struct WalPos {
  uint64_t segment = 0;  // sequence number
  uint64_t offset = 0;
};

// Records to append together, in order.
class WalBatch {
 public:
  void AddEntry(const raft::Entry& e);
  void AddHardState(const raft::HardState& hs);
  void AddSnapshotMarker(const SnapshotMarker& m);
  bool empty() const { return recs_.empty(); }
  size_t size() const { return recs_.size(); }

 private:
  friend class Wal;
  struct Rec {
    RecordType type;
    raft::Index entry_index = 0;  // kEntry only
    std::string payload;
    std::string framed;
  };
  void Add(RecordType type, raft::Index index, std::string payload);
  std::vector<Rec> recs_;
};

struct RecoveredRecord {
  RecordType type;
  std::string_view payload;
  const raft::Entry* entry;  // decoded, for kEntry; else nullptr
  WalPos pos;
  const std::string* path;  // the segment file, for error messages
};
using RecoveryVisitor = std::function<Status(const RecoveredRecord&)>;

std::string SegmentFileName(uint64_t seq, raft::Index first_index);
bool ParseSegmentFileName(const std::string& name, uint64_t* seq,
                          raft::Index* first_index);

class Wal {
 public:
  static Result<std::unique_ptr<Wal>> Open(Env* env, const WalOptions& options,
                                           const RecoveryVisitor& visit);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Queues the batch; *positions (if not null) receives where each record
  // goes. Returns the batch's LSN, or the sticky failure.
  Result<uint64_t> Submit(WalBatch batch, std::vector<WalPos>* positions);
  // Blocks until every batch up to lsn is durable, or the WAL failed.
  Status WaitDurable(uint64_t lsn);
  uint64_t durable_lsn() const;
  // The sticky failure, or OK.
  Status health() const;

  // Reads back one record (both checksums verified).
  Status Read(WalPos pos, RecordType* type, std::string* payload) const;

  // Deletes the oldest segments whose entries are all at or below `covered`
  // and that are fully durable; never the segment being written.
  Status PurgeUpTo(raft::Index covered);

  // Writes out everything queued, stops the writer thread, closes files.
  Status Close();

  const WalMetadata& metadata() const { return metadata_; }
  std::vector<std::string> SegmentPaths() const;

 private:
  struct Segment {
    std::string path;
    raft::Index max_index = 0;  // highest entry index written into it
    uint64_t last_lsn = 0;      // last batch with bytes in it
  };
  struct PendingWrite {
    uint64_t seq;
    bool create;  // a new segment: create, preallocate, sync dir first
    std::string path;
    uint64_t offset;
    std::string bytes;
  };
  struct Round {
    std::vector<PendingWrite> writes;
    uint64_t lsn = 0;
  };

  Wal(Env* env, const WalOptions& options);
  Status Recover(const RecoveryVisitor& visit);
  Status PrepareTail(uint64_t seq, const std::string& path, uint64_t valid_end,
                     uint64_t file_size, bool torn, bool header_ok);
  std::string SegmentHeader() const;  // requires mu_ (or recovery)
  void RollOverLocked();              // requires mu_
  void AddPendingLocked(uint64_t offset, std::string_view bytes);
  bool TakeRoundLocked(Round* round);  // requires mu_
  Status DoRound(Round* round);        // requires writing_ by this thread
  void Publish(const Round& round, Status s);
  void WriterLoop();

  Env* const env_;
  const WalOptions options_;
  WalMetadata metadata_;  // constant after Open

  mutable std::mutex mu_;
  std::condition_variable work_cv_;       // pending_ gained work or stop_
  std::condition_variable durable_cv_;    // durable_lsn_, failure_ or writing_
  std::map<uint64_t, Segment> segments_;  // guarded by mu_
  uint64_t cur_seq_ = 0;                  // guarded by mu_
  uint64_t write_offset_ = 0;             // guarded by mu_
  uint64_t cur_header_end_ = 0;           // guarded by mu_
  raft::Index last_entry_index_ = 0;      // guarded by mu_
  std::string hs_payload_;                // guarded by mu_
  std::string marker_payload_;            // guarded by mu_
  std::vector<PendingWrite> pending_;     // guarded by mu_
  uint64_t next_lsn_ = 0;                 // guarded by mu_; last assigned
  uint64_t durable_lsn_ = 0;              // guarded by mu_
  bool writing_ = false;                  // guarded by mu_
  bool stop_ = false;                     // guarded by mu_
  bool closed_ = false;                   // guarded by mu_
  Status failure_;                        // guarded by mu_

  // Owned by whichever thread has set writing_ (or by Open/Close).
  std::unique_ptr<WritableFile> file_;
  std::string file_path_;
  bool file_dirty_ = false;

  mutable std::mutex read_mu_;
  // Open segment readers, by sequence number. guarded by read_mu_
  mutable std::map<uint64_t, std::unique_ptr<RandomAccessFile>> readers_;

  std::thread writer_;
};

}  // namespace keel::wal
