// Txn: compares of every target and result, range compares, nested txns,
// one revision per txn, reads seeing earlier writes, and the duplicate-key
// rule.
#include <gtest/gtest.h>

#include "mvcc/request_check.h"
#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::D;
using testing::kAll;
using testing::OpenStore;
using testing::P;
using testing::R;
using testing::TempDir;
using Res = Compare::Result;

class TxnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = OpenStore(dir_.path());
    ASSERT_TRUE(s_->Put(P("a", "1", 7)).ok());  // 2
    ASSERT_TRUE(s_->Put(P("b", "2")).ok());     // 3
    ASSERT_TRUE(s_->Put(P("b", "3")).ok());     // 4
  }
  bool Eval(Compare c) {
    TxnRequest t;
    t.compare.push_back(std::move(c));
    auto r = s_->ReadTxn(t);
    EXPECT_TRUE(r.ok());
    return r->succeeded;
  }
  TempDir dir_;
  std::unique_ptr<Store> s_;
};

TEST_F(TxnTest, CompareTargetsAndResults) {
  EXPECT_TRUE(Eval(Compare::Version("b", Res::kEqual, 2)));
  EXPECT_TRUE(Eval(Compare::Version("b", Res::kGreater, 1)));
  EXPECT_TRUE(Eval(Compare::Version("b", Res::kLess, 3)));
  EXPECT_TRUE(Eval(Compare::Version("b", Res::kNotEqual, 1)));
  EXPECT_FALSE(Eval(Compare::Version("b", Res::kNotEqual, 2)));
  EXPECT_TRUE(Eval(Compare::Create("b", Res::kEqual, 3)));
  EXPECT_TRUE(Eval(Compare::Mod("b", Res::kEqual, 4)));
  EXPECT_TRUE(Eval(Compare::Mod("b", Res::kGreater, 3)));
  EXPECT_TRUE(Eval(Compare::Value("b", Res::kEqual, "3")));
  EXPECT_TRUE(Eval(Compare::Value("b", Res::kLess, "4")));
  EXPECT_TRUE(Eval(Compare::Value("b", Res::kGreater, "")));
  EXPECT_TRUE(Eval(Compare::Lease("a", Res::kEqual, 7)));
  EXPECT_TRUE(Eval(Compare::Lease("b", Res::kEqual, 0)));
  // A missing key: version/create/mod/lease are 0, value always fails.
  EXPECT_TRUE(Eval(Compare::Version("zz", Res::kEqual, 0)));
  EXPECT_TRUE(Eval(Compare::Create("zz", Res::kEqual, 0)));
  EXPECT_TRUE(Eval(Compare::Lease("zz", Res::kEqual, 0)));
  EXPECT_FALSE(Eval(Compare::Value("zz", Res::kEqual, "")));
  EXPECT_FALSE(Eval(Compare::Value("zz", Res::kNotEqual, "x")));
  // Operand of another case than the target compares as 0.
  Compare odd = Compare::Create("b", Res::kEqual, 3);
  odd.target = Compare::Target::kVersion;
  EXPECT_FALSE(Eval(odd));
  odd.result = Res::kGreater;
  EXPECT_TRUE(Eval(odd));  // version 2 > 0
}

TEST_F(TxnTest, RangeCompares) {
  Compare c = Compare::Version("a", Res::kGreater, 0);
  c.range_end = "c";
  EXPECT_TRUE(Eval(c));
  c = Compare::Version("a", Res::kEqual, 1);
  c.range_end = "c";
  EXPECT_FALSE(Eval(c));  // b has version 2
  c.range_end = kAll;
  c.key = "zz";
  EXPECT_FALSE(Eval(c));  // empty range compares as a zero KeyValue
  c.result = Res::kEqual;
  c.version = 0;
  EXPECT_TRUE(Eval(c));
}

TEST_F(TxnTest, OneRevisionAndReadsSeeEarlierWrites) {
  TxnRequest t;
  t.compare.push_back(Compare::Value("a", Res::kEqual, "1"));
  t.success.push_back(OpPut(P("c", "x")));
  t.success.push_back(OpRange(R("a", kAll)));
  t.success.push_back(OpDelete(D("a")));
  t.success.push_back(OpRange(R("a", kAll)));
  t.failure.push_back(OpPut(P("f", "f")));
  auto r = s_->Txn(t);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->header.revision, 5);
  EXPECT_EQ(s_->CurrentRevision(), 5);
  ASSERT_EQ(r->responses.size(), 4u);
  const auto& put = std::get<PutResponse>(r->responses[0].response);
  EXPECT_EQ(put.header.revision, 5);
  const auto& r1 = std::get<RangeResponse>(r->responses[1].response);
  EXPECT_EQ(r1.count, 3);
  EXPECT_EQ(r1.kvs[2], (KeyValue{"c", 5, 5, 1, "x", 0}));
  EXPECT_EQ(r1.header.revision, 5);
  EXPECT_EQ(std::get<DeleteRangeResponse>(r->responses[2].response).deleted, 1);
  EXPECT_EQ(std::get<RangeResponse>(r->responses[3].response).count, 2);
  // Sub revisions: the delete of "a" is (5, 1); history at 4 intact.
  EXPECT_EQ(s_->Range(R("a", "", 4))->kvs[0].value, "1");
  EXPECT_TRUE(s_->Range(R("a"))->kvs.empty());
  EXPECT_TRUE(s_->Range(R("f"))->kvs.empty());

  // Failure branch; a read-only txn makes no revision.
  TxnRequest ro;
  ro.compare.push_back(Compare::Value("a", Res::kEqual, "1"));
  ro.failure.push_back(OpRange(R("c")));
  auto rr = s_->Txn(ro);
  EXPECT_FALSE(rr->succeeded);
  EXPECT_EQ(rr->header.revision, 5);
  EXPECT_EQ(s_->CurrentRevision(), 5);
}

