#include "wal/wal.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/coding.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "raft/codec.h"

namespace keel::wal {
namespace {

// etcd warns about an fdatasync of the WAL slower than this
// (wal.warnSyncDuration).
constexpr std::chrono::seconds kWarnSyncDuration{1};

// fdatasync of the log, timed into etcd's histogram (and warned about when
// slow, with the facts etcd logs).
Status TimedSync(WritableFile* f) {
  static metrics::Histogram& fsync_seconds =
      metrics::Registry::Default().AddHistogram(
          "etcd_disk_wal_fsync_duration_seconds",
          "The latency distributions of fsync called by WAL.",
          metrics::ExponentialBuckets(0.001, 2, 14));
  auto start = std::chrono::steady_clock::now();
  Status s = f->Sync();
  auto took = std::chrono::steady_clock::now() - start;
  fsync_seconds.Observe(std::chrono::duration<double>(took).count());
  if (took > kWarnSyncDuration) {
    KEEL_LOG_WARN("slow fdatasync", log::F("took", took),
                  log::F("expected-duration", kWarnSyncDuration));
  }
  return s;
}

void CountWritten(size_t bytes) {
  // A gauge in etcd, despite the name.
  static metrics::Gauge& written = metrics::Registry::Default().AddGauge(
      "etcd_disk_wal_write_bytes_total",
      "Total number of bytes written in WAL.");
  written.Inc(static_cast<double>(bytes));
}

std::string Where(const std::string& path, uint64_t offset) {
  return " in " + path + " at offset " + std::to_string(offset);
}

// The wording tells the caller what to do; see the file comment in wal.h.
Status SyncFailed(const Status& s) {
  return Status::IOError(
      "wal: fatal: " + s.message() +
      " (fdatasync failed; the page cache may have dropped the data, so the "
      "member must stop and recover from disk; never retry)");
}

Status WriteFailed(const Status& s) {
  if (s.code() == Status::Code::kNoSpace) {
    return Status::NoSpace("wal: disk full: " + s.message() +
                           " (durable records are intact; the log accepts no "
                           "more writes: free space and restart the member)");
  }
  return Status::IOError("wal: write failed: " + s.message() +
                         " (the log accepts no more writes; restart the "
                         "member to recover)");
}

std::string EncodedEmptyHardState() {
  std::string s;
  raft::EncodeHardState(raft::HardState{}, &s);
  return s;
}

std::string EncodedMarker(SnapshotMarker m) {
  std::string s;
  EncodeSnapshotMarker(m, &s);
  return s;
}

}  // namespace

void WalBatch::Add(RecordType type, raft::Index index, std::string payload) {
  Rec r{type, index, std::move(payload), {}};
  AppendRecord(type, r.payload, &r.framed);
  recs_.push_back(std::move(r));
}

void WalBatch::AddEntry(const raft::Entry& e) {
  std::string p;
  raft::EncodeEntry(e, &p);
  Add(RecordType::kEntry, e.index, std::move(p));
}

void WalBatch::AddHardState(const raft::HardState& hs) {
  std::string p;
  raft::EncodeHardState(hs, &p);
  Add(RecordType::kHardState, 0, std::move(p));
}

void WalBatch::AddSnapshotMarker(const SnapshotMarker& m) {
  Add(RecordType::kSnapshot, 0, EncodedMarker(m));
}

std::string SegmentFileName(uint64_t seq, raft::Index first_index) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64 "-%016" PRIx64 ".wal", seq,
                first_index);
  return buf;
}

bool ParseSegmentFileName(const std::string& name, uint64_t* seq,
                          raft::Index* first_index) {
  if (name.size() != 37 || name.substr(33) != ".wal" || name[16] != '-') {
    return false;
  }
  auto hex = [](std::string_view s, uint64_t* v) {
    *v = 0;
    for (char c : s) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return false;
      }
      *v = *v << 4 | static_cast<uint64_t>(d);
    }
    return true;
  };
  return hex(std::string_view(name).substr(0, 16), seq) &&
         hex(std::string_view(name).substr(17, 16), first_index);
}

