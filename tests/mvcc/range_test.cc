// Every Range option: key/range_end rules, limit/more/count, keys_only,
// count_only, historical revisions, sorting and the min/max filters.
#include <gtest/gtest.h>

#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::kAll;
using testing::OpenStore;
using testing::P;
using testing::R;
using testing::TempDir;

std::vector<std::string> Keys(const RangeResponse& r) {
  std::vector<std::string> out;
  for (const auto& kv : r.kvs) out.push_back(kv.key);
  return out;
}

class RangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = OpenStore(dir_.path());
    // rev 2..6: a b c d e; then b twice more (7, 8); c deleted (9).
    for (std::string k : {"a", "b", "c", "d", "e"}) {
      ASSERT_TRUE(s_->Put(P(k, "v-" + k)).ok());
    }
    ASSERT_TRUE(s_->Put(P("b", "zz")).ok());
    ASSERT_TRUE(s_->Put(P("b", "aa")).ok());
    ASSERT_TRUE(s_->DeleteRange(testing::D("c")).ok());
  }
  TempDir dir_;
  std::unique_ptr<Store> s_;
};

TEST_F(RangeTest, KeyAndRangeEndRules) {
  EXPECT_EQ(Keys(*s_->Range(R("b"))), (std::vector<std::string>{"b"}));
  EXPECT_EQ(Keys(*s_->Range(R("b", "e"))),
            (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(Keys(*s_->Range(R("b", kAll))),
            (std::vector<std::string>{"b", "d", "e"}));
  EXPECT_EQ(Keys(*s_->Range(R(kAll, kAll))),
            (std::vector<std::string>{"a", "b", "d", "e"}));
  EXPECT_TRUE(s_->Range(R("e", "b"))->kvs.empty());  // end before key
  EXPECT_TRUE(s_->Range(R("c"))->kvs.empty());       // deleted
}

TEST_F(RangeTest, LimitMoreCount) {
  RangeRequest r = R("a", kAll);
  r.limit = 2;
  auto got = s_->Range(r);
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(got->more);
  EXPECT_EQ(got->count, 4);
  r.limit = 4;
  got = s_->Range(r);
  EXPECT_FALSE(got->more);
  EXPECT_EQ(got->kvs.size(), 4u);
  r.limit = 0;
  EXPECT_FALSE(s_->Range(r)->more);
}

TEST_F(RangeTest, KeysOnlyAndCountOnly) {
  RangeRequest r = R("a", kAll);
  r.keys_only = true;
  auto got = s_->Range(r);
  ASSERT_EQ(got->kvs.size(), 4u);
  for (const auto& kv : got->kvs) EXPECT_TRUE(kv.value.empty());
  EXPECT_EQ(got->kvs[1].version, 3);
  r.keys_only = false;
  r.count_only = true;
  got = s_->Range(r);
  EXPECT_TRUE(got->kvs.empty());
  EXPECT_EQ(got->count, 4);
  r.revision = 6;
  EXPECT_EQ(s_->Range(r)->count, 5);
}

TEST_F(RangeTest, HistoricalAndErrors) {
  auto got = s_->Range(R("a", kAll, 4));
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(got->header.revision, 9);  // the current revision, as etcd
  EXPECT_EQ(s_->Range(R("b", "", 7))->kvs[0].value, "zz");
  auto fut = s_->Range(R("a", "", 10));
  EXPECT_EQ(ErrorCodeOf(fut.status()), ErrorCode::kFutureRevision);
  EXPECT_EQ(fut.status().message(), kErrFutureRevision);
  ASSERT_TRUE(s_->Compact(5, true).ok());
  auto old = s_->Range(R("a", "", 4));
  EXPECT_EQ(ErrorCodeOf(old.status()), ErrorCode::kCompacted);
  EXPECT_EQ(old.status().message(), kErrCompacted);
  // At the compacted revision itself reads still work.
  EXPECT_EQ(Keys(*s_->Range(R("a", kAll, 5))),
            (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST_F(RangeTest, Sorting) {
  RangeRequest r = R("a", kAll);
  r.sort_order = SortOrder::kDescend;
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"e", "d", "b", "a"}));
  r.sort_target = SortTarget::kVersion;  // b has version 3, others 1
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"b", "a", "d", "e"}));
  // NONE with a non-key target sorts ascending.
  r.sort_order = SortOrder::kNone;
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"a", "d", "e", "b"}));
  r.sort_order = SortOrder::kAscend;
  r.sort_target = SortTarget::kValue;  // aa v-a v-d v-e
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"b", "a", "d", "e"}));
  r.sort_target = SortTarget::kMod;
  r.sort_order = SortOrder::kDescend;
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"b", "e", "d", "a"}));
  r.sort_target = SortTarget::kCreate;
  EXPECT_EQ(Keys(*s_->Range(r)),
            (std::vector<std::string>{"e", "d", "b", "a"}));
  // Sorting fetches everything, sorts, then truncates.
  r.limit = 2;
  auto got = s_->Range(r);
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"e", "d"}));
  EXPECT_TRUE(got->more);
  EXPECT_EQ(got->count, 4);
}

TEST_F(RangeTest, Filters) {
  RangeRequest r = R("a", kAll);
  r.min_mod_revision = 5;
  EXPECT_EQ(Keys(*s_->Range(r)), (std::vector<std::string>{"b", "d", "e"}));
  r.max_mod_revision = 6;
  EXPECT_EQ(Keys(*s_->Range(r)), (std::vector<std::string>{"d", "e"}));
  r = R("a", kAll);
  r.min_create_revision = 3;
  r.max_create_revision = 5;
  auto got = s_->Range(r);
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(got->count, 4);  // count ignores filters, as etcd
  r.limit = 1;
  got = s_->Range(r);
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(got->more);
}

}  // namespace
}  // namespace keel::mvcc
