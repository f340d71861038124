// Compaction: errors, data gone from RocksDB, reads at and after the
// compacted revision, hashes, and a consistent index after reopen.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::D;
using testing::kAll;
using testing::OpenStore;
using testing::P;
using testing::R;
using testing::TempDir;

TEST(Compaction, ErrorsAndIdempotence) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  ASSERT_TRUE(s->Put(P("a", "1")).ok());  // 2
  auto fut = s->Compact(3, true);
  EXPECT_EQ(ErrorCodeOf(fut.status()), ErrorCode::kFutureRevision);
  EXPECT_EQ(fut.status().message(), kErrFutureRevision);
  auto ok = s->Compact(2, true);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->header.revision, 2);
  auto again = s->Compact(2, true);
  EXPECT_EQ(ErrorCodeOf(again.status()), ErrorCode::kCompacted);
  EXPECT_EQ(again.status().message(), kErrCompacted);
  EXPECT_EQ(ErrorCodeOf(s->Compact(1, false).status()), ErrorCode::kCompacted);
}

TEST(Compaction, RemovesOldRevisionsKeepsLatest) {
  TempDir dir;
  uint32_t hash_before = 0;
  {
    auto s = OpenStore(dir.path());
    ASSERT_TRUE(s->Put(P("a", "1")).ok());     // 2
    ASSERT_TRUE(s->Put(P("a", "2")).ok());     // 3
    ASSERT_TRUE(s->Put(P("b", "1")).ok());     // 4
    ASSERT_TRUE(s->DeleteRange(D("b")).ok());  // 5
    ASSERT_TRUE(s->Put(P("c", "1")).ok());     // 6
    ASSERT_TRUE(s->DeleteRange(D("c")).ok());  // 7
    ASSERT_TRUE(s->Put(P("a", "3")).ok());     // 8
    ASSERT_TRUE(s->Compact(6, true).ok());
    auto h = s->HashKV(8);
    ASSERT_TRUE(h.ok());
    hash_before = h->hash;
    EXPECT_EQ(h->compact_revision, 6);
    EXPECT_EQ(ErrorCodeOf(s->Range(R("a", "", 5)).status()),
              ErrorCode::kCompacted);
    // At 6: a=2, c=1 (b deleted at 5, tombstone gone).
    auto at6 = s->Range(R("a", kAll, 6));
    ASSERT_EQ(at6->kvs.size(), 2u);
    EXPECT_EQ(at6->kvs[0], (KeyValue{"a", 2, 3, 2, "2", 0}));
    EXPECT_EQ(at6->kvs[1].key, "c");
    EXPECT_EQ(s->Range(R("a", kAll, 7))->count, 1);
    EXPECT_EQ(s->Range(R("a"))->kvs[0].version, 3);
    EXPECT_EQ(ErrorCodeOf(s->HashKV(5).status()), ErrorCode::kCompacted);
    EXPECT_EQ(ErrorCodeOf(s->HashKV(9).status()), ErrorCode::kFutureRevision);
  }
  // The rows are gone from RocksDB: only revisions 3 (a), 6 (c),
  // 7 (c's tombstone) and 8 (a) remain.
  {
    auto cur = CurrentDbName(dir.path());
    ASSERT_TRUE(cur.ok());
    auto b = Backend::OpenPath(dir.path() + "/" + *cur);
    ASSERT_TRUE(b.ok());
    std::unique_ptr<rocksdb::Iterator> it(
        (*b)->db()->NewIterator(rocksdb::ReadOptions(), (*b)->data()));
    std::vector<int64_t> mains;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Revision r;
      ASSERT_TRUE(DecodeRevision({it->key().data(), it->key().size()}, &r));
      mains.push_back(r.main);
    }
    EXPECT_EQ(mains, (std::vector<int64_t>{3, 6, 7, 8}));
  }
  // Reopen: the index matches (same answers, same hash).
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->CompactRevision(), 6);
  EXPECT_EQ(s->CurrentRevision(), 8);
  EXPECT_EQ(s->HashKV(8)->hash, hash_before);
  EXPECT_EQ(ErrorCodeOf(s->Range(R("a", "", 5)).status()),
            ErrorCode::kCompacted);
  EXPECT_EQ(s->Range(R("a", kAll, 6))->kvs.size(), 2u);
  ASSERT_TRUE(s->Put(P("a", "4")).ok());
  EXPECT_EQ(s->Range(R("a"))->kvs[0], (KeyValue{"a", 2, 9, 4, "4", 0}));
  ASSERT_TRUE(s->Put(P("b", "x")).ok());
  EXPECT_EQ(s->Range(R("b"))->kvs[0].version, 1);
  EXPECT_TRUE(s->Compact(10, true).ok());
  EXPECT_EQ(s->Range(R(kAll, kAll))->count, 2);
}

TEST(Compaction, HashesAgreeAcrossStoresWithSameHistory) {
  TempDir d1, d2;
  auto s1 = OpenStore(d1.path());
  auto s2 = OpenStore(d2.path());
  for (auto* s : {s1.get(), s2.get()}) {
    for (int i = 0; i < 20; i++) {
      ASSERT_TRUE(
          s->Put(P("k" + std::to_string(i % 5), std::to_string(i))).ok());
    }
  }
  EXPECT_EQ(s1->HashKV(0)->hash, s2->HashKV(0)->hash);
  EXPECT_NE(s1->HashKV(18)->hash, s1->HashKV(19)->hash);
  // Members compare HashKV only at equal compacted revisions (as etcd).
  ASSERT_TRUE(s1->Compact(15, true).ok());
  ASSERT_TRUE(s2->Compact(15, true).ok());
  EXPECT_EQ(s1->HashKV(0)->hash, s2->HashKV(0)->hash);
  EXPECT_EQ(s1->HashKV(18)->hash, s2->HashKV(18)->hash);
  EXPECT_EQ(*s1->Hash(), *s2->Hash());
  EXPECT_GT(s1->Stats().size_bytes, 0u);
}

}  // namespace
}  // namespace keel::mvcc
