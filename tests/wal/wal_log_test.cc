// The segmented log: rollover, recovery of torn and damaged logs, group
// commit, fatal fdatasync failures, a full disk and purging.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "raft/codec.h"
#include "test_util.h"
#include "wal/fault_injection_env.h"
#include "wal/wal.h"

namespace keel::wal {
namespace {

using testing::MakeEntry;

constexpr char kDir[] = "/data/wal";

struct Replayed {
  std::vector<raft::Entry> entries;
  std::vector<raft::HardState> hard_states;
  int metadata = 0;
};

Result<std::unique_ptr<Wal>> OpenWal(Env* env, Replayed* out,
                                     uint64_t segment_size = 4096,
                                     bool background = false) {
  WalOptions o;
  o.dir = kDir;
  o.segment_size = segment_size;
  o.background_writer = background;
  o.metadata = {1, 2};
  return Wal::Open(env, o, [out](const RecoveredRecord& r) {
    if (r.type == RecordType::kEntry) out->entries.push_back(*r.entry);
    if (r.type == RecordType::kMetadata) out->metadata++;
    if (r.type == RecordType::kHardState) {
      raft::HardState hs;
      EXPECT_TRUE(raft::DecodeHardState(r.payload, &hs));
      out->hard_states.push_back(hs);
    }
    return Status::OK();
  });
}

// Writes entries 1..n (one batch each, all durable) and closes.
void WriteEntries(Env* env, int n, size_t bytes,
                  std::vector<WalPos>* positions = nullptr) {
  Replayed r;
  auto wal = OpenWal(env, &r);
  ASSERT_TRUE(wal.ok()) << wal.status().ToString();
  for (int i = 1; i <= n; i++) {
    WalBatch b;
    b.AddEntry(MakeEntry(i, 1, bytes));
    auto lsn = (*wal)->Submit(std::move(b), positions);
    ASSERT_TRUE(lsn.ok());
    ASSERT_TRUE((*wal)->WaitDurable(*lsn).ok());
  }
  ASSERT_TRUE((*wal)->Close().ok());
}

std::vector<std::string> Segments(Env* env) {
  std::vector<std::string> out;
  auto names = env->ListDir(kDir);
  for (const auto& n : *names) out.push_back(JoinPath(kDir, n));
  return out;
}

TEST(WalTest, AppendCloseReopen) {
  MemEnv env;
  {
    Replayed r;
    auto wal = OpenWal(&env, &r);
    ASSERT_TRUE(wal.ok());
    EXPECT_EQ((*wal)->metadata(), (WalMetadata{1, 2}));
    WalBatch b;
    b.AddEntry(MakeEntry(1, 1));
    b.AddEntry(MakeEntry(2, 1));
    b.AddHardState({1, 3, 2});
    auto lsn = (*wal)->Submit(std::move(b), nullptr);
    ASSERT_TRUE(lsn.ok());
    ASSERT_TRUE((*wal)->WaitDurable(*lsn).ok());
  }
  Replayed r;
  auto wal = OpenWal(&env, &r);
  ASSERT_TRUE(wal.ok());
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries[1], MakeEntry(2, 1));
  EXPECT_EQ(r.hard_states.back(), (raft::HardState{1, 3, 2}));
}

TEST(WalTest, SegmentRolloverRepeatsTheHeader) {
  MemEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 200, 100, &pos);
  auto segs = Segments(&env);
  EXPECT_GT(segs.size(), 5u);
  for (const auto& s : segs) EXPECT_EQ(*env.FileSize(s), 4096u) << s;
  Replayed r;
  auto wal = OpenWal(&env, &r);
  ASSERT_TRUE(wal.ok());
  ASSERT_EQ(r.entries.size(), 200u);
  for (int i = 0; i < 200; i++)
    EXPECT_EQ(r.entries[i], MakeEntry(i + 1, 1, 100));
  EXPECT_EQ(r.metadata, static_cast<int>(segs.size()));
  // Reading back by position.
  for (int i : {0, 57, 199}) {
    RecordType t;
    std::string payload;
    ASSERT_TRUE((*wal)->Read(pos[i], &t, &payload).ok());
    raft::Entry e;
    ASSERT_TRUE(raft::DecodeEntry(payload, &e));
    EXPECT_EQ(e, MakeEntry(i + 1, 1, 100));
  }
}

