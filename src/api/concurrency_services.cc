#include "api/concurrency_services.h"

#include <fmt/format.h>

namespace keel::api {

namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

constexpr int64_t kDefaultSessionTTL = 60;  // clientv3/concurrency

// clientv3/concurrency's errors; etcd returns them as plain errors, which
// gRPC sends as UNKNOWN.
grpc::Status Err(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::UNKNOWN, msg);
}
const char kNotLeader[] = "election: not leader";
const char kNoLeader[] = "election: no leader";
const char kMissingLeaderKey[] = "\"leader\" field must be provided";

// A failed call of the v3 API as etcd's recipes return it: clientv3 turns
// it into a plain error, which its gRPC server sends as UNKNOWN with the
// same message.
grpc::Status AsRecipeError(const grpc::Status& st) {
  if (st.ok() || st.error_code() == grpc::StatusCode::UNKNOWN) return st;
  return grpc::Status(grpc::StatusCode::UNKNOWN, st.error_message());
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// The recipes' key: the prefix and the lease in lowercase hex (Go's %x).
std::string KeyOf(const std::string& prefix, int64_t lease) {
  return prefix + fmt::format("{:x}", lease);
}

void CmpCreate(TxnRequest* t, const std::string& key, int64_t rev) {
  Compare* c = t->add_compare();
  c->set_key(key);
  c->set_target(Compare::CREATE);
  c->set_result(Compare::EQUAL);
  c->set_create_revision(rev);
}

void OpPut(google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* ops,
           const std::string& key, const std::string& value, int64_t lease) {
  auto* p = ops->Add()->mutable_request_put();
  p->set_key(key);
  p->set_value(value);
  p->set_lease(lease);
}

// One watch on the in-process channel; cancelled when destroyed.
class WatchStream {
 public:
  WatchStream(Recipes* r, const grpc::ServerContextBase* ctx,
              const std::string& key, const std::string& range_end,
              int64_t start_rev)
      : ctx_(Recipes::Child(ctx)) {
    stream_ = r->watch()->Watch(ctx_.get());
    etcdserverpb::WatchRequest req;
    auto* c = req.mutable_create_request();
    c->set_key(key);
    c->set_range_end(range_end);
    c->set_start_revision(start_rev);
    ok_ = stream_->Write(req);
  }
  ~WatchStream() {
    ctx_->TryCancel();
    stream_->Finish().ok();
  }
  // The next response with events; false when the watch ended (cancelled,
  // compacted, or the call failed).
  bool Next(etcdserverpb::WatchResponse* out) {
    while (ok_ && stream_->Read(out)) {
      if (out->canceled()) {
        ok_ = false;
        compacted_ = out->compact_revision() != 0;
        return false;
      }
      if (out->events_size() > 0) return true;
    }
    ok_ = false;
    return false;
  }
  bool compacted() const { return compacted_; }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest,
                                           etcdserverpb::WatchResponse>>
      stream_;
  bool ok_ = false;
  bool compacted_ = false;
};

}  // namespace

// ---------------- Recipes ----------------

void Recipes::Connect(std::shared_ptr<grpc::Channel> ch) {
  kv_ = etcdserverpb::KV::NewStub(ch);
  lease_ = etcdserverpb::Lease::NewStub(ch);
  watch_ = etcdserverpb::Watch::NewStub(ch);
}

std::unique_ptr<grpc::ClientContext> Recipes::Child(
    const grpc::ServerContextBase* ctx) {
  if (ctx != nullptr) {
    auto c = grpc::ClientContext::FromServerContext(*ctx);
    // The child calls are the caller's: its auth token goes with them.
    for (const char* key : {"token", "authorization"}) {
      auto it = ctx->client_metadata().find(key);
      if (it != ctx->client_metadata().end()) {
        c->AddMetadata(key, std::string(it->second.data(), it->second.size()));
      }
    }
    return c;
  }
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return c;
}