Wal::Wal(Env* env, const WalOptions& options)
    : env_(env),
      options_(options),
      metadata_(options.metadata),
      hs_payload_(EncodedEmptyHardState()),
      marker_payload_(EncodedMarker({})) {}

Wal::~Wal() { (void)Close(); }

Result<std::unique_ptr<Wal>> Wal::Open(Env* env, const WalOptions& options,
                                       const RecoveryVisitor& visit) {
  std::unique_ptr<Wal> wal(new Wal(env, options));
  KEEL_RETURN_IF_ERROR(wal->Recover(visit));
  if (options.background_writer) {
    wal->writer_ = std::thread(&Wal::WriterLoop, wal.get());
  }
  return wal;
}

std::string Wal::SegmentHeader() const {
  std::string out, meta;
  EncodeMetadata(metadata_, &meta);
  AppendRecord(RecordType::kMetadata, meta, &out);
  AppendRecord(RecordType::kHardState, hs_payload_, &out);
  AppendRecord(RecordType::kSnapshot, marker_payload_, &out);
  return out;
}

Status Wal::Recover(const RecoveryVisitor& visit) {
  const std::string& dir = options_.dir;
  KEEL_RETURN_IF_ERROR(env_->CreateDir(dir));
  auto names = env_->ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<std::pair<uint64_t, std::string>> segs;
  for (const std::string& name : *names) {
    uint64_t seq;
    raft::Index first;
    if (ParseSegmentFileName(name, &seq, &first)) segs.emplace_back(seq, name);
  }
  std::sort(segs.begin(), segs.end());
  if (segs.empty()) {
    // A new log: its first segment must be durable, name included, before
    // anything is reported written.
    std::string name = SegmentFileName(0, 1);
    std::string path = JoinPath(dir, name);
    auto f = env_->OpenWritable(path, /*truncate=*/true);
    if (!f.ok()) return f.status();
    KEEL_RETURN_IF_ERROR((*f)->Allocate(options_.segment_size));
    KEEL_RETURN_IF_ERROR((*f)->Write(0, SegmentHeader()));
    KEEL_RETURN_IF_ERROR((*f)->Sync());
    KEEL_RETURN_IF_ERROR((*f)->Close());
    KEEL_RETURN_IF_ERROR(env_->SyncDir(dir));
    segs.emplace_back(0, name);
  }
  for (size_t i = 1; i < segs.size(); i++) {
    if (segs[i].first != segs[i - 1].first + 1) {
      return Status::Corruption("wal: segment missing between " +
                                JoinPath(dir, segs[i - 1].second) + " and " +
                                JoinPath(dir, segs[i].second));
    }
  }

  for (size_t i = 0; i < segs.size(); i++) {
    const uint64_t seq = segs[i].first;
    const std::string path = JoinPath(dir, segs[i].second);
    const bool last = i + 1 == segs.size();
    auto contents = env_->ReadWholeFile(path);
    if (!contents.ok()) return contents.status();
    FileContents& file = **contents;
    const std::string_view data = file.data();
    Segment seg{path, 0, 0};
    int count = 0;
    bool header_ok = false;
    uint64_t header_end = 0;
    static constexpr RecordType kHeaderTypes[3] = {
        RecordType::kMetadata, RecordType::kHardState, RecordType::kSnapshot};
    auto on_record = [&](RecordType type, std::string_view payload,
                         uint64_t off) -> Status {
      if (count < 3) {
        if (type != kHeaderTypes[count]) {
          return Status::Corruption(
              "wal: segment does not start with metadata, hard state and "
              "snapshot records" +
              Where(path, off));
        }
        if (count == 2) {
          header_ok = true;
          header_end = off + kRecordHeaderSize + payload.size();
        }
      }
      count++;
      raft::Entry entry;
      bool decoded = true;
      switch (type) {
        case RecordType::kEntry:
          decoded = raft::DecodeEntry(payload, &entry);
          if (decoded) {
            seg.max_index = std::max(seg.max_index, entry.index);
            last_entry_index_ = entry.index;
          }
          break;
        case RecordType::kHardState: {
          raft::HardState hs;
          decoded = raft::DecodeHardState(payload, &hs);
          hs_payload_.assign(payload);
          break;
        }
        case RecordType::kSnapshot: {
          SnapshotMarker m;
          decoded = DecodeSnapshotMarker(payload, &m);
          m.discard_log = false;  // headers repeat it as a plain marker
          marker_payload_ = EncodedMarker(m);
          break;
        }
        case RecordType::kMetadata:
          decoded = DecodeMetadata(payload, &metadata_);
          break;
      }
      if (!decoded) {
        return Status::Corruption(std::string("wal: undecodable ") +
                                  RecordTypeName(type) + " record" +
                                  Where(path, off));
      }
      return visit({type, payload,
                    type == RecordType::kEntry ? &entry : nullptr,
                    WalPos{seq, off}, &path});
    };
    Status visit_status;
    SegmentScan scan =
        ScanSegment(data, last, on_record, &visit_status,
                    [&file](uint64_t off) { file.Release(off); });
    KEEL_RETURN_IF_ERROR(visit_status);
    if (scan.end == ScanEnd::kCorrupt) {
      return Status::Corruption("wal: " + scan.problem +
                                Where(path, scan.problem_offset));
    }
    if (!last && !header_ok) {
      return Status::Corruption("wal: segment has no header records" +
                                Where(path, 0));
    }
    segments_[seq] = seg;
    if (last) {
      cur_seq_ = seq;
      KEEL_RETURN_IF_ERROR(PrepareTail(seq, path, scan.valid_end, data.size(),
                                       scan.end == ScanEnd::kTorn, header_ok));
      if (header_ok) cur_header_end_ = header_end;
    }
  }
  return Status::OK();
}

