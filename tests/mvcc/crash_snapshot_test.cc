// Crash safety (a real kill -9 of a child process, then torn WAL tails)
// and snapshot export/restore.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/rng.h"
#include "model.h"
#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

namespace fs = std::filesystem;
using testing::kAll;
using testing::Model;
using testing::OpenStore;
using testing::P;
using testing::R;
using testing::TempDir;

// Raft entry i (1-based) of a deterministic workload: puts and deletes.
struct Entry {
  bool del;
  std::string key;
  std::string value;
};

Entry MakeEntry(uint64_t seed, int i) {
  SeededRng rng(seed * 1000003 + i);
  Entry e;
  e.del = rng.Chance(0.25);
  e.key = "k" + std::to_string(rng.Uniform(20));
  e.value = std::string(rng.Range(1, 300), static_cast<char>('a' + i % 26));
  return e;
}

Status ApplyEntry(Store* s, uint64_t seed, int i) {
  const Entry e = MakeEntry(seed, i);
  const ConsistentIndex ci{static_cast<uint64_t>(i), 3};
  if (e.del) return s->DeleteRange(testing::D(e.key), ci).status();
  return s->Put(P(e.key, e.value), ci).status();
}

Model ModelAfter(uint64_t seed, int n) {
  Model m;
  for (int i = 1; i <= n; i++) {
    const Entry e = MakeEntry(seed, i);
    m.Begin();
    if (e.del) {
      m.Delete(e.key, "");
    } else {
      m.Put(e.key, e.value, 0);
    }
    m.Commit();
  }
  return m;
}

// The store's contents equal the model after exactly consistent_index
// entries: the index and the data agree.
void ExpectMatchesIndex(Store* s, uint64_t seed) {
  const int n = static_cast<int>(s->consistent_index().index);
  const Model m = ModelAfter(seed, n);
  EXPECT_EQ(s->CurrentRevision(), m.rev()) << "entries " << n;
  auto all = s->Range(R(kAll, kAll));
  ASSERT_TRUE(all.ok());
  std::vector<KeyValue> want;
  for (const auto& [k, kv] : m.now()) want.push_back(kv);
  EXPECT_EQ(all->kvs, want) << "entries " << n;
}

TEST(Crash, KillNineThenReopenAndTornWalTails) {
  const uint64_t seed = 42;
  const int kEntries = 300;
  TempDir dir;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = Store::Open(dir.path());
    if (!s.ok()) ::_exit(2);
    for (int i = 1; i <= kEntries; i++) {
      if (!ApplyEntry(s->get(), seed, i).ok()) ::_exit(3);
    }
    ::kill(::getpid(), SIGKILL);  // no destructor, no Close
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);

  // Torn WAL tails: what a machine crash could leave of unsynced writes.
  // Each cut must reopen as some prefix of the batches, index included.
  const std::string db = dir.path() + "/" + *CurrentDbName(dir.path());
  std::string wal;
  for (const auto& f : fs::directory_iterator(db)) {
    if (f.path().extension() == ".log") wal = f.path().string();
  }
  ASSERT_FALSE(wal.empty());
  const auto wal_size = fs::file_size(wal);
  SeededRng rng(seed);
  std::set<uint64_t> seen;
  for (int cut = 0; cut < 6; cut++) {
    TempDir copy;
    fs::copy(
        dir.path(), copy.path(),
        fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    const std::string copy_wal = copy.path() + "/" +
                                 fs::path(db).filename().string() + "/" +
                                 fs::path(wal).filename().string();
    fs::resize_file(copy_wal, cut == 0 ? wal_size : rng.Uniform(wal_size));
    auto s = OpenStore(copy.path());
    ASSERT_NE(s, nullptr);
    if (cut == 0) EXPECT_EQ(s->consistent_index().index, kEntries);
    EXPECT_EQ(s->consistent_index().term,
              s->consistent_index().index ? 3u : 0u);
    ExpectMatchesIndex(s.get(), seed);
    seen.insert(s->consistent_index().index);
    // Replay from index + 1 reaches the full state.
    for (int i = static_cast<int>(s->consistent_index().index) + 1;
         i <= kEntries; i++) {
      ASSERT_TRUE(ApplyEntry(s.get(), seed, i).ok());
    }
    ExpectMatchesIndex(s.get(), seed);
  }
  EXPECT_GT(seen.size(), 1u);  // the cuts did land at different prefixes
}

TEST(Crash, ExitWithoutCloseKeepsIndexAndData) {
  TempDir dir;
  const uint64_t seed = 7;
  for (int round = 0; round < 3; round++) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child applies 50 entries and exits without closing anything.
      auto s = Store::Open(dir.path());
      if (!s.ok()) ::_exit(2);
      const int from = static_cast<int>((*s)->consistent_index().index);
      for (int i = from + 1; i <= from + 50; i++) {
        if (!ApplyEntry(s->get(), seed, i).ok()) ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    auto s = OpenStore(dir.path());
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->consistent_index().index, 50u * (round + 1));
    ExpectMatchesIndex(s.get(), seed);
  }
}