grpc::Status Recipes::Session(const grpc::ServerContextBase* ctx, int64_t lease,
                              int64_t* out) {
  if (lease != 0) {
    *out = lease;
    return grpc::Status::OK;
  }
  etcdserverpb::LeaseGrantRequest g;
  g.set_ttl(kDefaultSessionTTL);
  etcdserverpb::LeaseGrantResponse resp;
  auto c = Child(ctx);
  grpc::Status st = lease_->LeaseGrant(c.get(), g, &resp);
  if (st.ok()) *out = resp.id();
  return AsRecipeError(st);
}

grpc::Status Recipes::Txn(const grpc::ServerContextBase* ctx,
                          const TxnRequest& r, TxnResponse* out) {
  auto c = Child(ctx);
  return AsRecipeError(kv_->Txn(c.get(), r, out));
}

grpc::Status Recipes::Range(const grpc::ServerContextBase* ctx,
                            const RangeRequest& r,
                            etcdserverpb::RangeResponse* out) {
  auto c = Child(ctx);
  return AsRecipeError(kv_->Range(c.get(), r, out));
}

grpc::Status Recipes::Delete(const grpc::ServerContextBase* ctx,
                             const std::string& key,
                             etcdserverpb::DeleteRangeResponse* out) {
  etcdserverpb::DeleteRangeRequest d;
  d.set_key(key);
  auto c = Child(ctx);
  return AsRecipeError(kv_->DeleteRange(c.get(), d, out));
}

RangeRequest Recipes::Top(const std::string& prefix, bool first) {
  RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(PrefixEnd(prefix));
  r.set_sort_target(RangeRequest::CREATE);
  r.set_sort_order(first ? RangeRequest::ASCEND : RangeRequest::DESCEND);
  r.set_limit(1);
  return r;
}

grpc::Status Recipes::WaitDeletes(const grpc::ServerContextBase* ctx,
                                  const std::string& prefix,
                                  int64_t max_create_rev,
                                  etcdserverpb::ResponseHeader* hdr) {
  RangeRequest r = Top(prefix, /*first=*/false);
  r.set_max_create_revision(max_create_rev);
  while (true) {
    etcdserverpb::RangeResponse resp;
    grpc::Status st = Range(ctx, r, &resp);
    if (!st.ok()) return st;
    if (resp.kvs_size() == 0) {
      *hdr = resp.header();
      return grpc::Status::OK;
    }
    st = WaitDelete(ctx, resp.kvs(0).key(), resp.header().revision());
    if (!st.ok()) return st;
  }
}

grpc::Status Recipes::WaitDelete(const grpc::ServerContextBase* ctx,
                                 const std::string& key, int64_t rev) {
  WatchStream w(this, ctx, key, "", rev);
  etcdserverpb::WatchResponse wr;
  while (w.Next(&wr)) {
    for (const auto& ev : wr.events()) {
      if (ev.type() == mvccpb::Event::DELETE) return grpc::Status::OK;
    }
  }
  if (ctx != nullptr && ctx->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "context canceled");
  }
  if (w.compacted()) {
    return Err("etcdserver: mvcc: required revision has been compacted");
  }
  return Err("lost watcher waiting for delete");
}

// ---------------- Lock ----------------

