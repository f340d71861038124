// DiskStorage: raft::Storage semantics (checked against MemoryStorage),
// entries read back from disk, snapshots, purge and restart.
#include "wal/disk_storage.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "common/rng.h"
#include "test_util.h"
#include "wal/fault_injection_env.h"

namespace keel::wal {
namespace {

using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::MemoryStorage;
using testing::MakeEntries;

DiskStorageOptions Options(uint64_t cache_bytes = 1 << 20) {
  DiskStorageOptions o;
  o.dir = "/data";
  o.segment_size = 8192;
  o.background_writer = false;
  o.cache_bytes = cache_bytes;
  o.metadata = {7, 9};
  return o;
}

std::unique_ptr<DiskStorage> OpenOrDie(Env* env, DiskStorageOptions o) {
  auto s = DiskStorage::Open(env, o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Same answers as MemoryStorage for every index around the log.
void ExpectSameView(const raft::Storage& want, const raft::Storage& got) {
  ASSERT_EQ(want.FirstIndex(), got.FirstIndex());
  ASSERT_EQ(want.LastIndex(), got.LastIndex());
  Index lo = want.FirstIndex() > 2 ? want.FirstIndex() - 2 : 0;
  for (Index i = lo; i <= want.LastIndex() + 2; i++) {
    auto a = want.TermAt(i);
    auto b = got.TermAt(i);
    ASSERT_EQ(a.status().code(), b.status().code()) << i;
    if (a.ok()) {
      ASSERT_EQ(*a, *b) << i;
    }
  }
  for (uint64_t max : {uint64_t{0}, uint64_t{100}, UINT64_MAX}) {
    auto a = want.Entries(want.FirstIndex(), want.LastIndex() + 1, max);
    auto b = got.Entries(got.FirstIndex(), got.LastIndex() + 1, max);
    ASSERT_EQ(a.ok(), b.ok());
    if (a.ok()) {
      ASSERT_EQ(*a, *b);
    }
  }
  EXPECT_EQ(
      want.Entries(want.FirstIndex() - 1, want.LastIndex(), 10).status().code(),
      got.Entries(got.FirstIndex() - 1, got.LastIndex(), 10).status().code());
  EXPECT_EQ(
      want.Entries(want.FirstIndex(), want.LastIndex() + 2, 10).status().code(),
      got.Entries(got.FirstIndex(), got.LastIndex() + 2, 10).status().code());
}

TEST(DiskStorageTest, MatchesMemoryStorage) {
  for (uint64_t seed = 1; seed <= 20; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SeededRng rng(seed);
    MemEnv env;
    auto disk = OpenOrDie(&env, Options(rng.Chance(0.5) ? 0 : 1 << 20));
    ASSERT_NE(disk, nullptr);
    MemoryStorage mem;
    raft::Term term = 1;
    for (int op = 0; op < 60; op++) {
      if (rng.Chance(0.15) && mem.LastIndex() >= mem.FirstIndex()) {
        Index i = rng.Range(mem.FirstIndex(), mem.LastIndex());
        ASSERT_TRUE(mem.Compact(i).ok());
        ASSERT_TRUE(disk->Compact(i).ok());
      } else {
        Index from = rng.Range(mem.FirstIndex(), mem.LastIndex() + 1);
        if (rng.Chance(0.3)) term++;
        auto ents =
            MakeEntries(from, from + rng.Range(1, 8), term, rng.Range(0, 300));
        ASSERT_TRUE(mem.Append(ents).ok());
        ASSERT_TRUE(disk->Append(ents).ok());
      }
      ExpectSameView(mem, *disk);
    }
  }
}

TEST(DiskStorageTest, RestartRestoresHardStateAndEntries) {
  MemEnv env;
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 50, 2, 100)).ok());
    ASSERT_TRUE(s->SetHardState({2, 1, 40}).ok());
    ASSERT_TRUE(s->Append(MakeEntries(45, 60, 3, 100)).ok());  // overwrite
  }
  auto s = OpenOrDie(&env, Options());
  HardState hs;
  raft::ConfState cs;
  ASSERT_TRUE(s->InitialState(&hs, &cs).ok());
  EXPECT_EQ(hs, (HardState{2, 1, 40}));
  EXPECT_EQ(s->FirstIndex(), 1u);
  EXPECT_EQ(s->LastIndex(), 59u);
  EXPECT_EQ(*s->TermAt(44), 2u);
  EXPECT_EQ(*s->TermAt(45), 3u);
  auto e = s->Entries(40, 50, UINT64_MAX);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)[9], testing::MakeEntry(49, 3, 100));
  EXPECT_EQ(s->metadata(), (WalMetadata{7, 9}));
}