TEST_F(TxnTest, NestedTxnsUseThePreTxnStateForCompares) {
  TxnRequest inner;
  // Evaluated before the outer put: "n" does not exist yet.
  inner.compare.push_back(Compare::Version("n", Res::kEqual, 0));
  inner.success.push_back(OpPut(P("m", "inner-ok")));
  inner.success.push_back(OpRange(R("n")));
  inner.failure.push_back(OpPut(P("m", "inner-failed")));
  TxnRequest outer;
  outer.success.push_back(OpPut(P("n", "1")));
  outer.success.push_back(OpTxn(inner));
  auto r = s_->Txn(outer);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->succeeded);
  const auto& sub = std::get<Box<TxnResponse>>(r->responses[1].response);
  EXPECT_TRUE(sub->succeeded);
  EXPECT_EQ(std::get<RangeResponse>(sub->responses[1].response).kvs.size(), 1u);
  EXPECT_EQ(s_->Range(R("m"))->kvs[0].value, "inner-ok");
  EXPECT_EQ(s_->Range(R("m"))->kvs[0].mod_revision, 5);
  EXPECT_EQ(s_->CurrentRevision(), 5);
}

TEST_F(TxnTest, ErrorsLeaveNothingBehind) {
  TxnRequest t;
  t.success.push_back(OpPut(P("x", "1")));
  PutRequest ign;
  ign.key = "missing";
  ign.ignore_value = true;
  t.success.push_back(OpPut(ign));
  auto r = s_->Txn(t, ConsistentIndex{10, 1});
  EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kKeyNotFound);
  EXPECT_EQ(s_->CurrentRevision(), 4);
  EXPECT_TRUE(s_->Range(R("x"))->kvs.empty());
  EXPECT_EQ(s_->consistent_index(), (ConsistentIndex{10, 1}));  // still applied

  TxnRequest fut;
  fut.success.push_back(OpPut(P("x", "1")));
  fut.success.push_back(OpRange(R("a", "", 99)));
  EXPECT_EQ(ErrorCodeOf(s_->Txn(fut).status()), ErrorCode::kFutureRevision);
  EXPECT_EQ(s_->CurrentRevision(), 4);
}

TEST_F(TxnTest, ReadTxnRejectsWrites) {
  TxnRequest t;
  t.failure.push_back(OpDelete(D("a")));
  EXPECT_FALSE(s_->ReadTxn(t).ok());
  EXPECT_FALSE(IsTxnReadOnly(t));
}

Status Dup(std::vector<RequestOp> ops) {
  TxnRequest t;
  t.success = std::move(ops);
  return ValidateTxn(t);
}

TEST(DuplicateKeyRule, FollowsEtcdCheckIntervals) {
  EXPECT_TRUE(Dup({OpPut(P("a", "")), OpPut(P("b", ""))}).ok());
  Status s = Dup({OpPut(P("a", "")), OpPut(P("a", ""))});
  EXPECT_EQ(ErrorCodeOf(s), ErrorCode::kDuplicateKey);
  EXPECT_EQ(s.message(), kErrDuplicateKey);
  EXPECT_FALSE(Dup({OpPut(P("a", "")), OpDelete(D("a"))}).ok());
  EXPECT_FALSE(Dup({OpDelete(D("a", "c")), OpPut(P("b", ""))}).ok());
  EXPECT_TRUE(Dup({OpDelete(D("a", "c")), OpPut(P("c", ""))}).ok());
  // Two deletes, and reads, are fine.
  EXPECT_TRUE(Dup({OpDelete(D("a")), OpDelete(D("a")), OpRange(R("a"))}).ok());
  // etcd takes range_end "\0" literally here: no conflict.
  EXPECT_TRUE(Dup({OpDelete(D("a", kAll)), OpPut(P("b", ""))}).ok());

  TxnRequest inner;
  inner.success.push_back(OpPut(P("a", "")));
  inner.failure.push_back(OpPut(P("a", "")));  // then/else may overlap
  EXPECT_TRUE(Dup({OpTxn(inner)}).ok());
  EXPECT_FALSE(Dup({OpTxn(inner), OpPut(P("a", ""))}).ok());
  EXPECT_FALSE(Dup({OpTxn(inner), OpDelete(D("a"))}).ok());
  TxnRequest inner_del;
  inner_del.success.push_back(OpDelete(D("a", "b")));
  EXPECT_FALSE(Dup({OpTxn(inner_del), OpPut(P("a", ""))}).ok());
  EXPECT_FALSE(Dup({OpTxn(inner), OpTxn(inner)}).ok());
  // The two branches of the top level are checked separately.
  TxnRequest t;
  t.success.push_back(OpPut(P("a", "")));
  t.failure.push_back(OpPut(P("a", "")));
  EXPECT_TRUE(ValidateTxn(t).ok());

  TempDir dir;
  auto store = OpenStore(dir.path());
  TxnRequest bad;
  bad.success = {OpPut(P("a", "")), OpPut(P("a", ""))};
  EXPECT_EQ(ErrorCodeOf(store->Txn(bad).status()), ErrorCode::kDuplicateKey);
  EXPECT_EQ(store->CurrentRevision(), 1);
}

}  // namespace
}  // namespace keel::mvcc