grpc::Status LockService::Lock(grpc::ServerContext* ctx,
                               const v3lockpb::LockRequest* req,
                               v3lockpb::LockResponse* out) {
  int64_t lease = 0;
  grpc::Status st = r_->Session(ctx, req->lease(), &lease);
  if (!st.ok()) return st;
  const std::string pfx = req->name() + "/";
  const std::string key = KeyOf(pfx, lease);
  // Queue up under the prefix unless this lease already waits or holds;
  // read the holder in the same txn (one round when uncontended).
  TxnRequest t;
  CmpCreate(&t, key, 0);
  OpPut(t.mutable_success(), key, "", lease);
  *t.add_success()->mutable_request_range() = Recipes::Top(pfx, true);
  t.add_failure()->mutable_request_range()->set_key(key);
  *t.add_failure()->mutable_request_range() = Recipes::Top(pfx, true);
  TxnResponse tr;
  st = r_->Txn(ctx, t, &tr);
  if (!st.ok()) return st;
  int64_t my_rev = tr.header().revision();
  if (!tr.succeeded()) {
    my_rev = tr.responses(0).response_range().kvs(0).create_revision();
  }
  const auto& owner = tr.responses(1).response_range().kvs();
  *out->mutable_header() = tr.header();
  out->set_key(key);
  if (owner.empty() || owner[0].create_revision() == my_rev) {
    return grpc::Status::OK;
  }
  st = r_->WaitDeletes(ctx, pfx, my_rev - 1, out->mutable_header());
  if (!st.ok()) {
    etcdserverpb::DeleteRangeResponse d;
    r_->Delete(nullptr, key, &d).ok();  // leave the queue
    return st;
  }
  return grpc::Status::OK;
}

grpc::Status LockService::Unlock(grpc::ServerContext* ctx,
                                 const v3lockpb::UnlockRequest* req,
                                 v3lockpb::UnlockResponse* out) {
  etcdserverpb::DeleteRangeResponse d;
  grpc::Status st = r_->Delete(ctx, req->key(), &d);
  if (st.ok()) *out->mutable_header() = d.header();
  return st;
}

// ---------------- Election ----------------

namespace {

// Proclaim and Resign of a leader key: a txn that holds only while the
// key is the one the candidate created.
grpc::Status LeaderTxn(Recipes* r, const grpc::ServerContextBase* ctx,
                       const v3electionpb::LeaderKey& l, const std::string* put,
                       TxnResponse* out) {
  TxnRequest t;
  CmpCreate(&t, l.key(), l.rev());
  if (put != nullptr) {
    OpPut(t.mutable_success(), l.key(), *put, l.lease());
  } else {
    t.add_success()->mutable_request_delete_range()->set_key(l.key());
  }
  return r->Txn(ctx, t, out);
}

}  // namespace

grpc::Status ElectionService::Campaign(grpc::ServerContext* ctx,
                                       const v3electionpb::CampaignRequest* req,
                                       v3electionpb::CampaignResponse* out) {
  int64_t lease = 0;
  grpc::Status st = r_->Session(ctx, req->lease(), &lease);
  if (!st.ok()) return st;
  const std::string pfx = req->name() + "/";
  v3electionpb::LeaderKey leader;
  leader.set_name(req->name());
  leader.set_key(KeyOf(pfx, lease));
  leader.set_lease(lease);
  TxnRequest t;
  CmpCreate(&t, leader.key(), 0);
  OpPut(t.mutable_success(), leader.key(), req->value(), lease);
  t.add_failure()->mutable_request_range()->set_key(leader.key());
  TxnResponse tr;
  st = r_->Txn(ctx, t, &tr);
  if (!st.ok()) return st;
  leader.set_rev(tr.header().revision());
  if (!tr.succeeded()) {
    // This lease campaigns already: resume, with the new value.
    const auto& kv = tr.responses(0).response_range().kvs(0);
    leader.set_rev(kv.create_revision());
    if (kv.value() != req->value()) {
      TxnResponse pr;
      st = LeaderTxn(r_, ctx, leader, &req->value(), &pr);
      if (st.ok() && !pr.succeeded()) st = Err(kNotLeader);
      if (!st.ok()) {
        LeaderTxn(r_, nullptr, leader, nullptr, &pr).ok();
        return st;
      }
    }
  }
  etcdserverpb::ResponseHeader hdr;
  st = r_->WaitDeletes(ctx, pfx, leader.rev() - 1, &hdr);
  if (!st.ok()) {
    if (ctx->IsCancelled()) {
      TxnResponse rr;
      LeaderTxn(r_, nullptr, leader, nullptr, &rr).ok();
    }
    return st;
  }
  *out->mutable_header() = tr.header();
  *out->mutable_leader() = leader;
  return grpc::Status::OK;
}