Status Wal::PrepareTail(uint64_t seq, const std::string& path,
                        uint64_t valid_end, uint64_t file_size, bool torn,
                        bool header_ok) {
  auto f = env_->OpenWritable(path, /*truncate=*/false);
  if (!f.ok()) return f.status();
  file_ = std::move(f).value();
  file_path_ = path;
  bool changed = false;
  if (!header_ok) {
    // Only a torn write can leave a segment without its header (the header
    // is synced before any other record goes in), so nothing durable is in
    // it: write the header again from the state replayed so far.
    std::string header = SegmentHeader();
    KEEL_RETURN_IF_ERROR(file_->Truncate(0));
    KEEL_RETURN_IF_ERROR(file_->Allocate(options_.segment_size));
    KEEL_RETURN_IF_ERROR(file_->Write(0, header));
    write_offset_ = cur_header_end_ = header.size();
    changed = true;
  } else {
    if (torn) {
      // Cut the torn record and zero the rest, so the next writes land on
      // zeros again and a later tear is recognised the same way.
      KEEL_RETURN_IF_ERROR(file_->Truncate(valid_end));
      changed = true;
    }
    if (torn || file_size < options_.segment_size) {
      KEEL_RETURN_IF_ERROR(file_->Allocate(options_.segment_size));
      changed = true;
    }
    write_offset_ = valid_end;
  }
  if (changed) {
    Status s = file_->Sync();
    if (!s.ok()) return SyncFailed(s);
  }
  return Status::OK();
}

void Wal::RollOverLocked() {
  uint64_t seq = cur_seq_ + 1;
  std::string path =
      JoinPath(options_.dir, SegmentFileName(seq, last_entry_index_ + 1));
  std::string header = SegmentHeader();
  write_offset_ = cur_header_end_ = header.size();
  pending_.push_back({seq, true, path, 0, std::move(header)});
  segments_[seq] = Segment{path, 0, 0};
  cur_seq_ = seq;
}

void Wal::AddPendingLocked(uint64_t offset, std::string_view bytes) {
  if (!pending_.empty()) {
    PendingWrite& back = pending_.back();
    if (back.seq == cur_seq_ && back.offset + back.bytes.size() == offset) {
      back.bytes.append(bytes);
      return;
    }
  }
  pending_.push_back(
      {cur_seq_, false, segments_[cur_seq_].path, offset, std::string(bytes)});
}