TEST(Crash, DeferredWalKillNineKeepsFlushedBatches) {
  // defer_wal_writes (the server's setting): WAL records reach the file only
  // at FlushWal. A kill -9 keeps every flushed batch, may lose the unflushed
  // ones, and what survives is still a prefix with its consistent index.
  const uint64_t seed = 11;
  const int kFlushed = 200, kEntries = 205;
  TempDir dir;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StoreOptions o;
    o.defer_wal_writes = true;
    auto s = Store::Open(dir.path(), o);
    if (!s.ok()) ::_exit(2);
    for (int i = 1; i <= kEntries; i++) {
      if (!ApplyEntry(s->get(), seed, i).ok()) ::_exit(3);
      if (i % 10 == 0 && i <= kFlushed && !(*s)->FlushWal().ok()) ::_exit(5);
    }
    ::kill(::getpid(), SIGKILL);  // no destructor, no Close
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  auto s = OpenStore(dir.path());
  ASSERT_NE(s, nullptr);
  EXPECT_GE(s->consistent_index().index, static_cast<uint64_t>(kFlushed));
  EXPECT_LE(s->consistent_index().index, static_cast<uint64_t>(kEntries));
  ExpectMatchesIndex(s.get(), seed);
  for (int i = static_cast<int>(s->consistent_index().index) + 1; i <= kEntries;
       i++) {
    ASSERT_TRUE(ApplyEntry(s.get(), seed, i).ok());
  }
  EXPECT_EQ(s->consistent_index().index, static_cast<uint64_t>(kEntries));
  ExpectMatchesIndex(s.get(), seed);
}

TEST(Crash, DeferredWritesReadLikeWrittenOnes) {
  // defer_wal_writes keeps an apply round's rows in memory until FlushWal:
  // meanwhile every read (ranges now and at past revisions, history with
  // prev_kv, hashes, export) must answer as a store that wrote each entry
  // at once, also across compactions and lease writes, which write
  // through; and what was flushed survives a reopen.
  const uint64_t seed = 5;
  TempDir direct_dir, deferred_dir, files;
  auto direct = OpenStore(direct_dir.path());
  StoreOptions o;
  o.defer_wal_writes = true;
  auto deferred = OpenStore(deferred_dir.path(), o);
  ASSERT_NE(direct, nullptr);
  ASSERT_NE(deferred, nullptr);
  auto expect_same = [&](int i) {
    SCOPED_TRACE("after entry " + std::to_string(i));
    EXPECT_EQ(deferred->CurrentRevision(), direct->CurrentRevision());
    EXPECT_EQ(deferred->consistent_index(), direct->consistent_index());
    EXPECT_EQ(deferred->Range(R(kAll, kAll))->kvs,
              direct->Range(R(kAll, kAll))->kvs);
    const int64_t past = std::max<int64_t>(direct->CompactRevision(),
                                           direct->CurrentRevision() - 3);
    EXPECT_EQ(deferred->Range(R(kAll, kAll, past))->kvs,
              direct->Range(R(kAll, kAll, past))->kvs);
    for (int64_t from : {int64_t{1}, direct->CurrentRevision() - 5}) {
      auto a = deferred->ReadHistory(from, 1000, 1 << 20, true);
      auto b = direct->ReadHistory(from, 1000, 1 << 20, true);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->events, b->events);
      EXPECT_EQ(a->last_rev, b->last_rev);
      // Stopping at a revision boundary inside the deferred rows.
      a = deferred->ReadHistory(from, 2, 1 << 20, false);
      b = direct->ReadHistory(from, 2, 1 << 20, false);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->events, b->events);
      EXPECT_EQ(a->last_rev, b->last_rev);
    }
  };
  for (int i = 1; i <= 120; i++) {
    ASSERT_TRUE(ApplyEntry(direct.get(), seed, i).ok());
    ASSERT_TRUE(ApplyEntry(deferred.get(), seed, i).ok());
    if (i % 7 == 0) expect_same(i);
    if (i % 10 == 0) ASSERT_TRUE(deferred->FlushWal().ok());
    if (i == 45) {
      // A compaction and a lease record write through the deferred rows.
      const int64_t rev = direct->CurrentRevision() - 10;
      ASSERT_TRUE(direct->Compact(rev, true, {}).ok());
      ASSERT_TRUE(deferred->Compact(rev, true, {}).ok());
      ASSERT_TRUE(direct->PutLeases({{9, 30, 0}}, {}).ok());
      ASSERT_TRUE(deferred->PutLeases({{9, 30, 0}}, {}).ok());
    }
    if (i == 88) {
      // Readers of the whole database see the deferred rows.
      EXPECT_EQ(deferred->HashKV(0)->hash, direct->HashKV(0)->hash);
      const auto a = deferred->ExportSnapshot(files.Sub("a"));
      const auto b = direct->ExportSnapshot(files.Sub("b"));
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->consistent_index, b->consistent_index);
      EXPECT_EQ(a->revision, b->revision);
    }
  }
  // Entries 111-120 are deferred; the store's close writes them.
  expect_same(120);
  deferred.reset();
  deferred = OpenStore(deferred_dir.path(), o);
  ASSERT_NE(deferred, nullptr);
  EXPECT_EQ(deferred->consistent_index().index, 120u);
  expect_same(120);
  EXPECT_EQ(*deferred->Leases(), *direct->Leases());
}