TEST(DiskStorageTest, OtherMembersLogIsRefused) {
  MemEnv env;
  OpenOrDie(&env, Options());
  auto o = Options();
  o.metadata.member_id = 8;
  auto s = DiskStorage::Open(&env, o);
  EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument);
}

TEST(DiskStorageTest, OldEntriesComeFromDiskAndDamageIsReported) {
  FaultInjectionEnv env;
  auto s = OpenOrDie(&env, Options(/*cache_bytes=*/1000));
  ASSERT_TRUE(s->Append(MakeEntries(1, 200, 1, 100)).ok());
  auto e = s->Entries(1, 200, UINT64_MAX);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, MakeEntries(1, 200, 1, 100));
  // Damage entry 3 on disk under the running storage.
  auto names = env.ListDir("/data/wal");
  std::string seg0 = "/data/wal/" + (*names)[0];
  std::string data;
  ASSERT_TRUE(env.ReadFile(seg0, &data).ok());
  std::string needle = testing::MakeEntry(3, 1, 100).data;
  size_t at = data.find(needle);
  ASSERT_NE(at, std::string::npos);
  ASSERT_TRUE(env.FlipBit(seg0, at + 10, 2).ok());
  auto bad = s->Entries(2, 5, UINT64_MAX);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsCorruption());
  EXPECT_NE(bad.status().message().find(seg0), std::string::npos)
      << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("offset"), std::string::npos);
}

TEST(DiskStorageTest, SnapshotCompactPurgeAndRestart) {
  MemEnv env;
  raft::ConfState cs{{1, 2, 3}, {}, {}, {}, false};
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 300, 1, 100)).ok());
    const size_t segs_before = env.ListDir("/data/wal")->size();
    auto snap = s->CreateSnapshot(250, &cs, "state@250");
    ASSERT_TRUE(snap.ok());
    EXPECT_EQ(snap->metadata.term, 1u);
    ASSERT_TRUE(s->Compact(250).ok());
    EXPECT_LT(env.ListDir("/data/wal")->size(), segs_before);
    EXPECT_EQ(s->FirstIndex(), 251u);
    EXPECT_TRUE(s->Entries(250, 260, 100).status().IsCompacted());
    ASSERT_TRUE(s->SetHardState({1, 0, 290}).ok());
  }
  auto s = OpenOrDie(&env, Options());
  EXPECT_EQ(s->FirstIndex(), 251u);
  EXPECT_EQ(s->LastIndex(), 299u);
  EXPECT_EQ(*s->TermAt(250), 1u);
  auto snap = s->GetSnapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->data, "state@250");
  EXPECT_EQ(snap->metadata.conf_state, cs);
  HardState hs;
  raft::ConfState got_cs;
  ASSERT_TRUE(s->InitialState(&hs, &got_cs).ok());
  EXPECT_EQ(got_cs, cs);
  EXPECT_EQ(hs.commit, 290u);
}

TEST(DiskStorageTest, KeepsNewestSnapshotsOnly) {
  MemEnv env;
  auto o = Options();
  o.snapshots_to_keep = 3;
  auto s = OpenOrDie(&env, o);
  ASSERT_TRUE(s->Append(MakeEntries(1, 100, 1)).ok());
  for (Index i = 10; i <= 60; i += 10) {
    ASSERT_TRUE(s->CreateSnapshot(i, nullptr, "s" + std::to_string(i)).ok());
  }
  auto names = env.ListDir("/data/snap");
  ASSERT_EQ(names->size(), 3u);
  EXPECT_EQ((*names)[0], SnapshotStore::FileName(1, 40));
  EXPECT_TRUE(s->CreateSnapshot(60, nullptr, "").status().code() ==
              Status::Code::kSnapshotOutOfDate);
}

TEST(DiskStorageTest, DamagedNewestSnapshotFallsBackToAnOlderOne) {
  FaultInjectionEnv env;
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 100, 1)).ok());
    ASSERT_TRUE(s->CreateSnapshot(30, nullptr, "s30").ok());
    ASSERT_TRUE(s->CreateSnapshot(60, nullptr, "s60").ok());
  }
  std::string newest = "/data/snap/" + SnapshotStore::FileName(1, 60);
  ASSERT_TRUE(env.FlipBit(newest, *env.FileSize(newest) - 6, 0).ok());
  auto s = OpenOrDie(&env, Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->GetSnapshot()->data, "s30");
  EXPECT_EQ(s->FirstIndex(), 31u);
  EXPECT_EQ(s->LastIndex(), 99u);
}