grpc::Status ElectionService::Proclaim(grpc::ServerContext* ctx,
                                       const v3electionpb::ProclaimRequest* req,
                                       v3electionpb::ProclaimResponse* out) {
  if (!req->has_leader()) return Err(kMissingLeaderKey);
  TxnResponse tr;
  grpc::Status st = LeaderTxn(r_, ctx, req->leader(), &req->value(), &tr);
  if (!st.ok()) return st;
  if (!tr.succeeded()) return Err(kNotLeader);
  *out->mutable_header() = tr.header();
  return grpc::Status::OK;
}

grpc::Status ElectionService::Resign(grpc::ServerContext* ctx,
                                     const v3electionpb::ResignRequest* req,
                                     v3electionpb::ResignResponse* out) {
  if (!req->has_leader()) return Err(kMissingLeaderKey);
  TxnResponse tr;
  grpc::Status st = LeaderTxn(r_, ctx, req->leader(), nullptr, &tr);
  if (!st.ok()) return st;
  *out->mutable_header() = tr.header();
  return grpc::Status::OK;
}

grpc::Status ElectionService::Leader(grpc::ServerContext* ctx,
                                     const v3electionpb::LeaderRequest* req,
                                     v3electionpb::LeaderResponse* out) {
  etcdserverpb::RangeResponse rr;
  grpc::Status st = r_->Range(ctx, Recipes::Top(req->name() + "/", true), &rr);
  if (!st.ok()) return st;
  if (rr.kvs_size() == 0) return Err(kNoLeader);
  *out->mutable_header() = rr.header();
  *out->mutable_kv() = rr.kvs(0);
  return grpc::Status::OK;
}

grpc::Status ElectionService::Observe(
    grpc::ServerContext* ctx, const v3electionpb::LeaderRequest* req,
    grpc::ServerWriter<v3electionpb::LeaderResponse>* writer) {
  const std::string pfx = req->name() + "/";
  // clientv3 concurrency's observe(): report the leader, then its value
  // changes until its key goes, then the next leader.
  while (!ctx->IsCancelled()) {
    etcdserverpb::RangeResponse rr;
    if (!r_->Range(ctx, Recipes::Top(pfx, true), &rr).ok()) break;
    v3electionpb::LeaderResponse lr;
    if (rr.kvs_size() == 0) {
      // No leader yet: wait for the first put under the prefix.
      WatchStream w(r_, ctx, pfx, PrefixEnd(pfx), rr.header().revision());
      etcdserverpb::WatchResponse wr;
      while (!lr.has_kv() && w.Next(&wr)) {
        for (const auto& ev : wr.events()) {
          if (ev.type() != mvccpb::Event::PUT) continue;
          *lr.mutable_header() = wr.header();
          *lr.mutable_kv() = ev.kv();
          lr.mutable_header()->set_revision(ev.kv().mod_revision());
          break;
        }
      }
      if (!lr.has_kv()) break;
    } else {
      *lr.mutable_header() = rr.header();
      *lr.mutable_kv() = rr.kvs(0);
    }
    if (!writer->Write(lr)) break;
    WatchStream w(r_, ctx, lr.kv().key(), "", lr.header().revision() + 1);
    etcdserverpb::WatchResponse wr;
    bool deleted = false;
    while (!deleted && w.Next(&wr)) {
      for (const auto& ev : wr.events()) {
        if (ev.type() == mvccpb::Event::DELETE) {
          deleted = true;
          break;
        }
        v3electionpb::LeaderResponse next;
        *next.mutable_header() = wr.header();
        *next.mutable_kv() = ev.kv();
        if (!writer->Write(next)) return grpc::Status::OK;
      }
    }
    if (!deleted) break;
  }
  if (ctx->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "context canceled");
  }
  return grpc::Status::OK;
}

}  // namespace keel::api