Result<uint64_t> Wal::Submit(WalBatch batch, std::vector<WalPos>* positions) {
  std::lock_guard lock(mu_);
  if (!failure_.ok()) return failure_;
  if (closed_) return Status::FailedPrecondition("wal: closed");
  if (batch.empty()) return next_lsn_;
  const uint64_t lsn = next_lsn_ + 1;
  for (WalBatch::Rec& rec : batch.recs_) {
    if (write_offset_ > cur_header_end_ &&
        write_offset_ + rec.framed.size() > options_.segment_size) {
      RollOverLocked();
    }
    if (positions != nullptr) positions->push_back({cur_seq_, write_offset_});
    AddPendingLocked(write_offset_, rec.framed);
    write_offset_ += rec.framed.size();
    Segment& seg = segments_[cur_seq_];
    seg.last_lsn = lsn;
    switch (rec.type) {
      case RecordType::kEntry:
        seg.max_index = std::max(seg.max_index, rec.entry_index);
        last_entry_index_ = rec.entry_index;
        break;
      case RecordType::kHardState:
        hs_payload_ = rec.payload;
        break;
      case RecordType::kSnapshot: {
        SnapshotMarker m;
        KEEL_CHECK(DecodeSnapshotMarker(rec.payload, &m)) << "encoded above";
        m.discard_log = false;
        marker_payload_ = EncodedMarker(m);
        break;
      }
      case RecordType::kMetadata:
        break;
    }
  }
  next_lsn_ = lsn;
  if (options_.background_writer) work_cv_.notify_one();
  return lsn;
}

bool Wal::TakeRoundLocked(Round* round) {
  if (pending_.empty() || writing_) return false;
  if (!failure_.ok()) {
    pending_.clear();  // never written: the file position is uncertain
    return false;
  }
  round->writes.swap(pending_);
  round->lsn = next_lsn_;
  writing_ = true;
  return true;
}

Status Wal::DoRound(Round* round) {
  for (PendingWrite& w : round->writes) {
    if (w.create) {
      // The old segment must be complete on disk before records appear in
      // the next one: recovery only tolerates a torn tail in the last.
      if (file_ != nullptr) {
        if (file_dirty_) {
          Status s = file_->Sync();
          if (!s.ok()) return SyncFailed(s);
          file_dirty_ = false;
        }
        (void)file_->Close();
        file_.reset();
      }
      auto f = env_->OpenWritable(w.path, /*truncate=*/true);
      if (!f.ok()) return WriteFailed(f.status());
      Status s = (*f)->Allocate(options_.segment_size);
      if (s.ok()) s = (*f)->Write(0, w.bytes);
      if (!s.ok()) {
        (void)(*f)->Close();
        (void)env_->RemoveFile(w.path);  // holds nothing durable
        return WriteFailed(s);
      }
      file_ = std::move(f).value();
      file_path_ = w.path;
      s = file_->Sync();
      if (s.ok()) s = env_->SyncDir(options_.dir);
      if (!s.ok()) return SyncFailed(s);
      continue;
    }
    Status s = file_->Write(w.offset, w.bytes);
    if (!s.ok()) return WriteFailed(s);
    CountWritten(w.bytes.size());
    file_dirty_ = true;
  }
  if (file_dirty_) {
    Status s = TimedSync(file_.get());
    if (!s.ok()) return SyncFailed(s);
    file_dirty_ = false;
  }
  return Status::OK();
}

void Wal::Publish(const Round& round, Status s) {
  std::lock_guard lock(mu_);
  writing_ = false;
  if (s.ok()) {
    durable_lsn_ = round.lsn;
  } else if (failure_.ok()) {
    failure_ = std::move(s);
  }
  durable_cv_.notify_all();
  if (!pending_.empty()) work_cv_.notify_one();
}

