#include "wal/record.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "common/coding.h"
#include "common/crc32c.h"
#include "raft/codec.h"

namespace keel::wal {
namespace {

constexpr char kPayloadVersion = 1;

bool ValidType(uint8_t t) {
  return t >= static_cast<uint8_t>(RecordType::kEntry) &&
         t <= static_cast<uint8_t>(RecordType::kMetadata);
}

// memcmp against a block of zeros: recovery checks the whole preallocated
// tail of a segment (up to 64 MiB), and a byte loop was a sixth of a
// restart's CPU.
bool AllZero(std::string_view s) {
  static constexpr char kZeros[4096] = {};
  while (s.size() > sizeof(kZeros)) {
    if (std::memcmp(s.data(), kZeros, sizeof(kZeros)) != 0) return false;
    s.remove_prefix(sizeof(kZeros));
  }
  return std::memcmp(s.data(), kZeros, s.size()) == 0;
}

// True if some sector-aligned piece of data[begin, end) is all zeros: the
// record was being written when the power went, and that sector never made
// it to disk (sectors are written atomically; preallocated space is zero).
bool HasZeroSector(std::string_view data, uint64_t begin, uint64_t end) {
  uint64_t pos = begin;
  while (pos < end) {
    uint64_t next = std::min(end, (pos / kSectorSize + 1) * kSectorSize);
    if (AllZero(data.substr(pos, next - pos))) return true;
    pos = next;
  }
  return false;
}

enum class HeaderCheck { kOk, kZero, kBad };

HeaderCheck CheckHeader(std::string_view h, uint32_t* length, uint8_t* type) {
  if (AllZero(h)) return HeaderCheck::kZero;
  uint32_t want = crc32c::Unmask(DecodeFixed32(h.data() + 12));
  if (crc32c::Value(h.data() + 4, 8) != want) return HeaderCheck::kBad;
  *length = DecodeFixed32(h.data() + 4);
  *type = static_cast<uint8_t>(h[8]);
  if (!ValidType(*type) || *length > kMaxRecordPayload || h[9] != 0 ||
      h[10] != 0 || h[11] != 0) {
    return HeaderCheck::kBad;
  }
  return HeaderCheck::kOk;
}

}  // namespace

const char* RecordTypeName(RecordType t) {
  switch (t) {
    case RecordType::kEntry:
      return "entry";
    case RecordType::kHardState:
      return "hardstate";
    case RecordType::kSnapshot:
      return "snapshot";
    case RecordType::kMetadata:
      return "metadata";
  }
  return "unknown";
}

void AppendRecord(RecordType type, std::string_view payload, std::string* out) {
  KEEL_CHECK_LE(payload.size(), kMaxRecordPayload) << "WAL record too large";
  size_t start = out->size();
  PutFixed32(out, crc32c::Mask(crc32c::Value(payload)));
  PutFixed32(out, static_cast<uint32_t>(payload.size()));
  out->push_back(static_cast<char>(type));
  out->append(3, '\0');
  PutFixed32(out, crc32c::Mask(crc32c::Value(out->data() + start + 4, 8)));
  out->append(payload);
}

void EncodeSnapshotMarker(const SnapshotMarker& m, std::string* out) {
  out->push_back(kPayloadVersion);
  PutVarint64(out, m.index);
  PutVarint64(out, m.term);
  out->push_back(m.discard_log ? 1 : 0);
}

bool DecodeSnapshotMarker(std::string_view in, SnapshotMarker* m) {
  if (in.empty() || in[0] != kPayloadVersion) return false;
  in.remove_prefix(1);
  if (!GetVarint64(&in, &m->index) || !GetVarint64(&in, &m->term) ||
      in.size() != 1 || static_cast<uint8_t>(in[0]) > 1) {
    return false;
  }
  m->discard_log = in[0] == 1;
  return true;
}

void EncodeMetadata(const WalMetadata& m, std::string* out) {
  out->push_back(kPayloadVersion);
  PutVarint64(out, m.member_id);
  PutVarint64(out, m.cluster_id);
}

bool DecodeMetadata(std::string_view in, WalMetadata* m) {
  if (in.empty() || in[0] != kPayloadVersion) return false;
  in.remove_prefix(1);
  return GetVarint64(&in, &m->member_id) && GetVarint64(&in, &m->cluster_id) &&
         in.empty();
}

std::string DescribeRecord(RecordType type, std::string_view payload) {
  std::ostringstream os;
  switch (type) {
    case RecordType::kEntry: {
      raft::Entry e;
      if (!raft::DecodeEntry(payload, &e)) return "entry <undecodable>";
      os << "entry index=" << e.index << " term=" << e.term << " type="
         << (e.type == raft::EntryType::kNormal ? "normal" : "confchange")
         << " data_bytes=" << e.data.size();
      break;
    }
    case RecordType::kHardState: {
      raft::HardState hs;
      if (!raft::DecodeHardState(payload, &hs))
        return "hardstate <undecodable>";
      os << "hardstate term=" << hs.term << " vote=" << hs.vote
         << " commit=" << hs.commit;
      break;
    }
    case RecordType::kSnapshot: {
      SnapshotMarker m;
      if (!DecodeSnapshotMarker(payload, &m)) return "snapshot <undecodable>";
      os << "snapshot index=" << m.index << " term=" << m.term
         << (m.discard_log ? " (replaces log)" : "");
      break;
    }
    case RecordType::kMetadata: {
      WalMetadata m;
      if (!DecodeMetadata(payload, &m)) return "metadata <undecodable>";
      os << "metadata member=" << std::hex << m.member_id
         << " cluster=" << m.cluster_id;
      break;
    }
  }
  return os.str();
}

SegmentScan ScanSegment(std::string_view data, bool last_segment,
                        const RecordVisitor& visit, Status* visit_status,
                        const std::function<void(uint64_t)>& consumed) {
  *visit_status = Status::OK();
  // The zero tail of a preallocated segment, in pieces, giving each back.
  auto zero_tail = [&](uint64_t from) {
    constexpr uint64_t kPiece = 1u << 20;
    for (uint64_t p = from; p < data.size(); p += kPiece) {
      if (!AllZero(data.substr(p, kPiece))) return false;
      if (consumed) consumed(p + kPiece);
    }
    return true;
  };
  SegmentScan scan;
  const uint64_t n = data.size();
  uint64_t off = 0;
  auto fail = [&](bool torn_like, std::string what) {
    scan.end = (last_segment && torn_like) ? ScanEnd::kTorn : ScanEnd::kCorrupt;
    scan.valid_end = off;
    scan.problem_offset = off;
    scan.problem = std::move(what);
    return scan;
  };
  while (off < n) {
    if (n - off < kRecordHeaderSize) {
      if (zero_tail(off)) break;
      return fail(true, "incomplete record header");
    }
    uint32_t length = 0;
    uint8_t type = 0;
    switch (CheckHeader(data.substr(off, kRecordHeaderSize), &length, &type)) {
      case HeaderCheck::kZero:
        // End of the records. Only zeros may follow: anything else is data
        // that was being written at a crash (last segment) or damage.
        if (!zero_tail(off)) {
          return fail(true, "non-zero bytes after the end of the records");
        }
        scan.valid_end = off;
        return scan;
      case HeaderCheck::kBad:
        return fail(HasZeroSector(data, off, off + kRecordHeaderSize),
                    "record header checksum mismatch");
      case HeaderCheck::kOk:
        break;
    }
    uint64_t end = off + kRecordHeaderSize + length;
    if (end > n) return fail(true, "record runs past the end of the file");
    std::string_view payload = data.substr(off + kRecordHeaderSize, length);
    uint32_t want = crc32c::Unmask(DecodeFixed32(data.data() + off));
    if (crc32c::Value(payload) != want) {
      return fail(HasZeroSector(data, off + kRecordHeaderSize, end),
                  "record payload checksum mismatch");
    }
    if (visit) {
      Status s = visit(static_cast<RecordType>(type), payload, off);
      if (!s.ok()) {
        *visit_status = s;
        scan.valid_end = off;
        return scan;
      }
    }
    scan.records++;
    off = end;
    if (consumed) consumed(off);
  }
  scan.valid_end = off;
  return scan;
}

Status ParseRecordAt(std::string_view data, RecordType* type,
                     std::string_view* payload) {
  uint32_t length = 0;
  uint8_t t = 0;
  if (data.size() < kRecordHeaderSize ||
      CheckHeader(data.substr(0, kRecordHeaderSize), &length, &t) !=
          HeaderCheck::kOk) {
    return Status::Corruption("record header checksum mismatch");
  }
  if (data.size() < kRecordHeaderSize + length) {
    return Status::Corruption("record runs past the end of the file");
  }
  std::string_view p = data.substr(kRecordHeaderSize, length);
  if (crc32c::Value(p) != crc32c::Unmask(DecodeFixed32(data.data()))) {
    return Status::Corruption("record payload checksum mismatch");
  }
  *type = static_cast<RecordType>(t);
  *payload = p;
  return Status::OK();
}

}  // namespace keel::wal
