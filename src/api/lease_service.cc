#include "api/lease_service.h"

#include <string_view>

#include "api/auth_service.h"
#include "api/errors.h"
#include "api/kv_call.h"
#include "api/services.h"

namespace keel::api {

namespace {

// One KeepAlive stream: read a request, renew, write the answer, read the
// next (etcd's leaseKeepAlive loop, one renewal at a time per stream).
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  KeepAliveReactor(server::Server* s, grpc::CallbackServerContext* ctx)
      : s_(s) {
    // clientv3 opens its keepalive stream "requiring a leader".
    if (LeaderRequiredButMissing(ctx, s_)) {
      Finish(kErrNoLeader.ToStatus());
      return;
    }
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side, or the call is cancelled
      Finish(grpc::Status::OK);
      return;
    }
    resp_.Clear();
    resp_.set_id(req_.id());
    // The header before the renewal, as etcd: its revision is never after
    // a revoke the renewal could miss.
    s_->FillHeader(resp_.mutable_header(), s_->CurrentRevision());
    s_->LeaseRenew(req_.id(), [this](Status st, int64_t ttl) {
      if (!st.ok()) {
        Finish(ToGrpc(st));
        return;
      }
      resp_.set_ttl(ttl);  // 0: not found (etcd does not fail the stream)
      StartWrite(&resp_);
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    StartRead(&req_);
  }

  void OnDone() override { delete this; }

 private:
  server::Server* const s_;
  etcdserverpb::LeaseKeepAliveRequest req_;
  etcdserverpb::LeaseKeepAliveResponse resp_;
};

}  // namespace

grpc::Status LeaseService::LeaseGrant(grpc::ServerContext* ctx,
                                      const etcdserverpb::LeaseGrantRequest* r,
                                      etcdserverpb::LeaseGrantResponse* out) {
  if (LeaderRequiredButMissing(ctx, s_)) return kErrNoLeader.ToStatus();
  return ToGrpc(s_->LeaseGrant(*r, out));
}

grpc::Status LeaseService::LeaseRevoke(
    grpc::ServerContext* ctx, const etcdserverpb::LeaseRevokeRequest* r,
    etcdserverpb::LeaseRevokeResponse* out) {
  if (LeaderRequiredButMissing(ctx, s_)) return kErrNoLeader.ToStatus();
  // Checked at apply: the caller must be allowed to write every key
  // attached to the lease (etcd's checkLeasePuts).
  auto ai = CallerOf(ctx, s_);
  if (!ai.ok()) return ToGrpc(ai.status());
  internal::AuthHeader h;
  h.set_username(ai->user);
  h.set_auth_revision(ai->revision);
  server::ScopedRequestAuth scope(&h);
  return ToGrpc(s_->LeaseRevoke(*r, out));
}

grpc::Status LeaseService::LeaseTimeToLive(
    grpc::ServerContext* ctx, const etcdserverpb::LeaseTimeToLiveRequest* r,
    etcdserverpb::LeaseTimeToLiveResponse* out) {
  if (LeaderRequiredButMissing(ctx, s_)) return kErrNoLeader.ToStatus();
  Status st = s_->LeaseTimeToLive(*r, out);
  if (st.ok() && r->keys() && s_->auth()->enabled()) {
    // The attached keys are shown only to a caller that may read them all
    // (etcd 3.5's checkLeaseTimeToLive; 3.4 shows them to anyone).
    auto ai = CallerOf(ctx, s_);
    if (!ai.ok()) return ToGrpc(ai.status());
    for (const auto& k : out->keys()) {
      st = s_->auth()->IsRangePermitted(*ai, k, "");
      if (!st.ok()) {
        out->Clear();
        return ToGrpc(st);
      }
    }
  }
  return ToGrpc(st);
}

grpc::Status LeaseService::LeaseLeases(grpc::ServerContext* ctx,
                                       const etcdserverpb::LeaseLeasesRequest*,
                                       etcdserverpb::LeaseLeasesResponse* out) {
  if (LeaderRequiredButMissing(ctx, s_)) return kErrNoLeader.ToStatus();
  return ToGrpc(s_->LeaseLeases(out));
}

grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                        etcdserverpb::LeaseKeepAliveResponse>*
LeaseService::LeaseKeepAlive(grpc::CallbackServerContext* ctx) {
  return new KeepAliveReactor(s_, ctx);
}

}  // namespace keel::api
