// Lease records in the store: atomic with the applied index, durable,
// deleted with their keys on revoke.
#include <gtest/gtest.h>

#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::OpenStore;
using testing::P;
using testing::TempDir;

TEST(StoreLease, RecordsSurviveReopenWithTheirIndex) {
  TempDir dir;
  {
    auto s = OpenStore(dir.path());
    ASSERT_TRUE(s->PutLeases({{5, 10, 0}}, {3, 1}).ok());
    ASSERT_TRUE(s->PutLeases({{-1 & 0x7fffffffffffffff, 60, 0}}, {4, 1}).ok());
    // A checkpoint replaces the record.
    ASSERT_TRUE(s->PutLeases({{5, 10, 7}}, {5, 1}).ok());
    EXPECT_EQ(s->consistent_index(), (ConsistentIndex{5, 1}));
  }
  auto s = OpenStore(dir.path());
  EXPECT_EQ(s->consistent_index(), (ConsistentIndex{5, 1}));
  EXPECT_EQ(*s->Leases(), (std::vector<LeaseRecord>{
                              {5, 10, 7}, {0x7fffffffffffffff, 60, 0}}));
}

TEST(StoreLease, RevokeDeletesKeysAndRecordInOneRevision) {
  TempDir dir;
  auto s = OpenStore(dir.path());
  ASSERT_TRUE(s->PutLeases({{5, 10, 0}, {6, 10, 0}}, {2, 1}).ok());
  ASSERT_TRUE(s->Put(P("a", "1", 5), {3, 1}).ok());
  ASSERT_TRUE(s->Put(P("b", "1", 5), {4, 1}).ok());
  ASSERT_TRUE(s->Put(P("c", "1", 6), {5, 1}).ok());
  const int64_t before = s->CurrentRevision();
  auto r = s->RevokeLease(5, {6, 1});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->deleted, 2);
  EXPECT_EQ(r->header.revision, before + 1);
  EXPECT_EQ(s->CurrentRevision(), before + 1);
  EXPECT_EQ(s->consistent_index(), (ConsistentIndex{6, 1}));
  EXPECT_EQ(*s->Leases(), (std::vector<LeaseRecord>{{6, 10, 0}}));
  r = s->RevokeLease(6, {7, 1});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 1);
  EXPECT_TRUE(s->Leases()->empty());
  // Nothing attached: no new revision.
  r = s->RevokeLease(9, {8, 1});
  EXPECT_EQ(r->deleted, 0);
  EXPECT_EQ(s->CurrentRevision(), before + 2);
}

}  // namespace
}  // namespace keel::mvcc