void Wal::WriterLoop() {
  while (true) {
    Round round;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (!TakeRoundLocked(&round)) {
        if (stop_ && pending_.empty()) return;
        continue;
      }
    }
    Publish(round, DoRound(&round));
  }
}

Status Wal::WaitDurable(uint64_t lsn) {
  const bool inline_writer = !options_.background_writer;
  while (true) {
    Round round;
    {
      std::unique_lock lock(mu_);
      KEEL_CHECK_LE(lsn, next_lsn_) << "waiting for an LSN never issued";
      durable_cv_.wait(lock, [&] {
        return durable_lsn_ >= lsn || !failure_.ok() ||
               (inline_writer && !writing_ && !pending_.empty());
      });
      if (durable_lsn_ >= lsn) return Status::OK();
      if (!failure_.ok()) return failure_;
      if (!TakeRoundLocked(&round)) continue;
    }
    // This thread writes for the whole group queued so far.
    Publish(round, DoRound(&round));
  }
}

uint64_t Wal::durable_lsn() const {
  std::lock_guard lock(mu_);
  return durable_lsn_;
}

Status Wal::health() const {
  std::lock_guard lock(mu_);
  return failure_;
}

Status Wal::Read(WalPos pos, RecordType* type, std::string* payload) const {
  std::string path;
  {
    std::lock_guard lock(mu_);
    auto it = segments_.find(pos.segment);
    if (it == segments_.end()) {
      return Status::NotFound("wal: segment " + std::to_string(pos.segment) +
                              " was purged");
    }
    path = it->second.path;
  }
  std::lock_guard lock(read_mu_);
  auto& reader = readers_[pos.segment];
  if (reader == nullptr) {
    auto f = env_->OpenReadable(path);
    if (!f.ok()) return f.status();
    reader = std::move(f).value();
  }
  std::string buf;
  KEEL_RETURN_IF_ERROR(reader->Read(pos.offset, kRecordHeaderSize, &buf));
  uint64_t length =
      buf.size() == kRecordHeaderSize
          ? std::min<uint64_t>(DecodeFixed32(buf.data() + 4), kMaxRecordPayload)
          : 0;
  KEEL_RETURN_IF_ERROR(
      reader->Read(pos.offset, kRecordHeaderSize + length, &buf));
  std::string_view p;
  Status s = ParseRecordAt(buf, type, &p);
  if (!s.ok()) {
    return Status::Corruption("wal: " + s.message() + Where(path, pos.offset));
  }
  payload->assign(p);
  return Status::OK();
}

Status Wal::PurgeUpTo(raft::Index covered) {
  std::vector<std::pair<uint64_t, std::string>> doomed;
  {
    std::lock_guard lock(mu_);
    for (auto it = segments_.begin(); it != segments_.end();) {
      if (it->first == cur_seq_ || it->second.max_index > covered ||
          it->second.last_lsn > durable_lsn_) {
        break;
      }
      doomed.emplace_back(it->first, it->second.path);
      it = segments_.erase(it);
    }
  }
  if (doomed.empty()) return Status::OK();
  {
    std::lock_guard lock(read_mu_);
    for (const auto& d : doomed) readers_.erase(d.first);
  }
  // Oldest first, so a crash part-way leaves a contiguous run of segments.
  for (const auto& d : doomed) KEEL_RETURN_IF_ERROR(env_->RemoveFile(d.second));
  return env_->SyncDir(options_.dir);
}

Status Wal::Close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return failure_;
    closed_ = true;
    stop_ = true;
  }
  work_cv_.notify_all();
  if (writer_.joinable()) {
    writer_.join();
  } else {
    uint64_t last;
    {
      std::lock_guard lock(mu_);
      last = next_lsn_;
    }
    (void)WaitDurable(last);
  }
  if (file_ != nullptr) {
    (void)file_->Close();
    file_.reset();
  }
  {
    std::lock_guard lock(read_mu_);
    readers_.clear();
  }
  return health();
}

std::vector<std::string> Wal::SegmentPaths() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [seq, seg] : segments_) out.push_back(seg.path);
  return out;
}

}  // namespace keel::wal
