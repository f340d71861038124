// Revision/version bookkeeping, put/delete/prev_kv, and reopen.
#include <gtest/gtest.h>

#include "mvcc/request_check.h"
#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::D;
using testing::OpenStore;
using testing::P;
using testing::R;
using testing::TempDir;

TEST(StoreBasic, EmptyStoreIsAtRevisionOne) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->CurrentRevision(), 1);
  EXPECT_EQ(s->CompactRevision(), -1);
  auto r = s->Range(R("a"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header.revision, 1);
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 0);
}

TEST(StoreBasic, RevisionsAndVersions) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  auto p1 = s->Put(P("foo", "bar"));
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(p1->header.revision, 2);
  EXPECT_FALSE(p1->prev_kv.has_value());
  ASSERT_TRUE(s->Put(P("foo", "baz")).ok());
  auto r = s->Range(R("foo"));
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0], (KeyValue{"foo", 2, 3, 2, "baz", 0}));
  EXPECT_EQ(r->header.revision, 3);

  auto d = s->DeleteRange(D("foo"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 1);
  EXPECT_EQ(d->header.revision, 4);
  // Deleting nothing makes no revision.
  auto d2 = s->DeleteRange(D("foo"));
  EXPECT_EQ(d2->deleted, 0);
  EXPECT_EQ(d2->header.revision, 4);
  EXPECT_EQ(s->CurrentRevision(), 4);

  // Re-create: create_revision and version restart.
  ASSERT_TRUE(s->Put(P("foo", "again")).ok());
  r = s->Range(R("foo"));
  EXPECT_EQ(r->kvs[0], (KeyValue{"foo", 5, 5, 1, "again", 0}));
  // History.
  r = s->Range(R("foo", "", 3));
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].value, "baz");
  EXPECT_EQ(r->header.revision, 5);
  r = s->Range(R("foo", "", 4));
  EXPECT_TRUE(r->kvs.empty());
  r = s->Range(R("foo", "", 1));
  EXPECT_TRUE(r->kvs.empty());
}

TEST(StoreBasic, PrevKv) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  PutRequest p = P("k", "v1", 7);
  p.prev_kv = true;
  auto r1 = s->Put(p);
  EXPECT_FALSE(r1->prev_kv.has_value());
  p.value = "v2";
  auto r2 = s->Put(p);
  ASSERT_TRUE(r2->prev_kv.has_value());
  EXPECT_EQ(*r2->prev_kv, (KeyValue{"k", 2, 2, 1, "v1", 7}));
  ASSERT_TRUE(s->Put(P("k2", "x")).ok());
  DeleteRangeRequest d = D("k", "k3");
  d.prev_kv = true;
  auto dr = s->DeleteRange(d);
  EXPECT_EQ(dr->deleted, 2);
  ASSERT_EQ(dr->prev_kvs.size(), 2u);
  EXPECT_EQ(dr->prev_kvs[0].value, "v2");
  EXPECT_EQ(dr->prev_kvs[1].key, "k2");
}

TEST(StoreBasic, IgnoreValueAndLease) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  PutRequest p;
  p.key = "k";
  p.ignore_value = true;
  auto e = s->Put(p);
  EXPECT_EQ(ErrorCodeOf(e.status()), ErrorCode::kKeyNotFound);
  EXPECT_EQ(e.status().message(), kErrKeyNotFound);
  EXPECT_EQ(s->CurrentRevision(), 1);
  p.ignore_value = false;
  p.ignore_lease = true;
  EXPECT_EQ(ErrorCodeOf(s->Put(p).status()), ErrorCode::kKeyNotFound);

  ASSERT_TRUE(s->Put(P("k", "v", 5)).ok());
  PutRequest keep_value;
  keep_value.key = "k";
  keep_value.ignore_value = true;
  keep_value.lease = 6;
  ASSERT_TRUE(s->Put(keep_value).ok());
  auto r = s->Range(R("k"));
  EXPECT_EQ(r->kvs[0].value, "v");
  EXPECT_EQ(r->kvs[0].lease, 6);
  PutRequest keep_lease = P("k", "w");
  keep_lease.ignore_lease = true;
  ASSERT_TRUE(s->Put(keep_lease).ok());
  r = s->Range(R("k"));
  EXPECT_EQ(r->kvs[0].value, "w");
  EXPECT_EQ(r->kvs[0].lease, 6);
  EXPECT_EQ(r->kvs[0].version, 3);

  PutRequest both = P("k", "x");
  both.ignore_value = true;
  auto e2 = s->Put(both);
  EXPECT_EQ(ErrorCodeOf(e2.status()), ErrorCode::kValueProvided);
  EXPECT_EQ(e2.status().message(), kErrValueProvided);
  PutRequest both_lease = P("k", "", 9);
  both_lease.ignore_lease = true;
  auto e3 = s->Put(both_lease);
  EXPECT_EQ(ErrorCodeOf(e3.status()), ErrorCode::kLeaseProvided);
  EXPECT_EQ(e3.status().message(), kErrLeaseProvided);
}

