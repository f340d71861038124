// Record framing and the segment scanner's classification of damage.
#include "wal/record.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "raft/codec.h"

namespace keel::wal {
namespace {

struct Seen {
  RecordType type;
  std::string payload;
  uint64_t offset;
};

SegmentScan Scan(const std::string& data, bool last, std::vector<Seen>* seen) {
  Status vs;
  SegmentScan s = ScanSegment(
      data, last,
      [&](RecordType t, std::string_view p, uint64_t off) {
        seen->push_back({t, std::string(p), off});
        return Status::OK();
      },
      &vs);
  EXPECT_TRUE(vs.ok());
  return s;
}

// Three records followed by preallocated zeros.
std::string ThreeRecords(std::vector<uint64_t>* offsets, size_t prealloc) {
  std::string seg;
  for (int i = 0; i < 3; i++) {
    offsets->push_back(seg.size());
    AppendRecord(RecordType::kEntry, std::string(100 + i * 300, 'a' + i), &seg);
  }
  if (prealloc > seg.size()) seg.resize(prealloc, '\0');
  return seg;
}

TEST(RecordTest, RoundTripAndZeroTail) {
  std::vector<uint64_t> offs;
  std::string seg = ThreeRecords(&offs, 4096);
  for (bool last : {false, true}) {
    std::vector<Seen> seen;
    SegmentScan s = Scan(seg, last, &seen);
    EXPECT_EQ(s.end, ScanEnd::kClean);
    ASSERT_EQ(seen.size(), 3u);
    for (int i = 0; i < 3; i++) {
      EXPECT_EQ(seen[i].offset, offs[i]);
      EXPECT_EQ(seen[i].payload, std::string(100 + i * 300, 'a' + i));
    }
    EXPECT_EQ(s.valid_end, offs[2] + kRecordHeaderSize + 700);
  }
}

TEST(RecordTest, EmptyPayloadAndNoPreallocation) {
  std::string seg;
  AppendRecord(RecordType::kHardState, "", &seg);
  std::vector<Seen> seen;
  SegmentScan s = Scan(seg, true, &seen);
  EXPECT_EQ(s.end, ScanEnd::kClean);
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(s.valid_end, seg.size());
}

TEST(RecordTest, TornTailIsTornOnlyInTheLastSegment) {
  std::vector<uint64_t> offs;
  std::string seg = ThreeRecords(&offs, 4096);
  // The last record's final sector never reached the disk.
  uint64_t end = offs[2] + kRecordHeaderSize + 700;
  uint64_t cut = (end - 1) / kSectorSize * kSectorSize;
  ASSERT_GT(cut, offs[2]);
  std::fill(seg.begin() + cut, seg.end(), '\0');
  std::vector<Seen> seen;
  SegmentScan s = Scan(seg, true, &seen);
  EXPECT_EQ(s.end, ScanEnd::kTorn);
  EXPECT_EQ(s.valid_end, offs[2]);
  EXPECT_EQ(seen.size(), 2u);
  seen.clear();
  s = Scan(seg, false, &seen);
  EXPECT_EQ(s.end, ScanEnd::kCorrupt);
  EXPECT_EQ(s.problem_offset, offs[2]);
}

TEST(RecordTest, RecordCutByEndOfFileIsTorn) {
  std::vector<uint64_t> offs;
  std::string seg = ThreeRecords(&offs, 0);
  seg.resize(seg.size() - 5);
  std::vector<Seen> seen;
  EXPECT_EQ(Scan(seg, true, &seen).end, ScanEnd::kTorn);
  seg.resize(offs[2] + 7);  // half a header
  EXPECT_EQ(Scan(seg, true, &seen).end, ScanEnd::kTorn);
}

TEST(RecordTest, BitFlipInLastRecordIsCorruptionNotTorn) {
  std::vector<uint64_t> offs;
  std::string seg0 = ThreeRecords(&offs, 4096);
  // Every bit of the last record: payload, length, type, checksums.
  uint64_t end = offs[2] + kRecordHeaderSize + 700;
  for (uint64_t pos = offs[2]; pos < end; pos += 37) {
    std::string seg = seg0;
    seg[pos] ^= 0x10;
    std::vector<Seen> seen;
    SegmentScan s = Scan(seg, true, &seen);
    EXPECT_EQ(s.end, ScanEnd::kCorrupt) << pos;
    EXPECT_EQ(s.problem_offset, offs[2]) << pos;
  }
}

TEST(RecordTest, BitFlipMidSegmentIsCorruption) {
  std::vector<uint64_t> offs;
  std::string seg = ThreeRecords(&offs, 4096);
  seg[offs[1] + kRecordHeaderSize + 5] ^= 1;
  std::vector<Seen> seen;
  SegmentScan s = Scan(seg, true, &seen);
  EXPECT_EQ(s.end, ScanEnd::kCorrupt);
  EXPECT_EQ(s.problem_offset, offs[1]);
  EXPECT_NE(s.problem.find("checksum"), std::string::npos);
  EXPECT_EQ(seen.size(), 1u);
}

TEST(RecordTest, GarbageAfterZeroHeader) {
  std::vector<uint64_t> offs;
  std::string seg = ThreeRecords(&offs, 4096);
  seg[4000] = 1;
  std::vector<Seen> seen;
  EXPECT_EQ(Scan(seg, false, &seen).end, ScanEnd::kCorrupt);
  EXPECT_EQ(Scan(seg, true, &seen).end, ScanEnd::kTorn);
}

// What the scan says it is done with: monotonic, never past a record it has
// yet to read, and up to the end of a zero tail (so a mapped segment can be
// given back as it is scanned).
TEST(RecordTest, ConsumedOffsetsNeverPassUnreadData) {
  std::vector<uint64_t> offsets;
  const std::string data = ThreeRecords(&offsets, 3u << 20);
  std::vector<uint64_t> consumed;
  std::vector<std::pair<uint64_t, uint64_t>> at_visit;  // (offset, consumed)
  Status vs;
  SegmentScan s = ScanSegment(
      data, true,
      [&](RecordType, std::string_view, uint64_t off) {
        at_visit.push_back({off, consumed.empty() ? 0 : consumed.back()});
        return Status::OK();
      },
      &vs, [&](uint64_t off) { consumed.push_back(off); });
  ASSERT_TRUE(vs.ok());
  EXPECT_EQ(s.end, ScanEnd::kClean);
  EXPECT_EQ(s.records, 3u);
  ASSERT_EQ(at_visit.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(at_visit[i].first, offsets[i]);
    EXPECT_LE(at_visit[i].second, offsets[i]);
  }
  ASSERT_FALSE(consumed.empty());
  EXPECT_TRUE(std::is_sorted(consumed.begin(), consumed.end()));
  EXPECT_GE(consumed.back(), data.size());
}

TEST(RecordTest, ParseRecordAt) {
  std::string seg;
  AppendRecord(RecordType::kSnapshot, "xyz", &seg);
  RecordType t;
  std::string_view p;
  ASSERT_TRUE(ParseRecordAt(seg, &t, &p).ok());
  EXPECT_EQ(t, RecordType::kSnapshot);
  EXPECT_EQ(p, "xyz");
  seg.back() ^= 1;
  EXPECT_TRUE(ParseRecordAt(seg, &t, &p).IsCorruption());
}

TEST(RecordTest, PayloadCodecs) {
  SnapshotMarker m{123456, 7, true}, m2;
  std::string s;
  EncodeSnapshotMarker(m, &s);
  ASSERT_TRUE(DecodeSnapshotMarker(s, &m2));
  EXPECT_EQ(m, m2);
  EXPECT_FALSE(DecodeSnapshotMarker(s.substr(0, s.size() - 1), &m2));
  WalMetadata md{0xabc, 0xdef}, md2;
  s.clear();
  EncodeMetadata(md, &s);
  ASSERT_TRUE(DecodeMetadata(s, &md2));
  EXPECT_EQ(md, md2);
  EXPECT_NE(DescribeRecord(RecordType::kMetadata, s).find("member=abc"),
            std::string::npos);
  raft::Entry e{3, 9, raft::EntryType::kNormal, "data"};
  s.clear();
  raft::EncodeEntry(e, &s);
  EXPECT_EQ(DescribeRecord(RecordType::kEntry, s),
            "entry index=9 term=3 type=normal data_bytes=4");
}

}  // namespace
}  // namespace keel::wal
