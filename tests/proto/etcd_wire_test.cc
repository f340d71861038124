// Proof that keel's .proto files speak etcd's wire format: a real etcd
// (Debian's etcd-server, 3.4) is driven through OUR generated stubs, and every
// answer is checked field by field. A wrong field number or type in
// proto/**.proto would make a field decode as unset (or fail to parse), and
// these checks would fail. The error checks pin the exact status code and
// message that keel must reproduce (src/api/errors.h, docs/etcd-errors.md).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "api/errors.h"
#include "etcd_process.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "mvccpb/kv.pb.h"

namespace keel::test {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using mvccpb::Event;
using mvccpb::KeyValue;

// Every call gets a deadline, so a misbehaving server fails the test instead
// of hanging it.
constexpr auto kCallTimeout = std::chrono::seconds(5);

class EtcdWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    etcd_ = EtcdProcess::Start(&error);
    ASSERT_NE(etcd_, nullptr) << error;
    kv_ = etcdserverpb::KV::NewStub(etcd_->channel());
    watch_ = etcdserverpb::Watch::NewStub(etcd_->channel());
    lease_ = etcdserverpb::Lease::NewStub(etcd_->channel());
    cluster_ = etcdserverpb::Cluster::NewStub(etcd_->channel());
    maintenance_ = etcdserverpb::Maintenance::NewStub(etcd_->channel());
  }

  void TearDown() override {
    // On failure, etcd's own log usually says why.
    if (HasFailure() && etcd_ != nullptr) {
      std::cerr << "---- etcd log ----\n" << etcd_->Log() << "----\n";
    }
  }

  static void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  }

  etcdserverpb::PutResponse Put(const std::string& key,
                                const std::string& value, int64_t lease = 0,
                                bool prev_kv = false) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_lease(lease);
    req.set_prev_kv(prev_kv);
    etcdserverpb::PutResponse resp;
    grpc::Status s = kv_->Put(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << "Put " << key << ": " << s.error_message();
    return resp;
  }

  grpc::Status Range(const RangeRequest& req,
                     etcdserverpb::RangeResponse* resp) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return kv_->Range(&ctx, req, resp);
  }

  etcdserverpb::RangeResponse MustRange(const RangeRequest& req) {
    etcdserverpb::RangeResponse resp;
    grpc::Status s = Range(req, &resp);
    EXPECT_TRUE(s.ok()) << "Range " << req.ShortDebugString() << ": "
                        << s.error_message();
    return resp;
  }

  etcdserverpb::StatusResponse Status() {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    etcdserverpb::StatusResponse resp;
    grpc::Status s =
        maintenance_->Status(&ctx, etcdserverpb::StatusRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  // The response header is on every answer; check it names this member.
  void ExpectHeader(const etcdserverpb::ResponseHeader& h, int64_t revision) {
    EXPECT_EQ(h.cluster_id(), cluster_id_);
    EXPECT_EQ(h.member_id(), member_id_);
    EXPECT_EQ(h.revision(), revision);
    EXPECT_GE(h.raft_term(), 2u);  // Term 1 has no leader in etcd.
  }

  // The ids every header must carry, from Status.
  void LearnIds() {
    etcdserverpb::StatusResponse st = Status();
    cluster_id_ = st.header().cluster_id();
    member_id_ = st.header().member_id();
    ASSERT_NE(cluster_id_, 0u);
    ASSERT_NE(member_id_, 0u);
  }

  static void ExpectKv(const KeyValue& kv, const std::string& key,
                       const std::string& value, int64_t create_revision,
                       int64_t mod_revision, int64_t version,
                       int64_t lease = 0) {
    EXPECT_EQ(kv.key(), key);
    EXPECT_EQ(kv.value(), value);
    EXPECT_EQ(kv.create_revision(), create_revision) << key;
    EXPECT_EQ(kv.mod_revision(), mod_revision) << key;
    EXPECT_EQ(kv.version(), version) << key;
    EXPECT_EQ(kv.lease(), lease) << key;
  }

  static std::vector<std::string> Keys(const etcdserverpb::RangeResponse& r) {
    std::vector<std::string> keys;
    for (const KeyValue& kv : r.kvs()) keys.push_back(kv.key());
    return keys;
  }

  static void ExpectError(const grpc::Status& s, const api::EtcdError& e) {
    EXPECT_EQ(s.error_code(), e.code) << s.error_message();
    EXPECT_EQ(s.error_message(), e.message);
  }

  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance_;
  uint64_t cluster_id_ = 0;
  uint64_t member_id_ = 0;
};

// A fresh etcd is at revision 1; each put, delete or writing txn adds one.
TEST_F(EtcdWireTest, PutAndRangeWithOptions) {
  LearnIds();
  ExpectHeader(Put("k/a", "a1").header(), 2);
  ExpectHeader(Put("k/b", "b1").header(), 3);
  ExpectHeader(Put("k/c", "c1").header(), 4);
  etcdserverpb::PutResponse put = Put("k/a", "a2", 0, /*prev_kv=*/true);
  ExpectHeader(put.header(), 5);
  ASSERT_TRUE(put.has_prev_kv());
  ExpectKv(put.prev_kv(), "k/a", "a1", 2, 2, 1);
  Put("z", "outside", 0, /*prev_kv=*/true);  // Revision 6.

  // One key.
  RangeRequest req;
  req.set_key("k/a");
  etcdserverpb::RangeResponse r = MustRange(req);
  ExpectHeader(r.header(), 6);
  ASSERT_EQ(r.kvs_size(), 1);
  ExpectKv(r.kvs(0), "k/a", "a2", 2, 5, 2);
  EXPECT_EQ(r.count(), 1);
  EXPECT_FALSE(r.more());

  // A prefix: range_end is the prefix with its last byte plus one.
  RangeRequest prefix;
  prefix.set_key("k/");
  prefix.set_range_end("k0");
  r = MustRange(prefix);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"k/a", "k/b", "k/c"}));
  EXPECT_EQ(r.count(), 3);
  ExpectKv(r.kvs(1), "k/b", "b1", 3, 3, 1);
  ExpectKv(r.kvs(2), "k/c", "c1", 4, 4, 1);

  // limit: fewer kvs, "more" set, count still the whole range.
  req = prefix;
  req.set_limit(2);
  r = MustRange(req);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"k/a", "k/b"}));
  EXPECT_TRUE(r.more());
  EXPECT_EQ(r.count(), 3);

  // Sorting by mod revision, newest first: a (5), c (4), b (3).
  req = prefix;
  req.set_sort_order(RangeRequest::DESCEND);
  req.set_sort_target(RangeRequest::MOD);
  EXPECT_EQ(Keys(MustRange(req)),
            (std::vector<std::string>{"k/a", "k/c", "k/b"}));
  // By value, descending: c1 > b1 > a2.
  req.set_sort_target(RangeRequest::VALUE);
  EXPECT_EQ(Keys(MustRange(req)),
            (std::vector<std::string>{"k/c", "k/b", "k/a"}));
  // By version, descending; a has version 2, the others 1 (ties keep key
  // order).
  req.set_sort_target(RangeRequest::VERSION);
  EXPECT_EQ(MustRange(req).kvs(0).key(), "k/a");
  // By key, descending.
  req.set_sort_target(RangeRequest::KEY);
  EXPECT_EQ(Keys(MustRange(req)),
            (std::vector<std::string>{"k/c", "k/b", "k/a"}));
  // By create revision, ascending.
  req.set_sort_order(RangeRequest::ASCEND);
  req.set_sort_target(RangeRequest::CREATE);
  EXPECT_EQ(Keys(MustRange(req)),
            (std::vector<std::string>{"k/a", "k/b", "k/c"}));

  // keys_only: no values, everything else still there.
  req = prefix;
  req.set_keys_only(true);
  r = MustRange(req);
  ASSERT_EQ(r.kvs_size(), 3);
  ExpectKv(r.kvs(0), "k/a", "", 2, 5, 2);

  // count_only: no kvs at all.
  req = prefix;
  req.set_count_only(true);
  r = MustRange(req);
  EXPECT_EQ(r.kvs_size(), 0);
  EXPECT_EQ(r.count(), 3);
  ExpectHeader(r.header(), 6);

  // revision: the store as of revision 4, before the second put of k/a.
  // The header still carries the current revision.
  req = prefix;
  req.set_revision(4);
  r = MustRange(req);
  ASSERT_EQ(r.kvs_size(), 3);
  ExpectKv(r.kvs(0), "k/a", "a1", 2, 2, 1);
  ExpectHeader(r.header(), 6);

  // Mod and create revision filters.
  req = prefix;
  req.set_min_mod_revision(4);
  EXPECT_EQ(Keys(MustRange(req)), (std::vector<std::string>{"k/a", "k/c"}));
  req = prefix;
  req.set_max_create_revision(3);
  EXPECT_EQ(Keys(MustRange(req)), (std::vector<std::string>{"k/a", "k/b"}));
  req = prefix;
  req.set_min_create_revision(3);
  req.set_max_mod_revision(3);
  EXPECT_EQ(Keys(MustRange(req)), (std::vector<std::string>{"k/b"}));

  // range_end "\0": every key from key on.
  req = RangeRequest();
  req.set_key("k/b");
  req.set_range_end(std::string(1, '\0'));
  EXPECT_EQ(Keys(MustRange(req)),
            (std::vector<std::string>{"k/b", "k/c", "z"}));
  // key and range_end both "\0": everything.
  req.set_key(std::string(1, '\0'));
  req.set_serializable(true);
  EXPECT_EQ(MustRange(req).count(), 4);

  // A key that does not exist: empty, not an error.
  req = RangeRequest();
  req.set_key("nope");
  r = MustRange(req);
  EXPECT_EQ(r.kvs_size(), 0);
  EXPECT_EQ(r.count(), 0);
}