TEST(StoreBasic, LeaseExistsHook) {
  TempDir dir;
  StoreOptions opts;
  opts.lease_exists = [](int64_t id) { return id == 1; };
  auto s = OpenStore(dir.path(), opts);
  EXPECT_TRUE(s->Put(P("a", "1", 1)).ok());
  auto e = s->Put(P("b", "1", 2));
  EXPECT_EQ(ErrorCodeOf(e.status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(e.status().message(), kErrLeaseNotFound);
}

TEST(StoreBasic, LeaseIndex) {
  TempDir dir;
  {
    auto s = OpenStore(dir.path());
    ASSERT_TRUE(s->Put(P("a", "1", 10)).ok());
    ASSERT_TRUE(s->Put(P("b", "1", 10)).ok());
    ASSERT_TRUE(s->Put(P("c", "1", 11)).ok());
    ASSERT_TRUE(s->Put(P("b", "2", 11)).ok());  // moves to lease 11
    EXPECT_EQ(s->LeaseKeys(10), (std::vector<std::string>{"a"}));
    EXPECT_EQ(s->LeaseKeys(11), (std::vector<std::string>{"b", "c"}));
    ASSERT_TRUE(s->DeleteRange(D("c")).ok());
    EXPECT_EQ(s->LeaseKeys(11), (std::vector<std::string>{"b"}));
  }
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->LeaseKeys(10), (std::vector<std::string>{"a"}));
  EXPECT_EQ(s->LeaseKeys(11), (std::vector<std::string>{"b"}));
  ASSERT_TRUE(s->Put(P("d", "1", 10)).ok());
  const int64_t before = s->CurrentRevision();
  auto r = s->RevokeLease(10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 2);
  EXPECT_EQ(s->CurrentRevision(), before + 1);  // one revision for all
  EXPECT_TRUE(s->LeaseKeys(10).empty());
  EXPECT_EQ(s->Range(R("a", testing::kAll))->count, 1);  // only b
  auto none = s->RevokeLease(99);
  EXPECT_EQ(none->deleted, 0);
  EXPECT_EQ(s->CurrentRevision(), before + 1);
}

TEST(StoreBasic, ReopenRebuildsIndex) {
  TempDir dir;
  std::vector<KeyValue> want_now, want_at4;
  {
    auto s = OpenStore(dir.path());
    ASSERT_TRUE(s->Put(P("a", "1")).ok());     // 2
    ASSERT_TRUE(s->Put(P("b", "1")).ok());     // 3
    ASSERT_TRUE(s->Put(P("a", "2")).ok());     // 4
    ASSERT_TRUE(s->DeleteRange(D("b")).ok());  // 5
    ASSERT_TRUE(s->Put(P("b", "3", 4)).ok());  // 6
    ASSERT_TRUE(s->Put(P("c", "1")).ok());     // 7
    want_now = s->Range(R("a", testing::kAll))->kvs;
    want_at4 = s->Range(R("a", testing::kAll, 4))->kvs;
  }
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->CurrentRevision(), 7);
  EXPECT_EQ(s->Range(R("a", testing::kAll))->kvs, want_now);
  EXPECT_EQ(s->Range(R("a", testing::kAll, 4))->kvs, want_at4);
  // Bookkeeping continues correctly.
  ASSERT_TRUE(s->Put(P("a", "3")).ok());
  auto r = s->Range(R("a"));
  EXPECT_EQ(r->kvs[0], (KeyValue{"a", 2, 8, 3, "3", 0}));
  ASSERT_TRUE(s->Put(P("b", "4")).ok());
  r = s->Range(R("b"));
  EXPECT_EQ(r->kvs[0], (KeyValue{"b", 6, 9, 2, "4", 0}));
}

TEST(StoreBasic, DeletedEverythingStillReopensAtRevision) {
  TempDir dir;
  {
    auto s = OpenStore(dir.path());
    ASSERT_TRUE(s->Put(P("a", "1")).ok());
    ASSERT_TRUE(s->DeleteRange(D("a")).ok());
    ASSERT_TRUE(s->Compact(3, true).ok());
  }
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->CurrentRevision(), 3);
  EXPECT_EQ(s->CompactRevision(), 3);
  EXPECT_EQ(s->Put(P("a", "2"))->header.revision, 4);
}

}  // namespace
}  // namespace keel::mvcc