TEST(WalTest, RecordLargerThanASegment) {
  MemEnv env;
  WriteEntries(&env, 3, 10000);
  Replayed r;
  ASSERT_TRUE(OpenWal(&env, &r).ok());
  ASSERT_EQ(r.entries.size(), 3u);
  EXPECT_EQ(r.entries[2], MakeEntry(3, 1, 10000));
}

// Zeroes the sector holding the last byte of the last record, as a crash
// in the middle of that write would.
void TearLastRecord(MemEnv* env, const std::string& path, uint64_t rec_end) {
  std::string data;
  ASSERT_TRUE(env->ReadFile(path, &data).ok());
  uint64_t s = (rec_end - 1) / kSectorSize * kSectorSize;
  std::fill(data.begin() + s, data.begin() + rec_end, '\0');
  ASSERT_TRUE(env->SetContents(path, data).ok());
}

TEST(WalTest, TornTailIsTruncatedAndWritingContinues) {
  MemEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 10, 600, &pos);
  auto segs = Segments(&env);
  const std::string last = segs.back();
  uint64_t rec_end = pos[9].offset + kRecordHeaderSize;
  {
    std::string payload;
    raft::EncodeEntry(MakeEntry(10, 1, 600), &payload);
    rec_end += payload.size();
  }
  TearLastRecord(&env, last, rec_end);
  {
    Replayed r;
    auto wal = OpenWal(&env, &r);
    ASSERT_TRUE(wal.ok()) << wal.status().ToString();
    ASSERT_EQ(r.entries.size(), 9u);
    // The torn bytes are gone: the tail is zeros again.
    std::string data;
    ASSERT_TRUE(env.ReadFile(last, &data).ok());
    for (uint64_t i = pos[9].offset; i < data.size(); i++) {
      ASSERT_EQ(data[i], 0) << i;
    }
    WalBatch b;
    b.AddEntry(MakeEntry(10, 2, 600));
    auto lsn = (*wal)->Submit(std::move(b), nullptr);
    ASSERT_TRUE(lsn.ok());
    ASSERT_TRUE((*wal)->WaitDurable(*lsn).ok());
  }
  Replayed r;
  ASSERT_TRUE(OpenWal(&env, &r).ok());
  ASSERT_EQ(r.entries.size(), 10u);
  EXPECT_EQ(r.entries[9], MakeEntry(10, 2, 600));
}

void ExpectCorruptionAt(Env* env, const std::string& path, uint64_t offset) {
  std::string before;
  for (const auto& s : Segments(env)) {
    std::string d;
    ASSERT_TRUE(env->ReadFile(s, &d).ok());
    before += d;
  }
  Replayed r;
  auto wal = OpenWal(env, &r);
  ASSERT_FALSE(wal.ok());
  EXPECT_TRUE(wal.status().IsCorruption()) << wal.status().ToString();
  EXPECT_NE(wal.status().message().find(path), std::string::npos)
      << wal.status().ToString();
  EXPECT_NE(wal.status().message().find("offset " + std::to_string(offset)),
            std::string::npos)
      << wal.status().ToString();
  std::string after;
  for (const auto& s : Segments(env)) {
    std::string d;
    ASSERT_TRUE(env->ReadFile(s, &d).ok());
    after += d;
  }
  EXPECT_EQ(before, after) << "recovery rewrote a damaged log";
}

TEST(WalTest, BitFlipInAnOlderSegmentIsCorruptionNamingFileAndOffset) {
  FaultInjectionEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 200, 100, &pos);
  auto segs = Segments(&env);
  ASSERT_TRUE(env.FlipBit(segs[pos[40].segment], pos[40].offset + 20, 3).ok());
  ExpectCorruptionAt(&env, segs[pos[40].segment], pos[40].offset);
}

TEST(WalTest, BitFlipMidLastSegmentIsCorruption) {
  FaultInjectionEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 200, 100, &pos);
  auto segs = Segments(&env);
  size_t k = 0;  // the first record of the last segment
  while (pos[k].segment != pos.back().segment) k++;
  ASSERT_LT(k, 199u);
  ASSERT_TRUE(env.FlipBit(segs.back(), pos[k].offset + 30, 0).ok());
  ExpectCorruptionAt(&env, segs.back(), pos[k].offset);
}

