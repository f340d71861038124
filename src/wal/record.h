// WAL record format: framing, payload codecs and the segment scanner that
// recovery, `keel-wal verify` and `keel-wal dump` share.
//
// A segment is a sequence of records, then zeros (preallocated space):
//
//   +-----------+---------+------+----------+------------+---------------+
//   | data_crc  | length  | type | reserved | header_crc | payload       |
//   | fixed32   | fixed32 | u8   | 3 x 0    | fixed32    | length bytes  |
//   +-----------+---------+------+----------+------------+---------------+
//
// data_crc is the masked CRC32C of the payload, header_crc the masked CRC32C
// of bytes 4..11 (length, type, reserved). Checking the header on its own
// means a damaged length can never be mistaken for a record that runs into
// the preallocated zeros, i.e. for a torn write. docs/wal-format.md has the
// full rules, including how a bad record is classified (torn vs corrupt).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "raft/types.h"

namespace keel::wal {

enum class RecordType : uint8_t {
  kEntry = 1,      // payload: raft::EncodeEntry
  kHardState = 2,  // payload: raft::EncodeHardState
  kSnapshot = 3,   // payload: EncodeSnapshotMarker
  kMetadata = 4,   // payload: EncodeMetadata
};
const char* RecordTypeName(RecordType t);

constexpr size_t kRecordHeaderSize = 16;
// Bigger lengths are treated as damage, not as a record.
constexpr uint32_t kMaxRecordPayload = 64u << 20;
// The atomic unit of a disk write, used to recognise torn writes.
constexpr uint64_t kSectorSize = 512;

// Appends one framed record to *out.
void AppendRecord(RecordType type, std::string_view payload, std::string* out);

// "A snapshot at (index, term) is on disk." discard_log: the snapshot
// replaced the log (raft::Storage ApplySnapshot), so earlier entries are
// gone; otherwise it only compacts entries it covers.
struct SnapshotMarker {
  raft::Index index = 0;
  raft::Term term = 0;
  bool discard_log = false;
  friend bool operator==(const SnapshotMarker&,
                         const SnapshotMarker&) = default;
};
void EncodeSnapshotMarker(const SnapshotMarker& m, std::string* out);
bool DecodeSnapshotMarker(std::string_view in, SnapshotMarker* m);

// Identity of the member and cluster that own the log.
struct WalMetadata {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  friend bool operator==(const WalMetadata&, const WalMetadata&) = default;
};
void EncodeMetadata(const WalMetadata& m, std::string* out);
bool DecodeMetadata(std::string_view in, WalMetadata* m);

// Decodes a payload of the given type to text, for `keel-wal dump`.
std::string DescribeRecord(RecordType type, std::string_view payload);

// How a scan of one segment ended.
enum class ScanEnd {
  kClean,    // end of file, or zeros up to it
  kTorn,     // an incomplete record at the tail of the last segment
  kCorrupt,  // anything else
};

struct SegmentScan {
  ScanEnd end = ScanEnd::kClean;
  // Bytes of valid records from the start of the segment.
  uint64_t valid_end = 0;
  // Where the problem is (kTorn, kCorrupt) and what it is.
  uint64_t problem_offset = 0;
  std::string problem;
  uint64_t records = 0;
};

using RecordVisitor = std::function<Status(
    RecordType type, std::string_view payload, uint64_t offset)>;

// Scans a whole segment, calling visit for each valid record in order.
// last_segment: damage that looks like a torn write (see the format doc) is
// reported as kTorn only in the last segment. A visitor error stops the
// scan and is returned in *visit_status. `consumed`, if given, is told
// offsets before which the scan will not read data again (the caller may
// drop those bytes from memory).
SegmentScan ScanSegment(
    std::string_view data, bool last_segment, const RecordVisitor& visit,
    Status* visit_status,
    const std::function<void(uint64_t)>& consumed = nullptr);

// Reads one record that starts at `offset` of `data` (at least the header
// and payload), verifying both checksums. For reads of single entries.
Status ParseRecordAt(std::string_view data, RecordType* type,
                     std::string_view* payload);

}  // namespace keel::wal