TEST(Snapshot, ExportRestoreRoundTrip) {
  TempDir src_dir, dst_dir, files;
  auto src = OpenStore(src_dir.path());
  for (int i = 1; i <= 200; i++) ASSERT_TRUE(ApplyEntry(src.get(), 9, i).ok());
  ASSERT_TRUE(src->Put(P("leased", "v", 77), {201, 4}).ok());
  ASSERT_TRUE(src->Compact(100, true, {202, 4}).ok());
  ASSERT_TRUE(src->PutLeases({{77, 30, 0}}, {}).ok());
  const std::string file = files.Sub("snap");
  auto info = src->ExportSnapshot(file);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->consistent_index, (ConsistentIndex{202, 4}));
  EXPECT_EQ(info->revision, src->CurrentRevision());
  EXPECT_EQ(info->compact_revision, 100);
  EXPECT_EQ(info->size_bytes, fs::file_size(file));

  auto dst = OpenStore(dst_dir.path());
  ASSERT_TRUE(dst->Put(P("old", "gone")).ok());
  ASSERT_TRUE(dst->RestoreSnapshot(file).ok());
  EXPECT_EQ(dst->consistent_index(), (ConsistentIndex{202, 4}));
  EXPECT_EQ(dst->CurrentRevision(), src->CurrentRevision());
  EXPECT_EQ(dst->CompactRevision(), 100);
  EXPECT_EQ(dst->Range(R(kAll, kAll))->kvs, src->Range(R(kAll, kAll))->kvs);
  EXPECT_EQ(dst->Range(R(kAll, kAll, 150))->kvs,
            src->Range(R(kAll, kAll, 150))->kvs);
  EXPECT_EQ(dst->HashKV(0)->hash, src->HashKV(0)->hash);
  EXPECT_EQ(dst->LeaseKeys(77), (std::vector<std::string>{"leased"}));
  EXPECT_EQ(*dst->Leases(), (std::vector<LeaseRecord>{{77, 30, 0}}));
  // Survives reopen; the old database directory is gone.
  dst.reset();
  dst = OpenStore(dst_dir.path());
  EXPECT_EQ(dst->consistent_index(), (ConsistentIndex{202, 4}));
  EXPECT_EQ(dst->Range(R(kAll, kAll))->kvs, src->Range(R(kAll, kAll))->kvs);
  int dbs = 0;
  for (const auto& f : fs::directory_iterator(dst_dir.path())) {
    dbs += f.path().filename().string().rfind("db-", 0) == 0;
  }
  EXPECT_EQ(dbs, 1);
  // Writes continue from the snapshot's revision on both.
  EXPECT_EQ(dst->Put(P("x", "1"))->header.revision,
            src->Put(P("x", "1"))->header.revision);
}

TEST(Snapshot, DamagedFileIsRejectedAndStoreUnchanged) {
  TempDir src_dir, dst_dir, files;
  auto src = OpenStore(src_dir.path());
  ASSERT_TRUE(src->Put(P("a", "1")).ok());
  const std::string file = files.Sub("snap");
  ASSERT_TRUE(src->ExportSnapshot(file).ok());
  {
    std::FILE* f = std::fopen(file.c_str(), "r+b");
    std::fseek(f, 12, SEEK_SET);
    std::fputc('X', f);
    std::fclose(f);
  }
  auto dst = OpenStore(dst_dir.path());
  ASSERT_TRUE(dst->Put(P("mine", "1")).ok());
  EXPECT_FALSE(dst->RestoreSnapshot(file).ok());
  EXPECT_EQ(dst->Range(R("mine"))->kvs.size(), 1u);
  fs::resize_file(file, fs::file_size(file) - 3);
  EXPECT_FALSE(dst->RestoreSnapshot(file).ok());
  EXPECT_EQ(dst->Range(R("mine"))->kvs.size(), 1u);
}

}  // namespace
}  // namespace keel::mvcc