TEST(WalTest, BitFlipInLastRecordIsCorruptionNotATornWrite) {
  FaultInjectionEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 200, 100, &pos);
  auto segs = Segments(&env);
  // In the payload, and in the length field of the header.
  for (uint64_t delta : {uint64_t{kRecordHeaderSize + 50}, uint64_t{5}}) {
    ASSERT_TRUE(env.FlipBit(segs.back(), pos[199].offset + delta, 6).ok());
    ExpectCorruptionAt(&env, segs.back(), pos[199].offset);
    ASSERT_TRUE(env.FlipBit(segs.back(), pos[199].offset + delta, 6).ok());
  }
  Replayed r;
  EXPECT_TRUE(OpenWal(&env, &r).ok());
}

TEST(WalTest, MissingMiddleSegmentIsCorruption) {
  MemEnv env;
  WriteEntries(&env, 200, 100);
  auto segs = Segments(&env);
  ASSERT_TRUE(env.RemoveFile(segs[2]).ok());
  Replayed r;
  auto wal = OpenWal(&env, &r);
  ASSERT_FALSE(wal.ok());
  EXPECT_TRUE(wal.status().IsCorruption());
  EXPECT_NE(wal.status().message().find("missing"), std::string::npos);
}

void GroupCommit(bool background) {
  testing::GateEnv env;
  Replayed r;
  auto wal = OpenWal(&env, &r, 1 << 20, background);
  ASSERT_TRUE(wal.ok());
  Wal* w = wal->get();
  const int syncs_at_start = env.syncs();
  // The first append's fdatasync is held, so the others pile up behind it.
  env.SetGate(false);
  WalBatch first;
  first.AddEntry(MakeEntry(1, 1));
  uint64_t lsn1 = *w->Submit(std::move(first), nullptr);
  std::thread t0([&] { EXPECT_TRUE(w->WaitDurable(lsn1).ok()); });
  ASSERT_TRUE(env.WaitBlocked());
  constexpr int kThreads = 32;
  std::vector<std::thread> threads;
  std::atomic<int> done{0};
  std::mutex mu;
  std::condition_variable cv;
  int submitted = 0;  // guarded by mu
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&, i] {
      WalBatch b;
      b.AddHardState({static_cast<raft::Term>(i + 1), 0, 0});
      auto lsn = w->Submit(std::move(b), nullptr);
      ASSERT_TRUE(lsn.ok());
      {
        std::lock_guard lock(mu);
        submitted++;
        cv.notify_all();
      }
      EXPECT_TRUE(w->WaitDurable(*lsn).ok());
      done++;
    });
  }
  ASSERT_TRUE(
      testing::WaitUntil(mu, cv, [&] { return submitted == kThreads; }));
  EXPECT_EQ(done.load(), 0);
  env.SetGate(true);
  t0.join();
  for (auto& t : threads) t.join();
  // One sync for the first append, one for the 32 that queued behind it.
  EXPECT_EQ(env.syncs() - syncs_at_start, 2);
  EXPECT_EQ(w->durable_lsn(), static_cast<uint64_t>(kThreads + 1));
}

TEST(WalTest, GroupCommitSharesOneSyncWithWriterThread) { GroupCommit(true); }
TEST(WalTest, GroupCommitSharesOneSyncInline) { GroupCommit(false); }