TEST(DiskStorageTest, DamagedSnapshotWithoutFallbackIsCorruption) {
  FaultInjectionEnv env;
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 300, 1, 100)).ok());
    ASSERT_TRUE(s->CreateSnapshot(250, nullptr, "s250").ok());
    ASSERT_TRUE(s->Compact(250).ok());  // purges the log before it
  }
  std::string snap = "/data/snap/" + SnapshotStore::FileName(1, 250);
  ASSERT_TRUE(env.FlipBit(snap, *env.FileSize(snap) - 6, 0).ok());
  auto s = DiskStorage::Open(&env, Options());
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().IsCorruption());
  EXPECT_NE(s.status().message().find(snap), std::string::npos)
      << s.status().ToString();
  EXPECT_NE(s.status().message().find("offset"), std::string::npos);
}

TEST(DiskStorageTest, SnapshotWithoutMarkerIsIgnored) {
  MemEnv env;
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 20, 1)).ok());
  }
  // As if ApplySnapshot crashed after saving the file, before its marker.
  SnapshotStore store(&env, "/data/snap", 3);
  raft::Snapshot orphan;
  orphan.metadata.index = 500;
  orphan.metadata.term = 4;
  ASSERT_TRUE(store.Save(orphan).ok());
  auto s = OpenOrDie(&env, Options());
  EXPECT_EQ(s->FirstIndex(), 1u);
  EXPECT_EQ(s->LastIndex(), 19u);
  EXPECT_TRUE(s->GetSnapshot()->IsEmpty());
}

TEST(DiskStorageTest, ApplySnapshotReplacesTheLogAcrossRestart) {
  MemEnv env;
  raft::Snapshot snap;
  snap.metadata.index = 1000;
  snap.metadata.term = 5;
  snap.metadata.conf_state.voters = {1, 2};
  snap.data = "remote state";
  {
    auto s = OpenOrDie(&env, Options());
    ASSERT_TRUE(s->Append(MakeEntries(1, 50, 1)).ok());
    ASSERT_TRUE(s->ApplySnapshot(snap).ok());
    EXPECT_EQ(s->FirstIndex(), 1001u);
    EXPECT_EQ(s->LastIndex(), 1000u);
    ASSERT_TRUE(s->Append(MakeEntries(1001, 1010, 5)).ok());
    EXPECT_EQ(s->ApplySnapshot(snap).code(), Status::Code::kSnapshotOutOfDate);
  }
  auto s = OpenOrDie(&env, Options());
  EXPECT_EQ(s->FirstIndex(), 1001u);
  EXPECT_EQ(s->LastIndex(), 1009u);
  EXPECT_EQ(*s->TermAt(1000), 5u);
  EXPECT_EQ(*s->GetSnapshot(), snap);
}

TEST(DiskStorageTest, SnapshotFileFormatDetectsDamage) {
  raft::Snapshot snap;
  snap.metadata.index = 3;
  snap.metadata.term = 2;
  snap.data = std::string(1000, 'x');
  std::string bytes;
  SnapshotStore::Encode(snap, &bytes);
  raft::Snapshot got;
  ASSERT_TRUE(SnapshotStore::Decode("f", bytes, &got).ok());
  EXPECT_EQ(got, snap);
  for (size_t i = 0; i < bytes.size(); i += 13) {
    std::string bad = bytes;
    bad[i] ^= 4;
    Status st = SnapshotStore::Decode("f", bad, &got);
    EXPECT_TRUE(st.IsCorruption()) << i;
  }
  EXPECT_TRUE(
      SnapshotStore::Decode("f", bytes.substr(0, 100), &got).IsCorruption());
}

// The same code on a real directory (under the current one, not /tmp).
// KEEL_WAL_TEST_KEEP=1 leaves it behind, e.g. to try keel-wal on it.
TEST(DiskStorageTest, PosixRoundTrip) {
  std::string dir = std::filesystem::current_path().string() +
                    "/wal_posix_test." + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto o = Options(/*cache_bytes=*/500);
  o.dir = dir;
  o.background_writer = true;
  {
    auto s = OpenOrDie(Env::Posix(), o);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->Append(MakeEntries(1, 100, 1, 200)).ok());
    ASSERT_TRUE(s->SetHardState({1, 2, 80}).ok());
    ASSERT_TRUE(s->CreateSnapshot(50, nullptr, "state@50").ok());
  }
  auto s = OpenOrDie(Env::Posix(), o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->FirstIndex(), 51u);
  EXPECT_EQ(s->LastIndex(), 99u);
  EXPECT_EQ(*s->Entries(51, 100, UINT64_MAX), MakeEntries(51, 100, 1, 200));
  EXPECT_EQ(s->GetHardState(), (HardState{1, 2, 80}));
  s.reset();
  const char* keep = std::getenv("KEEL_WAL_TEST_KEEP");
  if (keep == nullptr || std::string(keep) != "1") {
    std::filesystem::remove_all(dir);
  }
}

}  // namespace
}  // namespace keel::wal