TEST_F(EtcdWireTest, DeleteRange) {
  LearnIds();
  Put("d/a", "1");  // 2
  Put("d/b", "2");  // 3
  Put("d/c", "3");  // 4

  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("d/b");
  del.set_prev_kv(true);
  etcdserverpb::DeleteRangeResponse resp;
  ASSERT_TRUE(kv_->DeleteRange(&ctx, del, &resp).ok());
  ExpectHeader(resp.header(), 5);
  EXPECT_EQ(resp.deleted(), 1);
  ASSERT_EQ(resp.prev_kvs_size(), 1);
  ExpectKv(resp.prev_kvs(0), "d/b", "2", 3, 3, 1);

  // Deleting nothing does not add a revision.
  grpc::ClientContext ctx2;
  Prepare(&ctx2);
  ASSERT_TRUE(kv_->DeleteRange(&ctx2, del, &resp).ok());
  EXPECT_EQ(resp.deleted(), 0);
  EXPECT_EQ(resp.prev_kvs_size(), 0);
  ExpectHeader(resp.header(), 5);

  // A prefix delete is one revision for all its keys.
  grpc::ClientContext ctx3;
  Prepare(&ctx3);
  del = etcdserverpb::DeleteRangeRequest();
  del.set_key("d/");
  del.set_range_end("d0");
  ASSERT_TRUE(kv_->DeleteRange(&ctx3, del, &resp).ok());
  EXPECT_EQ(resp.deleted(), 2);
  EXPECT_EQ(resp.prev_kvs_size(), 0);  // Not asked for.
  ExpectHeader(resp.header(), 6);

  // Put again after delete: a new life, version restarts at 1.
  Put("d/a", "again");  // 7
  RangeRequest req;
  req.set_key("d/a");
  etcdserverpb::RangeResponse r = MustRange(req);
  ASSERT_EQ(r.kvs_size(), 1);
  ExpectKv(r.kvs(0), "d/a", "again", 7, 7, 1);
}