TEST(WalTest, ManyConcurrentAppendersAllDurableAndOrdered) {
  MemEnv env;
  constexpr int kThreads = 8, kPer = 200;
  {
    Replayed r;
    auto wal = OpenWal(&env, &r, 16384, true);
    ASSERT_TRUE(wal.ok());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPer; i++) {
          WalBatch b;
          b.AddHardState(
              {static_cast<raft::Term>(t), 0, static_cast<raft::Index>(i)});
          auto lsn = (*wal)->Submit(std::move(b), nullptr);
          ASSERT_TRUE(lsn.ok());
          ASSERT_TRUE((*wal)->WaitDurable(*lsn).ok());
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  Replayed r;
  ASSERT_TRUE(OpenWal(&env, &r, 16384).ok());
  // Per thread, its records come back in submission order (headers repeat
  // the latest one at each rollover, hence the dedup).
  std::vector<int64_t> last(kThreads, -1);
  int count = 0;
  for (const auto& hs : r.hard_states) {
    if (hs.term >= kThreads) continue;
    int64_t c = static_cast<int64_t>(hs.commit);
    if (c == last[hs.term]) continue;
    EXPECT_EQ(c, last[hs.term] + 1);
    last[hs.term] = c;
    count++;
  }
  EXPECT_EQ(count, kThreads * kPer);
}

TEST(WalTest, FailedFdatasyncIsFatalAndNeverRetried) {
  FaultInjectionEnv env;
  Replayed r;
  auto wal = OpenWal(&env, &r, 4096, true);
  ASSERT_TRUE(wal.ok());
  env.SetSyncError(true);
  WalBatch b;
  b.AddEntry(MakeEntry(1, 1));
  auto lsn = (*wal)->Submit(std::move(b), nullptr);
  ASSERT_TRUE(lsn.ok());
  Status s = (*wal)->WaitDurable(*lsn);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("fatal"), std::string::npos) << s.ToString();
  env.SetSyncError(false);  // the disk "recovers": the WAL must not
  WalBatch b2;
  b2.AddEntry(MakeEntry(2, 1));
  EXPECT_EQ((*wal)->Submit(std::move(b2), nullptr).status(), s);
  EXPECT_EQ((*wal)->WaitDurable(*lsn), s);
  EXPECT_EQ((*wal)->health(), s);
  EXPECT_EQ((*wal)->durable_lsn(), 0u);
}

void FullDisk(bool at_rollover) {
  FaultInjectionEnv env;
  WriteEntries(&env, 20, 100);
  {
    Replayed r;
    auto wal = OpenWal(&env, &r);
    ASSERT_TRUE(wal.ok());
    const size_t segs_before = Segments(&env).size();
    env.SetNoSpace(true);
    WalBatch b;
    // Big enough to need a new segment, or small enough to fit.
    b.AddEntry(MakeEntry(21, 1, at_rollover ? 4000 : 10));
    auto lsn = (*wal)->Submit(std::move(b), nullptr);
    ASSERT_TRUE(lsn.ok());
    Status s = (*wal)->WaitDurable(*lsn);
    EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
    EXPECT_NE(s.message().find("disk full"), std::string::npos);
    EXPECT_EQ(Segments(&env).size(), segs_before);
  }
  env.SetNoSpace(false);
  Replayed r;
  auto wal = OpenWal(&env, &r);
  ASSERT_TRUE(wal.ok()) << wal.status().ToString();
  ASSERT_EQ(r.entries.size(), 20u);
  for (int i = 0; i < 20; i++)
    EXPECT_EQ(r.entries[i], MakeEntry(i + 1, 1, 100));
}

TEST(WalTest, FullDiskAtRolloverCorruptsNothing) { FullDisk(true); }
TEST(WalTest, FullDiskMidSegmentCorruptsNothing) { FullDisk(false); }

TEST(WalTest, PurgeDeletesOnlyCoveredSegments) {
  MemEnv env;
  std::vector<WalPos> pos;
  WriteEntries(&env, 200, 100, &pos);
  Replayed r;
  auto wal = OpenWal(&env, &r);
  ASSERT_TRUE(wal.ok());
  const uint64_t seg_of_100 = pos[99].segment;
  ASSERT_TRUE((*wal)->PurgeUpTo(100).ok());
  auto segs = Segments(&env);
  uint64_t first_seq;
  raft::Index first_index;
  ASSERT_TRUE(ParseSegmentFileName(segs[0].substr(segs[0].rfind('/') + 1),
                                   &first_seq, &first_index));
  // The segment holding entry 100 may hold 101 too; everything before goes.
  EXPECT_TRUE(first_seq == seg_of_100 || first_seq == seg_of_100 + 1);
  ASSERT_TRUE((*wal)->PurgeUpTo(1000).ok());  // never the current segment
  EXPECT_EQ(Segments(&env).size(), 1u);
  ASSERT_TRUE((*wal)->Close().ok());
  Replayed r2;
  ASSERT_TRUE(OpenWal(&env, &r2).ok());
  EXPECT_EQ(r2.metadata, 1);
}

}  // namespace
}  // namespace keel::wal