TEST_F(EtcdWireTest, TxnCompareSuccessAndFailure) {
  LearnIds();
  Put("t", "1");  // 2
  Put("u", "x");  // 3

  etcdserverpb::TxnRequest txn;
  auto add_compare = [&](Compare::CompareResult result,
                         Compare::CompareTarget target) {
    Compare* c = txn.add_compare();
    c->set_key("t");
    c->set_result(result);
    c->set_target(target);
    return c;
  };
  add_compare(Compare::EQUAL, Compare::VALUE)->set_value("1");
  add_compare(Compare::EQUAL, Compare::VERSION)->set_version(1);
  add_compare(Compare::EQUAL, Compare::CREATE)->set_create_revision(2);
  add_compare(Compare::LESS, Compare::MOD)->set_mod_revision(3);
  add_compare(Compare::NOT_EQUAL, Compare::VALUE)->set_value("2");
  add_compare(Compare::EQUAL, Compare::LEASE)->set_lease(0);
  // Success: put t, read it back (a txn sees its own writes), delete u,
  // and a nested txn that reads u (gone by then).
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key("t");
  put->set_value("2");
  put->set_prev_kv(true);
  txn.add_success()->mutable_request_range()->set_key("t");
  auto* del = txn.add_success()->mutable_request_delete_range();
  del->set_key("u");
  del->set_prev_kv(true);
  auto* nested = txn.add_success()->mutable_request_txn();
  nested->add_success()->mutable_request_range()->set_key("u");
  txn.add_failure()->mutable_request_put()->set_key("t-failed");

  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::TxnResponse resp;
  grpc::Status s = kv_->Txn(&ctx, txn, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExpectHeader(resp.header(), 4);  // One revision for the whole txn.
  EXPECT_TRUE(resp.succeeded());
  ASSERT_EQ(resp.responses_size(), 4);
  ASSERT_TRUE(resp.responses(0).has_response_put());
  ExpectKv(resp.responses(0).response_put().prev_kv(), "t", "1", 2, 2, 1);
  ASSERT_TRUE(resp.responses(1).has_response_range());
  const auto& range = resp.responses(1).response_range();
  ASSERT_EQ(range.kvs_size(), 1);
  ExpectKv(range.kvs(0), "t", "2", 2, 4, 2);
  ASSERT_TRUE(resp.responses(2).has_response_delete_range());
  const auto& deleted = resp.responses(2).response_delete_range();
  EXPECT_EQ(deleted.deleted(), 1);
  ASSERT_EQ(deleted.prev_kvs_size(), 1);
  ExpectKv(deleted.prev_kvs(0), "u", "x", 3, 3, 1);
  ASSERT_TRUE(resp.responses(3).has_response_txn());
  const auto& inner = resp.responses(3).response_txn();
  EXPECT_TRUE(inner.succeeded());  // No compares: always true.
  ASSERT_EQ(inner.responses_size(), 1);
  EXPECT_EQ(inner.responses(0).response_range().count(), 0);

  // Same compares again: t's value is now 2, so the failure branch runs.
  grpc::ClientContext ctx2;
  Prepare(&ctx2);
  txn.clear_failure();
  txn.add_failure()->mutable_request_range()->set_key("t");
  ASSERT_TRUE(kv_->Txn(&ctx2, txn, &resp).ok());
  EXPECT_FALSE(resp.succeeded());
  ExpectHeader(resp.header(), 4);  // Read-only: no new revision.
  ASSERT_EQ(resp.responses_size(), 1);
  ASSERT_TRUE(resp.responses(0).has_response_range());
  ExpectKv(resp.responses(0).response_range().kvs(0), "t", "2", 2, 4, 2);

  // Compare on a missing key: its version, create and mod revision are 0.
  etcdserverpb::TxnRequest missing;
  Compare* c = missing.add_compare();
  c->set_key("never");
  c->set_target(Compare::VERSION);
  c->set_result(Compare::EQUAL);
  c->set_version(0);
  grpc::ClientContext ctx3;
  Prepare(&ctx3);
  ASSERT_TRUE(kv_->Txn(&ctx3, missing, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
  // range_end: every key in [a, z) has version > 0 (t has 2).
  c->set_key("a");
  c->set_range_end("z");
  c->set_result(Compare::GREATER);
  grpc::ClientContext ctx4;
  Prepare(&ctx4);
  ASSERT_TRUE(kv_->Txn(&ctx4, missing, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
}

TEST_F(EtcdWireTest, TxnErrors) {
  // Two writes to one key in one txn.
  etcdserverpb::TxnRequest txn;
  for (const char* v : {"1", "2"}) {
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key("dup");
    put->set_value(v);
  }
  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::TxnResponse resp;
  ExpectError(kv_->Txn(&ctx, txn, &resp), api::kErrDuplicateKey);

  // A put and a delete covering it clash too.
  txn = etcdserverpb::TxnRequest();
  txn.add_success()->mutable_request_put()->set_key("dup");
  auto* del = txn.add_success()->mutable_request_delete_range();
  del->set_key("d");
  del->set_range_end("e");
  grpc::ClientContext ctx2;
  Prepare(&ctx2);
  ExpectError(kv_->Txn(&ctx2, txn, &resp), api::kErrDuplicateKey);

  // More operations than --max-txn-ops (128 by default).
  txn = etcdserverpb::TxnRequest();
  for (int i = 0; i < 129; ++i) {
    txn.add_success()->mutable_request_put()->set_key("op" + std::to_string(i));
  }
  grpc::ClientContext ctx3;
  Prepare(&ctx3);
  ExpectError(kv_->Txn(&ctx3, txn, &resp), api::kErrTooManyOps);

  // Empty key in a put.
  grpc::ClientContext ctx4;
  Prepare(&ctx4);
  etcdserverpb::PutRequest put;
  put.set_value("v");
  etcdserverpb::PutResponse put_resp;
  ExpectError(kv_->Put(&ctx4, put, &put_resp), api::kErrEmptyKey);

  // ignore_value on a missing key.
  grpc::ClientContext ctx5;
  Prepare(&ctx5);
  put.set_key("missing");
  put.clear_value();
  put.set_ignore_value(true);
  ExpectError(kv_->Put(&ctx5, put, &put_resp), api::kErrKeyNotFound);

  // ignore_value together with a value.
  grpc::ClientContext ctx6;
  Prepare(&ctx6);
  put.set_value("v");
  ExpectError(kv_->Put(&ctx6, put, &put_resp), api::kErrValueProvided);
}

TEST_F(EtcdWireTest, CompactAndCompactedReads) {
  LearnIds();
  for (int i = 1; i <= 4; ++i) Put("c", std::to_string(i));  // 2..5

  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::CompactionRequest compact;
  compact.set_revision(4);
  compact.set_physical(true);
  etcdserverpb::CompactionResponse compacted;
  grpc::Status s = kv_->Compact(&ctx, compact, &compacted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExpectHeader(compacted.header(), 5);

  RangeRequest req;
  req.set_key("c");
  etcdserverpb::RangeResponse r;
  // Below the compaction point: gone.
  req.set_revision(3);
  ExpectError(Range(req, &r), api::kErrCompacted);
  // The compaction revision itself is still readable.
  req.set_revision(4);
  r = MustRange(req);
  ASSERT_EQ(r.kvs_size(), 1);
  ExpectKv(r.kvs(0), "c", "3", 2, 4, 3);
  // Beyond the current revision.
  req.set_revision(6);
  ExpectError(Range(req, &r), api::kErrFutureRev);

  // Compacting at or below the compaction point again.
  grpc::ClientContext ctx2;
  Prepare(&ctx2);
  ExpectError(kv_->Compact(&ctx2, compact, &compacted), api::kErrCompacted);
  // Compacting into the future.
  grpc::ClientContext ctx3;
  Prepare(&ctx3);
  compact.set_revision(100);
  ExpectError(kv_->Compact(&ctx3, compact, &compacted), api::kErrFutureRev);

  // A watch from a compacted revision is created, then canceled at once
  // with the compaction revision.
  grpc::ClientContext wctx;
  Prepare(&wctx);
  auto stream = watch_->Watch(&wctx);
  etcdserverpb::WatchRequest wreq;
  wreq.mutable_create_request()->set_key("c");
  wreq.mutable_create_request()->set_start_revision(2);
  ASSERT_TRUE(stream->Write(wreq));
  etcdserverpb::WatchResponse wresp;
  // First the usual "created" answer, then the cancellation.
  ASSERT_TRUE(stream->Read(&wresp));
  EXPECT_TRUE(wresp.created());
  EXPECT_FALSE(wresp.canceled());
  const int64_t id = wresp.watch_id();
  ASSERT_TRUE(stream->Read(&wresp));
  EXPECT_TRUE(wresp.canceled());
  EXPECT_EQ(wresp.watch_id(), id);
  EXPECT_EQ(wresp.compact_revision(), 4);
  // etcd 3.4 gives no reason here (it fills cancel_reason only when a
  // create is refused); clients go by compact_revision.
  EXPECT_EQ(wresp.cancel_reason(), "");
  EXPECT_EQ(wresp.events_size(), 0);
  wctx.TryCancel();
}

TEST_F(EtcdWireTest, MaintenanceStatus) {
  etcdserverpb::StatusResponse st = Status();
  EXPECT_NE(st.header().cluster_id(), 0u);
  EXPECT_NE(st.header().member_id(), 0u);
  EXPECT_EQ(st.header().revision(), 1);
  EXPECT_GE(st.header().raft_term(), 2u);
  EXPECT_EQ(st.version().rfind("3.", 0), 0u) << st.version();
  EXPECT_GT(st.dbsize(), 0);
  EXPECT_GT(st.dbsizeinuse(), 0);
  EXPECT_LE(st.dbsizeinuse(), st.dbsize());
  // A lone member leads itself.
  EXPECT_EQ(st.leader(), st.header().member_id());
  EXPECT_EQ(st.raftterm(), st.header().raft_term());
  EXPECT_GT(st.raftindex(), 0u);
  EXPECT_GT(st.raftappliedindex(), 0u);
  EXPECT_LE(st.raftappliedindex(), st.raftindex());
  EXPECT_FALSE(st.islearner());
  EXPECT_EQ(st.errors_size(), 0);
  // A write moves the raft index and the header revision.
  const uint64_t index = st.raftindex();
  Put("s", "1");
  etcdserverpb::StatusResponse after = Status();
  EXPECT_GT(after.raftindex(), index);
  EXPECT_EQ(after.header().revision(), 2);
}

TEST_F(EtcdWireTest, ClusterMemberList) {
  LearnIds();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::MemberListResponse resp;
  ASSERT_TRUE(
      cluster_->MemberList(&ctx, etcdserverpb::MemberListRequest(), &resp)
          .ok());
  EXPECT_EQ(resp.header().cluster_id(), cluster_id_);
  EXPECT_EQ(resp.header().member_id(), member_id_);
  // MemberList does not read the key space; etcd leaves revision 0.
  EXPECT_EQ(resp.header().revision(), 0);
  ASSERT_EQ(resp.members_size(), 1);
  const etcdserverpb::Member& m = resp.members(0);
  EXPECT_EQ(m.id(), member_id_);
  EXPECT_EQ(m.name(), etcd_->name());
  ASSERT_EQ(m.peerurls_size(), 1);
  EXPECT_EQ(m.peerurls(0), etcd_->peer_url());
  ASSERT_EQ(m.clienturls_size(), 1);
  EXPECT_EQ(m.clienturls(0), etcd_->client_url());
  EXPECT_FALSE(m.islearner());
}

TEST_F(EtcdWireTest, Leases) {
  LearnIds();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  etcdserverpb::LeaseGrantResponse granted;
  ASSERT_TRUE(lease_->LeaseGrant(&ctx, grant, &granted).ok());
  EXPECT_NE(granted.id(), 0);
  EXPECT_EQ(granted.ttl(), 60);
  EXPECT_EQ(granted.error(), "");
  // Granting a lease does not change the key space.
  ExpectHeader(granted.header(), 1);

  // The client may choose the id.
  grpc::ClientContext ctx2;
  Prepare(&ctx2);
  grant.set_id(0x1234);
  grant.set_ttl(30);
  ASSERT_TRUE(lease_->LeaseGrant(&ctx2, grant, &granted).ok());
  EXPECT_EQ(granted.id(), 0x1234);
  EXPECT_EQ(granted.ttl(), 30);
  // ... once.
  grpc::ClientContext ctx3;
  Prepare(&ctx3);
  ExpectError(lease_->LeaseGrant(&ctx3, grant, &granted), api::kErrLeaseExist);

  // A key attached to the lease shows it, and the lease lists the key.
  Put("l/a", "v", 0x1234);  // 2
  RangeRequest req;
  req.set_key("l/a");
  etcdserverpb::RangeResponse r = MustRange(req);
  ASSERT_EQ(r.kvs_size(), 1);
  ExpectKv(r.kvs(0), "l/a", "v", 2, 2, 1, 0x1234);

  grpc::ClientContext ctx4;
  Prepare(&ctx4);
  etcdserverpb::LeaseTimeToLiveRequest ttl_req;
  ttl_req.set_id(0x1234);
  ttl_req.set_keys(true);
  etcdserverpb::LeaseTimeToLiveResponse ttl;
  ASSERT_TRUE(lease_->LeaseTimeToLive(&ctx4, ttl_req, &ttl).ok());
  EXPECT_EQ(ttl.id(), 0x1234);
  EXPECT_EQ(ttl.grantedttl(), 30);
  EXPECT_GT(ttl.ttl(), 0);
  EXPECT_LE(ttl.ttl(), 30);
  ASSERT_EQ(ttl.keys_size(), 1);
  EXPECT_EQ(ttl.keys(0), "l/a");

  grpc::ClientContext ctx5;
  Prepare(&ctx5);
  etcdserverpb::LeaseLeasesResponse leases;
  ASSERT_TRUE(
      lease_->LeaseLeases(&ctx5, etcdserverpb::LeaseLeasesRequest(), &leases)
          .ok());
  EXPECT_EQ(leases.leases_size(), 2);

  // Revoking deletes the attached keys (one revision).
  grpc::ClientContext ctx6;
  Prepare(&ctx6);
  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(0x1234);
  etcdserverpb::LeaseRevokeResponse revoked;
  ASSERT_TRUE(lease_->LeaseRevoke(&ctx6, revoke, &revoked).ok());
  ExpectHeader(revoked.header(), 3);
  EXPECT_EQ(MustRange(req).count(), 0);

  // A revoked (or never granted) lease is not found.
  grpc::ClientContext ctx7;
  Prepare(&ctx7);
  ExpectError(lease_->LeaseRevoke(&ctx7, revoke, &revoked),
              api::kErrLeaseNotFound);
  grpc::ClientContext ctx8;
  Prepare(&ctx8);
  etcdserverpb::PutRequest put;
  put.set_key("l/b");
  put.set_lease(0x1234);
  etcdserverpb::PutResponse put_resp;
  ExpectError(kv_->Put(&ctx8, put, &put_resp), api::kErrLeaseNotFound);
  // TimeToLive of a missing lease is not an error: TTL -1.
  grpc::ClientContext ctx9;
  Prepare(&ctx9);
  ASSERT_TRUE(lease_->LeaseTimeToLive(&ctx9, ttl_req, &ttl).ok());
  EXPECT_EQ(ttl.ttl(), -1);

  // KeepAlive on a live lease answers with its TTL.
  grpc::ClientContext kctx;
  Prepare(&kctx);
  auto ka = lease_->LeaseKeepAlive(&kctx);
  etcdserverpb::LeaseKeepAliveRequest ka_req;
  // The first lease (TTL 60) is still alive; its id is the other one
  // LeaseLeases listed.
  ka_req.set_id(leases.leases(0).id() == 0x1234 ? leases.leases(1).id()
                                                : leases.leases(0).id());
  ASSERT_TRUE(ka->Write(ka_req));
  etcdserverpb::LeaseKeepAliveResponse ka_resp;
  ASSERT_TRUE(ka->Read(&ka_resp));
  EXPECT_EQ(ka_resp.id(), ka_req.id());
  EXPECT_EQ(ka_resp.ttl(), 60);
  ExpectHeader(ka_resp.header(), 3);
  kctx.TryCancel();
}

TEST_F(EtcdWireTest, WatchStream) {
  LearnIds();
  Put("w/a", "0");  // 2: before the watch; not reported.

  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto stream = watch_->Watch(&ctx);
  etcdserverpb::WatchRequest req;
  auto* create = req.mutable_create_request();
  create->set_key("w/");
  create->set_range_end("w0");
  create->set_prev_kv(true);
  ASSERT_TRUE(stream->Write(req));

  etcdserverpb::WatchResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_TRUE(resp.created());
  EXPECT_FALSE(resp.canceled());
  EXPECT_EQ(resp.events_size(), 0);
  ExpectHeader(resp.header(), 2);
  const int64_t id = resp.watch_id();

  Put("w/a", "1");    // 3
  Put("other", "x");  // 4: outside the range.
  Put("w/b", "new");  // 5
  {
    grpc::ClientContext dctx;
    Prepare(&dctx);
    etcdserverpb::DeleteRangeRequest del;
    del.set_key("w/a");
    etcdserverpb::DeleteRangeResponse deleted;
    ASSERT_TRUE(kv_->DeleteRange(&dctx, del, &deleted).ok());  // 6
  }

  // Collect events until the delete arrives; etcd may batch revisions.
  std::vector<Event> events;
  while (events.size() < 3 && stream->Read(&resp)) {
    EXPECT_EQ(resp.watch_id(), id);
    EXPECT_FALSE(resp.created());
    for (const Event& e : resp.events()) events.push_back(e);
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type(), Event::PUT);
  ExpectKv(events[0].kv(), "w/a", "1", 2, 3, 2);
  ExpectKv(events[0].prev_kv(), "w/a", "0", 2, 2, 1);
  EXPECT_EQ(events[1].type(), Event::PUT);
  ExpectKv(events[1].kv(), "w/b", "new", 5, 5, 1);
  EXPECT_FALSE(events[1].has_prev_kv());  // Created: nothing before.
  EXPECT_EQ(events[2].type(), Event::DELETE);
  // A delete event carries only the key and the delete's revision.
  ExpectKv(events[2].kv(), "w/a", "", 0, 6, 0);
  ExpectKv(events[2].prev_kv(), "w/a", "1", 2, 3, 2);

  // A second watcher on the same stream, from a past revision, with a
  // filter and a chosen id: replays history, minus deletes.
  req = etcdserverpb::WatchRequest();
  create = req.mutable_create_request();
  create->set_key("w/a");
  create->set_start_revision(2);
  create->add_filters(etcdserverpb::WatchCreateRequest::NODELETE);
  create->set_watch_id(42);
  ASSERT_TRUE(stream->Write(req));
  events.clear();
  bool created = false;
  while (events.size() < 2 && stream->Read(&resp)) {
    EXPECT_EQ(resp.watch_id(), 42);
    if (resp.created()) created = true;
    for (const Event& e : resp.events()) events.push_back(e);
  }
  EXPECT_TRUE(created);
  ASSERT_EQ(events.size(), 2u);
  ExpectKv(events[0].kv(), "w/a", "0", 2, 2, 1);
  ExpectKv(events[1].kv(), "w/a", "1", 2, 3, 2);

  // Progress request: an empty response at the current revision.
  req = etcdserverpb::WatchRequest();
  req.mutable_progress_request();
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.events_size(), 0);
  ExpectHeader(resp.header(), 6);
  // -1: not any one watcher's; etcd's Go client hands such a response to
  // every watcher on the stream.
  EXPECT_EQ(resp.watch_id(), -1);

  // Cancel the first watcher.
  req = etcdserverpb::WatchRequest();
  req.mutable_cancel_request()->set_watch_id(id);
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_TRUE(resp.canceled());
  EXPECT_EQ(resp.watch_id(), id);

  stream->WritesDone();
  ctx.TryCancel();
}

}  // namespace
}  // namespace keel::test
